"""Checkpoints: one ``torch.save`` dict per file, written atomically (temp file + rename).

A checkpoint holds everything a resumed run needs to continue exactly where it stopped: model
args, config, model / optimizer / LR-schedule state, epochs done, best metric and its epoch,
early-stopping counter, RNG states, GSTE δ state and the history so far.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from hqgnn.files import atomic_write_bytes

FORMAT_VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors moved to the CPU) to ``path`` atomically."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **_to_cpu(state)}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, AttributeError, ImportError) as e:
        # torch reports a truncated zip as RuntimeError, an empty file as EOFError, a cut pickle as OSError 22
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: damaged checkpoint ({path.stat().st_size} bytes; {first})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: not an hqgnn checkpoint of format {FORMAT_VERSION}")
    return state


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
