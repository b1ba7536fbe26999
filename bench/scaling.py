"""Per-unit costs for docs/scaling.md: propagation, training step/epoch, 1-bit retrieval vs size.

Synthetic bipartite graphs (uniform random pairs; users = nnz / 25, items = nnz / 20, about
Gowalla's degrees) at growing numbers of train interactions. For each size:

- ``adj_s``: building the normalised adjacency (:func:`hqgnn.graph.normalized_adjacency`);
- ``prop_ms``: 3-layer LightGCN propagation forward + backward (:func:`hqgnn.propagation.lightgcn_propagate`),
  d = 64, median of ``--repeats``;
- ``step_ms``: one training step of :class:`hqgnn.trainer.Trainer` (1 bit, GSTE with δ > 0,
  batch 2048: full propagation, gather, BPR + L2, backward, Adam), median of ``--steps``;
- ``epoch_s``: one whole epoch (nnz / 2048 steps, sampling included) where nnz <= ``--epoch-max``,
  else ``-`` (docs/scaling.md extrapolates steps x step_ms, labelled as such);
- memory: exact bytes of the embedding table, its gradient and Adam's two moments (each
  ``4 N d``), the CSR adjacency (``2 nnz`` values + column indices + row pointers), and the
  process's RSS after the steps (psutil; includes the Python/torch baseline).

Then 1-bit retrieval over ``--items`` random items (d = 64: 8 B code + 4 B scale per item):
FAISS IndexBinaryFlat (pure Hamming, top-50) and the exact score ``s_i (d - 2H)`` path of
:class:`hqgnn.retrieval.Retriever`, per query. The load average (1 min) is printed beside every
row: the machine is shared. Usage::

    .venv/bin/python bench/scaling.py [--sizes 100000,1000000,3000000] [--items 100000,1000000]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from timing import median_seconds  # noqa: E402  (bench/ is the script's folder)

from flows.config import TrainConfig
from hqgnn.codes import CodeTable
from hqgnn.dataset import SplitData
from hqgnn.delta import DeltaState
from hqgnn.graph import normalized_adjacency
from hqgnn.interactions import InteractionMatrix
from hqgnn.propagation import lightgcn_propagate
from hqgnn.retrieval import Retriever
from hqgnn.trainer import Trainer

DIM, LAYERS, BATCH = 64, 3, 2048


def load() -> float:
    return os.getloadavg()[0]


def synthetic(nnz: int, seed: int = 0) -> SplitData:
    """Uniform random user-item pairs (duplicates collapsed, so nnz is slightly below target)."""
    n_u, n_i = max(nnz // 25, 10), max(nnz // 20, 10)
    rng = np.random.default_rng(seed)
    train = InteractionMatrix.from_pairs(rng.integers(0, n_u, nnz), rng.integers(0, n_i, nnz), n_u, n_i)
    empty = InteractionMatrix.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), n_u, n_i)
    return SplitData(train, empty, empty, n_u, n_i, np.array([]), np.array([]), f"synthetic-{nnz}", Path("."), {})



def graph_row(nnz: int, repeats: int, steps: int, epoch_max: int, tmp: Path) -> dict[str, float]:
    data = synthetic(nnz)
    n = data.num_users + data.num_items
    t0 = time.perf_counter()
    adj = normalized_adjacency(data.train)
    adj_s = time.perf_counter() - t0

    x = (torch.randn(n, DIM) * 0.1).requires_grad_(True)
    g = torch.randn(n, DIM)

    def prop() -> None:
        x.grad = None
        (lightgcn_propagate(adj, x, LAYERS) * g).sum().backward()

    prop_s = median_seconds(prop, repeats)
    x.grad = None

    cfg = TrainConfig(bits=1, estimator="gste", dim=DIM, layers=LAYERS, batch_size=BATCH, device="cpu", epochs=1)
    trainer = Trainer(cfg, data, tmp, torch.device("cpu"))
    trainer.delta = DeltaState(user=0.5, item=0.5)  # the GSTE backward path, not the plain STE
    batches = trainer.sampler.epoch(BATCH)
    step_times = []
    for k, (u, p, q) in enumerate(batches):
        t0 = time.perf_counter()
        trainer.step(u, p, q)
        if k:
            step_times.append(time.perf_counter() - t0)
        if k >= steps:
            break
    step_s = statistics.median(step_times)
    epoch_s = float("nan")
    if data.train.nnz <= epoch_max:
        t0 = time.perf_counter()
        for u, p, q in trainer.sampler.epoch(BATCH):
            trainer.step(u, p, q)
        epoch_s = time.perf_counter() - t0
    table = 4 * n * DIM
    adj_bytes = adj.values().numel() * 4 + adj.col_indices().numel() * 4 + adj.crow_indices().numel() * 4
    return {
        "nnz": data.train.nnz, "nodes": n, "adj_s": adj_s, "prop_ms": 1e3 * prop_s, "step_ms": 1e3 * step_s,
        "steps_per_epoch": math.ceil(data.train.nnz / BATCH), "epoch_s": epoch_s,
        "table_mb": table / 2**20, "train_state_mb": 4 * table / 2**20,  # table + grad + Adam m, v
        "adj_mb": adj_bytes / 2**20, "rss_mb": psutil.Process().memory_info().rss / 2**20, "load": load(),
    }


def retrieval_row(n_items: int, queries: int, exact_queries: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    items = CodeTable.from_values(np.where(rng.random((n_items, DIM)) < 0.5, -1, 1), rng.random(n_items) + 0.5, 1)
    users = CodeTable.from_values(np.where(rng.random((queries, DIM)) < 0.5, -1, 1), rng.random(queries) + 0.5, 1)
    q = np.arange(queries)
    ham = Retriever(users, items, rank_by="hamming")
    ham_s = median_seconds(lambda: ham.topk(q, 50), 3) / queries
    exact = Retriever(users, items, rank_by="score")
    qe = np.arange(exact_queries)
    exact_s = median_seconds(lambda: exact.topk(qe, 50), 3) / exact_queries
    return {"items": n_items, "bytes_per_item": items.bytes_per_row + 4, "index_mb": n_items * (items.bytes_per_row + 4) / 2**20,
            "hamming_ms_per_query": 1e3 * ham_s, "exact_ms_per_query": 1e3 * exact_s,
            "ns_per_item_hamming": 1e9 * ham_s / n_items, "ns_per_item_exact": 1e9 * exact_s / n_items, "load": load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000,3000000", help="train interactions, comma-separated")
    ap.add_argument("--items", default="100000,1000000", help="items for 1-bit retrieval, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--epoch-max", type=int, default=1_000_000, help="largest nnz timed for a whole epoch")
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--exact-queries", type=int, default=32)
    args = ap.parse_args()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"hqgnn-scaling-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus; d={DIM}, L={LAYERS}, batch={BATCH}; load at start {load():.1f}", flush=True)
    print(f"{'nnz':>9} {'nodes':>9} {'adj_s':>6} {'prop_ms':>8} {'step_ms':>8} {'steps/ep':>8} {'epoch_s':>8} "
          f"{'table_MB':>8} {'state_MB':>8} {'adj_MB':>7} {'rss_MB':>7} {'load':>5}", flush=True)
    rows = []
    for nnz in (int(s) for s in args.sizes.split(",")):
        r = graph_row(nnz, args.repeats, args.steps, args.epoch_max, tmp)
        rows.append(r)
        epoch = "-" if math.isnan(r["epoch_s"]) else f"{r['epoch_s']:.1f}"
        print(f"{r['nnz']:>9} {r['nodes']:>9} {r['adj_s']:>6.2f} {r['prop_ms']:>8.1f} {r['step_ms']:>8.1f} {r['steps_per_epoch']:>8} "
              f"{epoch:>8} {r['table_mb']:>8.1f} {r['train_state_mb']:>8.1f} {r['adj_mb']:>7.1f} {r['rss_mb']:>7.0f} {r['load']:>5.1f}", flush=True)
    print(f"{'items':>9} {'B/item':>6} {'index_MB':>8} {'ham_ms/q':>9} {'exact_ms/q':>10} {'ns/item_ham':>11} {'ns/item_exact':>13} {'load':>5}", flush=True)
    rets = []
    for n in (int(s) for s in args.items.split(",")):
        r = retrieval_row(n, args.queries, args.exact_queries)
        rets.append(r)
        print(f"{r['items']:>9} {r['bytes_per_item']:>6} {r['index_mb']:>8.1f} {r['hamming_ms_per_query']:>9.2f} {r['exact_ms_per_query']:>10.2f} "
              f"{r['ns_per_item_hamming']:>11.2f} {r['ns_per_item_exact']:>13.2f} {r['load']:>5.1f}", flush=True)
    big = rows[-1]
    per_nnz_ns = 1e6 * big["prop_ms"] / big["nnz"]
    print(f"summary: prop_ns_per_interaction={per_nnz_ns:.0f} step_ms@{big['nnz']}={big['step_ms']:.0f} "
          f"ham_ns_per_item={rets[-1]['ns_per_item_hamming']:.2f} exact_ns_per_item={rets[-1]['ns_per_item_exact']:.2f} "
          f"bytes_per_item_1bit={rets[-1]['bytes_per_item']} load={load():.1f}", flush=True)


if __name__ == "__main__":
    main()
