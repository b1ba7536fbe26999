"""The stages in order, on the configured files or on the bundled demo data, without Prefect.

``hqgnn run`` runs the Prefect flow ``hqgnn`` (``flows/pipeline_flow.py``), which uses
:func:`demo_config` from here; :func:`run_pipeline` is the same sequence as plain calls.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from hqgnn.config import PipelineConfig
from hqgnn.errors import NotYetAvailableError
from hqgnn.synthetic import SyntheticSpec, write_interactions
from hqgnn.workdir import WorkDir

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


def run_pipeline(workdir: WorkDir, cfg: PipelineConfig, demo: bool = False) -> None:
    """ingest (when there are files) -> prepare -> train -> export -> evaluate.

    A stage that has not landed yet ends the run early with a clear note (exit status 0):
    everything before it is complete and contract-checked.
    """
    from flows.stages.evaluate import evaluate
    from flows.stages.export import export
    from flows.stages.ingest import ingest
    from flows.stages.prepare import prepare
    from flows.stages.train import train

    if demo:
        cfg = demo_config(workdir, cfg)
    steps: list[tuple[str, Callable[[], object]]] = []
    if cfg.ingest.files:
        steps.append(("ingest", lambda: ingest(workdir, cfg.ingest)))
    else:
        console.print("[bold]ingest[/]: no files configured; using what is in the warehouse")
    steps += [
        ("prepare", lambda: prepare(workdir, cfg.prepare)),
        ("train", lambda: train(workdir, cfg.train)),
        ("export", lambda: export(workdir, cfg.export)),
        ("evaluate", lambda: evaluate(workdir, cfg.evaluate)),
    ]
    for name, step in steps:
        console.rule(f"[bold]{name}")
        try:
            step()
        except NotYetAvailableError as e:
            console.print(f"[yellow]{e}[/]; the pipeline stops after the stages that exist.")
            return
    console.rule("[bold green]pipeline complete")
