"""The training loop: LightGCN + b-bit quantizer, BPR + L2, Adam, GSTE δ, early stopping.

Read top to bottom: :class:`Trainer` builds the graph, model, optimizer and sampler (or restores
them from ``last.pt``), then each epoch (0) switches the quantizer on once an optional float
warm-up (``float_warmup_epochs``) is over, first rotating the embeddings by ITQ
(:mod:`hqgnn.rotation`), (1) re-estimates GSTE's δ every ``delta_every`` quantized epochs,
(2) runs BPR steps over full-graph propagations, (3) evaluates validation Recall/NDCG, (4) keeps
the best checkpoint and writes ``last.pt``, history and progress. After the last epoch, 1-bit
runs may refine the best checkpoint's user codes by greedy bit flips (``refine_user_codes``,
:mod:`hqgnn.code_refinement`). Everything stays on the chosen device; the loop syncs with the
host only once per epoch (loss sum, metrics).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hqgnn.checkpoint import load_checkpoint, save_checkpoint
from hqgnn.code_refinement import refine_user_codes
from hqgnn.dataset import SplitData
from hqgnn.delta import DeltaState, estimate_delta
from hqgnn.distill import TeacherRanking, order_loss, teacher_positives
from hqgnn.encoder import LightGCNEncoder
from hqgnn.estimators import straight_through
from hqgnn.graph import normalized_adjacency
from hqgnn.history import write_history
from hqgnn.loss import bpr_loss, l2_penalty, sampled_softmax_loss
from hqgnn.metrics import evaluate_ranking
from hqgnn.propagation import lightgcn_propagate
from hqgnn.quant import fake_quantize
from hqgnn.recipe import TrainRecipe
from hqgnn.rotation import itq_rotation, rotate_parameter
from hqgnn.sampler import BPRSampler, hardest_negatives

VALID_METRIC = "recall@20"
EVAL_KS = (20, 50)


def resolve_device(name: str) -> torch.device:
    """The device for ``name``: ``auto`` → CUDA when available, else CPU; ``cpu``; ``cuda``
    (a ``ValueError`` when CUDA is not available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda': CUDA is not available on this machine (torch.cuda.is_available() is false); pass 'cpu' or 'auto'")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {name!r}")
    return torch.device(name)


@dataclass
class FitResult:
    """Outcome of :meth:`Trainer.fit`."""

    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    seconds: float
    status: str  # "completed" | "early_stopped"
    history: list[dict[str, Any]] = field(default_factory=list)
    code_refinement: dict[str, Any] | None = None  # the best.pt record of 1-bit user-code refinement, if it ran


class Trainer:
    """Trains one run into ``run_dir`` (``last.pt``, ``best.pt``, ``history.{parquet,json}``).

    ``on_epoch(record)`` is called after each epoch with its history row; ``on_step(done, total)``
    after each optimizer step (no host sync) and, during user-code refinement, after each batch of
    users; ``on_refine(record)`` after each refinement round. ``restore()`` continues from ``last.pt``.
    ``initial_embedding`` ``[num_users + num_items, dim]`` (users first): the layer-0 table to start
    from instead of the random one (a warm start, :mod:`hqgnn.warm_start`); optimizer state is fresh.
    With ``distill_top > 0`` a float model's propagated outputs rank the items once: the teacher of
    :mod:`hqgnn.distill` (kept in ``last.pt`` for a resume). The teacher is ``teacher_embedding``
    ``[num_users + num_items, d_t]`` (a layer-0 table of any width ``d_t``, rows of this data,
    propagated over ``teacher_layers``, default ``cfg.layers``) when given, else the warm start's
    table; a cold run without ``teacher_embedding`` has none.
    Data-parallel runs use :class:`hqgnn.distributed.DistributedTrainer`.
    """

    writes_files = True  # False on ranks > 0 of a distributed run (hqgnn.distributed)
    estimator_delta: tuple[float | Tensor, float | Tensor]  # δ as straight_through takes it (set with `delta`)

    def __init__(
        self,
        cfg: TrainRecipe,
        data: SplitData,
        run_dir: Path,
        device: torch.device,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        on_refine: Callable[[dict[str, Any]], None] | None = None,
        initial_embedding: Tensor | None = None,
        teacher_embedding: Tensor | None = None,
        teacher_layers: int | None = None,
    ) -> None:
        self.cfg, self.data, self.run_dir, self.device = cfg, data, Path(run_dir), device
        self.on_epoch, self.on_step, self.on_refine = on_epoch, on_step, on_refine
        self.quantized = cfg.quantized
        self.quantizing = self.quantized and cfg.float_warmup_epochs == 0  # the quantizer is on in this epoch
        self.candidates = 1  # hard-negative candidates per triple in this epoch (cfg.negative_candidates once hard negatives start)
        self.adj = normalized_adjacency(data.train, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model = LightGCNEncoder(data.num_users, data.num_items, cfg.dim, cfg.layers).to(device)
        if initial_embedding is not None:  # a warm start (hqgnn.warm_start); restore() overwrites it on resume
            want = (data.num_users + data.num_items, cfg.dim)
            if tuple(initial_embedding.shape) != want:
                raise ValueError(f"initial_embedding has shape {tuple(initial_embedding.shape)}, expected {want} (users + items, dim)")
            with torch.no_grad():
                self.model.embedding.copy_(initial_embedding.to(device, torch.float32))
        self.teacher: TeacherRanking | None = None
        source = teacher_embedding if teacher_embedding is not None else initial_embedding  # the warm start's: before any step moves it
        if cfg.distill_top > 0 and source is not None:
            if source.shape[0] != data.num_users + data.num_items:
                raise ValueError(f"teacher_embedding has {source.shape[0]} rows, expected {data.num_users + data.num_items} (users + items)")
            with torch.no_grad():
                out = lightgcn_propagate(self.adj, source.to(device, torch.float32), teacher_layers or cfg.layers)
            users, items = out.split([data.num_users, data.num_items])
            self.teacher = TeacherRanking(teacher_positives(users, items, data.train, cfg.distill_top), cfg.distill_decay)
        self.teacher_generator = torch.Generator(device=device)  # its own stream: the sampler's stays that of a run without a teacher
        self.teacher_generator.manual_seed(cfg.seed + 1_000_003)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, foreach=True)
        self.schedule = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=cfg.epochs, eta_min=cfg.lr_min)
            if cfg.lr_schedule == "cosine" else None
        )
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(cfg.seed)
        self.sampler = BPRSampler(data.train, self.generator, device)
        self.delta = DeltaState()
        self.epoch = 0  # epochs completed
        self.best_epoch, self.best_valid, self.bad_evals = -1, {VALID_METRIC: -math.inf}, 0
        self.history: list[dict[str, Any]] = []
        self.status = "running"
        self.code_refinement: dict[str, Any] | None = None

    @property
    def delta(self) -> DeltaState:
        """GSTE's current δ (zeros before the first estimate; STE runs never estimate it)."""
        return self._delta

    @delta.setter
    def delta(self, state: DeltaState) -> None:
        self._delta = state
        self.estimator_delta = state.for_estimator(self.device)  # per-dimension δ: [d] tensors, made once here

    # --- one step, one evaluation -------------------------------------------------------------
    def step(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """One BPR + L2 step on a batch of int64 ``[B]`` triples (plus the teacher's term when
        distilling, :mod:`hqgnn.distill`); returns the loss (a 0-d tensor)."""
        out = self.model.propagate(self.adj)  # [N, d], users then items
        offset, b = self.data.num_users, users.numel()
        k = 1
        if neg.dim() == 2 and self.cfg.bpr_negatives > 1:  # [B, k] uniform negatives, all in the loss
            k, neg = neg.shape[1], neg.flatten()
        elif neg.dim() == 2:  # [B, k] candidates: keep the hardest under the scores this step trains
            neg = self._hardest(out, users, neg)
        ranks = self._teacher_ranks(b) if self.teacher is not None else None  # [B], [2, B] (order term) or None
        taught = self.teacher.items(users, ranks) if self.teacher is not None and ranks is not None else users[:0]
        rows = torch.cat([users, pos + offset, neg + offset, taught.flatten() + offset])  # one gather: one sparse gradient
        with torch.autocast(self.device.type, enabled=self.cfg.amp and self.device.type == "cuda"):
            u, items = out[rows].split([b, (1 + k) * b + taught.numel()])
            if self.quantizing:
                delta_u, delta_i = self.estimator_delta
                if self.cfg.quantizes_users:  # float_users: the user side trains and ships float
                    u = straight_through(u, self.cfg.bits, delta_u, check=False)  # δ checked once, when set
                items = straight_through(items, self.cfg.bits, delta_i, check=False)
            p, n, t = items.split([b, k * b, taught.numel()])
            if k > 1:
                n = n.view(b, k, -1)
            # users and positives weigh 1/B each; the k negatives of a positive weigh as one, so L2 means what it means at k = 1;
            # the teacher's items add no L2
            weight = torch.full((rows.numel(),), 1.0 / b, device=rows.device)
            weight[2 * b:(2 + k) * b] /= k
            weight[(2 + k) * b:] = 0.0
            reg = l2_penalty(self.model.embedding, rows, weight)
            if self.cfg.loss == "softmax":  # the batch's first M uniform negatives, shared by every row
                rank = sampled_softmax_loss(u, p, n[: self.cfg.softmax_negatives], self.cfg.softmax_temperature)
            else:
                rank = bpr_loss(u, p, n)
            if ranks is not None:  # the teacher's item above the first negative (the recipe allows BPR only)
                t = t.view(*ranks.shape, -1)  # [B, d], or [2, B, d]: the drawn items, then the lower ones
                rank = rank + self.cfg.distill_weight * bpr_loss(u, t if ranks.dim() == 1 else t[0], n if k == 1 else n[:, 0])
                if ranks.dim() == 2:  # ... and above a later item of the teacher's list
                    rank = rank + self.cfg.distill_order_weight * order_loss(u, t[0], t[1], ranks[0] < ranks[1])
            loss = rank + self.cfg.l2 * reg
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _teacher_ranks(self, n: int) -> Tensor:
        """int64 ``[n]``: the teacher rank drawn for each batch row (:mod:`hqgnn.distill`), or ``[2, n]``
        with the lower ranks of the order term (``distill_order_weight > 0``)."""
        assert self.teacher is not None
        return self.teacher.draw(n, self.teacher_generator, lower=self.cfg.distill_order_weight > 0)

    @torch.no_grad()
    def _hardest(self, out: Tensor, users: Tensor, candidates: Tensor) -> Tensor:
        """int64 ``[B]``: of each triple's ``[B, k]`` candidates, the one scored highest by its
        user, with the codes' scores in a quantized epoch (what the loss sees)."""
        u, items = out[users], out[self.data.num_users :]
        if self.quantizing:  # the item table once ([num_items, d]), not its B·k gathered rows
            u, items = self._as_shipped(u, items)
        return hardest_negatives(u, candidates, items[candidates])

    def _as_shipped(self, users: Tensor, items: Tensor) -> tuple[Tensor, Tensor]:
        """Float rows ``[n, d]``, ``[m, d]`` fake-quantized as the run ships them: the items to
        ``bits``, the users too unless ``float_users``."""
        items = fake_quantize(items, self.cfg.bits)
        return (fake_quantize(users, self.cfg.bits) if self.cfg.quantizes_users else users), items

    @torch.no_grad()
    def embeddings(self) -> tuple[Tensor, Tensor]:
        """Float encoder outputs: users ``[num_users, dim]``, items ``[num_items, dim]`` (unit rows
        under the softmax loss, whose scores are cosines)."""
        users, items = self.model(self.adj)
        if self.cfg.loss == "softmax":
            return F.normalize(users, dim=1), F.normalize(items, dim=1)
        return users, items

    @torch.no_grad()
    def evaluate(self, split: str = "valid") -> dict[str, float]:
        """Full-ranking metrics on ``valid`` (train masked) or ``test`` (train and valid masked),
        scored with the codes the run ships (dequantized) or the float embeddings (32 bits)."""
        return self._evaluate_tables(*self.embeddings(), split)

    @torch.no_grad()
    def _evaluate_tables(self, users: Tensor, items: Tensor, split: str) -> dict[str, float]:
        """:meth:`evaluate` of given float outputs ``[U, d]``, ``[I, d]`` (quantized as the run ships them)."""
        if self.quantized:
            users, items = self._as_shipped(users, items)
        truth = self.data.valid if split == "valid" else self.data.test
        exclude = [self.data.train] if split == "valid" else [self.data.train, self.data.valid]
        return evaluate_ranking(lambda b: users[b] @ items.T, truth, exclude, EVAL_KS, 1024, self.device)

    # --- the loop ---------------------------------------------------------------------------
    def fit(self) -> FitResult:
        cfg = self.cfg
        steps = math.ceil(self.sampler.epoch_size / cfg.batch_size)
        while self.epoch < cfg.epochs and self.status == "running":
            epoch, t0 = self.epoch, time.perf_counter()
            self.quantizing = self.quantized and epoch >= cfg.float_warmup_epochs
            if self.quantizing and epoch == cfg.float_warmup_epochs > 0 and cfg.itq_rotation:  # float scores kept, sign codes better
                rotate_parameter(self.model.embedding, itq_rotation(torch.cat(self.embeddings()), seed=cfg.seed), self.optimizer)
            if cfg.estimator == "gste" and self.quantizing and (epoch - cfg.float_warmup_epochs) % cfg.delta_every == 0:
                self.delta = self._estimate_delta(epoch)
            lr = self.optimizer.param_groups[0]["lr"]
            self.candidates = cfg.negative_candidates if epoch >= cfg.hard_negatives_from_epoch else 1
            draws = max(self.candidates, cfg.bpr_negatives)  # or uniform negatives per positive (BPR averages them)
            self.model.train()
            loss_sum = torch.zeros((), device=self.device)
            for k, (u, p, n) in enumerate(self.sampler.epoch(cfg.batch_size, draws)):
                loss_sum += self.step(u, p, n) * u.numel()
                if self.on_step:
                    self.on_step(k + 1, steps)
            if self.schedule is not None:
                self.schedule.step()
            self.model.eval()
            self.epoch += 1
            valid = self.evaluate("valid") if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs else None
            self._track_best(valid)
            seconds = time.perf_counter() - t0
            self.history.append(self._record(epoch, float(loss_sum) / self.sampler.epoch_size, lr, valid, seconds))
            if self.epoch >= cfg.epochs:
                self.status = "completed"
            self.save()
            if self.on_epoch:
                self.on_epoch(self.history[-1])
        if self.status != "running" and self.cfg.refine_user_codes > 0 and self.cfg.user_bits == 1 and self.writes_files:
            self._refine_user_codes()
        seconds = sum(r["epoch_seconds"] for r in self.history)
        return FitResult(self.best_epoch, dict(self.best_valid), self.epoch, seconds, self.status, list(self.history),
                         self.code_refinement)

    @torch.no_grad()
    def _refine_user_codes(self) -> None:
        """Refine ``best.pt``'s user codes (:func:`hqgnn.code_refinement.refine_user_codes`) and write
        the kept ones into it as ``user_emb`` (the encoder's outputs stay as ``encoder_user_emb``) with
        a ``code_refinement`` record, once: a resume after that skips it. Deterministic, so a kill
        during the rounds and a resume end where an uninterrupted run ends."""
        path = self.run_dir / "best.pt"
        state = load_checkpoint(path)
        if "code_refinement" not in state:
            cfg = self.cfg
            items = state["item_emb"].to(self.device)
            refined = refine_user_codes(
                state["user_emb"].to(self.device), items, self.data.train,
                lambda users: self._evaluate_tables(users, items, "valid"), state["valid"], cfg.refine_user_codes,
                cfg.refine_temperature, cfg.refine_top_items, on_batch=self.on_step, on_round=self.on_refine,
            )
            state = {**state, "user_emb": refined.users, "encoder_user_emb": state["user_emb"], "valid": refined.valid,
                     "code_refinement": refined.record}
            save_checkpoint(path, state)
        self.best_valid, self.code_refinement = dict(state["valid"]), state["code_refinement"]

    def _estimate_delta(self, epoch: int) -> DeltaState:
        """GSTE's δ from the current float outputs, seeded by the epoch (a resume re-estimates alike)."""
        users, items = self.embeddings()
        return estimate_delta(users, items, self.sampler, **self.cfg.delta_settings(), seed=self.cfg.seed * 100_003 + epoch)

    def _track_best(self, valid: dict[str, float] | None) -> None:
        if valid is None:
            return
        if valid[VALID_METRIC] > self.best_valid[VALID_METRIC]:
            self.best_epoch, self.best_valid, self.bad_evals = self.epoch, valid, 0
            if not self.writes_files:
                return
            users, items = self.embeddings()
            save_checkpoint(self.run_dir / "best.pt", {
                **self._core_state(), "user_emb": users, "item_emb": items, "valid": valid,
            })
        elif self.quantizing or not self.quantized:  # a float warm-up never stops early: the quantizer has not started
            self.bad_evals += 1
            if self.cfg.patience is not None and self.bad_evals >= self.cfg.patience:
                self.status = "early_stopped"

    def _record(self, epoch: int, loss: float, lr: float, valid: dict[str, float] | None, seconds: float) -> dict[str, Any]:
        done = [r["epoch_seconds"] for r in self.history] + [seconds]
        remaining = self.cfg.epochs - self.epoch if self.status == "running" else 0
        nan = float("nan")
        return {
            "epoch": epoch + 1, "loss": loss, "lr": lr, "quantized": self.quantizing, "negative_candidates": self.candidates,
            "bpr_negatives": self.cfg.bpr_negatives,
            "valid_recall@20": valid["recall@20"] if valid else nan,
            "valid_ndcg@20": valid["ndcg@20"] if valid else nan,
            "delta_user": self.delta.user, "delta_item": self.delta.item,
            "trace_user": self.delta.trace_user, "trace_item": self.delta.trace_item,
            "epoch_seconds": seconds, "eta": remaining * sum(done) / len(done),
        }

    # --- checkpoints --------------------------------------------------------------------------
    def _core_state(self) -> dict[str, Any]:
        return {
            "model_args": self.model.model_args(), "config": self.cfg.model_dump(mode="json"),
            "snapshot": self.data.snapshot, "model": self.model.state_dict(), "epoch": self.epoch,
        }

    def save(self) -> None:
        """Write ``last.pt`` (everything to resume) and the history files, atomically."""
        if not self.writes_files:
            return
        save_checkpoint(self.run_dir / "last.pt", {
            **self._core_state(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict() if self.schedule else None,
            "best": {"epoch": self.best_epoch, "valid": self.best_valid, "bad_evals": self.bad_evals},
            "status": self.status,
            "rng": {"sampler": self.generator.get_state(), "teacher": self.teacher_generator.get_state()},
            "delta": self.delta.as_dict(),
            "history": self.history,
            "teacher": None if self.teacher is None else self.teacher.positives.to(torch.int32),  # item ids < 2^31: half the bytes
        })
        write_history(self.run_dir, self.history)

    def restore(self, path: Path | None = None) -> None:
        """Continue from ``last.pt``: model, optimizer, schedule, RNG, δ, best metric, history."""
        state = load_checkpoint(path or self.run_dir / "last.pt")
        if state["model_args"] != self.model.model_args():
            raise ValueError(f"{path or self.run_dir / 'last.pt'}: model args {state['model_args']} do not match the split/config {self.model.model_args()}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.schedule is not None and state["schedule"] is not None:
            self.schedule.load_state_dict(state["schedule"])
        for name, generator, seed in (("sampler", self.generator, self.cfg.seed), ("teacher", self.teacher_generator, self.cfg.seed + 1_000_003)):
            rng = state["rng"].get(name)  # a CPU byte tensor: the generator state of the device that saved it
            if rng is not None and rng.numel() == generator.get_state().numel():
                generator.set_state(rng)
            else:  # saved on another device type (CPU mt19937 5056 bytes, CUDA Philox 16), or none saved: reseed by epoch
                generator.manual_seed(seed * 100_003 + int(state["epoch"]))
        self.delta = DeltaState.from_dict(state["delta"])
        teacher = state.get("teacher")  # a distilling warm run's teacher: the warm start is not rebuilt on resume
        self.teacher = None if teacher is None else TeacherRanking(teacher.to(self.device, torch.int64), self.cfg.distill_decay)
        self.epoch = int(state["epoch"])
        best = state["best"]
        self.best_epoch, self.best_valid, self.bad_evals = int(best["epoch"]), dict(best["valid"]), int(best["bad_evals"])
        self.history = list(state["history"])
        self.status = state["status"]
