"""House rule 1: ``hqgnn/`` is a pure library; it never imports prefect, duckdb or great_expectations."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hqgnn

FORBIDDEN = {"prefect", "duckdb", "great_expectations", "flows"}
LIB = Path(hqgnn.__file__).parent


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_forbidden_import_statements() -> None:
    offenders = {
        str(p.relative_to(LIB)): sorted(_imported_roots(p) & FORBIDDEN) for p in LIB.rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"hqgnn/ must not import orchestration packages: {offenders}"


def test_importing_every_module_loads_none_of_them() -> None:
    modules = sorted(
        "hqgnn." + ".".join(p.relative_to(LIB).with_suffix("").parts)
        for p in LIB.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(FORBIDDEN)!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing hqgnn pulled in: {out.stdout.strip()}"
