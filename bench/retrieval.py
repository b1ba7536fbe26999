"""Retrieval benchmark: float32 brute force vs 1-, 2-, 4- and 8-bit codes (and float users), in one run.

N items x 64 dims (default 1 M), 256 queries, top-50 over all items (no masking), on the CPU:

- ``fp32``: torch matmul + topk over float32 item embeddings, in query batches (the baseline);
  ``fp32_blocked``: hqgnn's float path (item blocks, block top-K, merge), to separate what
  blocking gains from what the bit width gains;
- ``1bit``: FAISS IndexBinaryFlat, pure Hamming distance (XOR + popcount, heap top-K);
  ``1bit_scaled``: the exact model score s_i (d - 2H) via hqgnn.scaled_hamming (FAISS heap
  search per scale bucket + certificate; the share of certified queries is printed);
- ``2bit``, ``4bit``, ``8bit``: hqgnn.retrieval, integer inner product x item scale (int8 codes
  in float GEMM item blocks);
- ``1bit_floatusers``, ``2bit_floatusers``, ``4bit_floatusers`` (``float_users`` runs): float32
  queries against b-bit item codes, ``s_i <e_u, q_i>`` via ``Retriever(CodeTable.from_float(queries),
  item_codes)`` (float GEMM over item blocks; 1-bit items stay packed and are unpacked one block at
  a time, b-bit items are int8). The user side then ships ``4 * dim`` bytes per user.

Timing: one warm-up call of each method, then ``--repeats`` rounds that call every method once
in turn (round-robin, so a slow spell on a shared machine hits all methods alike); the median
per method is reported. Bytes per item are the bytes the method scans per item (the scale's 4
bytes are counted where the score uses it). The last line:
``speedup_1bit_vs_fp32=<ratio> speedup_4bit_vs_fp32=<ratio> bytes_ratio_1bit=<ratio>
speedup_1bit_floatusers_vs_fp32=<ratio> speedup_2bit_floatusers_vs_fp32=<ratio>
ratio_1bit_floatusers_vs_1bit=<ratio> ratio_1bit_floatusers_vs_1bit_scaled=<ratio>`` (the
``ratio_*`` are time ratios: how many times longer the float-users path takes than the
symmetric 1-bit popcount path).

    .venv/bin/python bench/retrieval.py --items 1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from timing import interleaved_medians  # noqa: E402  (bench/ is the script's folder)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.split_files import load_split  # noqa: E402
from flows.trained_runs import load_run  # noqa: E402
from hqgnn.codes import CodeTable, code_bytes  # noqa: E402
from hqgnn.interactions import InteractionMatrix  # noqa: E402
from hqgnn.metrics import exclusion_mask  # noqa: E402
from hqgnn.quant import quantize  # noqa: E402
from hqgnn.retrieval import Retriever  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--query-batch", type=int, default=32, help="queries per fp32 matmul+topk batch (32 was fastest here)")
    p.add_argument("--hnsw", action="store_true", help="add 1bit_hnsw: FAISS IndexBinaryHNSW (approximate; build time printed)")
    p.add_argument("--hnsw-ef", type=int, default=128, help="HNSW search breadth (efSearch)")
    p.add_argument("--run", type=Path, help="a trained run folder (models/<run>): its float embeddings instead of random ones, "
                   "--queries random users as queries, their train items masked in every method")
    args = p.parse_args()
    g = torch.Generator().manual_seed(0)
    exclude: list[InteractionMatrix] = []
    if args.run:
        run = load_run(args.run)
        items = run.item_emb
        pick = torch.sort(torch.randperm(run.num_users, generator=g)[: args.queries]).values
        queries = run.float_user_emb[pick]  # the encoder's outputs (every width is quantized from them here)
        train = load_split(run.split_dir).train
        rows = [train.indices[train.indptr[u] : train.indptr[u + 1]].numpy() for u in pick.tolist()]
        exclude = [InteractionMatrix.from_pairs(np.repeat(np.arange(len(rows)), [len(r) for r in rows]),
                                                np.concatenate(rows), len(rows), run.num_items)]
        print(f"run={run.name} ({run.bits} bit(s)): {run.num_items} items, {len(rows)} random users, "
              f"{sum(len(r) for r in rows)} train items masked")
    else:
        items, queries = torch.randn(args.items, args.dim, generator=g), torch.randn(args.queries, args.dim, generator=g)
    (n, d), nq, k = items.shape, queries.shape[0], args.k
    print(f"items={n} dim={d} queries={nq} k={k} threads torch={torch.get_num_threads()} faiss={faiss.omp_get_max_threads()}")

    def fp32() -> None:
        for s in range(0, nq, args.query_batch):
            scores = queries[s : s + args.query_batch] @ items.T
            mask = exclusion_mask(torch.arange(s, min(s + args.query_batch, nq)), exclude)
            if mask is not None:
                scores.masked_fill_(mask, float("-inf"))
            torch.topk(scores, k, dim=1)

    tables = {32: (CodeTable.from_float(queries.numpy()), CodeTable.from_float(items.numpy()))}
    for bits in (1, 2, 4, 8):
        qi, qq = quantize(items, bits), quantize(queries, bits)
        tables[bits] = (
            CodeTable.from_values(qq.codes.numpy(), qq.scale.numpy(), bits),
            CodeTable.from_values(qi.codes.numpy(), qi.scale.numpy(), bits),
        )
    qs = np.arange(nq)
    ham = Retriever(*tables[1], rank_by="hamming")
    scaled = Retriever(*tables[1], rank_by="score")
    nbytes = {"fp32": 4 * d, "fp32_blocked": 4 * d, "1bit": code_bytes(1, d), "1bit_scaled": code_bytes(1, d) + 8}  # + scale, bucket-order permutation
    blocked = {bits: Retriever(*tables[bits]) for bits in (32, 2, 4, 8)}
    methods = {"fp32": fp32, "fp32_blocked": lambda: blocked[32].topk(qs, k, exclude, batch_size=nq)}
    methods["1bit"] = lambda: ham.topk(qs, k, exclude, batch_size=nq)
    methods["1bit_scaled"] = lambda: scaled.topk(qs, k, exclude, batch_size=nq)
    for bits in (2, 4, 8):
        methods[f"{bits}bit"] = lambda r=blocked[bits]: r.topk(qs, k, exclude, batch_size=nq)
        nbytes[f"{bits}bit"] = d + 4
    floatusers = {bits: Retriever(tables[32][0], tables[bits][1]) for bits in (1, 2, 4)}  # float32 queries x item codes
    for bits, r in floatusers.items():
        methods[f"{bits}bit_floatusers"] = lambda r=r: r.topk(qs, k, exclude, batch_size=nq)
        nbytes[f"{bits}bit_floatusers"] = (code_bytes(1, d) if bits == 1 else d) + 4  # packed 1-bit codes / int8, + scale
    if args.hnsw:
        t0 = time.perf_counter()
        hnsw = Retriever(*tables[1], rank_by="hamming", hamming_index="hnsw", hnsw_ef_search=args.hnsw_ef)
        print(f"1bit_hnsw: graph build {time.perf_counter() - t0:.1f} s (M 32, efSearch {args.hnsw_ef})")
        methods["1bit_hnsw"] = lambda: hnsw.topk(qs, k, exclude, batch_size=nq)
        nbytes["1bit_hnsw"] = code_bytes(1, d)
    seconds = interleaved_medians(methods, args.repeats)
    results = {name: (seconds[name], nbytes[name]) for name in methods}
    certified = scaled.certified_share  # of its last timed call (the full batch)

    # overlap of each method's top-k with the float top-k (a sanity check, not a target)
    head = queries[:32] @ items.T
    head_mask = exclusion_mask(torch.arange(min(32, nq)), exclude)
    truth = torch.topk(head.masked_fill(head_mask, float("-inf")) if head_mask is not None else head, k, dim=1).indices.numpy()
    overlap = {
        "fp32_blocked": blocked[32].topk(qs[:32], k, exclude)[0],
        "1bit": ham.topk(qs[:32], k, exclude)[0],
        "1bit_scaled": scaled.topk(qs[:32], k, exclude)[0],
        **{f"{b}bit": blocked[b].topk(qs[:32], k, exclude)[0] for b in (2, 4, 8)},
        **{f"{b}bit_floatusers": r.topk(qs[:32], k, exclude)[0] for b, r in floatusers.items()},
    }
    if args.hnsw:  # HNSW is approximate: also its recall of the exact Hamming top-k distances
        overlap["1bit_hnsw"] = hnsw.topk(qs[:32], k, exclude)[0]
        exact_d, approx_d = ham.topk(qs, k, exclude)[1], hnsw.topk(qs, k, exclude)[1]
        print(f"1bit_hnsw: recall of the exact Hamming top-{k} (distance ≤ the exact k-th) = "
              f"{np.mean(approx_d <= exact_d[:, -1:]):.3f}")
    base_t = results["fp32"][0]
    print(f"{'method':<16} {'median s':>9} {'ms/query':>9} {'speedup':>8} {'B/item':>7} {'x smaller':>9}  overlap@{k} with fp32")
    for name, (secs, nbytes) in results.items():
        ov = overlap.get(name)
        ov_s = f"{np.mean([len(set(a) & set(b)) / k for a, b in zip(ov, truth, strict=True)]):.3f}" if ov is not None else ""
        print(f"{name:<16} {secs:>9.3f} {1000 * secs / nq:>9.3f} {base_t / secs:>8.2f} {nbytes:>7} {4 * d / nbytes:>9.1f}  {ov_s}")
    print(f"note: 2/4-bit codes are scanned as int8 ({d} B/item); packed on disk they take "
          f"{code_bytes(2, d)}/{code_bytes(4, d)} B (+4 B scale)")
    print(f"1bit_scaled: {certified:.3f} of queries certified exact without brute force")
    print(f"floatusers: items scanned {code_bytes(1, d)} B packed + 4 B scale (1 bit), {d} B int8 + 4 B (2/4 bit); "
          f"users ship {4 * d} B each (float32) instead of {code_bytes(1, d)} B (1-bit codes)")
    print(f"load_average={os.getloadavg()[0]:.2f} "
          + " ".join(f"speedup_{name}_vs_fp32={base_t / results[name][0]:.2f}" for name in results if name != "fp32"))
    s1 = base_t / results["1bit"][0]
    s4 = base_t / results["4bit"][0]
    fu1, fu2 = results["1bit_floatusers"][0], results["2bit_floatusers"][0]
    print(f"speedup_1bit_vs_fp32={s1:.2f} speedup_4bit_vs_fp32={s4:.2f} bytes_ratio_1bit={4 * d / code_bytes(1, d):.1f} "
          f"speedup_1bit_floatusers_vs_fp32={base_t / fu1:.2f} speedup_2bit_floatusers_vs_fp32={base_t / fu2:.2f} "
          f"ratio_1bit_floatusers_vs_1bit={fu1 / results['1bit'][0]:.2f} "
          f"ratio_1bit_floatusers_vs_1bit_scaled={fu1 / results['1bit_scaled'][0]:.2f}")


if __name__ == "__main__":
    main()
