"""Quality tables for BENCHMARKS.md from finished runs: no training here, only table shaping and plots.

Reads what the existing tools wrote and prints markdown tables (test split, the shipped variant:
the codes for b < 32 bits, the float embeddings for 32):

- ``--sweep LABEL=DIR``: a ``reports/sweep-<id>/comparison.parquet`` of ``flows/sweep.py``
  (LABEL is appended to the estimator, e.g. ``δ×3``; empty for the main grid). Cells of several
  seeds give mean ± spread (half the range) over seeds.
- ``--report LABEL=DIR``: one ``reports/<run>/metrics.json`` of ``hqgnn evaluate``.
- ``--gowalla-results DIR``: ``bench/quality.py``'s ``results/*.json`` (with the command line).

Columns: Recall@20, NDCG@20, Recall@50, NDCG@50, % of float32 (Recall@20), train seconds,
epochs run (best epoch), latency per query and bytes per item (``--retrieval``: a second table
with latency and size ratios vs float32 at the dataset's catalog size). ``--plot PNG`` draws
test Recall@20 vs bits, one line per estimator, float32 as a dashed level.

    .venv/bin/python bench/quality_table.py --sweep =bench/out/qt/lastfm/reports/sweep-lastfm-main \\
        --sweep 'δ×3=bench/out/qt/lastfm/reports/sweep-lastfm-d3' --plot bench/plots/lastfm_recall_vs_bits.png
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hqgnn.bits import FLOAT_BITS  # noqa: E402

METRICS = ("recall@20", "ndcg@20", "recall@50", "ndcg@50")


def _pair(spec: str) -> tuple[str, Path]:
    label, _, path = spec.rpartition("=")
    return label, Path(path)


def sweep_rows(label: str, folder: Path) -> pd.DataFrame:
    """Test rows of the shipped variant of every cell of a sweep (one row per cell)."""
    df = pd.read_parquet(folder / "comparison.parquet")
    shipped = df["bits"].map(lambda b: "float" if b == FLOAT_BITS else "codes")
    df = df[(df["split"] == "test") & (df["variant"] == shipped)].copy()
    df["estimator"] = df["estimator"].where(df["estimator"] != "none", "float32")
    if label:
        df["estimator"] = df["estimator"] + " " + label
    return df


def report_rows(label: str, folder: Path) -> pd.DataFrame:
    """Test row of the shipped variant of one ``hqgnn evaluate`` report, with its train summary."""
    m = json.loads((folder / "metrics.json").read_text())
    variant = "float" if m["bits"] == FLOAT_BITS else "codes"
    row = next(r for r in m["rows"] if r["split"] == "test" and r["variant"] == variant)
    models = folder.parent.parent / "models" / m["run"]
    summary = json.loads((models / "summary.json").read_text()) if (models / "summary.json").is_file() else {}
    hist = json.loads((models / "history.json").read_text()) if (models / "history.json").is_file() else []
    est = "float32" if m["bits"] == FLOAT_BITS else m["estimator"]
    return pd.DataFrame([{**row, "bits": m["bits"], "estimator": f"{est} {label}".strip(), "seed": 0, "run": m["run"],
                          "best_epoch": m["best_epoch"], "epochs_run": len(hist),
                          "train_seconds": summary.get("seconds", summary.get("train_seconds", float("nan")))}])


def gowalla_rows(folder: Path, match: str | None = None) -> pd.DataFrame:
    """One row per ``bench/quality.py`` result. With ``match`` (globs such as ``*-fast60*``,
    comma-separated), only those files, and rows of the same bits × estimator (× float warm-up)
    are one cell (seeds averaged); without it every file is its own row, labelled with its run name."""
    out = []
    files = sorted({f for glob in (match or "*").split(",") for f in folder.glob(f"{glob}.json")})
    for f in files:
        d = json.loads(f.read_text())
        est = "float32" if d["bits"] == FLOAT_BITS else d["estimator"]
        scale = d["config"].get("delta_scale", 1.0)
        if est == "gste" and scale != 1.0:
            est += f" δ×{scale:g}"
        if est.startswith("gste") and d["config"].get("delta_granularity", "table") == "dimension":
            est += " δ per dim"
        warmup = d["config"].get("float_warmup_epochs", 0)
        if warmup:
            est += f", {warmup} float epochs first" + (" + ITQ" if d["config"].get("itq_rotation", False) else "")
            if d["config"].get("distill_weight", 0):  # session 3's distillation experiment (not kept in TrainConfig)
                est += f" + distillation ×{d['config']['distill_weight']:g}"
        if d["config"].get("negative_candidates", 1) > 1:
            est += f", hard negatives of {d['config']['negative_candidates']} from epoch {d['config'].get('hard_negatives_from_epoch', 0)}"
        if d["config"].get("refine_user_codes", 0):
            est += f", user codes refined (up to {d['config']['refine_user_codes']} rounds)"
        # one row per run (never averaged: the runs differ in schedule); the run name tells them apart
        label = est if match else f"{est} `{f.stem}`"
        out.append({**d["test"], "bits": d["bits"], "estimator": label, "seed": d["config"]["seed"], "run": d["run"],
                    "best_epoch": d["best_epoch"], "epochs_run": d["epochs_run"], "train_seconds": d["train_seconds_total"],
                    "cmd": d["cmd"]})
    return pd.DataFrame(out)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (half the range) over seeds per (bits, estimator)."""
    cols = [c for c in (*METRICS, "train_seconds", "epochs_run", "best_epoch", "latency_ms_per_query") if c in df]
    g = df.groupby(["bits", "estimator"], sort=False)
    mean = g[cols].mean()
    spread = ((g[cols].max() - g[cols].min()) / 2).add_suffix("_spread")
    extra = g.agg(seeds=("seed", "nunique"), **({"bytes_per_item": ("bytes_per_item", "first"),
                                                 "search_bytes_per_item": ("search_bytes_per_item", "first")}
                                                if "bytes_per_item" in df else {}))
    out = mean.join(spread).join(extra).reset_index()
    out["_o"] = out["estimator"].map(_estimator_order)
    return out.sort_values(["bits", "_o"], ascending=[False, True]).drop(columns="_o").reset_index(drop=True)


def _estimator_order(est: str) -> tuple[int, int, float, str]:
    """float32, ste, gste, then gste with a δ multiplier in increasing order (labels like ``gste δ×3``),
    then the same with a float warm-up (labels like ``gste, 30 float epochs first + ITQ``), shortest first."""
    warmup = re.search(r"(\d+) float epochs first", est)
    scale = re.search(r"δ×([\d.]+)", est)
    return (int(warmup.group(1)) if warmup else 0, {"float32": 0, "ste": 1, "gste": 2}.get(est.split()[0].rstrip(","), 3),
            float(scale.group(1)) if scale else 1.0, est)


def _fmt(r: pd.Series, c: str, spread: bool) -> str:
    s = f"{r[c]:.4f}"
    if spread and f"{c}_spread" in r and r["seeds"] > 1:
        s += f" ± {r[f'{c}_spread']:.4f}"
    return s


def quality_markdown(s: pd.DataFrame) -> str:
    fp = s.loc[s["bits"] == FLOAT_BITS, "recall@20"]
    base = float(fp.max()) if len(fp) else float("nan")  # the best float32 row
    lines = ["| codes | estimator | seeds | Recall@20 | NDCG@20 | Recall@50 | NDCG@50 | % of best fp32 R@20 | train s | epochs (best) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in s.iterrows():
        codes = "float32" if r["bits"] == FLOAT_BITS else f"{int(r['bits'])} bit"
        est = "–" if r["estimator"] == "float32" else r["estimator"].removeprefix("float32 ").removeprefix("float32, ")
        lines.append(f"| {codes} | {est} | {int(r['seeds'])} | " + " | ".join(_fmt(r, c, True) for c in METRICS)
                     + f" | {100 * r['recall@20'] / base:.1f} % | {r['train_seconds']:.0f} | {r['epochs_run']:.0f} ({r['best_epoch']:.0f}) |")
    return "\n".join(lines)


def retrieval_markdown(s: pd.DataFrame) -> str:
    """Latency per query and bytes per item vs float32 (one row per bit width; first estimator)."""
    s = s.drop_duplicates("bits")
    fp = s[s["bits"] == FLOAT_BITS].iloc[0]
    lines = ["| codes | ms/query | speed vs fp32 | B/item packed (code + scale) | B/item scanned | smaller than fp32 (packed) |",
             "|---|---|---|---|---|---|"]
    for _, r in s.iterrows():
        codes = "float32" if r["bits"] == FLOAT_BITS else f"{int(r['bits'])} bit"
        lines.append(f"| {codes} | {r['latency_ms_per_query']:.3f} | {fp['latency_ms_per_query'] / r['latency_ms_per_query']:.2f}× | "
                     f"{int(r['bytes_per_item'])} | {int(r['search_bytes_per_item'])} | {fp['bytes_per_item'] / r['bytes_per_item']:.1f}× |")
    return "\n".join(lines)


def plot(s: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ests = sorted(s.loc[s["bits"] != FLOAT_BITS, "estimator"].unique(), key=_estimator_order)
    for j, est in enumerate(ests):  # small horizontal offsets so overlapping points stay visible
        part = s[(s["estimator"] == est) & (s["bits"] != FLOAT_BITS)].sort_values("bits")
        yerr = part["recall@20_spread"] if (part["seeds"] > 1).any() else None
        ax.errorbar(part["bits"] * 1.04 ** (j - (len(ests) - 1) / 2), part["recall@20"], yerr=yerr, marker="o",
                    capsize=3, label=est)
    for v in s.loc[s["bits"] == FLOAT_BITS, "recall@20"]:
        ax.axhline(v, linestyle="--", color="gray", label="float32")
    ax.set_xscale("log", base=2)
    ticks = sorted(int(b) for b in s["bits"].unique() if b != FLOAT_BITS)
    ax.set_xticks(ticks, [str(b) for b in ticks])
    ax.set_xlabel("bits per dimension")
    ax.set_ylabel("test Recall@20")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def gste_effect(model_dir: Path) -> str:
    """How far GSTE's factor ``1 + δ·sign(g)·(x − x̂)`` moves from 1 (= STE) at the run's best checkpoint and last δ."""
    from flows.trained_runs import load_run
    from hqgnn.quant import quantize

    run = load_run(model_dir)
    if run.bits == FLOAT_BITS:
        raise SystemExit(f"{model_dir}: a float32 run has no codes and no GSTE")
    last = json.loads((model_dir / "history.json").read_text())[-1]
    parts = [f"{model_dir.name}:"]
    for side, x, delta in (("users", run.float_user_emb, last["delta_user"]), ("items", run.item_emb, last["delta_item"])):
        q = quantize(x, run.bits)  # the pair training saw (before any user-code refinement)
        err = (x - q.dequantize()).abs()
        parts.append(f"{side} δ={delta:.4f} mean|x|={x.abs().mean():.4f} mean|x−x̂|={err.mean():.4f} "
                     f"mean|δ(x−x̂)|={delta * err.mean():.5f} max={delta * err.max():.4f};")
    return " ".join(parts)


def delta_plot(s: pd.DataFrame, path: Path, title: str) -> None:
    """1-bit test Recall@20 of STE and of GSTE at each δ multiplier (categorical x axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = s[s["bits"] == 1].copy()
    one["_o"] = one["estimator"].map(_estimator_order)
    one = one.sort_values("_o")
    labels = ["STE" if o[0] == 1 else f"GSTE δ×{o[1]:g}" for o in one["_o"]]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.errorbar(range(len(one)), one["recall@20"], yerr=one["recall@20_spread"].where(one["seeds"] > 1, 0),
                marker="o", capsize=3, linestyle="none")
    ax.set_xticks(range(len(one)), labels)
    ax.set_ylabel("test Recall@20 (1-bit codes)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sweep", action="append", default=[], help="LABEL=reports/sweep-<id> (LABEL may be empty)")
    ap.add_argument("--report", action="append", default=[], help="LABEL=reports/<run>")
    ap.add_argument("--gowalla-results", type=Path, help="bench/quality.py results folder")
    ap.add_argument("--gowalla-match", help="only results/<glob>.json (comma-separated globs), one cell per bits × estimator (seeds averaged)")
    ap.add_argument("--retrieval", action="store_true", help="also print latency / bytes ratios vs float32")
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--title", default="")
    ap.add_argument("--delta-plot", type=Path, help="1-bit Recall@20 of STE and GSTE per δ multiplier")
    ap.add_argument("--delta-title", default="")
    ap.add_argument("--gste-effect", action="append", default=[], type=Path, help="models/<run> of a GSTE run: size of its correction")
    args = ap.parse_args()
    for m in args.gste_effect:
        print(gste_effect(m))
    if not (args.sweep or args.report or args.gowalla_results):
        return
    parts = [sweep_rows(*_pair(s)) for s in args.sweep] + [report_rows(*_pair(r)) for r in args.report]
    if args.gowalla_results:
        g = gowalla_rows(args.gowalla_results, args.gowalla_match)
        for _, r in g.iterrows():
            print(f"- `{r['run']}`: `.venv/bin/python {r['cmd']}`")
        parts.append(g)
    s = summarise(pd.concat(parts, ignore_index=True))
    print(quality_markdown(s))
    if args.retrieval:
        print()
        print(retrieval_markdown(s))
    if args.plot:
        plot(s, args.plot, args.title)
        print(f"\nplot: {args.plot}")
    if args.delta_plot:
        delta_plot(s, args.delta_plot, args.delta_title)
        print(f"plot: {args.delta_plot}")


if __name__ == "__main__":
    main()
