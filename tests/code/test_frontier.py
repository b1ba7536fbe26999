"""bench/frontier.py (issue 19): its hold-out and id remap, bytes per item, and the report from a
JSONL of points (no training here: the points are written by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from bench_scripts import load_bench_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def frontier() -> ModuleType:
    return load_bench_script("frontier")


def test_holdout_is_per_user_seeded_and_leaves_train(frontier: ModuleType) -> None:
    users = np.repeat(np.arange(50), 10)
    items = np.tile(np.arange(10), 50)
    (tu, ti), (su, si) = frontier.holdout((users, items), 0.2, seed=7)
    assert tu.size + su.size == users.size
    assert np.bincount(su, minlength=50).max() <= 3 and np.bincount(tu, minlength=50).min() >= 7
    assert abs(su.size / users.size - 0.2) < 0.05
    assert not set(zip(tu.tolist(), ti.tolist(), strict=True)) & set(zip(su.tolist(), si.tolist(), strict=True))
    (tu2, _), (su2, si2) = frontier.holdout((users, items), 0.2, seed=7)
    assert np.array_equal(su, su2) and np.array_equal(si, si2) and np.array_equal(tu, tu2)


def test_dense_remaps_ids_and_drops_unseen_test_pairs(frontier: ModuleType) -> None:
    train = (np.array([3, 3, 9]), np.array([10, 20, 20]))
    test = (np.array([3, 9, 5, 9]), np.array([20, 10, 10, 99]))  # user 5 and item 99 have no train pair
    (tu, ti), (su, si) = frontier.dense(train, test)
    assert tu.tolist() == [0, 0, 1] and ti.tolist() == [0, 1, 1]
    assert su.tolist() == [0, 1] and si.tolist() == [1, 0]


@pytest.mark.parametrize(("bits", "dim", "expected"), [(1, 64, 12), (1, 128, 20), (1, 256, 36), (2, 128, 36), (4, 64, 36), (8, 32, 36), (32, 64, 256)])
def test_bytes_per_item_is_code_plus_scale(frontier: ModuleType, bits: int, dim: int, expected: int) -> None:
    assert frontier.bytes_per_item(bits, dim) == expected


def test_quantized_points_use_the_warmup_recipe(frontier: ModuleType) -> None:
    one = frontier.train_settings("gowalla", 1, 128, 2025, "fast")
    assert (one["float_warmup_epochs"], one["refine_user_codes"], one["dim"], one["seed"]) == (30, 8, 128, 2025)
    assert "refine_user_codes" not in frontier.train_settings("gowalla", 4, 64, 1, "fast")
    assert frontier.train_settings("lastfm", 1, 64, 1, "slow")["float_warmup_epochs"] == 75
    assert frontier.train_settings("lastfm", 32, 64, 1, "long")["epochs"] == 1000
    with pytest.raises(ValueError, match="none of"):
        frontier.train_settings("gowalla", 1, 64, 1, "slow")
    with pytest.raises(ValueError, match="float32 reference only"):
        frontier.train_settings("lastfm", 1, 64, 1, "long")


def _point(dataset: str, bits: int, dim: int, seed: int, r20: float, schedule: str = "fast", valid: float = 0.5) -> dict:
    return {"dataset": dataset, "bits": bits, "dim": dim, "seed": seed, "schedule": schedule, "best_epoch": 10,
            "train_seconds": 60.0, "valid": {"recall@20": valid}, "test": {"recall@20": r20, "ndcg@20": r20 / 2}}


def test_report_ratios_and_skip(frontier: ModuleType, tmp_path: Path) -> None:
    points = [_point("lastfm", 32, 64, 1, 0.20), _point("lastfm", 32, 64, 2, 0.22),
              _point("lastfm", 32, 64, 1, 0.25, "long"), _point("lastfm", 1, 64, 1, 0.19), _point("lastfm", 1, 64, 2, 0.21),
              _point("lastfm", 1, 64, 1, 0.99, "probe-x", valid=0.9),  # a probe: reported apart, never in the table
              _point("lastfm", 1, 64, 2, 0.30, "slow", valid=0.4)]  # the other schedule, lower on valid: not chosen
    path = tmp_path / "points.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in points) + '{"torn')
    assert len(frontier.read_points(path)) == len(points)
    rows = {(r["bits"], r["dim"]): r for r in frontier.summarize(frontier.read_points(path))["lastfm"]}
    one = rows[(1, 64)]
    assert one["bytes"] == 12 and one["seeds"] == 2 and one["r20"] == pytest.approx(0.20)
    assert one["r20_hr"] == pytest.approx(0.01)
    assert one["pct_eq"] == pytest.approx(100 * 0.20 / 0.21) and one["pct_best"] == pytest.approx(100 * 0.20 / 0.25)
    slower = frontier.summarize([*points, _point("lastfm", 32, 64, 1, 0.30, "slow", valid=0.1)])["lastfm"]
    assert slower[0]["ref_eq"] == pytest.approx(0.21) and slower[0]["ref_best"] == pytest.approx(0.30)  # best on test, not valid
    assert list(rows) == [(1, 64), (32, 64)]  # sorted by bytes per item
    md = frontier.markdown(frontier.summarize(frontier.read_points(path)))
    assert "| 1 bit × 64 | 12 | 2 | 0.2000 ± 0.0100 |" in md and "80.0 %" in md and "| fast 2 |" in md
    frontier.plot(frontier.summarize(frontier.read_points(path)), tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
    assert frontier.point_key(points[0]) == ("lastfm", 32, 64, 1, "fast")


def test_validation_picks_the_schedule_per_seed(frontier: ModuleType) -> None:
    points = [_point("ml100k", 1, 64, 1, 0.20, "fast", valid=0.30), _point("ml100k", 1, 64, 1, 0.10, "slow", valid=0.31),
              _point("ml100k", 1, 64, 2, 0.20, "fast", valid=0.30), _point("ml100k", 1, 64, 2, 0.40, "slow", valid=0.29)]
    (row,) = frontier.summarize(points)["ml100k"]
    assert row["r20"] == pytest.approx((0.10 + 0.20) / 2) and row["schedules"] == "fast 1, slow 1"


def test_missing_expands_every_candidate_schedule(frontier: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "points.jsonl").write_text(json.dumps(_point("lastfm", 1, 64, 1, 0.2, "fast")) + "\n")
    args = frontier.argparse.Namespace(out=tmp_path, points=tmp_path / "points.jsonl", dataset=["lastfm", "gowalla"], bits=[1], dim=[64], seed=[1], schedule="all")
    assert frontier.missing(args) == [("lastfm", 1, 64, 1, "slow"), ("gowalla", 1, 64, 1, "fast")]


def test_gowalla_best_float_falls_back_to_the_known_figure(frontier: ModuleType) -> None:
    rows = frontier.summarize([_point("gowalla", 32, 64, 1, 0.1634), _point("gowalla", 1, 64, 1, 0.1498)])["gowalla"]
    assert rows[0]["ref_best"] == pytest.approx(frontier.KNOWN_BEST_FLOAT["gowalla"][0]) and rows[0]["ref_eq"] == pytest.approx(0.1634)
    (alone,) = frontier.summarize([_point("gowalla", 1, 64, 1, 0.1498)])["gowalla"]  # no float32 point run here
    assert alone["ref_eq"] == pytest.approx(0.1634) and alone["pct_eq"] == pytest.approx(100 * 0.1498 / 0.1634)


def test_missing_picked_follows_validation_at_other_seeds(frontier: ModuleType, tmp_path: Path) -> None:
    done = [_point("ml100k", 1, 64, 1, 0.2, "fast", valid=0.30), _point("ml100k", 1, 64, 1, 0.2, "slow", valid=0.35),
            _point("ml100k", 2, 64, 1, 0.2, "fast", valid=0.30)]  # seed 1 of 2 bits lacks "slow": no choice to follow yet
    (tmp_path / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in done))
    args = frontier.argparse.Namespace(out=tmp_path, points=tmp_path / "points.jsonl", dataset=["ml100k"], bits=[1, 2], dim=[64], seed=[1, 2], schedule="picked")
    assert frontier.missing(args) == [("ml100k", 1, 64, 2, "slow"), ("ml100k", 2, 64, 1, "slow"),
                                      ("ml100k", 2, 64, 2, "fast"), ("ml100k", 2, 64, 2, "slow")]


def test_from_float_points_fine_tune_the_picked_float_point(frontier: ModuleType, tmp_path: Path) -> None:
    four = frontier.train_settings("lastfm", 4, 64, 3, frontier.FROM_FLOAT)
    assert (four["epochs"], four["lr"], four["float_warmup_epochs"], four["batch_size"], four["seed"]) == (10, 2e-3, 0, 2048, 3)
    one = frontier.train_settings("gowalla", 1, 128, 3, frontier.FROM_FLOAT)
    assert (one["itq_rotation"], one["refine_user_codes"], one["dim"], one["batch_size"]) == (True, 8, 128, 32768)
    with pytest.raises(ValueError, match="quantizes a float32 point"):
        frontier.train_settings("lastfm", 32, 64, 1, frontier.FROM_FLOAT)
    floats = [_point("lastfm", 32, 64, 3, 0.25, "fast", valid=0.30) | {"run": "fast-run"},
              _point("lastfm", 32, 64, 3, 0.24, "slow", valid=0.32) | {"run": "slow-run"}]
    assert frontier.float_parent(floats, "lastfm", 64, 3)["run"] == "slow-run"  # validation picks the parent
    with pytest.raises(SystemExit, match="needs the float32 point first: .*--bits 32 --dim 128 --seed 3"):
        frontier.float_parent(floats, "lastfm", 128, 3)
    (tmp_path / "slow-run").mkdir()
    with pytest.raises(SystemExit, match=r"slow-run is recorded but .*slow-run/best.pt is missing .*--out"):
        frontier.float_parent(floats, "lastfm", 64, 3, tmp_path)  # a fresh clone: the record, not the weights
    (tmp_path / "slow-run" / "best.pt").write_bytes(b"")
    assert frontier.float_parent(floats, "lastfm", 64, 3, tmp_path)["run"] == "slow-run"


def test_a_from_float_probe_fine_tunes_with_its_override_and_stays_out_of_the_table(frontier: ModuleType) -> None:
    fu = frontier.train_settings("gowalla", 2, 128, 3, "from-float-fu", {"float_users": True, "warm_epochs": 100})
    assert (fu["float_users"], fu["warm_epochs"], fu["float_warmup_epochs"], fu["itq_rotation"], fu["dim"]) == (True, 100, 1, True, 128)
    assert frontier.is_from_float("from-float-fu") and not frontier.is_from_float("fast")
    floats = _point("gowalla", 32, 64, 3, 0.18, "fast", valid=0.2) | {"run": "f"}
    probe = _point("gowalla", 2, 64, 3, 0.19, "from-float-fu", valid=0.9) | {"parent_run": "f"}
    assert frontier.choose_by_valid([floats, probe]) == {("gowalla", 32, 64, 3): floats}  # a probe never enters the frontier


def test_a_probes_distill_from_dim_names_the_picked_float_point_of_that_width(frontier: ModuleType) -> None:
    floats = [_point("lastfm", 32, 112, 3, 0.26, "fast", valid=0.30) | {"run": "wide-fast"},
              _point("lastfm", 32, 112, 3, 0.25, "slow", valid=0.33) | {"run": "wide-slow"},
              _point("lastfm", 32, 64, 3, 0.24, "slow", valid=0.31) | {"run": "narrow"}]
    settings = frontier.train_settings("lastfm", 1, 64, 3, "from-float-t", {"float_users": True, "distill_top": 50, "distill_from_dim": 112})
    taught = frontier.with_teacher(settings, floats, "lastfm", 3)
    assert taught["distill_from"] == "wide-slow" and "distill_from_dim" not in taught  # validation picks the teacher, not test
    assert "distill_from_dim" in settings  # the caller's settings are left as they were
    assert frontier.with_teacher({"bits": 1}, floats, "lastfm", 3) == {"bits": 1}
    with pytest.raises(SystemExit, match="needs the float32 point first: .*--dim 128 --seed 3"):
        frontier.with_teacher({**settings, "distill_from_dim": 128}, floats, "lastfm", 3)


def test_from_float_competes_on_valid_and_counts_its_parent_minutes(frontier: ModuleType, tmp_path: Path) -> None:
    ff = _point("lastfm", 4, 64, 1, 0.26, "from-float", valid=0.6) | {"parent_train_seconds": 120.0}
    points = [_point("lastfm", 32, 64, 1, 0.25), _point("lastfm", 4, 64, 1, 0.24, "fast", valid=0.5), ff]
    rows = {(r["bits"], r["dim"]): r for r in frontier.summarize(points)["lastfm"]}
    assert rows[(4, 64)]["r20"] == pytest.approx(0.26) and rows[(4, 64)]["schedules"] == "from-float 1"
    assert rows[(4, 64)]["minutes"] == pytest.approx(3.0)  # 60 s fine-tune + 120 s float model
    lower = [points[0], points[1], ff | {"valid": {"recall@20": 0.4}}]
    assert frontier.summarize(lower)["lastfm"][0]["schedules"] == "fast 1"
    (tmp_path / "p.jsonl").write_text(json.dumps(points[0]) + "\n")
    args = frontier.argparse.Namespace(out=tmp_path, points=tmp_path / "p.jsonl", dataset=["lastfm"], bits=[32, 4], dim=[64], seed=[1], schedule="from-float")
    assert frontier.missing(args) == [("lastfm", 4, 64, 1, "from-float")]  # float32 points are parents only


def test_a_seed_that_has_not_run_another_seeds_pick_stays_out_of_the_mean(frontier: ModuleType) -> None:
    float_parent = _point("lastfm", 32, 64, 1, 0.25) | {"run": "f1"}
    ff = _point("lastfm", 4, 64, 1, 0.26, "from-float", valid=0.6) | {"parent_run": "f1"}
    behind = [_point("lastfm", 4, 64, 1, 0.20, "fast", valid=0.5), ff, _point("lastfm", 4, 64, 2, 0.18, "fast", valid=0.5)]
    row = {r["bits"]: r for r in frontier.summarize([float_parent, *behind])["lastfm"]}[4]
    assert (row["seeds"], row["left_out"], row["r20"]) == (1, 1, pytest.approx(0.26))  # seed 2 has no from-float point yet
    assert "1 (+1 not yet on the picked schedule, left out)" in frontier.markdown(frontier.summarize([float_parent, *behind]))
    picked_only = [_point("lastfm", 4, 64, 1, 0.20, "fast", valid=0.4), _point("lastfm", 4, 64, 1, 0.22, "slow", valid=0.5),
                   _point("lastfm", 4, 64, 2, 0.24, "slow", valid=0.5)]  # --schedule picked: seed 2 ran seed 1's pick only
    row = {r["bits"]: r for r in frontier.summarize([float_parent, *picked_only])["lastfm"]}[4]
    assert (row["seeds"], row["left_out"], row["r20"]) == (2, 0, pytest.approx(0.23))


def test_a_from_float_point_goes_stale_when_a_better_float_point_runs_after_it(frontier: ModuleType, tmp_path: Path) -> None:
    fast = _point("lastfm", 32, 64, 1, 0.25, "fast", valid=0.30) | {"run": "fast-run"}
    ff = _point("lastfm", 4, 64, 1, 0.26, "from-float", valid=0.6) | {"parent_run": "fast-run", "parent_train_seconds": 120.0}
    assert {r["bits"]: r["schedules"] for r in frontier.summarize([fast, ff])["lastfm"]} == {4: "from-float 1", 32: "fast 1"}
    slow = _point("lastfm", 32, 64, 1, 0.27, "slow", valid=0.32) | {"run": "slow-run"}  # picked by validation now
    assert frontier.current_points([fast, ff, slow]) == [fast, slow]
    assert [r["bits"] for r in frontier.summarize([fast, ff, slow])["lastfm"]] == [32]  # the stale fine-tune left the table
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in (fast, ff, slow)))
    args = frontier.argparse.Namespace(out=tmp_path, points=tmp_path / "p.jsonl", dataset=["lastfm"], bits=[4], dim=[64], seed=[1], schedule="from-float")
    assert frontier.missing(args) == [("lastfm", 4, 64, 1, "from-float")]  # to be rerun from the new parent
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in (fast, ff)))
    assert frontier.missing(args) == []


def test_gowalla_float_points_also_try_the_k8_recipe_and_equal_epochs_ignores_it(frontier: ModuleType, tmp_path: Path) -> None:
    assert frontier.train_settings("gowalla", 32, 64, 1, "k8")["bpr_negatives"] == 8
    with pytest.raises(ValueError, match="none of"):
        frontier.train_settings("gowalla", 1, 64, 1, "k8")  # quantized points do not take the float-only schedule
    (tmp_path / "p.jsonl").write_text("")
    args = frontier.argparse.Namespace(out=tmp_path, points=tmp_path / "p.jsonl", dataset=["gowalla"], bits=[32, 1], dim=[64], seed=[1], schedule="all")
    assert frontier.missing(args) == [("gowalla", 32, 64, 1, "fast"), ("gowalla", 32, 64, 1, "k8"), ("gowalla", 1, 64, 1, "fast")]
    rows = frontier.summarize([_point("gowalla", 32, 64, 1, 0.1830, "k8", valid=0.9), _point("gowalla", 1, 64, 1, 0.15)])["gowalla"]
    assert rows[0]["ref_eq"] == pytest.approx(frontier.KNOWN_EQUAL_FLOAT["gowalla"][0])  # k8 is not the equal-epoch reference
