"""Per-epoch training history, as ``history.parquet`` and ``history.json`` (both atomic)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from hqgnn.files import atomic_write_bytes, atomic_write_json


def write_history(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """One row per epoch: epoch, loss, lr, quantized (the quantizer was on), negative_candidates
    (hard-negative candidates; 1 = uniform negatives that epoch), bpr_negatives (uniform negatives
    per positive the loss averaged), valid_recall@20, valid_ndcg@20, delta_user/item,
    trace_user/item, epoch_seconds, eta (NaN where not measured that epoch; null in JSON)."""
    if not rows:
        return
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    atomic_write_bytes(run_dir / "history.parquet", buf.getvalue())
    clean = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    atomic_write_json(run_dir / "history.json", clean)
