"""Stage `train` on N processes (issue 7): ``hqgnn train --nproc N`` and its torchrun worker.

:func:`train_distributed` (the parent, no process group) launches ``N`` workers through
``python -m torch.distributed.run`` (torchrun), the same command one types by hand:

    torchrun --standalone --nproc-per-node 2 -m flows.stages.train_ddp \\
        --workdir hqgnn-work --train '{"bits": 1, "estimator": "gste", "epochs": 50}'

Each worker (:func:`main`) joins the group (gloo on CPUs, NCCL on GPUs) and trains with
:class:`hqgnn.distributed.DistributedTrainer`. Rank 0 resolves the run folder and split
snapshot and broadcasts them (so a ``splits/current`` switched meanwhile cannot give ranks
different data), writes ``config.json``, checkpoints, ``summary.json`` and ``models/latest``;
the run folder is the same as a one-process run's, so export and evaluate read it unchanged.
On several machines, ``--workdir`` must be a shared file system (every rank reads the split,
rank 0 writes the run); see README "Scaling out".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from flows.config import TrainConfig
from flows.errors import HqgnnError
from flows.stages.train import (
    TrainResult,
    format_epoch,
    format_refinement,
    plan_run,
    print_warm_start,
    require_valid,
    restore,
    start_tables,
    write_run_config,
    write_summary,
)
from flows.workdir import DEFAULT_WORKDIR, WorkDir

WORKER_MODULE = "flows.stages.train_ddp"


class DistributedTrainingError(HqgnnError):
    """The torchrun workers did not all finish."""


def torchrun_command(workdir: WorkDir, cfg: TrainConfig, nproc: int) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m flows.stages.train_ddp ...``."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
        "-m", WORKER_MODULE, "--workdir", str(workdir.root), "--train", cfg.model_dump_json(),
    ]


def train_distributed(workdir: WorkDir, cfg: TrainConfig, console: Console | None = None) -> TrainResult:
    """Train (or resume) one run on ``cfg.nproc`` local processes; returns what rank 0 recorded."""
    console = console or Console(stderr=True)
    _, run_dir, _ = plan_run(workdir, cfg)  # fails early on a taken name; the workers plan again on rank 0
    cfg = cfg.model_copy(update={"run": run_dir.name})
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // cfg.nproc)))
    cmd = torchrun_command(workdir, cfg, cfg.nproc)
    console.print(f"launching {cfg.nproc} processes: torchrun --standalone --nproc-per-node {cfg.nproc} -m {WORKER_MODULE} ...", highlight=False)
    code = subprocess.run(cmd, env=env, check=False).returncode
    summary_path = workdir.models / str(cfg.run) / "summary.json"
    if code != 0:
        raise DistributedTrainingError(f"distributed training of run {cfg.run!r} failed: torchrun exited with status {code} (the workers' errors are above)")
    s = json.loads(summary_path.read_text())
    return TrainResult(s["run"], summary_path.parent, s["best_epoch"], s["best_valid"], s["epochs_run"], s["train_seconds"], s["status"])


# ---- the worker (one per rank) -------------------------------------------------------------


def run_worker(workdir: WorkDir, cfg: TrainConfig) -> TrainResult | None:
    """One rank's share of a distributed run; rank 0 returns the result, the others ``None``."""
    import torch.distributed as dist

    from flows.split_files import load_split
    from hqgnn.distributed import DistributedTrainer, init_process_group

    ctx = init_process_group(cfg.device)
    try:
        cfg = cfg.model_copy(update={"nproc": ctx.world_size})
        box: list[Any] = [None]
        if ctx.rank == 0:
            try:
                box = [plan_run(workdir, cfg)]
            except Exception as e:  # every rank must learn that rank 0 stopped
                box = [e]
        dist.broadcast_object_list(box, src=0)
        if isinstance(box[0], Exception):
            raise box[0]
        cfg, run_dir, split_dir = box[0]
        data = load_split(split_dir)
        require_valid(data, split_dir)
        initial, teacher, teacher_layers, warm = start_tables(workdir, cfg, data, run_dir)  # seeded: the same on every rank
        lead = ctx.rank == 0
        console = Console(stderr=True, quiet=not lead)
        if lead:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not cfg.resume:
                write_run_config(run_dir, cfg, data, split_dir, warm)
        started = time.perf_counter()
        trainer = DistributedTrainer(cfg, data, run_dir, ctx, on_epoch=lambda r: console.print(format_epoch(r, cfg), highlight=False),
                                     on_refine=lambda r: console.print(format_refinement(r), highlight=False),
                                     initial_embedding=initial, teacher_embedding=teacher, teacher_layers=teacher_layers)
        if cfg.resume and (run_dir / "last.pt").is_file():
            restore(trainer, run_dir)
            console.print(f"resuming {run_dir.name} after epoch {trainer.epoch}", highlight=False)
        console.print(f"training {run_dir.name}: {cfg.bits} bit(s){' (items; float32 users)' if cfg.float_users and cfg.quantized else ''}, estimator {cfg.estimator}, {ctx.world_size} processes "
                      f"({ctx.backend}, {ctx.device.type}), {data.num_users} users x {data.num_items} items, "
                      f"{data.train.nnz} train interactions, global batch {cfg.batch_size}", highlight=False)
        print_warm_start(console, cfg, warm, trainer)
        fit = trainer.fit()
        if not lead:
            return None
        return write_summary(workdir, run_dir, cfg, data, fit, started, console, device=str(ctx.device),
                             nproc=ctx.world_size, backend=ctx.backend, warm_start=warm)
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """Entry point of each torchrun worker: ``--workdir DIR --train JSON`` (a ``train`` config section)."""
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--train", default="{}", help="the train config section as JSON (keys of hqgnn.config.TrainConfig)")
    args = parser.parse_args(argv)
    try:
        cfg = TrainConfig.model_validate_json(args.train)
        run_worker(WorkDir(args.workdir), cfg)
    except HqgnnError as e:
        print(f"error (rank {os.environ.get('RANK', '?')}): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
