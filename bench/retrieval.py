"""Retrieval benchmark: float32 brute force vs 1-, 4- and 8-bit codes, in one run.

N items x 64 dims (default 1 M), 256 queries, top-50 over all items (no masking), on the CPU:

- ``fp32``: torch matmul + topk over float32 item embeddings, in query batches (the baseline);
- ``1bit``: FAISS IndexBinaryFlat, pure Hamming distance (XOR + popcount, heap top-K),
  and ``1bit_scaled``: the exact model score s_i (d - 2H) (faiss.hammings + torch topk);
- ``4bit``, ``8bit``: hqgnn.retrieval, integer inner product x item scale (int8 codes).

Each method runs ``--repeats`` times; the median is reported. Bytes per item are the bytes the
method scans per item (the scale's 4 bytes are counted where the score uses it). The last line:
``speedup_1bit_vs_fp32=<ratio> speedup_4bit_vs_fp32=<ratio> bytes_ratio_1bit=<ratio>``.

    .venv/bin/python bench/retrieval.py --items 1000000
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np
import torch
from timing import median_seconds  # noqa: E402  (bench/ is the script's folder)

from hqgnn.codes import CodeTable, code_bytes
from hqgnn.quant import quantize
from hqgnn.retrieval import Retriever


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--query-batch", type=int, default=32, help="queries per fp32 matmul+topk batch (32 was fastest here)")
    args = p.parse_args()
    n, d, nq, k = args.items, args.dim, args.queries, args.k
    print(f"items={n} dim={d} queries={nq} k={k} threads torch={torch.get_num_threads()} faiss={faiss.omp_get_max_threads()}")

    g = torch.Generator().manual_seed(0)
    items, queries = torch.randn(n, d, generator=g), torch.randn(nq, d, generator=g)

    def fp32() -> None:
        for s in range(0, nq, args.query_batch):
            torch.topk(queries[s : s + args.query_batch] @ items.T, k, dim=1)

    results: dict[str, tuple[float, float]] = {"fp32": (median_seconds(fp32, args.repeats), 4 * d)}

    codes = {}
    for bits in (1, 4, 8):
        qi, qq = quantize(items, bits), quantize(queries, bits)
        codes[bits] = (
            CodeTable.from_values(qq.codes.numpy(), qq.scale.numpy(), bits),
            CodeTable.from_values(qi.codes.numpy(), qi.scale.numpy(), bits),
        )
    qs = np.arange(nq)
    ham = Retriever(*codes[1], rank_by="hamming")
    results["1bit"] = (median_seconds(lambda: ham.topk(qs, k, batch_size=nq), args.repeats), code_bytes(1, d))
    scaled = Retriever(*codes[1], rank_by="score")
    results["1bit_scaled"] = (median_seconds(lambda: scaled.topk(qs, k, batch_size=args.query_batch), args.repeats), code_bytes(1, d) + 4)
    for bits in (4, 8):
        r = Retriever(*codes[bits], rank_by="score")
        results[f"{bits}bit"] = (median_seconds(lambda r=r: r.topk(qs, k, batch_size=args.query_batch), args.repeats), d + 4)

    # recall of each method's top-k against the float top-k (a sanity check, not a target)
    truth = torch.topk(queries[:32] @ items.T, k, dim=1).indices.numpy()
    overlap = {
        "1bit": ham.topk(qs[:32], k)[0],
        "1bit_scaled": scaled.topk(qs[:32], k)[0],
    }
    base_t = results["fp32"][0]
    print(f"{'method':<12} {'median s':>9} {'ms/query':>9} {'speedup':>8} {'B/item':>7} {'x smaller':>9}  overlap@{k} with fp32")
    for name, (secs, nbytes) in results.items():
        ov = overlap.get(name)
        ov_s = f"{np.mean([len(set(a) & set(b)) / k for a, b in zip(ov, truth, strict=True)]):.3f}" if ov is not None else ""
        print(f"{name:<12} {secs:>9.3f} {1000 * secs / nq:>9.3f} {base_t / secs:>8.2f} {nbytes:>7} {4 * d / nbytes:>9.1f}  {ov_s}")
    packed4 = code_bytes(4, d)
    print(f"note: 4-bit codes are scanned as int8 ({d} B/item); packed on disk they take {packed4} B (+4 B scale)")
    s1 = base_t / results["1bit"][0]
    s4 = base_t / results["4bit"][0]
    print(f"speedup_1bit_vs_fp32={s1:.2f} speedup_4bit_vs_fp32={s4:.2f} bytes_ratio_1bit={4 * d / code_bytes(1, d):.1f}")


if __name__ == "__main__":
    main()
