"""Where ``sql/`` and ``data_contracts/`` are found: override, checkout, installed copy, or a
clear error. No wheel is built: the checkout and the install prefix are fake folders."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

import flows.paths
from flows.paths import DataDirNotFoundError, contracts_dir, data_dir, installed_data_roots, sql_dir


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A checkout without data folders and one install prefix, both empty; no overrides."""
    checkout, share = tmp_path / "checkout", tmp_path / "prefix" / "share" / "hqgnn"
    checkout.mkdir()
    (checkout / "pyproject.toml").write_text("[project]\nname = 'hqgnn'\n")
    monkeypatch.setattr(flows.paths, "REPO_ROOT", checkout)
    monkeypatch.setattr(flows.paths, "installed_data_roots", lambda: [share])
    for env in flows.paths.DATA_DIR_ENV.values():
        monkeypatch.delenv(env, raising=False)
    return {"checkout": checkout, "share": share}


def _mk(*paths: Path) -> None:
    for p in paths:
        p.mkdir(parents=True)


def test_checkout_folders_come_first(fake: dict[str, Path]) -> None:
    _mk(fake["checkout"] / "sql", fake["checkout"] / "data_contracts", fake["share"] / "sql", fake["share"] / "data_contracts")
    assert sql_dir() == fake["checkout"] / "sql"
    assert contracts_dir() == fake["checkout"] / "data_contracts"
    lazy = (flows.paths.SQL_DIR, flows.paths.CONTRACTS_DIR)  # the module attributes, resolved when read
    assert lazy == (fake["checkout"] / "sql", fake["checkout"] / "data_contracts")


def test_installed_copy_without_a_checkout(fake: dict[str, Path]) -> None:
    _mk(fake["share"] / "sql", fake["share"] / "data_contracts")
    assert sql_dir() == fake["share"] / "sql"  # the checkout has no sql/
    _mk(fake["checkout"] / "sql")
    (fake["checkout"] / "pyproject.toml").unlink()  # site-packages: a stray sql/ there is not ours
    assert sql_dir() == fake["share"] / "sql"
    assert contracts_dir() == fake["share"] / "data_contracts"


def test_override_wins_and_must_exist(fake: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _mk(fake["checkout"] / "sql", mine := tmp_path / "my-sql")
    monkeypatch.setenv("HQGNN_SQL_DIR", str(mine))
    assert sql_dir() == mine
    monkeypatch.setenv("HQGNN_CONTRACTS_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataDirNotFoundError, match=r"\$HQGNN_CONTRACTS_DIR=.*missing: no such directory"):
        contracts_dir()


def test_nothing_found_names_every_place_looked(fake: dict[str, Path]) -> None:
    with pytest.raises(DataDirNotFoundError) as err:
        data_dir("data_contracts")
    msg = str(err.value)
    assert str(fake["checkout"] / "data_contracts") in msg and str(fake["share"] / "data_contracts") in msg
    assert "HQGNN_CONTRACTS_DIR" in msg
    assert isinstance(err.value, FileNotFoundError)  # the CLI prints it as one line


def test_installed_root_is_the_prefix_of_the_site_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``pip install --prefix P`` / ``--user``: data lies as far from site-packages as the scheme says."""
    scheme = sysconfig.get_paths()
    prefix = tmp_path / "prefix"
    site = prefix / os.path.relpath(scheme["purelib"], scheme["data"])  # e.g. lib/python3.11/site-packages
    monkeypatch.setattr(flows.paths, "REPO_ROOT", site)
    assert installed_data_roots()[0] == prefix.resolve() / "share" / "hqgnn"
    assert Path(scheme["data"]) / "share" / "hqgnn" in installed_data_roots()


def test_stages_read_the_resolved_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.contracts import available_contracts
    from flows.warehouse import sql_text

    _mk(tmp_path / "sql", tmp_path / "contracts")
    (tmp_path / "sql" / "mine.sql").write_text("select 1;\n")
    (tmp_path / "contracts" / "mine.yaml").write_text("contract: mine\n")
    monkeypatch.setenv("HQGNN_SQL_DIR", str(tmp_path / "sql"))
    monkeypatch.setenv("HQGNN_CONTRACTS_DIR", str(tmp_path / "contracts"))
    assert sql_text("mine") == "select 1;\n"
    assert available_contracts() == ["mine"]
