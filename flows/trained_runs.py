"""A trained run as the downstream stages see it (export, evaluation, retrieval).

``models/<run>/config.json`` holds the config, snapshot, split folder and model args;
``best.pt`` holds the float encoder outputs at the best validation epoch (in 1-bit runs with
``refine_user_codes``, the user signs after that refinement: :mod:`hqgnn.code_refinement`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flows.config import TrainConfig
from flows.errors import InputError
from hqgnn.bits import is_float
from hqgnn.checkpoint import load_checkpoint
from hqgnn.codes import CodeTable
from hqgnn.evaluation import code_tables
from hqgnn.quant import QuantizedTable, quantize


@dataclass(frozen=True)
class TrainedRun:
    """The best checkpoint of a run. Scores for ranking: ``dequantized_user @ dequantized_item.T``
    (float embeddings for 32 bits; for 1 bit ``s_u s_i (dim − 2·Hamming)``)."""

    name: str
    path: Path
    config: TrainConfig
    snapshot: str
    split_dir: Path
    num_users: int
    num_items: int
    dim: int
    bits: int
    estimator: str
    user_emb: Tensor  # float32 [num_users, dim]; its signs are the 1-bit codes (refined, if refinement ran)
    item_emb: Tensor  # float32 [num_items, dim]
    best_epoch: int
    best_valid: dict[str, float]
    code_refinement: dict[str, Any] | None = None  # 1-bit user-code refinement record (hqgnn.code_refinement), if it ran
    encoder_user_emb: Tensor | None = None  # float32 [num_users, dim]: the encoder's outputs when refinement changed user_emb's signs

    @property
    def float_user_emb(self) -> Tensor:
        """The encoder's float user outputs ``[num_users, dim]``, what float scoring and re-ranking use
        (``user_emb`` carries the refined signs the codes come from, when refinement ran)."""
        return self.user_emb if self.encoder_user_emb is None else self.encoder_user_emb

    @property
    def user_bits(self) -> int:
        """The width the users ship at: ``bits``, or 32 for a ``float_users`` run."""
        return self.config.user_bits

    def quantize_users(self) -> QuantizedTable | None:
        """Codes of the users (the model's forward quantizer); ``None`` for 32 bits and for the
        float users of a ``float_users`` run."""
        return None if is_float(self.user_bits) else quantize(self.user_emb, self.bits)

    def code_tables(self) -> tuple[CodeTable, CodeTable]:
        """User and item :class:`CodeTable`s as the run ships them (float32 for 32 bits; float32
        users beside the item codes for a ``float_users`` run)."""
        return code_tables(self.user_emb, self.item_emb, self.bits, self.quantize_users(), self.quantize_items())

    def quantize_items(self) -> QuantizedTable | None:
        """Codes of the items (the model's forward quantizer); ``None`` for 32 bits."""
        return None if is_float(self.bits) else quantize(self.item_emb, self.bits)


def run_metadata(run_dir: Path) -> dict[str, Any]:
    """``config.json`` of a run (config, snapshot, split_dir relative to the run, model args)."""
    from flows.integrity import read_manifest

    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"{run_dir} is not a training run: {path.name} is missing")
    return read_manifest(path, ("config", "snapshot", "split_dir", "model_args"), "hqgnn train")


def load_run(run_dir: Path, device: torch.device | str = "cpu") -> TrainedRun:
    """Load a run's best checkpoint; a run without one (not yet validated) is an :class:`InputError`."""
    from flows.integrity import verify_run

    run_dir = Path(run_dir)
    meta = run_metadata(run_dir)
    best = run_dir / "best.pt"
    if not best.is_file():
        raise InputError(f"run {run_dir.name} has no best checkpoint yet ({best} is missing): it has not finished a validated epoch")
    verify_run(run_dir)  # a finished run's checkpoints against the hashes in summary.json
    try:
        state = load_checkpoint(best)
    except ValueError as e:
        raise InputError(f"{e}; retrain the run (`hqgnn train`), or `hqgnn train --resume --run {run_dir.name}` if it never finished") from e
    cfg = TrainConfig(**meta["config"])
    args = state["model_args"]
    return TrainedRun(
        name=run_dir.name, path=run_dir, config=cfg, snapshot=meta["snapshot"],
        split_dir=(run_dir / meta["split_dir"]).resolve(),
        num_users=args["num_users"], num_items=args["num_items"], dim=args["dim"], bits=cfg.bits,
        estimator=str(cfg.estimator), user_emb=state["user_emb"].float().to(device),
        item_emb=state["item_emb"].float().to(device), best_epoch=int(state["epoch"]),
        best_valid={k: float(v) for k, v in state["valid"].items()},
        code_refinement=state.get("code_refinement"),
        encoder_user_emb=state["encoder_user_emb"].float().to(device) if "encoder_user_emb" in state else None,
    )
