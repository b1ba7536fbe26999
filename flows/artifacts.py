"""Prefect artifacts a run of ``hqgnn`` leaves behind (keys lowercase with dashes).

- ``data-manifest`` (table): row counts per stage and quarantined rows;
- ``data-docs`` (link): the Great Expectations Data Docs (HTML) of the contract checks;
- ``evaluation`` (markdown): the evaluation report of the run;
- ``plot-<name>`` (image, inline PNG) per plot of the report, and ``evaluation-plots``
  (markdown) with the plot files' paths.

They are built from the files the stages wrote (manifests, reports), never recomputed here.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_image_artifact,
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE

MAX_INLINE_IMAGE_BYTES = 2 << 20  # larger plots are linked by path only


# Which stage produced each count of a snapshot manifest's ``row_counts``.
STAGE_OF_COUNT = {
    "raw": "ingest", "quarantined": "ingest", "clean": "clean", "kcore": "k-core",
    "train": "split", "valid": "split", "test": "split",
    "dropped_cold_valid": "split", "dropped_cold_test": "split", "users": "id maps", "items": "id maps",
}


def manifest_rows(ingest_result: Any, prepare_manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``{stage, table, rows}``: what this run's ingest added (when it ran) and the
    ``row_counts`` of the split snapshot's manifest (raw and quarantined rows of the
    warehouse, clean, k-core, each split, id maps), in pipeline order."""
    rows: list[dict[str, Any]] = []
    if ingest_result is not None:
        for name in ("rows_ingested", "rows_quarantined", "files_skipped"):
            value = getattr(ingest_result, name, None)
            if isinstance(value, int):
                rows.append({"stage": "ingest (this run)", "table": name, "rows": value})
    counts = prepare_manifest.get("row_counts") or {}
    for table, value in counts.items():
        rows.append({"stage": STAGE_OF_COUNT.get(table, "prepare"), "table": table, "rows": value})
    return rows


@task(name="data-manifest-artifact", cache_policy=NO_CACHE)
def data_manifest_artifact(rows: list[dict[str, Any]], snapshot: str | None) -> None:
    """Table artifact ``data-manifest``: row counts per stage, quarantined rows."""
    create_table_artifact(
        table=rows or [{"stage": "-", "table": "no counts published", "rows": 0}],
        key="data-manifest",
        description=f"Row counts per stage and quarantined rows (snapshot {snapshot}).",
    )


@task(name="data-docs-artifact", cache_policy=NO_CACHE)
def data_docs_artifact(docs_dir: str) -> str | None:
    """Link artifact ``data-docs``: the Great Expectations Data Docs (HTML) of the run's contract
    checks, ``<workdir>/reports/data-docs/index.html``; ``None`` (no artifact) when none were written."""
    index = Path(docs_dir) / "index.html"
    if not index.is_file():
        return None
    create_link_artifact(link=index.resolve().as_uri(), link_text="Data Docs: contract results", key="data-docs",
                         description=f"Great Expectations Data Docs of every contract check ({index})")
    return str(index)


@task(name="evaluation-artifacts", cache_policy=NO_CACHE)
def evaluation_artifacts(report_dir: str) -> dict[str, Any]:
    """Markdown artifact ``evaluation`` (report.md, or metrics.json when there is no report),
    an image artifact per plot and ``evaluation-plots`` with their paths; returns the content of
    ``metrics.json`` (empty when absent)."""
    folder = Path(report_dir)
    metrics_file = folder / "metrics.json"
    metrics: dict[str, Any] = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    report = folder / "report.md"
    if report.is_file():
        body = report.read_text()
    else:
        body = "```json\n" + json.dumps(metrics, indent=2, sort_keys=True) + "\n```\n"
    create_markdown_artifact(
        markdown=f"{body}\n\n_Report folder: `{folder}`_\n",
        key="evaluation",
        description=f"Evaluation of {folder.name}",
    )
    plots = sorted((folder / "plots").glob("*.png"))
    for png in plots:
        if png.stat().st_size <= MAX_INLINE_IMAGE_BYTES:
            uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
            key = "plot-" + re.sub(r"[^a-z0-9]+", "-", png.stem.lower()).strip("-")
            create_image_artifact(image_url=uri, key=key, description=str(png))
    if plots:
        create_markdown_artifact(
            markdown="\n".join(f"- `{p}`" for p in plots) + "\n", key="evaluation-plots",
            description="Plot files of this run's report",
        )
    return metrics
