"""What the exact grid's slices cost: float users against 4- or 8-bit item codes, scored with the
query split into grid slices (``hqgnn.retrieval.grid_slices``, as shipped: batch-invariant) vs one
plain float32 row (the path before the slices: exact only alone, so served one request at a time).

Times one request (``Retriever.recommend``, k = 20, its train items skipped) and a batch of 32
(``Retriever.topk``), median of 5 rounds over the same users, both paths side by side in one process.

    .venv/bin/python bench/grid_slices_cost.py bench/out/serve/gowalla-work/codes/gowalla-fu4bit \\
        bench/out/serve/gowalla-work/splits/gowalla
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flows.code_versions import read_code_version  # noqa: E402
from flows.split_files import load_split  # noqa: E402
from hqgnn.interactions import InteractionMatrix  # noqa: E402
from hqgnn.retrieval import Retriever  # noqa: E402


def median_ms(fn: Callable[[], object], calls: int, rounds: int = 5) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) / calls * 1e3)
    return statistics.median(times)


def seen_rows(train: InteractionMatrix, users: np.ndarray, num_items: int) -> dict[int, InteractionMatrix]:
    """Each of ``users``' train items as a one-row matrix (``Retriever.recommend``'s ``seen``)."""
    out = {}
    for u in map(int, users):
        items = train.indices[int(train.indptr[u]) : int(train.indptr[u + 1])].numpy()
        out[u] = InteractionMatrix.from_pairs(np.zeros(len(items), dtype=np.int64), items, 1, num_items)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("version", type=Path, help="a float-users code version (codes/<name>)")
    p.add_argument("split", type=Path, help="its snapshot (the train items are skipped)")
    p.add_argument("--users", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    v, train = read_code_version(args.version), load_split(args.split).train
    users = np.random.default_rng(0).choice(len(v.users), args.users, replace=False)
    seen = seen_rows(train, users, len(v.items))
    sliced = Retriever(v.users, v.items)
    plain = Retriever(v.users, v.items)
    plain._grid_bits = None  # one plain float32 row per query: the path before the slices
    print(f"{args.version.name}: {len(v.items)} items, {v.items.bits}-bit x {v.items.dim}; "
          f"{sliced._grid_slices} slices of {sliced._grid_bits} bits; torch {args.threads} threads", flush=True)
    batch = users[:32]
    for name, r in (("sliced", sliced), ("plain", plain), ("sliced", sliced), ("plain", plain)):
        one = median_ms(lambda r=r: [r.recommend(int(u), 20, seen[int(u)]) for u in users], len(users))
        many = median_ms(lambda r=r: r.topk(batch, 20, [train]), len(batch))
        print(f"{name:6s}: one request {one:.3f} ms, per user in a batch of 32 {many:.3f} ms", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
