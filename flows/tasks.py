"""Thin Prefect tasks over the stage functions of ``flows/stages`` (no math here).

Each task is a few lines: unpack the arguments, call one stage function, return its small
frozen result (paths, ids, content hashes; never DataFrames or tensors). The stage functions
validate their data contract before returning, so a task that returns has passed its contract.

Caching: the expensive stages are cached on their inputs (``INPUTS + TASK_SOURCE``: the config
model, the work directory and the content hashes of what the stage reads, plus this file's
source), with results persisted in ``<workdir>/.prefect/results`` so a cache survives across runs
and vanishes with the work directory it describes. ``refresh_cache=True`` (``--force``) reruns.

Retries: only on the I/O tasks (hashing/ingesting raw files, writing exports, writing the runs
row), and only for transient operating-system errors; bad input, a failed contract or a refused
publish gate fail at once with their own message.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import duckdb
from prefect import Task, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from flows.stages import evaluate as evaluate_stage
from flows.stages import export as export_stage
from flows.stages import ingest as ingest_stage
from flows.stages import prepare as prepare_stage
from flows.stages import train as train_stage
from hqgnn.config import EvaluateConfig, ExportConfig, IngestConfig, PrepareConfig, TrainConfig
from hqgnn.errors import HqgnnError
from hqgnn.workdir import WorkDir, file_sha256

CACHED = INPUTS + TASK_SOURCE
RESULTS_DIR = Path(".prefect") / "results"
IO_RETRIES = 2
IO_RETRY_DELAY_S = 2.0

# OS errors that a retry cannot fix: the file is not there, or we may not read it.
_PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying: OS-level I/O errors and a DuckDB file held by another process.

    Never for hqgnn's own errors (bad input, contract, publish gate) or a missing/forbidden file.
    """
    if isinstance(exc, (HqgnnError, ValueError, *_PERMANENT_OS_ERRORS)):
        return False
    return isinstance(exc, OSError | duckdb.IOException)


def retry_if_transient(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn`` of the I/O tasks (see :func:`is_transient`)."""
    try:
        state.result()
    except BaseException as exc:  # the failed state re-raises its exception here
        return is_transient(exc)
    return False


def results_dir(workdir: str | Path) -> Path:
    """Where the cached task results of a work directory live."""
    return Path(workdir) / RESULTS_DIR


# ---- I/O helpers ---------------------------------------------------------------------------


@task(name="list-drop-folder", cache_policy=NO_CACHE, retries=IO_RETRIES,
      retry_delay_seconds=IO_RETRY_DELAY_S, retry_condition_fn=retry_if_transient)
def list_drop_folder(folder: str, pattern: str) -> tuple[str, ...]:
    """Files in ``folder`` (not recursive, hidden files skipped) whose name matches ``pattern``, sorted."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"drop folder {root} does not exist")
    return tuple(
        str(p.resolve())
        for p in sorted(root.iterdir())
        if p.is_file() and not p.name.startswith(".") and fnmatch.fnmatch(p.name, pattern)
    )


@task(name="hash-files", cache_policy=NO_CACHE, retries=IO_RETRIES,
      retry_delay_seconds=IO_RETRY_DELAY_S, retry_condition_fn=retry_if_transient)
def hash_files(files: tuple[str, ...]) -> dict[str, str]:
    """SHA-256 of each file's bytes, keyed by path (the cache key of ingestion)."""
    return {f: file_sha256(Path(f)) for f in files}


# ---- stages --------------------------------------------------------------------------------


@task(name="ingest", cache_policy=CACHED, persist_result=True, retries=IO_RETRIES,
      retry_delay_seconds=IO_RETRY_DELAY_S, retry_condition_fn=retry_if_transient)
def ingest(workdir: str, cfg: IngestConfig, file_hashes: dict[str, str]) -> Any:
    """Raw files into the warehouse. Cached on the files' content hashes + config."""
    del file_hashes  # part of the cache key only
    return ingest_stage.ingest(WorkDir(Path(workdir)), cfg)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(workdir: str, cfg: PrepareConfig) -> Any:
    """Clean, k-core, split. Not cached by Prefect: its input is the warehouse content, and the
    stage itself keys its snapshot on (config, source hashes) and reuses an identical one."""
    return prepare_stage.prepare(WorkDir(Path(workdir)), cfg)


@task(name="train", cache_policy=CACHED, persist_result=True)
def train(workdir: str, cfg: TrainConfig, split_hashes: dict[str, str]) -> Any:
    """Train on the snapshot pinned in ``cfg.snapshot`` (``cfg.nproc > 1``: data-parallel
    processes through torchrun, as ``hqgnn train --nproc``). Cached on its split hashes + config."""
    del split_hashes  # part of the cache key only
    if cfg.nproc > 1:
        from flows.stages.train_ddp import train_distributed

        return train_distributed(WorkDir(Path(workdir)), cfg)
    return train_stage.train(WorkDir(Path(workdir)), cfg)


@task(name="export", cache_policy=CACHED, persist_result=True, retries=IO_RETRIES,
      retry_delay_seconds=IO_RETRY_DELAY_S, retry_condition_fn=retry_if_transient)
def export(workdir: str, cfg: ExportConfig, run_hashes: dict[str, str]) -> Any:
    """Export the run pinned in ``cfg.run`` and publish it through the gate (raises
    ``PublishGateError`` when refused). Cached on the run's checkpoint hashes + config."""
    del run_hashes  # part of the cache key only
    return export_stage.export(WorkDir(Path(workdir)), cfg)


@task(name="evaluate", cache_policy=CACHED, persist_result=True)
def evaluate(workdir: str, cfg: EvaluateConfig, run_hashes: dict[str, str]) -> Any:
    """Evaluate the run pinned in ``cfg.run``. Cached on the run's hashes + config."""
    del run_hashes  # part of the cache key only
    return evaluate_stage.evaluate(WorkDir(Path(workdir)), cfg)
