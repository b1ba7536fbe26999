"""``float_users``: float32 user vectors against b-bit item codes, in the recipe, the training
step, validation, GSTE's δ, the retriever and the evaluation variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from split_fixtures import N_ITEMS, N_USERS, tiny_split

from flows.config import TrainConfig
from flows.split_files import load_split
from flows.stages.train import train
from flows.trained_runs import load_run
from flows.workdir import WorkDir
from hqgnn.codes import CodeTable
from hqgnn.delta import estimate_delta
from hqgnn.evaluation import build_variants
from hqgnn.loss import bpr_loss, l2_penalty
from hqgnn.metrics import evaluate_ranking, masked_topk
from hqgnn.quant import fake_quantize, quantize
from hqgnn.recipe import TrainRecipe
from hqgnn.retrieval import Retriever
from hqgnn.sampler import BPRSampler
from hqgnn.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = {"batch_size": 256, "lr": 0.01, "device": "cpu", "dim": 32, "eval_every": 1}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    root = tmp_path_factory.mktemp("work")
    tiny_split(root)
    return WorkDir(root)


def test_recipe_widths() -> None:
    assert (TrainRecipe(bits=1).user_bits, TrainRecipe(bits=1).quantizes_users) == (1, True)
    fu = TrainRecipe(bits=2, float_users=True)
    assert (fu.user_bits, fu.quantizes_users, fu.quantized) == (32, False, True)
    assert fu.delta_settings()["quantize_users"] is False
    # a dump re-validated with other bits keeps float users (what sweeps do with a config)
    assert TrainRecipe(**{**fu.model_dump(), "bits": 4, "estimator": "gste"}).user_bits == 32


def _trainer(workdir: WorkDir, float_users: bool) -> Trainer:
    cfg = TrainConfig(bits=1, estimator="ste", epochs=2, float_users=float_users, **FAST)
    data = load_split(workdir.splits / "tiny")
    trainer = Trainer(cfg, data, workdir.root / f"step-{float_users}", torch.device("cpu"))
    trainer.quantizing = True
    return trainer


@pytest.mark.parametrize("float_users", [True, False])
def test_step_quantizes_the_items_only_with_float_users(workdir: WorkDir, float_users: bool) -> None:
    trainer = _trainer(workdir, float_users)
    g = torch.Generator().manual_seed(0)
    users, pos, neg = (torch.randint(0, n, (64,), generator=g) for n in (N_USERS, N_ITEMS, N_ITEMS))
    with torch.no_grad():
        out = trainer.model.propagate(trainer.adj)
        u, p, n = out[users], out[N_USERS + pos], out[N_USERS + neg]
        items = fake_quantize(torch.cat([p, n]), 1)
        u = u if float_users else fake_quantize(u, 1)
        rows = torch.cat([users, pos + N_USERS, neg + N_USERS])
        reg = l2_penalty(trainer.model.embedding, rows, torch.full((rows.numel(),), 1.0 / 64))
        want = bpr_loss(u, *items.split(64)) + trainer.cfg.l2 * reg
    got = trainer.step(users, pos, neg)
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_float_users_run_validates_and_ships_float_users(workdir: WorkDir) -> None:
    res = train(workdir, TrainConfig(bits=1, estimator="gste", epochs=3, delta_every=1, float_users=True,
                                     refine_user_codes=4, run="fu", **FAST))
    run = load_run(res.path)
    assert run.user_bits == 32 and run.quantize_users() is None
    assert run.code_refinement is None  # no user codes to refine, whatever refine_user_codes says
    users, items = run.code_tables()
    assert (users.bits, items.bits) == (32, 1)
    np.testing.assert_array_equal(users.values, run.user_emb.numpy())
    data = load_split(run.split_dir)
    qi = quantize(run.item_emb, 1).dequantize()
    valid = evaluate_ranking(lambda b: run.user_emb[b] @ qi.T, data.valid, [data.train], (20, 50), 1024)
    assert run.best_valid["recall@20"] == pytest.approx(valid["recall@20"], abs=1e-6)  # validation scored float users


def test_delta_sees_float_users_when_asked(workdir: WorkDir) -> None:
    data = load_split(workdir.splits / "tiny")
    g = torch.Generator().manual_seed(1)
    users, items = torch.randn(N_USERS, 16, generator=g), torch.randn(N_ITEMS, 16, generator=g)

    def delta(quantize_users: bool) -> float:
        sampler = BPRSampler(data.train, torch.Generator().manual_seed(0), torch.device("cpu"))
        return estimate_delta(users, items, sampler, bits=1, batch_size=256, batches=2, samples=4, seed=3,
                              quantize_users=quantize_users).item

    assert delta(True) != pytest.approx(delta(False))  # the item Hessian depends on what the loss sees of the users


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_retriever_scores_float_users_against_item_codes(bits: int) -> None:
    g = torch.Generator().manual_seed(bits)
    u, i = torch.randn(40, 70, generator=g), torch.randn(500, 70, generator=g)
    q = quantize(i, bits)
    users, items = CodeTable.from_float(u.numpy()), CodeTable.from_values(q.codes.numpy(), q.scale.numpy(), bits)
    want = u @ q.dequantize().T
    r = Retriever(users, items, item_block=64)  # several blocks, the last one partial
    assert (r.bits, r.user_bits, r.mixed) == (bits, 32, True)
    torch.testing.assert_close(r.scores(np.arange(40)), want, rtol=1e-5, atol=2e-5 * float(want.abs().max()))  # users on the exact grid
    got, _ = r.topk(np.arange(40), 10)
    np.testing.assert_array_equal(got, masked_topk(r.scores(np.arange(40)), None, 10).numpy())
    if bits == 1:  # sign codes stay packed: 8 B + scale per item, unpacked one block at a time
        assert r.item_nbytes() == {"packed": 500 * 16, "scale": 500 * 4, "unpacked": 0}
    with pytest.raises(ValueError, match="1-bit codes on both sides"):
        Retriever(users, items, "hamming")
    with pytest.raises(ValueError, match="differ"):
        Retriever(items, users)  # item codes as users of float items: not a width hqgnn ships


def test_evaluation_variants_of_a_float_users_run() -> None:
    g = torch.Generator().manual_seed(5)
    u, i = torch.randn(30, 64, generator=g), torch.randn(80, 64, generator=g)
    q = quantize(i, 1)
    variants = build_variants(u, i, CodeTable.from_float(u.numpy()), CodeTable.from_values(q.codes.numpy(), q.scale.numpy(), 1))
    assert [v.name for v in variants] == ["float", "codes"]  # no Hamming ranking: the users are not codes
    codes = variants[1]
    assert (codes.bits, codes.bytes_per_item, codes.search_bytes_per_item) == (1, 12, 12)
    torch.testing.assert_close(codes.score_fn(torch.arange(30)), u @ q.dequantize().T, rtol=1e-5, atol=1e-4)


def test_cli_float_users_flag_reaches_the_run(workdir: WorkDir, tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from flows.cli import app

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"train": dict(bits=2, epochs=1, **FAST)}))
    out = CliRunner().invoke(app, ["train", "--run", "fu-cli", "--float-users", "--workdir", str(workdir.root), "--config", str(cfg_file)])
    assert out.exit_code == 0, out.output
    assert "(items; float32 users)" in out.output
    assert load_run(workdir.models / "fu-cli").user_bits == 32
