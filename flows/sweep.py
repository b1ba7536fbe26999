"""Flow ``hqgnn-sweep`` (issue 7): train + evaluate a grid (bits x estimator x seed) in parallel.

The cells run as Prefect tasks on a Dask cluster through ``prefect_dask.DaskTaskRunner``: a
``LocalCluster`` of ``n_workers`` processes by default, or any running Dask cluster given by
``dask_address`` (``tcp://scheduler:8786``; its workers need this package, the work directory
on a shared path and the Prefect API URL). Each cell is one call of the stage functions
(:func:`flows.stages.train.train`, :func:`flows.stages.evaluate.evaluate`) with a run name of its
own, on the split snapshot pinned at the start. The flow then writes one comparison table and
a plot into ``reports/sweep-<id>/``::

    comparison.parquet   one row per cell x split x variant (metrics, latency, bytes, train time;
                         ``bits`` is the cell's, ``variant_bits`` the variant's)
    comparison.md        mean ± std over seeds of the test metrics, one row per bits x estimator
    recall_vs_bits.png   test recall@K (shipped variant) vs bits, one line per estimator

and a markdown artifact ``sweep``. No math here: table shaping and plotting only.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.config import EvaluateConfig, TrainConfig
from flows.lock import workdir_lock
from flows.workdir import DEFAULT_WORKDIR, WorkDir, atomic_dir
from hqgnn.bits import ALL_BITS, QUANT_ESTIMATORS, default_estimator, is_float
from hqgnn.recipe import TrainRecipe

DEFAULT_BITS = ALL_BITS
DEFAULT_ESTIMATORS = QUANT_ESTIMATORS


GRID_KEYS = ("bits", "estimator", "seed")  # the sweep's own axes; any other recipe field may be an axis too


def check_axes(axes: dict[str, list[Any]]) -> None:
    """Each axis is a training-recipe field other than the grid's own (bits, estimator, seed),
    with at least one value and no value twice; a ``ValueError`` names the axis."""
    for key, values in axes.items():
        if key in GRID_KEYS or key not in TrainRecipe.model_fields:
            known = ", ".join(k for k in TrainRecipe.model_fields if k not in GRID_KEYS)
            raise ValueError(f"sweep axis {key!r}: not a train setting that can vary (one of {known})")
        if not values or len(set(map(repr, values))) != len(values):
            raise ValueError(f"sweep axis {key!r}: give distinct values, got {values!r}")


def _label(key: str, value: Any) -> str:
    """``dim`` 64 -> ``d64``, ``lr`` 0.01 -> ``lr0.01``: the part of a run name an axis adds."""
    text = "".join(c if c.isalnum() or c in ".-" else "_" for c in str(value))
    return f"d{text}" if key == "dim" else f"{key}{text}"


def sweep_cells(
    base: TrainConfig, bits: list[int], estimators: list[str], seeds: list[int], snapshot: str, sweep_id: str,
    axes: dict[str, list[Any]] | None = None,
) -> list[TrainConfig]:
    """The grid as train configs: bits x estimators x seeds x every ``axes`` value (e.g.
    ``{"dim": [32, 64]}``); 32 bits is float (estimator ``none``, once per seed and setting)."""
    axes = axes or {}
    check_axes(axes)
    cells: list[TrainConfig] = []
    for b, seed, combo in itertools.product(bits, seeds, itertools.product(*axes.values())):
        setting = dict(zip(axes, combo, strict=True))
        name = "".join(f"-{_label(k, v)}" for k, v in setting.items())
        for est in ([default_estimator(b)] if is_float(b) else estimators):
            cells.append(TrainConfig(**{
                **base.model_dump(), **setting, "bits": b, "estimator": est, "seed": seed, "snapshot": snapshot,
                "run": f"sweep-{sweep_id}-b{b}-{est}{name}-s{seed}", "resume": False, "nproc": 1,
            }))
    if not cells:
        raise ValueError("hqgnn-sweep: the grid is empty (give at least one of bits, estimators, seeds)")
    return cells


@task(name="sweep-cell", cache_policy=NO_CACHE)
def train_and_evaluate(workdir: WorkDir, cfg: TrainConfig, eval_cfg: EvaluateConfig, torch_threads: int,
                       axes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Train one cell, evaluate it; rows of its metrics (one per split x variant) with its settings
    (its ``dim`` and the value of every other sweep axis)."""
    import torch
    from rich.console import Console

    from flows.stages.evaluate import evaluate
    from flows.stages.train import train

    torch.set_num_threads(torch_threads)
    quiet = Console(stderr=True, quiet=True)  # many cells at once: the Prefect log has the summary
    trained = train(workdir, cfg, console=quiet)
    evaluated = evaluate(workdir, eval_cfg.model_copy(update={"run": trained.run}), console=quiet)
    get_run_logger().info("%s: best valid recall@20 %.4f at epoch %d, %.1f s", trained.run,
                          trained.best_valid.get("recall@20", float("nan")), trained.best_epoch, trained.seconds)
    cell = {"run": trained.run, "bits": cfg.bits, "estimator": cfg.estimator, "seed": cfg.seed, "dim": cfg.dim,
            **{k: getattr(cfg, k) for k in axes},
            "best_epoch": trained.best_epoch, "epochs_run": trained.epochs_run, "train_seconds": trained.seconds}
    # a metric row's own ``bits`` is its variant's (32 for the float variant of a 1-bit run)
    return [{**cell, **{("variant_bits" if k == "bits" else k): v for k, v in row.items()}} for row in evaluated.metrics]


@flow(name="hqgnn-sweep-grid")
def _run_grid(workdir: WorkDir, cells: list[TrainConfig], evaluate: EvaluateConfig, torch_threads: int,
              axes: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Submit every cell to the flow's task runner (Dask) and gather their rows."""
    futures = [train_and_evaluate.submit(workdir, c, evaluate, torch_threads, axes) for c in cells]
    return [row for f in futures for row in f.result()]


def shipped_variant(bits: int) -> str:
    """The variant a run ships: its codes, or the float embeddings for 32 bits."""
    return "float" if is_float(bits) else "codes"


def summary_table(rows: pd.DataFrame, k: int, axes: tuple[str, ...] = ()) -> pd.DataFrame:
    """Mean and std over seeds of the shipped variant's test metrics and its bytes per item
    (packed code + scale), per bits x estimator x the value of each sweep axis."""
    test = rows[(rows["split"] == "test") & (rows["variant"] == rows["bits"].map(shipped_variant))]
    cols = [f"recall@{k}", f"ndcg@{k}", "latency_ms_per_query", "train_seconds", "bytes_per_item"]
    keys = ["bits", "estimator", *axes]
    g = test.groupby(keys)[cols]
    out = g.mean().join(g.std(ddof=0), rsuffix="_std").join(g.size().rename("seeds"))
    return out.reset_index().sort_values(keys)


def markdown(summary: pd.DataFrame, k: int, sweep_id: str, snapshot: str, n_cells: int, axes: tuple[str, ...] = ()) -> str:
    head = ["bits", "estimator", *axes, "seeds", f"recall@{k}", f"ndcg@{k}", "bytes/item", "ms/query", "train s"]
    lines = [f"# Sweep {sweep_id}", "", f"Snapshot `{snapshot}`, {n_cells} cells; test split, shipped variant "
             "(codes; float for 32 bits); mean ± std over seeds; bytes per item = packed code + scale.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary.to_dict("records"):
        values = [r["bits"], r["estimator"], *(r[a] for a in axes), r["seeds"],
                  f"{r[f'recall@{k}']:.4f} ± {r[f'recall@{k}_std']:.4f}", f"{r[f'ndcg@{k}']:.4f} ± {r[f'ndcg@{k}_std']:.4f}",
                  f"{r['bytes_per_item']:.0f}", f"{r['latency_ms_per_query']:.3f}", f"{r['train_seconds']:.1f}"]
        lines.append("| " + " | ".join(map(str, values)) + " |")
    return "\n".join(lines) + "\n"


def plot_frontier(summary: pd.DataFrame, k: int, path: Path) -> None:
    """Test recall@k vs bytes per item (log2 axis): every setting a point, one line per estimator
    through its best point at each size (the frontier a byte budget picks from)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for est, part in summary.groupby("estimator"):
        label = "float32" if est == "none" else str(est)
        best = part.sort_values(f"recall@{k}").groupby("bytes_per_item").tail(1).sort_values("bytes_per_item")
        ax.plot(part["bytes_per_item"], part[f"recall@{k}"], "o", alpha=0.4)
        ax.plot(best["bytes_per_item"], best[f"recall@{k}"], "-o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per item (code + scale)")
    ax.set_ylabel(f"test recall@{k}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot(summary: pd.DataFrame, k: int, path: Path) -> None:
    """Test recall@k vs bits (log2 axis), one line per estimator; float as a dashed level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for est, part in summary.groupby("estimator"):
        if est == "none":
            for v in part[f"recall@{k}"]:
                ax.axhline(v, linestyle="--", color="gray", label="float32")
            continue
        ax.errorbar(part["bits"], part[f"recall@{k}"], yerr=part[f"recall@{k}_std"], marker="o", capsize=3, label=str(est))
    ax.set_xscale("log", base=2)
    ticks = sorted(int(b) for b in summary["bits"].unique() if not is_float(b))
    ax.set_xticks(ticks, [str(b) for b in ticks])
    ax.set_xlabel("bits")
    ax.set_ylabel(f"test recall@{k}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@task(name="write-sweep-report", cache_policy=NO_CACHE)
def write_sweep_report(workdir: WorkDir, rows: list[dict[str, Any]], k: int, sweep_id: str, snapshot: str, n_cells: int,
                       axes: tuple[str, ...] = ()) -> str:
    """``reports/sweep-<id>/`` (temp folder renamed into place) and the markdown artifact ``sweep``."""
    df = pd.DataFrame(rows).sort_values(["bits", "estimator", *axes, "seed", "split", "variant"]).reset_index(drop=True)
    summary = summary_table(df, k, axes)
    md = markdown(summary, k, sweep_id, snapshot, n_cells, axes)
    final = workdir.reports / f"sweep-{sweep_id}"
    with atomic_dir(final) as tmp:
        tmp.chmod(0o755)
        df.to_parquet(tmp / "comparison.parquet", index=False)
        (tmp / "comparison.md").write_text(md)
        (tmp / "sweep.json").write_text(json.dumps({"sweep_id": sweep_id, "snapshot": snapshot, "cells": n_cells, "k": k}))
        plot(summary, k, tmp / "recall_vs_bits.png")
        plot_frontier(summary, k, tmp / "recall_vs_bytes.png")
    create_markdown_artifact(key="sweep", markdown=md + f"\nFiles: `{final}`\n", description=f"hqgnn sweep {sweep_id}")
    return str(final)


@flow(name="hqgnn-sweep")
def hqgnn_sweep(
    workdir: str = str(DEFAULT_WORKDIR),
    bits: list[int] = list(DEFAULT_BITS),  # noqa: B006 (Prefect parameters; never mutated)
    estimators: list[str] = list(DEFAULT_ESTIMATORS),  # noqa: B006
    seeds: list[int] = [2024],  # noqa: B006
    axes: dict[str, list[Any]] | None = None,
    train: TrainConfig = TrainConfig(),  # noqa: B008
    evaluate: EvaluateConfig = EvaluateConfig(),  # noqa: B008
    sweep_id: str | None = None,
    dask_address: str | None = None,
    n_workers: int = 2,
    torch_threads: int = 0,
    lock_wait: float = 0.0,
) -> str:
    """Train and evaluate every cell of ``bits x estimators x seeds x axes`` (``axes``: more train
    settings to vary, e.g. ``{"dim": [32, 64, 128, 256]}``; ``train`` gives the others) in
    parallel; returns the report folder ``reports/sweep-<id>`` (table, recall-vs-bits and
    recall-vs-bytes-per-item plots).

    ``dask_address``: a running Dask scheduler; ``None`` starts a ``LocalCluster`` of
    ``n_workers`` processes (1 thread each). ``torch_threads``: intra-op threads per cell
    (0: cores // n_workers). The flow holds the work directory's lock (:mod:`flows.lock`; the
    Dask workers run under it); ``lock_wait`` seconds to wait for another writer (<0: no limit).
    """
    wd = WorkDir(Path(workdir).resolve())
    with workdir_lock(wd, "sweep", math.inf if lock_wait < 0 else lock_wait):
        return _sweep(wd, bits, estimators, seeds, axes or {}, train, evaluate, sweep_id, dask_address, n_workers, torch_threads)


def _sweep(wd: WorkDir, bits: list[int], estimators: list[str], seeds: list[int], axes: dict[str, list[Any]],
           train: TrainConfig, evaluate: EvaluateConfig, sweep_id: str | None, dask_address: str | None, n_workers: int,
           torch_threads: int) -> str:
    """The body of flow ``hqgnn-sweep``, under the lock."""
    from prefect_dask import DaskTaskRunner

    snapshot = wd.split(train.snapshot).resolve().name  # pinned: every cell trains on the same data
    sweep_id = sweep_id or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    cells = sweep_cells(train, bits, estimators, seeds, snapshot, sweep_id, axes)
    threads = torch_threads or max(1, (os.cpu_count() or 1) // n_workers)
    runner = (DaskTaskRunner(address=dask_address) if dask_address else
              DaskTaskRunner(cluster_kwargs={"n_workers": n_workers, "threads_per_worker": 1, "processes": True,
                                             "dashboard_address": None}))
    get_run_logger().info("sweep %s: %d cells on %s", sweep_id, len(cells), dask_address or f"a local Dask cluster of {n_workers} workers")
    rows = _run_grid.with_options(task_runner=runner)(wd, cells, evaluate, threads, tuple(axes))  # type: ignore[arg-type]
    return write_sweep_report(wd, rows, min(evaluate.ks), sweep_id, snapshot, len(cells), tuple(axes))
