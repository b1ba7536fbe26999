"""Stage `evaluate` (issue 4): a run on valid and test, float and codes -> ``reports/<run>/``.

extract (run, split) -> compute (:func:`hqgnn.evaluation.evaluate_run`: every variant through
:func:`hqgnn.metrics.evaluate_ranking`) -> write (temp folder, renamed over ``reports/<run>``).
The recall-vs-bits plot adds the test rows of every other report of the same split snapshot.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from flows.config import EvaluateConfig
from flows.report import write_report
from flows.split_files import load_split
from flows.trained_runs import load_run
from flows.workdir import WorkDir, atomic_dir
from hqgnn.evaluation import evaluate_run


@dataclass(frozen=True)
class EvaluateResult:
    """What `hqgnn evaluate` wrote: the run, its report folder and the metric rows."""

    run: str
    report_dir: Path
    metrics: tuple[dict[str, Any], ...]


def evaluate(workdir: WorkDir, cfg: EvaluateConfig, console: Console | None = None) -> EvaluateResult:
    """Evaluate ``cfg.run`` (default: latest) and write its report."""
    console = console or Console(stderr=True)
    start = time.perf_counter()
    run_dir = workdir.run(cfg.run)
    with console.status(f"[bold]evaluate[/]: loading run {run_dir.name}") as status:
        run = load_run(run_dir)
        split = load_split(run.split_dir)
        users, items = run.code_tables()
        rows = evaluate_run(
            run.float_user_emb, run.item_emb, users, items, split.train, split.valid, split.test,
            ks=cfg.ks, batch_size=cfg.batch_size, rerank_r=cfg.rerank_r if cfg.rerank else None,
            progress=lambda msg: status.update(f"[bold]evaluate[/] {run.name}: {msg}"),
        )
    facts = {
        "run": run.name, "bits": run.bits, "user_bits": run.user_bits, "estimator": run.estimator, "dim": run.dim,
        "best_epoch": run.best_epoch, "snapshot": split.snapshot, "num_users": split.num_users,
        "num_items": split.num_items, "ks": list(cfg.ks), "rerank": cfg.rerank, "rerank_r": cfg.rerank_r,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"), "device": "cpu",
        "threads": torch.get_num_threads(), "latency_users": rows[0]["latency_users"] if rows else 0,
    }
    final = workdir.report(run.name)
    with atomic_dir(final) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private; reports are for every reader
        write_report(tmp, facts, rows, cfg.ks, _other_runs(workdir, run.name, split.snapshot))
    _print_summary(console, run.name, rows, cfg.ks, final, time.perf_counter() - start)
    return EvaluateResult(run.name, final, tuple(rows))


def _other_runs(workdir: WorkDir, run: str, snapshot: str) -> list[dict[str, Any]]:
    """Test rows of the other runs' reports on the same snapshot (for recall vs bits)."""
    points: list[dict[str, Any]] = []
    if not workdir.reports.is_dir():
        return points
    for path in sorted(workdir.reports.glob("*/metrics.json")):
        if path.parent.name == run:
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("snapshot") != snapshot:
            continue
        points += [{**r, "run": doc.get("run"), "estimator": doc.get("estimator")} for r in doc.get("rows", [])]
    return points


def _print_summary(console: Console, run: str, rows: list[dict[str, Any]], ks: tuple[int, ...], path: Path, seconds: float) -> None:
    from rich.table import Table

    table = Table(title=f"evaluate {run}", title_justify="left")
    cols = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]
    for c in ("split", "variant", *cols, "ms/query", "B/item"):
        table.add_column(c)
    for r in rows:
        table.add_row(r["split"], r["variant"], *(f"{r[c]:.4f}" for c in cols), f"{r['latency_ms_per_query']:.3f}", str(r["search_bytes_per_item"]))
    console.print(table)
    console.print(f"[bold]evaluate[/]: report in {path} ({seconds:.1f}s)", highlight=False)
