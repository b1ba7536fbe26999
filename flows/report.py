"""Evaluation report files: metrics table (Parquet + JSON), markdown report, PNG plots.

``reports/<run>/``: ``metrics.parquet`` (one row per variant and split), ``metrics.json``
(the same rows plus run facts), ``report.md``, ``plots/recall_vs_bits.png`` and
``plots/recall_vs_latency.png``. Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hqgnn.bits import ALL_BITS, is_float

NDCG_NOTE = (
    "NDCG@K uses the LightGCN convention: the ideal DCG counts min(|test items of the user|, K) "
    "hits; users without items in the evaluated split are skipped. Full ranking over all items; "
    "train items are masked (and valid items too when evaluating test)."
)


def write_metrics(folder: Path, facts: dict[str, Any], rows: Sequence[dict[str, Any]]) -> None:
    """``metrics.parquet`` (rows, with ``run``) and ``metrics.json`` (facts + rows)."""
    run = facts.get("run")
    table = pa.Table.from_pylist([{"run": run, **r} for r in rows])
    pq.write_table(table, folder / "metrics.parquet")
    (folder / "metrics.json").write_text(json.dumps({**facts, "rows": list(rows)}, indent=2, sort_keys=True, default=str) + "\n")


def users_note(facts: dict[str, Any]) -> str:
    """``" (items; users float32)"`` for a ``float_users`` run's facts, else empty."""
    bits, user_bits = facts.get("bits"), facts.get("user_bits", facts.get("bits"))
    return " (items; users float32)" if user_bits != bits else ""


def plot_recall_vs_bits(path: Path, points: Sequence[dict[str, Any]], metric: str) -> None:
    """Test ``metric`` against code width (32 = float): this run and every other evaluated run
    of the same snapshot (``points``: rows with ``run, bits, variant, split, <metric>``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    pts = [p for p in points if p["split"] == "test" and p["variant"] in ("float", "codes") and p.get(metric) is not None]
    by_est: dict[str, list[tuple[int, float]]] = {}
    for p in pts:
        label = "float32" if is_float(p["bits"]) else p.get("estimator", "codes")
        by_est.setdefault(label, []).append((p["bits"], p[metric]))
    for label, xy in sorted(by_est.items()):
        xy.sort()
        ax.plot([x for x, _ in xy], [y for _, y in xy], "o-" if label != "float32" else "s", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ALL_BITS), [f"{b} (float)" if is_float(b) else str(b) for b in ALL_BITS])
    ax.set_xlabel("bits per dimension")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{metric} vs code width")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_recall_vs_latency(path: Path, rows: Sequence[dict[str, Any]], metric: str) -> None:
    """Test ``metric`` against latency per query, one point per variant of this run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=110)
    for r in rows:
        if r["split"] != "test":
            continue
        ax.scatter([r["latency_ms_per_query"]], [r[metric]], s=40)
        ax.annotate(f"{r['variant']} ({r['bits']}b, {r['search_bytes_per_item']} B/item)", (r["latency_ms_per_query"], r[metric]), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("latency per query, ms (masked top-K over all items)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{metric} vs latency")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def markdown(facts: dict[str, Any], rows: Sequence[dict[str, Any]], ks: Sequence[int]) -> str:
    """The report: run facts, the metrics table, latency and memory, conventions, plots."""
    metric_cols = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "precision", "hit_rate")]
    cols = ["split", "variant", "bits", "rank_by", "users", *metric_cols, "latency_ms_per_query", "search_bytes_per_item", "bytes_per_item"]
    lines = [
        f"# Evaluation of run `{facts['run']}`",
        "",
        f"- bits: {facts['bits']}{users_note(facts)}, estimator: {facts['estimator']}, dim: {facts['dim']}, best epoch: {facts['best_epoch']}",
        f"- split snapshot: `{facts['snapshot']}` ({facts['num_users']} users, {facts['num_items']} items)",
        f"- evaluated: {facts['evaluated_at']} on {facts['device']} ({facts['threads']} threads)",
        "",
        "## Metrics",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    lines += [
        "",
        "## Conventions",
        "",
        f"- {NDCG_NOTE}",
        "- `float`: float32 embeddings. `codes`: the model's score from the codes, s_u s_i <q_u, q_i> "
        "(1 bit: s_u s_i (d - 2 Hamming), by XOR + popcount). `codes_hamming`: pure Hamming distance "
        "(ignores the item scale; FAISS IndexBinaryFlat; what `sql/queries/user_topk_hamming.sql` ranks by). "
        "`rerank`: top-R by codes re-ranked with float embeddings (HashGNN-style).",
        "- Latency: wall time of a masked top-K over all items (K = largest cut-off) for a sample of "
        f"{facts.get('latency_users', '?')} users in one batch, divided by the users, median of 3; CPU threads shared.",
        "- Memory: `search_bytes_per_item` is what the retriever holds per item while scoring "
        "(b-bit codes are scored as int8 values); `bytes_per_item` is the exported packed code plus its float32 scale.",
        "",
        "## Plots",
        "",
        "![recall vs bits](plots/recall_vs_bits.png)",
        "",
        "![recall vs latency](plots/recall_vs_latency.png)",
        "",
    ]
    return "\n".join(lines)


def write_report(
    folder: Path,
    facts: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    ks: Sequence[int],
    bit_points: Sequence[dict[str, Any]] = (),
) -> None:
    """Write every report file into ``folder`` (a fresh temporary folder, renamed by the caller)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plots").mkdir(exist_ok=True)
    metric = f"recall@{min(ks)}"
    write_metrics(folder, facts, rows)
    own = [{**r, "run": facts["run"], "estimator": facts["estimator"]} for r in rows]
    plot_recall_vs_bits(folder / "plots" / "recall_vs_bits.png", [*bit_points, *own], metric)
    plot_recall_vs_latency(folder / "plots" / "recall_vs_latency.png", rows, metric)
    (folder / "report.md").write_text(markdown(facts, rows, ks))
