"""Flow ``hqgnn-sweep`` (issue 7) on a 2-worker local Dask cluster and tiny data: every cell of
the grid trains and evaluates through the real stage functions, one table, plot and artifact."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from split_fixtures import tiny_split

from flows.config import EvaluateConfig, TrainConfig
from flows.workdir import WorkDir

pytestmark = [pytest.mark.prefect, pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_sweep_trains_every_cell_in_parallel_and_writes_one_table(tmp_path: Path) -> None:
    import asyncio

    from prefect.client.orchestration import get_client

    from flows.sweep import hqgnn_sweep

    tiny_split(tmp_path)
    train = TrainConfig(dim=16, epochs=2, batch_size=128, lr=0.01, device="cpu", hutchinson_samples=2, hutchinson_batches=1)
    out = Path(hqgnn_sweep(workdir=str(tmp_path), bits=[1, 32], estimators=["ste", "gste"], seeds=[1, 2],
                           train=train, evaluate=EvaluateConfig(ks=(10,)), sweep_id="t", n_workers=2, torch_threads=1))

    assert out == WorkDir(tmp_path).reports / "sweep-t"
    df = pd.read_parquet(out / "comparison.parquet")
    cells = {(r.bits, r.estimator, r.seed) for r in df.itertuples()}
    assert cells == {(1, "ste", 1), (1, "gste", 1), (1, "ste", 2), (1, "gste", 2), (32, "none", 1), (32, "none", 2)}
    for run in df["run"].unique():  # each cell is a real run with its own report
        assert (tmp_path / "models" / run / "best.pt").is_file()
        assert (tmp_path / "reports" / run / "metrics.json").is_file()
    test = df[df["split"] == "test"]
    assert test["recall@10"].between(0, 1).all() and (test["recall@10"] > 0).any()
    # seeds differ, so do their models: the table is not one run copied six times
    one_bit = test[(test["bits"] == 1) & (test["variant"] == "codes") & (test["estimator"] == "gste")]
    assert one_bit["recall@10"].nunique() + one_bit["ndcg@10"].nunique() > 2
    md = (out / "comparison.md").read_text()
    assert md.count("\n| 1 |") == 2 and "| 32 | none | 2 |" in md
    assert (out / "recall_vs_bits.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    async def artifact() -> str | None:
        async with get_client() as client:
            a = await client.read_latest_artifacts()
            return next((x.data for x in a if x.key == "sweep"), None)

    data = asyncio.run(artifact())
    assert data is not None and "Sweep t" in data
