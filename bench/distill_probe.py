"""Probe (issue 19): ranking distillation from the float parent into a quantized fine-tune (BiGeaR's idea).

A warm run's parent is a trained float model. At the start its propagated outputs rank every item
for every user; each user's top ``R`` items not in train are the *teacher's positives*
(``[num_users, R]``). Every step then adds, per batch user, one teacher item drawn with weight
``exp(-r / decay)`` over its teacher rank ``r``, scored against the step's first uniform negative
with the same quantizer as the main term::

    loss = BPR(u, pos, neg) + weight * BPR(u, teacher item, neg) + l2 * reg   (no L2 on the teacher rows)

It runs ``bench/quality.py`` with the training stage's trainer replaced by :class:`DistillTrainer`,
so the library is unchanged; three flags of its own come first::

    flock /tmp/bench.lock env OMP_NUM_THREADS=2 .venv/bin/python bench/distill_probe.py \\
        --distill-top 50 --distill-weight 1.0 --distill-decay 10 QUALITY_FLAGS --init-from FLOAT_RUN

Limits (a probe): a warm start from a float model is required (``--init-from``), one uniform
negative per positive (no ``--negative-candidates``/``--bpr-negatives``), no ``--resume`` (the
teacher is computed from the warm start's table).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

import flows.stages.train as train_stage  # noqa: E402
from hqgnn.estimators import straight_through  # noqa: E402
from hqgnn.interactions import InteractionMatrix  # noqa: E402
from hqgnn.loss import bpr_loss, l2_penalty  # noqa: E402
from hqgnn.metrics import exclusion_mask  # noqa: E402
from hqgnn.trainer import Trainer  # noqa: E402

SETTINGS = {"top": 50, "weight": 1.0, "decay": 10.0}  # set by the command line (main)


@torch.no_grad()
def teacher_positives(users: Tensor, items: Tensor, train: InteractionMatrix, top: int, batch: int = 2048) -> Tensor:
    """int64 ``[U, top]``: each user's ``top`` highest-scored items under ``users @ items.T``
    (float ``[U, d]``, ``[I, d]``), its train items excluded, best first."""
    out = []
    for start in range(0, users.shape[0], batch):
        rows = torch.arange(start, min(start + batch, users.shape[0]))
        scores = users[rows] @ items.T
        mask = exclusion_mask(rows, [train])
        if mask is not None:
            scores.masked_fill_(mask, float("-inf"))
        out.append(torch.topk(scores, top, dim=1).indices)
    return torch.cat(out)


class DistillTrainer(Trainer):
    """:class:`hqgnn.trainer.Trainer` with the teacher's positives in every step (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if kwargs.get("initial_embedding") is None:
            raise SystemExit("distill probe: needs a warm start from a float model (--init-from RUN, not --resume)")
        if self.cfg.negative_candidates > 1 or self.cfg.bpr_negatives > 1 or self.cfg.loss != "bpr":
            raise SystemExit("distill probe: BPR with one uniform negative per positive only")
        top, self.weight = int(SETTINGS["top"]), float(SETTINGS["weight"])
        self.teacher = teacher_positives(*self.model(self.adj), self.data.train, top)  # the parent's ranking
        self.rank_weight = torch.exp(-torch.arange(top, dtype=torch.float32, device=self.device) / SETTINGS["decay"])

    def step(self, users: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        """:meth:`Trainer.step` (BPR + L2) plus ``weight`` x BPR of one teacher positive per user."""
        out = self.model.propagate(self.adj)
        offset, b = self.data.num_users, users.numel()
        neg = neg if neg.dim() == 1 else neg[:, 0]
        rank = torch.multinomial(self.rank_weight.expand(b, -1), 1, generator=self.generator).squeeze(1)
        rows = torch.cat([users, pos + offset, neg + offset, self.teacher[users, rank] + offset])
        u, items = out[rows].split([b, 3 * b])
        if self.quantizing:
            delta_u, delta_i = self.estimator_delta
            if self.cfg.quantizes_users:
                u = straight_through(u, self.cfg.bits, delta_u, check=False)
            items = straight_through(items, self.cfg.bits, delta_i, check=False)
        p, n, t = items.split(b)
        weight = torch.full((rows.numel(),), 1.0 / b, device=rows.device)
        weight[3 * b:] = 0.0  # L2 as in the plain step: the teacher rows add none
        reg = l2_penalty(self.model.embedding, rows, weight)
        loss = bpr_loss(u, p, n) + self.weight * bpr_loss(u, t, n) + self.cfg.l2 * reg
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
    ap.add_argument("--distill-top", type=int, default=SETTINGS["top"])
    ap.add_argument("--distill-weight", type=float, default=SETTINGS["weight"])
    ap.add_argument("--distill-decay", type=float, default=SETTINGS["decay"])
    args, rest = ap.parse_known_args()
    if "--resume" in rest:
        sys.exit("distill probe: no --resume (the teacher comes from the warm start)")
    SETTINGS.update(top=args.distill_top, weight=args.distill_weight, decay=args.distill_decay)
    train_stage.Trainer = DistillTrainer  # type: ignore[misc]
    import quality

    sys.argv = [sys.argv[0], *rest]
    quality.main()
    print(f"distill probe: top {args.distill_top}, weight {args.distill_weight}, decay {args.distill_decay}")


if __name__ == "__main__":
    os.environ.setdefault("DO_NOT_TRACK", "1")
    main()
