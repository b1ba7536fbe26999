"""Quality per byte (issue 19): test Recall@20 / NDCG@20 vs bytes per item, bits x dim x seed, per dataset.

Resumable and queue-friendly. One invocation trains and tests ONE point (dataset, bits, dim,
seed), appends one line to ``bench/points/frontier.jsonl`` (committed: the measurements behind
BENCHMARKS.md, which a lost work folder must not take with it) and skips points already there;
``--queue`` runs every missing point of a grid, each as its own ``flock /tmp/bench.lock``
command (so other jobs interleave); ``--report`` writes the markdown table and the plot from the
JSONL alone::

    .venv/bin/python bench/frontier.py --dataset lastfm --bits 1 --dim 64 --seed 2024      # one point
    .venv/bin/python bench/frontier.py --queue --dataset lastfm --bits 1 2 4 8 32 --dim 32 64 128 256 --seed 2024 2025
    .venv/bin/python bench/frontier.py --queue --schedule from-float --dataset lastfm --bits 1 2 4 8 --dim 64 128 --seed 2024 2025
    .venv/bin/python bench/frontier.py --report --plot bench/plots/frontier_recall_ndcg_vs_bytes.png

Splits and training are ``bench/quality.py``'s (valid carved per user from train, seeded; test
read once per run, on the best-validation checkpoint, train and valid masked). Each dataset has
one or more candidate schedules (:data:`DATASETS`); every point trains with each, stops early on
validation (``eval_every`` + ``patience``), and the report keeps, per point and seed, the
schedule with the best validation Recall@20 (test never chooses). Quantized points use the
shipped 1-bit recipe's shape: a float warm-up of half the epoch cap, the ITQ rotation at the
switch, then quantization-aware training (GSTE); 1-bit points also refine user codes (8 rounds,
kept on validation). ``--schedule from-float`` quantizes the float32 point of the same dataset, dim
and seed instead (the one validation picked; run it first): a short quantization-aware fine-tune
from its checkpoint, the 36 B / 20 B recipes' warm runs (:data:`FROM_FLOAT_SETTINGS`); such a point
competes with the from-scratch schedules on validation like any other, and its "train min" adds
its float model's. A probe of it (``--schedule from-float-TAG --override JSON``, e.g. float users
and distillation) fine-tunes the same parent with those settings on top, and stays out of the
table; its override ``"distill_from_dim": D`` distills the ranking of the float32 point of width D
(same dataset and seed, the one validation picked; run it first) instead of the parent's. Gowalla's float32 points also try ``k8``, the 256 B recipe (BPR over 8 negatives, 220
epochs). ``--schedule long`` (float32 only) is LightGCN's own schedule (Adam lr 1e-3,
constant, up to 1,000 epochs, early stopping): a "best float32" reference of a dataset beside
the equal-epoch one (Gowalla's, 0.1831 after 220 epochs of BPR over 8 negatives, is taken from BENCHMARKS.md).

Bytes per item are the library's (``hqgnn.codes.code_bytes``): the packed code plus its float32
scale for b < 32, ``4 * dim`` for float32 (what ``hqgnn evaluate`` and ``hqgnn sweep`` report).

Datasets (read in place from ``--data-root``, never copied): ``gowalla`` and ``lastfm`` keep their
published train/test split; ``ml100k`` (MovieLens 100K ``u.data``, every rating a positive) has
none, so 20 % of each user's ratings (rounded at random, seeded 2024) are held out as test.
Ids are remapped to dense 0-based indices of the train pairs; test pairs of users or items
without a train pair are dropped (LastFM: a few dozen; Gowalla: none).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lightgcn_data import carve_valid  # noqa: E402
from quality import evaluate_on_test, read_lightgcn, write_carved_split  # noqa: E402

from hqgnn.bits import ALL_BITS, FLOAT_BITS, is_float  # noqa: E402
from hqgnn.codes import code_bytes  # noqa: E402

Pairs = tuple[np.ndarray, np.ndarray]
OUT = Path("bench/out/frontier")
POINTS = Path("bench/points/frontier.jsonl")
LOCK = "/tmp/bench.lock"
HOLDOUT_SEED = 2024


def read_tsv_pairs(path: Path, one_based: bool = True) -> Pairs:
    """Whitespace-separated ``user item [more columns]`` lines → int64 ``(users, items)`` ``[nnz]``."""
    table = np.loadtxt(path, dtype=np.int64, usecols=(0, 1), ndmin=2)
    return table[:, 0] - one_based, table[:, 1] - one_based


def holdout(pairs: Pairs, ratio: float, seed: int) -> tuple[Pairs, Pairs]:
    """Seeded per-user hold-out (``lightgcn_data.carve_valid``): ``ratio`` of each user's pairs
    (rounded at random, at least one left) → test; the rest → train."""
    users, items = pairs
    keep, held = carve_valid(users, ratio, seed)
    return (users[keep], items[keep]), (users[held], items[held])


def dense(train: Pairs, test: Pairs) -> tuple[Pairs, Pairs]:
    """Remap ids to dense 0-based indices of the train pairs; drop test pairs with unseen ids."""
    (tu, ti), (su, si) = train, test
    uid, iid = np.unique(tu), np.unique(ti)
    keep = np.isin(su, uid) & np.isin(si, iid)
    return ((np.searchsorted(uid, tu), np.searchsorted(iid, ti)),
            (np.searchsorted(uid, su[keep]), np.searchsorted(iid, si[keep])))


def _gowalla(root: Path) -> tuple[Pairs, Pairs]:
    d = root / "gowalla-lightgcn"
    return dense(read_lightgcn(d / "train.txt"), read_lightgcn(d / "test.txt"))


def _lastfm(root: Path) -> tuple[Pairs, Pairs]:
    d = root / "lastfm-lightgcn"
    return dense(read_tsv_pairs(d / "data1.txt"), read_tsv_pairs(d / "test1.txt"))


def _ml100k(root: Path) -> tuple[Pairs, Pairs]:
    return dense(*holdout(read_tsv_pairs(root / "movielens-100k" / "u.data"), 0.2, HOLDOUT_SEED))


@dataclass(frozen=True)
class Dataset:
    """A benchmark dataset: its loader (train, test pairs), the share of train carved as valid,
    and its candidate schedules (name -> train settings; validation picks one per point, early
    stopping its epoch)."""

    load: Callable[[Path], tuple[Pairs, Pairs]]
    valid_ratio: float
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    float_schedules: dict[str, dict[str, Any]] = field(default_factory=dict)  # more candidates for float32 points only

    def candidates(self, bits: int) -> dict[str, dict[str, Any]]:
        """The schedules a point of ``bits`` trains with (validation picks one per seed)."""
        return {**self.schedules, **self.float_schedules} if is_float(bits) else self.schedules


_FAST = {"lr": 2e-2, "lr_schedule": "cosine", "patience": 4}
_SMALL = {  # an epoch of the small datasets takes ~0.1-0.5 s: two schedules per point, validation picks
    "fast": {**_FAST, "epochs": 100, "eval_every": 5, "delta_every": 5},
    "slow": {"lr": 5e-3, "lr_schedule": "constant", "epochs": 150, "eval_every": 5, "patience": 3, "delta_every": 5},  # issue 6's LastFM schedule
}
DATASETS: dict[str, Dataset] = {
    # the fast Gowalla schedule of BENCHMARKS.md "Quality on Gowalla" (60 epochs, batch 32,768)
    "gowalla": Dataset(_gowalla, 0.05, {"fast": {**_FAST, "epochs": 60, "batch_size": 32768, "eval_every": 10, "delta_every": 10}},
                       # recipes/256B-float32-d64.yaml: BPR over 8 negatives, 220 epochs (the best float32 d=64, ~25 min)
                       {"k8": {**_FAST, "epochs": 220, "batch_size": 32768, "eval_every": 20, "bpr_negatives": 8}}),
    "lastfm": Dataset(_lastfm, 0.1, {k: {**v, "batch_size": 2048} for k, v in _SMALL.items()}),
    "ml100k": Dataset(_ml100k, 0.1, {k: {**v, "batch_size": 4096} for k, v in _SMALL.items()}),
}
KNOWN_BEST_FLOAT = {  # best float32 d=64 test Recall@20 measured elsewhere (same test split), for the second ratio
    "gowalla": (0.1831, "BPR over 8 negatives, 220 epochs, 1 % valid; BENCHMARKS.md 'Gowalla's frontier ... (session 9)'"),
}
KNOWN_EQUAL_FLOAT = {  # float32 d=64 on a dataset's first schedule, same split, measured elsewhere: used when not run here
    "gowalla": (0.1634, "60 epochs, seed 2024; BENCHMARKS.md 'Quality per byte: first probes'"),
}


FROM_FLOAT = "from-float"
FROM_FLOAT_SETTINGS: dict[int, dict[str, Any]] = {  # by bits: quantization-aware fine-tuning of the float32 point (same dim, seed)
    # recipes/36B-4bit-d64.yaml's warm run: 10 epochs at a tenth of the fast rate, quantized from the first epoch
    4: {"warm_epochs": 10, "warm_lr": 2e-3, "eval_every": 5, "float_warmup_epochs": 0, "itq_rotation": False},
    # recipes/20B-2bit-d64.yaml's: one float epoch, the ITQ rotation, 19 quantized epochs
    2: {"warm_epochs": 20, "warm_lr": 5e-3, "eval_every": 4, "float_warmup_epochs": 1, "itq_rotation": True},
    # BENCHMARKS.md session 9 ("fine-tuned, 30 epochs, lr 1e-2"), with the 12 B recipe's user-code refinement
    1: {"warm_epochs": 30, "warm_lr": 1e-2, "eval_every": 5, "float_warmup_epochs": 1, "itq_rotation": True, "refine_user_codes": 8},
}
FROM_FLOAT_SETTINGS[8] = FROM_FLOAT_SETTINGS[4]

LONG = {"lr": 1e-3, "lr_schedule": "constant", "epochs": 1000, "eval_every": 10, "patience": 5}  # LightGCN's schedule


def bytes_per_item(bits: int, dim: int) -> int:
    """Packed code + float32 scale (b < 32) or the float32 vector: what one item costs to ship."""
    return code_bytes(bits, dim) + (0 if is_float(bits) else 4)


def train_settings(dataset: str, bits: int, dim: int, seed: int, schedule: str,
                   override: dict[str, Any] | None = None) -> dict[str, Any]:
    """The train config of a point (:class:`flows.config.TrainConfig` fields, no snapshot/run);
    ``override``: schedule settings of a probe (its records carry their own ``schedule`` tag)."""
    schedules = DATASETS[dataset].candidates(bits)
    if is_from_float(schedule):
        return {**from_float_settings(dataset, bits, dim, seed), **(override or {})}
    if schedule not in schedules and schedule != "long" and override is None:
        raise ValueError(f"{dataset}: schedule {schedule!r} is none of {sorted(schedules)}, long or {FROM_FLOAT} (a probe needs an override)")
    base = {**schedules.get(schedule, next(iter(schedules.values()))), **(override or {})}
    if schedule == "long":
        if not is_float(bits):
            raise ValueError("--schedule long is the float32 reference only (--bits 32)")
        base |= LONG
    out: dict[str, Any] = {**base, "bits": bits, "dim": dim, "seed": seed}
    if not is_float(bits):
        out |= {"estimator": "gste", "float_warmup_epochs": base["epochs"] // 2, "itq_rotation": True}
        if bits == 1:
            out["refine_user_codes"] = 8
    return out


def is_from_float(schedule: str) -> bool:
    """``from-float`` or a probe of it (a tag ``from-float-...`` with ``--override``): a fine-tune of
    the float32 point of the same dataset, dim and seed."""
    return schedule == FROM_FLOAT or schedule.startswith(FROM_FLOAT + "-")


def from_float_settings(dataset: str, bits: int, dim: int, seed: int) -> dict[str, Any]:
    """A ``from-float`` point's train config without ``init_from`` (the parent run, set by
    :func:`run_point`): :data:`FROM_FLOAT_SETTINGS` for ``bits`` (GSTE, δ every 5 epochs, cosine
    rate over the warm epochs, patience 4), at the dataset's batch size."""
    if bits not in FROM_FLOAT_SETTINGS:
        raise ValueError(f"--schedule {FROM_FLOAT} quantizes a float32 point: --bits must be one of {sorted(FROM_FLOAT_SETTINGS)}, got {bits}")
    first = next(iter(DATASETS[dataset].schedules.values()))
    s = FROM_FLOAT_SETTINGS[bits]
    return {"batch_size": first["batch_size"], "lr": s["warm_lr"], "lr_schedule": "cosine", "epochs": s["warm_epochs"],
            "patience": 4, "delta_every": 5, "estimator": "gste", **s, "bits": bits, "dim": dim, "seed": seed}


def float_parent(points: list[dict[str, Any]], dataset: str, dim: int, seed: int, models: Path | None = None) -> dict[str, Any]:
    """The float32 point a ``from-float`` point fine-tunes: same dataset, dim and seed, the
    schedule validation picked (:func:`choose_by_valid`); a clear error when it has not run or,
    given the ``models`` folder, when its weights are not there (the JSONL is committed, the
    checkpoints are not: a fresh clone has the records only)."""
    parent = choose_by_valid(points).get((dataset, FLOAT_BITS, dim, seed))
    if parent is None:
        raise SystemExit(f"{dataset} d{dim} s{seed}: --schedule {FROM_FLOAT} needs the float32 point first: "
                         f"bench/frontier.py --dataset {dataset} --bits 32 --dim {dim} --seed {seed}")
    if models is not None and not (weights := models / parent["run"] / "best.pt").is_file():
        raise SystemExit(f"{dataset} d{dim} s{seed}: the float32 point {parent['run']} is recorded but {weights} is missing "
                         f"(checkpoints are not committed): pass the --out folder that trained it")
    return parent


def with_teacher(settings: dict[str, Any], points: list[dict[str, Any]], dataset: str, seed: int, models: Path | None = None) -> dict[str, Any]:
    """A probe's settings with ``distill_from_dim: D`` (an override) replaced by ``distill_from``:
    the run of the float32 point of width D at this dataset and seed that validation picked
    (:func:`float_parent`); unchanged without it."""
    if "distill_from_dim" not in settings:
        return settings
    out = dict(settings)
    teacher_dim = int(out.pop("distill_from_dim"))
    out["distill_from"] = float_parent(points, dataset, teacher_dim, seed, models)["run"]
    return out


def point_key(rec: dict[str, Any]) -> tuple[str, int, int, int, str]:
    return rec["dataset"], int(rec["bits"]), int(rec["dim"]), int(rec["seed"]), rec["schedule"]


def read_points(path: Path) -> list[dict[str, Any]]:
    """The JSONL's records (a torn last line, from a killed writer, is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def run_point(dataset: str, bits: int, dim: int, seed: int, schedule: str, data_root: Path, out: Path, points: Path, threads: int,
              override: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train + test one point (resuming its run if a killed invocation left one) and append its record."""
    import torch

    from flows.config import TrainConfig
    from flows.stages.train import train
    from flows.workdir import WorkDir

    if threads:
        torch.set_num_threads(threads)
    ds = DATASETS[dataset]
    wd = WorkDir(out / "work")
    snapshot = f"{dataset}-v{ds.valid_ratio}-s2024"
    if not (wd.splits / snapshot / "manifest.json").is_file():
        train_pairs, test_pairs = ds.load(data_root)
        write_carved_split(wd.splits / snapshot, train_pairs, test_pairs, ds.valid_ratio, 2024)
    settings = train_settings(dataset, bits, dim, seed, schedule, override)
    parent = float_parent(read_points(points), dataset, dim, seed, wd.models) if is_from_float(schedule) else None
    name = f"{dataset}-b{bits}-d{dim}-s{seed}-{schedule}"
    if parent is not None:  # one run per parent: a better float32 point later gets a fresh fine-tune, not a resume
        settings["init_from"] = parent["run"]
        name += f"-of-{parent['schedule']}"
    settings = with_teacher(settings, read_points(points), dataset, seed, wd.models)
    resume = (wd.models / name / "config.json").is_file()
    cfg = TrainConfig(**settings, snapshot=snapshot, run=name, resume=resume)
    started, t0 = datetime.now(UTC), time.perf_counter()
    res = train(wd, cfg)
    run, test = evaluate_on_test(res.path)
    rec = {"dataset": dataset, "bits": bits, "dim": dim, "seed": seed, "schedule": schedule,
           "bytes_per_item": bytes_per_item(bits, dim), "run": name, "best_epoch": run.best_epoch,
           "epochs_run": res.epochs_run, "valid": run.best_valid, "test": test, "train_seconds": res.seconds,
           "wall_seconds": time.perf_counter() - t0, "started": started.isoformat(timespec="seconds"),
           "finished": datetime.now(UTC).isoformat(timespec="seconds"), "loadavg_1m_at_end": os.getloadavg()[0],
           "threads": torch.get_num_threads(), "code_refinement": run.code_refinement,
           "config": run.config.model_dump(mode="json")}
    if parent is not None:  # what the point cost in all: the float model's training, then this fine-tune
        rec |= {"parent_run": parent["run"], "parent_schedule": parent["schedule"], "parent_train_seconds": parent["train_seconds"]}
    points.parent.mkdir(parents=True, exist_ok=True)
    with points.open("a") as f:
        f.write(json.dumps(rec, default=str) + "\n")
    return rec


def missing(args: argparse.Namespace) -> list[tuple[str, int, int, int, str]]:
    """The grid's points (dataset x bits x dim x seed) not yet in the JSONL, in grid order."""
    points = current_points(read_points(args.points))
    done = {point_key(r) for r in points}
    picked: dict[tuple[str, int, int], set[str]] = {}  # schedules validation picked at seeds where every candidate ran
    for (ds, bits, dim, seed), p in choose_by_valid(points).items():
        if all((ds, bits, dim, seed, sched) in done for sched in DATASETS[ds].candidates(bits)):
            picked.setdefault((ds, bits, dim), set()).add(p["schedule"])

    def schedules(d: str, b: int, n: int) -> list[str]:
        if args.schedule == FROM_FLOAT:
            return [] if is_float(b) else [FROM_FLOAT]  # float32 points are the parents, not from-float points
        if args.schedule == "all" or (args.schedule == "picked" and (d, b, n) not in picked):
            return list(DATASETS[d].candidates(b))
        return sorted(picked[(d, b, n)]) if args.schedule == "picked" else [args.schedule]

    grid = [(d, b, n, s, sched) for d in args.dataset for b in args.bits for n in args.dim for s in args.seed
            for sched in schedules(d, b, n)]
    return [k for k in grid if k not in done]


def _cmd(args: argparse.Namespace, grid: tuple[list[Any], ...], *extra: str) -> list[str]:
    """This script's command line for ``grid`` = (datasets, bits, dims, seeds), the other options as given."""
    names = ("--dataset", "--bits", "--dim", "--seed")
    return [sys.executable, __file__, *(x for name, values in zip(names, grid, strict=True) for x in (name, *map(str, values))),
            *([] if "--schedule" in extra else ["--schedule", args.schedule]), "--data-root", str(args.data_root), "--out", str(args.out), "--points", str(args.points), "--threads", str(args.threads),
            *(["--override", json.dumps(args.override)] if args.override else []), *extra]


def run_missing(args: argparse.Namespace) -> None:
    """Run missing points one process each, starting none after ``--max-minutes`` (the caller holds the lock)."""
    t0 = time.perf_counter()
    for key in missing(args):
        if time.perf_counter() - t0 > 60 * args.max_minutes:
            break
        print(f"[{datetime.now(UTC):%H:%M:%S} load {os.getloadavg()[0]:.2f}] {key}", flush=True)
        subprocess.run(_cmd(args, tuple([v] for v in key[:4]), "--schedule", key[4]), check=False)


def queue(args: argparse.Namespace) -> None:
    """Run every missing point of the grid in ``flock`` batches of about ``--max-minutes`` each (other
    jobs of the shared queue interleave between batches); stops when a batch makes no progress."""
    while todo := missing(args):
        grid = (args.dataset, args.bits, args.dim, args.seed)
        cmd = ["flock", LOCK, *_cmd(args, grid, "--run-missing", "--max-minutes", str(args.max_minutes))]
        print(f"[{datetime.now(UTC):%H:%M:%S}] {len(todo)} points left: {shlex.join(cmd)}", flush=True)
        subprocess.run(cmd, check=False)
        if len(missing(args)) == len(todo):
            print("no point finished in this batch: stopping (see the errors above)", flush=True)
            return


def choose_by_valid(points: list[dict[str, Any]]) -> dict[tuple[str, int, int, int], dict[str, Any]]:
    """Per (dataset, bits, dim, seed): the point of the dataset's candidate schedules (``from-float``
    included, stale ones not: :func:`current_points`) with the best validation Recall@20 (probes and
    the ``long`` reference are left out)."""
    return _best_by_valid(current_points(points))


def current_points(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``points`` less the stale ``from-float`` records: those whose ``parent_run`` is no longer the
    float32 point validation picks at their (dataset, dim, seed), because a better float32 point ran
    after them. A stale point is missing again (:func:`missing`) and leaves the report."""
    floats = _best_by_valid([p for p in points if p["schedule"] != FROM_FLOAT])
    return [p for p in points if p["schedule"] != FROM_FLOAT
            or p.get("parent_run") == floats.get((p["dataset"], FLOAT_BITS, int(p["dim"]), int(p["seed"])), {}).get("run")]


def _best_by_valid(points: list[dict[str, Any]]) -> dict[tuple[str, int, int, int], dict[str, Any]]:
    chosen: dict[tuple[str, int, int, int], dict[str, Any]] = {}
    for p in filter(races, points):
        key = point_key(p)[:4]
        if key not in chosen or p["valid"]["recall@20"] > chosen[key]["valid"]["recall@20"]:
            chosen[key] = p
    return chosen


def races(point: dict[str, Any]) -> bool:
    """Whether a point races on validation for its cell: one of its dataset's candidate schedules
    or ``from-float`` (not a probe, nor the ``long`` reference)."""
    ds, bits, _, _, schedule = point_key(point)
    return ds in DATASETS and (schedule in DATASETS[ds].candidates(bits) or schedule == FROM_FLOAT)


def schedules_run(points: list[dict[str, Any]]) -> dict[tuple[str, int, int, int], set[str]]:
    """Per (dataset, bits, dim, seed): the schedules that ran there and race on validation
    (the dataset's candidates and ``from-float``; stale from-float points not counted)."""
    out: dict[tuple[str, int, int, int], set[str]] = {}
    for p in current_points(points):
        if races(p):
            out.setdefault(point_key(p)[:4], set()).add(p["schedule"])
    return out


def summarize(points: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per dataset: one row per (bits, dim); per seed the candidate schedule with the best
    validation Recall@20 (a seed that did not run a schedule another seed of the cell picked is
    left out while seeds that ran every pick exist: ``left_out``), then mean and half-range over
    seeds of test R@20 / N@20, and the two
    ratios: vs float32 d=64 (the same candidates and epoch caps: equal epochs), and vs the best
    float32 d=64: the highest of its per-schedule test means (``long`` included) and a known
    figure (a conservative denominator: this one is the best on test, not picked on validation)."""
    ref_runs: dict[tuple[str, str], list[float]] = {}  # float32 d=64 test R@20 per (dataset, schedule), long included
    for p in points:
        ds, bits, dim, _, schedule = point_key(p)
        if (bits, dim) == (FLOAT_BITS, 64) and ds in DATASETS and (schedule == "long" or schedule in DATASETS[ds].candidates(bits)):
            ref_runs.setdefault((ds, schedule), []).append(p["test"]["recall@20"])
    ran = schedules_run(points)
    by: dict[str, dict[tuple[int, int], list[dict[str, Any]]]] = {}
    for (ds, bits, dim, _), p in choose_by_valid(points).items():
        by.setdefault(ds, {}).setdefault((bits, dim), []).append(p)
    left_out: dict[tuple[str, int, int], int] = {}
    for ds, cells in by.items():
        for (bits, dim), ps in cells.items():
            picks = {p["schedule"] for p in ps}  # a seed that did not run another seed's pick is a lower bound ...
            complete = [p for p in ps if picks <= ran[point_key(p)[:4]]]
            if complete and len(complete) < len(ps):  # ... kept out of the mean while seeds that ran every pick exist
                cells[(bits, dim)], left_out[(ds, bits, dim)] = complete, len(ps) - len(complete)
    shared = [p for p in points if p["dataset"] in DATASETS and p["schedule"] in DATASETS[p["dataset"]].schedules]
    equal = [p for (ds, bits, dim, _), p in choose_by_valid(shared).items() if (bits, dim) == (FLOAT_BITS, 64)]  # the quantized points' schedules
    out: dict[str, list[dict[str, Any]]] = {}
    for ds, cells in sorted(by.items()):
        ref_eq = float(np.mean([p["test"]["recall@20"] for p in equal if p["dataset"] == ds] or [KNOWN_EQUAL_FLOAT.get(ds, (np.nan,))[0]]))
        candidates = [ref_eq, KNOWN_BEST_FLOAT.get(ds, (np.nan,))[0], *(np.mean(v) for (d, _), v in ref_runs.items() if d == ds)]
        ref_best = float(np.nanmax(candidates)) if not np.all(np.isnan(candidates)) else np.nan
        rows = []
        for (bits, dim), ps in sorted(cells.items(), key=lambda kv: (bytes_per_item(*kv[0]), kv[0])):
            r = np.array([p["test"]["recall@20"] for p in ps])
            n = np.array([p["test"]["ndcg@20"] for p in ps])
            picked = sorted(p["schedule"] for p in ps)
            rows.append({"bits": bits, "dim": dim, "bytes": bytes_per_item(bits, dim), "seeds": len(ps), "left_out": left_out.get((ds, bits, dim), 0),
                         "r20": r.mean(), "r20_hr": (r.max() - r.min()) / 2, "n20": n.mean(), "n20_hr": (n.max() - n.min()) / 2,
                         "pct_eq": 100 * r.mean() / ref_eq, "pct_best": 100 * r.mean() / ref_best,
                         "schedules": ", ".join(f"{k} {picked.count(k)}" for k in dict.fromkeys(picked)),
                         "epochs": np.mean([p["best_epoch"] for p in ps]), "minutes": np.mean([p["train_seconds"] + p.get("parent_train_seconds", 0) for p in ps]) / 60,
                         "ref_eq": ref_eq, "ref_best": ref_best})
        out[ds] = rows
    return out


def markdown(summary: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for ds, rows in summary.items():
        if not rows:
            continue
        known = KNOWN_BEST_FLOAT.get(ds)
        lines += [f"#### {ds}", "", f"float32 d=64 at this schedule (equal epochs): **{rows[0]['ref_eq']:.4f}**; best float32 d=64: "
                  f"**{rows[0]['ref_best']:.4f}**" + (f" ({known[1]})" if known and known[0] == rows[0]["ref_best"] else ""), "",
                  "| bits × dim | bytes/item | seeds | test R@20 | test N@20 | % of fp32 d64, equal epochs | % of best fp32 d64 | schedule (by valid) | best epoch | train min (from-float: + its float model's) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            name = "float32" if is_float(r["bits"]) else f"{r['bits']} bit"
            seeds = f"{r['seeds']} (+{r['left_out']} not yet on the picked schedule, left out)" if r.get("left_out") else str(r["seeds"])
            lines.append(f"| {name} × {r['dim']} | {r['bytes']} | {seeds} | {r['r20']:.4f} ± {r['r20_hr']:.4f} | "
                         f"{r['n20']:.4f} ± {r['n20_hr']:.4f} | {r['pct_eq']:.1f} % | {r['pct_best']:.1f} % | {r['schedules']} | {r['epochs']:.0f} | {r['minutes']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """Test R@20 (top) and N@20 (bottom) vs bytes per item (log2), one panel column per dataset,
    one line per bit width through its dims; the float32 d=64 point as a dashed reference line, the
    best float32 d=64 (when higher, e.g. a known figure) as a dotted one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d for d, rows in summary.items() if rows]
    fig, axes = plt.subplots(2, len(names), figsize=(4.5 * len(names), 7), squeeze=False)
    for col, ds in enumerate(names):
        rows = summary[ds]
        for row, (metric, label) in enumerate([("r20", "test Recall@20"), ("n20", "test NDCG@20")]):
            ax = axes[row][col]
            for bits in sorted({r["bits"] for r in rows}):
                part = sorted((r for r in rows if r["bits"] == bits), key=lambda r: r["bytes"])
                ax.errorbar([r["bytes"] for r in part], [r[metric] for r in part], yerr=[r[f"{metric}_hr"] for r in part],
                            marker="o", capsize=2, color=f"C{sorted(ALL_BITS).index(bits)}",  # one colour per width in every panel
                            label="float32" if is_float(bits) else f"{bits} bit")
                for r in part:
                    ax.annotate(f"d{r['dim']}", (r["bytes"], r[metric]), fontsize=6, xytext=(3, -8), textcoords="offset points")
            ref = [r[metric] for r in rows if is_float(r["bits"]) and r["dim"] == 64]
            if ref:
                ax.axhline(ref[0], linestyle="--", color="gray", linewidth=1, label="float32 d=64")
            if metric == "r20" and np.isfinite(rows[0]["ref_best"]) and (not ref or rows[0]["ref_best"] > ref[0]):
                ax.axhline(rows[0]["ref_best"], linestyle=":", color="black", linewidth=1, label="best float32 d=64")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("bytes per item (code + scale)")
            ax.set_ylabel(label)
            ax.set_title(ds)
            if row == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", nargs="+", default=["lastfm"], choices=sorted(DATASETS))
    ap.add_argument("--bits", nargs="+", type=int, default=[1])
    ap.add_argument("--dim", nargs="+", type=int, default=[64])
    ap.add_argument("--seed", nargs="+", type=int, default=[2024])
    ap.add_argument("--schedule", default="all", help="all (every candidate schedule of the dataset), picked (those validation "
                    "picked for the same point at the seeds already run; all where none ran), one of them by name, "
                    "long (float32: LightGCN's lr 1e-3 up to 1,000 epochs), or the tag of a probe given with --override")
    ap.add_argument("--override", type=json.loads, default=None, help='probe: JSON of schedule settings, e.g. \'{"lr": 5e-3}\'')
    ap.add_argument("--data-root", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=OUT, help="work folder (splits, runs) and the report (git-ignored)")
    ap.add_argument("--points", type=Path, default=POINTS, help="the JSONL of measured points (committed)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    ap.add_argument("--queue", action="store_true", help="run every missing point of the grid, in flock'ed batches")
    ap.add_argument("--run-missing", action="store_true", help="(inside the lock) run missing points for up to --max-minutes")
    ap.add_argument("--max-minutes", type=float, default=12.0, help="a batch starts no point after this many minutes")
    ap.add_argument("--report", action="store_true", help="write frontier.md (+ --plot) from the JSONL")
    ap.add_argument("--plot", type=Path, default=None, help="with --report: the plot's path (default OUT/frontier.png)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report:
        points = read_points(args.points)
        if stale := len(points) - len(current_points(points)):
            print(f"{stale} from-float points left out: a better float32 point ran after them (rerun: --schedule {FROM_FLOAT})")
        summary = summarize(points)
        md = markdown(summary)
        (args.out / "frontier.md").write_text(md)
        plot(summary, args.plot or args.out / "frontier.png")
        print(md)
        return
    if args.queue:
        queue(args)
        return
    if args.run_missing:
        run_missing(args)
        return
    if len(args.dataset) * len(args.bits) * len(args.dim) * len(args.seed) != 1:
        ap.error("one point per invocation (one --dataset, --bits, --dim, --seed); use --queue for a grid")
    if args.override is not None and (args.schedule in DATASETS[args.dataset[0]].schedules or args.schedule in ("all", "picked", "long")):
        ap.error("--override needs a --schedule tag of its own (not one of the dataset's schedules, all or long)")
    todo = missing(args)
    if not todo:
        print(f"point {args.dataset[0]} b{args.bits[0]} d{args.dim[0]} s{args.seed[0]} ({args.schedule}) already in {args.points}: skipped")
    for key in todo:
        rec = run_point(*key, args.data_root, args.out, args.points, args.threads, args.override)
        print(f"{rec['run']}: {rec['bytes_per_item']} B/item test R@20 {rec['test']['recall@20']:.4f} N@20 {rec['test']['ndcg@20']:.4f} "
              f"best epoch {rec['best_epoch']} of {rec['epochs_run']}, {rec['train_seconds'] / 60:.1f} train min", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("DO_NOT_TRACK", "1")
    main()
