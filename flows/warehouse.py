"""The DuckDB warehouse: one connection per stage run, and one runner for every file of ``sql/``.

A SQL file is named by its path under ``sql/`` without ``.sql``, so a call site shows the stage
a table belongs to: ``run_sql(con, "splits/clean", rating_threshold=4)``. The layout::

    sql/<stage>/<table>.sql    creates the table it is named after (warehouse/, splits/)
    sql/<stage>/steps/         statements that change tables, named for what they do
    sql/<stage>/probes/        one SELECT each: counts, look-ups, rows as a contract sees them
    sql/splits/outputs/        one SELECT per Parquet file of a split snapshot
    sql/queries/               ad-hoc queries over exported codes, for any DuckDB (not run here)

SQL files hold ``$named`` parameters; :func:`run_sql` binds exactly the ones a statement uses
(values are never formatted into SQL). A file may hold several statements: DuckDB's own parser
splits them (:func:`statements`), so a ``;`` in a string or comment is no boundary, and each
statement is executed in order with its own parameters.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from flows.paths import sql_dir


def default_threads() -> int:
    """DuckDB threads: ``HQGNN_DUCKDB_THREADS`` or every core."""
    return int(os.environ.get("HQGNN_DUCKDB_THREADS", os.cpu_count() or 1))


def default_memory_limit() -> str:
    """DuckDB memory limit: ``HQGNN_DUCKDB_MEMORY`` or 2GB (the rest of a 4 GB budget is Arrow's)."""
    return os.environ.get("HQGNN_DUCKDB_MEMORY", "2GB")


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse file (created on first use), UTC session, bounded threads and memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        con.execute("set TimeZone = 'UTC'")
        _set(con, "threads", str(default_threads()))
        _set(con, "memory_limit", default_memory_limit())
        _set(con, "temp_directory", str(path.parent / ".duckdb-tmp"))
        _set(con, "preserve_insertion_order", "false")
        yield con
    finally:
        con.close()


def _set(con: duckdb.DuckDBPyConnection, name: str, value: str) -> None:
    """``SET name = 'value'`` (DuckDB's SET takes no prepared parameters; names and values are ours)."""
    con.execute(f"set {name} = {_quote(value)}")


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_path(name: str) -> Path:
    """The file of SQL ``name``, a path under ``sql/`` without ``.sql`` (``"splits/clean"``).

    Raises ``FileNotFoundError`` naming the file, and the names with the same last part when a
    bare or misplaced name was given (``"clean"`` -> did you mean ``"splits/clean"``).
    """
    root = sql_dir()
    path = root / f"{name}.sql"
    if not path.is_file():
        stem = name.rsplit("/", 1)[-1]
        near = [n for n in sql_names(root) if n.rsplit("/", 1)[-1] == stem]
        hint = f" (did you mean {', '.join(map(repr, near))}?)" if near else ""
        raise FileNotFoundError(f"no SQL file {name!r}: {path}{hint}")
    return path


def sql_names(root: Path | None = None) -> list[str]:
    """Every SQL name under ``root`` (default ``sql/``), sorted: ``"splits/clean"``, ...."""
    root = root or sql_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.sql"))


def sql_text(name: str) -> str:
    """The text of ``sql/<name>.sql`` (``name`` as in :func:`sql_path`)."""
    return sql_path(name).read_text()


class Statement(NamedTuple):
    """One statement of a SQL file: its text (comments kept) and the ``$named`` parameters it uses."""

    sql: str
    params: frozenset[str]


def statements(text: str) -> list[Statement]:
    """Split SQL text into statements with DuckDB's own parser (``extract_statements``).

    A ``;`` or ``$name`` inside a string literal, quoted identifier or comment is left alone;
    text with no statement (only comments or blanks) gives ``[]``. Raises
    ``duckdb.ParserException`` on text DuckDB cannot parse.
    """
    return [Statement(s.query.strip(), frozenset(s.named_parameters)) for s in duckdb.extract_statements(text)]


def run_sql(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> duckdb.DuckDBPyConnection:
    """Execute every statement of ``sql/<name>.sql`` in order, each with its ``$named`` parameters
    (bound by DuckDB, never formatted into the SQL), e.g. ``run_sql(con, "splits/clean", rating_threshold=4)``.

    Raises ``ValueError`` when a statement needs a parameter that was not given, or a given
    parameter is used by no statement (a typo). Returns the connection (results of the last
    statement can be fetched from it).
    """
    stmts = statements(sql_text(name))
    used: set[str] = set()
    for stmt in stmts:
        missing = sorted(stmt.params - set(params))
        if missing:
            raise ValueError(f"sql/{name}.sql needs parameter(s) {missing}")
        used |= stmt.params
        con.execute(stmt.sql, {k: params[k] for k in stmt.params} if stmt.params else None)
    unused = sorted(set(params) - used)
    if unused:
        raise ValueError(f"sql/{name}.sql does not use parameter(s) {unused}")
    return con


def query(con: duckdb.DuckDBPyConnection, name: str, **params: Any) -> duckdb.DuckDBPyRelation:
    """A one-statement SELECT file (``sql/<name>.sql``) as a relation (``.df()``, ``.to_arrow_table()``),
    e.g. ``query(con, "splits/probes/split_counts")``."""
    stmts = statements(sql_text(name))
    if len(stmts) != 1:
        raise ValueError(f"sql/{name}.sql holds {len(stmts)} statements, query() runs exactly one")
    (stmt,) = stmts
    if stmt.params != set(params):
        raise ValueError(f"sql/{name}.sql uses parameters {sorted(stmt.params)}, got {sorted(params)}")
    return con.sql(stmt.sql, params=params or None)


def reclaim_space(con: duckdb.DuckDBPyConnection) -> None:
    """CHECKPOINT after a rollback: DuckDB frees the blocks a rolled-back transaction wrote into
    the file only at a checkpoint, and truncates the file when they are at its end. A failure
    here is reported, never allowed to mask the error that caused the rollback."""
    try:
        con.execute("checkpoint")
    except duckdb.Error as e:
        print(f"warning: could not reclaim the space of the rolled-back work in the warehouse ({e})", file=sys.stderr)


def free_bytes(path: Path) -> tuple[int, int]:
    """``(unused, total)`` bytes of the warehouse file: space a rolled-back ingest or prepare left
    in the file (DuckDB reuses it for later writes but never gives it back to the disk), measured
    as the file's size beyond the blocks DuckDB accounts for."""
    with connect(path, read_only=True) as con:
        (block, total), = con.sql("select block_size, total_blocks from pragma_database_size()").fetchall()
    size = path.stat().st_size
    return max(0, size - int(block) * int(total) - 3 * 4096), size  # 3 header blocks of 4 KiB


def compact(path: Path) -> tuple[int, int]:
    """Rewrite the warehouse without its free blocks (``COPY FROM DATABASE`` into a temporary
    sibling, then rename(2)); returns the sizes before and after. Only while holding the work
    directory's lock: no other process may have the file open."""
    before = path.stat().st_size
    tmp = path.with_name(f".{path.name}.compact.tmp")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect()
    try:
        con.execute(f"attach {_quote(str(path))} as old_wh (read_only)")
        con.execute(f"attach {_quote(str(tmp))} as new_wh")
        con.execute("copy from database old_wh to new_wh")
        con.execute("detach new_wh")
        con.execute("detach old_wh")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, path)
    return before, path.stat().st_size
