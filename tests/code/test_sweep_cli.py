"""`hqgnn sweep`: grid options are checked before Prefect starts, reach the flow `hqgnn-sweep`
as its parameters (options over the config file), and the comparison table is printed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.config import EvaluateConfig, TrainConfig


def _workdir(tmp_path: Path) -> Path:
    """A work directory with an (empty) current split snapshot: enough for the CLI's checks."""
    wd = tmp_path / "work"
    (wd / "splits" / "s1").mkdir(parents=True)
    os.symlink("s1", wd / "splits" / "current")
    return wd


@pytest.mark.parametrize(("args", "message"), [
    (["--bits", "1,3"], "--bits: 3 is not one of 1, 2, 4, 8, 32"),
    (["--bits", "one"], "--bits: expected comma-separated int values"),
    (["--bits", "4,4"], "--bits: 4 given twice"),
    (["--bits", ","], "--bits: give at least one value"),
    (["--estimator", "gste,none"], "--estimator: 'none' is not one of ste, gste"),
    (["--seeds", "1,x"], "--seeds: expected comma-separated int values"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--k", "0"], "ks must be positive"),
    (["--axis", "bits=1,2"], "--axis: sweep axis 'bits': not a train setting that can vary"),
    (["--axis", "nproc=1,2"], "--axis: sweep axis 'nproc': not a train setting that can vary"),
    (["--axis", "lr"], "--axis: expected KEY=V1,V2"),
    (["--axis", "lr=0.1,0.1"], "--axis: sweep axis 'lr': give distinct values"),
    (["--dims", "8,0"], "sweep grid: dim: Input should be greater than or equal to 1"),
    (["--axis", "lr_schedule=cosine,wiggly"], "sweep grid: lr_schedule"),
])
def test_invalid_grids_fail_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str) -> None:
    import flows.sweep

    monkeypatch.setattr(flows.sweep, "hqgnn_sweep", lambda **kw: pytest.fail("the flow must not start"))
    res = CliRunner().invoke(app, ["sweep", *args, "--workdir", str(_workdir(tmp_path))])
    assert res.exit_code == 1
    assert message in res.stderr and "Traceback" not in res.stderr


def test_without_a_split_it_says_to_prepare(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["sweep", "--workdir", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "hqgnn prepare" in res.stderr


def test_options_become_the_flow_parameters_and_the_table_is_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.sweep

    got: dict[str, Any] = {}

    def fake_sweep(**kw: Any) -> str:
        got.update(kw)
        out = Path(kw["workdir"]) / "reports" / "sweep-x"
        out.mkdir(parents=True)
        (out / "comparison.md").write_text("# Sweep x\n| bits | estimator |\n")
        return str(out)

    monkeypatch.setattr(flows.sweep, "hqgnn_sweep", fake_sweep)
    wd = _workdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"train": {"dim": 16, "epochs": 9, "seed": 7}, "evaluate": {"ks": [5]}}))
    res = CliRunner().invoke(app, ["sweep", "--bits", "1, 4,32", "--estimator", "ste", "--epochs", "3",
                                   "--address", "tcp://sched:8786", "--workers", "3", "--threads", "1",
                                   "--workdir", str(wd), "--config", str(config)])
    assert res.exit_code == 0, res.output
    assert got["bits"] == [1, 4, 32] and got["estimators"] == ["ste"] and got["seeds"] == [7]  # seed: the config's
    assert got["train"] == TrainConfig(dim=16, epochs=3, seed=7) and got["evaluate"] == EvaluateConfig(ks=(5,))
    assert (got["dask_address"], got["n_workers"], got["torch_threads"]) == ("tcp://sched:8786", 3, 1)
    assert Path(got["workdir"]).is_absolute() and Path(got["workdir"]) == wd.absolute()
    assert res.stdout == "# Sweep x\n| bits | estimator |\n"
    assert str(wd / "reports" / "sweep-x") in res.stderr

    assert got["axes"] == {}

    CliRunner().invoke(app, ["sweep", "--seeds", "1,2", "--k", "10,5", "--dims", "8,16", "--axis", "lr=0.01,0.02",
                             "--axis", "itq_rotation=true,false", "--workdir", str(wd)])
    assert got["axes"] == {"dim": [8, 16], "lr": [0.01, 0.02], "itq_rotation": [True, False]}
    assert got["bits"] == [1, 2, 4, 8, 32] and got["estimators"] == ["ste", "gste"] and got["seeds"] == [1, 2]
    assert got["evaluate"].ks == (5, 10) and got["dask_address"] is None and got["n_workers"] == 2


@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_hqgnn_sweep_runs_the_flow_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two cells on a 2-worker local Dask cluster (the command is called directly: typer's
    CliRunner would swap stderr under Prefect's global log handlers)."""
    from split_fixtures import tiny_split

    from flows.cli import sweep

    tiny_split(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"train": {"dim": 16, "batch_size": 128, "lr": 0.01, "hutchinson_samples": 2,
                                                "hutchinson_batches": 1}}))
    sweep(bits="1,32", estimator="gste", seeds="3", dims="8,16", axis=None, epochs=2, device="cpu", snapshot=None,
          k="10", workers=2, address=None, threads=1, sweep_id="cli", workdir=tmp_path, config=config, debug=True)

    out = tmp_path / "reports" / "sweep-cli"
    df = pd.read_parquet(out / "comparison.parquet")
    assert {(r.bits, r.estimator, r.dim, r.seed) for r in df.itertuples()} == {
        (1, "gste", 8, 3), (1, "gste", 16, 3), (32, "none", 8, 3), (32, "none", 16, 3)}
    assert set(df["run"]) == {"sweep-cli-b1-gste-d8-s3", "sweep-cli-b1-gste-d16-s3", "sweep-cli-b32-none-d8-s3", "sweep-cli-b32-none-d16-s3"}
    shipped = df[(df["split"] == "test") & (df["variant"] == df["bits"].map({1: "codes", 32: "float"}))]
    size = shipped.groupby(["bits", "dim"])["bytes_per_item"].first()
    assert size[(32, 16)] > size[(32, 8)] > size[(1, 16)]  # float grows with dim; 1 bit is far smaller
    printed = capsys.readouterr().out
    assert printed == (out / "comparison.md").read_text() and "| 1 | gste | 8 | 1 |" in printed and "| 32 | none | 16 | 1 |" in printed
    assert (out / "recall_vs_bytes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
