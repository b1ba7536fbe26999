"""Data-parallel training (issue 7): 2 CPU processes with gloo match one process.

Both paths are real: the library test spawns two processes that join a gloo group and train
with :class:`hqgnn.distributed.DistributedTrainer` (killed after epoch 2, then resumed); the CLI
test runs ``hqgnn train --nproc 2`` (torchrun underneath). Each is compared with an ordinary
one-process :class:`hqgnn.trainer.Trainer` on the same tiny planted split and config.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from split_fixtures import tiny_split

from flows.config import TrainConfig
from flows.split_files import load_split
from flows.trained_runs import load_run
from hqgnn.distributed import ShardedSampler, init_process_group, shard_bounds
from hqgnn.sampler import BPRSampler
from hqgnn.trainer import Trainer

# Global batch 71 is odd and leaves a last batch of 1 row (356 = 5 x 71 + 1): uneven halves,
# then a rank with a placeholder row; where equal averaging (plain DDP) would drift from one process.
CFG = {"dim": 16, "batch_size": 71, "lr": 0.01, "epochs": 3, "device": "cpu", "bits": 1,
       "estimator": "gste", "delta_every": 1, "hutchinson_samples": 4, "hutchinson_batches": 2, "seed": 7}
ATOL = 1e-5  # float rounding of a 2-way sum, through 3 epochs of Adam


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_split(tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="module")
def single(split_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference: one ordinary process, uninterrupted."""
    torch.set_num_threads(1)
    data = load_split(split_dir)
    assert data.train.nnz % CFG["batch_size"] == 1  # the placeholder case is exercised
    trainer = Trainer(TrainConfig(**CFG), data, tmp_path_factory.mktemp("single"), torch.device("cpu"))
    trainer.fit()
    return {"embedding": trainer.model.embedding.detach().clone(), "history": trainer.history, "best_epoch": trainer.best_epoch}


def test_shards_partition_every_batch() -> None:
    for n in (1, 2, 5, 101, 4096):
        for world in (1, 2, 3, 8):
            bounds = [shard_bounds(n, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
            assert max(e - s for s, e in bounds) - min(e - s for s, e in bounds) <= 1


@pytest.mark.parametrize("candidates", [1, 3], ids=["uniform", "hard-negative-candidates"])
def test_sharded_sampler_slices_the_same_global_epoch(split_dir: Path, candidates: int) -> None:
    train = load_split(split_dir).train
    batch = 118  # 356 = 3 x 118 + 2: uneven thirds, then a last batch of 2 rows for 3 ranks
    full = list(BPRSampler(train, torch.Generator().manual_seed(1)).epoch(batch, candidates))
    assert [b[0].numel() for b in full] == [118, 118, 118, 2]
    assert full[0][2].shape == ((118,) if candidates == 1 else (118, candidates))
    shards = [ShardedSampler(BPRSampler(train, torch.Generator().manual_seed(1)), r, 3) for r in range(3)]
    per_rank = [[(b, s.weight) for b in s.epoch(batch, candidates)] for s in shards]
    for j, whole in enumerate(full):
        got = [per_rank[r][j] for r in range(3)]
        assert sum(w for _, w in got) == pytest.approx(1.0)
        for k in range(3):  # users, positives, negatives: the slices put back together
            assert torch.equal(torch.cat([b[k] for b, w in got if w > 0]), whole[k])


def test_init_process_group_names_the_missing_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ValueError, match="RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set"):
        init_process_group("cpu")


class _Killed(Exception):
    pass


def _worker(rank: int, world: int, port: int, split_dir: str, run_dir: str, out: str) -> None:
    """One rank: train until epoch 2 is saved, 'crash', resume in a fresh trainer, finish."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as dist

    import hqgnn.trainer as trainer_module
    from hqgnn.distributed import DistributedTrainer, init_process_group

    writes: list[str] = []
    real_save = trainer_module.save_checkpoint
    trainer_module.save_checkpoint = lambda path, state: (writes.append(Path(path).name), real_save(path, state))[1]
    ctx = init_process_group("cpu")
    torch.set_num_threads(1)
    cfg, data = TrainConfig(**{**CFG, "nproc": world}), load_split(Path(split_dir))

    def crash_after_2(record: dict[str, Any]) -> None:
        if record["epoch"] == 2:
            raise _Killed

    first = DistributedTrainer(cfg, data, Path(run_dir), ctx, on_epoch=crash_after_2)
    with contextlib.suppress(_Killed):
        first.fit()
    dist.barrier()  # rank 0 has written last.pt
    second = DistributedTrainer(cfg, data, Path(run_dir), ctx)
    second.restore()
    resumed_at = second.epoch
    second.fit()
    torch.save({"embedding": second.model.embedding.detach(), "history": second.history, "writes": writes,
                "best_epoch": second.best_epoch, "resumed_at": resumed_at, "delta": second.delta.as_dict()}, out)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_and_resume(split_dir: Path, single: dict[str, Any], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    outs = [str(tmp_path / f"rank{r}.pt") for r in range(2)]
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, str(split_dir), str(run_dir), outs[r])) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    r0, r1 = (torch.load(o, weights_only=False) for o in outs)

    assert r0["resumed_at"] == r1["resumed_at"] == 2
    assert torch.equal(r0["embedding"], r1["embedding"])  # replicas never drift apart
    assert r0["delta"] == r1["delta"] and r0["delta"]["user"] > 0  # δ broadcast from rank 0
    torch.testing.assert_close(r0["embedding"], single["embedding"], atol=ATOL, rtol=0)
    assert [h["epoch"] for h in r0["history"]] == [1, 2, 3]
    for got, want in zip(r0["history"], single["history"], strict=True):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)  # epoch loss summed over ranks
        assert got["delta_user"] == pytest.approx(want["delta_user"], rel=1e-4)
        assert got["valid_recall@20"] == pytest.approx(want["valid_recall@20"], abs=1e-9)
    assert r0["best_epoch"] == single["best_epoch"]
    assert r1["writes"] == [] and "last.pt" in r0["writes"]  # only rank 0 writes checkpoints
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(["best.pt", "last.pt", "history.json", "history.parquet"])


@pytest.mark.slow
def test_cli_train_nproc_2_runs_torchrun_and_matches_one_process(split_dir: Path, single: dict[str, Any], tmp_path: Path) -> None:
    root = split_dir.parent.parent
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"train": {**CFG, "refine_user_codes": 2}}))  # refinement: rank 0 alone, after the epochs
    hqgnn = Path(sys.executable).parent / "hqgnn"
    cmd = [str(hqgnn), "train", "--nproc", "2", "--run", "ddp", "--workdir", str(root), "--config", str(cfg_file)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = root / "models" / "ddp"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["nproc"] == 2 and summary["backend"] == "gloo" and summary["epochs_run"] == 3
    assert json.loads((run_dir / "config.json").read_text())["config"]["nproc"] == 2
    assert (root / "models" / "latest").resolve() == run_dir.resolve()
    last = torch.load(run_dir / "last.pt", weights_only=False)
    torch.testing.assert_close(last["model"]["embedding"], single["embedding"], atol=ATOL, rtol=0)
    assert load_run(run_dir).best_epoch == single["best_epoch"]  # export/evaluate read it as any run
    assert "code refinement round 1/2" in done.stderr
    assert "code_refinement" in torch.load(run_dir / "best.pt", weights_only=False)

    again = subprocess.run([*cmd[:2], "--resume", *cmd[4:]], capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stderr[-3000:]  # a finished run resumes as a no-op, on 2 processes
    assert "2 processes" in again.stderr and json.loads((run_dir / "summary.json").read_text())["epochs_run"] == 3

    taken = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert taken.returncode == 1 and "already exists" in taken.stderr
