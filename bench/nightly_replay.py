"""Replay a time-stamped log as nights: warm vs cold retraining, the like-for-like gate, fold-in (issue 16).

The log (default: Amazon Grocery, ReChorus train.csv, day-granular unix times) is sorted by
time. Night 0 trains cold on everything before the replay window and publishes; each of the N
nights then adds the next block of ``--block-days`` days (Grocery has ~75 interactions a day in
2014, too few to evaluate a single day, so one replayed "night" adds a block of days) and:

- **cold**: trains from scratch on everything so far (``--cold-epochs``, the ``hqgnn/train`` recipe);
- **warm**: starts from the published model's layer-0 rows by original id, new users/items from
  their train neighbours (:mod:`hqgnn.warm_start`), ``--warm-epochs`` (the ``hqgnn/nightly`` recipe);
- **warm-random**: the same with new rows at the random start (the ablation of the neighbour rule);
- **warm variants** (``--warm-variant NAME:KEY=VALUE,...``): other warm recipes (overrides of the
  warm recipe's fields, e.g. ``float_warmup_epochs=2``, or of the warm start's ``carry_users``)
  from the same champion, scored against the same cold run, never published (the champion
  follows the warm recipe, ``--warm-set`` overrides it);
- **gate**: the warm challenger against the published champion on tonight's validation split
  (:func:`hqgnn.comparison.compare`, tolerance 0.005); the champion moves when it passes;
- **fold-in**: users who first appear tonight get codes from the champion BEFORE tonight's
  training (:func:`hqgnn.fold_in.fold_in_codes` over their train items and the champion's item
  codes, with 0 and ``--foldin-refine`` rounds of code refinement; and over its float item
  outputs); their Recall@20 is compared with the same users' in tonight's cold retrain.

Every model is evaluated on the NEXT block's interactions (what a nightly model serves), of
users and items it knows, its train and valid items masked; folded-in users on their next-block
and held-out interactions, ranked over the items both models know. Validation (early stopping,
gate) = each user's last interaction in the window (users with >= 3). Library calls only (the
same functions the stages call), no work directory: the replay measures the math and the time.

``--state FILE`` makes a replay resumable (the champion and the rows so far are saved after
every night; a rerun with the same arguments continues), ``--max-minutes`` stops it between
nights, so a long replay fits several benchmark slots.

    OMP_NUM_THREADS=2 .venv/bin/python bench/nightly_replay.py --nights 6 --block-days 28 --no-warm-random
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from hqgnn.checkpoint import load_checkpoint
from hqgnn.comparison import CodeModel, compare, restrict
from hqgnn.dataset import SplitData
from hqgnn.evaluation import code_tables
from hqgnn.fold_in import fold_in_codes
from hqgnn.interactions import InteractionMatrix
from hqgnn.metrics import evaluate_ranking
from hqgnn.quant import quantize
from hqgnn.recipe import TrainRecipe
from hqgnn.retrieval import Retriever
from hqgnn.trainer import Trainer
from hqgnn.warm_start import match_rows, warm_start

DEFAULT_LOG = Path("/work/shared/data/amazon-grocery-rechorus/train.csv")


def load_log(path: Path) -> pd.DataFrame:
    """``user_id, item_id, time`` (str, str, int64 unix s), sorted by time (stable)."""
    d = pd.read_csv(path, sep="\t", dtype={"user_id": str, "item_id": str, "time": np.int64})
    return d.sort_values("time", kind="stable").reset_index(drop=True)


def window_split(log: pd.DataFrame, name: str) -> SplitData:
    """Every interaction of ``log`` as one snapshot: valid = each user's last one (users with >= 3)."""
    log = log.drop_duplicates(["user_id", "item_id"], keep="last")
    user_ids = np.asarray(sorted(log.user_id.unique()), dtype=object)
    item_ids = np.asarray(sorted(log.item_id.unique()), dtype=object)
    u = pd.Categorical(log.user_id, categories=user_ids).codes.astype(np.int64)
    i = pd.Categorical(log.item_id, categories=item_ids).codes.astype(np.int64)
    n_per_user = np.bincount(u, minlength=len(user_ids))
    last = ~pd.Series(u).duplicated(keep="last").to_numpy()  # sorted by time: the last row of each user
    valid = last & (n_per_user[u] >= 3)
    m = lambda mask: InteractionMatrix.from_pairs(u[mask], i[mask], len(user_ids), len(item_ids))  # noqa: E731
    empty = np.zeros(len(u), dtype=bool)
    return SplitData(m(~valid), m(valid), m(empty), len(user_ids), len(item_ids), user_ids, item_ids, name, Path(name), {})


def next_block(block: pd.DataFrame, data: SplitData) -> InteractionMatrix:
    """The next block's interactions of ``data``'s users and items, ``[num_users, num_items]``."""
    u = match_rows(block.user_id.to_numpy(dtype=object), data.user_ids).numpy()
    i = match_rows(block.item_id.to_numpy(dtype=object), data.item_ids).numpy()
    keep = (u >= 0) & (i >= 0)
    return InteractionMatrix.from_pairs(u[keep], i[keep], data.num_users, data.num_items)


def train(cfg: TrainRecipe, data: SplitData, root: Path, name: str, initial: torch.Tensor | None = None) -> dict[str, Any]:
    """Fit one run; its best checkpoint's layer-0 table, codes and timings."""
    run_dir = root / name
    t0 = time.perf_counter()
    fit = Trainer(cfg, data, run_dir, torch.device("cpu"), initial_embedding=initial).fit()
    wall = time.perf_counter() - t0
    best = load_checkpoint(run_dir / "best.pt")
    users, items = code_tables(best["user_emb"], best["item_emb"], cfg.bits,
                               *(None, None) if cfg.bits == 32 else (quantize(best["user_emb"], cfg.bits), quantize(best["item_emb"], cfg.bits)))
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"layer0": best["model"]["embedding"], "model": CodeModel(users, items, data.user_ids, data.item_ids), "item_emb": best["item_emb"],
            "seconds": wall, "epochs": fit.epochs_run, "best_epoch": fit.best_epoch, "valid_r20": fit.best_valid["recall@20"]}


def next_metrics(model: CodeModel, data: SplitData, truth: InteractionMatrix) -> dict[str, float]:
    r = Retriever(model.users, model.items, "score")
    return evaluate_ranking(lambda b: r.scores(b.numpy()), truth, (data.train, data.valid), (20,))


def foldin_quality(champion: CodeModel, champ_items: torch.Tensor, data: SplitData, cold: CodeModel, truth: InteractionMatrix,
                   refine_rounds: list[int]) -> dict[str, Any]:
    """Recall@20 of tonight's new users folded into ``champion`` vs the same users in ``cold``, per method:
    ``codes`` (one-hop over the champion's 1-bit item codes), ``codes+refine<r>`` (then ``r`` rounds
    of user-code refinement, each ``r`` of ``refine_rounds``: :func:`hqgnn.fold_in.fold_in_codes`,
    what ``hqgnn foldin`` runs), ``float`` (one-hop over its float item outputs ``champ_items``
    ``[I, d]``); per-user recalls kept so nights can be pooled."""
    new = torch.nonzero(match_rows(data.user_ids, champion.user_ids) < 0).flatten()
    item_rows = match_rows(data.item_ids, champion.item_ids)  # tonight's item -> champion row
    known_i = torch.nonzero(item_rows >= 0).flatten()
    if new.numel() == 0 or known_i.numel() == 0:
        return {"users": 0}
    sub = restrict(data.train, new.numpy(), known_i.numpy())  # [new, known items] in tonight's item order
    cols = item_rows[known_i]
    sub = InteractionMatrix.from_pairs(sub.rows(), cols[sub.indices], new.numel(), len(champion.items))
    degree = torch.zeros(len(champion.items))
    degree[cols] = torch.bincount(data.train.indices, minlength=data.num_items).float()[known_i]
    has = torch.nonzero(sub.row_lengths() > 0).flatten()
    sub = restrict(sub, has.numpy(), np.arange(len(champion.items)))
    users = new[has].numpy()
    held = InteractionMatrix.from_pairs(
        torch.cat([truth.rows(), data.valid.rows()]), torch.cat([truth.indices, data.valid.indices]), data.num_users, data.num_items)
    target = restrict(held, users, known_i.numpy())
    seen = restrict(data.train, users, known_i.numpy())
    items = champion.items.subset(cols.numpy())  # champion items in tonight's known-item order
    codes = torch.from_numpy(champion.items.dequantize())
    tables = {"codes": (codes, 0), **{f"codes+refine{r}": (codes, r) for r in refine_rounds}, "float": (champ_items, 0)}
    out: dict[str, Any] = {"users": len(users), "methods": list(tables)}
    for name, (table, rounds) in tables.items():
        t0 = time.perf_counter()
        folded = fold_in_codes(sub, table, champion.users.bits, degree, rounds)
        out[f"ms_per_user_{name}"] = 1000 * (time.perf_counter() - t0) / max(len(users), 1)
        out[f"per_user_{name}"] = _per_user_recall(Retriever(folded, items), target, seen)
    out["per_user_retrained"] = _per_user_recall(Retriever(cold.users.subset(users), cold.items.subset(known_i.numpy())), target, seen)
    scored = target.row_lengths() > 0
    out["evaluated"], out["scored"] = int(scored.sum()), scored.tolist()
    for name in (*tables, "retrained"):
        out[f"r20_{name}"] = float(np.mean(np.asarray(out[f"per_user_{name}"])[scored.numpy()])) if out["evaluated"] else float("nan")
    return out


def _per_user_recall(r: Retriever, truth: InteractionMatrix, seen: InteractionMatrix, k: int = 20) -> list[float]:
    """Recall@k of every row of ``truth`` (0 where it has no item), ``seen`` masked."""
    scores = r.scores(np.arange(truth.num_users)).float()
    scores[seen.rows(), seen.indices] = -torch.inf
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hit = torch.zeros_like(scores, dtype=torch.bool)
    hit[truth.rows(), truth.indices] = True
    return (hit.gather(1, top).sum(1) / truth.row_lengths().clamp_min(1)).tolist()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log", type=Path, default=DEFAULT_LOG)
    p.add_argument("--nights", type=int, default=6)
    p.add_argument("--block-days", type=int, default=14)
    p.add_argument("--bits", type=int, default=1)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--cold-epochs", type=int, default=40)
    p.add_argument("--float-warmup-epochs", type=int, default=20)
    p.add_argument("--warm-epochs", type=int, default=8)
    p.add_argument("--warm-lr", type=float, default=None, help="lr of warm runs (default --lr)")
    p.add_argument("--warm-eval-every", type=int, default=2, help="validation every this many warm epochs (patience 2 validations)")
    p.add_argument("--user-mod", type=int, default=1, help="keep users whose integer id is divisible by this (a 1/N user sample; 1 = all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--foldin-refine", type=int, nargs="*", default=[1, 2, 4, 8], help="code-refinement rounds of the codes+refine<r> fold-ins")
    p.add_argument("--warm-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the warm recipe's TrainRecipe fields, e.g. float_warmup_epochs=2 lr=2e-2")
    p.add_argument("--warm-variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
                   help="an extra warm recipe (overrides of the warm recipe) from the same champion, not published; repeatable")
    p.add_argument("--warm-random", action=argparse.BooleanOptionalAction, default=True, help="also run the warm-random ablation")
    p.add_argument("--state", type=Path, default=None,
                   help="resumable state: continue the replay saved here (if it exists) and save it after every night")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (state saved) before starting a night after this long")
    p.add_argument("--out", type=Path, default=Path("bench/out/nightly_replay.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    log = load_log(args.log)
    if args.user_mod > 1:
        log = log[log.user_id.astype(np.int64) % args.user_mod == 0].reset_index(drop=True)
    day = 86_400
    end = int(log.time.max()) + day
    starts = [end - (args.nights + 1 - k) * args.block_days * day for k in range(args.nights + 2)]  # block k: [starts[k], starts[k+1])
    common = dict(bits=args.bits, dim=args.dim, batch_size=args.batch_size, lr_schedule="cosine", seed=2024,
                  hutchinson_samples=4, hutchinson_batches=2, delta_every=5)
    cold_cfg = TrainRecipe(**common, lr=args.lr, epochs=args.cold_epochs, eval_every=5, patience=3,
                           float_warmup_epochs=args.float_warmup_epochs if args.bits != 32 else 0)
    warm_start_kw, warm_cfg = _warm_recipe(TrainRecipe(**common, lr=args.warm_lr or args.lr, epochs=args.warm_epochs,
                                                       eval_every=args.warm_eval_every, patience=2), args.warm_set)
    variants = {"neighbours": (warm_start_kw, warm_cfg)}
    if args.warm_random:
        variants["random"] = (warm_start_kw | {"new_rows": "random"}, warm_cfg)
    for spec in args.warm_variant:
        name, _, sets = spec.partition(":")
        variants[name] = _warm_recipe(warm_cfg, sets.split(","))
    root = Path(tempfile.mkdtemp(prefix="replay-"))
    began = time.perf_counter()
    state = torch.load(args.state, weights_only=False) if args.state and args.state.exists() else None
    rows: list[dict[str, Any]] = state["rows"] if state else []

    def save() -> None:
        if args.state:
            args.state.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"rows": rows, "champion": champion, "champ_items": champ_items, "champ_layer0": champ_layer0,
                        "champ_data": champ_data, "args": vars(args)}, args.state)

    try:
        if state:
            champion, champ_items, champ_layer0, champ_data = state["champion"], state["champ_items"], state["champ_layer0"], state["champ_data"]
            print(f"resuming after night {len(rows)} from {args.state}", flush=True)
        else:
            base = window_split(log[log.time < starts[0]], "night0")
            night0 = train(cold_cfg, base, root, "night0")
            champion, champ_items, champ_layer0, champ_data = night0["model"], night0["item_emb"], night0["layer0"], _ids(base)
            print(f"night 0: {base.num_users} users x {base.num_items} items, {base.train.nnz} train; cold {night0['seconds']:.0f} s, "
                  f"valid R@20 {night0['valid_r20']:.4f}", flush=True)
            save()
        for n in range(len(rows) + 1, args.nights + 1):
            if args.max_minutes is not None and time.perf_counter() - began > 60 * args.max_minutes:
                print(f"stopping before night {n}: over {args.max_minutes} min (state in {args.state})", flush=True)
                break
            data = window_split(log[log.time < starts[n]], f"night{n}")
            truth = next_block(log[(log.time >= starts[n]) & (log.time < starts[n + 1])], data)
            cold = train(cold_cfg, data, root, f"cold{n}")
            row: dict[str, Any] = {"night": n, "users": data.num_users, "items": data.num_items, "train": data.train.nnz,
                                   "next_interactions": truth.nnz, "load": os.getloadavg(),
                                   "cold": _summary(cold, next_metrics(cold["model"], data, truth))}
            row["foldin"] = foldin_quality(champion, champ_items, data, cold["model"], truth, args.foldin_refine)
            for variant, (start, cfg) in variants.items():
                t0 = time.perf_counter()
                prev_u, prev_i = champ_layer0[: champ_data.num_users], champ_layer0[champ_data.num_users :]
                ws = warm_start(prev_u, prev_i, champ_data.user_ids, champ_data.item_ids, data.user_ids, data.item_ids,
                                data.train, seed=2024, **start)
                init_s = time.perf_counter() - t0
                warm = train(cfg, data, root, f"warm-{variant}{n}", ws.embedding)
                warm["seconds"] += init_s
                row[f"warm_{variant}"] = {**_summary(warm, next_metrics(warm["model"], data, truth)), **ws.counts()}
                if variant == "neighbours":
                    challenger = warm
            c = compare(champion, challenger["model"], data.valid, data.train, (20,))
            passed = c.challenger["recall@20"] >= c.champion["recall@20"] - 0.005 if not math.isnan(c.champion["recall@20"]) else False
            row["gate"] = {"champion_r20": c.champion["recall@20"], "challenger_r20": c.challenger["recall@20"],
                           "users_compared": c.users_compared, "valid_users": c.valid_users, "items_new": c.items_new, "published": passed}
            if passed:
                champion, champ_items, champ_layer0, champ_data = challenger["model"], challenger["item_emb"], challenger["layer0"], _ids(data)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "foldin"} | {"foldin": {k: v for k, v in row["foldin"].items()
                                                                                        if not k.startswith(("per_user", "scored"))}}), flush=True)
            save()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "nights": rows}, indent=1))
    print(table(rows))


def _warm_recipe(base: TrainRecipe, pairs: list[str]) -> tuple[dict[str, Any], TrainRecipe]:
    """``base`` with ``["lr=2e-2", "carry_users=false", ...]`` applied: the :func:`warm_start` keywords
    (``carry_users``) and the recipe (any other TrainRecipe field; it validates and converts the values)."""
    bad = [x for x in pairs if "=" not in x]
    if bad:
        raise SystemExit(f"warm recipe overrides must be KEY=VALUE, got {bad}")
    sets = dict(x.split("=", 1) for x in pairs)
    start = {"new_rows": "neighbours", "carry_users": sets.pop("carry_users", "true").lower() == "true"}
    return start, TrainRecipe(**base.model_dump(exclude={"estimator"}) | sets)


def _ids(data: SplitData) -> SimpleNamespace:
    """What the next night's warm start needs of the champion's snapshot (picklable, small)."""
    return SimpleNamespace(num_users=data.num_users, user_ids=data.user_ids, item_ids=data.item_ids)


def _summary(run: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    return {"r20": metrics["recall@20"], "n20": metrics["ndcg@20"], "eval_users": int(metrics["users"]),
            "seconds": run["seconds"], "epochs": run["epochs"], "best_epoch": run["best_epoch"]}


def table(rows: list[dict[str, Any]]) -> str:
    """The BENCHMARKS.md tables: warm vs cold per night, then fold-in per night and pooled."""
    out = ["| night | users / items / train | next-block users | cold R@20 / N@20 | cold s (epochs) | warm R@20 / N@20 | warm % of cold R@20 "
           "| warm s (% of cold) | warm-random R@20 | users carried / new | items carried / new | gate: champion vs warm (users), published |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c, w, g = r["cold"], r["warm_neighbours"], r["gate"]
        wr = f"{r['warm_random']['r20']:.4f}" if "warm_random" in r else "–"
        out.append(
            f"| {r['night']} | {r['users']:,} / {r['items']:,} / {r['train']:,} | {c['eval_users']} | {c['r20']:.4f} / {c['n20']:.4f} "
            f"| {c['seconds']:.0f} ({c['epochs']}) | {w['r20']:.4f} / {w['n20']:.4f} | {100 * w['r20'] / max(c['r20'], 1e-12):.0f} % "
            f"| {w['seconds']:.0f} ({100 * w['seconds'] / c['seconds']:.0f} %) | {wr} | {w['users_carried']:,} / {w['users_new']} "
            f"| {w['items_carried']:,} / {w['items_new']} "
            f"| {g['champion_r20']:.4f} vs {g['challenger_r20']:.4f} ({g['users_compared']}), {'yes' if g['published'] else 'no'} |")
    cold_r = sum(r["cold"]["r20"] for r in rows)
    warm_r = sum(r["warm_neighbours"]["r20"] for r in rows)
    cold_s = sum(r["cold"]["seconds"] for r in rows)
    warm_s = sum(r["warm_neighbours"]["seconds"] for r in rows)
    out.append(f"\nOver the nights: warm R@20 {100 * warm_r / max(cold_r, 1e-12):.1f} % of cold at {100 * warm_s / cold_s:.1f} % of cold's training time.")
    for v in [k.removeprefix("warm_") for k in rows[0] if k.startswith("warm_") and k != "warm_neighbours"] if rows else []:
        per_night = ", ".join(f"{100 * r[f'warm_{v}']['r20'] / max(r['cold']['r20'], 1e-12):.0f}" for r in rows)
        out.append(f"warm variant {v}: R@20 {100 * sum(r[f'warm_{v}']['r20'] for r in rows) / max(cold_r, 1e-12):.1f} % of cold "
                   f"(per night {per_night} %) at {100 * sum(r[f'warm_{v}']['seconds'] for r in rows) / cold_s:.1f} % of cold's time; "
                   f"best epochs {[r[f'warm_{v}']['best_epoch'] for r in rows]}.")
    out.append("")
    methods = next((r["foldin"]["methods"] for r in rows if r["foldin"].get("methods")), [])
    slow = ([m for m in methods if "refine" in m] or methods or ["codes"])[-1]  # the most refinement rounds
    out += ["| night | new users scored | retrained R@20 | " + " | ".join(f"fold-in {m}" for m in methods)
            + f" | ms/user ({slow}) |", "|---" * (4 + len(methods)) + "|"]
    pooled: dict[str, list[float]] = {m: [] for m in (*methods, "retrained")}
    for r in rows:
        f = r["foldin"]
        if not f.get("evaluated"):
            out.append(f"| {r['night']} | 0 |" + " – |" * (2 + len(methods)))
            continue
        scored = [k for k, t in enumerate(f["scored"]) if t]
        for m in pooled:
            pooled[m] += [f[f"per_user_{m}"][k] for k in scored]
        ref = f["r20_retrained"]
        cells = " | ".join(f"{f[f'r20_{m}']:.4f} ({100 * f[f'r20_{m}'] / ref:.0f} %)" if ref > 0 else f"{f[f'r20_{m}']:.4f}" for m in methods)
        out.append(f"| {r['night']} | {f['evaluated']} | {ref:.4f} | {cells} | {f[f'ms_per_user_{slow}']:.2f} |")
    ref = sum(pooled["retrained"])
    if ref > 0:
        out.append("\nFold-in pooled over the nights' new users: " + ", ".join(
            f"{m} {100 * sum(pooled[m]) / ref:.1f} %" for m in methods) + f" of their retrained R@20 ({len(pooled['retrained'])} users).")
    return "\n".join(out)


if __name__ == "__main__":
    main()
