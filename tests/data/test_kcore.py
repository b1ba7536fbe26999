"""k-core in SQL (flows.stages.prepare.kcore) against a straightforward Python reference."""

from __future__ import annotations

from collections import Counter

import duckdb
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.stages.prepare import kcore


def reference_kcore(edges: set[tuple[int, int]], k_user: int, k_item: int) -> set[tuple[int, int]]:
    """Remove users with < k_user items and items with < k_item users until nothing changes."""
    edges = set(edges)
    while True:
        du = Counter(u for u, _ in edges)
        di = Counter(i for _, i in edges)
        keep = {(u, i) for u, i in edges if du[u] >= k_user and di[i] >= k_item}
        if keep == edges:
            return keep
        edges = keep


def sql_kcore(edges: set[tuple[int, int]], k_user: int, k_item: int) -> tuple[set[tuple[int, int]], int]:
    con = duckdb.connect()
    us, its = zip(*sorted(edges), strict=True) if edges else ((), ())
    con.register("edges", pa.table({"u": pa.array(us, pa.int32()), "i": pa.array(its, pa.int32())}))
    con.execute(
        "create table clean as select u::varchar as user_id, i::varchar as item_id, u, i, "
        "null::bigint as \"timestamp\", 0::bigint as seq, null::varchar as split_role, 1::bigint as \"count\" from edges"
    )
    passes = kcore(con, k_user, k_item)
    out = set(con.execute("select u, i from kcore").fetchall())
    con.close()
    return out, passes


edge_sets = st.sets(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=120)


@settings(max_examples=60, deadline=None)
@given(edges=edge_sets, k_user=st.integers(1, 5), k_item=st.integers(1, 5))
def test_matches_reference_and_is_a_fixpoint(edges: set[tuple[int, int]], k_user: int, k_item: int) -> None:
    got, passes = sql_kcore(edges, k_user, k_item)
    assert got == reference_kcore(edges, k_user, k_item)
    du, di = Counter(u for u, _ in got), Counter(i for _, i in got)
    assert all(d >= k_user for d in du.values()) and all(d >= k_item for d in di.values())
    assert passes >= 1


def test_hand_made_fixture_2_core() -> None:
    # users a..e = 0..4, items 10..14. With k_user=2, k_item=2:
    # pass 1 removes user 4 (one item) and item 14 (one user); then user 3 keeps only (3, 13)
    # and goes in pass 2, which leaves item 13 with one user (2) -> removed in pass 3, and then
    # user 2 has only item 12 -> removed in pass 4; item 12 is left with users 0 and 1.
    edges = {
        (0, 10), (0, 11), (0, 12),
        (1, 10), (1, 11), (1, 12),
        (2, 12), (2, 13),
        (3, 13), (3, 14),
        (4, 10),
    }
    survivors = {(0, 10), (0, 11), (0, 12), (1, 10), (1, 11), (1, 12)}
    got, passes = sql_kcore(edges, 2, 2)
    assert got == survivors
    assert passes >= 3  # the fixture needs a cascade, not a single pass
    assert reference_kcore(edges, 2, 2) == survivors


def test_separate_thresholds() -> None:
    # 3 users x 2 items, full: with k_user=2, k_item=3 everything stays; k_item=4 empties it.
    edges = {(u, i) for u in range(3) for i in range(2)}
    assert sql_kcore(edges, 2, 3)[0] == edges
    assert sql_kcore(edges, 2, 4)[0] == set()
