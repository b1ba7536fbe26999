"""A training run killed right after one of its epoch checkpoints (in process, no subprocess):
the resume tests of training, warm start and distillation share it."""

from __future__ import annotations

import pytest

from flows.config import TrainConfig
from flows.stages.train import train
from flows.workdir import WorkDir
from hqgnn.trainer import Trainer


def train_killed_after_epoch(workdir: WorkDir, cfg: TrainConfig, epoch: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Train ``cfg`` until ``last.pt`` of ``epoch`` is written, then raise ``KeyboardInterrupt`` as
    a kill would; ``Trainer.save`` is real again afterwards. Returns the epochs saved."""
    real_save, saves = Trainer.save, []

    def save_then_die(self: Trainer) -> None:
        real_save(self)
        saves.append(self.epoch)
        if self.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(workdir, cfg)
    monkeypatch.setattr(Trainer, "save", real_save)
    return saves
