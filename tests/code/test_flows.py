"""The Prefect flows: wiring, skipping of unchanged stages, --force, retries only on transient I/O,
the publish gate failing the run, artifacts and the ``runs`` row.

The orchestration tests replace the stage functions with small fakes that write the files a
stage writes (manifests, pointers, reports), so they check the flows and nothing else, in
seconds. ``test_real_stages_*`` runs the real stages on tiny generated data. One Prefect test
harness serves the whole session (it takes ~7 s to start).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from pipeline_checks import check_published, tiny_params, tiny_raw_file

from flows.errors import DataContractError, InputError, PublishGateError
from flows.workdir import WorkDir, switch_pointer

pytestmark = [pytest.mark.prefect, pytest.mark.usefixtures("prefect_harness")]

# A valid 1x1 PNG, the fake evaluation plot.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a0e5a3b70000000049454e44ae426082"
)


# ---- fake stages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeIngested:
    rows_ingested: int
    rows_quarantined: int
    batch_ids: tuple[str, ...]


@dataclass(frozen=True)
class FakePrepared:
    snapshot: str
    reused: bool


@dataclass(frozen=True)
class FakeTrained:
    run: str


@dataclass(frozen=True)
class FakeExported:
    version: str


@dataclass(frozen=True)
class FakeEvaluated:
    run: str


class Fakes:
    """Stage functions that write what a stage writes, count their calls and can be told to fail."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, list[BaseException]] = {}  # stage -> errors raised by the next calls
        self.ingested_files: list[tuple[str, ...]] = []
        self.sources: set[str] = set()  # content hashes in the "warehouse"

    def _maybe_fail(self, stage: str) -> None:
        self.calls[stage] += 1
        if self.fail.get(stage):
            raise self.fail[stage].pop(0)

    def ingest(self, wd: WorkDir, cfg: Any) -> FakeIngested:
        self._maybe_fail("ingest")
        self.ingested_files.append(tuple(str(f) for f in cfg.files))
        self.sources |= {hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in cfg.files}
        return FakeIngested(rows_ingested=100 * len(cfg.files), rows_quarantined=3, batch_ids=("b1",))

    def prepare(self, wd: WorkDir, cfg: Any) -> FakePrepared:
        self._maybe_fail("prepare")
        # as the real stage: the snapshot id is a hash of the config and the source hashes
        key = hashlib.sha256(json.dumps([cfg.kcore_user, sorted(self.sources)]).encode()).hexdigest()
        snapshot = f"snap-k{cfg.kcore_user}-{key[:8]}"
        folder = wd.splits / snapshot
        reused = folder.is_dir()
        folder.mkdir(parents=True, exist_ok=True)
        counts = {"raw": 100, "quarantined": 5, "clean": 90, "kcore": 80, "train": 64, "valid": 8, "test": 8}
        (folder / "manifest.json").write_text(json.dumps({"row_counts": counts, "kcore_user": cfg.kcore_user}))
        switch_pointer(wd.splits / "current", folder)
        return FakePrepared(snapshot, reused)

    def train(self, wd: WorkDir, cfg: Any) -> FakeTrained:
        self._maybe_fail("train")
        assert cfg.snapshot, "the flow pins the snapshot prepare produced"
        run = f"run-{self.calls['train']}-{cfg.snapshot}-e{cfg.epochs}"
        folder = wd.models / run
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"epochs": cfg.epochs}))
        switch_pointer(wd.models / "latest", folder)
        return FakeTrained(run)

    def export(self, wd: WorkDir, cfg: Any) -> FakeExported:
        self._maybe_fail("export")
        folder = wd.codes / cfg.run
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps({"run": cfg.run}))
        switch_pointer(wd.codes / "current", folder)
        return FakeExported(cfg.run)

    def evaluate(self, wd: WorkDir, cfg: Any) -> FakeEvaluated:
        self._maybe_fail("evaluate")
        folder = wd.report(cfg.run)
        (folder / "plots").mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"test": {"recall@20": 0.25}}))
        (folder / "report.md").write_text("| metric | value |\n|---|---|\n| recall@20 | 0.25 |\n")
        (folder / "plots" / "recall_vs_bits.png").write_bytes(PNG)
        return FakeEvaluated(cfg.run)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    """Every stage function replaced by a fake; I/O retries without delay."""
    from flows import stage_runs
    from flows.stages import evaluate, export, ingest, prepare, train

    f = Fakes()
    for module, name in ((ingest, "ingest"), (prepare, "prepare"), (train, "train"), (export, "export"), (evaluate, "evaluate")):
        monkeypatch.setattr(module, name, getattr(f, name))
    monkeypatch.setattr(stage_runs, "IO_RETRY_DELAY_S", 0)
    return f


def _raw_file(tmp_path: Path, name: str = "raw.csv", text: str = "user_id,item_id\nu1,i1\n") -> Path:
    path = tmp_path / "drop" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _run(workdir: Path, return_state: bool = False, **params: Any) -> Any:
    from flows.pipeline import hqgnn

    return hqgnn(workdir=str(workdir), return_state=return_state, **params)


def _runs(workdir: Path) -> list[dict[str, Any]]:
    con = duckdb.connect(str(WorkDir(workdir).warehouse), read_only=True)
    try:
        rel = con.sql("select * from runs order by started_at")
        return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]
    finally:
        con.close()


def _artifacts(flow_run_id: str) -> dict[str, Any]:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)]))
        )
    return {a.key: a for a in found}


# ---- orchestration -------------------------------------------------------------------------


def test_full_chain_then_unchanged_stages_are_skipped_and_force_reruns(tmp_path: Path, fakes: Fakes) -> None:
    wd = tmp_path / "work"
    raw = _raw_file(tmp_path)
    params = {"ingest": {"files": [str(raw)]}, "train": {"epochs": 3}}

    first = _run(wd, **params)
    assert first.status == "completed"
    assert first.stages == dict.fromkeys(["ingest", "prepare", "train", "export", "evaluate"], "ran")
    assert first.snapshot.startswith("snap-k10-") and first.train_run == f"run-1-{first.snapshot}-e3"
    assert first.code_version == first.train_run
    assert first.metrics == {"test": {"recall@20": 0.25}}
    assert (wd / "codes" / "current").resolve().name == first.train_run

    arts = _artifacts(first.run_id)
    assert {"data-manifest", "evaluation", "plot-recall-vs-bits", "evaluation-plots"} <= set(arts)
    assert "data-docs" not in arts  # the fake stages check no contract, so there are no Data Docs to link
    manifest = json.loads(arts["data-manifest"].data)
    assert {"stage": "ingest (this run)", "table": "rows_quarantined", "rows": 3} in manifest
    assert {"stage": "ingest", "table": "quarantined", "rows": 5} in manifest
    assert {"stage": "split", "table": "train", "rows": 64} in manifest
    assert "recall@20 | 0.25" in arts["evaluation"].data
    assert arts["plot-recall-vs-bits"].data.startswith("data:image/png;base64,")
    assert "recall_vs_bits.png" in arts["evaluation-plots"].data

    second = _run(wd, **params)  # nothing changed: every stage skipped, no stage function called
    assert second.stages == dict.fromkeys(["ingest", "prepare", "train", "export", "evaluate"], "skipped")
    assert second.train_run == first.train_run and second.metrics == first.metrics
    assert fakes.calls == {"ingest": 1, "prepare": 2, "train": 1, "export": 1, "evaluate": 1}

    raw.write_text("user_id,item_id\nu1,i1\nu2,i2\n")  # new content: everything downstream reruns
    third = _run(wd, **params)
    assert third.stages["ingest"] == "ran" and third.stages["train"] == "ran"
    assert third.snapshot != first.snapshot and third.train_run != first.train_run

    forced = _run(wd, force=True, **params)  # --force reruns unchanged stages
    assert forced.stages["ingest"] == "ran" and forced.stages["train"] == "ran"
    assert fakes.calls["ingest"] == 3 and fakes.calls["train"] == 3

    rows = _runs(wd)
    assert [r["status"] for r in rows] == ["completed"] * 4
    assert [r["run_id"] for r in rows] == [first.run_id, second.run_id, third.run_id, forced.run_id]
    assert rows[0]["snapshot"] == first.snapshot and rows[0]["train_run"] == first.train_run
    assert json.loads(rows[0]["metrics"]) == {"test": {"recall@20": 0.25}}
    assert json.loads(rows[1]["stages"])["train"]["status"] == "skipped"
    assert json.loads(rows[0]["parameters"])["train"]["epochs"] == 3
    assert all(r["finished_at"] >= r["started_at"] and r["duration_s"] >= 0 for r in rows)


def test_changed_config_reruns_only_what_depends_on_it(tmp_path: Path, fakes: Fakes) -> None:
    wd = tmp_path / "work"
    params: dict[str, Any] = {"ingest": {"files": [str(_raw_file(tmp_path))]}}
    _run(wd, train={"epochs": 2}, **params)
    summary = _run(wd, train={"epochs": 4}, **params)
    assert summary.stages["ingest"] == "skipped"
    assert summary.stages["train"] == "ran" and summary.train_run.endswith("-e4")
    assert summary.stages["export"] == "ran" and summary.stages["evaluate"] == "ran"


def test_publish_gate_refusal_fails_the_run_and_keeps_current_codes(tmp_path: Path, fakes: Fakes) -> None:
    wd = tmp_path / "work"
    first = _run(wd)
    live = (wd / "codes" / "current").resolve()
    message = "publish gate: recall@20 0.20 is worse than the current 1-bit codes' 0.25 by more than 0.005"
    fakes.fail["export"] = [PublishGateError(message)]

    state = _run(wd, force=True, return_state=True)
    assert state.is_failed()
    assert "PublishGateError" in state.message and "recall@20 0.20" in state.message
    with pytest.raises(PublishGateError, match="worse than the current"):
        state.result()
    assert fakes.calls["export"] == 2  # refused once, not retried
    assert fakes.calls["evaluate"] == 1  # nothing after a refused gate
    assert (wd / "codes" / "current").resolve() == live  # the current codes stay live
    failed = _runs(wd)[-1]
    assert failed["status"] == "failed" and "worse than the current" in failed["error"]
    assert json.loads(failed["stages"])["export"]["status"] == "failed"
    assert first.status == "completed"


def test_transient_io_error_is_retried_bad_input_is_not(tmp_path: Path, fakes: Fakes) -> None:
    raw = _raw_file(tmp_path)
    fakes.fail["ingest"] = [OSError(5, "Input/output error", str(raw))]
    assert _run(tmp_path / "a", ingest={"files": [str(raw)]}).status == "completed"
    assert fakes.calls["ingest"] == 2  # failed once, retried, succeeded

    fakes.fail["ingest"] = [InputError(f"{raw}: line 2: expected 4 columns, got 2")]
    with pytest.raises(InputError, match="expected 4 columns"):
        _run(tmp_path / "b", ingest={"files": [str(raw)]})
    assert fakes.calls["ingest"] == 3  # one attempt only

    fakes.fail["train"] = [DataContractError("train", ["user_idx: 2 values out of range"])]
    with pytest.raises(DataContractError, match="out of range"):
        _run(tmp_path / "c")
    assert fakes.calls["train"] == 2 and fakes.calls["export"] == 1  # no retry, nothing downstream
    assert _runs(tmp_path / "c")[-1]["status"] == "failed"


def test_nightly_ingests_the_drop_folder(tmp_path: Path, fakes: Fakes) -> None:
    a = _raw_file(tmp_path, "a.csv")
    _raw_file(tmp_path, "notes.txt", "not data")
    _run(tmp_path / "work", drop_folder=str(a.parent), drop_pattern="*.csv")
    b = _raw_file(tmp_path, "b.csv", "user_id,item_id\nu3,i3\n")
    summary = _run(tmp_path / "work", drop_folder=str(a.parent), drop_pattern="*.csv")
    assert fakes.ingested_files == [(str(a.resolve()),), (str(a.resolve()), str(b.resolve()))]
    assert summary.stages["ingest"] == "ran"
    quiet = _run(tmp_path / "work", drop_folder=str(a.parent), drop_pattern="*.csv")
    assert quiet.stages == dict.fromkeys(["ingest", "prepare", "train", "export", "evaluate"], "skipped")


def test_parameters_are_validated_against_the_config_models(tmp_path: Path, fakes: Fakes) -> None:
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError, match="epoch"):
        _run(tmp_path / "work", train={"epoch": 3})  # typo of `epochs`: unknown keys rejected
    with pytest.raises(ParameterTypeError, match="bits"):
        _run(tmp_path / "work", train={"bits": 3})
    assert sum(fakes.calls.values()) == 0


def test_retry_condition_only_for_transient_errors() -> None:
    from flows.stage_runs import is_transient

    assert is_transient(OSError(5, "Input/output error"))
    assert is_transient(TimeoutError())
    assert not is_transient(FileNotFoundError(2, "No such file"))
    assert not is_transient(PermissionError(13, "Permission denied"))
    assert not is_transient(InputError("bad row"))
    assert not is_transient(PublishGateError("refused"))
    assert not is_transient(DataContractError("train", ["x"]))
    assert is_transient(duckdb.IOException("Could not set lock on file"))
    assert not is_transient(duckdb.BinderException("no such column"))


# ---- the real stages on tiny data ----------------------------------------------------------


@pytest.mark.slow
def test_real_stages_hqgnn_run_publishes_then_skips_everything(tmp_path: Path) -> None:
    """`hqgnn run` runs the flow through every real stage; a second run with no new data skips
    every stage; `--force` reruns them; the runs table has a row per run."""
    import yaml

    from flows.cli import run_all  # the `hqgnn run` command (typer's CliRunner would swap the
    # process's stderr under Prefect's global log handlers, so the command is called directly)

    wd = tmp_path / "work"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_params(tiny_raw_file(tmp_path / "raw"))))
    run_all(demo=False, force=False, workdir=wd, config=config, debug=True)
    manifest = check_published(wd)
    docs = WorkDir(wd).data_docs / "index.html"  # every contract check of the run, as GX Data Docs
    assert docs.is_file() and "raw" in docs.read_text()
    assert docs.resolve().as_uri() in _artifacts(_runs(wd)[0]["run_id"])["data-docs"].data

    run_all(demo=False, force=False, workdir=wd, config=config, debug=True)
    assert WorkDir(wd).code_version().name == manifest["version"]  # nothing new published
    rows = _runs(wd)
    assert [r["status"] for r in rows] == ["completed", "completed"]
    assert {k: v["status"] for k, v in json.loads(rows[0]["stages"]).items()} == dict.fromkeys(
        ["ingest", "prepare", "train", "export", "evaluate"], "ran"
    )
    assert {k: v["status"] for k, v in json.loads(rows[1]["stages"]).items()} == dict.fromkeys(
        ["ingest", "prepare", "train", "export", "evaluate"], "skipped"
    )
    assert rows[0]["train_run"] == rows[1]["train_run"] == manifest["run"]
    assert rows[0]["code_version"] == manifest["version"] and rows[0]["snapshot"] == manifest["snapshot"]
    assert json.loads(rows[1]["metrics"])["run"] == manifest["run"]
    assert json.loads(rows[0]["parameters"])["train"]["epochs"] == 2

    # --force reruns the cached stages: a new training run, exported through the gate (its metric
    # check overridden here, so the test does not depend on two trainings' exact scores).
    forced_config = tmp_path / "forced.yaml"
    forced_config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "export": {"force": True}}))
    run_all(demo=False, force=True, workdir=wd, config=forced_config, debug=True)
    last = _runs(wd)[-1]
    assert last["status"] == "completed" and last["train_run"] != manifest["run"]
    # prepare reuses its content-addressed snapshot (same config + source hashes) even then
    assert {k: v["status"] for k, v in json.loads(last["stages"]).items()} == {
        "ingest": "ran", "prepare": "skipped", "train": "ran", "export": "ran", "evaluate": "ran"
    }
    assert check_published(wd)["run"] == last["train_run"]


def test_hqgnn_run_console_prints_log_records_without_traceback() -> None:
    import logging

    from flows.cli import _OneLineFormatter

    try:
        raise ValueError("bad row 7")
    except ValueError:
        import sys

        record = logging.LogRecord("prefect", logging.ERROR, __file__, 1, "stage failed: %s", ("x",), sys.exc_info())
    line = _OneLineFormatter(logging.Formatter("%(message)s")).format(record)
    assert line == "stage failed: x"
    assert record.exc_info is not None  # other handlers (Prefect's API log) still get the traceback
    assert "Traceback" in logging.Formatter("%(message)s").format(record)
