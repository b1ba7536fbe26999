"""How long the deployments' recipes train on Gowalla (issue 16: warm night <= 10 min, cold <= 30 min).

The recipes are read from ``prefect.yaml`` (``hqgnn/nightly``'s and ``hqgnn/train``'s ``train``
sections, less the keys the stage resolves itself: device, init_from, warm_epochs), so the
measurement follows the deployments. Validation: 5 % of each user's train items (as
bench/quality.py). Library calls only. One mode per command (each fits a benchmark slot):

- ``--mode warm``: "yesterday" = Gowalla's train.txt less a random 2 % of its interactions,
  "tonight" = all of train.txt (the 2 % arrive). A short cold parent on yesterday
  (``--parent-epochs``, not timed as a night), then tonight's warm run with the nightly recipe
  (``epochs = warm_epochs``, no float warm-up after a quantized parent, as
  ``flows.stages.train.pin_warm_start`` does), timed end to end, warm table included.
- ``--mode cold``: the ``hqgnn/train`` recipe from scratch on all of train.txt, timed end to end
  (measured, not extrapolated).

``--refine N`` overrides the recipe's ``refine_user_codes`` (e.g. to time a lower setting).

    flock /tmp/bench.lock env OMP_NUM_THREADS=2 PYTHONPATH=.:bench .venv/bin/python bench/nightly_gowalla_timing.py --mode warm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightgcn_data import carve_valid, read_folder

from hqgnn.checkpoint import load_checkpoint
from hqgnn.dataset import SplitData
from hqgnn.interactions import InteractionMatrix
from hqgnn.recipe import TrainRecipe
from hqgnn.trainer import Trainer
from hqgnn.warm_start import warm_start

ROOT = Path(__file__).resolve().parents[1]


def deployment_recipes(path: Path = ROOT / "prefect.yaml") -> tuple[dict[str, Any], dict[str, Any]]:
    """(cold, warm) TrainRecipe keyword sets of ``hqgnn/train`` and ``hqgnn/nightly`` as a worker runs them."""
    deps = {d["name"]: d["parameters"]["train"] for d in yaml.safe_load(path.read_text())["deployments"] if d["name"] in ("train", "nightly")}
    fields = set(TrainRecipe.model_fields)
    cold = {k: v for k, v in deps["train"].items() if k in fields}
    warm = {k: v for k, v in deps["nightly"].items() if k in fields}
    warm["epochs"] = deps["nightly"].get("warm_epochs") or warm["epochs"]
    warm["float_warmup_epochs"] = 0  # the parent is quantized (1 bit): no float warm-up (pin_warm_start)
    return cold, warm


def split(users: np.ndarray, items: np.ndarray, n_u: int, n_i: int, name: str) -> SplitData:
    _, is_valid = carve_valid(users, 0.05, 2024)
    m = lambda mask: InteractionMatrix.from_pairs(users[mask], items[mask], n_u, n_i)  # noqa: E731
    ids_u, ids_i = np.asarray([str(k) for k in range(n_u)], dtype=object), np.asarray([str(k) for k in range(n_i)], dtype=object)
    return SplitData(m(~is_valid), m(is_valid), m(np.zeros(len(users), bool)), n_u, n_i, ids_u, ids_i, name, Path(name), {})


def _record(fit: Any, wall: float) -> dict[str, Any]:
    rounds = (fit.code_refinement or {}).get("rounds", [])
    refine_s = sum(r["seconds"] for r in rounds)
    return {"wall_s": wall, "epochs_run": fit.epochs_run, "status": fit.status, "best_epoch": fit.best_epoch,
            "train_s": wall - refine_s, "refine_s": refine_s, "refine_rounds": len(rounds),
            "refine_rounds_kept": (fit.code_refinement or {}).get("rounds_kept"),
            "refine_round_s": [round(r["seconds"], 1) for r in rounds],
            "refine_valid_r20": [round(r["valid_recall@20"], 4) for r in rounds],
            "valid_r20": fit.best_valid["recall@20"], "epoch_s": [round(r["epoch_seconds"], 1) for r in fit.history]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("warm", "cold"), default="warm")
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/gowalla-lightgcn"))
    p.add_argument("--parent-epochs", type=int, default=4)
    p.add_argument("--refine", type=int, default=None, help="refine_user_codes (default: the recipe's)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cold_kw, warm_kw = deployment_recipes()
    if args.refine is not None:
        cold_kw["refine_user_codes"] = warm_kw["refine_user_codes"] = args.refine
    u, i = read_folder(args.data)["train"]
    n_u, n_i = int(u.max()) + 1, int(i.max()) + 1
    tonight = split(u, i, n_u, n_i, "tonight")
    root = Path(tempfile.mkdtemp(prefix="gowalla-timing-"))
    out: dict[str, Any] = {"mode": args.mode, "train_interactions": tonight.train.nnz, "load_before": os.getloadavg()}
    try:
        if args.mode == "cold":
            cfg = TrainRecipe(**cold_kw)
            out["recipe"] = cfg.model_dump()
            t0 = time.perf_counter()
            fit = Trainer(cfg, tonight, root / "cold", torch.device("cpu")).fit()
            out["cold"] = _record(fit, time.perf_counter() - t0)
        else:
            keep = np.random.default_rng(0).random(len(u)) >= 0.02
            yesterday = split(u[keep], i[keep], n_u, n_i, "yesterday")
            parent_cfg = TrainRecipe(**{**cold_kw, "epochs": args.parent_epochs, "float_warmup_epochs": args.parent_epochs // 2,
                                        "eval_every": args.parent_epochs, "refine_user_codes": 0})
            t0 = time.perf_counter()
            Trainer(parent_cfg, yesterday, root / "parent", torch.device("cpu")).fit()
            out["parent_wall_s"] = time.perf_counter() - t0
            table = load_checkpoint(root / "parent" / "best.pt")["model"]["embedding"]
            cfg = TrainRecipe(**warm_kw)
            out["recipe"] = cfg.model_dump()
            t0 = time.perf_counter()
            ws = warm_start(table[:n_u], table[n_u:], yesterday.user_ids, yesterday.item_ids, tonight.user_ids, tonight.item_ids, tonight.train)
            fit = Trainer(cfg, tonight, root / "warm", torch.device("cpu"), initial_embedding=ws.embedding).fit()
            out["warm"] = {**_record(fit, time.perf_counter() - t0), **ws.counts()}
        out["load_after"] = os.getloadavg()
        print(json.dumps(out, indent=1, default=str))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
