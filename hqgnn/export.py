"""The export format: user and item code tables as Arrow tables (written as Parquet by the application), and back.

Schema of ``codes/<version>/users.parquet`` (``items.parquet``: ``item_idx``, ``item_id``),
one row per id of the split's id map, sorted by the dense index:

| column | type | |
|---|---|---|
| ``user_idx`` | int32 | dense index of the id map, 0 .. n-1 |
| ``user_id`` | string | original id |
| ``bits`` | int8 | 1, 2, 4, 8 (32 = float run) |
| ``code`` | binary | packed code, ``code_bytes(bits, dim)`` bytes (layout: :mod:`hqgnn.codes`) |
| ``scale`` | float32 | per-node scale, finite, > 0 (1.0 for 32 bits) |
| ``code_values`` | list<int8> | b ∈ {2, 4, 8}: the same code unpacked (list<float32> for 32); 1 bit: only beside float users (the signs, -1/+1) |

Why two code columns for b >= 2: ``code`` is the compact canonical form (the contract, Python
and FAISS use it); DuckDB has no byte access on BLOBs, so the SQL inner product needs the values
as a list (``list_dot_product(u.code_values, i.code_values)``); Parquet's dictionary encoding
bit-packs a column with ``2^b`` distinct values at about ``b`` bits per value, so on disk the
unpacked copy costs little (measured in the README). 1-bit codes need no copy: DuckDB casts the
BLOB to a BITSTRING and ``bit_count(xor(u.code::BIT, i.code::BIT))`` is the Hamming distance.
A ``float_users`` export pairs float32 users (``bits`` 32) with b-bit items; its 1-bit items then
carry ``code_values`` too, since the float inner product needs them as a list.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hqgnn.codes import CodeTable, code_bytes


def code_table_arrow(kind: str, ids: np.ndarray, table: CodeTable, with_values: bool | None = None) -> pa.Table:
    """The Parquet table of one side (``kind`` = ``"user"`` or ``"item"``), rows by dense index.

    ``ids``: original ids ``[n]`` by index; ``table``: the codes ``[n, ...]``; ``with_values``:
    write ``code_values`` (default: for b >= 2; also 1-bit items scored against float users,
    whose SQL inner product needs the signs as a list).
    """
    n, nb = len(table), table.bytes_per_row
    if len(ids) != n:
        raise ValueError(f"{kind} id map has {len(ids)} ids but there are {n} codes")
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(nb), n, [None, pa.py_buffer(np.ascontiguousarray(table.packed).tobytes())])
    cols: dict[str, pa.Array] = {
        f"{kind}_idx": pa.array(np.arange(n, dtype=np.int32)),
        f"{kind}_id": pa.array([str(x) for x in ids], pa.string()),
        "bits": pa.array(np.full(n, table.bits, dtype=np.int8)),
        "code": fixed.cast(pa.binary()),
        "scale": pa.array(table.scale.astype(np.float32)),
    }
    if table.bits != 1 if with_values is None else with_values:
        flat = pa.array(table.values.reshape(-1))
        cols["code_values"] = pa.FixedSizeListArray.from_arrays(flat, table.dim).cast(pa.list_(flat.type))
    return pa.table(cols)


def code_table_from_arrow(t: pa.Table, kind: str, bits: int, dim: int) -> tuple[CodeTable, np.ndarray]:
    """Inverse of :func:`code_table_arrow`: the codes and the original ids ``[n]``, by dense index
    (rows may come in any order). A ``ValueError`` names the column that does not fit."""
    idx_col, id_col = f"{kind}_idx", f"{kind}_id"
    nb = code_bytes(bits, dim)
    idx = t.column(idx_col).to_numpy().astype(np.int64)
    if not np.array_equal(np.sort(idx), np.arange(len(idx))):
        raise ValueError(f"column {idx_col!r} is not a dense 0..{len(idx) - 1} index")
    try:
        fixed = t.column("code").combine_chunks().cast(pa.binary(nb))
    except pa.ArrowInvalid as e:
        raise ValueError(f"column 'code' must hold {nb} bytes per row for bits={bits}, dim={dim}: {e}") from e
    raw = np.frombuffer(fixed.buffers()[1], dtype=np.uint8)[fixed.offset * nb : (fixed.offset + len(fixed)) * nb]
    packed = np.empty((len(idx), nb), dtype=np.uint8)
    packed[idx] = raw.reshape(-1, nb)
    scale = np.empty(len(idx), dtype=np.float32)
    scale[idx] = t.column("scale").to_numpy()
    ids = np.empty(len(idx), dtype=object)
    ids[idx] = np.asarray(t.column(id_col).to_pylist(), dtype=object)
    return CodeTable.from_packed(packed, scale, bits, dim), ids  # packed-only: unpacked on demand


def consistency_failures(t: pa.Table, kind: str, table: CodeTable, ids: np.ndarray) -> list[str]:
    """Invariants of an exported table that a row-wise contract cannot see: the ids equal the id
    map ``[n]`` row for row, and ``code_values`` (when present) equal the unpacked ``code``."""
    failures = []
    got_ids = np.asarray(t.column(f"{kind}_id").to_pylist(), dtype=object)
    got_idx = t.column(f"{kind}_idx").to_numpy().astype(np.int64)
    in_range = (got_idx >= 0) & (got_idx < len(ids))
    wrong = np.flatnonzero(~in_range | (got_ids != ids[np.clip(got_idx, 0, len(ids) - 1)]))
    if len(wrong):
        failures.append(f"{len(wrong)} row(s) whose ({kind}_idx, {kind}_id) is not in the id map, e.g. rows {wrong[:5].tolist()}")
    if "code_values" in t.column_names:
        lengths = pc.list_value_length(t.column("code_values")).to_numpy(zero_copy_only=False)
        if (lengths != table.dim).any():
            failures.append(f"code_values must hold dim={table.dim} values, got lengths {sorted(set(lengths.tolist()))[:5]}")
        else:
            values = np.asarray(pc.list_flatten(t.column("code_values")).to_numpy(zero_copy_only=False)).reshape(-1, table.dim)
            expected = table.value_rows(got_idx)
            bad = np.flatnonzero((values != expected).any(axis=1))
            if len(bad):
                failures.append(f"code_values differ from the unpacked code in {len(bad)} row(s), e.g. rows {bad[:5].tolist()}")
    return failures
