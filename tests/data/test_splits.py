"""Stage `prepare`: splits (random, temporal, leave-one-out, predefined), id maps, snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import flows.stages.prepare as prepare_mod
from flows.config import IngestConfig, PrepareConfig
from flows.errors import DataContractError
from flows.stages.ingest import ingest
from flows.stages.prepare import prepare
from flows.workdir import WorkDir


def _log(path: Path, users: int = 6, items: int = 12, per_user: int = 10) -> Path:
    """user u rates items (u + j) % items at time 1000*u + j (j = 0..per_user-1)."""
    lines = ["user_id,item_id,timestamp"]
    lines += [f"{u},{(u + j) % items},{1000 * u + j}" for u in range(users) for j in range(per_user)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _setup(tmp_path: Path, **ingest_kw: object) -> WorkDir:
    wd = WorkDir(tmp_path / "w")
    ingest(wd, IngestConfig(files=(_log(tmp_path / "log.csv"),), format="csv", **ingest_kw))  # type: ignore[arg-type]
    return wd


def _read(folder: Path, name: str) -> list[dict]:
    return pq.read_table(folder / f"{name}.parquet").to_pylist()


def _pairs(folder: Path, name: str) -> set[tuple[int, int]]:
    return {(r["user_idx"], r["item_idx"]) for r in _read(folder, name)}


def test_random_split_ratios_schema_reproducible(tmp_path: Path) -> None:
    wd = _setup(tmp_path)
    cfg = PrepareConfig(kcore_user=1, kcore_item=1, split="random", seed=1)
    res = prepare(wd, cfg)
    folder = res.path
    assert (wd.splits / "current").resolve() == folder.resolve()
    assert pq.read_schema(folder / "train.parquet").names == ["user_idx", "item_idx", "timestamp"]
    assert str(pq.read_schema(folder / "train.parquet").field("user_idx").type) == "int32"
    train, valid, test = (_pairs(folder, n) for n in ("train", "valid", "test"))
    assert (len(train), len(valid), len(test)) == (48, 6, 6)  # 8/1/1 of 10 per user, 6 users
    assert not (train & valid or train & test or valid & test)
    rows = [(r["user_idx"], r["item_idx"]) for r in _read(folder, "train")]
    assert rows == sorted(rows)
    m = res.manifest
    assert m["row_counts"]["train"] == 48 and m["num_users"] == 6 and m["num_items"] == 12
    assert json.loads((folder / "manifest.json").read_text())["snapshot"] == res.snapshot
    # the same inputs give the same snapshot, reused; another seed gives another split
    assert prepare(wd, cfg).reused
    other = prepare(wd, cfg.model_copy(update={"seed": 2}))
    assert other.snapshot != res.snapshot and _pairs(other.path, "test") != test


def test_temporal_split_last_items_to_valid_and_test(tmp_path: Path) -> None:
    wd = _setup(tmp_path)
    res = prepare(wd, PrepareConfig(kcore_user=1, kcore_item=1, split="temporal"))
    test = _read(res.path, "test")
    valid = _read(res.path, "valid")
    users = {r["user_idx"]: r["user_id"] for r in _read(res.path, "users")}
    # per user: the latest (j = 9) is test, j = 8 is valid
    assert {(users[r["user_idx"]], r["timestamp"] % 1000) for r in test} == {(str(u), 9) for u in range(6)}
    assert {r["timestamp"] % 1000 for r in valid} == {8}


def test_leave_one_out_without_timestamps_uses_line_order(tmp_path: Path) -> None:
    f = tmp_path / "seq.txt"
    f.write_text("1 30\n1 20\n1 10\n2 10\n2 30\n3 20\n")  # time-ordered lines, no timestamps
    wd = WorkDir(tmp_path / "w")
    ingest(wd, IngestConfig(files=(f,), format="csv", delimiter=" ", header=False))
    res = prepare(wd, PrepareConfig(kcore_user=1, kcore_item=1, split="loo"))
    items = {r["item_idx"]: r["item_id"] for r in _read(res.path, "items")}
    users = {r["user_idx"]: r["user_id"] for r in _read(res.path, "users")}

    def named(split: str) -> set[tuple[str, str]]:
        return {(users[u], items[i]) for u, i in _pairs(res.path, split)}

    # user 1: 30 train, 20 valid, 10 test; user 2: 10 train, 30 test; user 3: 20 train.
    assert named("train") == {("1", "30"), ("2", "10"), ("3", "20")}
    assert named("valid") == {("1", "20")}
    # ("2", "30") is test, item 30 is in train -> kept; ("1", "10") is test, item 10 in train -> kept
    assert named("test") == {("1", "10"), ("2", "30")}


def test_predefined_split_drops_and_counts_cold_rows(tmp_path: Path) -> None:
    tr, te = tmp_path / "train.txt", tmp_path / "test.txt"
    tr.write_text("".join(f"{u} " + " ".join(str(i) for i in range(10)) + "\n" for u in range(4)))
    te.write_text("0:10\n1:11\n2:99\n3:98\n")  # "user:item" form; 99, 98 never in train -> cold
    wd = WorkDir(tmp_path / "w")
    ingest(wd, IngestConfig(files=(tr,), format="lightgcn", split_role="train"))
    tr2 = tmp_path / "train2.txt"
    tr2.write_text("0 10 11\n")  # items 10, 11 appear in train via user 0
    ingest(wd, IngestConfig(files=(tr2,), format="lightgcn", split_role="train"))
    ingest(wd, IngestConfig(files=(te,), format="lightgcn", split_role="test"))
    res = prepare(wd, PrepareConfig(kcore_user=1, kcore_item=1, split="predefined", valid_ratio=0.2))
    c = res.manifest["row_counts"]
    assert c["dropped_cold_test"] == 2
    # user 0: (0,10) is both train (train2) and test -> collapsed to the first, train
    assert c["test"] == 1  # (1, 11)
    assert c["valid"] == 2 + 2 + 2 + 2  # floor(0.2 * n_train) per user: 12->2, 10->2, 10->2, 10->2
    assert all(u["n_train"] >= 1 for u in _read(res.path, "users"))


def test_dense_ids_follow_numeric_order(tmp_path: Path) -> None:
    f = tmp_path / "ids.csv"
    f.write_text("user,item\n10,b\n9,a\n100,c\n9,b\n10,a\n100,a\n")
    wd = WorkDir(tmp_path / "w")
    ingest(wd, IngestConfig(files=(f,), format="csv"))
    res = prepare(wd, PrepareConfig(kcore_user=1, kcore_item=1, split="random", train_ratio=0.5, valid_ratio=0.0))
    assert [u["user_id"] for u in _read(res.path, "users")] == ["9", "10", "100"]
    assert [i["item_id"] for i in _read(res.path, "items")][0] == "a"


def test_contract_failure_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wd = _setup(tmp_path)
    first = prepare(wd, PrepareConfig(kcore_user=1, kcore_item=1))

    def broken(folder: Path, params: dict, docs: Path | None = None) -> None:
        assert (folder / "train.parquet").is_file()  # checked in the temp folder, before the rename
        raise DataContractError("splits", ["pair (0, 1) in two splits"])

    monkeypatch.setattr(prepare_mod, "check_splits", broken)
    with pytest.raises(DataContractError):
        prepare(wd, PrepareConfig(kcore_user=1, kcore_item=1, seed=99))
    assert (wd.splits / "current").resolve() == first.path.resolve()
    assert sorted(p.name for p in wd.splits.iterdir()) == sorted(["current", first.snapshot])
