"""Training speed: one BPR step (propagation, backward, Adam) of ours vs PyG's LightGCN as documented.

Same data (a LightGCN-format folder: train.txt), d 64, L 3, batch 2048, lr 1e-3, same machine,
run side by side in one process. Each side runs ``--warmup`` untimed steps, then ``--steps``
(ours) / ``--pyg-steps`` (PyG) timed steps; the mean step time is extrapolated to an epoch of
``ceil(|train| / batch)`` steps (a PyG epoch takes ~16 min here, so it is never run whole).

- ours: :meth:`hqgnn.trainer.Trainer.step`, the code the trainer runs (fused symmetric
  propagation over an int32 CSR ``Â``, one gather, BPR + L2 on layer-0 rows, Adam).
- PyG: ``torch_geometric.nn.models.LightGCN`` driven as in PyG's ``examples/lightgcn.py``:
  ``model(edge_index, edge_label_index)`` on the undirected ``edge_index``, positives from a
  shuffled loader over train edges, uniform negatives, ``model.recommendation_loss`` with
  ``node_id=edge_label_index.unique()``, Adam.

    .venv/bin/python bench/train_speed.py --data ../shared/data/gowalla-lightgcn
    .venv/bin/python bench/train_speed.py --data ../shared/data/gowalla-lightgcn --batch-size 32768 --bpr-negatives 4 --ours-only

Last line: ``epoch_s=<ours> pyg_epoch_s=<pyg> epoch_speedup_vs_pyg=<ratio>``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import read_lightgcn  # noqa: E402
from flows.config import TrainConfig  # noqa: E402
from hqgnn.dataset import SplitData  # noqa: E402
from hqgnn.graph import bipartite_edge_index  # noqa: E402
from hqgnn.interactions import InteractionMatrix  # noqa: E402
from hqgnn.trainer import Trainer  # noqa: E402


def read_train(folder: Path) -> InteractionMatrix:
    """``train.txt`` of a LightGCN-format folder as an interaction matrix (ids 0 … max)."""
    u, i = read_lightgcn(folder / "train.txt")
    return InteractionMatrix.from_pairs(u, i, int(u.max()) + 1, int(i.max()) + 1)


def train_only(train: InteractionMatrix) -> SplitData:
    """A split holding only ``train`` (empty valid and test): all that timing training steps needs."""
    empty = InteractionMatrix.from_pairs(np.zeros(0), np.zeros(0), train.num_users, train.num_items)
    return SplitData(train, empty, empty, train.num_users, train.num_items, np.array([]), np.array([]), "bench", Path("."), {})


def time_ours(train: InteractionMatrix, batch: int, warmup: int, steps: int, negatives: int = 1) -> float:
    cfg = TrainConfig(bits=32, batch_size=batch, lr=1e-3, device="cpu", bpr_negatives=negatives)
    trainer = Trainer(cfg, train_only(train), Path("/nonexistent"), torch.device("cpu"))
    batches = [trainer.sampler.sample(batch, candidates=negatives) for _ in range(warmup + steps)]
    for u, p, n in batches[:warmup]:
        trainer.step(u, p, n)
    t0 = time.perf_counter()
    for u, p, n in batches[warmup:]:
        trainer.step(u, p, n)
    return (time.perf_counter() - t0) / steps


def time_pyg(train: InteractionMatrix, batch: int, warmup: int, steps: int) -> float:
    from torch_geometric.nn.models import LightGCN

    num_users, num_items = train.num_users, train.num_items
    edge_index = bipartite_edge_index(train)  # undirected: both directions, items offset
    train_edge_label_index = edge_index[:, : train.nnz]  # user -> item edges
    model = LightGCN(num_nodes=num_users + num_items, embedding_dim=64, num_layers=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(range(train.nnz), shuffle=True, batch_size=batch)
    it = iter(loader)
    elapsed = 0.0
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        index = next(it)
        pos_edge_label_index = train_edge_label_index[:, index]
        neg_edge_label_index = torch.stack([
            pos_edge_label_index[0],
            torch.randint(num_users, num_users + num_items, (index.numel(),)),
        ], dim=0)
        edge_label_index = torch.cat([pos_edge_label_index, neg_edge_label_index], dim=1)
        optimizer.zero_grad()
        pos_rank, neg_rank = model(edge_index, edge_label_index).chunk(2)
        loss = model.recommendation_loss(pos_rank, neg_rank, node_id=edge_label_index.unique())
        loss.backward()
        optimizer.step()
        if k >= warmup:
            elapsed += time.perf_counter() - t0
    return elapsed / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with a LightGCN-format train.txt")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--pyg-steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bpr-negatives", type=int, default=1, help="ours: uniform negatives per positive (TrainConfig.bpr_negatives)")
    ap.add_argument("--ours-only", action="store_true", help="skip PyG (e.g. to compare two commits of ours, side by side)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = read_train(args.data)
    steps_per_epoch = math.ceil(train.nnz / args.batch_size)
    print(f"data {args.data}: {train.num_users} users, {train.num_items} items, {train.nnz} train interactions; "
          f"batch {args.batch_size} -> {steps_per_epoch} steps/epoch; threads {args.threads}", flush=True)
    ours = time_ours(train, args.batch_size, args.warmup, args.steps, args.bpr_negatives)
    print(f"ours: {ours * 1000:.1f} ms/step over {args.steps} steps ({args.bpr_negatives} negative(s) per positive)", flush=True)
    if args.ours_only:
        print(f"epoch_s={ours * steps_per_epoch:.1f}")
        return
    pyg = time_pyg(train, args.batch_size, args.warmup, args.pyg_steps)
    print(f"pyg LightGCN: {pyg * 1000:.1f} ms/step over {args.pyg_steps} steps", flush=True)
    print(f"epoch_s={ours * steps_per_epoch:.1f} pyg_epoch_s={pyg * steps_per_epoch:.1f} epoch_speedup_vs_pyg={pyg / ours:.1f}")


if __name__ == "__main__":
    main()
