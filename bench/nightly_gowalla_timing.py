"""How long the deployments' recipes train on Gowalla (issue 16: warm night <= 10 min, cold <= 30 min).

"Yesterday" = Gowalla's train.txt less a random 2 % of its interactions; "tonight" = all of
train.txt (the 2 % arrive). A short cold run on yesterday (``--parent-epochs``, the
``hqgnn/train`` recipe: batch 32,768, lr 2e-2 cosine, 1 bit GSTE after a float warm-up) gives the
parent and the seconds per float and per quantized epoch; then tonight's warm run (the
``hqgnn/nightly`` recipe: ``--warm-epochs``, user-code refinement on) is timed end to end, warm
table included. The cold 60-epoch time is extrapolated from the per-epoch times (stated as such).
Validation: 5 % of each user's train items (as bench/quality.py). Library calls only.

    OMP_NUM_THREADS=2 .venv/bin/python bench/nightly_gowalla_timing.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lightgcn_data import carve_valid, read_folder

from hqgnn.checkpoint import load_checkpoint
from hqgnn.dataset import SplitData
from hqgnn.interactions import InteractionMatrix
from hqgnn.recipe import TrainRecipe
from hqgnn.trainer import Trainer
from hqgnn.warm_start import warm_start

RECIPE = dict(bits=1, estimator="gste", batch_size=32768, lr=2e-2, lr_schedule="cosine", delta_every=10, seed=2024)


def split(users: np.ndarray, items: np.ndarray, n_u: int, n_i: int, name: str) -> SplitData:
    _, is_valid = carve_valid(users, 0.05, 2024)
    m = lambda mask: InteractionMatrix.from_pairs(users[mask], items[mask], n_u, n_i)  # noqa: E731
    ids_u, ids_i = np.asarray([str(k) for k in range(n_u)], dtype=object), np.asarray([str(k) for k in range(n_i)], dtype=object)
    return SplitData(m(~is_valid), m(is_valid), m(np.zeros(len(users), bool)), n_u, n_i, ids_u, ids_i, name, Path(name), {})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/gowalla-lightgcn"))
    p.add_argument("--parent-epochs", type=int, default=4)
    p.add_argument("--warm-epochs", type=int, default=10)
    p.add_argument("--refine", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    u, i = read_folder(args.data)["train"]
    n_u, n_i = int(u.max()) + 1, int(i.max()) + 1
    keep = np.random.default_rng(0).random(len(u)) >= 0.02
    yesterday, tonight = split(u[keep], i[keep], n_u, n_i, "yesterday"), split(u, i, n_u, n_i, "tonight")
    root = Path(tempfile.mkdtemp(prefix="gowalla-timing-"))
    try:
        warmup = args.parent_epochs // 2
        parent_cfg = TrainRecipe(**RECIPE, epochs=args.parent_epochs, float_warmup_epochs=warmup, eval_every=args.parent_epochs, patience=4)
        t0 = time.perf_counter()
        fit = Trainer(parent_cfg, yesterday, root / "parent", torch.device("cpu")).fit()
        parent_s = time.perf_counter() - t0
        h = fit.history
        float_s = float(np.mean([r["epoch_seconds"] for r in h[:warmup]]))
        quant_s = float(np.mean([r["epoch_seconds"] for r in h[warmup:-1]] or [h[-1]["epoch_seconds"]]))
        eval_s = h[-1]["epoch_seconds"] - quant_s  # the last epoch also evaluated
        state = load_checkpoint(root / "parent" / "best.pt")
        table = state["model"]["embedding"]
        t0 = time.perf_counter()
        ws = warm_start(table[:n_u], table[n_u:], yesterday.user_ids, yesterday.item_ids, tonight.user_ids, tonight.item_ids, tonight.train)
        warm_cfg = TrainRecipe(**RECIPE, epochs=args.warm_epochs, eval_every=5, patience=4, refine_user_codes=args.refine)
        warm = Trainer(warm_cfg, tonight, root / "warm", torch.device("cpu"), initial_embedding=ws.embedding).fit()
        warm_s = time.perf_counter() - t0
        cold_60 = 30 * float_s + 30 * quant_s + 6 * eval_s
        out = {"train_interactions_tonight": tonight.train.nnz, "parent_epochs": args.parent_epochs, "parent_wall_s": parent_s,
               "float_epoch_s": float_s, "quantized_epoch_s": quant_s, "eval_s": eval_s,
               "cold_60_epochs_extrapolated_s": cold_60, "warm_wall_s": warm_s, "warm_epochs_run": warm.epochs_run,
               "warm_train_s": warm.seconds, "warm_valid_r20": warm.best_valid["recall@20"], "refinement": warm.code_refinement,
               **ws.counts()}
        print(json.dumps(out, indent=1, default=str))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
