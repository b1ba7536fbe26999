"""Stage `ingest`: raw interaction files into the warehouse (raw, quarantine, batches tables).

extract (``flows.rawio`` reads a file as strings; delimited text with DuckDB's CSV reader) ->
check (``sql/warehouse/staged.sql`` types and checks every row) -> write
(``sql/warehouse/steps/append_{raw,quarantine,batch}.sql``) -> validate (the ``raw`` contract on
the accepted rows).

All files of one call share one transaction: a bad file or a failed contract leaves the
warehouse exactly as before. A file whose content was ingested before is skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from flows.config import IngestConfig
from flows.contracts import check_contract
from flows.errors import InputError
from flows.rawio import MAX_BAD_SHARE, read_raw
from flows.warehouse import connect, query, reclaim_space, run_sql
from flows.workdir import WorkDir, file_sha256

console = Console(stderr=True)


@dataclass(frozen=True)
class FileResult:
    """What happened to one file: ``status`` is "ingested" or "skipped" (content seen before)."""

    path: Path
    batch_id: str
    status: str
    rows: int
    accepted: int
    quarantined: int


@dataclass(frozen=True)
class IngestResult:
    """Outcome of one ``ingest`` call (one transaction); counts summed over its files."""

    files: tuple[FileResult, ...]
    rows_ingested: int
    rows_quarantined: int
    files_skipped: int
    batch_ids: tuple[str, ...]  # batches this call added

    @classmethod
    def of(cls, files: list[FileResult]) -> IngestResult:
        return cls(
            tuple(files),
            sum(f.accepted for f in files),
            sum(f.quarantined for f in files),
            sum(f.status == "skipped" for f in files),
            tuple(f.batch_id for f in files if f.status == "ingested"),
        )


def ingest(workdir: WorkDir, cfg: IngestConfig) -> IngestResult:
    """Load ``cfg.files`` into ``workdir.warehouse``; bad rows are quarantined with a reason.

    Raises ``InputError`` (naming the file and the problem) on a file that cannot be read as
    ``cfg.format``; then nothing of this call is kept.
    """
    if not cfg.files:
        raise InputError("ingest: no files given")
    for path in cfg.files:  # fail before touching the warehouse
        if not Path(path).is_file():
            raise InputError(f"{path}: no such file")
    results: list[FileResult] = []
    with connect(workdir.warehouse) as con:
        con.begin()
        try:
            run_sql(con, "warehouse/batches")
            run_sql(con, "warehouse/raw")
            run_sql(con, "warehouse/quarantine")
            with _progress() as progress:
                task = progress.add_task("ingest", total=len(cfg.files))
                for path in cfg.files:
                    progress.update(task, description=f"ingest {Path(path).name}")
                    results.append(_ingest_file(con, Path(path), cfg))
                    progress.advance(task)
            if any(r.status == "ingested" for r in results):
                check_contract("raw", lambda: _fetch_new_raw(con, results), docs=workdir.data_docs)
            con.commit()
        except BaseException:
            con.rollback()
            reclaim_space(con)
            raise
    result = IngestResult.of(results)
    _summary(result)
    return result


def _ingest_file(con: duckdb.DuckDBPyConnection, path: Path, cfg: IngestConfig) -> FileResult:
    sha = file_sha256(path)
    seen = next(iter(query(con, "warehouse/probes/batch_seen", source_hash=sha).fetchall()), None)
    if seen is not None:
        return FileResult(path, seen[0], "skipped", 0, 0, 0)
    read = read_raw(path, cfg.format, cfg.columns, cfg.delimiter, cfg.header, con)
    batch_id = sha[:16]
    con.register("staged_arrow", read.table)
    try:
        (bad_ts, staged_rows), = run_sql(
            con, "warehouse/staged", batch_id=batch_id, source_file=str(path.resolve()), source_hash=sha,
            seq_stride=read.max_pos + 1, split_role=cfg.split_role,
            has_timestamp="timestamp" in read.columns, has_rating="rating" in read.columns,
            rating_min=cfg.rating_min, rating_max=cfg.rating_max, timestamp_unit=cfg.timestamp_unit,
        ).fetchall()
    finally:
        con.unregister("staged_arrow")
    if bad_ts > MAX_BAD_SHARE * staged_rows:
        raise InputError(
            f"{path}: {bad_ts:,} of {staged_rows:,} timestamps rejected as {cfg.timestamp_unit!r} "
            "(set --timestamp-unit s, ms, us or iso?)"
        )
    run_sql(con, "warehouse/steps/append_raw")
    run_sql(con, "warehouse/steps/append_quarantine")
    run_sql(
        con, "warehouse/steps/append_batch", batch_id=batch_id, source_file=str(path.resolve()), source_hash=sha,
        format=read.format, split_role=cfg.split_role, columns=json.dumps(dict(read.columns), sort_keys=True),
    )
    (rows, accepted, quarantined, top_reason), = query(con, "warehouse/probes/staged_counts").fetchall()
    if accepted == 0:
        raise InputError(
            f"{path}: all {rows:,} row(s) rejected, e.g. {top_reason!r} "
            f"(wrong --format, --columns or --delimiter?)"
        )
    run_sql(con, "warehouse/steps/drop_staged")
    return FileResult(path, batch_id, "ingested", rows, accepted, quarantined)


def _fetch_new_raw(con: duckdb.DuckDBPyConnection, results: list[FileResult]) -> Any:
    from flows.contracts import WarehouseRows

    ids = [r.batch_id for r in results if r.status == "ingested"]
    return WarehouseRows(con, query(con, "warehouse/probes/raw_rows", batch_ids=ids))


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} files"),
        TimeElapsedColumn(), console=console, transient=True,
    )


def _summary(result: IngestResult) -> None:
    for f in result.files:
        if f.status == "skipped":
            console.print(f"  {f.path}: [yellow]skipped[/] (same content as batch {f.batch_id})", highlight=False)
        else:
            console.print(
                f"  {f.path}: {f.accepted:,} rows ingested, {f.quarantined:,} quarantined (batch {f.batch_id})",
                highlight=False,
            )
    console.print(
        f"[bold]ingest[/]: {result.rows_ingested:,} rows ingested, {result.rows_quarantined:,} quarantined, "
        f"{result.files_skipped} file(s) skipped", highlight=False,
    )
