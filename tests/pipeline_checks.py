"""Tiny pipeline inputs and the checks of what a whole run publishes (flow and deployment tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from flows.workdir import WorkDir
from hqgnn.synthetic import SyntheticSpec, write_interactions

TINY = SyntheticSpec(num_users=150, num_items=100, mean_events_per_user=20, min_events_per_user=12, bad_rows=4, seed=3)
COLUMNS = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": "rating"}


def tiny_raw_file(folder: Path, name: str = "log.csv", spec: SyntheticSpec = TINY) -> Path:
    """A tiny seeded interaction log (a few malformed rows included)."""
    return write_interactions(folder / name, spec)


def tiny_params(raw: Path | None = None) -> dict[str, Any]:
    """Flow parameters for a run of seconds: 3-core, 2 epochs, 16 dims, CPU."""
    params: dict[str, Any] = {
        "prepare": {"kcore_user": 3, "kcore_item": 3},
        "train": {"epochs": 2, "dim": 16, "batch_size": 256, "device": "cpu",
                  "hutchinson_samples": 2, "hutchinson_batches": 1},
    }
    if raw is not None:
        params["ingest"] = {"files": [str(raw)], "format": "csv", "columns": COLUMNS,
                            "rating_min": 1.0, "rating_max": 5.0}
    return params


def check_published(workdir: Path) -> dict[str, Any]:
    """codes/current and the latest run's report exist and pass their contracts; returns the
    codes manifest."""
    from flows.code_versions import contract_params
    from flows.contracts import validate

    wd = WorkDir(workdir)
    codes = wd.code_version()
    manifest = json.loads((codes / "manifest.json").read_text())
    assert manifest["gate"]["passed"] is True
    split = Path(manifest["split_dir"])
    for kind, file, ids in (("user", "users.parquet", "users.parquet"), ("item", "items.parquet", "items.parquet")):
        n = pq.read_metadata(split / ids).num_rows
        report = validate(f"{kind}_codes", codes / file, contract_params(kind, n, manifest["bits"], manifest["dim"]))
        assert report.success and report.rows == n

    report_dir = wd.report(manifest["run"])
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert metrics["run"] == manifest["run"]
    splits = {(r["split"], r["variant"]) for r in metrics["rows"]}
    assert {("valid", "float"), ("test", "float"), ("valid", "codes"), ("test", "codes")} <= splits
    for row in metrics["rows"]:
        for k in metrics["ks"]:
            assert 0.0 <= row[f"recall@{k}"] <= 1.0 and 0.0 <= row[f"ndcg@{k}"] <= 1.0
    assert (report_dir / "report.md").is_file() and list((report_dir / "plots").glob("*.png"))
    return manifest
