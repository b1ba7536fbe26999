"""A ``float_users`` run end to end: float32 users beside b-bit item codes in the export, the
manifest, the contracts, the SQL inner-product query, the publish gate, ``recommend``, serving and
fold-in. Tiny planted runs (tests/codes_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from codes_fixtures import make_run, make_split, planted

from flows.code_versions import check_code_version, read_code_version
from flows.config import ExportConfig, FoldInConfig
from flows.errors import InputError, PublishGateError
from flows.paths import SQL_DIR
from flows.serving.version import load_version
from flows.stages.export import export
from flows.stages.foldin import foldin
from flows.stages.recommend import recommend, recommend_items
from flows.stages.versions import list_versions, rollback
from flows.workdir import WorkDir
from hqgnn.fold_in import fold_in_users
from hqgnn.interactions import InteractionMatrix
from hqgnn.quant import quantize
from hqgnn.retrieval import Retriever


def _export_float_users(tmp_path: Path, bits: int) -> tuple[WorkDir, np.ndarray, np.ndarray, Path]:
    w = WorkDir(tmp_path / "work")
    u, i, split = planted(num_users=30, num_items=90, seed=bits)
    split_dir = make_split(w, split, len(u), len(i))
    make_run(w, f"fu{bits}", split_dir, u, i, bits, float_users=True)
    return w, u, i, export(w, ExportConfig()).path


@pytest.mark.parametrize("bits", [1, 2])
def test_export_ships_float_users_beside_item_codes(tmp_path: Path, bits: int) -> None:
    w, u, i, path = _export_float_users(tmp_path, bits)
    manifest = check_code_version(path)  # hashes and both contracts, each side at its own width
    assert (manifest["bits"], manifest["user_bits"]) == (bits, 32)
    v = read_code_version(path)
    assert (v.bits, v.user_bits) == (bits, 32)
    np.testing.assert_array_equal(v.users.values, u)  # the run's float users, as they are
    q = quantize(torch.from_numpy(i), bits)
    np.testing.assert_array_equal(v.items.values, q.codes.numpy())
    items = pq.read_table(path / "items.parquet")
    assert "code_values" in items.column_names  # 1-bit items too: the SQL inner product needs the signs
    assert pq.read_table(path / "users.parquet").column("bits").to_pylist() == [32] * len(u)
    # the gate's valid metric is the mixed score's, s_i <e_u, q_i>
    want = torch.from_numpy(u) @ q.dequantize().T
    got = Retriever(v.users, v.items).scores(np.arange(len(u)))  # users on the exact grid: ~1e-5 of the largest score
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-5 * float(want.abs().max()))


def test_sql_inner_product_ranks_float_users_against_one_bit_items(tmp_path: Path) -> None:
    _, _, _, path = _export_float_users(tmp_path, 1)
    v = read_code_version(path)
    con = duckdb.connect()
    con.execute("set variable hqgnn_codes = $path", {"path": str(path)})
    con.execute((SQL_DIR / "queries" / "views.sql").read_text())
    sql = (SQL_DIR / "queries" / "user_topk_inner_product.sql").read_text()
    r = Retriever(v.users, v.items)
    for user in (0, 11, 29):
        got = [row[2] for row in con.execute(sql, {"user_id": v.user_ids[user], "k": 15}).fetchall()]
        want = r.topk(np.array([user]), 15)[0][0].tolist()
        assert len(set(got) ^ set(want)) <= 2  # float sums in another order: near-ties may swap at the cut
        assert got[:5] == want[:5]


def test_gate_refuses_to_switch_the_user_width_without_force(tmp_path: Path) -> None:
    w, u, i, first = _export_float_users(tmp_path, 1)
    split_dir = w.splits / "snap1"
    make_run(w, "codes1", split_dir, u, i, 1)  # the same model, with 1-bit user codes
    with pytest.raises(PublishGateError, match="float32 users.*1-bit user codes.*--force"):
        export(w, ExportConfig())
    assert w.code_version().resolve() == first.resolve()  # codes/current unchanged
    forced = export(w, ExportConfig(force=True))
    assert forced.published and read_code_version(forced.path).user_bits == 1
    make_run(w, "fu1-again", split_dir, u, i, 1, float_users=True)
    with pytest.raises(PublishGateError, match="1-bit user codes.*float32 users"):
        export(w, ExportConfig())  # and back
    listed = {r.version: r.user_bits for r in list_versions(w) if r.published}
    assert listed == {first.name: 32, forced.path.name: 1}
    with pytest.raises(InputError, match="no published 1-bit version older"):  # the older one has float users
        rollback(w)
    assert rollback(w, first.name) == first  # named with --to: the user may switch back on purpose


def test_recommend_and_serving_score_float_users(tmp_path: Path) -> None:
    w, u, i, path = _export_float_users(tmp_path, 1)
    v = read_code_version(path)
    rec = recommend(w, str(v.user_ids[4]), k=10, print_result=False)
    r = Retriever(v.users, v.items)
    loaded = load_version(w.root, path)
    assert (loaded.bits, loaded.user_bits) == (1, 32)
    assert loaded.describe()["user_bits"] == 32
    served = loaded.recommend(4, 10)
    assert list(rec.item_ids) == served.ids
    assert loaded.retriever.batch_invariant  # so the service micro-batches it: a batch answers as one user alone
    users = list(range(len(u)))
    for exclude_seen in (True, False):
        for user, ranked in zip(users, loaded.recommend_many(users, 10, exclude_seen), strict=True):
            assert ranked == loaded.recommend(user, 10, exclude_seen)  # ids and float32 scores, exactly
    similar = loaded.similar(3, 5)  # item codes as queries of a float-users retriever
    want = [j for j in r.with_queries(v.items.subset(np.array([3]))).topk(np.array([0]), 6)[0][0].tolist() if j != 3][:5]
    assert similar.ids == [v.item_ids[j] for j in want]
    anon = recommend_items(w, [str(v.item_ids[j]) for j in (1, 2, 5)], k=8, print_result=False)
    assert anon.item_ids == tuple(loaded.recommend_for_items([1, 2, 5], 8).ids)


def test_foldin_gives_new_users_float_vectors(tmp_path: Path) -> None:
    w, u, i, path = _export_float_users(tmp_path, 1)
    parent = read_code_version(path)
    _, _, split = planted(num_users=34, num_items=90, seed=1)  # 4 more users
    make_split(w, split, 34, 90, "snap2")
    res = foldin(w, FoldInConfig(snapshot="snap2"))
    assert res.new_users == 4
    v = read_code_version(res.path)
    assert (v.bits, v.user_bits, v.manifest["user_bits"]) == (1, 32, 32)
    np.testing.assert_array_equal(v.users.values[:30], parent.users.values)  # parent rows unchanged
    from flows.split_files import load_split

    s2 = load_split(w.splits / "snap2")
    new = np.arange(30, 34)
    train = s2.train
    rows = InteractionMatrix.from_pairs(
        np.concatenate([np.full(int(train.row_lengths()[n]), k) for k, n in enumerate(new)]),
        np.concatenate([train.indices[train.indptr[n]:train.indptr[n + 1]].numpy() for n in new]), 4, 90)
    degree = torch.bincount(train.indices, minlength=90).float()
    want = fold_in_users(rows, torch.from_numpy(parent.items.dequantize()), degree)
    np.testing.assert_allclose(v.users.values[30:], want.numpy(), rtol=1e-5, atol=1e-6)  # float vectors, not codes
    assert v.manifest["foldin"]["refine_rounds"] == 0  # no user codes to refine
