"""The ``runs`` table of the warehouse: one row per run of the Prefect flow ``hqgnn``.

The row is written when a run starts (status ``running``) and replaced when it ends
(``completed``, or ``failed`` with the message), by
``sql/warehouse/runs.sql`` through the warehouse's SQL runner. A DuckDB file admits one process
at a time, so the connection is opened only for the write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from flows.warehouse import connect, run_sql

STATUSES = ("running", "completed", "failed", "abandoned")


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs`` (see ``sql/warehouse/runs.sql`` for the columns)."""

    run_id: str
    flow_run_name: str
    status: str
    started_at: datetime
    parameters: dict[str, Any]
    deployment: str | None = None
    finished_at: datetime | None = None
    snapshot: str | None = None
    train_run: str | None = None
    code_version: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"run status must be one of {STATUSES}, got {self.status!r}")


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def record_run(warehouse: Path, rec: RunRecord) -> None:
    """Insert or replace the row of ``rec.run_id`` in ``runs`` (the table is created on first use)."""
    with connect(warehouse) as con:
        run_sql(
            con,
            "warehouse/runs",
            run_id=rec.run_id,
            flow_run_name=rec.flow_run_name,
            deployment=rec.deployment,
            status=rec.status,
            started_at=rec.started_at,
            finished_at=rec.finished_at,
            parameters=_json(rec.parameters),
            snapshot=rec.snapshot,
            train_run=rec.train_run,
            code_version=rec.code_version,
            metrics=_json(rec.metrics),
            stages=_json(rec.stages),
            error=rec.error,
        )


def abandon_runs(warehouse: Path, keep_run_id: str = "") -> list[str]:
    """Mark every ``running`` row but ``keep_run_id`` as ``abandoned`` (call only while holding the
    work directory's lock: then no other run is alive). Returns the run ids marked."""
    from datetime import UTC

    import duckdb

    if not warehouse.is_file():
        return []
    with connect(warehouse) as con:
        try:
            rows = run_sql(con, "warehouse/steps/abandon_runs", keep_run_id=keep_run_id, noticed_at=datetime.now(UTC)).fetchall()
        except duckdb.CatalogException:  # no runs table yet
            return []
    return [str(r[0]) for r in rows]


def running_runs(warehouse: Path) -> list[tuple[str, str, datetime]]:
    """``(run_id, flow_run_name, started_at)`` of the rows still marked ``running``."""
    import duckdb

    from flows.warehouse import query

    if not warehouse.is_file():
        return []
    with connect(warehouse, read_only=True) as con:
        try:
            return [tuple(r) for r in query(con, "warehouse/probes/running_runs").fetchall()]
        except duckdb.CatalogException:
            return []
