"""A dedicated fold-in evaluation on Gowalla (issue 16): new users folded in vs the same users retrained.

A random ``--hold-frac`` of Gowalla's users (seed 0) are the "new users": the *parent* model
(the ``hqgnn/train`` deployment recipe read from ``prefect.yaml``, without user-code refinement,
which only moves user codes) is trained without any of their interactions; the *full* model is
the same recipe (refinement on) trained on everything, as a full retrain would (its wall time
is the cold ``hqgnn/train`` recipe's on Gowalla, measured end to end: the same split as
``nightly_gowalla_timing.py --mode cold``). Each new user is
then folded into the parent from its train.txt items and scored on its test.txt items (train
items masked, every item ranked), against the same user in the full model. Fold-in candidates
(all 1-bit codes, scored by the service's ``s_u s_i <b_u, b_i>`` against the parent's item codes):

- ``codes``: LightGCN one-hop over the parent's dequantized 1-bit item codes, then the quantizer
  (what ``hqgnn foldin`` did before this script);
- ``float``: the same one-hop over the parent run's float item outputs (``best.pt``'s
  ``item_emb``), then the quantizer;
- ``float+refine<r>`` / ``codes+refine<r>``: then ``r`` rounds of :func:`hqgnn.code_refinement.refine_round`
  on the new users' train items against the item codes (the objective training's refinement uses);
- ``float (float items)``: the float fold-in vector against the float item outputs (a reference a
  1-bit service cannot serve).

The new users are split in two halves by a seeded permutation: the number of refinement rounds is
chosen on half A and reported on half B (and on all), so the choice is not fitted to the number
reported. Two training commands (one benchmark slot each) and one evaluation command:

    flock /tmp/bench.lock env OMP_NUM_THREADS=2 PYTHONPATH=.:bench .venv/bin/python bench/foldin_eval.py train --model parent
    flock /tmp/bench.lock env OMP_NUM_THREADS=2 PYTHONPATH=.:bench .venv/bin/python bench/foldin_eval.py train --model full
    OMP_NUM_THREADS=2 PYTHONPATH=.:bench .venv/bin/python bench/foldin_eval.py eval

``--float-users`` (all three commands): the same recipe with float32 users against the 1-bit item
codes; the new users' fold-in vectors are ranked as they are (no quantizer, no refinement), as
``hqgnn foldin`` does for such a version; files get a ``-float-users`` tag.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lightgcn_data import carve_valid, read_folder
from nightly_gowalla_timing import _record, deployment_recipes

from hqgnn.checkpoint import load_checkpoint
from hqgnn.code_refinement import refine_round
from hqgnn.codes import CodeTable
from hqgnn.dataset import SplitData
from hqgnn.fold_in import code_rows, fold_in_users
from hqgnn.interactions import InteractionMatrix
from hqgnn.recipe import TrainRecipe
from hqgnn.retrieval import Retriever
from hqgnn.trainer import Trainer


def new_users(n_users: int, frac: float) -> np.ndarray:
    """Sorted user indices held out of the parent (seed 0)."""
    rng = np.random.default_rng(0)
    return np.sort(rng.choice(n_users, int(round(frac * n_users)), replace=False))


def split(users: np.ndarray, items: np.ndarray, n_u: int, n_i: int, drop: np.ndarray | None) -> SplitData:
    """Train/valid (5 % of each user's items) of the kept interactions; ``drop`` users have none."""
    keep = np.ones(len(users), bool) if drop is None else ~np.isin(users, drop)
    users, items = users[keep], items[keep]
    _, is_valid = carve_valid(users, 0.05, 2024)
    m = lambda mask: InteractionMatrix.from_pairs(users[mask], items[mask], n_u, n_i)  # noqa: E731
    ids_u, ids_i = np.asarray([str(k) for k in range(n_u)], dtype=object), np.asarray([str(k) for k in range(n_i)], dtype=object)
    return SplitData(m(~is_valid), m(is_valid), m(np.zeros(len(users), bool)), n_u, n_i, ids_u, ids_i, "foldin-eval", Path("."), {})


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    data = read_folder(args.data, args.max_users)
    (u, i), (tu, ti) = data["train"], data["test"]
    n_u, n_i = int(max(u.max(), tu.max())) + 1, int(max(i.max(), ti.max())) + 1
    held = new_users(n_u, args.hold_frac)
    cold, _ = deployment_recipes()
    if args.model == "parent":
        cold["refine_user_codes"] = 0
    if args.float_users:  # the same recipe with float32 users (recipes/12B-1bit-d64-float-users.yaml's switch)
        cold["float_users"] = True
    if args.epochs:  # a smoke test: a shorter schedule, half of it float
        cold.update(epochs=args.epochs, float_warmup_epochs=args.epochs // 2, eval_every=args.epochs)
    cfg = TrainRecipe(**cold)
    sd = split(u, i, n_u, n_i, held if args.model == "parent" else None)
    root = Path(tempfile.mkdtemp(prefix="foldin-eval-"))
    load = os.getloadavg()
    t0 = time.perf_counter()
    try:
        fit = Trainer(cfg, sd, root / args.model, torch.device("cpu")).fit()
        wall = time.perf_counter() - t0
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / args.model / "best.pt", args.out / f"{args.model}{_tag(args)}.pt")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rec = {"model": args.model, "held_users": len(held), "train_interactions": sd.train.nnz, **_record(fit, wall),
           "load_before": load, "load_after": os.getloadavg(), "recipe": cfg.model_dump()}
    (args.out / f"{args.model}{_tag(args)}.json").write_text(json.dumps(rec, indent=1))
    print(json.dumps(rec))


def _tag(args: argparse.Namespace) -> str:
    """File-name tag of the float-users models and results."""
    return "-float-users" if args.float_users else ""


def _recall(users: CodeTable, items: CodeTable, truth: InteractionMatrix, seen: InteractionMatrix) -> np.ndarray:
    """Recall@20 per row of ``users`` (rows of ``truth``/``seen``), all items ranked, ``seen`` masked."""
    r = Retriever(users, items, "score")
    out = np.zeros(len(users))
    for start in range(0, len(users), 1024):
        rows = np.arange(start, min(start + 1024, len(users)))
        scores = r.scores(rows)
        for k, row in enumerate(rows):
            s = seen.indices[seen.indptr[row]:seen.indptr[row + 1]]
            scores[k, s] = -np.inf
        top = torch.as_tensor(scores).topk(20, dim=1).indices.numpy()
        for k, row in enumerate(rows):
            t = truth.indices[truth.indptr[row]:truth.indptr[row + 1]].numpy()
            out[row] = np.isin(top[k], t).sum() / max(len(t), 1)
    return out


def evaluate(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    data = read_folder(args.data, args.max_users)
    (u, i), (tu, ti) = data["train"], data["test"]
    n_u, n_i = int(max(u.max(), tu.max())) + 1, int(max(i.max(), ti.max())) + 1
    held = new_users(n_u, args.hold_frac)
    parent, full = load_checkpoint(args.out / f"parent{_tag(args)}.pt"), load_checkpoint(args.out / f"full{_tag(args)}.pt")
    pos = {int(x): k for k, x in enumerate(held)}
    pick = lambda uu, ii: (np.asarray([pos[int(x)] for x in uu[np.isin(uu, held)]]), ii[np.isin(uu, held)])  # noqa: E731
    train_u, train_i = pick(u, i)
    test_u, test_i = pick(tu, ti)
    train_m = InteractionMatrix.from_pairs(train_u, train_i, len(held), n_i)  # [new, items] what is folded in
    test_m = InteractionMatrix.from_pairs(test_u, test_i, len(held), n_i)
    has = (train_m.row_lengths() > 0) & (test_m.row_lengths() > 0)
    # the parent's item degree: its train interactions (every user but the new ones; valid carve included as a count-neutral approx.)
    degree = torch.bincount(torch.as_tensor(i[~np.isin(u, held)]), minlength=n_i).float()
    items_float = parent["item_emb"].float()
    item_codes = code_rows(items_float, 1)
    results: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    # float users (--float-users): user vectors as they are, against the 1-bit item codes; no refinement (it moves user codes)
    user_side = (lambda x: CodeTable.from_float(x.numpy())) if args.float_users else (lambda x: code_rows(x, 1))
    full_users = user_side(full["user_emb"].float()[torch.as_tensor(held)])
    results["retrained (full model)"] = _recall(full_users, code_rows(full["item_emb"].float(), 1), test_m, train_m)
    for base, table in (("codes", torch.from_numpy(item_codes.dequantize())), ("float", items_float)):
        t0 = time.perf_counter()
        vec = fold_in_users(train_m, table, degree)
        seconds[base] = time.perf_counter() - t0
        results[base] = _recall(user_side(vec), item_codes, test_m, train_m)
        if base == "float":
            results["float (float items; not servable at 1 bit)"] = _recall(CodeTable.from_float(vec.numpy()), CodeTable.from_float(items_float.numpy()), test_m, train_m)
        users = vec
        spent = seconds[base]
        for r in range(1, 0 if args.float_users else args.rounds + 1):
            t0 = time.perf_counter()
            users, flips = refine_round(users, items_float, train_m)
            spent += time.perf_counter() - t0
            name = f"{base}+refine{r}"
            results[name], seconds[name] = _recall(code_rows(users, 1), item_codes, test_m, train_m), spent
    perm = np.random.default_rng(1).permutation(len(held))
    half_a = np.zeros(len(held), bool)
    half_a[perm[: len(held) // 2]] = True
    mask = has.numpy()
    ref = results["retrained (full model)"]
    rows = []
    for name, rec in results.items():
        rows.append({"candidate": name, "r20_all": float(rec[mask].mean()), "pct_all": 100 * float(rec[mask].mean() / ref[mask].mean()),
                     "pct_half_a": 100 * float(rec[mask & half_a].mean() / ref[mask & half_a].mean()),
                     "pct_half_b": 100 * float(rec[mask & ~half_a].mean() / ref[mask & ~half_a].mean()),
                     "ms_per_user": 1000 * seconds[name] / len(held) if name in seconds else None})
    chosen = {base: max((r for r in rows if r["candidate"].startswith(f"{base}+refine")), key=lambda r: r["pct_half_a"])["candidate"]
              for base in ("codes", "float") if args.rounds and not args.float_users}
    out = {"held_users": len(held), "evaluated_users": int(mask.sum()), "half_a": int((mask & half_a).sum()),
           "half_b": int((mask & ~half_a).sum()), "rows": rows, "rounds_chosen_on_half_a": chosen, "load": os.getloadavg()}
    (args.out / f"eval{_tag(args)}.json").write_text(json.dumps(out, indent=1))
    print("| candidate | R@20 (all) | % of retrained: all / half A / half B | ms per user |\n|---|---|---|---|")
    for r in rows:
        ms = "" if r["ms_per_user"] is None else f"{r['ms_per_user']:.2f}"
        print(f"| {r['candidate']} | {r['r20_all']:.4f} | {r['pct_all']:.1f} / {r['pct_half_a']:.1f} / {r['pct_half_b']:.1f} | {ms} |")
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=("train", "eval"))
    p.add_argument("--model", choices=("parent", "full"), default="parent")
    p.add_argument("--data", type=Path, default=Path("/work/shared/data/gowalla-lightgcn"))
    p.add_argument("--hold-frac", type=float, default=0.05)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("bench/out/foldin_eval"))
    p.add_argument("--max-users", type=int, default=None, help="keep users < this (a smoke test)")
    p.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (a smoke test)")
    p.add_argument("--float-users", action="store_true", help="the recipe with float32 users: new users folded in as float vectors "
                   "against the 1-bit item codes (what `hqgnn foldin` gives a float-users version), no refinement")
    args = p.parse_args()
    (train if args.stage == "train" else evaluate)(args)


if __name__ == "__main__":
    main()
