"""bench/asymmetric_probe.py (issue 19): the patch quantizes the item side only, in training
steps and in evaluations, and the test read scores float users against dequantized item codes."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch
from bench_scripts import load_bench_script

from hqgnn.quant import fake_quantize

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_bench_script("asymmetric_probe")


def test_items_only_quantizes_every_second_call(probe: ModuleType) -> None:
    """The trainer quantizes users, then items (a step, an evaluation): only the item call quantizes."""
    fq = probe.items_only(fake_quantize)
    users, items = torch.randn(5, 8), torch.randn(7, 8)
    for _ in range(3):  # the alternation holds over many step/evaluation pairs
        u, i = fq(users, 1), fq(items, 1)
        assert torch.equal(u, users)
        assert torch.equal(i, fake_quantize(items, 1)) and not torch.equal(i, items)


def test_refinement_is_switched_off_for_frontier_points(probe: ModuleType) -> None:
    settings = probe.no_user_refinement(lambda *a, **k: {"bits": 1, "refine_user_codes": 8, "dim": a[0]})
    assert settings(64) == {"bits": 1, "refine_user_codes": 0, "dim": 64}


def test_ptq_scores_float_users_against_quantized_items(probe: ModuleType) -> None:
    from argparse import Namespace

    import numpy as np

    from hqgnn.interactions import InteractionMatrix
    from hqgnn.metrics import evaluate_ranking

    g = torch.Generator().manual_seed(0)
    users, items = torch.randn(40, 16, generator=g), torch.randn(60, 16, generator=g)
    rng = np.random.default_rng(0)

    def pairs(n: int) -> InteractionMatrix:
        return InteractionMatrix.from_pairs(rng.integers(0, 40, n), rng.integers(0, 60, n), 40, 60)

    data = Namespace(train=pairs(200), valid=pairs(40), test=pairs(80))
    asym = probe.post_training_quantization(users, items, 1, data)["as_trained"]
    by_hand = evaluate_ranking(lambda b: users[b] @ probe.quantize(items, 1).dequantize().T, data.test, [data.train, data.valid], (20, 50), 1024)
    assert asym == pytest.approx(by_hand)
    symmetric = probe.quality.post_training_quantization(users, items, 1, data)["as_trained"]  # the unpatched harness: both sides coded
    assert symmetric != pytest.approx(asym)
