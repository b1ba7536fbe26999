"""What a request costs by item block size: b-bit (and float-users) scoring converts one block of
item codes to float32 at a time (``Retriever(item_block=...)``), so the block decides whether that
copy and the GEMM's ``[batch, block]`` output stay in cache. Times one request
(``Retriever.recommend``, k = 20, its train items skipped) and a batch of each ``--batches`` size
(``Retriever.topk``) at each ``--blocks`` size, median of 5 rounds over the same users, side by
side in one process (blocks interleaved over two passes). ``--baseline PATH [PATH ...]`` adds other
``retrieval.py`` files (e.g. from a worktree of an earlier commit) at their default blocks, timed
in the same passes: code against code on the same data. ``--blocks 0`` is this code's own choice per batch
(``Retriever.block_rows``).

    .venv/bin/python bench/item_block_cost.py bench/out/serve/gowalla-work/codes/gowalla-fu4bit \\
        bench/out/serve/gowalla-work/splits/gowalla --blocks 65536 16384 4096
    .venv/bin/python bench/item_block_cost.py VERSION SPLIT --blocks 0 --batches 8 32 256 \\
        --baseline /work/wt-old/hqgnn/retrieval.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from grid_slices_cost import median_ms, seen_rows  # noqa: E402

from flows.code_versions import read_code_version  # noqa: E402
from flows.split_files import load_split  # noqa: E402
from hqgnn.retrieval import Retriever  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("version", type=Path, help="a code version (codes/<name>) of b-bit or float-users codes")
    p.add_argument("split", type=Path, help="its snapshot (the train items are skipped)")
    p.add_argument("--blocks", type=int, nargs="+", default=[1 << 16, 1 << 14, 1 << 12])
    p.add_argument("--batches", type=int, nargs="+", default=[32])
    p.add_argument("--users", type=int, default=64, help="lone requests per round (and the largest batch, at least)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--baseline", type=Path, nargs="+", default=[], help="other retrieval.py files, timed beside this code")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    v, train = read_code_version(args.version), load_split(args.split).train
    users = np.random.default_rng(0).choice(len(v.users), max(args.users, *args.batches), replace=False)
    seen = seen_rows(train, users, len(v.items))
    retrievers = {f"item_block {b:7d}" if b else "this code, own blocks": Retriever(v.users, v.items, **({"item_block": b} if b else {}))
                  for b in args.blocks}
    for i, path in enumerate(args.baseline):
        spec = importlib.util.spec_from_file_location(f"baseline_retrieval_{i}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        retrievers[f"baseline {path}"] = module.Retriever(v.users, v.items)
    print(f"{args.version.name}: {len(v.items)} items, {v.users.bits}-bit users x {v.items.bits}-bit items x {v.items.dim}; "
          f"torch {args.threads} threads", flush=True)
    lone = users[: args.users]
    for _ in range(2):
        for name, r in retrievers.items():
            one = median_ms(lambda r=r: [r.recommend(int(u), 20, seen[int(u)]) for u in lone], len(lone))
            many = {n: median_ms(lambda r=r, n=n: r.topk(users[:n], 20, [train]), n) for n in args.batches}
            print(f"{name}: one request {one:.3f} ms, per user in a batch of "
                  + ", ".join(f"{n} {ms:.3f} ms" for n, ms in many.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
