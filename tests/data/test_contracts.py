"""Data contracts (data_contracts/*.yaml via flows.contracts): each passes on a tiny good table
and fails, with a message naming the expectation and the column, on each broken invariant."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from flows.contracts import (
    ContractUsageError,
    WarehouseRows,
    available_contracts,
    load_contract,
    validate,
    validate_splits,
)
from flows.errors import DataContractError
from flows.paths import CONTRACTS_DIR
from flows.workdir import WorkDir
from hqgnn.bits import ALL_BITS

REQUIRED = {
    "raw",
    "clean",
    "kcore",
    "train",
    "valid",
    "test",
    "splits",
    "users",
    "items",
    "user_codes",
    "item_codes",
}


def i32(*values: int) -> np.ndarray:
    return np.array(values, dtype="int32")


# --------------------------------------------------------------------------- good tables


def raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "batch_id": ["b1", "b1", "b2"],
            "source_file": ["a.csv", "a.csv", "b.csv"],
            "source_hash": ["h1", "h1", "h2"],
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["i1", "i1", "i2"],  # a raw duplicate is fine: raw keeps rows as they came
            "timestamp": np.array([10, 11, 12], dtype="int64"),
            "rating": [4.0, 5.0, 3.5],
        }
    )


def clean() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["i1", "i2", "i1"],
            "timestamp": np.array([10, 20, 30], dtype="int64"),
            "count": np.array([2, 1, 1], dtype="int64"),
        }
    )


def kcore() -> pd.DataFrame:
    """A 2-core: users a, b each rated items x, y; c rated x, y, z; z has 2 users (b, c)."""
    pairs = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "z"), ("c", "y"), ("c", "z")]
    return pd.DataFrame(pairs, columns=["user_id", "item_id"])


SPLIT_PARAMS = {"num_users": 3, "num_items": 4}


def train() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_idx": i32(0, 0, 1, 2, 2),
            "item_idx": i32(0, 1, 2, 3, 0),
            "timestamp": pd.array([1, 2, None, 4, 5], dtype="Int64"),
        }
    )


def valid() -> pd.DataFrame:
    return pd.DataFrame(
        {"user_idx": i32(0, 1), "item_idx": i32(2, 0), "timestamp": np.array([7, 8], dtype="int64")}
    )


def test_split() -> pd.DataFrame:
    return pd.DataFrame(
        {"user_idx": i32(2), "item_idx": i32(1), "timestamp": np.array([9], dtype="int64")}
    )


test_split.__test__ = False  # type: ignore[attr-defined]  # a fixture builder, not a test


def union(tr: pd.DataFrame, va: pd.DataFrame, te: pd.DataFrame) -> pd.DataFrame:
    parts = [
        f[["user_idx", "item_idx"]].assign(split=s)
        for s, f in (("train", tr), ("valid", va), ("test", te))
    ]
    return pd.concat(parts, ignore_index=True)


def id_map(kind: str) -> pd.DataFrame:
    return pd.DataFrame(
        {f"{kind}_idx": i32(0, 1, 2), f"{kind}_id": ["x7", "x3", "x9"], "n_train": i32(2, 1, 2)}
    )


CODE_PARAMS = {"num_users": 3, "num_items": 3, "bits": 4, "dim": 4, "code_bytes": 2, "known_bits": list(ALL_BITS)}


def codes(kind: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            f"{kind}_idx": i32(2, 0, 1),
            f"{kind}_id": ["c", "a", "b"],
            "bits": np.array([4, 4, 4], dtype="int8"),
            "code": [b"\x12\x34", b"\xff\x00", b"\x00\x01"],
            "scale": np.array([0.5, 1.0, 2.0], dtype="float32"),
        }
    )


GOOD: dict[str, tuple[Callable[[], pd.DataFrame], dict[str, Any]]] = {
    "raw": (raw, {}),
    "clean": (clean, {}),
    "kcore": (kcore, {"k_user": 2, "k_item": 2}),
    "train": (train, SPLIT_PARAMS),
    "valid": (valid, SPLIT_PARAMS),
    "test": (test_split, SPLIT_PARAMS),
    "splits": (lambda: union(train(), valid(), test_split()), {}),
    "users": (lambda: id_map("user"), {}),
    "items": (lambda: id_map("item"), {}),
    "user_codes": (lambda: codes("user"), CODE_PARAMS),
    "item_codes": (lambda: codes("item"), CODE_PARAMS),
}


def test_every_required_contract_exists_and_loads() -> None:
    assert set(available_contracts()) >= REQUIRED
    for name in available_contracts():
        contract = load_contract(name)
        assert contract.name == name
        assert sum(len(v.expectations) for v in contract.views) >= 3
        assert (CONTRACTS_DIR / f"{name}.yaml").read_text().startswith("#"), "header comment"


@pytest.mark.parametrize("contract", sorted(GOOD))
def test_good_table_passes(contract: str) -> None:
    make, params = GOOD[contract]
    report = validate(contract, make(), params)
    assert report.success and report.contract == contract
    assert report.rows == len(make()) and report.expectations >= 3


# --------------------------------------------------------------------------- bad tables


def _with(df: pd.DataFrame, **columns: Any) -> pd.DataFrame:
    return df.assign(**columns)


def _append(df: pd.DataFrame, row: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df, row.astype(df.dtypes.to_dict())], ignore_index=True)


BAD: list[tuple[str, str, Callable[[], pd.DataFrame], dict[str, Any], tuple[str, ...]]] = [
    # contract, case, table, params, substrings the message must contain
    (
        "raw",
        "null user id",
        lambda: _with(raw(), user_id=["u1", None, "u2"]),
        {},
        ("expect_column_values_to_not_be_null on user_id", "1 of 3"),
    ),
    (
        "raw",
        "missing provenance",
        lambda: raw().drop(columns="source_hash"),
        {},
        ("expect_column_to_exist on source_hash", "missing"),
    ),
    (
        "raw",
        "numeric user id",
        lambda: _with(raw(), user_id=[1, 1, 2]),
        {},
        ("expect_column_values_to_be_of_type on user_id", "type_=str", "observed int64"),
    ),
    (
        "raw",
        "float timestamp",
        lambda: _with(raw(), timestamp=[1.5, 2.0, 3.0]),
        {},
        ("expect_column_values_to_be_of_type on timestamp", "observed float64"),
    ),
    (
        "clean",
        "duplicate pair",
        lambda: _append(clean(), clean().iloc[[0]]),
        {},
        ("expect_compound_columns_to_be_unique on ['user_id', 'item_id']", "('u1', 'i1') x2"),
    ),
    (
        "clean",
        "zero count",
        lambda: _with(clean(), count=np.array([1, 0, 1])),
        {},
        ("expect_column_values_to_be_between on count", "min_value=1", "0 x1"),
    ),
    (
        "kcore",
        "user degree below k",
        lambda: _append(kcore(), pd.DataFrame({"user_id": ["d"], "item_id": ["x"]})),
        {"k_user": 2, "k_item": 2},
        ("[view user_degree]", "on degree", "min_value=2", "user_id='d'"),
    ),
    (
        "kcore",
        "item degree below k",
        lambda: _append(kcore(), pd.DataFrame({"user_id": ["a"], "item_id": ["w"]})),
        {"k_user": 2, "k_item": 2},
        ("[view item_degree]", "on degree", "item_id='w'"),
    ),
    (
        "kcore",
        "k above every degree",
        kcore,
        {"k_user": 3, "k_item": 1},
        ("[view user_degree]", "min_value=3", "3 of 3 values unexpected"),
    ),
    (
        "kcore",
        "duplicate pair",
        lambda: _append(kcore(), kcore().iloc[[0]]),
        {"k_user": 2, "k_item": 2},
        ("expect_compound_columns_to_be_unique", "('a', 'x') x2"),
    ),
    (
        "kcore",
        "empty",
        lambda: kcore().iloc[:0],
        {"k_user": 2, "k_item": 2},
        ("expect_table_row_count_to_be_between", "observed 0"),
    ),
    (
        "train",
        "wrong dtype",
        lambda: _with(train(), user_idx=train().user_idx.astype("int64")),
        SPLIT_PARAMS,
        ("expect_column_values_to_be_of_type on user_idx", "type_=int32", "observed int64"),
    ),
    (
        "train",
        "id out of dense range",
        lambda: _with(train(), item_idx=i32(0, 1, 2, 4, 0)),
        SPLIT_PARAMS,
        ("expect_column_values_to_be_between on item_idx", "max_value=3", "4 x1", "rows [3]"),
    ),
    (
        "train",
        "negative id",
        lambda: _with(train(), user_idx=i32(0, 0, -1, 2, 2)),
        SPLIT_PARAMS,
        ("expect_column_values_to_be_between on user_idx", "min_value=0", "-1 x1"),
    ),
    (
        "train",
        "duplicate pair",
        lambda: _append(train(), train().iloc[[1]]),
        SPLIT_PARAMS,
        ("expect_compound_columns_to_be_unique on ['user_idx', 'item_idx']", "(0, 1) x2"),
    ),
    (
        "train",
        "null key",
        lambda: _with(train(), user_idx=pd.array([0, None, 1, 2, 2], dtype="Int32")),
        SPLIT_PARAMS,
        ("expect_column_values_to_not_be_null on user_idx",),
    ),
    (
        "train",
        "empty",
        lambda: train().iloc[:0],
        SPLIT_PARAMS,
        ("expect_table_row_count_to_be_between", "train is never empty", "observed 0"),
    ),
    (
        "train",
        "no timestamp column",
        lambda: train().drop(columns="timestamp"),
        SPLIT_PARAMS,
        ("expect_column_to_exist on timestamp",),
    ),
    (
        "valid",
        "id out of dense range",
        lambda: _with(valid(), user_idx=i32(0, 3)),
        SPLIT_PARAMS,
        ("expect_column_values_to_be_between on user_idx", "max_value=2", "3 x1"),
    ),
    (
        "valid",
        "duplicate pair",
        lambda: _append(valid(), valid().iloc[[0]]),
        SPLIT_PARAMS,
        ("expect_compound_columns_to_be_unique",),
    ),
    (
        "test",
        "wrong dtype",
        lambda: _with(test_split(), item_idx=[1.0]),
        SPLIT_PARAMS,
        ("expect_column_values_to_be_of_type on item_idx", "observed float64"),
    ),
    (
        "splits",
        "leakage train/test",
        lambda: union(train(), valid(), _with(test_split(), item_idx=i32(3))),
        {},
        ("[view pair_splits]", "on n_splits", "leakage", "user_idx=2,item_idx=3"),
    ),
    (
        "splits",
        "cold valid user",
        lambda: union(train().iloc[:2], valid(), test_split().iloc[:0]),
        {},
        ("[view user_train_rows]", "no cold users", "user_idx=1"),
    ),
    (
        "splits",
        "cold test item",
        lambda: union(train().iloc[[0, 1, 2, 4]], valid(), _with(test_split(), item_idx=i32(3))),
        {},
        ("[view item_train_rows]", "no cold items", "item_idx=3"),
    ),
    (
        "splits",
        "unknown split label",
        lambda: union(train(), valid(), test_split()).replace({"split": {"test": "holdout"}}),
        {},
        ("expect_column_values_to_be_in_set on split", "'holdout' x1"),
    ),
    (
        "users",
        "non-dense ids (gap)",
        lambda: _with(id_map("user"), user_idx=i32(0, 1, 3)),
        {},
        ("expect_column_values_to_be_between on user_idx", "max_value=2", "3 x1"),
    ),
    (
        "users",
        "duplicate idx",
        lambda: _with(id_map("user"), user_idx=i32(0, 1, 1)),
        {},
        ("expect_column_values_to_be_unique on user_idx", "1 x2"),
    ),
    (
        "users",
        "duplicate original id",
        lambda: _with(id_map("user"), user_id=["a", "b", "a"]),
        {},
        ("expect_column_values_to_be_unique on user_id", "'a' x2"),
    ),
    (
        "users",
        "user without train rows",
        lambda: _with(id_map("user"), n_train=i32(2, 0, 1)),
        {},
        ("expect_column_values_to_be_between on n_train", "0 x1"),
    ),
    (
        "items",
        "non-dense ids (start at 1)",
        lambda: _with(id_map("item"), item_idx=i32(1, 2, 3)),
        {},
        ("expect_column_values_to_be_between on item_idx", "3 x1"),
    ),
    (
        "items",
        "null original id",
        lambda: _with(id_map("item"), item_id=["a", None, "c"]),
        {},
        ("expect_column_values_to_not_be_null on item_id",),
    ),
    (
        "user_codes",
        "bad code length",
        lambda: _with(codes("user"), code=[b"\x12\x34", b"\xff", b"\x00\x01"]),
        CODE_PARAMS,
        ("[view code_length]", "on code_len", "min_value=2, max_value=2", "1 x1", "rows [1]"),
    ),
    (
        "user_codes",
        "code length disagrees with bits x dim",
        codes("user").copy,
        {**CODE_PARAMS, "dim": 8, "code_bytes": 2},
        ("[view code_length]", "on code_bits", "min_value=32"),
    ),
    (
        "user_codes",
        "non-positive scale",
        lambda: _with(codes("user"), scale=np.array([0.5, 0.0, -1.0], dtype="float32")),
        CODE_PARAMS,
        ("expect_column_values_to_be_between on scale", "strict_min=True", "2 of 3"),
    ),
    (
        "user_codes",
        "infinite scale",
        lambda: _with(codes("user"), scale=np.array([0.5, np.inf, 1.0], dtype="float32")),
        CODE_PARAMS,
        ("expect_column_values_to_be_between on scale", "inf x1"),
    ),
    (
        "user_codes",
        "NaN scale",
        lambda: _with(codes("user"), scale=np.array([0.5, np.nan, 1.0], dtype="float32")),
        CODE_PARAMS,
        ("expect_column_values_to_not_be_null on scale",),
    ),
    (
        "user_codes",
        "float64 scale",
        lambda: _with(codes("user"), scale=[0.5, 1.0, 2.0]),
        CODE_PARAMS,
        ("expect_column_values_to_be_of_type on scale", "type_=float32"),
    ),
    (
        "user_codes",
        "unsupported bit width",
        lambda: _with(codes("user"), bits=np.array([4, 3, 4], dtype="int8")),
        CODE_PARAMS,
        ("expect_column_values_to_be_in_set on bits", "3 x1"),
    ),
    (
        "user_codes",
        "a user without a code",
        lambda: codes("user").iloc[:2],
        CODE_PARAMS,
        ("expect_table_row_count_to_equal", "value=3", "observed 2"),
    ),
    (
        "item_codes",
        "two codes for one item",
        lambda: _with(codes("item"), item_idx=i32(2, 0, 0)),
        CODE_PARAMS,
        ("expect_column_values_to_be_unique on item_idx", "0 x2"),
    ),
    (
        "item_codes",
        "code not bytes",
        lambda: _with(codes("item"), code=["ab", "cd", "ef"]),
        CODE_PARAMS,
        ("expect_column_values_to_be_of_type on code", "type_=bytes"),
    ),
]


@pytest.mark.parametrize(
    ("contract", "case", "make", "params", "needles"), BAD, ids=[f"{b[0]}-{b[1]}" for b in BAD]
)
def test_bad_table_fails_readably(
    contract: str,
    case: str,
    make: Callable[[], pd.DataFrame],
    params: dict[str, Any],
    needles: tuple[str, ...],
) -> None:
    with pytest.raises(DataContractError) as info:
        validate(contract, make(), params)
    message = str(info.value)
    assert info.value.contract == contract and info.value.failures
    assert message.startswith(f"data contract {contract!r} failed")
    for needle in needles:
        assert needle in message, f"{needle!r} not in:\n{message}"


def test_every_contract_has_a_bad_case() -> None:
    assert {b[0] for b in BAD} == set(GOOD) == REQUIRED


# --------------------------------------------------------------------------- API edges


def test_parameters_are_per_call_not_baked_into_the_cached_suite() -> None:
    validate("train", train(), SPLIT_PARAMS)
    with pytest.raises(DataContractError, match="max_value=1"):
        validate("train", train(), {"num_users": 2, "num_items": 4})
    validate("train", train(), SPLIT_PARAMS)


def test_every_failure_is_listed() -> None:
    bad = _with(train(), user_idx=train().user_idx.astype("int64"), item_idx=i32(0, 1, 2, 9, 0))
    with pytest.raises(DataContractError) as info:
        validate("train", bad, SPLIT_PARAMS)
    assert len(info.value.failures) == 2
    assert "on user_idx" in info.value.failures[0] and "on item_idx" in info.value.failures[1]


def test_unknown_contract_and_missing_parameter_are_clear() -> None:
    with pytest.raises(ContractUsageError, match="unknown data contract 'nope'.*known: .*train"):
        validate("nope", train())
    with pytest.raises(ContractUsageError, match=r"needs parameter\(s\) \['num_items'\]"):
        validate("train", train(), {"num_users": 3})


def test_contract_using_an_undeclared_parameter_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "typo.yaml").write_text(
        "contract: typo\nparams: {num_users: n}\n"
        "columns:\n  user_idx: {between: [0, {$PARAMETER: num_user - 1}]}\n"
    )
    with pytest.raises(ContractUsageError, match="parameter 'num_user', not declared"):
        load_contract("typo", tmp_path)
    (tmp_path / "keys.yaml").write_text(
        "contract: keys\ncolumns:\n  a: {unique: true, nullable: true}\n"
    )
    with pytest.raises(ContractUsageError, match=r"unknown key\(s\) \['nullable'\]"):
        load_contract("keys", tmp_path)


def _write_snapshot(root: Path, tr: pd.DataFrame, va: pd.DataFrame, te: pd.DataFrame) -> Path:
    root.mkdir()
    for name, frame in (
        ("train", tr),
        ("valid", va),
        ("test", te),
        ("users", id_map("user")),
        ("items", id_map("item")),
    ):
        frame.to_parquet(root / f"{name}.parquet", index=False)
    return root


def test_parquet_path_with_nullable_timestamps(tmp_path: Path) -> None:
    train().to_parquet(tmp_path / "train.parquet", index=False)
    report = validate("train", tmp_path / "train.parquet", SPLIT_PARAMS)
    assert report.rows == 5


def test_validate_splits_on_a_snapshot(tmp_path: Path) -> None:
    ok = _write_snapshot(tmp_path / "ok", train(), valid(), test_split())
    reports = validate_splits(ok, SPLIT_PARAMS)
    assert [r.contract for r in reports] == ["train", "valid", "test", "users", "items", "splits"]

    leaky = _write_snapshot(
        tmp_path / "leaky", train(), _with(valid(), item_idx=i32(1, 0)), test_split()
    )
    with pytest.raises(DataContractError) as info:
        validate_splits(leaky, SPLIT_PARAMS)
    assert info.value.contract == "splits" and "user_idx=0,item_idx=1" in str(info.value)


def test_warehouse_rows_are_checked_inside_the_open_transaction() -> None:
    """Uncommitted stage output is seen, and a failing contract neither commits nor aborts."""
    con = duckdb.connect()
    con.register("good", kcore())
    con.begin()
    con.execute("create table kcore as select * from good")
    report = validate("kcore", WarehouseRows(con, "kcore"), {"k_user": 2, "k_item": 2})
    assert report.rows == 6
    con.execute("insert into kcore values ('d', 'x')")
    rel = con.sql("select user_id, item_id from kcore where user_id <> $skip", params={"skip": "zz"})
    with pytest.raises(DataContractError, match="user_id='d'"):
        validate("kcore", WarehouseRows(con, rel), {"k_user": 2, "k_item": 2})
    assert con.sql("select count(*) from kcore").fetchall() == [(7,)]  # still in the transaction
    con.rollback()
    assert con.sql("select count(*) from duckdb_tables() where table_name = 'kcore'").fetchall() == [
        (0,)
    ]
    views = con.sql("select view_name from duckdb_views() where not internal").fetchall()
    assert views == [("good",)]  # the contract's own views are gone


def test_results_are_kept_as_data_docs(tmp_path: Path) -> None:
    docs = WorkDir(tmp_path).data_docs
    report = validate("train", train(), SPLIT_PARAMS, docs)
    assert report.docs == docs / "index.html" and report.docs.is_file()
    with pytest.raises(DataContractError) as info:
        validate("valid", _with(valid(), user_idx=i32(0, 3)), SPLIT_PARAMS, docs)
    assert f"Data Docs: {docs / 'index.html'}" in info.value.__notes__
    pages = {p.read_text() for p in (docs / "validations").rglob("*.html")}
    assert any("expect_column_values_to_be_between" in p or "values must be" in p for p in pages)
    assert len(pages) >= 2 and "valid" in report.docs.read_text()
