"""Stage `ingest`: raw + quarantine account for every row, idempotence, one transaction, CLI errors."""

from __future__ import annotations

import gzip
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


def _raw(wd: WorkDir, cols: str = 'user_id, item_id, "timestamp", rating') -> list[tuple]:
    con = duckdb.connect(str(wd.warehouse), read_only=True)
    try:
        return con.execute(f"select {cols} from raw order by seq").fetchall()
    finally:
        con.close()


def test_gz_and_zst_files_ingest_the_same_rows_as_the_plain_file(tmp_path: Path) -> None:
    plain, gz, zst = tmp_path / "log.csv", tmp_path / "log.csv.gz", tmp_path / "log.csv.zst"
    plain.write_text(GOOD)
    gz.write_bytes(gzip.compress(GOOD.encode()))
    con = duckdb.connect()  # DuckDB writes zstd (no Python zstd module needed)
    con.execute("copy (select * from read_csv($p, all_varchar = true, strict_mode = false, null_padding = true)) "
                "to $z (format csv, compression zstd)", {"p": str(plain), "z": str(zst)})
    con.close()
    got = {}
    for f in (plain, gz, zst):
        wd = WorkDir(tmp_path / f.name.replace(".", "_"))
        res = ingest(wd, _cfg(f))
        got[f.suffix] = (_raw(wd), res.rows_ingested, res.rows_quarantined)
    # the zst copy is DuckDB's rendering (line 10 padded to 4 fields, so it is accepted but for its rating)
    assert got[".gz"] == got[".csv"] and got[".csv"][1:] == (4, 6)
    assert got[".zst"][0] == got[".csv"][0] and got[".zst"][1] == 4


def test_rejected_lines_in_quarantine_with_line_numbers_and_counts_add_up(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text('user_id,item_id,rating\nu1,i1,4\n\nu2,"i\n2",5\nu3\nu4,i4,4,4\nu0,i0,1\nu5,"unterminated,3\n')
    wd = WorkDir(tmp_path / "w")
    res = ingest(wd, _cfg(f))
    con = duckdb.connect(str(wd.warehouse), read_only=True)
    q = con.execute("select line_no, reason from quarantine order by line_no").fetchall()
    raw = con.execute("select line_no, item_id from raw order by line_no").fetchall()
    batch = con.execute("select rows, accepted, quarantined from batches").fetchone()
    con.close()
    assert raw == [(2, "i1"), (8, "i0")]
    assert q[0] == (4, "unparseable item id")  # a line break inside an id: read, then refused
    assert q[1:3] == [(6, "malformed line: 1 field(s), expected 3"), (7, "malformed line: 4 field(s), expected 3")]
    assert q[3][0] == 9 and q[3][1].startswith("malformed line: unquoted value")
    assert batch == (6, 2, 4) == (res.rows_ingested + res.rows_quarantined, res.rows_ingested, res.rows_quarantined)


@pytest.mark.parametrize(
    ("values", "unit"),
    [
        (["1650000000", "1650000100.5"], "auto"),
        (["1650000000000", "1650000100500"], "auto"),
        (["1650000000000000", "1650000100500000"], "auto"),
        (["2022-04-15T05:20:00Z", "2022-04-15T07:21:40.5+02:00"], "auto"),
        (["1650000000000", "1650000100500"], "ms"),
        (["2022-04-15 05:20:00", "2022-04-15T05:21:40.5"], "iso"),
    ],
)
def test_timestamp_units_parse_to_the_same_instants(tmp_path: Path, values: list[str], unit: str) -> None:
    f = tmp_path / "t.csv"
    f.write_text("user_id,item_id,timestamp\n" + "".join(f"u{k},i{k},{v}\n" for k, v in enumerate(values)))
    wd = WorkDir(tmp_path / "w")
    res = ingest(wd, _cfg(f, timestamp_unit=unit))
    assert res.rows_quarantined == 0
    assert [ts for (ts,) in _raw(wd, '"timestamp"')] == [1650000000, 1650000100]


def test_timestamps_in_the_wrong_unit_stop_the_file_instead_of_quarantining_half(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("user_id,item_id,timestamp\nu1,i1,1650000000000\nu2,i2,1650000100000\nu3,i3,1650000200000\n")
    with pytest.raises(InputError, match="3 of 3 timestamps rejected as 's'.*--timestamp-unit"):
        ingest(WorkDir(tmp_path / "w"), _cfg(f, timestamp_unit="s"))
    out = CliRunner().invoke(app, ["ingest", str(f), "--timestamp-unit", "ms", "--workdir", str(tmp_path / "c")])
    assert out.exit_code == 0, out.output


def test_ids_with_surrounding_spaces_are_kept_as_written(tmp_path: Path) -> None:
    f = tmp_path / "s.csv"
    f.write_text('user_id,item_id\n u1 ,i1\nu1,"i1 "\n   ,i2\n')
    wd = WorkDir(tmp_path / "w")
    res = ingest(wd, _cfg(f))
    assert _raw(wd, "user_id, item_id") == [(" u1 ", "i1"), ("u1", "i1 ")]
    assert res.rows_quarantined == 1  # a blank id is a missing one
