"""One split snapshot in memory: the interaction matrices and id maps the trainer and evaluation read.

The files of a snapshot folder (``splits/<snapshot>/``) are read and written by the application
(``flows.split_files``); the library only sees this dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hqgnn.interactions import InteractionMatrix

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitData:
    """One split snapshot in memory: interaction matrices ``[num_users, num_items]`` and id maps."""

    train: InteractionMatrix
    valid: InteractionMatrix
    test: InteractionMatrix
    num_users: int
    num_items: int
    user_ids: np.ndarray  # str, by user_idx
    item_ids: np.ndarray  # str, by item_idx
    snapshot: str
    path: Path
    manifest: dict[str, Any]
