"""What verified reads cost at Gowalla size (issue 17): hashing a snapshot, a code version and a
run's checkpoints against their manifests, next to the reads they protect.

    PYTHONPATH=. python bench/verified_reads.py [--data /work/shared/data/gowalla-lightgcn]

Writes a Gowalla-sized split snapshot (the real pairs; 10 % of train carved as valid), a 1-bit
and an 8-bit code version of random 64-d embeddings, and a run's ``best.pt``/``last.pt`` into a
temporary folder, then times, each the median of 5 in one process:

- the check when cold (first read in a process: every file hashed) and warm (hash cache hit);
- the read itself (``load_split``, ``read_code_version`` without the check, ``load_checkpoint``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lightgcn_data import read_folder  # noqa: E402

from flows import integrity  # noqa: E402
from flows.code_versions import CODE_FILES, read_code_table, write_code_table  # noqa: E402
from flows.split_files import load_split, write_split  # noqa: E402
from hqgnn.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from hqgnn.export import code_table_arrow  # noqa: E402
from hqgnn.files import atomic_write_json  # noqa: E402
from hqgnn.quant import quantize  # noqa: E402


def median_ms(fn, reps: int = 5, cold: bool = False) -> float:  # noqa: ANN001
    times = []
    for _ in range(reps):
        if cold:
            integrity.clear_hash_cache()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/gowalla-lightgcn"))
    args = parser.parse_args()
    pairs = read_folder(args.data)
    u, i = pairs["train"]
    n_u, n_i = int(max(u.max(), pairs["test"][0].max()) + 1), int(max(i.max(), pairs["test"][1].max()) + 1)
    rng = np.random.default_rng(0)
    valid = rng.random(u.size) < 0.1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        split = write_split(root / "split", {"train": (u[~valid], i[~valid]), "valid": (u[valid], i[valid]), "test": pairs["test"]}, n_u, n_i)
        size = sum(p.stat().st_size for p in split.glob("*.parquet"))
        rows.append(("split snapshot", size, median_ms(lambda: integrity.verify_split(split), cold=True),
                     median_ms(lambda: integrity.verify_split(split)), median_ms(lambda: load_split(split)) - median_ms(lambda: integrity.verify_split(split))))
        for bits in (1, 8):
            folder = root / f"codes{bits}"
            folder.mkdir()
            files = {}
            for kind, n in (("user", n_u), ("item", n_i)):
                emb = torch.randn(n, 64)
                table = quantize(emb, bits)
                from hqgnn.evaluation import code_tables

                users_t, items_t = code_tables(emb, emb, bits, table, table)
                ids = np.array([f"{kind[0]}{k}" for k in range(n)], dtype=object)
                write_code_table(folder / CODE_FILES[kind], code_table_arrow(kind, ids, users_t))
                files[CODE_FILES[kind]] = integrity.file_record(folder / CODE_FILES[kind])
            atomic_write_json(folder / "manifest.json", {"version": f"v{bits}", "bits": bits, "dim": 64, "files": files})

            def read(folder: Path = folder, bits: int = bits) -> None:
                for kind in ("user", "item"):
                    read_code_table(folder / CODE_FILES[kind], kind, bits, 64)

            size = sum(p.stat().st_size for p in folder.glob("*.parquet"))
            rows.append((f"{bits}-bit code version", size, median_ms(lambda folder=folder: integrity.verify_code_version(folder), cold=True),
                         median_ms(lambda folder=folder: integrity.verify_code_version(folder)), median_ms(read)))
        run = root / "run"
        run.mkdir()
        state = {"user_emb": torch.randn(n_u, 64), "item_emb": torch.randn(n_i, 64), "epoch": 1}
        save_checkpoint(run / "best.pt", state)
        save_checkpoint(run / "last.pt", {**state, "model": {"embedding.weight": torch.randn(n_u + n_i, 64)}})
        atomic_write_json(run / "config.json", {"config": {}, "snapshot": "s", "split_dir": "../split", "model_args": {}})
        atomic_write_json(run / "summary.json", {"run": "run", "status": "completed",
                                                 "files": {n: integrity.file_record(run / n) for n in ("best.pt", "last.pt")}})
        size = sum((run / n).stat().st_size for n in ("best.pt", "last.pt"))
        rows.append(("run (best.pt + last.pt)", size, median_ms(lambda: integrity.verify_run(run), cold=True),
                     median_ms(lambda: integrity.verify_run(run)), median_ms(lambda: load_checkpoint(run / "best.pt"))))
    print(f"Gowalla: {n_u:,} users x {n_i:,} items, {u.size + pairs['test'][0].size:,} interactions")
    print("| what | bytes | check, cold (ms) | check, warm (ms) | the read it guards (ms) |")
    print("|---|---|---|---|---|")
    for what, size, cold, warm, read_ms in rows:
        print(f"| {what} | {size / 1e6:.1f} MB | {cold:.1f} | {warm:.2f} | {read_ms:.1f} |")


if __name__ == "__main__":
    main()
