"""Where hqgnn finds its data folders, ``sql/`` and ``data_contracts/``.

They are top-level folders of the repository; a wheel installs them as
``<prefix>/share/hqgnn/{sql,data_contracts}`` (``data-files`` in ``pyproject.toml``).
:func:`sql_dir` and :func:`contracts_dir` find them when called (not at import):
``$HQGNN_SQL_DIR`` / ``$HQGNN_CONTRACTS_DIR`` if set, else the checkout's folder, else the
installed copy. ``flows.paths.SQL_DIR`` and ``flows.paths.CONTRACTS_DIR`` are the same, read lazily.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

from flows.errors import HqgnnError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # the checkout (for an installed copy: site-packages, no pyproject.toml)
SHARE = Path("share") / "hqgnn"  # where the wheel puts the data folders, under the install prefix
DATA_DIR_ENV = {"sql": "HQGNN_SQL_DIR", "data_contracts": "HQGNN_CONTRACTS_DIR"}


class DataDirNotFoundError(HqgnnError, FileNotFoundError):
    """Neither the override, the checkout nor the installed copy has a data folder."""


def installed_data_roots() -> list[Path]:
    """Candidate ``<prefix>/share/hqgnn`` folders of an installed copy, most likely first: the
    prefix this package is installed under (venv, system, ``--user``, ``--prefix``), then
    the interpreter's data path (``sysconfig``)."""
    scheme = sysconfig.get_paths()
    to_prefix = os.path.relpath(scheme["data"], scheme["purelib"])  # e.g. ../../.. on POSIX
    prefixes = [(REPO_ROOT / to_prefix).resolve(), Path(scheme["data"])]
    return [p / SHARE for p in dict.fromkeys(prefixes)]


def data_dir(name: str) -> Path:
    """The folder ``name`` (``sql`` or ``data_contracts``): ``$HQGNN_SQL_DIR`` /
    ``$HQGNN_CONTRACTS_DIR`` if set (it must exist), else ``<checkout>/<name>``, else the
    installed ``<prefix>/share/hqgnn/<name>``. Raises :class:`DataDirNotFoundError` naming
    every place it looked."""
    env = DATA_DIR_ENV[name]
    if override := os.environ.get(env):
        path = Path(override).expanduser()
        if not path.is_dir():
            raise DataDirNotFoundError(f"${env}={override}: no such directory")
        return path
    candidates = [root / name for root in installed_data_roots()]
    if (REPO_ROOT / "pyproject.toml").is_file():  # a checkout (or an editable install)
        candidates.insert(0, REPO_ROOT / name)
    for path in candidates:
        if path.is_dir():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise DataDirNotFoundError(f"hqgnn's {name}/ folder not found (looked in {looked}); "
                               f"reinstall hqgnn or set ${env} to the folder")


def sql_dir() -> Path:
    """The folder of the SQL stages (see :func:`data_dir`)."""
    return data_dir("sql")


def contracts_dir() -> Path:
    """The folder of the data contracts (see :func:`data_dir`)."""
    return data_dir("data_contracts")


def __getattr__(name: str) -> Path:
    """``flows.paths.SQL_DIR`` / ``flows.paths.CONTRACTS_DIR``, resolved when read (PEP 562)."""
    if name == "SQL_DIR":
        return sql_dir()
    if name == "CONTRACTS_DIR":
        return contracts_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
