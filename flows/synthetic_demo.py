"""The bundled demo of ``hqgnn run --demo``: a seeded synthetic log and a short schedule."""

from __future__ import annotations

from rich.console import Console

from flows.config import PipelineConfig
from flows.workdir import WorkDir
from hqgnn.synthetic import SyntheticSpec, write_interactions

console = Console(stderr=True)

DEMO_FILE = "demo/interactions.csv"
# The demo's training schedule: the synthetic log (~70 k train pairs) plateaus after ~3 epochs
# at lr 5e-3 (valid Recall@20 0.346 at epoch 3, 0.345 at epoch 8, 1 bit, measured with
# `hqgnn train --epochs 8 --bits 1` and lr 0.005), so a short run shows the whole pipeline in
# minutes instead of the 200-epoch LightGCN schedule.
DEMO_TRAIN = {"epochs": 10, "lr": 5e-3, "patience": 3}


def demo_config(workdir: WorkDir, base: PipelineConfig) -> PipelineConfig:
    """The bundled demo: a seeded synthetic log (a few malformed rows included, to show the
    quarantine), ingested as CSV with explicit columns, trained on a short schedule
    (:data:`DEMO_TRAIN`) unless the config file sets a train section; other sections as in ``base``."""
    path = write_interactions(workdir.root / DEMO_FILE, SyntheticSpec(bad_rows=8))
    console.print(f"[bold]demo[/]: generated {path}")
    ingest = base.ingest.model_copy(
        update={
            "files": (path,),
            "format": "csv",
            "columns": {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": "rating"},
            "rating_min": 1.0,
            "rating_max": 5.0,
        }
    )
    train = base.train
    if train == type(train)():  # no train section given: the short demo schedule
        train = type(train)(**{**train.model_dump(), **DEMO_TRAIN})
    return base.model_copy(update={"ingest": type(base.ingest)(**ingest.model_dump()), "train": train})
