"""Readers of raw interaction files into one Arrow table per file.

Every reader returns a :class:`RawRead` whose ``table`` has one row per input interaction, in
file order, with the values *as they came* (strings) and where they came from::

    line_no  int64    1-based line of the file where the row starts (Parquet: 1-based row number)
    pos      int32    position of the item within the line (LightGCN lines; else 0)
    raw      string   the source text of a malformed row, else null (the values say it all)
    user_id, item_id, timestamp, rating   string, null when the file has no such column
    error    string   structural problem of the row ("malformed line: ..."), else null

Typed checks (ids present, timestamps and ratings parseable and in range) are left to the
warehouse, which quarantines the failing rows. A file that cannot be read as the declared
format at all (empty, not UTF-8, missing columns, mostly malformed) raises :class:`InputError`
naming the file and the problem. Blank lines are not rows.

Delimited text (csv, tsv, movielens incl. ``::`` files) is read by DuckDB's CSV reader
(``sql/warehouse/csv_rows.sql``): RFC 4180 quoting (delimiters, ``""`` and line breaks inside quotes),
``.gz`` / ``.zst`` files, the dialect sniffed where ``--delimiter`` / ``--header`` are not given;
the lines it rejects come back with DuckDB's reason. DuckDB keeps no line numbers for the rows it
accepts, so a second pass (``sql/warehouse/probes/csv_lines.sql``) lists the file's physical lines and the rows
are numbered by walking it. Only two formats no library reads keep a small pyarrow reader:
LightGCN adjacency lines (``user item item ...``) and ``--delimiter space`` (runs of blanks).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.errors import InputError
from flows.warehouse import query, run_sql

ROLES = ("user", "item", "timestamp", "rating")
DEFAULT_NAMES: dict[str, tuple[str, ...]] = {
    "user": ("user_id", "userid", "user", "uid", "visitorid", "customer_id"),
    "item": ("item_id", "itemid", "movieid", "item", "iid", "artist", "product_id"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date", "unixreviewtime"),
    "rating": ("rating", "weight", "score", "value"),
}
DELIMITER_ALIASES = {"tab": "\t", "\\t": "\t", "space": " ", "whitespace": " ", "comma": ","}
MOVIELENS_COLUMNS = {"user": "0", "item": "1", "rating": "2", "timestamp": "3"}
MAX_BAD_SHARE = 0.5  # a file with more malformed lines than this is "not the declared format"
OUT_SCHEMA = pa.schema(
    [
        ("line_no", pa.int64()),
        ("pos", pa.int32()),
        ("raw", pa.large_string()),
        ("user_id", pa.large_string()),
        ("item_id", pa.large_string()),
        ("timestamp", pa.large_string()),
        ("rating", pa.large_string()),
        ("error", pa.large_string()),
    ]
)


@dataclass(frozen=True)
class RawRead:
    """One file read: ``table`` (schema :data:`OUT_SCHEMA`), ``max_pos`` the largest ``pos``."""

    path: Path
    format: str
    table: pa.Table
    max_pos: int
    columns: Mapping[str, str]  # role -> column the file provided it from

    @property
    def rows(self) -> int:
        return self.table.num_rows


def read_raw(
    path: Path,
    format: str,
    columns: Mapping[str, str] | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> RawRead:
    """Read one raw file of ``format`` (csv, tsv, parquet, movielens, lightgcn).

    ``delimiter`` / ``header`` default to what DuckDB's sniffer finds (tsv: tab). Text is read
    through ``con`` (an in-memory DuckDB when None); the reader leaves temp tables there.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    columns = dict(columns or {})
    if format == "parquet":
        return _read_parquet(path, columns)
    if format not in ("csv", "tsv", "movielens", "lightgcn"):
        raise InputError(f"{path}: unknown format {format!r} (expected csv, tsv, parquet, movielens or lightgcn)")
    with open(path, "rb") as f:
        if f.read(4) == b"PAR1":
            raise InputError(f"{path}: is a Parquet file, not {format} (use --format parquet)")
    with _connection(con) as c:
        lines, line_no = _lines(c, path)
        if format == "lightgcn":
            return _read_lightgcn(path, lines, line_no)
        if format == "movielens":
            return _read_movielens(c, path, lines, line_no, columns)
        delim = _delimiter(delimiter, "\t" if format == "tsv" else None)
        if delim == " ":
            return _read_blank_separated(path, format, lines, line_no, True if header is None else header, columns)
        return _read_delimited(c, path, format, lines, line_no, delim, header, columns)


@contextmanager
def _connection(con: duckdb.DuckDBPyConnection | None) -> Iterator[duckdb.DuckDBPyConnection]:
    if con is not None:
        yield con
        return
    own = duckdb.connect()
    try:
        yield own
    finally:
        own.close()


def _delimiter(given: str | None, default: str | None) -> str | None:
    return default if not given else DELIMITER_ALIASES.get(given.lower(), given)


# ----------------------------------------------------------------------------- line index


def _lines(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[pa.Array, pa.Array]:
    """Non-blank lines of a UTF-8 text file (``sql/warehouse/probes/csv_lines.sql``) and their 1-based numbers."""
    try:
        with _ordered(con):
            table = query(con, "warehouse/probes/csv_lines", path=str(path)).to_arrow_table()
    except duckdb.Error as e:
        first = str(e).splitlines()[0]
        if "unicode" in str(e).lower() or "utf" in str(e).lower():
            where = first.split("CSV Error on ")[-1].lower() if "CSV Error on " in first else "a line"
            raise InputError(
                f"{path}: not UTF-8 text (invalid bytes on {where}); "
                "re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
            ) from None
        raise InputError(f"{path}: cannot be read as text ({first})") from None
    lines = pc.utf8_rtrim(table.column("line").combine_chunks().cast(pa.large_string()), "\r")
    line_no = pa.array(np.arange(1, len(lines) + 1, dtype=np.int64))
    keep = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0), False)
    if not pc.any(keep).as_py():
        raise InputError(f"{path}: file is empty")
    return pc.filter(lines, keep), pc.filter(line_no, keep)


@contextmanager
def _ordered(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Results in file order while inside (the warehouse connection lets DuckDB reorder)."""
    (before,), = con.execute("select current_setting('preserve_insertion_order')").fetchall()
    con.execute("set preserve_insertion_order = true")
    try:
        yield
    finally:
        con.execute("set preserve_insertion_order = true" if before else "set preserve_insertion_order = false")


def _number_records(
    path: Path, starts: np.ndarray, n_rows: int, row_breaks: np.ndarray | None,
    rejected: np.ndarray, rejected_breaks: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Physical start lines of the accepted rows and of the rejected lines.

    ``starts``: the non-blank physical lines after the header. DuckDB numbers a rejected line
    by its physical line minus the line breaks inside quoted fields before it; accepted rows,
    in order, take the starts left over. ``row_breaks`` (line breaks inside each accepted row)
    is only needed when some field spans lines, i.e. when there are fewer records than starts.
    """
    if n_rows + len(rejected) == len(starts):  # no field spans lines: DuckDB's line = physical
        taken = np.isin(starts, rejected)
        if taken.sum() == len(rejected):
            return starts[~taken], rejected
    assert row_breaks is not None, "records span lines but no line-break counts were given"
    breaks_of = dict(zip(rejected.tolist(), rejected_breaks.tolist(), strict=True))
    rows = np.empty(n_rows, dtype=np.int64)
    rej = np.empty(len(rejected), dtype=np.int64)
    seen = 0  # line breaks inside the records so far
    i = j = p = 0
    while p < len(starts) and (i < n_rows or j < len(rejected)):
        s = int(starts[p])
        if j < len(rejected) and s - seen == rejected[j]:
            rej[j], b = s, breaks_of[int(rejected[j])]
            j += 1
        else:
            rows[i], b = s, int(row_breaks[i])
            i += 1
        seen += b
        p = int(np.searchsorted(starts, s + b, side="right"))
    assert (i, j) == (n_rows, len(rejected)), f"{path}: {i}/{n_rows} rows and {j}/{len(rejected)} rejects numbered"
    return rows, rej


# ----------------------------------------------------------------------------- columns


def _resolve(path: Path, names: list[str] | None, n_fields: int, columns: Mapping[str, str]) -> dict[str, int]:
    """Role -> field index, from the explicit mapping (names or 0-based positions) or defaults."""
    out: dict[str, int] = {}
    lower = [n.lower() for n in names] if names is not None else None
    for role, col in columns.items():
        if col.isdigit():
            idx = int(col)
            if idx >= n_fields:
                raise InputError(f"{path}: column {role}={col} is out of range; the file has {n_fields} column(s)")
        elif lower is None:
            raise InputError(f"{path}: column {role}={col!r} given by name but the file has no header (use a 0-based position)")
        elif col.lower() in lower:
            idx = lower.index(col.lower())
        else:
            raise InputError(f"{path}: no column {col!r} for {role}; the header has {names}")
        out[role] = idx
    for role in ROLES:
        if role in out:
            continue
        if lower is not None:
            hit = next((lower.index(n) for n in DEFAULT_NAMES[role] if n in lower), None)
            if hit is not None:
                out[role] = hit
        elif role in ("user", "item") and n_fields >= 2:
            out[role] = 0 if role == "user" else 1
    missing = [r for r in ("user", "item") if r not in out]
    if missing:
        raise InputError(
            f"{path}: cannot find the {' and '.join(missing)} column(s) in header {names}; "
            f"name them with --columns {missing[0]}=COLUMN"
        )
    return out


def _table(line_no: pa.Array, pos: pa.Array | None, raw: pa.Array, cols: Mapping[str, pa.Array], error: pa.Array | None) -> pa.Table:
    n = len(line_no)
    nulls = pa.nulls(n, pa.large_string())
    return pa.table(
        {
            "line_no": line_no,
            "pos": pos if pos is not None else pa.array(np.zeros(n, dtype=np.int32)),
            "raw": pc.cast(raw, pa.large_string()),
            **{f"{r}_id" if r in ("user", "item") else r: pc.cast(cols.get(r, nulls), pa.large_string()) for r in ROLES},
            "error": error if error is not None else nulls,
        },
        schema=OUT_SCHEMA,
    )


def _check_share(path: Path, format: str, n_bad: int, n: int, example: str) -> None:
    if n == 0:
        raise InputError(f"{path}: file has no data rows")
    if n_bad > MAX_BAD_SHARE * n:
        raise InputError(f"{path}: does not look like {format}: {n_bad} of {n} lines are malformed ({example})")


# ----------------------------------------------------------------------------- delimited (DuckDB)


def _dialect(
    con: duckdb.DuckDBPyConnection, path: Path, first: str, delim: str | None, header: bool | None,
) -> tuple[str, bool, list[str]]:
    """Delimiter, header and the first row's fields: given, else sniffed by DuckDB, else ``,``
    and a header. The fields come from the sniffer when it agrees, else from the first line."""
    try:
        (s_delim, s_header, s_cols), = query(con, "warehouse/probes/csv_dialect", path=str(path)).fetchall()
        s_names = [c["name"] for c in s_cols]
    except duckdb.Error:
        s_delim, s_header, s_names = None, None, []
    if delim is None:
        delim = s_delim if s_delim and len(s_names) >= 2 else ","
    if header is None:
        header = bool(s_header) if s_delim == delim else True
    if s_delim == delim and bool(s_header) == header and len(s_names) >= 2:
        return delim, header, s_names
    if len(delim) == 1:
        fields = next(csv.reader([first], delimiter=delim, quotechar='"', doublequote=True))
    else:
        fields = first.split(delim)
    return delim, header, [f.strip() for f in fields]


def _read_delimited(
    con: duckdb.DuckDBPyConnection, path: Path, format: str, lines: pa.Array, line_no: pa.Array,
    delim: str | None, header: bool | None, columns: Mapping[str, str],
) -> RawRead:
    delim, header, fields = _dialect(con, path, lines[0].as_py(), delim, header)
    if len(fields) < 2:
        raise InputError(
            f"{path}: {'header' if header else 'first line'} {fields} has fewer than 2 columns with delimiter "
            f"{delim!r} (wrong --delimiter, or not {format}?)"
        )
    names = fields if header else None
    roles = _resolve(path, names, len(fields), columns)
    col_names = [f"c{k}" for k in range(len(fields))]
    with _ordered(con):
        rejects = run_sql(
            con, "warehouse/csv_rows", path=str(path), delimiter=delim, header=header,
            columns={c: "VARCHAR" for c in col_names},
        ).fetchnumpy()
        rows = con.table("csv_rows").to_arrow_table()
    n_rows, n_rej = rows.num_rows, len(rejects["line"])
    if n_rows + n_rej == 0:
        raise InputError(f"{path}: file has no data rows")
    starts = line_no.to_numpy()[1 if header else 0:]
    row_breaks = None
    if n_rows + n_rej != len(starts):
        counts = [pc.fill_null(pc.count_substring(rows.column(c), "\n"), 0) for c in col_names]
        row_breaks = np.sum([np.asarray(c) for c in counts], axis=0).astype(np.int64)
    row_lines, rej_lines = _number_records(
        path, starts, n_rows, row_breaks, np.asarray(rejects["line"], np.int64), np.asarray(rejects["breaks"], np.int64),
    )
    example = f"line {rej_lines[0]}: {rejects['reason'][0]}" if n_rej else ""
    _check_share(path, format, n_rej, n_rows + n_rej, example)
    cols = {r: rows.column(col_names[i]).combine_chunks() for r, i in roles.items()}
    ok = _table(pa.array(row_lines), None, pa.nulls(n_rows, pa.large_string()), cols, None)
    reasons = pa.array(list(rejects["reason"]), pa.large_string())
    bad = _table(pa.array(rej_lines), None, pa.array(list(rejects["raw"]), pa.large_string()), {}, reasons)
    run_sql(con, "warehouse/steps/drop_csv_rows")
    used = {r: (names[i] if names else str(i)) for r, i in roles.items()}
    return RawRead(path, format, pa.concat_tables([ok, bad]), 0, used)


def _read_movielens(
    con: duckdb.DuckDBPyConnection, path: Path, lines: pa.Array, line_no: pa.Array, columns: Mapping[str, str],
) -> RawRead:
    first = lines[0].as_py()
    if "::" in first:  # ratings.dat: user::item::rating::timestamp (DuckDB takes a 2-byte delimiter)
        return _read_delimited(con, path, "movielens", lines, line_no, "::", False, columns or MOVIELENS_COLUMNS)
    if "\t" in first:  # u.data: user \t item \t rating \t timestamp
        return _read_delimited(con, path, "movielens", lines, line_no, "\t", False, columns or MOVIELENS_COLUMNS)
    if first.lower().startswith("userid,"):  # ratings.csv with header userId,movieId,rating,timestamp
        return _read_delimited(con, path, "movielens", lines, line_no, ",", True, columns)
    raise InputError(
        f"{path}: does not look like MovieLens (u.data tab-separated, ratings.dat with '::', or "
        f"ratings.csv with header userId,movieId,...); first line is {first[:80]!r}"
    )


# ----------------------------------------------------------------------------- blank-separated (pyarrow)


def _malformed(n: pa.Array, expected: int) -> pa.Array:
    return pc.binary_join_element_wise(
        pa.scalar("malformed line: ", pa.large_string()), pc.cast(n, pa.large_string()),
        pa.scalar(f" field(s), expected {expected}", pa.large_string()), pa.scalar("", pa.large_string()),
    )


def _read_blank_separated(
    path: Path, format: str, lines: pa.Array, line_no: pa.Array, header: bool, columns: Mapping[str, str],
) -> RawRead:
    """Fields separated by runs of blanks (``--delimiter space``), which DuckDB's CSV reader does
    not split (each blank would be a delimiter); no quoting. The field count is the header's, else
    the most common one; other lines are malformed."""
    fields = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(lines))
    names: list[str] | None = None
    if header:
        names = [str(f) for f in fields[0].as_py()]
        lines, line_no, fields = lines[1:], line_no[1:], fields[1:]
        n_expected = len(names)
        if n_expected < 2:
            raise InputError(f"{path}: header {names} has fewer than 2 columns with delimiter ' ' (wrong --delimiter, or not {format}?)")
    else:
        counts = pc.value_counts(pc.list_value_length(fields))
        n_expected = int(counts.field("values")[pc.index(counts.field("counts"), pc.max(counts.field("counts"))).as_py()].as_py())
    roles = _resolve(path, names, n_expected, columns)
    n = pc.list_value_length(fields)
    good = pc.equal(n, n_expected)
    n_bad = len(lines) - pc.sum(good).as_py() if len(lines) else 0
    _check_share(path, format, n_bad, len(lines), f"{n_bad} with a field count other than {n_expected}")
    gf = pc.filter(fields, good)
    cols = {r: pc.list_element(gf, i) for r, i in roles.items()}
    ok = _table(pc.filter(line_no, good), None, pa.nulls(len(gf), pa.large_string()), cols, None)
    bad = pc.invert(good)
    rejected = _table(pc.filter(line_no, bad), None, pc.filter(lines, bad), {}, _malformed(pc.filter(n, bad), n_expected))
    used = {r: (names[i] if names else str(i)) for r, i in roles.items()}
    return RawRead(path, format, pa.concat_tables([ok, rejected]), 0, used)


def _read_lightgcn(path: Path, lines: pa.Array, line_no: pa.Array) -> RawRead:
    """``user item item ...`` or ``user:item item ...`` per line: one row per (user, item)."""
    tokens = pc.utf8_split_whitespace(pc.utf8_trim_whitespace(pc.replace_substring(lines, ":", " ", max_replacements=1)))
    n_items = pc.subtract(pc.list_value_length(tokens), 1)
    good = pc.greater(n_items, 0)
    n_bad = len(lines) - pc.sum(good).as_py()
    if n_bad > MAX_BAD_SHARE * len(lines):
        raise InputError(f"{path}: does not look like lightgcn ('user item item ...' per line): {n_bad} of {len(lines)} lines have no item")
    gt = pc.filter(tokens, good)
    users = pc.list_element(gt, 0)
    items = pc.list_slice(gt, 1)
    parent = pc.list_parent_indices(items)
    flat_items = items.flatten()
    starts = np.asarray(items.offsets)[:-1]
    pos = (np.arange(len(flat_items)) - np.repeat(starts - starts[0], np.asarray(pc.list_value_length(items)))).astype(np.int32)
    cols = {"user": pc.take(users, parent), "item": flat_items}
    # no per-item copy of the (long) line: the warehouse shows such rows as "user item"
    ok = _table(pc.take(pc.filter(line_no, good), parent), pa.array(pos), pa.nulls(len(pos), pa.large_string()), cols, None)
    parts = [ok]
    if n_bad:
        bad = pc.invert(good)
        reason = pa.array(["malformed line: a user and no item"] * n_bad, pa.large_string())
        parts.append(_table(pc.filter(line_no, bad), None, pc.filter(lines, bad), {}, reason))
    max_pos = int(pc.max(pos).as_py() or 0) if len(pos) else 0
    return RawRead(path, "lightgcn", pa.concat_tables(parts), max_pos, {"user": "0", "item": "1.."})


# ----------------------------------------------------------------------------- parquet


def _read_parquet(path: Path, columns: Mapping[str, str]) -> RawRead:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    if table.num_rows == 0:
        raise InputError(f"{path}: file is empty (0 rows)")
    names = table.column_names
    roles = _resolve(path, names, len(names), columns)
    cols = {r: _as_string(table.column(i).combine_chunks()) for r, i in roles.items()}
    n = table.num_rows
    out = _table(pa.array(np.arange(1, n + 1, dtype=np.int64)), None, pa.nulls(n, pa.large_string()), cols, None)
    return RawRead(path, "parquet", out, 0, {r: names[i] for r, i in roles.items()})


def _as_string(col: pa.Array) -> pa.Array:
    """Values as strings; Arrow timestamps become unix seconds, dates midnight UTC seconds."""
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        col = pc.cast(pc.cast(col, pa.timestamp("s")), pa.int64())
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    return pc.cast(col, pa.large_string())
