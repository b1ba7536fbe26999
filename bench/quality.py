"""Quality benchmark: train on a LightGCN-format folder (train.txt / test.txt) and report test metrics.

The validation split is carved from train.txt (seeded, ``--valid-ratio`` of each user's train
items, at least one train item left per user); test.txt is untouched and only evaluated once,
on the best-validation checkpoint, with train and valid items masked (= all of train.txt, the
LightGCN protocol). NDCG's ideal DCG uses min(|test items|, K) hits (LightGCN convention).

    .venv/bin/python bench/quality.py --data ../shared/data/gowalla-lightgcn --bits 32 \
        --epochs 100 --batch-size 8192 --lr 5e-3 --lr-schedule cosine

Last line: ``run=<name> bits=<b> estimator=<e> best_epoch=<n> valid_recall@20=… test_recall@20=…
test_ndcg@20=… test_recall@50=… test_ndcg@50=… train_minutes=…``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.config import TrainConfig  # noqa: E402
from flows.split_files import load_split, write_split  # noqa: E402
from flows.stages.train import train  # noqa: E402
from flows.trained_runs import TrainedRun, load_run  # noqa: E402
from flows.workdir import WorkDir  # noqa: E402
from hqgnn.bits import FLOAT_BITS  # noqa: E402
from hqgnn.dataset import SplitData  # noqa: E402
from hqgnn.metrics import evaluate_ranking  # noqa: E402
from hqgnn.quant import quantize  # noqa: E402
from hqgnn.rotation import itq_rotation  # noqa: E402

NEVER_STOP = -1  # --patience none: never stop early (TrainConfig.patience None); argparse's None means "not given"


def _patience(value: str) -> int:
    """``--patience``: a count of evaluations, or ``none`` (never stop early; the best epoch is still kept)."""
    return NEVER_STOP if value.lower() in ("none", "null") else int(value)


def read_lightgcn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``user item item …`` lines → parallel int64 arrays of users and items."""
    users, items = [], []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        ids = np.asarray(parts, dtype=np.int64)
        users.append(np.full(ids.size - 1, ids[0]))
        items.append(ids[1:])
    return np.concatenate(users), np.concatenate(items)


def prepare_split(data: Path, out: Path, valid_ratio: float, seed: int) -> Path:
    """Write ``out`` (the split folder) from a LightGCN-format folder once; reused when it exists."""
    if (out / "manifest.json").is_file():
        return out
    return write_carved_split(out, read_lightgcn(data / "train.txt"), read_lightgcn(data / "test.txt"), valid_ratio, seed)


def write_carved_split(out: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                       valid_ratio: float, seed: int) -> Path:
    """Write the split folder ``out``: ``valid_ratio`` of each user's ``train`` pairs (0-based
    ``(users, items)`` ``[nnz]``, rounded at random, seeded, at least one left) become valid;
    ``test`` is kept as it is."""
    (tu, ti), (su, si) = train, test
    n_u = int(max(tu.max(), su.max()) + 1)
    n_i = int(max(ti.max(), si.max()) + 1)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(tu.size), tu))  # shuffled within each user
    tu, ti = tu[order], ti[order]
    counts = np.bincount(tu, minlength=n_u)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(tu.size) - starts[tu]
    n_valid = np.minimum(np.floor(counts * valid_ratio + rng.random(n_u)).astype(np.int64), counts - 1)
    is_valid = rank < n_valid[tu]
    write_split(out, {"train": (tu[~is_valid], ti[~is_valid]), "valid": (tu[is_valid], ti[is_valid]), "test": (su, si)},
                n_u, n_i, snapshot=out.name)
    return out


def evaluate_on_test(run_path: Path) -> tuple[TrainedRun, dict[str, float]]:
    """The run at ``run_path`` (its best checkpoint) and its test metrics @20/@50: full ranking,
    train and valid items masked; codes scored as the model scores them (dequantized), float32 as is."""
    run = load_run(run_path)
    data = load_split(run.split_dir)
    users, items = run.user_emb, run.item_emb
    if run.bits != FLOAT_BITS:
        user_codes = run.quantize_users()  # None for a float_users run: its users are scored as float vectors
        users = users if user_codes is None else user_codes.dequantize()
        items = run.quantize_items().dequantize()
    return run, evaluate_ranking(lambda b: users[b] @ items.T, data.test, [data.train, data.valid], (20, 50), 1024)


def post_training_quantization(users: torch.Tensor, items: torch.Tensor, bits: int, data: SplitData) -> dict[str, dict[str, float]]:
    """Test metrics of float embeddings ``[n, d]`` quantized after training, without and with the
    ITQ rotation the trainer applies at the end of a float warm-up (the seed is TrainConfig's),
    both sides quantized and (``*_float_users``) the items only, scored against the float users."""
    rot = itq_rotation(torch.cat([users, items]), seed=TrainConfig().seed)
    out = {}
    for name, (u, i) in {"as_trained": (users, items), "itq": (users @ rot, items @ rot)}.items():
        qu, qi = quantize(u, bits).dequantize(), quantize(i, bits).dequantize()
        for key, q in ((name, qu), (f"{name}_float_users", u)):
            out[key] = evaluate_ranking(lambda b, q=q, qi=qi: q[b] @ qi.T, data.test, [data.train, data.valid], (20, 50), 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/quality-work"))
    ap.add_argument("--valid-ratio", type=float, default=0.05)
    ap.add_argument("--split-seed", type=int, default=2024)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--run", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--eval-only", action="store_true", help="only evaluate the current best checkpoint of --run on test (a run still training is fine)")
    ap.add_argument("--ptq-bits", type=int, default=None, help="with --eval-only on a float run: also score its embeddings "
                    "quantized after training to this width, as they are and after an ITQ rotation (no quantization-aware training)")
    for name, typ in [("bits", int), ("estimator", str), ("epochs", int), ("batch-size", int), ("lr", float),
                      ("lr-schedule", str), ("lr-min", float), ("l2", float), ("eval-every", int), ("patience", _patience),
                      ("delta-scale", float), ("delta-every", int), ("seed", int), ("device", str), ("layers", int), ("dim", int),
                      ("float-warmup-epochs", int), ("itq-rotation", int), ("delta-granularity", str),
                      ("negative-candidates", int), ("hard-negatives-from-epoch", int),
                      ("refine-user-codes", int), ("refine-temperature", float), ("refine-top-items", int),
                      ("loss", str), ("bpr-negatives", int), ("softmax-negatives", int), ("softmax-temperature", float),
                      ("init-from", str), ("warm-epochs", int), ("warm-lr", float), ("warm-carry-users", int), ("float-users", int),
                      ("distill-top", int), ("distill-weight", float), ("distill-decay", float),
                      ("distill-order-weight", float), ("distill-from", str)]:
        ap.add_argument(f"--{name}", type=typ, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    wd = WorkDir(args.workdir)
    snapshot = f"{args.data.name}-v{args.valid_ratio}-s{args.split_seed}"
    prepare_split(args.data, wd.splits / snapshot, args.valid_ratio, args.split_seed)
    fields = {k: v for k, v in vars(args).items() if v is not None and k in TrainConfig.model_fields}
    if fields.get("patience") == NEVER_STOP:
        fields["patience"] = None
    cfg = TrainConfig(**{**fields, "snapshot": snapshot, "resume": args.resume})
    t0 = time.perf_counter()
    if args.eval_only:
        if not args.run:
            ap.error("--eval-only needs --run")
        history = json.loads((wd.models / args.run / "history.json").read_text())
        res = argparse.Namespace(path=wd.models / args.run, seconds=sum(r["epoch_seconds"] for r in history),
                                 epochs_run=len(history), status="evaluated while training")
    else:
        res = train(wd, cfg)
    minutes = (time.perf_counter() - t0) / 60
    run, test = evaluate_on_test(res.path)
    out = {"run": run.name, "bits": run.bits, "estimator": run.estimator, "best_epoch": run.best_epoch,
           "valid": run.best_valid, "test": test, "train_minutes_this_invocation": minutes,
           "train_seconds_total": res.seconds, "epochs_run": res.epochs_run, "status": res.status,
           "config": run.config.model_dump(mode="json"), "cmd": " ".join(sys.argv), "threads": torch.get_num_threads(),
           "code_refinement": run.code_refinement}
    if args.ptq_bits:
        out["ptq"] = post_training_quantization(run.user_emb, run.item_emb, args.ptq_bits, load_split(run.split_dir))
        for name, m in out["ptq"].items():
            print(f"ptq {args.ptq_bits} bit {name}: test_recall@20={m['recall@20']:.4f} test_ndcg@20={m['ndcg@20']:.4f} "
                  f"test_recall@50={m['recall@50']:.4f} test_ndcg@50={m['ndcg@50']:.4f}", flush=True)
    (args.workdir / "results").mkdir(parents=True, exist_ok=True)
    suffix = f"-epoch{run.best_epoch}" if args.eval_only else ""
    (args.workdir / "results" / f"{run.name}{suffix}.json").write_text(json.dumps(out, indent=2, default=str))
    print(f"run={run.name} bits={run.bits} estimator={run.estimator} best_epoch={run.best_epoch} "
          f"valid_recall@20={run.best_valid['recall@20']:.4f} test_recall@20={test['recall@20']:.4f} "
          f"test_ndcg@20={test['ndcg@20']:.4f} test_recall@50={test['recall@50']:.4f} test_ndcg@50={test['ndcg@50']:.4f} "
          f"train_minutes={res.seconds / 60:.1f} epochs_run={res.epochs_run}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("DO_NOT_TRACK", "1")
    main()
