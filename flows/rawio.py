"""Readers of raw interaction files into one Arrow table per file (pure pyarrow).

Every reader returns a :class:`RawRead` whose ``table`` has one row per input interaction, in
file order, with the values *as they came* (strings) and where they came from::

    line_no  int64    1-based line of the file (Parquet: 1-based row number)
    pos      int32    position of the item within the line (LightGCN lines; else 0)
    raw      string   the source line, or null where the values say it all (Parquet, LightGCN,
                      well-formed delimited files)
    user_id, item_id, timestamp, rating   string, null when the file has no such column
    error    string   structural problem of the row ("malformed line: ..."), else null

Typed checks (ids present, timestamps and ratings parseable and in range) are left to the
warehouse, which quarantines the failing rows. A file that cannot be read as the declared
format at all (empty, not UTF-8, missing columns, mostly malformed) raises :class:`InputError`
naming the file and the problem. Blank lines are not rows and are skipped.

Text files are split into lines and fields with Arrow compute kernels (vectorized, and the line
numbers stay exact, which ``pyarrow.csv`` cannot give for skipped rows). Quoted CSV fields are
unquoted, but a delimiter inside quotes is not supported (such a line is quarantined as malformed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hqgnn.errors import InputError

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
) -> RawRead:
    """Read one raw file of ``format`` (csv, tsv, parquet, movielens, lightgcn)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    columns = dict(columns or {})
    if format == "parquet":
        return _read_parquet(path, columns)
    if format not in ("csv", "tsv", "movielens", "lightgcn"):
        raise InputError(f"{path}: unknown format {format!r} (expected csv, tsv, parquet, movielens or lightgcn)")
    if format in ("csv", "tsv"):
        delim = _delimiter(delimiter, "," if format == "csv" else "\t")
        fast = _read_delimited_fast(path, format, delim, True if header is None else header, columns)
        if fast is not None:
            return fast
    lines, line_no = _lines(path, format)
    if format == "movielens":
        return _read_movielens(path, lines, line_no, columns)
    if format == "lightgcn":
        return _read_lightgcn(path, lines, line_no)
    return _read_delimited(path, format, lines, line_no, delim, True if header is None else header, columns)


# ----------------------------------------------------------------------------- text helpers


def _delimiter(given: str | None, default: str) -> str:
    return default if not given else DELIMITER_ALIASES.get(given.lower(), given)


def _lines(path: Path, format: str) -> tuple[pa.Array, pa.Array]:
    """Non-blank lines of a UTF-8 text file and their 1-based line numbers."""
    data = path.read_bytes()
    if data.startswith(b"PAR1"):
        raise InputError(f"{path}: is a Parquet file, not {format} (use --format parquet)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise InputError(f"{path}: file is empty")
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    whole = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data))
    try:
        whole.validate(full=True)
    except pa.ArrowInvalid:
        _raise_encoding(path, data)
    lines = pc.split_pattern(whole, "\n").flatten()
    lines = pc.utf8_rtrim(lines, "\r")
    line_no = pa.array(np.arange(1, len(lines) + 1, dtype=np.int64))
    keep = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(lines)), 0)
    return pc.filter(lines, keep), pc.filter(line_no, keep)


def _raise_encoding(path: Path, data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise InputError(
            f"{path}: not UTF-8 text (invalid byte 0x{data[e.start]:02x} on line {line}); "
            "re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    raise InputError(f"{path}: not UTF-8 text")


def _split(lines: pa.Array, delim: str) -> pa.Array:
    """list<string> of the fields of each line (whitespace runs when ``delim`` is a space)."""
    if delim == " ":
        return pc.utf8_split_whitespace(pc.utf8_trim_whitespace(lines))
    return pc.split_pattern(lines, delim)


def _clean_field(values: pa.Array) -> pa.Array:
    """Strip surrounding whitespace and one level of double quotes; empty -> null."""
    v = pc.utf8_trim(pc.utf8_trim_whitespace(values), '"')
    return pc.if_else(pc.equal(pc.utf8_length(v), 0), pa.scalar(None, v.type), v)


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


def _assemble(
    path: Path, format: str, lines: pa.Array, line_no: pa.Array, fields: pa.Array,
    n_expected: int, roles: dict[str, int], names: list[str] | None,
) -> RawRead:
    """Rows with ``n_expected`` fields are mapped to roles; the others become malformed rows."""
    if len(lines) == 0:
        raise InputError(f"{path}: file has no data rows")
    n = pc.list_value_length(fields)
    good = pc.equal(n, n_expected)
    n_bad = len(lines) - pc.sum(good).as_py()
    if n_bad > MAX_BAD_SHARE * len(lines):
        first = pc.index(good, False).as_py()
        raise InputError(
            f"{path}: does not look like {format}: {n_bad} of {len(lines)} lines have a wrong number of "
            f"fields (line {line_no[first].as_py()} has {n[first].as_py()}, expected {n_expected})"
        )
    gf = pc.filter(fields, good)
    cols = {}
    for role in ROLES:
        cols[role] = _clean_field(pc.list_element(gf, roles[role])) if role in roles else pa.nulls(len(gf), pa.large_string())
    ok = _table(pc.filter(line_no, good), None, pc.filter(lines, good), cols, None)
    parts = [ok]
    if n_bad:
        bad_n = pc.filter(n, pc.invert(good))
        reason = pc.binary_join_element_wise(
            pa.scalar("malformed line: ", pa.large_string()), pc.cast(bad_n, pa.large_string()),
            pa.scalar(f" field(s), expected {n_expected}", pa.large_string()), pa.scalar("", pa.large_string()),
        )
        parts.append(_table(pc.filter(line_no, pc.invert(good)), None, pc.filter(lines, pc.invert(good)), {}, reason))
    table = pa.concat_tables(parts)
    used = {r: (names[i] if names else str(i)) for r, i in roles.items()}
    return RawRead(path, format, table, 0, used)


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


# ----------------------------------------------------------------------------- formats


def _read_delimited_fast(
    path: Path, format: str, delim: str, header: bool, columns: Mapping[str, str],
) -> RawRead | None:
    """Multithreaded ``pyarrow.csv`` read of a well-formed file (every line has the same number
    of fields, UTF-8, no blank lines), where row ``k`` is line ``k + header``. ``None`` when the
    file is anything else: the line-by-line reader then finds and reports the bad lines."""
    if len(delim) != 1 or delim == " ":
        return None
    with open(path, "rb") as f:
        first = f.readline(1 << 20)
    if first.startswith(b"PAR1"):
        return None
    try:
        text = first.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError:
        return None
    n_fields = len(text.split(delim))
    names = [n.strip().strip('"') for n in text.split(delim)] if header else None
    if n_fields < 2 or (names is not None and len(set(names)) != len(names)):
        return None
    roles = _resolve(path, names, n_fields, columns)
    col_names = [f"f{k}" for k in range(n_fields)]
    wanted = {r: col_names[i] for r, i in roles.items()}
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=col_names, skip_rows=1 if header else 0, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=delim, newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.large_string() for c in col_names}, include_columns=sorted(set(wanted.values())),
                strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, OSError):
        return None
    if table.num_rows == 0:
        return None
    start = 2 if header else 1
    line_no = pa.array(np.arange(start, start + table.num_rows, dtype=np.int64))
    cols = {r: table.column(c).combine_chunks() for r, c in wanted.items()}
    out = _table(line_no, None, pa.nulls(table.num_rows, pa.large_string()), cols, None)
    return RawRead(path, format, out, 0, {r: (names[i] if names else str(i)) for r, i in roles.items()})


def _read_delimited(
    path: Path, format: str, lines: pa.Array, line_no: pa.Array, delim: str, header: bool,
    columns: Mapping[str, str],
) -> RawRead:
    fields = _split(lines, delim)
    names: list[str] | None = None
    if header:
        names = [str(_clean_field(pa.array([f])).to_pylist()[0] or "") for f in fields[0].as_py()]
        lines, line_no, fields = lines[1:], line_no[1:], fields[1:]
        n_expected = len(names)
        if len(names) < 2:
            raise InputError(
                f"{path}: header {names} has fewer than 2 columns with delimiter {delim!r} "
                f"(wrong --delimiter, or not {format}?)"
            )
    else:
        counts = pc.value_counts(pc.list_value_length(fields))
        n_expected = int(counts.field("values")[pc.index(counts.field("counts"), pc.max(counts.field("counts"))).as_py()].as_py())
    roles = _resolve(path, names, n_expected, columns)
    return _assemble(path, format, lines, line_no, fields, n_expected, roles, names)


def _read_movielens(path: Path, lines: pa.Array, line_no: pa.Array, columns: Mapping[str, str]) -> RawRead:
    first = lines[0].as_py()
    if "::" in first:  # ratings.dat: user::item::rating::timestamp
        return _read_delimited(path, "movielens", lines, line_no, "::", False, columns or MOVIELENS_COLUMNS)
    if "\t" in first:  # u.data: user \t item \t rating \t timestamp
        return _read_delimited(path, "movielens", lines, line_no, "\t", False, columns or MOVIELENS_COLUMNS)
    if first.lower().startswith("userid,"):  # ratings.csv with header userId,movieId,rating,timestamp
        return _read_delimited(path, "movielens", lines, line_no, ",", True, columns)
    raise InputError(
        f"{path}: does not look like MovieLens (u.data tab-separated, ratings.dat with '::', or "
        f"ratings.csv with header userId,movieId,...); first line is {first[:80]!r}"
    )


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
