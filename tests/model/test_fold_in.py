"""Fold-in (issue 16): the library math against a naive loop, `hqgnn foldin` as a new code version,
`recommend --items`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from codes_fixtures import make_run, make_split, planted
from typer.testing import CliRunner

from flows.cli import app
from flows.code_versions import read_code_version
from flows.config import ExportConfig, FoldInConfig
from flows.stages.export import export
from flows.stages.foldin import foldin
from flows.stages.recommend import recommend, recommend_items
from flows.workdir import WorkDir
from hqgnn.codes import CodeTable
from hqgnn.fold_in import code_rows, fold_in, fold_in_codes, fold_in_users, recommend_for_items
from hqgnn.interactions import InteractionMatrix
from hqgnn.metrics import evaluate_ranking
from hqgnn.retrieval import Retriever


def test_fold_in_is_lightgcn_one_hop_over_the_items() -> None:
    table = torch.randn(6, 4)
    degree = torch.tensor([1.0, 2, 3, 4, 5, 6])
    got = fold_in(torch.tensor([4, 1, 1]), table, degree)
    want = (table[1] / 2**0.5 + table[4] / 5**0.5) / 2**0.5  # duplicates once; 1/sqrt(|N(u)| |N(i)|)
    torch.testing.assert_close(got, want)
    m = InteractionMatrix.from_pairs(np.array([0, 0, 2]), np.array([1, 4, 3]), 3, 6)
    batch = fold_in_users(m, table, degree)
    torch.testing.assert_close(batch[0], want)
    assert torch.equal(batch[1], torch.zeros(4))
    torch.testing.assert_close(batch[2], table[3] / 2)
    with pytest.raises(ValueError, match="at least one item"):
        fold_in(torch.tensor([], dtype=torch.int64), table)


def _objective(codes: CodeTable, items: CodeTable, m: InteractionMatrix, temperature: float = 2.0) -> torch.Tensor:
    """The refinement objective ``L_u`` (hqgnn.code_refinement) of every user ``[U]``, over all items."""
    s = torch.from_numpy(codes.dequantize()) @ torch.from_numpy(items.dequantize()).T / temperature  # [U, I]
    pos = torch.zeros_like(s).index_put_((m.rows(), m.indices), torch.ones(m.nnz))
    return (s * pos).sum(1) - m.row_lengths() * torch.logsumexp(s, 1)


def test_fold_in_codes_refinement_only_raises_each_users_objective() -> None:
    gen = torch.Generator().manual_seed(0)
    items = torch.randn(50, 16, generator=gen)
    users, cols = torch.randint(0, 12, (80,), generator=gen), torch.randint(0, 50, (80,), generator=gen)
    m = InteractionMatrix.from_pairs(users, cols, 12, 50)
    degree = torch.bincount(cols, minlength=50).float()
    plain = fold_in_codes(m, items, 1, degree)
    assert np.array_equal(plain.packed, code_rows(fold_in_users(m, items, degree), 1).packed)  # 0 rounds: one-hop + quantizer
    refined = fold_in_codes(m, items, 1, degree, refine_rounds=3)
    item_codes = code_rows(items, 1)
    before, after = _objective(plain, item_codes, m), _objective(refined, item_codes, m)
    assert torch.all(after >= before - 1e-5) and torch.any(after > before + 1e-3)
    wide = fold_in_codes(m, items, 32, degree, refine_rounds=3)  # float32 "codes": no refinement, the vector as it is
    torch.testing.assert_close(torch.from_numpy(wide.values), fold_in_users(m, items, degree))


def test_recommend_for_items_never_returns_the_given_items() -> None:
    items = CodeTable.from_float(np.eye(5, dtype=np.float32) + 0.1)
    got, scores = recommend_for_items(torch.tensor([0, 1]), items, k=3)
    assert len(got) == 3 and not {0, 1} & set(got.tolist()) and np.all(np.diff(scores) <= 0)


@pytest.mark.parametrize("bits", [1, 4])
def test_recommend_for_items_through_a_retriever_equals_the_full_table(bits: int) -> None:
    """A service passes its Retriever (the bucketed 1-bit index, or 2/4-bit int8 values, hold the
    only copy of the item codes): only the given rows are read, and the answer is the full
    table's, scores included."""
    rng = np.random.default_rng(4)
    values = rng.choice([-1, 1], size=(500, 64)) if bits == 1 else rng.integers(-8, 8, size=(500, 64))
    items = CodeTable.from_values(values, rng.uniform(0.5, 2.0, 500), bits)
    degree = torch.from_numpy(rng.integers(1, 20, 500).astype(np.float32))
    users = CodeTable.from_values(values[:1], np.ones(1), bits)
    r = Retriever(users, items.packed_only(), scaled_index_min_items=0)
    assert (r._items is None) == (bits in (1, 2, 4))  # no packed table kept: rows come from the index / the int8 values
    for rows in ([3, 77, 3, 499], [0], list(range(0, 500, 50))):
        want = recommend_for_items(torch.tensor(rows), items, 15, degree)
        got = recommend_for_items(torch.tensor(rows), r, 15, degree)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="out of range"):
        recommend_for_items(torch.tensor([500]), r, 5, degree)
    with pytest.raises(ValueError, match="item_degree"):
        recommend_for_items(torch.tensor([1]), r, 5, degree[:10])


@pytest.fixture()
def grown(tmp_path: Path) -> tuple[WorkDir, dict, np.ndarray, np.ndarray]:
    """1-bit codes published on the first 40 of 60 planted users; splits/current then holds all 60."""
    w = WorkDir(tmp_path / "w")
    u, i, split = planted()
    old = {s: (a[b_mask], b[b_mask]) for s, (a, b) in split.items() for b_mask in [a < 40]}
    make_run(w, "night1", make_split(w, old, 40, len(i), "snap1"), u[:40], i, 1)
    assert export(w, ExportConfig()).published
    make_split(w, split, len(u), len(i), "snap2")
    return w, split, u, i


@pytest.mark.usefixtures("one_thread")  # tiny tables: refinement's small ops on many threads crawl on a loaded machine
def test_foldin_publishes_a_new_version_with_the_parents_rows_unchanged(grown: tuple) -> None:
    w, split, u, i = grown
    parent = (w.codes / "current").resolve()
    res = foldin(w, FoldInConfig())
    assert res.new_users == 20 and res.parent == parent.name and res.ms_per_user < 50
    assert (w.codes / "current").resolve() == res.path == (w.codes / "current-1bit").resolve()
    assert parent.is_dir()  # never an in-place edit
    old, new = read_code_version(parent), read_code_version(res.path)
    assert np.array_equal(new.users.packed[:40], old.users.packed) and np.array_equal(new.items.packed, old.items.packed)
    assert new.user_ids.tolist() == [f"u{k}" for k in range(60)]
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert manifest["foldin"]["parent_version"] == parent.name and manifest["gate"]["passed"] and manifest["run"] == "night1"
    assert manifest["foldin"]["refine_rounds"] == 4  # the default (hqgnn.fold_in.fold_in_codes)
    assert manifest["num_users"] == 60 == manifest["foldin"]["users_from_parent"] + manifest["foldin"]["new_users"]

    # folded-in users rank their held-out items far above chance
    train = InteractionMatrix.from_pairs(*split["train"], 60, len(i))
    valid = InteractionMatrix.from_pairs(*split["valid"], 60, len(i))
    new_rows = torch.arange(40, 60)
    from hqgnn.comparison import restrict

    r = Retriever(new.users, new.items)
    got = evaluate_ranking(lambda b: r.scores(new_rows[b].numpy()), restrict(valid, new_rows.numpy(), np.arange(len(i))),
                           (restrict(train, new_rows.numpy(), np.arange(len(i))),), (20,))
    assert got["recall@20"] > 1.5 * 20 / len(i)  # 0.30 here (1 bit, 8 train items each); trained users: 0.69

    again = foldin(w, FoldInConfig())
    assert again.version is None and "every user" in again.reason

    rec = recommend(w, "u45", k=5, print_result=False)  # a folded-in user: train items masked by id
    seen = {f"i{k}" for k in split["train"][1][split["train"][0] == 45]}
    assert len(rec.item_ids) == 5 and not seen & set(rec.item_ids)


def test_foldin_without_published_codes_does_nothing(tmp_path: Path) -> None:
    w = WorkDir(tmp_path / "w")
    u, i, split = planted()
    make_split(w, split, len(u), len(i))
    assert foldin(w, FoldInConfig()).version is None and not w.codes.exists()


def test_cli_foldin_and_recommend_items(grown: tuple) -> None:
    w, *_ = grown
    runner = CliRunner()
    out = runner.invoke(app, ["foldin", "--refine-rounds", "0", "--workdir", str(w.root)])
    assert out.exit_code == 0, out.output
    assert json.loads(((w.codes / "current").resolve() / "manifest.json").read_text())["foldin"]["refine_rounds"] == 0
    # without refinement only the new users' item rows are dequantized: the codes are the whole table's one-hop
    from flows.split_files import load_split
    from hqgnn.comparison import restrict

    folded = read_code_version((w.codes / "current").resolve())
    train = load_split(w.splits / "snap2").train
    new_rows = np.arange(40, 60)  # u40..u59, appended in this order
    degree = torch.bincount(train.indices, minlength=train.num_items).float()
    want = code_rows(fold_in_users(restrict(train, new_rows, np.arange(train.num_items)), torch.from_numpy(folded.items.dequantize()), degree), 1)
    assert np.array_equal(folded.users.packed[40:], want.packed) and np.allclose(folded.users.scale[40:], want.scale, rtol=1e-6)
    out = runner.invoke(app, ["recommend", "--items", "i1,i2", "--k", "4", "--workdir", str(w.root)])
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("rank") and len(lines) == 5 and not any(x.split("\t")[1] in ("i1", "i2") for x in lines[1:])
    assert recommend_items(w, ["i1"], k=3, print_result=False).version == (w.codes / "current").resolve().name
    out = runner.invoke(app, ["recommend", "--workdir", str(w.root)])
    assert out.exit_code == 1 and "exactly one of --user" in out.output
    out = runner.invoke(app, ["recommend", "--items", "zz", "--workdir", str(w.root)])
    assert out.exit_code == 1 and "none of" in out.output
