"""Foundation: stage configs reject bad input, atomic writes never leave half outputs, the
synthetic log has the structure it promises, the CLI reports errors in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from flows.config import IngestConfig, PipelineConfig, PrepareConfig, TrainConfig
from flows.workdir import WorkDir, atomic_dir, switch_pointer
from hqgnn.files import atomic_write_json
from hqgnn.synthetic import SyntheticSpec, generate_interactions


def test_configs_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        PrepareConfig(kcore=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        PrepareConfig(train_ratio=0.95, valid_ratio=0.1)
    with pytest.raises(ValidationError, match="unknown column role"):
        IngestConfig(columns={"usr": "a"})
    with pytest.raises(ValidationError, match="estimator must be 'none'"):
        TrainConfig(bits=32, estimator="gste")
    with pytest.raises(ValidationError, match="needs an estimator"):
        TrainConfig(bits=1, estimator="none")
    assert TrainConfig(bits=32).estimator == "none"
    with pytest.raises(ValidationError, match="float_warmup_epochs=5 must be < epochs=5"):
        TrainConfig(bits=1, epochs=5, float_warmup_epochs=5)
    assert TrainConfig(bits=32, epochs=5, float_warmup_epochs=5).float_warmup_epochs == 5  # a float sweep cell: no quantizer
    assert TrainConfig(bits=1, epochs=5, float_warmup_epochs=4).float_warmup_epochs == 4
    assert TrainConfig(bits=4).estimator == "gste"
    cfg = TrainConfig(bits=4)
    with pytest.raises(ValidationError):
        cfg.bits = 8  # type: ignore[misc]  # frozen


def test_pipeline_config_round_trips() -> None:
    cfg = PipelineConfig(prepare=PrepareConfig(kcore_user=5), train=TrainConfig(bits=2, estimator="ste"))
    again = PipelineConfig(**cfg.model_dump())
    assert again == cfg


def test_cli_overrides_rederive_defaults_but_keep_the_file(tmp_path: Path) -> None:
    from flows.cli import load_pipeline_config, with_overrides

    # --bits 32 alone: the default estimator (gste for 1 bit) must follow the new bit width.
    assert with_overrides(PipelineConfig().train, bits=32).estimator == "none"
    assert with_overrides(PipelineConfig().train, bits=4).estimator == "gste"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  estimator: ste\n  lr: 0.005\n")
    train = with_overrides(load_pipeline_config(cfg).train, bits=2, epochs=3)
    assert (train.bits, train.estimator, train.lr, train.epochs) == (2, "ste", 0.005, 3)


def test_atomic_dir_keeps_last_good_output_on_failure(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("stage failed midway")
    assert (final / "a.txt").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp leftovers
    with atomic_dir(final) as tmp:
        (tmp / "a.txt").write_text("v2")
    assert (final / "a.txt").read_text() == "v2"


def test_pointer_switch_and_resolution(tmp_path: Path) -> None:
    wd = WorkDir(tmp_path)
    with pytest.raises(FileNotFoundError, match="hqgnn prepare"):
        wd.split()
    for name in ("s1", "s2"):
        (wd.splits / name).mkdir(parents=True)
        switch_pointer(wd.splits / "current", wd.splits / name)
        assert wd.split() == (wd.splits / name).resolve()
    assert os.readlink(wd.splits / "current") == "s2"  # relative: the work dir can move


def test_atomic_write_json(tmp_path: Path) -> None:
    atomic_write_json(tmp_path / "m.json", {"b": (1, 2), "a": tmp_path})
    assert (tmp_path / "m.json").read_text().startswith('{\n  "a":')


def test_synthetic_log_is_seeded_and_realistic() -> None:
    spec = SyntheticSpec(num_users=400, num_items=300, bad_rows=4)
    a, b = generate_interactions(spec), generate_interactions(spec)
    assert a.equals(b)
    assert not a.equals(generate_interactions(SyntheticSpec(num_users=400, num_items=300, seed=8)))
    df = a.to_pandas().iloc[:-4]
    counts = df["item_id"].value_counts().to_numpy()
    assert counts[: len(counts) // 10].sum() > 0.3 * counts.sum()  # head items dominate (power law)
    per_user = df.groupby("user_id").size()
    assert per_user.min() >= spec.min_events_per_user - 1
    ts = df["timestamp"].astype(np.int64)
    assert (df.assign(ts=ts).groupby("user_id")["ts"].apply(lambda s: s.is_monotonic_increasing)).all()
    bad = a.to_pandas().iloc[-4:]
    assert (bad["user_id"] == "").any() and (bad["timestamp"] == "not-a-time").any()


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("prepare:\n  kcore: 3\n")
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "prepare", "--workdir", str(tmp_path), "--config", str(cfg)],
        capture_output=True, text=True,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "prepare.kcore" in out.stderr and "bad.yaml" in out.stderr
    assert "error" in out.stderr.strip().splitlines()[0]
