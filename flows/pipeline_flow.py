"""The parent Prefect flow ``hqgnn``: ingest -> prepare -> train -> export -> evaluate.

Served two ways by ``prefect.yaml``: deployment ``hqgnn/train`` (retrain on what is in the
warehouse) and ``hqgnn/nightly`` (first ingest the new files of a drop folder). ``hqgnn run``
calls it in-process (Prefect's ephemeral mode, no server needed).

Each stage is a subflow of :mod:`flows.stage_flows` whose stage function validates its data
contract before returning, so a stage starts only on checked inputs. Unchanged stages are
skipped through the task cache; ``force=True`` reruns them. Every run records a row in the
warehouse's ``runs`` table and leaves the artifacts of :mod:`flows.artifacts`. A failure
(bad input, contract, publish gate) fails the run with that message; nothing is swallowed,
except that a stage whose implementation has not landed yet (``NotYetAvailableError``) ends
the run early, as ``run_pipeline`` does, with status ``partial``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows import artifacts, tasks
from flows.runs import RunRecord, record_run
from flows.stage_flows import (
    StageOutcome,
    evaluate_flow,
    export_flow,
    ingest_flow,
    prepare_flow,
    train_flow,
)
from hqgnn.config import (
    EvaluateConfig,
    ExportConfig,
    IngestConfig,
    PipelineConfig,
    PrepareConfig,
    TrainConfig,
)
from hqgnn.errors import NotYetAvailableError
from hqgnn.workdir import DEFAULT_WORKDIR, WorkDir


@dataclass(frozen=True)
class PipelineSummary:
    """What a run of ``hqgnn`` did: per-stage outcomes and the ids of what it produced."""

    run_id: str
    status: str  # completed | partial
    stages: dict[str, str] = field(default_factory=dict)  # stage -> ran | skipped | unavailable
    snapshot: str | None = None
    train_run: str | None = None
    code_version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


@task(name="record-run", cache_policy=NO_CACHE, retries=tasks.IO_RETRIES,
      retry_delay_seconds=tasks.IO_RETRY_DELAY_S, retry_condition_fn=tasks.retry_if_transient)
def record_run_task(warehouse: str, rec: RunRecord) -> None:
    """Write the run's row into the warehouse's ``runs`` table."""
    record_run(Path(warehouse), rec)


class _Run:
    """Book-keeping of one flow run: stage outcomes, ids, the ``runs`` row."""

    def __init__(self, workdir: WorkDir, parameters: dict[str, Any]) -> None:
        self.workdir = workdir
        self.started = datetime.now(UTC)
        self.run_id = str(runtime_flow_run.id or "local")
        self.name = str(runtime_flow_run.name or "local")
        dep = runtime_deployment.name
        self.deployment = f"hqgnn/{dep}" if dep else None
        self.parameters = parameters
        self.stages: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, str | None] = {"snapshot": None, "train_run": None, "code_version": None}
        self.metrics: dict[str, Any] = {}

    def stage(self, name: str, fn: Callable[..., StageOutcome], *args: Any) -> StageOutcome:
        t0 = time.perf_counter()
        try:
            # The parent's heartbeat already covers this process; a subflow's own heartbeat
            # thread only adds ~1 s at its exit (it sleeps in 1-s steps), 5 s per run here.
            with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
                outcome = fn(*args)
        except NotYetAvailableError:
            self.stages[name] = {"status": "unavailable", "seconds": round(time.perf_counter() - t0, 3)}
            raise
        except BaseException:
            self.stages[name] = {"status": "failed", "seconds": round(time.perf_counter() - t0, 3)}
            raise
        self.stages[name] = {"status": outcome.status, "seconds": round(time.perf_counter() - t0, 3)}
        return outcome

    def record(self, status: str, error: str | None = None) -> None:
        rec = RunRecord(
            run_id=self.run_id, flow_run_name=self.name, deployment=self.deployment, status=status,
            started_at=self.started, finished_at=None if status == "running" else datetime.now(UTC),
            parameters=self.parameters, metrics=self.metrics, stages=self.stages, error=error,
            **self.ids,
        )
        record_run_task(str(self.workdir.warehouse), rec)

    def summary(self, status: str) -> PipelineSummary:
        return PipelineSummary(
            run_id=self.run_id, status=status,
            stages={k: v["status"] for k, v in self.stages.items()}, metrics=self.metrics, **self.ids,
        )


@flow(name="hqgnn")
def hqgnn(
    workdir: str = str(DEFAULT_WORKDIR),
    ingest: IngestConfig = IngestConfig(),  # noqa: B008 - frozen models, safe as defaults
    prepare: PrepareConfig = PrepareConfig(),  # noqa: B008
    train: TrainConfig = TrainConfig(),  # noqa: B008
    export: ExportConfig = ExportConfig(),  # noqa: B008
    evaluate: EvaluateConfig = EvaluateConfig(),  # noqa: B008
    drop_folder: str | None = None,
    drop_pattern: str = "*",
    force: bool = False,
) -> PipelineSummary:
    """The whole pipeline on ``workdir``.

    Ingests ``ingest.files`` plus, when ``drop_folder`` is set, every file there matching
    ``drop_pattern`` (re-ingesting a file adds nothing, so the folder may keep old files);
    then prepare -> train -> export (publish gate) -> evaluate. ``force`` reruns stages whose
    inputs did not change; the gate's metric override is ``export.force``.
    """
    logger = get_run_logger()
    wd = WorkDir(Path(workdir).resolve())
    root = str(wd.root)
    parameters = {
        "workdir": root, "ingest": ingest.model_dump(mode="json"),
        "prepare": prepare.model_dump(mode="json"), "train": train.model_dump(mode="json"),
        "export": export.model_dump(mode="json"), "evaluate": evaluate.model_dump(mode="json"),
        "drop_folder": drop_folder, "drop_pattern": drop_pattern, "force": force,
    }
    run = _Run(wd, parameters)
    logger.info("hqgnn run %s on %s (force=%s)", run.name, root, force)
    run.record("running")
    try:
        status = _stages(run, root, ingest, prepare, train, export, evaluate, drop_folder, drop_pattern, force)
    except BaseException as e:
        try:
            run.record("failed", error=f"{type(e).__name__}: {e}".rstrip(": "))
        except Exception as record_error:  # never mask the run's own failure
            logger.error("could not record the failed run in the runs table: %s", record_error)
        raise
    run.record(status)
    summary = run.summary(status)
    logger.info("hqgnn run %s %s: %s", run.name, status, json.dumps(summary.stages))
    return summary


def _stages(
    run: _Run, root: str, ingest: IngestConfig, prepare: PrepareConfig, train: TrainConfig,
    export: ExportConfig, evaluate: EvaluateConfig, drop_folder: str | None, drop_pattern: str,
    force: bool,
) -> str:
    """The stage sequence; returns ``completed``, or ``partial`` when a stage has not landed."""
    logger = get_run_logger()
    try:
        files = tuple(str(f) for f in ingest.files)
        if drop_folder:
            dropped = tasks.list_drop_folder(drop_folder, drop_pattern)
            logger.info("drop folder %s: %d file(s) matching %r", drop_folder, len(dropped), drop_pattern)
            files += tuple(f for f in dropped if f not in files)
        ingested = None
        if files:
            cfg = ingest.model_copy(update={"files": tuple(Path(f) for f in files)})
            ingested = run.stage("ingest", ingest_flow, root, cfg, force).result
        else:
            logger.info("ingest: no files given; using what is in the warehouse")

        prepared = run.stage("prepare", prepare_flow, root, prepare, force).result
        snapshot_dir = WorkDir(Path(root)).split(prepared.snapshot)
        run.ids["snapshot"] = snapshot_dir.name
        manifest_file = snapshot_dir / "manifest.json"
        manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
        artifacts.data_manifest_artifact(artifacts.manifest_rows(ingested, manifest), snapshot_dir.name)

        trained = run.stage(
            "train", train_flow, root, train.model_copy(update={"snapshot": snapshot_dir.name}), force
        ).result
        train_run = str(trained.run)
        run.ids["train_run"] = train_run

        exported = run.stage("export", export_flow, root, export.model_copy(update={"run": train_run}), force).result
        run.ids["code_version"] = str(exported.version)

        run.stage("evaluate", evaluate_flow, root, evaluate.model_copy(update={"run": train_run}), force)
        run.metrics = artifacts.evaluation_artifacts(str(WorkDir(Path(root)).report(train_run)))
    except NotYetAvailableError as e:
        logger.warning("%s; the pipeline stops after the stages that exist (run status: partial).", e)
        return "partial"
    return "completed"


def run_flow(workdir: WorkDir, cfg: PipelineConfig, demo: bool = False, force: bool = False) -> PipelineSummary:
    """``hqgnn run``: the parent flow in-process (ephemeral Prefect unless PREFECT_API_URL is set)."""
    from flows.stages.pipeline import demo_config

    if demo:
        cfg = demo_config(workdir, cfg)
    return hqgnn(
        workdir=str(workdir.root), ingest=cfg.ingest, prepare=cfg.prepare, train=cfg.train,
        export=cfg.export, evaluate=cfg.evaluate, force=force,
    )


class _OneLineFormatter(logging.Formatter):
    """Wraps a console formatter so log records print without their traceback."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_console_tracebacks() -> None:
    """Keep tracebacks out of the terminal (``hqgnn run`` without ``--debug``): Prefect's console
    handlers print one line per record; the run's log in Prefect (API handler) keeps the
    full traceback, so the real cause stays on record."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in [logging.getLogger(), *(logging.getLogger(n) for n in logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _OneLineFormatter):
                handler.setFormatter(_OneLineFormatter(handler.formatter))
