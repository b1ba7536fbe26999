"""Cost of hard negatives: seconds per training epoch with ``negative_candidates`` k vs uniform (k = 1).

Same data (a LightGCN-format folder: train.txt), d 64, L 3, one process, the trainer's own code:
an epoch is one :meth:`hqgnn.sampler.BPRSampler.sample` of ``|train|`` triples (k candidates each)
plus ``ceil(|train| / batch)`` :meth:`hqgnn.trainer.Trainer.step` calls; ``--steps`` timed steps are
extrapolated to the epoch. Float32 and a quantized 1-bit epoch (hard negatives scored with the
codes) are timed; the widths alternate over ``--rounds`` and the median is reported, so the
baseline and the variant see the same machine load.

    .venv/bin/python bench/hard_negative_cost.py --data ../shared/data/gowalla-lightgcn --candidates 16

Last line: ``bits=<b> k=<k> epoch_s=<k> uniform_epoch_s=<1> cost_ratio=<ratio>`` for the last width.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import read_lightgcn  # noqa: E402
from hqgnn.config import TrainConfig  # noqa: E402
from hqgnn.dataset import SplitData  # noqa: E402
from hqgnn.interactions import InteractionMatrix  # noqa: E402
from hqgnn.trainer import Trainer  # noqa: E402


def trainer_for(train: InteractionMatrix, bits: int, k: int, batch: int) -> Trainer:
    empty = InteractionMatrix.from_pairs(np.zeros(0), np.zeros(0), train.num_users, train.num_items)
    data = SplitData(train, empty, empty, train.num_users, train.num_items, np.array([]), np.array([]), "bench", Path("."), {})
    cfg = TrainConfig(bits=bits, estimator="none" if bits == 32 else "ste", batch_size=batch, negative_candidates=k, device="cpu")
    trainer = Trainer(cfg, data, Path("/nonexistent"), torch.device("cpu"))
    trainer.quantizing = bits != 32
    return trainer


def epoch_seconds(trainer: Trainer, steps: int) -> float:
    """Sampling one epoch of triples + ``steps`` steps, extrapolated to the epoch's steps."""
    k, batch = trainer.cfg.negative_candidates, trainer.cfg.batch_size
    steps = max(1, min(steps, trainer.sampler.epoch_size // batch - 1))  # full batches after the warm-up one
    t0 = time.perf_counter()
    users, pos, neg = trainer.sampler.sample(trainer.sampler.epoch_size, candidates=k)
    sample_s = time.perf_counter() - t0
    trainer.step(users[:batch], pos[:batch], neg[:batch])  # warm-up
    t0 = time.perf_counter()
    for s in range(1, steps + 1):
        sl = slice(s * batch, (s + 1) * batch)
        trainer.step(users[sl], pos[sl], neg[sl])
    step_s = (time.perf_counter() - t0) / steps
    return sample_s + step_s * math.ceil(trainer.sampler.epoch_size / batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with a LightGCN-format train.txt")
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32768)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bits", type=int, nargs="+", default=[32, 1])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    u, i = read_lightgcn(args.data / "train.txt")
    train = InteractionMatrix.from_pairs(u, i, int(u.max()) + 1, int(i.max()) + 1)
    print(f"data {args.data}: {train.num_users} users, {train.num_items} items, {train.nnz} train interactions; "
          f"batch {args.batch_size}; threads {args.threads}; {args.rounds} rounds of {args.steps} timed steps", flush=True)
    for bits in args.bits:
        trainers = {k: trainer_for(train, bits, k, args.batch_size) for k in (1, args.candidates)}
        times: dict[int, list[float]] = {k: [] for k in trainers}
        for _ in range(args.rounds):
            for k, trainer in trainers.items():
                times[k].append(epoch_seconds(trainer, args.steps))
        base, hard = statistics.median(times[1]), statistics.median(times[args.candidates])
        print(f"bits={bits} k={args.candidates} epoch_s={hard:.2f} uniform_epoch_s={base:.2f} cost_ratio={hard / base:.2f}", flush=True)


if __name__ == "__main__":
    main()
