"""flows.rawio: every raw format into the same Arrow rows; unreadable files fail with one message."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.errors import InputError
from flows.rawio import read_raw


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _rows(read, *cols: str) -> list[tuple]:
    d = read.table.to_pydict()
    return list(zip(*(d[c] for c in cols), strict=True))


def test_csv_header_default_names(tmp_path: Path) -> None:
    p = _write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n2,007,3.5,964982704\n")
    r = read_raw(p, "csv")
    assert dict(r.columns) == {"user": "userId", "item": "movieId", "rating": "rating", "timestamp": "timestamp"}
    assert _rows(r, "line_no", "user_id", "item_id", "rating", "timestamp") == [
        (2, "1", "10", "4.0", "964982703"),
        (3, "2", "007", "3.5", "964982704"),  # ids kept as strings as they came
    ]


def test_tsv_without_header_by_position(tmp_path: Path) -> None:
    p = _write(tmp_path / "d.txt", "424\t4076\t993\r\n1311\t1574\t957\r\n")
    r = read_raw(p, "tsv", {"user": "0", "item": "1", "rating": "2"}, header=False)
    assert _rows(r, "line_no", "user_id", "item_id", "rating") == [(1, "424", "4076", "993"), (2, "1311", "1574", "957")]


def test_space_delimited_and_line_numbers_with_blank_and_bad_lines(tmp_path: Path) -> None:
    p = _write(tmp_path / "v.txt", "1 6393\n1  13504\n\n2 7 9\n2 11\n")
    r = read_raw(p, "csv", delimiter="space", header=False)
    ok = [row for row in _rows(r, "line_no", "user_id", "item_id", "error") if row[3] is None]
    bad = [row for row in _rows(r, "line_no", "raw", "error") if row[2] is not None]
    assert ok == [(1, "1", "6393", None), (2, "1", "13504", None), (5, "2", "11", None)]
    assert bad == [(4, "2 7 9", "malformed line: 3 field(s), expected 2")]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"),
        ("ratings.dat", "196::242::3::881250949\n186::302::3::891717742\n"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n196,242,3,881250949\n186,302,3,891717742\n"),
    ],
)
def test_movielens_variants(tmp_path: Path, name: str, text: str) -> None:
    r = read_raw(_write(tmp_path / name, text), "movielens")
    assert _rows(r, "user_id", "item_id", "rating", "timestamp") == [("196", "242", "3", "881250949"), ("186", "302", "3", "891717742")]


@pytest.mark.parametrize("text", ["0 5 7 9\n1 5\n", "0:5 7 9\n1:5\n"])
def test_lightgcn_lines_keep_position(tmp_path: Path, text: str) -> None:
    r = read_raw(_write(tmp_path / "train.txt", text), "lightgcn")
    assert _rows(r, "line_no", "pos", "user_id", "item_id") == [(1, 0, "0", "5"), (1, 1, "0", "7"), (1, 2, "0", "9"), (2, 0, "1", "5")]
    assert r.max_pos == 2


def test_lightgcn_user_without_items_is_malformed(tmp_path: Path) -> None:
    r = read_raw(_write(tmp_path / "t.txt", "0 1 2\n7\n1 3\n"), "lightgcn")
    assert [e for e in r.table["error"].to_pylist() if e] == ["malformed line: a user and no item"]


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    p = tmp_path / "x.parquet"
    ts = pa.array([0, 86_400], pa.timestamp("s"))
    pq.write_table(pa.table({"user": [1, 2], "item_id": ["a", "b"], "time": ts, "weight": [1.5, 2.0]}), p)
    r = read_raw(p, "parquet")
    assert _rows(r, "user_id", "item_id", "timestamp", "rating") == [("1", "a", "0", "1.5"), ("2", "b", "86400", "2")]


@pytest.mark.parametrize(
    ("fmt", "content", "kwargs", "message"),
    [
        ("csv", "", {}, "file is empty"),
        ("csv", b"user,item\n\xff\xfeu1,i1\n", {}, "not UTF-8"),
        ("csv", "who,what\n1,2\n", {}, "cannot find the user and item column"),
        ("csv", "user,item\n1,2\n", {"columns": {"timestamp": "when"}}, "no column 'when'"),
        ("tsv", "user,item\n1,2\n", {}, "fewer than 2 columns"),
        ("lightgcn", "1,2,3\n4,5,6\n", {}, "does not look like lightgcn"),
        ("movielens", "a;b;c\n", {}, "does not look like MovieLens"),
        ("csv", "user,item\n1,2,3\n4,5,6\n7,8,9\n", {}, "does not look like csv"),
        ("parquet", "user,item\n1,2\n", {}, "not a readable Parquet file"),
    ],
)
def test_unreadable_files_fail_with_one_message_naming_the_file(
    tmp_path: Path, fmt: str, content: str | bytes, kwargs: dict, message: str
) -> None:
    p = _write(tmp_path / "bad.in", content)
    with pytest.raises(InputError, match=message) as e:
        read_raw(p, fmt, **kwargs)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_parquet_file_declared_as_csv(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    pq.write_table(pa.table({"user": ["1"], "item": ["2"]}), p)
    with pytest.raises(InputError, match="is a Parquet file"):
        read_raw(p, "csv")


def test_quoted_fields_with_delimiter_quote_and_newline(tmp_path: Path) -> None:
    text = (
        'user_id,item_id,title\n'
        'u1,"i,1","a ""quoted"" title"\n'
        'u2,i2,"two\nlines, and a comma"\n'
        '\n'
        'u3,"x""y",plain\n'
    )
    r = read_raw(_write(tmp_path / "q.csv", text), "csv")
    assert _rows(r, "line_no", "user_id", "item_id", "error") == [
        (2, "u1", "i,1", None), (3, "u2", "i2", None), (6, "u3", 'x"y', None),  # line 3 spans 3-4, 5 is blank
    ]


def test_rejected_lines_keep_their_line_numbers_after_a_multiline_field(tmp_path: Path) -> None:
    text = 'user,item,note\n1,2,"a\n\nb"\n3,4\n5,6,ok\n7,8,9,10\n\n11,12,end\n'
    r = read_raw(_write(tmp_path / "m.csv", text), "csv", header=True, delimiter=",")
    d = sorted(_rows(r, "line_no", "user_id", "error"))
    assert d == [
        (2, "1", None),  # lines 2-4
        (5, None, "malformed line: 2 field(s), expected 3"),
        (6, "5", None),
        (7, None, "malformed line: 4 field(s), expected 3"),
        (9, "11", None),
    ]
    assert r.table.num_rows == 5  # 5 records: 3 accepted + 2 rejected, the blank line is none


@pytest.mark.parametrize(
    ("text", "delimiter", "header"),
    [
        ("user_id;item_id;rating\nu1;i1;4\nu2;i2;5\n", ";", True),
        ("u1|i1|4\nu2|i2|5\n", "|", False),
        ("1,10,4\n2,20,5\n", ",", False),
    ],
)
def test_delimiter_and_header_sniffed_when_not_given(tmp_path: Path, text: str, delimiter: str, header: bool) -> None:
    r = read_raw(_write(tmp_path / "s.txt", text), "csv")
    assert [row[0] for row in _rows(r, "line_no")] == ([2, 3] if header else [1, 2])
    assert len({u for (u,) in _rows(r, "user_id")}) == 2 and "|" not in str(_rows(r, "user_id"))


def test_given_delimiter_and_header_are_used(tmp_path: Path) -> None:
    # all numbers: the sniffer alone would take line 1 for data
    r = read_raw(_write(tmp_path / "g.csv", "1;2;3\n4;5;6\n"), "csv", {"user": "1", "item": "2"}, delimiter=";", header=True)
    assert _rows(r, "line_no", "user_id", "item_id") == [(2, "5", "6")]


def test_ids_kept_exactly_as_written(tmp_path: Path) -> None:
    r = read_raw(_write(tmp_path / "w.csv", 'user,item\n u1 ,"  i1"\n007,i2\t\n'), "csv")
    assert _rows(r, "user_id", "item_id") == [(" u1 ", "  i1"), ("007", "i2\t")]
