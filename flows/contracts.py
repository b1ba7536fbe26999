"""Data contracts: one declarative YAML file per stage output, checked by Great Expectations.

One loader turns ``data_contracts/<name>.yaml`` into GX ``ExpectationSuite``s (one for the
table, one per derived view) and one :func:`validate` runs them where the data lies: GX on a SQL
datasource over DuckDB (``duckdb_engine``), on the warehouse connection or on Parquet files, so
no table is loaded into Python. It raises :class:`flows.errors.DataContractError` listing every
failed expectation, and can keep the results as GX Data Docs (HTML, ``WorkDir.data_docs``).

A contract file has these keys (see ``data_contracts/train.yaml`` for a commented example)::

    contract: train                    # must equal the file stem
    params: {num_users: "what it is"}  # parameters the caller must pass to validate()
    columns:                           # shorthand, expanded to GX expectations
      user_idx: {type: int32, not_null: true, unique: false, optional: false,
                 between: [0, {$PARAMETER: num_users - 1}], in: [...]}
    expectations:                      # any GX expectation, snake_case, plus an optional why
      - expect_table_row_count_to_be_between: {min_value: 1}
        why: train is never empty
    derive:                            # derived views, computed in SQL (DuckDB), checked by GX
      user_degree:
        filter: "SQL condition"                    # optional
        assign: {col: "SQL expression"}            # optional
        group_by: [user_id]                        # optional, with agg
        agg: {degree: "count(*)"}                  # SQL aggregate per group
        expectations: [...]

Suite parameters use GX's own ``{$PARAMETER: "expr"}`` (arithmetic allowed, e.g.
``num_users - 1``); ``rows`` is always available and is the row count of the table or view
being checked. The SQL of ``derive`` is the contract's own text and takes no parameters.
Types (``int32``, ``int64``, ``str``, ``bytes``, ...) are pandas/Arrow dtype names: GX checks
them on an empty frame with the dtypes DuckDB reports for the data.

Why derived views: invariants such as "every user has degree >= k" or "no (user, item) pair in
two splits" are not row-wise GX expectations; a group-by makes them plain column expectations,
and the group keys name the offending users, items or pairs in a failure.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import duckdb
import numpy as np
import pandas as pd
import yaml
from duckdb_engine import ConnectionWrapper
from rich.console import Console

from flows.errors import DataContractError, HqgnnError
from flows.paths import contracts_dir as default_contracts_dir

TABLE = "table"  # name of the view that is the data itself
ROW = "__row"  # row number added to DataFrames and Parquet files: failures name their rows
SPLITS = ("train", "valid", "test")
_SCHEMA = {"expect_column_to_exist", "expect_column_values_to_be_of_type"}  # run on dtypes
_AUTO_PARAMS = {"rows"}
_COLUMN_KEYS = {"type", "not_null", "unique", "between", "in", "optional", "why"}
_VIEW_KEYS = {"filter", "assign", "group_by", "agg", "expectations"}
_TOP_KEYS = {"contract", "description", "params", "columns", "expectations", "derive"}
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 5}


class ContractUsageError(HqgnnError, ValueError):
    """A contract that does not exist or is malformed, or a missing parameter."""


@dataclass(frozen=True)
class ContractReport:
    """What a passed validation checked: contract name, rows of the table, expectations run."""

    contract: str
    rows: int
    expectations: int
    success: bool
    seconds: float
    docs: Path | None = None  # index.html of the Data Docs site, when validate() was given docs


@dataclass(frozen=True)
class _View:
    name: str
    steps: Mapping[str, Any]  # filter / assign / group_by / agg (empty for the table)
    expectations: tuple[dict[str, Any], ...]  # GX expectation dicts, column ones tagged
    optional_columns: frozenset[str]


@dataclass(frozen=True)
class Contract:
    """A parsed contract file: its parameters and its views (the table first)."""

    name: str
    path: Path
    params: Mapping[str, str]
    views: tuple[_View, ...]


# ----------------------------------------------------------------------------- loading


def available_contracts(contracts_dir: Path | None = None) -> list[str]:
    """Names (file stems) of the contracts in ``contracts_dir`` (default: ``data_contracts/``)."""
    contracts_dir = contracts_dir or default_contracts_dir()
    return sorted(p.stem for p in contracts_dir.glob("*.yaml"))


def load_contract(name: str, contracts_dir: Path | None = None) -> Contract:
    """Parse ``<contracts_dir>/<name>.yaml`` (default: ``data_contracts/``); raises
    ContractUsageError naming what is wrong."""
    contracts_dir = contracts_dir or default_contracts_dir()
    path = contracts_dir / f"{name}.yaml"
    if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not path.is_file():
        known = ", ".join(available_contracts(contracts_dir)) or "none"
        raise ContractUsageError(f"unknown data contract {name!r}: no {path} (known: {known})")
    return _parse_contract(name, path, path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _parse_contract(name: str, path: Path, _mtime: int) -> Contract:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ContractUsageError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ContractUsageError(f"{path}: expected a mapping at the top level")
    _check_keys(path, "top level", doc, _TOP_KEYS)
    if doc.get("contract") != name:
        raise ContractUsageError(
            f"{path}: 'contract' is {doc.get('contract')!r}, expected {name!r}"
        )
    params = dict(doc.get("params") or {})

    table_exps: list[dict[str, Any]] = []
    optional: set[str] = set()
    for column, spec in (doc.get("columns") or {}).items():
        spec = spec or {}
        _check_keys(path, f"column {column!r}", spec, _COLUMN_KEYS)
        if spec.get("optional"):
            optional.add(column)
        table_exps.extend(_column_expectations(column, spec))
    table_exps.extend(_expectation_list(path, TABLE, doc.get("expectations")))
    views = [_View(TABLE, {}, tuple(table_exps), frozenset(optional))]

    for view_name, spec in (doc.get("derive") or {}).items():
        _check_keys(path, f"derived view {view_name!r}", spec, _VIEW_KEYS)
        if ("group_by" in spec) != ("agg" in spec):
            raise ContractUsageError(f"{path}: view {view_name!r} needs both group_by and agg")
        for step in ("assign", "agg"):
            if not all(isinstance(v, str) for v in (spec.get(step) or {}).values()):
                raise ContractUsageError(
                    f"{path}: view {view_name!r}: {step} maps column names to SQL expressions"
                )
        exps = _expectation_list(path, view_name, spec.get("expectations"))
        steps = {k: v for k, v in spec.items() if k != "expectations"}
        views.append(_View(view_name, steps, tuple(exps), frozenset()))

    for view in views:  # every $PARAMETER must name a declared parameter: catches typos early
        for exp in view.expectations:
            for used in _parameter_names(exp["kwargs"]):
                if used not in params and used not in _AUTO_PARAMS:
                    raise ContractUsageError(
                        f"{path}: {exp['type']} in {view.name!r} uses parameter {used!r}, "
                        f"not declared under 'params' ({', '.join(params) or 'none'})"
                    )
    return Contract(name, path, params, tuple(views))


def _check_keys(path: Path, where: str, spec: Any, allowed: set[str]) -> None:
    if not isinstance(spec, dict):
        raise ContractUsageError(f"{path}: {where} must be a mapping, got {spec!r}")
    unknown = set(spec) - allowed
    if unknown:
        raise ContractUsageError(f"{path}: {where} has unknown key(s) {sorted(unknown)}")


def _exp(expectation: str, why: str | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"type": expectation, "kwargs": kwargs, "meta": {"why": why} if why else {}}


def _column_expectations(column: str, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expand the column shorthand into GX expectation dicts (existence first)."""
    why = spec.get("why")
    out = []
    if not spec.get("optional"):
        out.append(_exp("expect_column_to_exist", why, column=column))
    if "type" in spec:
        out.append(
            _exp("expect_column_values_to_be_of_type", why, column=column, type_=spec["type"])
        )
    if spec.get("not_null"):
        out.append(_exp("expect_column_values_to_not_be_null", why, column=column))
    if spec.get("unique"):
        out.append(_exp("expect_column_values_to_be_unique", why, column=column))
    if "between" in spec:
        bounds = spec["between"]
        if isinstance(bounds, list):
            bounds = {"min_value": bounds[0], "max_value": bounds[1]}
        out.append(_exp("expect_column_values_to_be_between", why, column=column, **bounds))
    if "in" in spec:
        out.append(
            _exp("expect_column_values_to_be_in_set", why, column=column, value_set=spec["in"])
        )
    return out


def _expectation_list(path: Path, view: str, items: Any) -> list[dict[str, Any]]:
    out = []
    for item in items or []:
        if not isinstance(item, dict):
            raise ContractUsageError(f"{path}: expectation in {view!r} must be a mapping: {item!r}")
        names = [k for k in item if k != "why"]
        if len(names) != 1 or not names[0].startswith("expect_"):
            raise ContractUsageError(
                f"{path}: each expectation in {view!r} is one 'expect_*: {{kwargs}}' "
                f"(plus an optional 'why'), got keys {sorted(item)}"
            )
        out.append(_exp(names[0], item.get("why"), **(item[names[0]] or {})))
    return out


def _parameter_names(value: Any) -> set[str]:
    """Identifiers used in ``{$PARAMETER: expr}`` anywhere inside ``value``."""
    if isinstance(value, dict):
        if "$PARAMETER" in value:
            return set(re.findall(r"[A-Za-z_]\w*", str(value["$PARAMETER"])))
        return set().union(*(_parameter_names(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_parameter_names(v) for v in value))
    return set()


# ----------------------------------------------------------------------------- GX plumbing


class _BorrowedConnection(ConnectionWrapper):
    """The caller's DuckDB connection, lent to SQLAlchemy (and so to GX) and given back as it was.

    GX's queries run inside the caller's open transaction, so they see stage output that is
    not committed yet. SQLAlchemy ends every checkout with a rollback and a close: here those
    (and begin/commit) do nothing, so the caller's transaction and connection stay as they are.
    """

    def begin(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def _settle(con: duckdb.DuckDBPyConnection) -> None:
    """Drop a result GX left unfetched on ``con`` (DuckDB >= 2 refuses other work until then)."""
    abort = getattr(con, "abort", None)
    if abort is not None:
        abort()


@functools.cache
def _context() -> Any:
    """One ephemeral GX context per process, analytics and progress bars off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


@functools.cache
def _schema_batch_definition() -> Any:
    """Pandas batches for the schema checks, run on an empty frame with the view's dtypes."""
    asset = _context().data_sources.add_pandas("hqgnn-schema").add_dataframe_asset("head")
    return asset.add_batch_definition_whole_dataframe("whole")


@contextmanager
def _sql_datasource(con: duckdb.DuckDBPyConnection) -> Iterator[Any]:
    """A GX SQL datasource on ``con`` (through duckdb_engine), removed again afterwards."""
    import sqlalchemy as sa

    context = _context()
    name = f"duckdb-{uuid.uuid4().hex[:12]}"
    source = context.data_sources.add_sql(
        name,
        connection_string="duckdb:///:memory:",  # never opened: the creator lends ``con``
        kwargs={"creator": lambda: _BorrowedConnection(con), "poolclass": sa.pool.NullPool},
    )
    try:
        yield source
    finally:
        context.data_sources.delete(name)
        _settle(con)


_SUITES: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def _suites(contract: Contract, view: _View, present: frozenset[str]) -> tuple[Any, Any]:
    """The view's (schema, rows) GX suites (cached); expectations on absent optional columns
    left out. Schema: column existence and types; rows: everything that reads values."""
    import great_expectations as gx

    absent = view.optional_columns - present
    key = (contract.path, id(view), absent)
    if key not in _SUITES:
        exps = [e for e in view.expectations if e["kwargs"].get("column") not in absent]
        name = f"{contract.name}.{view.name}"
        _SUITES[key] = (
            gx.ExpectationSuite(
                name=f"{name}.schema", expectations=[e for e in exps if e["type"] in _SCHEMA]
            ),
            gx.ExpectationSuite(
                name=name, expectations=[e for e in exps if e["type"] not in _SCHEMA]
            ),
        )
    return _SUITES[key]


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class WarehouseRows:
    """Rows that stay in DuckDB: ``relation`` of ``con`` (e.g. ``query(con, "kcore_rows")``) or
    a table or view name. Checked on ``con`` itself, inside its open transaction."""

    con: duckdb.DuckDBPyConnection
    relation: duckdb.DuckDBPyRelation | str


Data: TypeAlias = pd.DataFrame | Path | str | WarehouseRows


def _private_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for Parquet files and DataFrames, bounded like the warehouse."""
    from flows.warehouse import default_memory_limit, default_threads

    return duckdb.connect(
        config={"threads": default_threads(), "memory_limit": default_memory_limit()}
    )


@contextmanager
def _open(contract: str, data: Data) -> Iterator[tuple[duckdb.DuckDBPyConnection, Any]]:
    """(connection, relation) of ``data``; Parquet files are scanned where they lie, never loaded.

    DataFrames and Parquet files get a ``__row`` column (0-based row number) so that a failure
    names its rows; warehouse rows are named by their values only.
    """
    if isinstance(data, WarehouseRows):
        rel = data.relation
        yield data.con, (data.con.table(rel) if isinstance(rel, str) else rel)
        return
    if not isinstance(data, str | os.PathLike | pd.DataFrame):
        raise ContractUsageError(
            f"validate({contract!r}): data must be a DataFrame, a Parquet path or WarehouseRows, "
            f"got {type(data).__name__}"
        )
    con = _private_connection()
    try:
        if isinstance(data, pd.DataFrame):
            con.register("frame", data.assign(**{ROW: np.arange(len(data), dtype="int64")}))
            rel = con.table("frame")
        else:
            rel = read_parquet(con, Path(data))
        yield con, rel
    finally:
        con.close()


def read_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> duckdb.DuckDBPyRelation:
    """A lazy relation over a Parquet file, plus its row numbers as ``__row``."""
    from flows.errors import InputError

    try:
        rel = con.read_parquet(str(path), file_row_number=True)
    except duckdb.Error as exc:
        raise InputError(f"{path}: cannot read Parquet: {exc}") from exc
    return rel.project(f"* exclude (file_row_number), file_row_number as {ROW}")


def _ident(name: str) -> str:
    """A column name of a contract file as a quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def derive_view(rel: duckdb.DuckDBPyRelation, steps: Mapping[str, Any]) -> duckdb.DuckDBPyRelation:
    """A derived view in SQL: ``filter`` (where), ``assign`` (new columns), then ``group_by`` +
    ``agg`` (the group keys stay columns and name the offending groups in a failure).

    The expressions are the contract file's own SQL text (never data values).
    """
    out = rel
    if "filter" in steps:
        out = out.filter(steps["filter"])
    if "assign" in steps:
        new = [f"({expr}) as {_ident(col)}" for col, expr in steps["assign"].items()]
        out = out.project(", ".join(["*", *new]))
    if "group_by" in steps:
        keys = ", ".join(_ident(k) for k in steps["group_by"])
        aggs = [f"({expr}) as {_ident(col)}" for col, expr in steps["agg"].items()]
        out = out.aggregate(", ".join([keys, *aggs]), keys)
    return out


# ----------------------------------------------------------------------------- validation


def validate(
    contract: str,
    data: Data,
    params: Mapping[str, Any] | None = None,
    docs: Path | None = None,
) -> ContractReport:
    """Check ``data`` against ``data_contracts/<contract>.yaml`` where the data lies.

    ``data`` is a Parquet path (scanned by DuckDB), :class:`WarehouseRows` (checked inside the
    warehouse connection and its open transaction) or a small DataFrame (tests). GX runs the
    value expectations as SQL on DuckDB, so no table is loaded into Python; column existence
    and types are checked by GX on an empty frame with the same dtypes.

    ``params`` fill the suite parameters the contract declares (extra keys are ignored).
    ``docs``: a folder (``WorkDir.data_docs``) where the results go as GX Data Docs, passed
    or failed; the report's ``docs`` (and a note on the error) is its ``index.html``.
    Returns a ContractReport on success; raises DataContractError listing every failed
    expectation, or ContractUsageError for an unknown contract or a missing parameter.
    """
    start = time.perf_counter()
    spec = load_contract(contract)
    params = dict(params or {})
    missing = [p for p in spec.params if p not in params]
    if missing:
        wanted = "; ".join(f"{k}: {v}" for k, v in spec.params.items())
        raise ContractUsageError(
            f"data contract {contract!r} needs parameter(s) {missing} (declared: {wanted})"
        )
    values = {k: v for k, v in params.items() if k in spec.params}

    failures: list[str] = []
    results: list[Any] = []
    n_expectations, rows = 0, None
    with _open(contract, data) as (con, table), _sql_datasource(con) as source:
        for view in spec.views:
            name = f"_contract_{uuid.uuid4().hex[:12]}"
            _settle(con)
            try:
                rel = table if view.name == TABLE else derive_view(table, view.steps)
                rel.create_view(name, replace=True)
            except duckdb.Error as exc:  # a broken table (e.g. missing column) must still report
                failures.append(f"[{view.name}] could not be derived: {type(exc).__name__}: {exc}")
                continue
            try:
                result, count = _validate_view(spec, view, con, rel, name, source, values)
            finally:
                _settle(con)
                con.execute(f"drop view if exists {_ident(name)}")
            rows = count if view.name == TABLE else rows
            n_expectations += len(result.results)
            results.append(result)
            columns = [c for c in rel.columns if c != ROW]
            failures.extend(
                _describe(view.name, r, columns, _index_columns(view, rel))
                for r in result.results
                if not r.success
            )
    index = _publish(results, docs) if docs is not None else None
    if failures:
        error = DataContractError(contract, failures)
        if index is not None:
            error.add_note(f"Data Docs: {index}")
        raise error
    return ContractReport(
        contract, rows or 0, n_expectations, True, time.perf_counter() - start, index
    )


def _index_columns(view: _View, rel: duckdb.DuckDBPyRelation) -> list[str]:
    """Columns that name a failing row: the group keys of a view, else the row number."""
    if "group_by" in view.steps:
        return list(view.steps["group_by"])
    return [ROW] if ROW in rel.columns else []


def _validate_view(
    spec: Contract,
    view: _View,
    con: duckdb.DuckDBPyConnection,
    rel: duckdb.DuckDBPyRelation,
    name: str,
    source: Any,
    values: Mapping[str, Any],
) -> tuple[Any, int | None]:
    """GX on one view (a DuckDB view called ``name``): schema on an empty frame, rows in SQL.

    Returns one GX result holding both, and the view's row count when it was computed.
    """
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.validator.validation_statistics import calc_validation_statistics

    head = rel.limit(0).to_arrow_table().to_pandas()
    schema_suite, rows_suite = _suites(spec, view, frozenset(head.columns))
    values = dict(values)
    count = None
    if any("rows" in _parameter_names(e["kwargs"]) for e in view.expectations):
        ((count,),) = rel.aggregate("count(*)").fetchall()
        values["rows"] = count
    result_format = dict(_RESULT_FORMAT)
    index = _index_columns(view, rel)
    if index:
        result_format["unexpected_index_column_names"] = index

    checked, counted = [], []
    if schema_suite.expectations:
        batch = _schema_batch_definition().get_batch(batch_parameters={"dataframe": head})
        checked.append(batch.validate(schema_suite, expectation_parameters=values))
    if rows_suite.expectations:
        # a query asset, not a table asset: GX's table reflection (PostgreSQL catalog queries
        # via duckdb_engine) fails in DuckDB, and a failed query aborts the caller's transaction
        asset = source.add_query_asset(name, query=f"select * from {_ident(name)}")
        batch = asset.add_batch_definition_whole_table("whole").get_batch()
        checked.append(
            batch.validate(rows_suite, expectation_parameters=values, result_format=result_format)
        )
        results = checked[-1].results
        counted = [r.result["element_count"] for r in results if "element_count" in r.result]
    merged = [r for c in checked for r in c.results]
    if count is None and counted:  # GX counted the rows already (not on the empty head)
        count = counted[0]
    if count is None and view.name == TABLE:
        _settle(con)
        ((count,),) = rel.aggregate("count(*)").fetchall()
    stats = calc_validation_statistics(merged)
    result = ExpectationSuiteValidationResult(
        success=stats.success,
        results=merged,
        suite_name=rows_suite.name,
        suite_parameters=dict(values),
        statistics={k: v for k, v in stats._asdict().items() if k != "success"},
        meta={"contract": spec.name, "view": view.name, "rows": count},
    )
    return result, count


_DOCS_LOCK = threading.Lock()


def _publish(results: list[Any], docs: Path) -> Path:
    """Store ``results`` and (re)build the GX Data Docs site in ``docs``; returns its index.html.

    The site's index lists the validations of this process; the pages of earlier runs stay."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    context = _context()
    docs = Path(docs).resolve()
    site = "hqgnn-" + hashlib.sha1(str(docs).encode()).hexdigest()[:12]
    run_id = RunIdentifier(run_name=results[0].meta["contract"] if results else "none")
    with _DOCS_LOCK:
        if site not in (context.get_config().data_docs_sites or {}):
            context.add_data_docs_site(
                site,
                {
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(docs),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        keys = []
        for result in results:
            key = ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
                run_id=run_id,
                batch_identifier=result.suite_name,
            )
            context.validation_results_store.set(key, result)
            keys.append(key)
        context.build_data_docs(site_names=[site], resource_identifiers=keys)
    return docs / "index.html"


def validate_splits(
    split_dir: Path, params: Mapping[str, Any] | None = None, docs: Path | None = None
) -> list[ContractReport]:
    """Check a split snapshot: train, valid, test, users and items (when present), then the
    cross-split ``splits`` contract on their union (no leakage, no cold valid/test ids).

    Every file is scanned by DuckDB where it lies. Raises on the first contract that fails.
    """
    split_dir = Path(split_dir)
    reports = []
    for name in ("train", "valid", "test", "users", "items"):
        path = split_dir / f"{name}.parquet"
        if name in SPLITS or path.is_file():
            reports.append(validate(name, path, params, docs))
    con = _private_connection()
    try:
        parts = [
            read_parquet(con, split_dir / f"{name}.parquet").project(
                f"user_idx, item_idx, '{name}' as split"  # name: one of SPLITS, not data
            )
            for name in SPLITS
        ]
        union = functools.reduce(lambda a, b: a.union(b), parts)
        reports.append(validate("splits", WarehouseRows(con, union), params, docs))
    finally:
        con.close()
    return reports


# ----------------------------------------------------------------------------- messages


def _plain(value: Any) -> Any:
    """numpy scalars to Python, integral floats to int (readable messages)."""
    value = value.item() if hasattr(value, "item") and not isinstance(value, bytes | str) else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(_plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(index: list[Any], keys: list[str]) -> str:
    """Row numbers of the table, or the group keys of a derived view (``user_id='u3'``)."""
    entries = [e for e in index if isinstance(e, dict)]
    if keys == [ROW]:
        return "rows " + _short([_plain(e.get(ROW)) for e in entries], 120)
    return "; ".join(",".join(f"{k}={_plain(e.get(k))!r}" for k in keys) for e in entries)


def _value(value: Any) -> Any:
    """A compound value (GX on SQL gives a dict of the columns) as a tuple, like pandas."""
    return tuple(_plain(v) for v in value.values()) if isinstance(value, dict) else _plain(value)


def _describe(view: str, result: Any, columns: Any, keys: list[str]) -> str:
    """One readable line: expectation, column(s), what was expected, what was observed."""
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
    cols = kwargs.pop("column", None) or kwargs.pop("column_list", None)
    where = "" if view == TABLE else f"[view {view}] "
    head = f"{where}{config.type}" + (f" on {cols}" if cols is not None else "")
    expected = ", ".join(f"{k}={_short(_plain(v), 60)}" for k, v in kwargs.items())
    why = config.meta.get("why") if config.meta else None
    line = f"{head}: expected {expected or 'to hold'}" + (f" ({why})" if why else "")

    if config.type == "expect_column_to_exist":
        return f"{line}; observed: column {cols!r} missing (columns: {list(columns)})"
    absent = [c for c in ([cols] if isinstance(cols, str) else cols or []) if c not in columns]
    if absent:
        return f"{line}; not checked: column(s) {absent} missing"
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return f"{line}; raised {_short(info.get('exception_message'))}"
    res = dict(result.result or {})
    if "unexpected_count" in res and res.get("unexpected_count"):
        observed = (
            f"{res['unexpected_count']} of {res.get('element_count')} values unexpected "
            f"({res.get('unexpected_percent', 0):.3g}%)"
        )
        counts = res.get("partial_unexpected_counts") or []
        if counts:
            observed += "; e.g. " + ", ".join(
                f"{_short(repr(_value(c['value'])), 40)} x{c['count']}" for c in counts[:5]
            )
        index = res.get("partial_unexpected_index_list") or []
        if index and keys:
            observed += f"; at {_where(index[:5], keys)}"
        return f"{line}; observed {observed}"
    if "observed_value" in res:
        return f"{line}; observed {_short(res['observed_value'])}"
    return f"{line}; observed {_short(res) if res else 'nothing (failed)'}"


_console = Console(stderr=True)


def check_contract(contract: str, fetch: Callable[[], Any], params: Mapping[str, Any] | None = None, docs: Path | None = None) -> ContractReport:
    """Validate what ``fetch()`` returns (WarehouseRows, a Parquet path or a DataFrame) against
    ``contract``, with a spinner on standard error; results as Data Docs in ``docs`` when given."""
    with _console.status(f"contract: {contract}"):
        return validate(contract, fetch(), params, docs)
