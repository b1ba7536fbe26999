"""Paired bootstrap over users: is run B better than run A on validation and on test?

Per-user Recall@20 of each run's best checkpoint (float users against its ``bits``-bit item codes,
fake-quantized as the run ships them; the evaluation's masks: train seen on validation, train and
validation seen on test), the difference B − A per user, and 4,000 resamples of the users for its
standard error and 95 % interval. Both runs must be of the same work folder (the same split).

    .venv/bin/python bench/paired_bootstrap.py bench/out/s12-distill 1 best-fu-distill-product-s2024 t14-we100-s2024
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flows.split_files import load_split  # noqa: E402
from hqgnn.checkpoint import load_checkpoint  # noqa: E402
from hqgnn.metrics import per_user_batches  # noqa: E402
from hqgnn.quant import fake_quantize  # noqa: E402


def per_user_recall(workdir: Path, run: str, bits: int, split: str) -> torch.Tensor:
    """float64 ``[users with a {split} row]``: Recall@20 of ``run``'s best checkpoint."""
    cfg = json.loads((workdir / "models" / run / "config.json").read_text())
    data = load_split((workdir / "models" / run / cfg["split_dir"]).resolve())
    state = load_checkpoint(workdir / "models" / run / "best.pt")
    users_emb, items = state["user_emb"], fake_quantize(state["item_emb"], bits)
    truth = data.valid if split == "valid" else data.test
    seen = [data.train] if split == "valid" else [data.train, data.valid]
    batches = per_user_batches(lambda u: users_emb[u] @ items.T, truth, seen, ks=(20,), batch_size=2048)
    return torch.cat([m["recall@20"] for m in batches]).double()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdir", type=Path)
    p.add_argument("bits", type=int, help="the runs' item code width")
    p.add_argument("base")
    p.add_argument("other")
    p.add_argument("--resamples", type=int, default=4000)
    args = p.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    for split in ("valid", "test"):
        a = per_user_recall(args.workdir, args.base, args.bits, split)
        b = per_user_recall(args.workdir, args.other, args.bits, split)
        d = b - a
        boot = d[torch.randint(0, d.numel(), (args.resamples, d.numel()), generator=g)].mean(1)
        lo, hi = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64))
        print(f"{split}: users {d.numel()} base {a.mean():.4f} other {b.mean():.4f} delta {d.mean():+.4f} "
              f"SE {boot.std():.4f} [{lo:+.4f}, {hi:+.4f}]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
