"""Benchmark: ingest + clean + 10-core + random split of a generated interaction log, end to end.

    python bench/pipeline.py --rows 10000000 [--contracts/--no-contracts] [--format csv|parquet]

The log (hqgnn.synthetic: power-law items, heavy-tailed users, ~1 M users / 200 k items at
10 M rows) is generated first and NOT timed. Then ``ingest`` and ``prepare`` run in a fresh work
directory, exactly as the CLI runs them. The last line printed is
``rows=<n> seconds=<wall> peak_mb=<peak rss>`` (peak RSS of this process, DuckDB included).
With contracts on, GX checks every stage output in DuckDB (flows.contracts) and writes its Data
Docs to ``<work>/reports/data-docs/`` (kept with ``--keep``).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flows.config import IngestConfig, PrepareConfig  # noqa: E402
from flows.workdir import WorkDir  # noqa: E402
from hqgnn.synthetic import SyntheticSpec, write_interactions  # noqa: E402


def spec_for(rows: int) -> SyntheticSpec:
    """1 M users / 200 k items at 10 M rows (mean 10 events per user), scaled linearly below."""
    scale = rows / 10_000_000
    return SyntheticSpec(
        num_users=max(1000, int(1_000_000 * scale)), num_items=max(500, int(200_000 * scale)),
        mean_events_per_user=10, min_events_per_user=3, seed=11,
    )


def _generate(path: str, rows: int) -> None:
    write_interactions(Path(path), spec_for(rows))


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="approximate interactions to generate")
    ap.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format of the generated log")
    ap.add_argument("--contracts", action=argparse.BooleanOptionalAction, default=True,
                    help="run the data contracts after each stage (as the product does)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="hqgnn-bench-"))
    try:
        t = time.perf_counter()
        path = root / f"log.{args.format}"
        # generated in a child process, so its memory is not part of this process's peak RSS
        code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from bench.pipeline import _generate; _generate({str(path)!r}, {args.rows})"
        subprocess.run([sys.executable, "-c", code], check=True)
        print(f"generated {path} in {time.perf_counter() - t:.1f} s (not timed)", flush=True)

        from flows.stages.ingest import ingest
        from flows.stages.prepare import prepare

        patches = []
        if not args.contracts:
            patches = [mock.patch(f"flows.stages.{m}", lambda *a, **k: None)
                       for m in ("ingest.check_contract", "prepare.check_contract", "prepare.check_splits")]
        for p in patches:
            p.start()
        workdir = WorkDir(root / "work")
        t0 = time.perf_counter()
        cols = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": "rating"}
        ing = ingest(workdir, IngestConfig(files=(path,), format=args.format, columns=cols))
        t1 = time.perf_counter()
        res = prepare(workdir, PrepareConfig(kcore_user=10, kcore_item=10, split="random"))
        t2 = time.perf_counter()
        for p in patches:
            p.stop()
        c = res.manifest["row_counts"]
        print(f"ingest {t1 - t0:.1f} s, prepare {t2 - t1:.1f} s; contracts {'on' if args.contracts else 'off'}; "
              f"raw {c['raw']:,} clean {c['clean']:,} kcore {c['kcore']:,} train {c['train']:,} "
              f"users {c['users']:,} items {c['items']:,}")
        if args.contracts:
            print(f"data docs: {workdir.reports / 'data-docs' / 'index.html'}")
        print(f"rows={ing.rows_ingested + ing.rows_quarantined} seconds={t2 - t0:.1f} peak_mb={peak_rss_mb():.0f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
