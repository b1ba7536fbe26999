"""sql/queries/*.sql in an in-memory DuckDB over exported Parquet: the SQL top-K equals the
Python top-K (hqgnn.retrieval) on the same codes, ties by lower item index."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest
from codes_fixtures import make_run, make_split, planted

from flows.code_versions import read_code_version
from flows.config import ExportConfig
from flows.paths import SQL_DIR
from flows.stages.export import export
from flows.workdir import WorkDir
from hqgnn.retrieval import Retriever

QUERIES = SQL_DIR / "queries"


def query(name: str) -> str:
    return (QUERIES / f"{name}.sql").read_text()


def connect(codes_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("set variable hqgnn_codes = $path", {"path": str(codes_dir)})
    con.execute(query("views"))
    return con


@pytest.fixture(scope="module", params=[1, 2, 4, 8, 32])
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    bits = request.param
    w = WorkDir(tmp_path_factory.mktemp(f"sql{bits}"))
    u, i, split = planted(num_users=20, num_items=150, seed=bits)
    # duplicate some items so that scores tie and the tie rule matters
    i[100:150] = i[0:50]
    split_dir = make_split(w, split, len(u), len(i))
    make_run(w, f"r{bits}", split_dir, u, i, bits)
    return bits, export(w, ExportConfig()).path


def test_user_topk_equals_python(exported: tuple[int, Path]) -> None:
    bits, path = exported
    v = read_code_version(path)
    con = connect(path)
    rank_by = "hamming" if bits == 1 else "score"
    sql = query("user_topk_hamming" if bits == 1 else "user_topk_inner_product")
    r = Retriever(v.users, v.items, rank_by)
    for u in (0, 7, 19):
        got = con.execute(sql, {"user_id": v.user_ids[u], "k": 40}).fetchall()
        want, want_scores = r.topk(np.array([u]), 40)
        if bits == 32:  # float sums in another order: compare the ranked set, not the order of near-ties
            assert len(set(row[2] for row in got) ^ set(want[0].tolist())) <= 2
            continue
        assert [row[2] for row in got] == want[0].tolist()
        assert [row[1] for row in got] == [v.item_ids[j] for j in want[0]]
        assert [row[0] for row in got] == list(range(1, 41))
        if bits == 1:
            assert [row[3] for row in got] == want_scores[0].tolist()  # Hamming distances


def test_item_similar_equals_python(exported: tuple[int, Path]) -> None:
    bits, path = exported
    if bits == 32:
        pytest.skip("float sums differ in the last bits between DuckDB and torch")
    v = read_code_version(path)
    con = connect(path)
    sql = query("item_similar_hamming" if bits == 1 else "item_similar_inner_product")
    r = Retriever(v.items.subset(np.array([3])), v.items, "hamming" if bits == 1 else "score")
    got = [row[2] for row in con.execute(sql, {"item_id": v.item_ids[3], "k": 25}).fetchall()]
    want = [j for j in r.topk(np.array([0]), 26)[0][0].tolist() if j != 3][:25]
    assert got == want and 3 not in got
    assert 103 in got[:5]  # item 103 duplicates item 3 (see the fixture)


def test_code_stats(exported: tuple[int, Path]) -> None:
    bits, path = exported
    v = read_code_version(path)
    rows = connect(path).execute(query("code_stats")).fetchdf().set_index("side")
    assert rows.loc["items", "rows"] == 150 and rows.loc["users", "rows"] == 20
    assert (rows["bits"] == bits).all()
    assert rows.loc["items", "distinct_codes"] == len({c.tobytes() for c in v.items.packed})
    assert rows.loc["items", "collision_share"] >= 100 / 150 - 1e-9  # 50 duplicated pairs
    if bits == 1:
        assert rows.loc["users", "one_bit_share"] == pytest.approx((v.users.values > 0).mean())
    else:
        assert rows["one_bit_share"].isna().all()


def test_cli_style_prepare_execute_script(exported: tuple[int, Path]) -> None:
    """The README's duckdb CLI recipe: SET VARIABLE, views, PREPARE <file>, EXECUTE (named)."""
    bits, path = exported
    if bits != 1:
        pytest.skip("one width is enough")
    v = read_code_version(path)
    script = (
        f"SET VARIABLE hqgnn_codes = '{path}';\n"  # test-only literal: the README shows the same
        + query("views")
        + "\nPREPARE user_topk AS\n"
        + query("user_topk_hamming")
        + f"\nEXECUTE user_topk(user_id := '{v.user_ids[2]}', k := 5);\n"
    )
    got = [row[2] for row in duckdb.connect().execute(script).fetchall()]
    assert got == Retriever(v.users, v.items, "hamming").topk(np.array([2]), 5)[0][0].tolist()


def test_user_topk_1bit_score_equals_python(exported: tuple[int, Path]) -> None:
    """The scored 1-bit query ranks exactly as the retriever's model score (XOR + popcount x s_i)."""
    bits, path = exported
    if bits != 1:
        pytest.skip("1-bit codes only")
    v = read_code_version(path)
    con = connect(path)
    r = Retriever(v.users, v.items, "score")
    by_hamming = Retriever(v.users, v.items, "hamming")
    differs = False
    for u in (0, 7, 19):
        got = con.execute(query("user_topk_1bit_score"), {"user_id": v.user_ids[u], "k": 40}).fetchall()
        want, _ = r.topk(np.array([u]), 40)
        assert [row[2] for row in got] == want[0].tolist()
        assert [row[1] for row in got] == [v.item_ids[j] for j in want[0]]
        differs |= want[0].tolist() != by_hamming.topk(np.array([u]), 40)[0][0].tolist()
    assert differs, "fixture too weak: item scales never change the ranking"
