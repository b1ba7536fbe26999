"""bench/scale_precision.py (issue 19): a trained code's test quality with its item scales stored
narrower; the float32 row is the quality benchmark's own test score."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch
from bench_scripts import load_bench_script
from split_fixtures import tiny_split

from flows.config import TrainConfig
from flows.stages.train import train
from flows.workdir import WorkDir

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"batch_size": 256, "lr": 0.02, "device": "cpu", "dim": 16, "patience": 50, "hutchinson_samples": 2, "hutchinson_batches": 1}


@pytest.fixture(scope="module")
def scale_precision() -> ModuleType:
    return load_bench_script("scale_precision")


def test_group_scales_are_each_groups_mean_magnitude(scale_precision: ModuleType) -> None:
    x = torch.tensor([[1.0, -3.0, 0.5, -0.25]])
    torch.testing.assert_close(scale_precision.group_scaled(x, 2), torch.tensor([[2.0, -2.0, 0.375, -0.375]]))
    torch.testing.assert_close(scale_precision.group_scaled(x, 1), torch.full((1, 4), 1.1875) * torch.tensor([[1.0, -1.0, 1.0, -1.0]]))


def test_stored_scales_round_trip_through_their_dtype(scale_precision: ModuleType) -> None:
    scale = torch.tensor([1 / 3, 0.0123456, 7.654321])
    assert torch.equal(scale_precision.stored_scale(scale, "float32"), scale)
    half = scale_precision.stored_scale(scale, "float16")
    assert half.dtype == torch.float32 and not torch.equal(half, scale)
    torch.testing.assert_close(half, scale, rtol=1e-3, atol=0)  # float16: 11 significant bits
    relative = {v: ((scale_precision.stored_scale(scale, v) - scale) / scale).abs().sum() for v in ("float16", "bfloat16")}
    assert relative["bfloat16"] > relative["float16"]  # 8 significant bits: coarser
    assert torch.equal(scale_precision.stored_scale(scale, "none"), torch.ones(3))


def test_rows_score_the_trained_codes_and_count_the_scale_bytes(scale_precision: ModuleType, tmp_path: Path) -> None:
    tiny_split(tmp_path)
    wd = WorkDir(tmp_path)
    run = train(wd, TrainConfig(run="fu", bits=1, epochs=3, float_users=True, **FAST))
    quality = load_bench_script("quality")
    _, want = quality.evaluate_on_test(run.path)
    rows = {r["variant"]: r for r in scale_precision.scale_precision(run.path)}
    assert list(rows) == ["float32", "float16", "bfloat16", "none"]
    assert [rows[v]["bytes_per_item"] for v in rows] == [12, 10, 10, 8]  # 1 bit x 16: one 64-bit word, plus the scale
    assert rows["float32"]["recall@20"] == pytest.approx(want["recall@20"]) and rows["float32"]["ndcg@50"] == pytest.approx(want["ndcg@50"])
    assert all(r["float_users"] and 0.0 <= r["recall@20"] <= 1.0 for r in rows.values())
    grouped = {r["variant"]: r for r in scale_precision.scale_precision(run.path, groups=(1, 4))}
    assert grouped["float16 x 1 groups"]["recall@20"] == pytest.approx(rows["float16"]["recall@20"])  # one group: the row scale
    assert (grouped["float16 x 1 groups"]["bytes_per_item"], grouped["float16 x 4 groups"]["bytes_per_item"]) == (10, 16)
    with pytest.raises(SystemExit, match="must divide"):
        scale_precision.scale_precision(run.path, groups=(3,))
    train(wd, TrainConfig(run="float", bits=32, epochs=1, **FAST))
    with pytest.raises(SystemExit, match="a float32 run has no code scales"):
        scale_precision.scale_precision(wd.models / "float")
