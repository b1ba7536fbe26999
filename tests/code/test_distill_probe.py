"""bench/distill_probe.py: the teacher's positives and the distilled step (a probe of issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bench_scripts import load_bench_script
from split_fixtures import N_ITEMS, N_USERS, tiny_split

from flows.config import TrainConfig
from flows.split_files import load_split
from hqgnn.loss import bpr_loss, l2_penalty
from hqgnn.quant import fake_quantize

pytestmark = pytest.mark.usefixtures("one_thread")


def test_teacher_positives_are_the_best_unseen_items(tmp_path: Path) -> None:
    probe = load_bench_script("distill_probe")
    data = load_split(tiny_split(tmp_path))
    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(N_USERS, 8, generator=g), torch.randn(N_ITEMS, 8, generator=g)
    top = probe.teacher_positives(users, items, data.train, 5, batch=7)  # several batches, the last partial
    assert top.shape == (N_USERS, 5)
    for u in (0, 13, N_USERS - 1):
        seen = set(data.train.indices[data.train.indptr[u]:data.train.indptr[u + 1]].tolist())
        ranked = [i for i in torch.argsort(users[u] @ items.T, descending=True).tolist() if i not in seen]
        assert top[u].tolist() == ranked[:5]


def test_distilled_step_adds_the_teacher_term(tmp_path: Path) -> None:
    probe = load_bench_script("distill_probe")
    data = load_split(tiny_split(tmp_path))
    cfg = TrainConfig(bits=1, estimator="ste", epochs=2, float_users=True, batch_size=64, dim=16, device="cpu")
    init = torch.randn(N_USERS + N_ITEMS, 16, generator=torch.Generator().manual_seed(1))
    probe.SETTINGS.update(top=4, weight=0.5, decay=2.0)
    trainer = probe.DistillTrainer(cfg, data, tmp_path / "run", torch.device("cpu"), initial_embedding=init)
    trainer.quantizing = True
    with pytest.raises(SystemExit, match="warm start"):
        probe.DistillTrainer(cfg, data, tmp_path / "cold", torch.device("cpu"))
    g = torch.Generator().manual_seed(2)
    users, pos, neg = (torch.randint(0, n, (32,), generator=g) for n in (N_USERS, N_ITEMS, N_ITEMS))
    state = trainer.generator.get_state()
    rank = torch.multinomial(trainer.rank_weight.expand(32, -1), 1, generator=trainer.generator).squeeze(1)
    trainer.generator.set_state(state)  # the step draws the same teacher ranks
    with torch.no_grad():
        out = trainer.model.propagate(trainer.adj)
        t = trainer.teacher[users, rank]
        u = out[users]  # float users: not quantized
        p, n, te = (fake_quantize(out[N_USERS + x], 1) for x in (pos, neg, t))
        rows = torch.cat([users, pos + N_USERS, neg + N_USERS, t + N_USERS])
        weight = torch.cat([torch.full((96,), 1 / 32), torch.zeros(32)])
        want = bpr_loss(u, p, n) + 0.5 * bpr_loss(u, te, n) + cfg.l2 * l2_penalty(trainer.model.embedding, rows, weight)
    assert float(trainer.step(users, pos, neg)) == pytest.approx(float(want), rel=1e-5)
