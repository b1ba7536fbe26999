"""Data-parallel training over ``torch.distributed`` (NCCL on GPUs, gloo on CPUs).

Every rank holds the whole graph, the whole embedding table and the same Adam state; what is
split is each BPR batch. All ranks draw the same global epoch from the same seeded sampler, and
rank ``r`` of ``W`` takes the ``r``-th contiguous slice of every global batch (:func:`shard_bounds`).
After the backward, one ``all_reduce`` sums the embedding gradients weighted by each shard's
share of the global batch (``n_r / B``), so every rank applies exactly the gradient of the
global batch: a W-process run equals a one-process run with the same ``batch_size`` up to float
rounding (``batch_size`` stays the *global* batch; raise it with W to take fewer, larger steps).

Why an explicit ``all_reduce`` in a gradient hook, not ``DistributedDataParallel``:

- the model is one parameter, the ``[N, d]`` table, used twice per step (propagation and the L2
  term on layer-0 rows) outside ``forward``; DDP wants every use inside its wrapper's forward,
  and with one parameter its bucketing and compute/communication overlap bring nothing;
- DDP averages ranks equally; the last batch of an epoch rarely splits evenly, so equal
  averaging would differ from one process. The weights ``n_r / B`` keep it exact;
- the gradient is dense: LightGCN's ``dE0 = P(Â) dE`` spreads a batch's gradient over the L-hop
  neighbourhood of its rows (most of the graph at B = 2048, L = 3), so a sparse all-reduce
  (``nn.Embedding(sparse=True)`` style) would move more bytes than the dense one.
  Communication per step is one dense all-reduce of ``4·N·d`` bytes (docs/scaling.md).

Rank 0 alone estimates GSTE's δ and evaluates validation metrics and broadcasts both (so every
rank takes the same early-stopping decision); rank 0 alone writes checkpoints and history, and
alone refines 1-bit user codes after the last epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from hqgnn.dataset import SplitData
from hqgnn.delta import DeltaState
from hqgnn.recipe import TrainRecipe
from hqgnn.sampler import BPRSampler
from hqgnn.trainer import Trainer, resolve_device

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str  # "nccl" | "gloo"


def init_process_group(device: str = "auto", timeout_s: float = 1800.0) -> DistContext:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). CUDA: ``cuda:LOCAL_RANK`` with NCCL;
    CPU: gloo, with ``cpu_count // local_world_size`` intra-op threads per process."""
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise ValueError(f"init_process_group reads the environment torchrun sets ({', '.join(TORCHRUN_ENV)}); "
                         f"{', '.join(missing)} not set: start this process with torchrun")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    return DistContext(rank, world, local, dev, backend)


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, end)`` of rank ``rank``'s contiguous slice of ``n`` rows; sizes differ by at most 1.

    Example:
        >>> [shard_bounds(5, 2, r) for r in range(2)]
        [(0, 3), (3, 5)]
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class ShardedSampler:
    """A :class:`BPRSampler` seen by one rank: the same global epoch on every rank, this rank's
    slice of each global batch. ``weight`` is the current slice's share ``n_r / B`` of its batch
    (0 for a placeholder one-row slice when the batch has fewer rows than ranks)."""

    def __init__(self, sampler: BPRSampler, rank: int, world_size: int) -> None:
        self.sampler, self.rank, self.world_size = sampler, rank, world_size
        self.epoch_size = sampler.epoch_size
        self.weight = 1.0
        self.rows, self.slice = 0, slice(0, 0)  # the current global batch's size and this rank's rows of it

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` whole (unsharded) triples, as :meth:`BPRSampler.sample` (used for δ)."""
        return self.sampler.sample(n, generator)

    def is_positive(self, users: Tensor, items: Tensor) -> Tensor:
        return self.sampler.is_positive(users, items)

    def epoch(self, batch_size: int, candidates: int = 1) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """This rank's int64 ``[n_r]`` slices of each global batch of ``batch_size`` triples
        (negatives ``[n_r, candidates]`` with ``candidates > 1``)."""
        for users, pos, neg in self.sampler.epoch(batch_size, candidates):
            b = users.numel()
            start, end = shard_bounds(b, self.world_size, self.rank)
            self.weight = (end - start) / b
            if end == start:  # fewer rows than ranks: a placeholder row whose gradient weighs 0
                start, end = 0, 1
            self.rows, self.slice = b, slice(start, end)
            yield users[start:end], pos[start:end], neg[start:end]


class DistributedTrainer(Trainer):
    """:class:`Trainer` on one rank of a process group (see the module docstring).

    Same arguments as :class:`Trainer`, with ``ctx`` (from :func:`init_process_group`) in place
    of the device. ``on_epoch`` / ``on_step`` run on every rank; callers print on rank 0 only.
    """

    def __init__(
        self,
        cfg: TrainRecipe,
        data: SplitData,
        run_dir: Path,
        ctx: DistContext,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        on_refine: Callable[[dict[str, Any]], None] | None = None,
        initial_embedding: Tensor | None = None,
        teacher_embedding: Tensor | None = None,
        teacher_layers: int | None = None,
    ) -> None:
        super().__init__(cfg, data, run_dir, ctx.device, on_epoch, on_step, on_refine, initial_embedding, teacher_embedding, teacher_layers)
        self.ctx = ctx
        self.writes_files = ctx.rank == 0
        self.shards = ShardedSampler(self.sampler, ctx.rank, ctx.world_size)
        self.sampler = self.shards  # type: ignore[assignment]  # the loop iterates this rank's slices
        dist.broadcast(self.model.embedding.data, src=0)  # seeded (or warm-started) alike already; make it certain
        self.model.embedding.register_post_accumulate_grad_hook(self._all_reduce_grad)

    def _all_reduce_grad(self, param: Tensor) -> None:
        """``grad ← Σ_r (n_r / B) grad_r``: the gradient of the global batch, on every rank."""
        assert param.grad is not None
        param.grad.mul_(self.shards.weight)
        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)

    def step(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        loss = super().step(users, pos, neg)
        return loss if self.shards.weight > 0 else loss * 0.0  # a placeholder row adds no loss

    def _teacher_ranks(self, n: int) -> Tensor:
        """This rank's rows of the teacher ranks drawn for the whole global batch: every rank draws
        alike, so a distilling run on N processes takes the single process's teacher items."""
        return super()._teacher_ranks(self.shards.rows)[..., self.shards.slice]

    def evaluate(self, split: str = "valid") -> dict[str, float]:
        """Rank 0 evaluates, every rank gets its metrics (one early-stopping decision for all)."""
        box: list[Any] = [super().evaluate(split) if self.ctx.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _estimate_delta(self, epoch: int) -> DeltaState:
        """Rank 0 estimates δ, every rank gets exactly its value."""
        box: list[Any] = [super()._estimate_delta(epoch).as_dict() if self.ctx.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return DeltaState.from_dict(box[0])

    def _record(self, epoch: int, loss: float, lr: float, valid: dict[str, float] | None, seconds: float) -> dict[str, Any]:
        """History row with the epoch loss summed over ranks (each rank's is its shards' part)."""
        t = torch.tensor([loss], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return super()._record(epoch, float(t), lr, valid, seconds)
