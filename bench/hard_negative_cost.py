"""Cost of hard negatives: seconds per training epoch with ``negative_candidates`` k vs uniform (k = 1).

Same data (a LightGCN-format folder: train.txt), d 64, L 3, one process, the trainer's own code:
an epoch is :meth:`hqgnn.sampler.BPRSampler.epoch` (``|train|`` triples, k candidates each)
and a :meth:`hqgnn.trainer.Trainer.step` per batch. A float32 and a quantized 1-bit epoch (hard
negatives scored with the codes) are timed whole; k and uniform alternate over ``--rounds``
(:func:`timing.interleaved_medians`, after one warm-up epoch each), so both see the same load.

    .venv/bin/python bench/hard_negative_cost.py --data ../shared/data/gowalla-lightgcn --candidates 16

Last line: ``bits=<b> k=<k> epoch_s=<k> uniform_epoch_s=<1> cost_ratio=<ratio>`` for the last width.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from timing import interleaved_medians  # noqa: E402  (bench/ is the script's folder)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_speed import read_train, train_only  # noqa: E402
from flows.config import TrainConfig  # noqa: E402
from hqgnn.bits import FLOAT_BITS  # noqa: E402
from hqgnn.dataset import SplitData  # noqa: E402
from hqgnn.trainer import Trainer  # noqa: E402


def trainer_for(data: SplitData, bits: int, k: int, batch: int) -> Trainer:
    """A trainer whose quantizer is on (b < 32), as in a quantized epoch after any warm-up."""
    cfg = TrainConfig(bits=bits, estimator="none" if bits == FLOAT_BITS else "ste", batch_size=batch, negative_candidates=k, device="cpu")
    trainer = Trainer(cfg, data, Path("/nonexistent"), torch.device("cpu"))
    trainer.quantizing = bits != FLOAT_BITS
    return trainer


def one_epoch(trainer: Trainer) -> None:
    for users, pos, neg in trainer.sampler.epoch(trainer.cfg.batch_size, trainer.cfg.negative_candidates):
        trainer.step(users, pos, neg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with a LightGCN-format train.txt")
    ap.add_argument("--candidates", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32768)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bits", type=int, nargs="+", default=[32, 1])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = train_only(read_train(args.data))
    print(f"data {args.data}: {data.num_users} users, {data.num_items} items, {data.train.nnz} train interactions; "
          f"batch {args.batch_size}; threads {args.threads}; {args.rounds} rounds of whole epochs", flush=True)
    for bits in args.bits:
        trainers = {k: trainer_for(data, bits, k, args.batch_size) for k in (1, args.candidates)}
        med = interleaved_medians({str(k): lambda t=t: one_epoch(t) for k, t in trainers.items()}, args.rounds)
        base, hard = med["1"], med[str(args.candidates)]
        print(f"bits={bits} k={args.candidates} epoch_s={hard:.2f} uniform_epoch_s={base:.2f} cost_ratio={hard / base:.2f}", flush=True)


if __name__ == "__main__":
    main()
