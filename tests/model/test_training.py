"""Training behaviour on a tiny planted dataset: quality above popularity, resume, devices, files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from kill_fixtures import train_killed_after_epoch

from flows.config import TrainConfig
from flows.errors import InputError
from flows.split_files import load_split, write_split
from flows.stages.train import format_epoch, format_refinement, train, write_run_config
from flows.trained_runs import load_run
from flows.workdir import WorkDir
from hqgnn.bits import FLOAT_BITS
from hqgnn.code_refinement import refine_round
from hqgnn.loss import bpr_loss, l2_penalty, sampled_softmax_loss
from hqgnn.metrics import evaluate_ranking
from hqgnn.quant import fake_quantize
from hqgnn.rotation import itq_rotation, quantization_loss, rotate_parameter
from hqgnn.sampler import BPRSampler, hardest_negatives
from hqgnn.synthetic import SyntheticSpec, generate_interactions
from hqgnn.trainer import EVAL_KS, Trainer, resolve_device

pytestmark = pytest.mark.usefixtures("one_thread")

N_USERS, N_ITEMS = 240, 300
FAST = {"batch_size": 512, "lr": 0.01, "device": "cpu", "dim": 32, "eval_every": 1}


def planted_split(root: Path, seed: int = 3) -> Path:
    """A split folder from the synthetic generator: users prefer one of 8 topics (the planted signal)."""
    spec = SyntheticSpec(num_users=N_USERS, num_items=N_ITEMS, mean_events_per_user=24, num_topics=8,
                         topic_affinity=0.9, zipf_exponent=0.5, min_events_per_user=10, seed=seed)
    t = generate_interactions(spec)
    u = np.array([int(s[1:]) for s in t.column("user_id").to_pylist()])
    i = np.array([int(s[1:]) for s in t.column("item_id").to_pylist()])
    key = np.unique(u * N_ITEMS + i)
    u, i = key // N_ITEMS, key % N_ITEMS
    r = np.random.default_rng(seed).random(u.size)
    parts = {"train": r < 0.7, "valid": (r >= 0.7) & (r < 0.85), "test": r >= 0.85}
    split = write_split(root / "splits" / "planted", {k: (u[m], i[m]) for k, m in parts.items()}, N_USERS, N_ITEMS)
    os.symlink("planted", root / "splits" / "current")
    return split


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    root = tmp_path_factory.mktemp("work")
    planted_split(root)
    return WorkDir(root)


def popularity_recall(split_dir: Path) -> float:
    data = load_split(split_dir)
    counts = torch.bincount(data.train.indices, minlength=data.num_items).float()
    return evaluate_ranking(lambda b: counts.expand(b.numel(), -1), data.test, [data.train, data.valid], (20,))["recall@20"]


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize(("bits", "estimator", "candidates", "loss"),
                         [(32, "none", 1, "bpr"), (1, "ste", 1, "bpr"), (1, "gste", 1, "bpr"), (1, "gste", 4, "bpr"),
                          (32, "none", 1, "softmax"), (1, "gste", 1, "softmax"), (32, "none", 1, "bpr4"), (1, "gste", 1, "bpr4")])
def test_training_beats_popularity_by_far(workdir: WorkDir, bits: int, estimator: str, candidates: int, loss: str) -> None:
    cfg = TrainConfig(bits=bits, estimator=estimator, epochs=12, run=f"q{bits}{estimator}{candidates}{loss}", delta_every=3,
                      negative_candidates=candidates, loss=loss.removesuffix("4"), bpr_negatives=4 if loss == "bpr4" else 1,
                      softmax_negatives=128, **FAST)
    res = train(workdir, cfg)
    run = load_run(res.path)
    data = load_split(run.split_dir)
    users, items = run.user_emb, run.item_emb
    if bits != FLOAT_BITS:
        users, items = run.quantize_users().dequantize(), run.quantize_items().dequantize()
    test = evaluate_ranking(lambda b: users[b] @ items.T, data.test, [data.train, data.valid], (20,))["recall@20"]
    pop = popularity_recall(data.path)
    assert test > 1.5 * pop and test > pop + 0.1, (test, pop)
    assert run.best_valid["recall@20"] == pytest.approx(res.best_valid["recall@20"])
    assert (workdir.models / "latest").resolve() == res.path.resolve()
    hist = pq.read_table(res.path / "history.parquet").to_pylist()  # k negatives per positive are not hard-negative candidates
    assert {(r["negative_candidates"], r["bpr_negatives"]) for r in hist} == {(candidates, 4 if loss == "bpr4" else 1)}
    if loss == "bpr4":
        assert "4 negatives per positive" in format_epoch(hist[0], cfg) and "hard negatives" not in format_epoch(hist[0], cfg)
    if loss == "softmax":  # cosine scores: the run ships unit rows, so inner products rank as it trained
        assert torch.allclose(run.user_emb.norm(dim=1), torch.ones(len(run.user_emb)), atol=1e-5)
        assert torch.allclose(run.item_emb.norm(dim=1), torch.ones(len(run.item_emb)), atol=1e-5)


def test_sampled_softmax_loss_is_cross_entropy_over_cosines() -> None:
    g = torch.Generator().manual_seed(0)
    u, p, n = (torch.randn(s, 8, generator=g) for s in (5, 5, 7))
    logits = torch.cat([torch.nn.functional.cosine_similarity(u, p).unsqueeze(1),
                        torch.nn.functional.normalize(u, dim=1) @ torch.nn.functional.normalize(n, dim=1).T], dim=1) / 0.2
    want = torch.nn.functional.cross_entropy(logits, torch.zeros(5, dtype=torch.long))
    assert sampled_softmax_loss(u, p, n, 0.2) == pytest.approx(float(want), rel=1e-5)
    assert sampled_softmax_loss(3 * u, p, 0.5 * n, 0.2) == pytest.approx(float(want), rel=1e-5)  # norms do not count
    assert sampled_softmax_loss(u, u, n, 0.2) < sampled_softmax_loss(u, -u, n, 0.2)  # the positive pulled up lowers it


def test_softmax_loss_rejects_hard_negatives() -> None:
    with pytest.raises(ValueError, match="BPR option"):
        TrainConfig(loss="softmax", negative_candidates=4)
    with pytest.raises(ValueError, match="bpr_negatives"):
        TrainConfig(bpr_negatives=4, negative_candidates=4)


def test_bpr_over_k_negatives_is_the_mean_of_k_single_negative_losses() -> None:
    g = torch.Generator().manual_seed(1)
    u, p, n = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g), torch.randn(6, 3, 8, generator=g)
    want = sum(bpr_loss(u, p, n[:, j]) for j in range(3)) / 3
    assert bpr_loss(u, p, n) == pytest.approx(float(want), rel=1e-6)


@pytest.mark.parametrize("rows", [12, 40])  # fewer rows than the table: gathered; more: summed per node over the table
def test_l2_penalty_is_half_the_weighted_squared_norms_of_the_batch_rows(rows: int) -> None:
    g = torch.Generator().manual_seed(3)
    table = torch.randn(20, 4, generator=g, requires_grad=True)
    idx, weight = torch.randint(0, 20, (rows,), generator=g), torch.rand(rows, generator=g)
    want = 0.5 * sum(float(w) * float(table.detach()[i].pow(2).sum()) for i, w in zip(idx, weight, strict=True))
    got = l2_penalty(table, idx, weight)
    assert float(got.detach()) == pytest.approx(want, rel=1e-5)
    got.backward()
    node_weight = torch.zeros(20).index_add_(0, idx, weight)
    assert torch.allclose(table.grad, node_weight[:, None] * table.detach(), atol=1e-6)  # repeats add up, untouched rows get none


def test_run_files_history_and_loaded_run(workdir: WorkDir) -> None:
    res = train(workdir, TrainConfig(bits=4, estimator="gste", epochs=3, run="files", delta_every=2, **FAST))
    for name in ("config.json", "last.pt", "best.pt", "history.parquet", "history.json", "summary.json"):
        assert (res.path / name).is_file(), name
    hist = pq.read_table(res.path / "history.parquet").to_pylist()
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    for col in ("loss", "valid_recall@20", "valid_ndcg@20", "delta_user", "delta_item", "trace_user", "trace_item", "epoch_seconds", "eta"):
        assert col in hist[0]
    assert all(r["delta_user"] > 0 and r["trace_user"] > 0 for r in hist)
    assert hist[-1]["eta"] == 0.0
    assert json.loads((res.path / "history.json").read_text())[0]["epoch"] == 1
    summary = json.loads((res.path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["best_epoch"] == res.best_epoch
    run = load_run(res.path)
    assert run.user_emb.shape == (N_USERS, 32) and run.item_emb.shape == (N_ITEMS, 32)
    q = run.quantize_items()
    assert q is not None and q.bits == 4 and q.codes.dtype == torch.int8
    assert int(q.codes.min()) >= -8 and int(q.codes.max()) <= 7
    with pytest.raises(InputError, match="already exists"):
        train(workdir, TrainConfig(bits=4, estimator="gste", epochs=3, run="files", **FAST))


@pytest.mark.parametrize(("patience", "epochs_run", "status"), [(2, 3, "early_stopped"), (None, 6, "completed")],
                         ids=["patience-2", "patience-none"])
def test_patience_stops_after_that_many_evaluations_without_a_gain_and_none_never_stops(
    workdir: WorkDir, monkeypatch: pytest.MonkeyPatch, patience: int | None, epochs_run: int, status: str,
) -> None:
    scripted = iter([0.5, 0.4, 0.4, 0.45, 0.3, 0.3])  # validation Recall@20 per epoch: one gain, at epoch 1, then none

    def evaluate(self: Trainer, split: str = "valid") -> dict[str, float]:
        value = next(scripted) if split == "valid" else 0.0
        return {f"{metric}@{k}": value for metric in ("recall", "ndcg") for k in EVAL_KS}

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    res = train(workdir, TrainConfig(bits=32, epochs=6, patience=patience, run=f"patience-{patience}", **FAST))
    assert (res.epochs_run, res.status, res.best_epoch) == (epochs_run, status, 1)
    assert res.best_valid["recall@20"] == 0.5  # the best epoch is kept either way


@pytest.mark.parametrize(("warmup", "hard"), [(0, {}), (2, {}), (1, {"negative_candidates": 4, "hard_negatives_from_epoch": 1})],
                         ids=["quantized-throughout", "killed-at-the-float-warmup-end", "hard-negatives"])
def test_resume_after_a_kill_ends_where_an_uninterrupted_run_ends(
    workdir: WorkDir, monkeypatch: pytest.MonkeyPatch, warmup: int, hard: dict[str, int]
) -> None:
    cfg = dict(bits=1, estimator="gste", epochs=5, delta_every=2, patience=50, float_warmup_epochs=warmup, **hard, **FAST)
    tag = f"{warmup}{'h' if hard else ''}"
    full = train(workdir, TrainConfig(run=f"straight{tag}", **cfg))

    saves = train_killed_after_epoch(workdir, TrainConfig(run=f"killed{tag}", **cfg), 2, monkeypatch)  # right after the epoch-2 checkpoint
    resumed = train(workdir, TrainConfig(resume=True, device="cpu"))  # newest run; its own config

    assert saves == [1, 2]
    a = torch.load(full.path / "last.pt", weights_only=False)
    b = torch.load(resumed.path / "last.pt", weights_only=False)
    assert b["epoch"] == 5 and len(b["history"]) == 5
    assert torch.equal(a["model"]["embedding"], b["model"]["embedding"])
    assert a["delta"] == b["delta"]
    assert resumed.best_valid == full.best_valid and resumed.best_epoch == full.best_epoch
    nan_none = lambda v: None if isinstance(v, float) and v != v else v  # noqa: E731  (NaN != NaN)
    strip = lambda h: [{k: nan_none(v) for k, v in r.items() if k not in ("epoch_seconds", "eta")} for r in h]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    assert [r["quantized"] for r in b["history"]] == [e >= warmup for e in range(5)]
    k, start = hard.get("negative_candidates", 1), hard.get("hard_negatives_from_epoch", 0)
    assert [r["negative_candidates"] for r in b["history"]] == [k if e >= start else 1 for e in range(5)]


def test_float_warmup_then_itq_rotation_keeps_float_scores_and_lowers_sign_loss(workdir: WorkDir) -> None:
    cfg = TrainConfig(bits=1, estimator="gste", epochs=4, float_warmup_epochs=2, delta_every=1, run="warmup", **FAST)
    data = load_split(workdir.splits / "planted")
    trainer = Trainer(cfg, data, workdir.models / "warmup-probe", torch.device("cpu"))
    for u, p, n in trainer.sampler.epoch(cfg.batch_size):  # one float epoch: Adam has moments to rotate
        trainer.step(u, p, n)
    users, items = trainer.embeddings()
    rotate_parameter(trainer.model.embedding, itq_rotation(torch.cat(trainer.embeddings()), seed=cfg.seed), trainer.optimizer)
    r_users, r_items = trainer.embeddings()
    assert torch.allclose(r_users @ r_items.T, users @ items.T, atol=1e-4)
    assert quantization_loss(torch.cat([r_users, r_items])) < quantization_loss(torch.cat([users, items]))
    m = trainer.optimizer.state[trainer.model.embedding]["exp_avg_sq"]
    assert bool((m >= 0).all())

    hist = json.loads((train(workdir, cfg).path / "history.json").read_text())
    assert [r["quantized"] for r in hist] == [False, False, True, True]
    assert [r["delta_user"] > 0 for r in hist] == [False, False, True, True]  # δ only once quantizing
    nan_to_float = {k: (float("nan") if v is None else v) for k, v in hist[0].items()}
    assert "float warm-up" in format_epoch(nan_to_float, cfg)
    assert "δ u" in format_epoch(hist[2], cfg) and "float warm-up" not in format_epoch(hist[2], cfg)


def test_resume_without_a_run_and_missing_split(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no run to resume"):
        train(WorkDir(tmp_path), TrainConfig(resume=True, device="cpu"))
    (tmp_path / "split").mkdir()
    with pytest.raises(InputError, match="missing train.parquet"):
        load_split(tmp_path / "split")


def test_sampler_is_seeded_and_avoids_positives(workdir: WorkDir) -> None:
    data = load_split(workdir.split())
    draw = lambda: BPRSampler(data.train, torch.Generator().manual_seed(5)).sample(4000)  # noqa: E731
    (u1, p1, n1), (u2, _, n2) = draw(), draw()
    assert torch.equal(u1, u2) and torch.equal(n1, n2)
    dense = data.train.dense_rows(torch.arange(N_USERS))
    assert bool(dense[u1, p1].all())  # positives are train items of the user
    assert float(dense[u1, n1].float().mean()) < 0.002  # negatives (almost) never are


def test_sampler_draws_negative_candidates_for_the_same_triples(workdir: WorkDir) -> None:
    data = load_split(workdir.split())
    draw = lambda k: BPRSampler(data.train, torch.Generator().manual_seed(5)).sample(4000, candidates=k)  # noqa: E731
    (u1, p1, n1), (uk, pk, nk) = draw(1), draw(6)
    assert n1.shape == (4000,) and nk.shape == (4000, 6)
    assert torch.equal(u1, uk) and torch.equal(p1, pk)  # users and positives are drawn first, alike
    assert torch.equal(n1, BPRSampler(data.train, torch.Generator().manual_seed(5)).sample(4000)[2])  # k = 1: as always
    assert int(nk.min()) >= 0 and int(nk.max()) < N_ITEMS
    dense = data.train.dense_rows(torch.arange(N_USERS))
    assert float(dense[uk[:, None].expand_as(nk), nk].float().mean()) < 0.002  # candidates avoid positives too
    assert len({tuple(r) for r in nk[:50].tolist()}) == 50  # independent draws, not one row repeated
    with pytest.raises(ValueError, match="candidates"):
        BPRSampler(data.train, torch.Generator()).sample(10, candidates=0)


def test_hardest_negative_is_the_candidate_scored_highest() -> None:
    g = torch.Generator().manual_seed(0)
    user, rows = torch.randn(64, 8, generator=g), torch.randn(64, 5, 8, generator=g)
    cands = torch.randint(0, 1000, (64, 5), generator=g)
    got = hardest_negatives(user, cands, rows)
    want = [int(cands[b, max(range(5), key=lambda k: float(user[b] @ rows[b, k]))]) for b in range(64)]
    assert got.tolist() == want


def test_trainer_picks_hard_negatives_with_the_scores_it_trains(workdir: WorkDir) -> None:
    data = load_split(workdir.splits / "planted")
    cfg = TrainConfig(bits=1, estimator="ste", epochs=2, negative_candidates=8, **FAST)
    trainer = Trainer(cfg, data, workdir.models / "probe-dns", torch.device("cpu"))
    users, _, cands = trainer.sampler.sample(512, candidates=8)
    with torch.no_grad():
        out = trainer.model.propagate(trainer.adj)
    u, c = out[users], out[cands + data.num_users]
    by_float = cands.gather(1, torch.einsum("bd,bkd->bk", u, c).argmax(1, keepdim=True)).squeeze(1)
    qu, qc = fake_quantize(u, 1), fake_quantize(c.flatten(0, 1), 1).view_as(c)
    by_codes = cands.gather(1, torch.einsum("bd,bkd->bk", qu, qc).argmax(1, keepdim=True)).squeeze(1)
    assert not torch.equal(by_float, by_codes)  # the two scores do disagree on some triples
    trainer.quantizing = True
    assert torch.equal(trainer._hardest(out, users, cands), by_codes)
    trainer.quantizing = False  # a float warm-up epoch picks by the float scores
    assert torch.equal(trainer._hardest(out, users, cands), by_float)


def test_hard_negatives_start_at_their_epoch_and_show_in_history(workdir: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[int] = []
    real_epoch = BPRSampler.epoch

    def spy(self: BPRSampler, batch_size: int, candidates: int = 1):  # type: ignore[no-untyped-def]
        drawn.append(candidates)
        return real_epoch(self, batch_size, candidates)

    monkeypatch.setattr(BPRSampler, "epoch", spy)
    cfg = TrainConfig(bits=1, estimator="ste", epochs=4, negative_candidates=6, hard_negatives_from_epoch=2,
                      float_warmup_epochs=1, run="dns-from-2", **FAST)
    res = train(workdir, cfg)
    assert drawn == [1, 1, 6, 6]
    hist = json.loads((res.path / "history.json").read_text())
    assert [r["negative_candidates"] for r in hist] == [1, 1, 6, 6]
    assert "hard negatives of 6" in format_epoch(hist[-1], cfg) and "hard negatives" not in format_epoch(hist[0], cfg)
    with pytest.raises(ValueError, match="needs negative_candidates > 1"):
        TrainConfig(hard_negatives_from_epoch=3)


@pytest.mark.gpu
def test_trains_on_cuda(workdir: WorkDir) -> None:
    res = train(workdir, TrainConfig(bits=1, estimator="gste", epochs=2, run="cuda", **{**FAST, "device": "cuda"}))
    assert res.best_valid["recall@20"] > 0


def test_gste_with_a_delta_per_dimension_trains_and_resumes_its_deltas(workdir: WorkDir) -> None:
    cfg = TrainConfig(bits=1, estimator="gste", epochs=3, delta_every=2, delta_granularity="dimension", run="perdim", **FAST)
    res = train(workdir, cfg)
    state = torch.load(res.path / "last.pt", weights_only=False)
    delta = state["delta"]
    assert len(delta["user_dims"]) == 32 and len(delta["item_dims"]) == 32
    assert min(delta["user_dims"]) >= 0 and max(delta["user_dims"]) > 0
    assert delta["user"] == pytest.approx(sum(delta["user_dims"]) / 32)
    hist = json.loads((res.path / "history.json").read_text())
    assert all(r["delta_user"] > 0 for r in hist)
    assert "δ (mean of dims) u" in format_epoch(hist[-1], cfg)
    trainer = Trainer(cfg, load_split(workdir.splits / "planted"), res.path, torch.device("cpu"))
    trainer.restore()
    du, di = trainer.estimator_delta
    assert isinstance(du, torch.Tensor) and du.shape == (32,) and isinstance(di, torch.Tensor)
    assert du.tolist() == pytest.approx(list(delta["user_dims"]))


def test_per_dimension_and_table_delta_share_the_hutchinson_traces(workdir: WorkDir) -> None:
    data = load_split(workdir.splits / "planted")
    out = {}
    for granularity in ("table", "dimension"):
        cfg = TrainConfig(bits=1, estimator="gste", epochs=2, delta_granularity=granularity, **FAST)
        trainer = Trainer(cfg, data, workdir.models / f"probe-{granularity}", torch.device("cpu"))
        out[granularity] = trainer._estimate_delta(0)
    table, dims = out["table"], out["dimension"]
    assert table.trace_user == pytest.approx(dims.trace_user) and table.trace_item == pytest.approx(dims.trace_item)
    assert table.user_dims == () and len(dims.user_dims) == 32
    assert len(set(dims.user_dims)) > 1  # the dimensions do differ


def test_user_code_refinement_keeps_the_best_validated_round_in_best_pt(workdir: WorkDir) -> None:
    rounds: list[dict[str, object]] = []
    cfg = TrainConfig(bits=1, estimator="gste", epochs=4, float_warmup_epochs=2, refine_user_codes=3, run="refined", **FAST)
    data, run_dir = load_split(workdir.split()), workdir.models / "refined"
    run_dir.mkdir(parents=True)
    write_run_config(run_dir, cfg, data, workdir.split())
    trainer = Trainer(cfg, data, run_dir, torch.device("cpu"), on_refine=rounds.append)
    fit = trainer.fit()
    state = torch.load(run_dir / "best.pt", weights_only=False)
    record = state["code_refinement"]
    assert [r["round"] for r in rounds] == [r["round"] for r in record["rounds"]] and 1 <= len(rounds) <= 3
    assert record["rounds"][0]["flips"] > 0
    valids = [record["valid_before"]["recall@20"]] + [r["valid_recall@20"] for r in record["rounds"]]
    assert record["rounds_kept"] == max(range(len(valids)), key=lambda k: (valids[k], -k))  # first best, 0 = as trained
    assert fit.best_valid["recall@20"] == state["valid"]["recall@20"] == max(valids)
    # only user signs differ from the encoder's outputs at the best epoch; items are untouched
    trainer.model.load_state_dict(state["model"])  # the weights of the best epoch
    users, items = trainer.embeddings()
    assert torch.equal(state["user_emb"].abs(), users.abs()) and torch.equal(state["item_emb"], items)
    flipped = int((torch.sign(state["user_emb"]) != torch.sign(users)).sum())
    assert flipped == sum(r["flips"] for r in record["rounds"][: record["rounds_kept"]])
    run = load_run(run_dir)
    codes = run.quantize_users()
    assert codes is not None and torch.equal(codes.dequantize(), fake_quantize(state["user_emb"], 1))
    assert run.code_refinement is not None and run.code_refinement["rounds_kept"] == record["rounds_kept"]
    assert torch.equal(run.float_user_emb, users) and torch.equal(run.user_emb, state["user_emb"])  # float scoring: the encoder's
    assert "code refinement round 1/3" in format_refinement(rounds[0])


def test_a_kill_during_code_refinement_resumes_to_the_same_codes(workdir: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = dict(bits=1, estimator="ste", epochs=3, refine_user_codes=3, patience=50, **FAST)
    full = train(workdir, TrainConfig(run="refine-straight", **cfg))
    real, calls = refine_round, []

    def die_in_round_2(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr("hqgnn.code_refinement.refine_round", die_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        train(workdir, TrainConfig(run="refine-killed", **cfg))
    assert "code_refinement" not in torch.load(workdir.models / "refine-killed" / "best.pt", weights_only=False)
    monkeypatch.setattr("hqgnn.code_refinement.refine_round", real)
    resumed = train(workdir, TrainConfig(resume=True, run="refine-killed", device="cpu"))
    a = torch.load(full.path / "best.pt", weights_only=False)
    b = torch.load(resumed.path / "best.pt", weights_only=False)
    assert torch.equal(a["user_emb"], b["user_emb"]) and a["code_refinement"]["rounds_kept"] == b["code_refinement"]["rounds_kept"]
    assert resumed.best_valid == full.best_valid
    summary = json.loads((resumed.path / "summary.json").read_text())
    assert summary["code_refinement"]["rounds_kept"] == b["code_refinement"]["rounds_kept"]
    assert summary["best_valid"]["recall@20"] == b["valid"]["recall@20"]
    again = train(workdir, TrainConfig(resume=True, run="refine-killed", device="cpu"))  # done: not refined twice
    c = torch.load(again.path / "best.pt", weights_only=False)
    assert torch.equal(b["user_emb"], c["user_emb"]) and again.best_valid == resumed.best_valid


def test_code_refinement_is_for_1_bit_runs_only(workdir: WorkDir) -> None:
    """Other widths ignore ``refine_user_codes``, so one train config serves a sweep over widths."""
    res = train(workdir, TrainConfig(bits=4, estimator="ste", epochs=2, refine_user_codes=3, run="refine-4bit", **FAST))
    assert "code_refinement" not in torch.load(res.path / "best.pt", weights_only=False)
    assert json.loads((res.path / "summary.json").read_text())["code_refinement"] is None
