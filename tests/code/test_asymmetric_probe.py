"""bench/asymmetric_probe.py (issue 19): the patch quantizes the item side only, in training
steps and in evaluations, and the test read scores float users against dequantized item codes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from hqgnn.quant import fake_quantize

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("asymmetric_probe", ROOT / "bench" / "asymmetric_probe.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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
