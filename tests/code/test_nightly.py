"""Two nights through the Prefect flow on tiny generated data (issue 16, done-when):
night 2 warm-starts from night 1's published model, new users get codes by fold-in, the gate
decides on one split for both models, `recommend` answers for a folded-in user and for `--items`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest
from pipeline_checks import COLUMNS, TINY

from flows.workdir import WorkDir
from hqgnn.synthetic import SyntheticSpec, generate_interactions, write_interactions

ROOT = Path(__file__).resolve().parents[2]


def _new_users_file(path: Path) -> Path:
    """30 users nobody has seen (ids new0..new29) on the same items as the first night."""
    t = generate_interactions(SyntheticSpec(num_users=30, num_items=TINY.num_items, mean_events_per_user=20,
                                            min_events_per_user=12, seed=11))
    t = t.set_column(0, "user_id", pc.binary_join_element_wise(pa.scalar("new"), pc.utf8_slice_codeunits(t.column("user_id"), 1), ""))
    pacsv.write_csv(t, path, pacsv.WriteOptions(quoting_style="none"))
    return path


def _night(workdir: Path, drop: Path) -> object:
    from flows.pipeline import hqgnn

    return hqgnn(
        workdir=str(workdir), drop_folder=str(drop), drop_pattern="*.csv", foldin={},
        ingest={"format": "csv", "columns": COLUMNS, "rating_min": 1.0, "rating_max": 5.0},
        prepare={"kcore_user": 3, "kcore_item": 3},
        train={"bits": 1, "epochs": 3, "warm_epochs": 1, "init_from": "published", "dim": 16, "batch_size": 256,
               "device": "cpu", "hutchinson_samples": 2, "hutchinson_batches": 1},
        export={"gate_tolerance": 1.0},  # this test is about WHERE the gate measures, not who wins on tiny data
    )


def test_deployments_train_cold_and_nightly_warm_with_foldin() -> None:
    """prefect.yaml: hqgnn/train trains cold, hqgnn/nightly warm-starts from the published model
    on a short schedule and folds in new users; both parameter sets validate against the flow."""
    import inspect

    import yaml

    from flows.config import PipelineConfig
    from flows.pipeline import hqgnn

    deployments = {d["name"]: d["parameters"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    flow_params = set(inspect.signature(hqgnn.fn).parameters)
    for name in ("train", "nightly"):
        params = deployments[name]
        assert set(params) <= flow_params, set(params) - flow_params
        PipelineConfig(**{k: v for k, v in params.items() if k in PipelineConfig.model_fields})
    cold, warm = PipelineConfig(train=deployments["train"]["train"]).train, PipelineConfig(train=deployments["nightly"]["train"]).train
    assert cold.init_from == "none" and warm.init_from == "published" and warm.warm_epochs and warm.warm_epochs < cold.epochs
    assert cold.warm_carry_users and not warm.warm_carry_users  # the nightly carries only item rows (BENCHMARKS.md, issue 16)
    assert deployments["nightly"]["foldin"] == {} and deployments["train"].get("foldin") is None


@pytest.mark.slow
@pytest.mark.prefect
@pytest.mark.usefixtures("prefect_harness")
def test_two_nights_warm_start_foldin_gate_on_one_split_and_recommend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flows.stages.recommend import recommend, recommend_items

    wd, drop = tmp_path / "work", tmp_path / "drop"
    write_interactions(drop / "night1.csv", TINY)
    first = _night(wd, drop)
    assert first.stages["foldin"] == "skipped"  # nothing published yet
    run1 = json.loads((WorkDir(wd).models / first.train_run / "config.json").read_text())
    assert run1["warm_start"]["parent_run"] is None  # first night: cold

    _new_users_file(drop / "night2.csv")
    second = _night(wd, drop)
    assert second.stages == {"ingest": "ran", "prepare": "ran", "foldin": "ran", "train": "ran", "export": "ran", "evaluate": "ran"}
    w = WorkDir(wd)
    # fold-in: a new version with the new users appended to night 1's codes
    folded = [p for p in w.codes.iterdir() if "-foldin-" in p.name and not p.name.startswith(".")]
    assert len(folded) == 1
    fm = json.loads((folded[0] / "manifest.json").read_text())
    assert fm["foldin"]["parent_version"] == first.code_version and fm["foldin"]["new_users"] == 30
    assert fm["run"] == first.train_run and fm["snapshot"] == second.snapshot

    # warm start from the published model (the fold-in version's run = night 1's run)
    config = json.loads((w.models / second.train_run / "config.json").read_text())
    ws = config["warm_start"]
    assert ws["parent_run"] == first.train_run and ws["users_new"] == 30 and ws["users_carried"] > 100
    assert config["config"]["epochs"] == 1  # the warm schedule

    # the gate: champion (the fold-in version) and challenger measured on tonight's split
    gate = json.loads((w.codes / second.code_version / "manifest.json").read_text())["gate"]
    assert gate["compared_to"] == folded[0].name and gate["split"]["snapshot"] == second.snapshot
    assert gate["value"] is not None and gate["compared_value"] is not None
    assert gate["comparison"]["users_compared"] > 0 and gate["comparison"]["valid_users"] >= gate["comparison"]["users_compared"]

    # recommend answers for a folded-in user (from the fold-in version) and for an item list
    rec = recommend(w, "new3", k=5, print_result=False, version=folded[0].name)
    assert len(rec.item_ids) == 5
    items = recommend_items(w, ["i1", "i2", "nope"], k=5, print_result=False)
    assert len(items.item_ids) == 5 and not {"i1", "i2"} & set(items.item_ids)
    assert "nope" in capsys.readouterr().err
