"""Data contracts: one declarative YAML file per stage output, checked by Great Expectations.

One loader turns ``data_contracts/<name>.yaml`` into GX ``ExpectationSuite``s (one for the
table, one per derived view) and one :func:`validate` runs them on a DataFrame or a Parquet
file, raising :class:`hqgnn.errors.DataContractError` that lists every failed expectation.

A contract file has these keys (see ``data_contracts/train.yaml`` for a commented example)::

    contract: train                    # must equal the file stem
    params: {num_users: "what it is"}  # parameters the caller must pass to validate()
    columns:                           # shorthand, expanded to GX expectations
      user_idx: {type: int32, not_null: true, unique: false, optional: false,
                 between: [0, {$PARAMETER: num_users - 1}], in: [...]}
    expectations:                      # any GX expectation, snake_case, plus an optional why
      - expect_table_row_count_to_be_between: {min_value: 1}
        why: train is never empty
    derive:                            # derived views, computed in pandas, then checked by GX
      user_degree:
        filter: "pandas query expression"          # optional
        assign: {col: "pandas eval expression"}    # optional
        group_by: [user_id]                        # optional, with agg
        agg: {degree: [item_id, size]}
        expectations: [...]

Suite parameters use GX's own ``{$PARAMETER: "expr"}`` (arithmetic allowed, e.g.
``num_users - 1``); ``rows`` is always available and is the row count of the table or view
being checked. Pandas expressions in ``derive`` may name parameters as ``@name``.

Why derived views: invariants such as "every user has degree >= k" or "no (user, item) pair in
two splits" are not row-wise GX expectations; a group-by makes them plain column expectations,
and the group keys become the index so a failure names the offending users, items or pairs.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from flows.errors import DataContractError, HqgnnError
from flows.paths import contracts_dir as default_contracts_dir

TABLE = "table"  # name of the view that is the data itself
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


@functools.cache
def _batch_definition() -> Any:
    """One ephemeral GX context per process, analytics and progress bars off."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("hqgnn").add_dataframe_asset("stage_output")
    return asset.add_batch_definition_whole_dataframe("whole")


_SUITES: dict[tuple[Any, ...], Any] = {}


def _suite(contract: Contract, view: _View, present: frozenset[str]) -> Any:
    """The GX suite of one view (cached); expectations on absent optional columns left out."""
    import great_expectations as gx

    absent = view.optional_columns - present
    key = (contract.path, id(view), absent)
    if key not in _SUITES:
        exps = [e for e in view.expectations if e["kwargs"].get("column") not in absent]
        _SUITES[key] = (
            view,
            gx.ExpectationSuite(name=f"{contract.name}.{view.name}", expectations=exps),
        )
    return _SUITES[key][1]


# ----------------------------------------------------------------------------- validation


def read_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file; integer columns holding nulls become pandas nullable ints."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flows.errors import InputError

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: cannot read Parquet: {exc}") from exc
    frame = table.to_pandas()
    for field in table.schema:
        if pa.types.is_integer(field.type) and table.column(field.name).null_count:
            nullable = pd.api.types.pandas_dtype(str(field.type).capitalize().replace("Ui", "UI"))
            frame[field.name] = table.column(field.name).to_pandas(
                types_mapper={field.type: nullable}.get
            )
    return frame


def derive_view(
    frame: pd.DataFrame, steps: Mapping[str, Any], params: Mapping[str, Any]
) -> pd.DataFrame:
    """Compute a derived view: filter (query), assign (eval), then group_by + named agg.

    Group keys become the index (and stay columns), so failures name the offending keys.
    """
    out = frame
    if "filter" in steps:
        out = out.query(steps["filter"], local_dict=dict(params))
    if "assign" in steps:
        out = out.assign(
            **{
                col: out.eval(expr, local_dict=dict(params), engine="python")
                for col, expr in steps["assign"].items()
            }
        )
    if "group_by" in steps:
        keys = list(steps["group_by"])
        aggs = {col: (src, func) for col, (src, func) in steps["agg"].items()}
        out = out.groupby(keys, sort=False, observed=True, dropna=False).agg(**aggs)
        out = out.reset_index().set_index(keys, drop=False)
        out.index.names = [f"{k}=" for k in keys]
    return out


def validate(
    contract: str,
    data: pd.DataFrame | Path,
    params: Mapping[str, Any] | None = None,
) -> ContractReport:
    """Check ``data`` (a DataFrame or a Parquet path) against ``data_contracts/<contract>.yaml``.

    ``params`` fill the suite parameters the contract declares (extra keys are ignored).
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
    frame = read_parquet(Path(data)) if isinstance(data, str | os.PathLike) else data
    if not isinstance(frame, pd.DataFrame):
        raise ContractUsageError(
            f"validate({contract!r}): data must be a DataFrame or a Parquet path"
        )

    failures: list[str] = []
    n_expectations = 0
    batch_definition = _batch_definition()
    for view in spec.views:
        try:
            view_frame = frame if view.name == TABLE else derive_view(frame, view.steps, params)
        except Exception as exc:  # a broken table (e.g. missing column) must still report
            failures.append(f"[{view.name}] could not be derived: {type(exc).__name__}: {exc}")
            continue
        suite = _suite(spec, view, frozenset(view_frame.columns))
        n_expectations += len(suite.expectations)
        values = {k: v for k, v in params.items() if k in spec.params}
        values["rows"] = len(view_frame)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": view_frame})
        result = batch.validate(suite, expectation_parameters=values, result_format=_RESULT_FORMAT)
        failures.extend(
            _describe(view.name, r, view_frame.columns) for r in result.results if not r.success
        )
    if failures:
        raise DataContractError(contract, failures)
    return ContractReport(contract, len(frame), n_expectations, True, time.perf_counter() - start)


def validate_splits(
    split_dir: Path, params: Mapping[str, Any] | None = None
) -> list[ContractReport]:
    """Check a split snapshot: train, valid, test, users and items (when present), then the
    cross-split ``splits`` contract on their union (no leakage, no cold valid/test ids).

    Raises on the first contract that fails.
    """
    split_dir = Path(split_dir)
    reports, frames = [], {}
    for name in ("train", "valid", "test"):
        frames[name] = read_parquet(split_dir / f"{name}.parquet")
        reports.append(validate(name, frames[name], params))
    for name in ("users", "items"):
        if (split_dir / f"{name}.parquet").is_file():
            reports.append(validate(name, split_dir / f"{name}.parquet", params))
    union = pd.concat(
        [f[["user_idx", "item_idx"]].assign(split=name) for name, f in frames.items()],
        ignore_index=True,
    )
    reports.append(validate("splits", union, params))
    return reports


# ----------------------------------------------------------------------------- messages


def _plain(value: Any) -> Any:
    """numpy scalars to Python, integral floats to int (readable messages)."""
    value = value.item() if hasattr(value, "item") and not isinstance(value, bytes | str) else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(_plain(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(index: list[Any]) -> str:
    """Row numbers of the table, or the group keys of a derived view (``user_id=u3``)."""
    if index and isinstance(index[0], dict):
        keys = [
            ",".join(f"{k}{_plain(v)!r}" for k, v in entry.items() if k.endswith("="))
            for entry in index
        ]
        return "; ".join(keys)
    return "rows " + _short([_plain(i) for i in index], 120)


def _describe(view: str, result: Any, columns: Any) -> str:
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
                f"{_short(repr(_plain(c['value'])), 40)} x{c['count']}" for c in counts[:5]
            )
        index = res.get("partial_unexpected_index_list") or []
        if index:
            observed += f"; at {_where(index[:5])}"
        return f"{line}; observed {observed}"
    if "observed_value" in res:
        return f"{line}; observed {_short(res['observed_value'])}"
    return f"{line}; observed {_short(res) if res else 'nothing (failed)'}"
