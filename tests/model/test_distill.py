"""Ranking distillation (issue 19, hqgnn.distill): the teacher's positives, their draw, the distilled
step, where the teacher applies (warm runs from a float parent, or the float run ``distill_from``
names), its errors, and a resume that keeps it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from kill_fixtures import train_killed_after_epoch
from split_fixtures import N_ITEMS, N_USERS, tiny_split

from flows.config import TrainConfig
from flows.errors import InputError
from flows.split_files import load_split
from flows.stages.train import pin_warm_start, train
from flows.workdir import WorkDir
from hqgnn.checkpoint import load_checkpoint
from hqgnn.distill import TeacherRanking, order_loss, teacher_positives
from hqgnn.graph import normalized_adjacency
from hqgnn.loss import bpr_loss, l2_penalty
from hqgnn.propagation import lightgcn_propagate
from hqgnn.quant import fake_quantize
from hqgnn.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"batch_size": 256, "lr": 0.02, "device": "cpu", "dim": 16, "patience": 50, "hutchinson_samples": 2, "hutchinson_batches": 1}


def test_teacher_positives_are_the_best_unseen_items(tmp_path: Path) -> None:
    data = load_split(tiny_split(tmp_path))
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(N_USERS, 8, generator=g), torch.randn(N_ITEMS, 8, generator=g)
    top = teacher_positives(users, items, data.train, 5, batch=7)  # several batches, the last partial
    assert top.shape == (N_USERS, 5)
    for u in (0, 13, N_USERS - 1):
        seen = set(data.train.indices[data.train.indptr[u]:data.train.indptr[u + 1]].tolist())
        ranked = [i for i in torch.argsort(users[u] @ items.T, descending=True).tolist() if i not in seen]
        assert top[u].tolist() == ranked[:5]
    assert teacher_positives(users, items, data.train, 10 * N_ITEMS).shape == (N_USERS, N_ITEMS)  # capped at the catalogue


def test_teacher_draws_favour_the_teachers_first_ranks() -> None:
    positives = torch.arange(40).view(2, 20) + 100  # user 0: items 100..119, user 1: 120..139, best first
    teacher = TeacherRanking(positives, decay=2.0)
    users = torch.tensor([0, 1] * 20_000)
    drawn = teacher.items(users, teacher.draw_ranks(users.numel(), torch.Generator().manual_seed(0)))
    assert drawn.shape == users.shape
    assert ((drawn[users == 0] >= 100) & (drawn[users == 0] < 120)).all() and (drawn[users == 1] >= 120).all()
    rank = (drawn - 100) % 20
    share = torch.bincount(rank, minlength=20).double() / rank.numel()
    want = torch.exp(-torch.arange(20.0) / 2.0)
    torch.testing.assert_close(share[:4], (want / want.sum())[:4].double(), atol=0.01, rtol=0)
    with pytest.raises(ValueError, match=r"\[users, top\]"):
        TeacherRanking(torch.zeros(3, 0, dtype=torch.int64), 1.0)


def test_lower_ranks_come_uniformly_from_the_second_half_after_the_ranks() -> None:
    teacher = TeacherRanking(torch.arange(40).view(2, 20), decay=2.0)
    both = teacher.draw(50_000, torch.Generator().manual_seed(3), lower=True)
    assert both.shape == (2, 50_000)
    assert torch.equal(both[0], teacher.draw_ranks(50_000, torch.Generator().manual_seed(3)))  # the ranks' stream comes first
    assert int(both[1].min()) == 10 and int(both[1].max()) == 19
    share = torch.bincount(both[1] - 10, minlength=10).double() / both.shape[1]
    torch.testing.assert_close(share, torch.full((10,), 0.1, dtype=torch.float64), atol=0.01, rtol=0)
    assert torch.equal(teacher.draw(7, torch.Generator().manual_seed(3), lower=False), both[0, :7])
    items = teacher.items(torch.tensor([0, 1, 1]), torch.tensor([[0, 1, 2], [19, 10, 15]]))
    assert items.tolist() == [[0, 21, 22], [19, 30, 35]]


def test_order_loss_ranks_the_higher_item_over_the_kept_rows_only() -> None:
    user = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    higher = torch.tensor([[2.0, 0.0], [0.0, -1.0], [5.0, 5.0]])
    lower = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    keep = torch.tensor([True, True, False])
    want = (torch.nn.functional.softplus(torch.tensor(-1.0)) + torch.nn.functional.softplus(torch.tensor(2.0))) / 3
    torch.testing.assert_close(order_loss(user, higher, lower, keep), want)
    assert float(order_loss(user, higher, lower, torch.zeros(3, dtype=torch.bool))) == 0.0
    with pytest.raises(ValueError, match="needs distill_top >= 2"):
        TrainConfig(bits=1, distill_top=1, distill_order_weight=1.0)


@pytest.mark.parametrize(("negatives", "order"), [(1, 0.0), (3, 0.0), (1, 0.7), (3, 0.7)])
def test_the_distilled_step_adds_the_teachers_term(tmp_path: Path, negatives: int, order: float) -> None:
    data = load_split(tiny_split(tmp_path))
    cfg = TrainConfig(bits=1, estimator="ste", epochs=2, float_users=True, bpr_negatives=negatives, distill_top=4,
                      distill_weight=0.5, distill_decay=2.0, distill_order_weight=order, **{**FAST, "batch_size": 64})
    init = torch.randn(N_USERS + N_ITEMS, 16, generator=torch.Generator().manual_seed(1))
    trainer = Trainer(cfg, data, tmp_path / "run", torch.device("cpu"), initial_embedding=init)
    assert trainer.teacher is not None
    with torch.no_grad():
        want_teacher = teacher_positives(*trainer.model(trainer.adj), data.train, 4)
    assert torch.equal(trainer.teacher.positives, want_teacher)  # the warm start's ranking
    trainer.quantizing = True
    g = torch.Generator().manual_seed(2)
    users, pos = torch.randint(0, N_USERS, (32,), generator=g), torch.randint(0, N_ITEMS, (32,), generator=g)
    neg = torch.randint(0, N_ITEMS, (32, negatives), generator=g) if negatives > 1 else torch.randint(0, N_ITEMS, (32,), generator=g)
    state, sampler_state = trainer.teacher_generator.get_state(), trainer.generator.get_state()
    ranks = trainer.teacher.draw(32, trainer.teacher_generator, lower=order > 0)
    taught = trainer.teacher.items(users, ranks)
    trainer.teacher_generator.set_state(state)  # the step draws the same teacher items
    with torch.no_grad():
        out = trainer.model.propagate(trainer.adj)
        u = out[users]  # float users: not quantized
        p, n, t = (fake_quantize(out[N_USERS + x], 1) for x in (pos, neg.flatten(), taught.flatten()))
        n_all = n.view(32, negatives, -1) if negatives > 1 else n
        first = n_all[:, 0] if negatives > 1 else n_all
        rows = torch.cat([users, pos + N_USERS, neg.flatten() + N_USERS, taught.flatten() + N_USERS])
        weight = torch.cat([torch.full((64,), 1 / 32), torch.full((32 * negatives,), 1 / 32 / negatives), torch.zeros(taught.numel())])
        want = bpr_loss(u, p, n_all) + 0.5 * bpr_loss(u, t[:32], first) + cfg.l2 * l2_penalty(trainer.model.embedding, rows, weight)
        if order > 0:
            assert bool((ranks[0] < ranks[1]).any()) and not bool((ranks[0] < ranks[1]).all())  # both kinds of rows are in the batch
            want = want + order * order_loss(u, t[:32], t[32:], ranks[0] < ranks[1])
    assert float(trainer.step(users, pos, neg)) == pytest.approx(float(want), rel=1e-5)
    assert torch.equal(trainer.generator.get_state(), sampler_state)  # the sampler's stream is left alone


def _teacher_order_kept(trainer: Trainer) -> float:
    """Share of (first half, second half) pairs of every user's teacher list that the trained codes
    score in the teacher's order."""
    assert trainer.teacher is not None
    users, items = trainer._as_shipped(*trainer.embeddings())
    scores = torch.gather(users @ items.T, 1, trainer.teacher.positives)  # [U, top], teacher order
    half = scores.shape[1] // 2
    return float((scores[:, :half, None] > scores[:, None, half:]).double().mean())


def test_the_order_term_teaches_the_order_within_the_teachers_list(tmp_path: Path) -> None:
    data = load_split(tiny_split(tmp_path))
    g = torch.Generator().manual_seed(5)
    init, teacher = torch.randn(N_USERS + N_ITEMS, 16, generator=g) * 0.1, torch.randn(N_USERS + N_ITEMS, 16, generator=g)
    kept = {}
    for order in (0.0, 2.0):
        cfg = TrainConfig(bits=1, estimator="ste", epochs=6, float_users=True, distill_top=10, distill_order_weight=order,
                          **{**FAST, "batch_size": 64})
        trainer = Trainer(cfg, data, tmp_path / f"order-{order}", torch.device("cpu"), initial_embedding=init, teacher_embedding=teacher)
        trainer.fit()
        kept[order] = _teacher_order_kept(trainer)
    assert kept[2.0] > kept[0.0] + 0.05, kept


def test_no_teacher_without_a_warm_start_or_with_distill_top_0(tmp_path: Path) -> None:
    data = load_split(tiny_split(tmp_path))
    init = torch.randn(N_USERS + N_ITEMS, 16)
    cold = Trainer(TrainConfig(bits=1, epochs=2, distill_top=4, **FAST), data, tmp_path / "a", torch.device("cpu"))
    off = Trainer(TrainConfig(bits=1, epochs=2, **FAST), data, tmp_path / "b", torch.device("cpu"), initial_embedding=init)
    assert cold.teacher is None and off.teacher is None
    with pytest.raises(ValueError, match="needs loss 'bpr'"):
        TrainConfig(bits=1, loss="softmax", distill_top=10)


@pytest.fixture(scope="module")
def parents(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    """splits/tiny with a float32 parent `float` and a 1-bit parent `one-bit`."""
    root = tmp_path_factory.mktemp("distill")
    tiny_split(root)
    wd = WorkDir(root)
    train(wd, TrainConfig(run="float", bits=32, epochs=4, **FAST))
    train(wd, TrainConfig(run="one-bit", bits=1, epochs=2, **FAST))
    return wd


def test_the_teacher_is_a_float_parents_ranking_only(parents: WorkDir) -> None:
    recipe = dict(bits=1, epochs=3, float_users=True, distill_top=8, **FAST)
    pinned = {parent: pin_warm_start(parents, TrainConfig(init_from=parent, **recipe)).distill_top for parent in ("float", "one-bit", "none")}
    assert pinned == {"float": 8, "one-bit": 0, "none": 8}  # a quantized parent: off; cold: as written, and unused
    warm = train(parents, TrainConfig(run="warm-distilled", init_from="float", **recipe))
    stored = json.loads((warm.path / "config.json").read_text())["config"]
    assert stored["distill_top"] == 8 and stored["init_from"] == "float"
    teacher = load_checkpoint(warm.path / "last.pt")["teacher"]
    assert teacher is not None and tuple(teacher.shape) == (N_USERS, 8)
    cold = train(parents, TrainConfig(run="cold-distill-key", **recipe))
    assert load_checkpoint(cold.path / "last.pt")["teacher"] is None


def test_a_killed_distilling_run_resumes_with_its_teacher(parents: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = dict(bits=1, epochs=3, float_users=True, distill_top=8, init_from="float", **FAST)
    full = train(parents, TrainConfig(run="straight", **cfg))
    train_killed_after_epoch(parents, TrainConfig(run="killed", **cfg), 1, monkeypatch)
    import hqgnn.trainer as trainer_module

    monkeypatch.setattr(trainer_module, "teacher_positives", lambda *a, **k: pytest.fail("a resumed run rebuilt its teacher"))
    resumed = train(parents, TrainConfig(run="killed", resume=True, device="cpu"))
    a, b = load_checkpoint(full.path / "last.pt"), load_checkpoint(resumed.path / "last.pt")
    assert b["epoch"] == 3 and b["teacher"].dtype == torch.int32 and torch.equal(a["teacher"], b["teacher"])
    assert torch.equal(a["model"]["embedding"], b["model"]["embedding"])  # the same steps: the same draws from the same teacher


@pytest.fixture(scope="module")
def wide(parents: WorkDir) -> WorkDir:
    """``parents`` plus `wide`: a float32 run of another width (24) than the runs it teaches (16)."""
    train(parents, TrainConfig(run="wide", bits=32, epochs=4, **{**FAST, "dim": 24}))
    return parents


def _ranking_of(wd: WorkDir, run: str, top: int) -> torch.Tensor:
    """``[U, top]``: the float run's propagated ranking on splits/tiny, computed here from its best.pt."""
    state = load_checkpoint(wd.models / run / "best.pt")
    data = load_split(wd.split(None))
    out = lightgcn_propagate(normalized_adjacency(data.train, torch.device("cpu")), state["model"]["embedding"], state["model_args"]["layers"])
    return teacher_positives(*out.split([data.num_users, data.num_items]), data.train, top)


def test_distill_from_names_a_wider_float_teacher_than_the_parent(wide: WorkDir) -> None:
    recipe = dict(bits=1, epochs=2, float_users=True, distill_top=8, **FAST)
    warm = train(wide, TrainConfig(run="taught-by-wide", init_from="float", distill_from="wide", **recipe))
    record = json.loads((warm.path / "config.json").read_text())["warm_start"]
    assert record["parent_run"] == "float" and record["teacher"]["distill_from"] == "wide" and record["teacher"]["teacher_dim"] == 24
    assert record["teacher"]["users_carried"] == N_USERS and record["teacher"]["items_carried"] == N_ITEMS
    teacher = load_checkpoint(warm.path / "last.pt")["teacher"].long()
    assert torch.equal(teacher, _ranking_of(wide, "wide", 8))
    assert not torch.equal(teacher, _ranking_of(wide, "float", 8))  # not the parent's ranking
    cold = train(wide, TrainConfig(run="cold-taught-by-wide", distill_from="wide", **recipe))  # no parent: the named teacher still applies
    assert torch.equal(load_checkpoint(cold.path / "last.pt")["teacher"].long(), teacher)


def test_distill_from_a_missing_or_quantized_run_is_one_clear_error(parents: WorkDir) -> None:
    recipe = dict(bits=1, epochs=1, float_users=True, distill_top=8, init_from="float", **FAST)
    with pytest.raises(InputError, match=r"distill_from='gone': no such trained run .*best\.pt is missing"):
        train(parents, TrainConfig(run="teacher-gone", distill_from="gone", **recipe))
    with pytest.raises(InputError, match="run one-bit is a 1-bit model; the teacher must be a float32 run"):
        train(parents, TrainConfig(run="teacher-quantized", distill_from="one-bit", **recipe))
    assert not (parents.models / "teacher-gone").exists() and not (parents.models / "teacher-quantized").exists()
    data = load_split(parents.split(None))
    with pytest.raises(ValueError, match="teacher_embedding has 3 rows"):
        Trainer(TrainConfig(bits=1, distill_top=4, **FAST), data, parents.root / "unused", torch.device("cpu"), teacher_embedding=torch.zeros(3, 16))


def test_distill_from_best_pins_the_float_run_of_this_split_that_validates_best(wide: WorkDir) -> None:
    recipe = dict(bits=1, epochs=1, float_users=True, distill_top=8, **FAST)
    valid = {r: json.loads((wide.models / r / "summary.json").read_text())["best_valid"]["recall@20"] for r in ("float", "wide")}
    want = max(valid, key=lambda r: (valid[r], r))
    pinned = pin_warm_start(wide, TrainConfig(init_from="float", distill_from="best", **recipe)).distill_from
    assert pinned == ("parent" if want == "float" else want)  # the parent itself is "parent"
    assert pin_warm_start(wide, TrainConfig(distill_from="best", **recipe)).distill_from == want  # a cold run: the best float run
    assert pin_warm_start(wide, TrainConfig(init_from="one-bit", distill_from="best", **recipe)).distill_top == 8  # a float teacher exists

    def forge(name: str, split_dir: str, best_pt: bool) -> None:  # a float run that validates better than any real one
        run = wide.models / name
        run.mkdir()
        (run / "summary.json").write_text(json.dumps({"bits": 32, "best_valid": {"recall@20": 2.0}}))
        (run / "config.json").write_text(json.dumps({"split_dir": split_dir}))
        if best_pt:
            (run / "best.pt").write_bytes(b"")

    real_split = json.loads((wide.models / "wide" / "config.json").read_text())["split_dir"]
    try:
        forge("other-split", "../../splits/elsewhere", best_pt=True)
        forge("no-weights", real_split, best_pt=False)
        (wide.models / "torn").mkdir()
        (wide.models / "torn" / "summary.json").write_text("{")
        assert pin_warm_start(wide, TrainConfig(distill_from="best", **recipe)).distill_from == want
        forge("forged-best", real_split, best_pt=True)
        assert pin_warm_start(wide, TrainConfig(init_from="float", distill_from="best", **recipe)).distill_from == "forged-best"
    finally:
        for name in ("other-split", "no-weights", "torn", "forged-best"):
            shutil.rmtree(wide.models / name, ignore_errors=True)
    run = train(wide, TrainConfig(run="taught-by-best", init_from="float", distill_from="best", **recipe))
    assert json.loads((run.path / "config.json").read_text())["config"]["distill_from"] == pinned
    assert torch.equal(load_checkpoint(run.path / "last.pt")["teacher"].long(), _ranking_of(wide, want, 8))


def test_cli_distill_from_reaches_the_run_and_a_missing_teacher_is_one_line(wide: WorkDir, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"train": dict(bits=1, epochs=1, float_users=True, distill_top=8, **FAST)}))
    base = ["train", "--init-from", "float", "--workdir", str(wide.root), "--config", str(cfg_file)]
    out = CliRunner().invoke(app, [*base, "--run", "cli-taught", "--distill-from", "wide"])
    assert out.exit_code == 0, out.output
    assert "distilling run wide's ranking: each user's top 8" in out.output
    assert json.loads((wide.models / "cli-taught" / "config.json").read_text())["config"]["distill_from"] == "wide"
    bad = CliRunner().invoke(app, [*base, "--run", "cli-untaught", "--distill-from", "nope"])
    assert bad.exit_code != 0 and "distill_from='nope': no such trained run" in bad.output
    assert not (wide.models / "cli-untaught").exists()


@pytest.mark.slow
@pytest.mark.parametrize("order", [0.0, 1.0])
def test_nproc_2_distilling_run_matches_one_process(parents: WorkDir, tmp_path: Path, order: float) -> None:
    cfg = dict(bits=1, epochs=2, float_users=True, distill_top=8, distill_order_weight=order, init_from="float", **FAST)
    single = train(parents, TrainConfig(run=f"distill-one-{order}", **cfg))
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"train": cfg}))
    hqgnn = Path(sys.executable).parent / "hqgnn"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([str(hqgnn), "train", "--nproc", "2", "--run", f"distill-two-{order}", "--workdir", str(parents.root),
                           "--config", str(cfg_file)], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distilling the parent's ranking: each user's top 8" in done.stderr
    a, b = load_checkpoint(single.path / "last.pt"), load_checkpoint(parents.models / f"distill-two-{order}" / "last.pt")
    assert torch.equal(a["teacher"], b["teacher"])
    torch.testing.assert_close(a["model"]["embedding"], b["model"]["embedding"], atol=1e-4, rtol=0)  # the same teacher draws
