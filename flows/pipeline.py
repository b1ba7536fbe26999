"""The Prefect layer: one flow per stage, and the parent flow ``hqgnn`` that chains them.

Each stage flow is a few lines around the stage's plain function in :mod:`flows.stages` (the
same function the CLI calls): it pins what "current"/"latest" means at the time of the run,
hashes what the stage reads, and lets :func:`flows.stage_runs.run_stage` skip it when nothing
changed (``force=True`` reruns). The stage functions validate their data contracts before
returning, so a stage starts only on checked inputs.

The parent flow ``hqgnn`` (ingest -> prepare -> [foldin] -> train -> export -> evaluate) is served by
``prefect.yaml`` as the deployments ``hqgnn/train`` (retrain on what is in the warehouse) and
``hqgnn/nightly`` (first ingest the new files of a drop folder); ``hqgnn run`` calls it
in-process (Prefect's ephemeral mode, no server needed). Every run records a row in the
warehouse's ``runs`` table and leaves the artifacts of :mod:`flows.artifacts`. A failure (bad
input, contract, publish gate) fails the run with that message; nothing is swallowed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows import artifacts
from flows.config import (
    EvaluateConfig,
    ExportConfig,
    FoldInConfig,
    IngestConfig,
    PipelineConfig,
    PrepareConfig,
    TrainConfig,
)
from flows.lock import workdir_lock
from flows.runs import RunRecord, abandon_runs, record_run
from flows.stage_runs import (
    StageOutcome,
    describe,
    dir_hashes,
    hash_files,
    list_drop_folder,
    run_stage,
    with_io_retries,
)
from flows.stages import evaluate as evaluate_stage
from flows.stages import export as export_stage
from flows.stages import foldin as foldin_stage
from flows.stages import ingest as ingest_stage
from flows.stages import prepare as prepare_stage
from flows.stages import train as train_stage
from flows.synthetic_demo import demo_config
from flows.workdir import DEFAULT_WORKDIR, WorkDir

# ---- one flow per stage --------------------------------------------------------------------


@flow(name="hqgnn-ingest")
def ingest_flow(workdir: WorkDir, cfg: IngestConfig, force: bool = False) -> StageOutcome:
    """Raw files (``cfg.files``) into the warehouse; skipped when every file's content is unchanged."""
    logger = get_run_logger()
    files = tuple(str(Path(f).resolve()) for f in cfg.files)
    pinned = cfg.model_copy(update={"files": tuple(Path(f) for f in files)})
    hashes = with_io_retries(lambda: hash_files(files), "hash-files", logger)
    return run_stage("ingest", workdir, pinned, hashes, lambda: ingest_stage.ingest(workdir, pinned), force, logger, retry=True)


@flow(name="hqgnn-prepare")
def prepare_flow(workdir: WorkDir, cfg: PrepareConfig, force: bool = False) -> StageOutcome:
    """Clean, k-core, split into a contract-checked snapshot. Never skipped here: the stage
    itself keys its snapshot on (config, warehouse content) and reuses an identical one."""
    del force
    t0 = time.perf_counter()
    result = prepare_stage.prepare(workdir, cfg)
    reused = bool(getattr(result, "reused", False))
    if reused:
        get_run_logger().info("prepare: skipped, warehouse content and config unchanged; reusing %s", describe(result))
    return StageOutcome("prepare", result, reused, time.perf_counter() - t0)


@flow(name="hqgnn-train")
def train_flow(workdir: WorkDir, cfg: TrainConfig, force: bool = False) -> StageOutcome:
    """Train on ``cfg.snapshot`` (``splits/current`` when None; ``cfg.nproc > 1``: on that many
    processes); skipped when the snapshot's content hashes and the config are unchanged."""
    split_dir = workdir.split(cfg.snapshot)
    pinned = cfg.model_copy(update={"snapshot": split_dir.name})
    logger = get_run_logger()

    def train_or_resume() -> Any:
        unfinished = None if pinned.run or pinned.resume else train_stage.unfinished_run(workdir, pinned)
        if unfinished is not None:  # a killed run of the same inputs: continue it from its last.pt
            logger.info("train: resuming the interrupted run %s (same snapshot and config)", unfinished)
            return train_stage.train(workdir, pinned.model_copy(update={"run": unfinished, "resume": True}))
        return train_stage.train(workdir, pinned)

    return run_stage("train", workdir, pinned, dir_hashes(split_dir), train_or_resume, force, logger)


@flow(name="hqgnn-export")
def export_flow(workdir: WorkDir, cfg: ExportConfig, force: bool = False) -> StageOutcome:
    """Export ``cfg.run`` (the latest when None) through the publish gate; skipped when that run
    was already exported with the same config. ``force`` reruns; the gate's own override is ``cfg.force``."""
    run_dir = workdir.run(cfg.run)
    pinned = cfg.model_copy(update={"run": run_dir.name})
    return run_stage("export", workdir, pinned, dir_hashes(run_dir), lambda: export_stage.export(workdir, pinned), force,
                     get_run_logger(), retry=True)


@flow(name="hqgnn-evaluate")
def evaluate_flow(workdir: WorkDir, cfg: EvaluateConfig, force: bool = False) -> StageOutcome:
    """Evaluate ``cfg.run`` (the latest when None); skipped when that run is unchanged."""
    run_dir = workdir.run(cfg.run)
    pinned = cfg.model_copy(update={"run": run_dir.name})
    return run_stage("evaluate", workdir, pinned, dir_hashes(run_dir), lambda: evaluate_stage.evaluate(workdir, pinned), force,
                     get_run_logger())


@flow(name="hqgnn-foldin")
def foldin_flow(workdir: WorkDir, cfg: FoldInConfig, force: bool = False) -> StageOutcome:
    """Codes for the snapshot's users the published codes lack (no retraining), as a new code
    version; "skipped" when nothing is published yet or every user already has a code."""
    del force  # the stage itself finds the users without a code; nothing to cache
    t0 = time.perf_counter()
    result = foldin_stage.foldin(workdir, cfg)
    if result.version is None:
        get_run_logger().info("foldin: skipped, %s", result.reason)
    else:
        get_run_logger().info("foldin: %d new user(s) in %s (%.3f ms/user)", result.new_users, result.version, result.ms_per_user)
    return StageOutcome("foldin", result, result.version is None, time.perf_counter() - t0)


# ---- the parent flow -----------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineSummary:
    """What a run of ``hqgnn`` did: per-stage outcomes and the ids of what it produced."""

    run_id: str
    status: str  # completed
    stages: dict[str, str] = field(default_factory=dict)  # stage -> ran | skipped
    snapshot: str | None = None
    train_run: str | None = None
    code_version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


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
                outcome = fn(self.workdir, *args)
        except BaseException:
            self.stages[name] = {"status": "failed", "seconds": round(time.perf_counter() - t0, 3)}
            raise
        self.stages[name] = {"status": outcome.status, "seconds": round(time.perf_counter() - t0, 3)}
        return outcome

    def record(self, status: str, error: str | None = None) -> None:
        """Write the run's row into the warehouse's ``runs`` table (transient I/O errors retried)."""
        rec = RunRecord(
            run_id=self.run_id, flow_run_name=self.name, deployment=self.deployment, status=status,
            started_at=self.started, finished_at=None if status == "running" else datetime.now(UTC),
            parameters=self.parameters, metrics=self.metrics, stages=self.stages, error=error,
            **self.ids,
        )
        with_io_retries(lambda: record_run(self.workdir.warehouse, rec), "record-run", get_run_logger())

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
    lock_wait: float = 0.0,
    foldin: FoldInConfig | None = None,
) -> PipelineSummary:
    """The whole pipeline on ``workdir``.

    ``foldin`` (a section; the nightly deployment gives ``{}``; None = no fold-in): right after
    prepare, users of the new snapshot that the published codes (of ``foldin.bits``, default
    ``train.bits``) lack get codes by fold-in, published as a new code version before the (longer)
    training starts; the retrained model then goes through the gate.

    Ingests ``ingest.files`` plus, when ``drop_folder`` is set, every file there matching
    ``drop_pattern`` (re-ingesting a file adds nothing, so the folder may keep old files);
    then prepare -> train -> export (publish gate) -> evaluate. ``force`` reruns stages whose
    inputs did not change; the gate's metric override is ``export.force``. The run holds the
    work directory's lock (:mod:`flows.lock`) throughout; ``lock_wait`` seconds to wait for
    another writer (0: fail at once, negative: no limit).
    """
    wd = WorkDir(Path(workdir).resolve())
    with workdir_lock(wd, "run", math.inf if lock_wait < 0 else lock_wait):
        return _hqgnn(wd, ingest, prepare, train, export, evaluate, drop_folder, drop_pattern, force, foldin)


def _hqgnn(
    wd: WorkDir, ingest: IngestConfig, prepare: PrepareConfig, train: TrainConfig, export: ExportConfig,
    evaluate: EvaluateConfig, drop_folder: str | None, drop_pattern: str, force: bool, foldin: FoldInConfig | None,
) -> PipelineSummary:
    """The body of flow ``hqgnn``, under the lock."""
    logger = get_run_logger()
    parameters = {
        "workdir": str(wd.root), "ingest": ingest.model_dump(mode="json"),
        "prepare": prepare.model_dump(mode="json"), "train": train.model_dump(mode="json"),
        "export": export.model_dump(mode="json"), "evaluate": evaluate.model_dump(mode="json"),
        "drop_folder": drop_folder, "drop_pattern": drop_pattern, "force": force, "foldin": None if foldin is None else foldin.model_dump(mode="json"),
    }
    run = _Run(wd, parameters)
    logger.info("hqgnn run %s on %s (force=%s)", run.name, wd.root, force)
    run.record("running")
    abandoned = with_io_retries(lambda: abandon_runs(wd.warehouse, run.run_id), "abandon-runs", logger)
    if abandoned:
        logger.warning("runs %s were left `running` by a killed process: marked abandoned", ", ".join(abandoned))
    try:
        _stages(run, ingest, prepare, train, export, evaluate, drop_folder, drop_pattern, force, foldin)
    except BaseException as e:
        try:
            run.record("failed", error=f"{type(e).__name__}: {e}".rstrip(": "))
        except Exception as record_error:  # never mask the run's own failure
            logger.error("could not record the failed run in the runs table: %s", record_error)
        raise
    run.record("completed")
    summary = run.summary("completed")
    logger.info("hqgnn run %s completed: %s", run.name, json.dumps(summary.stages))
    return summary


def _stages(
    run: _Run, ingest: IngestConfig, prepare: PrepareConfig, train: TrainConfig, export: ExportConfig,
    evaluate: EvaluateConfig, drop_folder: str | None, drop_pattern: str, force: bool, foldin: FoldInConfig | None = None,
) -> None:
    """The stage sequence, each stage pinned to what the one before it produced."""
    logger = get_run_logger()
    files = tuple(str(f) for f in ingest.files)
    if drop_folder:
        dropped = with_io_retries(lambda: list_drop_folder(drop_folder, drop_pattern), "list-drop-folder", logger)
        logger.info("drop folder %s: %d file(s) matching %r", drop_folder, len(dropped), drop_pattern)
        files += tuple(f for f in dropped if f not in files)
    ingested = None
    if files:
        cfg = ingest.model_copy(update={"files": tuple(Path(f) for f in files)})
        ingested = run.stage("ingest", ingest_flow, cfg, force).result
    else:
        logger.info("ingest: no files given; using what is in the warehouse")

    prepared = run.stage("prepare", prepare_flow, prepare, force).result
    snapshot_dir = run.workdir.split(prepared.snapshot)
    run.ids["snapshot"] = snapshot_dir.name
    manifest_file = snapshot_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
    artifacts.data_manifest_artifact(artifacts.manifest_rows(ingested, manifest), snapshot_dir.name)
    artifacts.data_docs_artifact(str(run.workdir.data_docs))

    if foldin is not None:  # new users get codes now, before the retrain finishes (or if it fails or is refused)
        fold_cfg = foldin.model_copy(update={"bits": foldin.bits or train.bits, "snapshot": snapshot_dir.name})
        run.stage("foldin", foldin_flow, fold_cfg, force)

    trained = run.stage("train", train_flow, train.model_copy(update={"snapshot": snapshot_dir.name}), force).result
    train_run = str(trained.run)
    run.ids["train_run"] = train_run

    exported = run.stage("export", export_flow, export.model_copy(update={"run": train_run}), force).result
    run.ids["code_version"] = str(exported.version)

    run.stage("evaluate", evaluate_flow, evaluate.model_copy(update={"run": train_run}), force)
    run.metrics = artifacts.evaluation_artifacts(str(run.workdir.report(train_run)))


def run_flow(workdir: WorkDir, cfg: PipelineConfig, demo: bool = False, force: bool = False) -> PipelineSummary:
    """``hqgnn run``: the parent flow in-process (ephemeral Prefect unless PREFECT_API_URL is set)."""
    if demo:
        cfg = demo_config(workdir, cfg)
    from flows.orphan_guard import guard_ephemeral_server

    guard_ephemeral_server()  # Prefect's temporary API server (if it starts) dies with this process
    return hqgnn(
        workdir=str(workdir.root), ingest=cfg.ingest, prepare=cfg.prepare, train=cfg.train,
        export=cfg.export, evaluate=cfg.evaluate, force=force, foldin=cfg.foldin,
    )
