"""Does the item scale need float32? A trained code's test quality with its per-item scales stored
narrower (issue 19: bytes per item).

A b-bit item code ships as ``ceil(b * dim / 8)`` packed bytes plus one float32 scale: 4 of the 12 B
of 1 bit x 64. Stored as float16 or bfloat16 the scale costs 2 B, so 1 bit x 80 + a 2-byte scale
is 12 B as well. This script scores one trained run's codes (train and valid masked, the test
split read once per variant, users as the run scores them: float vectors for a ``float_users``
run, codes otherwise) with the item scales as trained (float32), rounded to float16 and to
bfloat16, and with no scale at all (every item's scale 1: ranking by the sign code alone), so the
cost of a 2-byte scale is measured, not assumed. ``--groups G ...`` (1-bit runs) adds a per-group
scale set after training: the same sign bits, one float16 scale (the mean ``|x|``) per group of
``dim / G`` contiguous dimensions, ``2 G`` bytes::

    .venv/bin/python bench/scale_precision.py --workdir bench/out/quality-work --run RUN [--groups 2 4] [--threads 2]

Prints a markdown table and one JSON line per variant (``variant``, ``scale_bytes``,
``bytes_per_item``, ``recall@20`` ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.split_files import load_split  # noqa: E402
from flows.trained_runs import load_run  # noqa: E402
from hqgnn.bits import is_float  # noqa: E402
from hqgnn.codes import code_bytes  # noqa: E402
from hqgnn.metrics import evaluate_ranking  # noqa: E402

SCALE_STORAGE: dict[str, tuple[torch.dtype | None, int]] = {  # variant -> (storage dtype, bytes per item; None: no scale)
    "float32": (torch.float32, 4), "float16": (torch.float16, 2), "bfloat16": (torch.bfloat16, 2), "none": (None, 0),
}


def stored_scale(scale: torch.Tensor, variant: str) -> torch.Tensor:
    """float32 ``[n]``: the per-item ``scale`` ``[n]`` after a round trip through the variant's
    storage dtype (``none``: all ones)."""
    dtype, _ = SCALE_STORAGE[variant]
    return torch.ones_like(scale) if dtype is None else scale.to(dtype).to(torch.float32)


def group_scaled(items: torch.Tensor, groups: int) -> torch.Tensor:
    """float32 ``[n, d]``: the sign codes of ``items`` ``[n, d]`` times one float16-stored scale per
    row and group of ``d / groups`` contiguous dimensions (the group's mean ``|x|``)."""
    n, d = items.shape
    if groups < 1 or d % groups:
        raise SystemExit(f"--groups {groups}: must divide the code's {d} dimensions")
    parts = items.reshape(n, groups, d // groups)
    scale = parts.abs().mean(dim=-1, keepdim=True).to(torch.float16).to(torch.float32)  # [n, groups, 1]
    return (torch.where(parts >= 0, 1.0, -1.0) * scale).reshape(n, d)


def scale_precision(run_dir: Path, ks: tuple[int, ...] = (20, 50), groups: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """One row per :data:`SCALE_STORAGE` variant, then one per ``groups`` count (1-bit runs): test
    metrics of ``run_dir``'s best checkpoint with its item codes' scales stored that way."""
    run = load_run(run_dir)
    if is_float(run.bits):
        raise SystemExit(f"{run_dir}: a float32 run has no code scales; pass a run with bits < 32")
    data = load_split(run.split_dir)
    item_codes = run.quantize_items()
    user_codes = run.quantize_users()
    assert item_codes is not None
    users = run.user_emb if user_codes is None else user_codes.dequantize()  # [U, d]
    if groups and run.bits != 1:
        raise SystemExit(f"{run_dir}: --groups re-scales sign codes; this run has {run.bits}-bit codes")
    dim = int(item_codes.codes.shape[1])
    tables = {variant: (item_codes.codes.to(torch.float32) * stored_scale(item_codes.scale, variant)[:, None], scale_bytes)
              for variant, (_, scale_bytes) in SCALE_STORAGE.items()}  # [I, d] each
    tables |= {f"float16 x {g} groups": (group_scaled(run.item_emb, g), 2 * g) for g in groups}
    rows = []
    for variant, (items, scale_bytes) in tables.items():
        metrics = evaluate_ranking(lambda b, items=items: users[b] @ items.T, data.test, [data.train, data.valid], ks, 1024)
        rows.append({"run": run_dir.name, "variant": variant, "bits": run.bits, "dim": dim, "float_users": user_codes is None,
                     "scale_bytes": scale_bytes, "bytes_per_item": code_bytes(run.bits, dim) + scale_bytes, **metrics})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="the work directory holding models/RUN")
    ap.add_argument("--run", required=True, help="a trained quantized run (bits < 32)")
    ap.add_argument("--groups", type=int, nargs="*", default=[], help="1-bit runs: also per-group float16 scales, G groups per item")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = scale_precision(args.workdir / "models" / args.run, groups=tuple(args.groups))
    print("| scale stored as | bytes / item | test R@20 | test N@20 | test R@50 |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['bytes_per_item']} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {r['recall@50']:.4f} |")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
