"""Stage `train`: split snapshot → ``models/<run>/`` with checkpoints, history, summary.

:func:`train` is the stage (the CLI and the flow call it): it runs in this process, or on
``cfg.nproc`` processes through torchrun (:mod:`flows.stages.train_ddp`); a resumed run keeps
the process count it was started with unless ``nproc`` is given. Both paths share
:func:`plan_run` (run folder, split, effective config) and :func:`write_summary`.
In this process: resolve the device, hand split and run folder to :class:`hqgnn.trainer.Trainer`,
show progress with rich on standard error, write ``summary.json``, point ``models/latest`` at the
run. ``--resume`` continues the named run (default: the newest run folder) from its ``last.pt``
with the config it was started with (only ``device`` and ``nproc`` may change).

Warm start (``init_from``, issue 16): :func:`pin_warm_start` resolves ``published`` (the run behind
``codes/current-<bits>bit``), ``latest`` (``models/latest``) or a run name to one parent run
before anything launches, pins ``init_from`` to it (``config.json``), and shortens the schedule
to ``warm_epochs``; :func:`warm_table` carries the parent's layer-0 rows by original id and
initialises new users/items from their train neighbours (:mod:`hqgnn.warm_start`). Optimizer
state starts fresh. A resumed warm run restores ``last.pt`` and never re-initialises; every rank
of a ``--nproc`` run builds the same table (and rank 0's is broadcast).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flows.config import TrainConfig
from flows.errors import InputError
from flows.integrity import file_record
from flows.split_files import load_split, read_id_maps
from flows.workdir import WorkDir, switch_pointer
from hqgnn.bits import is_float
from hqgnn.checkpoint import load_checkpoint
from hqgnn.dataset import SplitData
from hqgnn.files import atomic_write_json
from hqgnn.trainer import FitResult, Trainer, resolve_device
from hqgnn.warm_start import NewRows, WarmStart, warm_start


@dataclass(frozen=True)
class TrainResult:
    """What `hqgnn train` produced."""

    run: str
    path: Path
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    seconds: float
    status: str


CHECKPOINTS = ("best.pt", "last.pt")  # hashed into summary.json: readers check them (flows.integrity.verify_run)


def default_run_name(cfg: TrainConfig) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-b{cfg.bits}-{cfg.estimator}"


def write_run_config(run_dir: Path, cfg: TrainConfig, data: SplitData, split_dir: Path, warm: dict[str, Any] | None = None) -> None:
    """``models/<run>/config.json``: the run's config, snapshot, split folder, model args and warm start."""
    atomic_write_json(run_dir / "config.json", {
        "warm_start": warm or {"init_from": "none"},
        "run": run_dir.name, "config": cfg.model_dump(mode="json"), "snapshot": data.snapshot,
        "split_dir": os.path.relpath(split_dir, run_dir),
        "model_args": {"num_users": data.num_users, "num_items": data.num_items, "dim": cfg.dim, "layers": cfg.layers},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    })


def plan_run(workdir: WorkDir, cfg: TrainConfig) -> tuple[TrainConfig, Path, Path]:
    """The effective config, run folder and split folder of a run: a new one (its name must be
    free) or, with ``cfg.resume``, the stored config of the run it continues (``device`` and
    ``nproc`` as given now)."""
    if cfg.resume:
        run_dir = _resume_dir(workdir, cfg.run)
        meta = json.loads((run_dir / "config.json").read_text())
        cfg = TrainConfig(**{**meta["config"], "device": cfg.device, "resume": True, "nproc": cfg.nproc})
        return cfg, run_dir, (run_dir / meta["split_dir"]).resolve()
    run_dir = workdir.models / (cfg.run or default_run_name(cfg))
    if (run_dir / "config.json").exists():
        raise InputError(f"run {run_dir.name!r} already exists in {workdir.models}: pass --resume to continue it, or another --run")
    return cfg, run_dir, workdir.split(cfg.snapshot).resolve()


def write_summary(workdir: WorkDir, run_dir: Path, cfg: TrainConfig, data: SplitData, fit: FitResult, started: float,
                  console: Console, **extra: Any) -> TrainResult:
    """``summary.json`` of a finished invocation, ``models/latest`` pointed at the run, one line printed."""
    summary: dict[str, Any] = {
        "run": run_dir.name, "snapshot": data.snapshot, "bits": cfg.bits, "estimator": cfg.estimator, **extra,
        "status": fit.status, "best_epoch": fit.best_epoch, "best_valid": fit.best_valid,
        "epochs_run": fit.epochs_run, "train_seconds": fit.seconds,
        "wall_seconds_this_invocation": time.perf_counter() - started, "code_refinement": fit.code_refinement,
        "files": {name: file_record(run_dir / name) for name in CHECKPOINTS if (run_dir / name).is_file()},
    }
    atomic_write_json(run_dir / "summary.json", summary)
    switch_pointer(workdir.models / "latest", run_dir)
    console.print(f"best valid recall@20 {fit.best_valid.get('recall@20', float('nan')):.4f} at epoch {fit.best_epoch} ({fit.status}); run {run_dir}", highlight=False)
    return TrainResult(run_dir.name, run_dir, fit.best_epoch, fit.best_valid, fit.epochs_run, fit.seconds, fit.status)


def train(workdir: WorkDir, cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    """Train (or resume) one run, here or on ``cfg.nproc`` processes; returns its best epoch and
    validation metrics. A resumed run keeps its process count unless ``nproc`` was set."""
    if not cfg.resume:
        cfg = pin_warm_start(workdir, cfg)
    if cfg.resume and "nproc" not in cfg.model_fields_set:
        cfg = cfg.model_copy(update={"nproc": resume_nproc(workdir, cfg.run)})
    if cfg.nproc > 1 or (cfg.resume and resume_nproc(workdir, cfg.run) > 1):  # a distributed run resumes through torchrun
        from flows.stages.train_ddp import train_distributed

        return train_distributed(workdir, cfg, console)
    return train_in_process(workdir, cfg, console)


def restore(trainer: Trainer, run_dir: Path) -> None:
    """``trainer.restore()`` from ``last.pt``; a damaged checkpoint is an InputError saying what to do."""
    try:
        trainer.restore()
    except ValueError as e:
        raise InputError(f"{e}: cannot resume {run_dir.name}; delete {run_dir / 'last.pt'} to restart it from epoch 1 "
                         "with --resume, or train a new run") from e


def require_valid(data: SplitData, split_dir: Path) -> None:
    """Training selects its best epoch on validation rows: a snapshot without any is refused here."""
    if data.valid.nnz == 0:
        raise InputError(f"{split_dir / 'valid.parquet'} has no rows: training needs validation interactions; "
                         "run `hqgnn prepare --valid-ratio 0.1` (or more) and train on that snapshot")


RESUME_IGNORES = ("run", "resume")


def unfinished_run(workdir: WorkDir, cfg: TrainConfig) -> str | None:
    """The newest run folder that was started with ``cfg`` (same snapshot and settings; the run
    name aside) and never finished (no ``summary.json``: the process was killed), or None.

    ``hqgnn run`` resumes it instead of starting over: same inputs, same result (the trainer
    resumes exactly from ``last.pt``). A warm run stored its config pinned (:func:`pin_warm_start`),
    so ``cfg`` is pinned the same way before the comparison."""
    if not workdir.models.is_dir():
        return None
    cfg = pin_warm_start(workdir, cfg)
    want = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in RESUME_IGNORES}
    found = []
    for meta_path in workdir.models.glob("*/config.json"):
        run_dir = meta_path.parent
        if run_dir.is_symlink() or run_dir.name.startswith(".") or (run_dir / "summary.json").exists():
            continue
        try:
            stored = json.loads(meta_path.read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: `hqgnn doctor` reports it; never resumed blindly
        if {k: v for k, v in stored.items() if k not in RESUME_IGNORES} == want:
            found.append((meta_path.stat().st_mtime, run_dir.name))
    return max(found)[1] if found else None


def resume_nproc(workdir: WorkDir, run: str | None) -> int:
    """``nproc`` a run was started with."""
    meta = json.loads((_resume_dir(workdir, run) / "config.json").read_text())
    return int(meta["config"].get("nproc", 1))


def train_in_process(workdir: WorkDir, cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    """Train (or resume) one run in this process."""
    console = console or Console(stderr=True)
    device = resolve_device(cfg.device)
    cfg, run_dir, split_dir = plan_run(workdir, cfg)
    data = load_split(split_dir)
    require_valid(data, split_dir)
    initial, teacher, teacher_layers, warm = start_tables(workdir, cfg, data, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not cfg.resume:
        write_run_config(run_dir, cfg, data, split_dir, warm)
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    ) as progress:
        task = progress.add_task("epoch", total=None)
        trainer = Trainer(
            cfg, data, run_dir, device,
            on_epoch=lambda r: progress.console.print(format_epoch(r, cfg), highlight=False, soft_wrap=True),
            on_step=lambda done, total: progress.update(task, completed=done, total=total, description=_stage_label(trainer)),
            on_refine=lambda r: progress.console.print(format_refinement(r), highlight=False, soft_wrap=True),
            initial_embedding=initial, teacher_embedding=teacher, teacher_layers=teacher_layers,
        )
        if cfg.resume and (run_dir / "last.pt").is_file():
            restore(trainer, run_dir)
            console.print(f"resuming {run_dir.name} after epoch {trainer.epoch}", highlight=False)
        console.print(f"training {run_dir.name}: {cfg.bits} bit(s){' (items; float32 users)' if cfg.float_users and cfg.quantized else ''}, estimator {cfg.estimator}, device {device}, "
                      f"{data.num_users} users x {data.num_items} items, {data.train.nnz} train interactions", highlight=False)
        print_warm_start(progress.console, cfg, warm, trainer)
        fit = trainer.fit()
    return write_summary(workdir, run_dir, cfg, data, fit, started, console, device=str(device), warm_start=warm)


# ---- warm start ----------------------------------------------------------------------------


def print_warm_start(console: Console, cfg: TrainConfig, warm: dict[str, Any], trainer: Trainer) -> None:
    """The warm start's rows and, with ``distill_top``, whose ranking the run learns (its parent's or
    ``distill_from``'s), if any."""
    if warm.get("parent_run"):
        console.print(f"warm start from run {warm['parent_run']}: users {warm['users_carried']} carried, {warm['users_new']} new, "
                      f"{warm['users_dropped']} dropped; items {warm['items_carried']} carried, {warm['items_new']} new, "
                      f"{warm['items_dropped']} dropped", highlight=False)
    if cfg.distill_top > 0:
        whose = "the parent's" if cfg.distill_from in ("parent", "best") else f"run {cfg.distill_from}'s"
        order = f", their order weight {cfg.distill_order_weight}" if cfg.distill_order_weight > 0 else ""
        console.print(f"distilling {whose} ranking: each user's top {cfg.distill_top} unseen items, weight {cfg.distill_weight}, "
                      f"decay {cfg.distill_decay}{order}" if trainer.teacher is not None else
                      f"distill_top {cfg.distill_top} unused: a cold run has no float parent whose ranking it could learn "
                      "(name a float run with distill_from)", highlight=False)


def resolve_parent(workdir: WorkDir, init_from: str, bits: int) -> Path | None:
    """The run a warm start reads: ``published`` (behind ``codes/current-<bits>bit``), ``latest``,
    or a run name; None for ``none`` and for ``published``/``latest`` when there is none yet."""
    if init_from == "none":
        return None
    if init_from == "published":
        from flows.stages.export import published_manifest

        manifest = published_manifest(workdir, bits)
        if manifest is None:
            return None
        run_dir = workdir.models / str(manifest["run"])
        if not (run_dir / "best.pt").is_file():
            raise InputError(f"init_from=published: the published {bits}-bit codes {manifest.get('version')} come from run "
                             f"{manifest['run']!r}, whose {run_dir / 'best.pt'} is missing; pass init_from: none for a cold start")
        return run_dir
    if init_from == "latest":
        pointer = workdir.models / "latest"
        return pointer.resolve() if pointer.is_symlink() and (pointer / "best.pt").is_file() else None
    run_dir = workdir.models / init_from
    if not (run_dir / "best.pt").is_file():
        raise InputError(f"init_from={init_from!r}: no such trained run ({run_dir / 'best.pt'} is missing); "
                         "use none, published, latest or the name of a run in models/")
    return run_dir


def pin_warm_start(workdir: WorkDir, cfg: TrainConfig) -> TrainConfig:
    """A new run's config with ``init_from`` pinned to the parent run it resolves to and the warm
    schedule applied (``epochs = warm_epochs``, ``lr = warm_lr`` where set; no float warm-up after a
    quantized parent: it already went through the switch; at most one float epoch after a float
    parent, which is a trained float model already: the epoch only places the quantizer's switch, and
    the ITQ rotation with it; ``distill_top`` kept after a float parent, whose ranking is the
    teacher, :mod:`hqgnn.distill`, or when ``distill_from`` names the teacher). ``distill_from:
    best`` is pinned too (:func:`best_float_teacher`). Otherwise unchanged for cold runs and when
    there is no parent yet, so one recipe can hold a cold schedule (e.g. 30 float epochs from
    scratch) and a warm one (without a warm start the trainer has no teacher unless
    ``distill_from`` names one)."""
    parent = resolve_parent(workdir, cfg.init_from, cfg.bits) if cfg.warm else None
    if cfg.distill_from == "best":
        cfg = cfg.model_copy(update={"distill_from": best_float_teacher(workdir, cfg.snapshot, parent)})
    if parent is None:
        return cfg
    parent_bits = int(json.loads((parent / "config.json").read_text())["config"]["bits"])
    epochs = cfg.warm_epochs or cfg.epochs
    warmup = min(cfg.float_warmup_epochs, 1) if is_float(parent_bits) else 0
    return cfg.model_copy(update={"init_from": parent.name, "epochs": epochs, "lr": cfg.warm_lr or cfg.lr,
                                  "float_warmup_epochs": min(warmup, max(epochs - 1, 0)),
                                  "distill_top": cfg.distill_top if is_float(parent_bits) or cfg.distill_from != "parent" else 0})


def best_float_teacher(workdir: WorkDir, snapshot: str | None, parent: Path | None) -> str:
    """``distill_from: best`` pinned: the finished float32 run on this split (``snapshot``, the same
    split folder) with the highest validation Recall@20, or ``parent`` when that run is the warm
    start's parent or there is none (the trainer then learns the parent's ranking, if it is float)."""
    split_dir = workdir.split(snapshot).resolve()
    best: tuple[float, str] | None = None
    for summary_path in workdir.models.glob("*/summary.json") if workdir.models.is_dir() else ():
        run_dir = summary_path.parent
        if run_dir.is_symlink() or run_dir.name.startswith(".") or not (run_dir / "best.pt").is_file():
            continue
        try:
            summary = json.loads(summary_path.read_text())
            meta = json.loads((run_dir / "config.json").read_text())
            same_split = (run_dir / meta["split_dir"]).resolve() == split_dir
            score = float(summary["best_valid"]["recall@20"])
            bits = int(summary["bits"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # unreadable: `hqgnn doctor` reports it; never a teacher
        if same_split and is_float(bits) and (best is None or (score, run_dir.name) > best):
            best = (score, run_dir.name)
    if best is None or (parent is not None and best[1] == parent.name):
        return "parent"
    return best[1]


class StartTables(NamedTuple):
    """What a run starts from: the warm start's layer-0 table ``[U + I, dim]`` (``None``: cold, or a
    resume), the teacher's ``[U + I, d_t]`` and depth (``None``: the warm start's table teaches), and
    the record for ``warm_start`` in config/summary (the teacher's under ``warm_start.teacher``)."""

    initial: Any
    teacher: Any
    teacher_layers: int | None
    record: dict[str, Any]


def start_tables(workdir: WorkDir, cfg: TrainConfig, data: SplitData, run_dir: Path) -> StartTables:
    """The warm start and the teacher of a planned run (:func:`warm_table`, :func:`teacher_table`);
    seeded, so every DDP rank computes the same tables."""
    initial, record = warm_table(workdir, cfg, data, run_dir)
    teacher, teacher_layers, taught = teacher_table(workdir, cfg, data, run_dir)
    return StartTables(initial, teacher, teacher_layers, {**record, "teacher": taught} if taught else record)


def warm_table(workdir: WorkDir, cfg: TrainConfig, data: SplitData, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The initial layer-0 table ``[U + I, dim]`` of a (pinned) warm run and its record for
    config/summary; ``(None, record)`` for a cold run, and for a resume that restores ``last.pt``
    (its record is the one in ``config.json``: a resumed warm run never re-initialises)."""
    if cfg.resume and (run_dir / "last.pt").is_file():
        return None, json.loads((run_dir / "config.json").read_text()).get("warm_start") or {"init_from": "none"}
    parent = resolve_parent(workdir, cfg.init_from, cfg.bits) if cfg.warm else None
    if parent is None:
        note = {} if not cfg.warm else {"note": f"init_from={cfg.init_from}: no such run yet, cold start"}
        return None, {"init_from": cfg.init_from, "parent_run": None, **note}
    state = load_checkpoint(parent / "best.pt")
    if int(state["model_args"]["dim"]) != cfg.dim:
        raise InputError(f"init_from={cfg.init_from!r}: run {parent.name} has dim {state['model_args']['dim']}, this run dim {cfg.dim}; "
                         "a warm start needs the same width (or init_from: none)")
    ws, meta = carried_table(parent, state, data, cfg.warm_new_rows, cfg.seed, cfg.warm_carry_users)
    record = {"init_from": cfg.init_from, "parent_run": parent.name, "parent_snapshot": meta.get("snapshot"),
              "parent_best_epoch": int(state["epoch"]), **ws.counts()}
    return ws.embedding, record


def carried_table(run_dir: Path, state: dict[str, Any], data: SplitData, new_rows: NewRows, seed: int,
                  carry_users: bool = True) -> tuple[WarmStart, dict[str, Any]]:
    """A trained run's layer-0 table (``state``: its ``best.pt``) on this split's rows, matched by
    original id (:func:`hqgnn.warm_start.warm_start`), and the run's ``config.json``."""
    meta = json.loads((run_dir / "config.json").read_text())
    args = state["model_args"]
    table = state["model"]["embedding"].float()
    prev_users, prev_items = table[: args["num_users"]], table[args["num_users"] :]
    prev_user_ids, prev_item_ids = read_id_maps((run_dir / meta["split_dir"]).resolve())
    ws = warm_start(prev_users, prev_items, prev_user_ids, prev_item_ids, data.user_ids, data.item_ids, data.train,
                    new_rows, seed=seed, carry_users=carry_users)
    return ws, meta


def teacher_table(workdir: WorkDir, cfg: TrainConfig, data: SplitData, run_dir: Path) -> tuple[Any, int | None, dict[str, Any]]:
    """The layer-0 table ``[U + I, d_t]`` and depth of the float run ``distill_from`` names, on this
    split's rows, and its record (``warm_start.teacher`` in config/summary). ``(None, None, {})``
    with ``distill_from: parent`` (the trainer takes the warm start's table), with ``distill_top``
    0, and on a resume (the teacher's positives are in ``last.pt``)."""
    if cfg.distill_from in ("parent", "best") or cfg.distill_top == 0 or (cfg.resume and (run_dir / "last.pt").is_file()):
        return None, None, {}  # "best" is pinned before this (pin_warm_start); unpinned it means the parent
    teacher = workdir.models / cfg.distill_from
    if not (teacher / "best.pt").is_file():
        raise InputError(f"distill_from={cfg.distill_from!r}: no such trained run ({teacher / 'best.pt'} is missing); "
                         "name a float32 run in models/, or use parent (the warm start's float parent)")
    state = load_checkpoint(teacher / "best.pt")
    bits = int(state["config"]["bits"])
    if not is_float(bits):
        raise InputError(f"distill_from={cfg.distill_from!r}: run {teacher.name} is a {bits}-bit model; the teacher must be a "
                         "float32 run (bits 32), whose ranking the codes learn")
    ws, meta = carried_table(teacher, state, data, "neighbours", cfg.seed)
    args = state["model_args"]
    record = {"distill_from": teacher.name, "teacher_dim": int(args["dim"]), "teacher_layers": int(args["layers"]),
              "teacher_snapshot": meta.get("snapshot"), "teacher_best_epoch": int(state["epoch"]), **ws.counts()}
    return ws.embedding, int(args["layers"]), record


def format_epoch(r: dict[str, Any], cfg: TrainConfig) -> str:
    """One progress line: epoch, loss, validation metric, δ (or "float warm-up"), hard negatives or negatives per positive, seconds per epoch, ETA."""
    valid = "" if r["valid_recall@20"] != r["valid_recall@20"] else f"  valid R@20 {r['valid_recall@20']:.4f} N@20 {r['valid_ndcg@20']:.4f}"
    per_dim = " (mean of dims)" if cfg.delta_granularity == "dimension" else ""
    delta = "" if r["trace_user"] != r["trace_user"] else f"  δ{per_dim} u {r['delta_user']:.3g} i {r['delta_item']:.3g}"
    if cfg.quantized and not r["quantized"]:
        delta = "  float warm-up"
    hard = f"  hard negatives of {r['negative_candidates']}" if r.get("negative_candidates", 1) > 1 else ""
    hard += f"  {r['bpr_negatives']} negatives per positive" if r.get("bpr_negatives", 1) > 1 else ""
    return f"epoch {r['epoch']:>4}/{cfg.epochs}  loss {r['loss']:.4f}{valid}{delta}{hard}  {r['epoch_seconds']:.1f} s  eta {r['eta'] / 60:.1f} min"


def format_refinement(r: dict[str, Any]) -> str:
    """One progress line per round of user-code refinement (hqgnn.code_refinement)."""
    return (f"code refinement round {r['round']}/{r['of']}  {r['flips']:,} user bits flipped  valid R@20 {r['valid_recall@20']:.4f} "
            f"N@20 {r['valid_ndcg@20']:.4f}  kept: {r['kept']} round(s)  {r['seconds']:.1f} s")


def _stage_label(trainer: Trainer) -> str:
    """The progress bar's label: the epoch in training, the refinement once the epochs are done."""
    return "code refinement" if trainer.status != "running" else f"epoch {trainer.epoch + 1}"


def _resume_dir(workdir: WorkDir, run: str | None) -> Path:
    if run:
        run_dir = workdir.models / run
        if not (run_dir / "config.json").is_file():
            raise InputError(f"--resume --run {run}: no such run in {workdir.models}")
        return run_dir
    runs = [p for p in workdir.models.glob("*/config.json") if not p.parent.is_symlink()] if workdir.models.is_dir() else []
    if not runs:
        raise InputError(f"--resume: no run to resume in {workdir.models} (run `hqgnn train` first)")
    return max(runs, key=lambda p: p.stat().st_mtime).parent  # the newest run folder (pointers skipped)
