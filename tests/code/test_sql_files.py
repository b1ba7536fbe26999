"""The SQL files and their runner: statements split by DuckDB's own parser, every file parses,
every name the code runs exists, table files are named after the table they create, and the
wheel installs every folder of ``sql/``."""

from __future__ import annotations

import ast
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
import yaml

from flows.paths import REPO_ROOT, contracts_dir, sql_dir
from flows.warehouse import query, run_sql, sql_names, sql_path, sql_text, statements

SQL = sql_dir()
NAMES = sql_names()
TABLE_FOLDERS = ("warehouse", "splits")  # stage folders: every file at their top creates one table
CODE = [p for d in ("flows", "bench") for p in sorted((REPO_ROOT / d).rglob("*.py"))]
_CREATE_TABLE = re.compile(
    r"^\s*create\s+(?:or\s+replace\s+)?(?:temp\s+|temporary\s+)?table\s+(?:if\s+not\s+exists\s+)?"
    r"([a-z_][a-z0-9_]*)",
    re.IGNORECASE | re.MULTILINE,
)


def _uncommented(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


@pytest.fixture
def own_sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``sql/`` folder the runner reads instead of the repository's."""
    monkeypatch.setenv("HQGNN_SQL_DIR", str(tmp_path))
    return tmp_path


# --- the statement splitter ------------------------------------------------------------------


def test_semicolons_in_strings_and_comments_split_nothing() -> None:
    text = (
        "-- a comment; with a semicolon\n"
        "select 'a;b' as x, 'it''s; fine' as y; /* block; comment */ select 2 as z -- trailing; note\n"
        ";\n"
        'select 3 as "odd;name"; select 4'  # two on one line, the last without ';'
    )
    stmts = statements(text)
    assert len(stmts) == 4
    con = duckdb.connect()
    assert [con.execute(s.sql).fetchall() for s in stmts] == [[("a;b", "it's; fine")], [(2,)], [(3,)], [(4,)]]


def test_a_parameter_inside_a_string_literal_is_left_alone(own_sql: Path) -> None:
    (stmt,) = statements("select '$x' as lit, $y as v -- $z in a comment")
    assert stmt.params == {"y"}
    (own_sql / "lit.sql").write_text("select '$x' as lit, $y as v; -- $z\n")
    assert query(duckdb.connect(), "lit", y=7).fetchall() == [("$x", 7)]
    assert run_sql(duckdb.connect(), "lit", y=7).fetchall() == [("$x", 7)]
    with pytest.raises(ValueError, match=r"does not use parameter\(s\) \['x'\]"):
        run_sql(duckdb.connect(), "lit", y=7, x=1)


def test_a_comment_only_file_gives_no_statement(own_sql: Path) -> None:
    text = "-- nothing here; really\n/* not; this\neither */\n\n"
    assert statements(text) == []
    assert statements("") == []
    (own_sql / "empty.sql").write_text(text)
    con = duckdb.connect()
    assert run_sql(con, "empty") is con
    with pytest.raises(ValueError, match="does not use"):
        run_sql(con, "empty", k=1)
    with pytest.raises(ValueError, match="holds 0 statements"):
        query(con, "empty")


def test_each_statement_gets_its_own_parameters_and_missing_ones_are_named(own_sql: Path) -> None:
    (own_sql / "two.sql").write_text(
        "create table t as select $a::int as a;\ninsert into t select $b::int;\nselect sum(a) from t;\n"
    )
    con = duckdb.connect()
    assert run_sql(con, "two", a=1, b=2).fetchall() == [(3,)]
    with pytest.raises(ValueError, match=r"needs parameter\(s\) \['b'\]"):
        run_sql(duckdb.connect(), "two", a=1)


def test_values_are_bound_never_formatted(own_sql: Path) -> None:
    (own_sql / "echo.sql").write_text("select $v as v;\n")
    nasty = "x'; drop table t; --"
    assert query(duckdb.connect(), "echo", v=nasty).fetchall() == [(nasty,)]


def test_unparseable_sql_raises_the_parser_error() -> None:
    with pytest.raises(duckdb.ParserException):
        statements("selec 1;")


def test_a_missing_name_suggests_the_folder_qualified_one() -> None:
    with pytest.raises(FileNotFoundError, match=r"'clean'.*did you mean 'splits/clean'"):
        sql_path("clean")
    assert sql_path("splits/clean") == SQL / "splits" / "clean.sql"


# --- every file ------------------------------------------------------------------------------


def test_the_layout() -> None:
    """Stage folders, their kinds of files, and the ad-hoc queries; nothing at the top of sql/."""
    folders = {n.rsplit("/", 1)[0] if "/" in n else "" for n in NAMES}
    assert folders <= {
        "warehouse", "warehouse/steps", "warehouse/probes",
        "splits", "splits/steps", "splits/probes", "splits/outputs",
        "queries",
    }, folders
    assert {"warehouse/raw", "splits/clean", "queries/views"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_file_parses(name: str) -> None:
    stmts = statements(sql_text(name))
    assert stmts, f"sql/{name}.sql holds no statement"


@pytest.mark.parametrize("name", [n for n in NAMES if n.count("/") == 1 and n.split("/")[0] in TABLE_FOLDERS])
def test_a_table_file_creates_the_table_it_is_named_after(name: str) -> None:
    creates = [
        m.group(1).lower()
        for s in duckdb.extract_statements(sql_text(name))
        if s.type == duckdb.StatementType.CREATE
        for m in _CREATE_TABLE.finditer(_uncommented(s.query))
    ]
    assert creates == [name.rsplit("/", 1)[1]], f"sql/{name}.sql creates {creates}"


@pytest.mark.parametrize("name", [n for n in NAMES if n.count("/") == 2])
def test_steps_probes_and_outputs_create_no_table(name: str) -> None:
    stmts = duckdb.extract_statements(sql_text(name))
    assert not [s for s in stmts if _CREATE_TABLE.search(_uncommented(s.query))]
    if name.split("/")[1] in ("probes", "outputs"):  # read with query(): one SELECT
        assert [s.type for s in stmts] == [duckdb.StatementType.SELECT], name


def _sql_references() -> list[tuple[str, str, str]]:
    """(file:line, kind, name or glob) of every ``run_sql(con, NAME)`` / ``query(con, NAME)`` in
    flows/ and bench/; an f-string name becomes a glob (``{x}`` -> ``*``)."""
    refs = []
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if func not in ("run_sql", "query"):
                continue
            where, arg = f"{path.relative_to(REPO_ROOT)}:{node.lineno}", node.args[1]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                refs.append((where, "name", arg.value))
            elif isinstance(arg, ast.JoinedStr):
                glob = "".join(v.value if isinstance(v, ast.Constant) else "*" for v in arg.values)
                refs.append((where, "glob", glob))
            else:
                refs.append((where, "opaque", ast.unparse(arg)))
    return refs


def test_every_name_the_code_runs_exists_and_every_stage_file_is_run() -> None:
    refs = _sql_references()
    assert len(refs) >= 25, refs  # the walk found the call sites
    assert not [r for r in refs if r[1] == "opaque"], "SQL names must be literals or f-strings"
    used: set[str] = set()
    for where, kind, name in refs:
        matches = {n for n in NAMES if Path(n).match(name)} if kind == "glob" else {name} & set(NAMES)
        assert matches, f"{where}: no SQL file {name!r}"
        used |= matches
    unused = sorted(n for n in NAMES if not n.startswith("queries/") and n not in used)
    assert not unused, f"SQL files no code runs: {unused}"


def test_the_runs_table_round_trip(tmp_path: Path) -> None:
    from flows.runs import RunRecord, record_run

    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record_run(tmp_path / "w.duckdb", RunRecord("r1", "witty-turtle", "running", start, {"a": 1}))
    record_run(tmp_path / "w.duckdb", RunRecord("r1", "witty-turtle", "completed", start, {"a": 1},
                                                finished_at=start.replace(second=15)))
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert con.execute("select run_id, status, duration_s from runs").fetchall() == [("r1", "completed", 10.0)]


# --- contracts and packaging -----------------------------------------------------------------


def test_contract_names_are_file_stems_and_every_validated_name_exists() -> None:
    files = sorted(contracts_dir().glob("*.yaml"))
    for f in files:
        assert yaml.safe_load(f.read_text())["contract"] == f.stem, f
    known = {f.stem for f in files}
    assert {"raw", "clean", "kcore"} <= known  # named after the warehouse tables they check
    called = []
    for path in CODE:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("check_contract", "validate")
                and node.args and isinstance(node.args[0], ast.Constant)
            ):
                called.append((f"{path.relative_to(REPO_ROOT)}:{node.lineno}", node.args[0].value))
    assert len(called) >= 3
    assert not [c for c in called if c[1] not in known], called


def test_the_wheel_installs_every_sql_folder() -> None:
    """``[tool.setuptools.data-files]`` (which does not recurse) has one entry per folder of sql/."""
    files = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    folders = {p.parent.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "sql").rglob("*.sql")}
    want = {f"share/hqgnn/{d}": [f"{d}/*.sql"] for d in folders}
    assert {k: v for k, v in files.items() if k.startswith("share/hqgnn/sql")} == want
