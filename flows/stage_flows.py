"""One Prefect flow per stage: ingest, prepare, train, export, evaluate.

Each flow resolves what its stage reads into paths + content hashes, calls one task of
:mod:`flows.tasks` and returns a :class:`StageOutcome` (the stage's own small result plus whether
it ran or was skipped). A stage whose inputs (content hashes + config) did not change is skipped
through the task cache, with one log line saying so; ``force=True`` reruns it.

The flows pin what "latest"/"current" means at the time of the run: train gets the snapshot
prepare produced, export and evaluate get the run train produced, so a concurrent run cannot
slip another snapshot or run in between.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.states import State

from flows import tasks
from hqgnn.config import EvaluateConfig, ExportConfig, IngestConfig, PrepareConfig, TrainConfig
from hqgnn.workdir import WorkDir, file_sha256


@dataclass(frozen=True)
class StageOutcome:
    """What one stage flow did. ``result`` is the stage function's own result (paths, ids,
    hashes); ``skipped`` is true when the cache served it because nothing changed."""

    stage: str
    result: Any
    skipped: bool
    seconds: float

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "ran"


def _call(stage: str, task: Any, workdir: str, force: bool, *args: Any) -> StageOutcome:
    """Run ``task`` with the work directory's result store; log a clear line when it was skipped."""
    t0 = time.perf_counter()
    configured = task.with_options(result_storage=tasks.results_dir(workdir), refresh_cache=force)
    state: State[Any] = configured(workdir, *args, return_state=True)
    result = state.result()  # raises the stage's own exception when it failed
    skipped = state.name == "Cached"
    if skipped:
        get_run_logger().info(
            "%s: skipped, inputs unchanged (same content hashes and config); reusing %s. "
            "Pass force=True (hqgnn run --force) to rerun.",
            stage, describe(result),
        )
    return StageOutcome(stage, result, skipped, time.perf_counter() - t0)


def describe(result: Any) -> str:
    """A short human description of a stage result: its identifying fields."""
    for name in ("snapshot", "run", "version", "batch_ids", "path"):
        value = getattr(result, name, None)
        if isinstance(value, tuple | list):
            value = ", ".join(map(str, value)) or None
        if value is not None:
            return f"{name} {value}"
    return type(result).__name__


def dir_hashes(folder: Path, names: tuple[str, ...] = ("manifest.json", "config.json", "summary.json")) -> dict[str, str]:
    """Content hashes of the named files of an output folder (a manifest records the hashes of
    everything else; a run's config and summary change whenever it is trained), or of every
    top-level file when none of them exists."""
    picked = [folder / n for n in names if (folder / n).is_file()]
    if not picked:
        picked = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return {p.name: file_sha256(p) for p in picked}


# ---- the stage flows -----------------------------------------------------------------------


@flow(name="hqgnn-ingest")
def ingest_flow(workdir: str, cfg: IngestConfig, force: bool = False) -> StageOutcome:
    """Raw files (``cfg.files``) into the warehouse; skipped when every file's content is unchanged."""
    files = tuple(str(Path(f).resolve()) for f in cfg.files)
    file_hashes = tasks.hash_files(files)
    pinned = cfg.model_copy(update={"files": tuple(Path(f) for f in files)})
    return _call("ingest", tasks.ingest, workdir, force, pinned, file_hashes)


@flow(name="hqgnn-prepare")
def prepare_flow(workdir: str, cfg: PrepareConfig, force: bool = False) -> StageOutcome:
    """Clean, k-core, split into a contract-checked snapshot (the stage reuses an identical one)."""
    del force  # prepare is keyed by the stage itself on (config, source hashes)
    t0 = time.perf_counter()
    result = tasks.prepare(workdir, cfg)
    reused = bool(getattr(result, "reused", False))
    if reused:
        get_run_logger().info(
            "prepare: skipped, warehouse content and config unchanged; reusing %s", describe(result)
        )
    return StageOutcome("prepare", result, reused, time.perf_counter() - t0)


@flow(name="hqgnn-train")
def train_flow(workdir: str, cfg: TrainConfig, force: bool = False) -> StageOutcome:
    """Train on ``cfg.snapshot`` (``splits/current`` when None); skipped when the snapshot's
    content hashes and the config are unchanged."""
    split_dir = WorkDir(Path(workdir)).split(cfg.snapshot)
    pinned = cfg.model_copy(update={"snapshot": split_dir.name})
    return _call("train", tasks.train, workdir, force, pinned, dir_hashes(split_dir))


@flow(name="hqgnn-export")
def export_flow(workdir: str, cfg: ExportConfig, force: bool = False) -> StageOutcome:
    """Export ``cfg.run`` (the latest when None) through the publish gate; skipped when that run
    was already exported with the same config. ``force`` here reruns the task; the gate's own
    override is ``cfg.force``."""
    run_dir = WorkDir(Path(workdir)).run(cfg.run)
    pinned = cfg.model_copy(update={"run": run_dir.name})
    return _call("export", tasks.export, workdir, force, pinned, dir_hashes(run_dir))


@flow(name="hqgnn-evaluate")
def evaluate_flow(workdir: str, cfg: EvaluateConfig, force: bool = False) -> StageOutcome:
    """Evaluate ``cfg.run`` (the latest when None); skipped when that run is unchanged."""
    run_dir = WorkDir(Path(workdir)).run(cfg.run)
    pinned = cfg.model_copy(update={"run": run_dir.name})
    return _call("evaluate", tasks.evaluate, workdir, force, pinned, dir_hashes(run_dir))
