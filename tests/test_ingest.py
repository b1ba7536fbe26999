"""Stage `ingest`: raw + quarantine account for every row, idempotence, one transaction, CLI errors."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.config import IngestConfig
from flows.errors import InputError
from flows.stages.ingest import ingest
from flows.workdir import WorkDir

GOOD = (
    "user_id,item_id,timestamp,rating\n"
    "u1,i1,1650000000,4\n"
    "u1,i2,2022-04-15T10:00:00Z,5\n"  # ISO datetime
    "u2,i1,1650000100.0,3\n"  # decimal unix seconds
    ",i3,1650000000,4\n"  # missing user
    "u2,,1650000000,4\n"  # missing item
    "u3,i1,yesterday,4\n"  # bad timestamp
    "u3,i2,1650000000,abc\n"  # rating not a number
    "u3,i3,1650000000,9\n"  # rating out of range
    "u4,i4,1650000000\n"  # malformed: 3 fields
    "u5,i5,1650000000,1\n"
)
REASONS = {
    5: "missing user id",
    6: "missing item id",
    7: "bad timestamp: not unix seconds or an ISO datetime",
    8: "rating not a number",
    9: "rating out of range [1.0, 5.0]",
    10: "malformed line: 3 field(s), expected 4",
}


def _cfg(*files: Path, **kw: object) -> IngestConfig:
    return IngestConfig(files=files, format="csv", rating_min=1, rating_max=5, **kw)  # type: ignore[arg-type]


def _table_counts(wd: WorkDir) -> dict[str, int]:
    con = duckdb.connect(str(wd.warehouse), read_only=True)
    try:
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("raw", "quarantine", "batches")}
    finally:
        con.close()


def test_every_row_lands_in_raw_or_quarantine_with_reason(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    f.write_text(GOOD)
    wd = WorkDir(tmp_path / "w")
    res = ingest(wd, _cfg(f))
    assert (res.rows_ingested, res.rows_quarantined) == (4, 6)
    con = duckdb.connect(str(wd.warehouse), read_only=True)
    q = dict(con.execute("select line_no, reason from quarantine").fetchall())
    raw = con.execute('select user_id, item_id, "timestamp", rating from raw order by seq').fetchall()
    batch = con.execute("select rows, accepted, quarantined, source_hash from batches").fetchone()
    con.close()
    assert q == REASONS
    assert raw == [
        ("u1", "i1", 1650000000, 4.0), ("u1", "i2", 1650016800, 5.0), ("u2", "i1", 1650000100, 3.0), ("u5", "i5", 1650000000, 1.0)
    ]
    assert batch[:3] == (10, 4, 6) and len(batch[3]) == 64


def test_reingest_is_skipped_and_new_files_append(tmp_path: Path) -> None:
    f, g = tmp_path / "a.csv", tmp_path / "b.csv"
    f.write_text(GOOD)
    g.write_text("user_id,item_id,timestamp,rating\nu9,i9,1650000000,2\n")
    wd = WorkDir(tmp_path / "w")
    ingest(wd, _cfg(f))
    before = _table_counts(wd)
    again = ingest(wd, _cfg(f, g))
    assert again.files_skipped == 1 and again.rows_ingested == 1
    after = _table_counts(wd)
    assert after == {"raw": before["raw"] + 1, "quarantine": before["quarantine"], "batches": before["batches"] + 1}


@pytest.mark.parametrize("bad", ["", "who,what\n1,2\n", "\xff"])
def test_failure_midway_leaves_the_warehouse_as_before(tmp_path: Path, bad: str) -> None:
    first, good, broken = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    first.write_text(GOOD)
    good.write_text("user_id,item_id\nu7,i7\n")
    broken.write_bytes(bad.encode("latin-1"))
    wd = WorkDir(tmp_path / "w")
    ingest(wd, _cfg(first))
    before = _table_counts(wd)
    with pytest.raises(InputError, match=str(broken)):
        ingest(wd, _cfg(good, broken))  # good is read and staged first, then broken fails
    assert _table_counts(wd) == before


def test_lightgcn_train_test_roles(tmp_path: Path) -> None:
    tr, te = tmp_path / "train.txt", tmp_path / "test.txt"
    tr.write_text("0 1 2 3\n1 2 3\n")
    te.write_text("0 4\n1 1\n")
    wd = WorkDir(tmp_path / "w")
    ingest(wd, IngestConfig(files=(tr,), format="lightgcn", split_role="train"))
    ingest(wd, IngestConfig(files=(te,), format="lightgcn", split_role="test"))
    con = duckdb.connect(str(wd.warehouse), read_only=True)
    roles = dict(con.execute("select split_role, count(*) from raw group by all").fetchall())
    order = con.execute("select user_id, item_id from raw order by seq").fetchall()
    con.close()
    assert roles == {"train": 5, "test": 2}
    assert order[:3] == [("0", "1"), ("0", "2"), ("0", "3")]  # ingestion order = line, then position


def test_cli_bad_file_one_line_exit_1(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    out = CliRunner().invoke(app, ["ingest", str(empty), "--format", "csv", "--workdir", str(tmp_path / "w")])
    assert out.exit_code == 1
    assert "file is empty" in out.output and "Traceback" not in out.output
