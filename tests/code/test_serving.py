"""`hqgnn serve` (flows.serving), `hqgnn versions` / `hqgnn rollback` (flows.stages.versions).

The real server (uvicorn, in a thread of this process) on a free loopback port, over tiny
planted code versions (tests/codes_fixtures.py, published by `export`): every endpoint, the
ranking against `hqgnn recommend`, hot swaps during a stream of requests, a refused version,
rollback. Each test stops the server it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pytest
import uvicorn
from codes_fixtures import make_run, make_split, planted
from typer.testing import CliRunner

from flows.cli import app as cli
from flows.code_versions import check_code_version
from flows.config import ExportConfig
from flows.errors import InputError
from flows.serving.app import K_MAX, MAX_BODY_BYTES, create_app
from flows.serving.version import load_version
from flows.stages.export import export
from flows.stages.recommend import recommend, recommend_items
from flows.stages.versions import list_versions, rollback
from flows.workdir import WorkDir, switch_pointer

pytestmark = pytest.mark.slow  # three exports (GX contracts) and live servers: ~40 s in all


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A work directory with three published 1-bit versions (v1 < v2 < v3; current = v3)."""
    w = WorkDir(tmp_path_factory.mktemp("serve") / "w")
    u, i, split = planted()
    split_dir = make_split(w, split, len(u), len(i))
    rng = np.random.default_rng(5)
    names = []
    for n in range(3):
        noisy = (u + 0.4 * n * rng.normal(size=u.shape)).astype(np.float32)
        make_run(w, f"r{n}", split_dir, noisy, i, 1)
        names.append(export(w, ExportConfig(force=True)).version)
    return w.root, names


@pytest.fixture()
def work(template: tuple[Path, list[str]], tmp_path: Path) -> tuple[WorkDir, list[str]]:
    """A private copy of the template (pointers are relative symlinks: they move with it)."""
    root, names = template
    shutil.copytree(root, tmp_path / "w", symlinks=True)
    return WorkDir(tmp_path / "w"), names


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(w: WorkDir, poll_s: float = 0.05) -> Iterator[str]:
    """Start uvicorn on 127.0.0.1:<free port> in a thread; yield the base URL; stop it."""
    config = uvicorn.Config(create_app(w.root, poll_s=poll_s), host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "server did not stop"


def wait_for(url: str, pred: object, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{url}/version").json()
        if pred(body):  # type: ignore[operator]
            return body
        assert time.monotonic() < deadline, f"timed out; /version says {body}"
        time.sleep(0.05)


def test_every_endpoint_and_the_ranking_of_hqgnn_recommend(work: tuple[WorkDir, list[str]]) -> None:
    w, names = work
    with running(w) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok", "version": names[-1]}
        v = httpx.get(f"{url}/version").json()
        assert (v["version"], v["bits"], v["dim"], v["snapshot"]) == (names[-1], 1, 64, "snap1")
        assert v["rows"]["users"] == 60 and v["rows"]["items"] == 120 and v["refused"] is None and v["loaded_at"]

        for user in ("u0", "u7", "u59"):  # item for item, scores too, as `hqgnn recommend`
            want = recommend(w, user, 15, print_result=False)
            r = httpx.get(f"{url}/recommend", params={"user": user, "k": 15})
            assert r.status_code == 200 and r.headers["x-hqgnn-version"] == names[-1]
            got = r.json()
            assert got["version"] == want.version and got["items"] == list(want.item_ids)
            assert got["scores"] == pytest.approx(list(want.scores), rel=1e-6)
        # seen items: excluded by default, allowed with exclude_seen=false
        loaded = load_version(w.root, w.code_version())
        seen = set(loaded.item_ids.take(loaded.seen_row(7).indices.numpy()))
        assert not seen & set(httpx.get(f"{url}/recommend", params={"user": "u7", "k": 120}).json()["items"])
        assert seen <= set(httpx.get(f"{url}/recommend", params={"user": "u7", "k": 120, "exclude_seen": "false"}).json()["items"])

        sim = httpx.get(f"{url}/similar", params={"item": "i3", "k": 5}).json()
        assert len(sim["items"]) == 5 and "i3" not in sim["items"] and sim["scores"] == sorted(sim["scores"], reverse=True)

        post = httpx.post(f"{url}/recommend", json={"items": ["i1", "i2"], "k": 5})  # an anonymous user, by fold-in
        want_items = recommend_items(w, ["i1", "i2"], k=5, print_result=False)  # what `hqgnn recommend --items` answers
        assert post.status_code == 200 and post.json()["version"] == names[-1]
        assert post.json()["items"] == list(want_items.item_ids) and not {"i1", "i2"} & set(post.json()["items"])
        assert post.json()["scores"] == pytest.approx(list(want_items.scores), rel=1e-6)

        metrics = httpx.get(f"{url}/metrics").text
        assert 'hqgnn_requests_total{endpoint="/recommend",status="200"} 6.0' in metrics
        assert f'hqgnn_code_version_info{{bits="1",dim="64",version="{names[-1]}"}} 1.0' in metrics
        assert 'hqgnn_request_seconds_bucket{endpoint="/similar"' in metrics


def test_bad_input_is_a_clear_4xx_never_a_500(work: tuple[WorkDir, list[str]]) -> None:
    w, _ = work
    bad = [
        ("GET", "/recommend", {"params": {"user": "nobody"}}, 404, "unknown user 'nobody'"),
        ("GET", "/recommend", {"params": {}}, 422, "user"),
        ("GET", "/recommend", {"params": {"user": "u1", "k": 0}}, 422, "k"),
        ("GET", "/recommend", {"params": {"user": "u1", "k": K_MAX + 1}}, 422, "k"),
        ("GET", "/recommend", {"params": {"user": "u1", "k": "ten"}}, 422, "k"),
        ("GET", "/recommend", {"params": {"user": "u1", "exclude_seen": "maybe"}}, 422, "exclude_seen"),
        ("GET", "/similar", {"params": {"item": "nothing"}}, 404, "unknown item"),
        ("POST", "/recommend", {"content": b"{not json"}, 422, "not JSON"),
        ("POST", "/recommend", {"json": {"items": []}}, 422, "items"),
        ("POST", "/recommend", {"json": {"items": ["i1"], "k": -3}}, 422, "k"),
        ("POST", "/recommend", {"json": {"items": ["i1"], "colour": "red"}}, 422, "colour"),
        ("POST", "/recommend", {"json": "i1"}, 422, "body"),
        ("POST", "/recommend", {"json": ["i1", "zzz"]}, 404, "unknown item"),
        ("POST", "/recommend", {"content": b"[" + b'"i1",' * (MAX_BODY_BYTES // 5) + b'"i1"]'}, 413, "too large"),
        ("GET", "/nowhere", {}, 404, "Not Found"),
    ]
    with running(w) as url:
        for method, path, kwargs, status, words in bad:
            r = httpx.request(method, f"{url}{path}", **kwargs)  # type: ignore[arg-type]
            assert r.status_code == status, (method, path, kwargs, r.text)
            assert words in r.json()["error"], r.text
        assert "status=\"500\"" not in httpx.get(f"{url}/metrics").text


def test_hot_swap_during_a_stream_of_requests(work: tuple[WorkDir, list[str]]) -> None:
    """Zero failed requests while current moves v3 -> v1 -> v2; each answer is the ranking of the
    version it names, and a client never goes back to an older version after seeing a newer one."""
    w, names = work
    expected = {n: load_version(w.root, w.codes / n) for n in names}
    users = [f"u{j}" for j in range(0, 60, 7)]
    want = {n: {u: v.recommend(v.user_ids.index(u), 10).ids for u in users} for n, v in expected.items()}
    answers: list[list[tuple[str, str, list[str]]]] = [[] for _ in range(4)]
    failures: list[str] = []
    stop = threading.Event()

    def client(slot: int) -> None:
        with httpx.Client() as c:
            while not stop.is_set():
                user = users[len(answers[slot]) % len(users)]
                try:
                    r = c.get(f"{url}/recommend", params={"user": user, "k": 10})
                    r.raise_for_status()
                    answers[slot].append((r.json()["version"], user, r.json()["items"]))
                except Exception as e:  # noqa: BLE001 - every failure is recorded and fails the test
                    failures.append(repr(e))

    with running(w) as url:
        threads = [threading.Thread(target=client, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for target in (names[0], names[1]):
            time.sleep(0.3)
            switch_pointer(w.codes / "current", w.codes / target)
            wait_for(url, lambda b, t=target: b["version"] == t)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(10)
        assert httpx.get(f"{url}/version").json()["swaps"] == 2
    assert failures == []
    order = {names[2]: 0, names[0]: 1, names[1]: 2}  # the order current moved in
    for stream in answers:
        assert stream and {v for v, _, _ in stream} <= set(names)
        assert [order[v] for v, _, _ in stream] == sorted(order[v] for v, _, _ in stream)
        for version, user, items in stream:
            assert items == want[version][user]
    seen_versions = {v for stream in answers for v, _, _ in stream}
    assert seen_versions == set(names)


def tamper(w: WorkDir, source: str, name: str) -> Path:
    """A copy of a version whose items.parquet changed after export (hash no longer matches)."""
    bad = w.codes / name
    shutil.copytree(w.codes / source, bad)
    data = bytearray((bad / "items.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "items.parquet").write_bytes(bytes(data))
    return bad


def test_a_version_failing_verification_is_refused_and_the_old_one_keeps_serving(work: tuple[WorkDir, list[str]]) -> None:
    w, names = work
    bad = tamper(w, names[0], "broken")
    with pytest.raises(InputError, match=r"items.parquet is damaged: its SHA-256 differs from the one in manifest.json"):
        check_code_version(bad)
    with running(w) as url:
        switch_pointer(w.codes / "current", bad)
        body = wait_for(url, lambda b: b["refused"] is not None)
        assert body["version"] == names[-1] and body["refused"]["version"] == "broken"
        assert "items.parquet" in body["refused"]["reason"] and "SHA-256" in body["refused"]["reason"]
        r = httpx.get(f"{url}/recommend", params={"user": "u1"})
        assert r.status_code == 200 and r.json()["version"] == names[-1]
        assert "hqgnn_version_refusals_total 1.0" in httpx.get(f"{url}/metrics").text
        switch_pointer(w.codes / "current", w.codes / names[1])  # a good one is picked up again
        wait_for(url, lambda b: b["version"] == names[1])


def test_rollback_switches_back_records_a_run_and_the_server_follows(work: tuple[WorkDir, list[str]]) -> None:
    w, names = work
    rows = list_versions(w)
    assert [r.version for r in rows] == names
    assert rows[-1].pointers == ("current", "current-1bit") and all(r.published for r in rows)
    with running(w) as url:
        assert rollback(w).name == names[1]  # default: the previous published version of the width
        assert (w.codes / "current").resolve().name == names[1] == (w.codes / "current-1bit").resolve().name
        wait_for(url, lambda b: b["version"] == names[1])
        assert rollback(w, to=names[0]).name == names[0]
        wait_for(url, lambda b: b["version"] == names[0])
        assert httpx.get(f"{url}/recommend", params={"user": "u2"}).json()["version"] == names[0]
    with duckdb.connect(str(w.warehouse), read_only=True) as con:
        logged = con.execute("select code_version, parameters from runs where flow_run_name = 'rollback' order by started_at").fetchall()
    assert [row[0] for row in logged] == [names[1], names[0]]
    assert json.loads(logged[1][1])["from"] == names[1]

    tamper(w, names[2], "broken")
    with pytest.raises(InputError, match="rollback to broken refused.*SHA-256"):
        rollback(w, to="broken")
    assert (w.codes / "current").resolve().name == names[0]  # unchanged
    with pytest.raises(InputError, match="no published 1-bit version older"):
        rollback(w)
    with pytest.raises(InputError, match="no code version folder"):
        rollback(w, to="../w")


def test_cli_versions_and_rollback(work: tuple[WorkDir, list[str]]) -> None:
    w, names = work
    out = CliRunner().invoke(cli, ["versions", "--workdir", str(w.root)])
    assert out.exit_code == 0, out.output
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("version\tbits") and len(lines) == 4
    assert lines[-1].split("\t")[:5] == [names[-1], "1", "64", "yes", "passed"] and "current,current-1bit" in lines[-1]
    out = CliRunner().invoke(cli, ["rollback", "--workdir", str(w.root), "--to", "nope"])
    assert out.exit_code == 1 and "no code version folder" in out.output
    out = CliRunner().invoke(cli, ["rollback", "--workdir", str(w.root)])
    assert out.exit_code == 0 and (w.codes / "current").resolve().name == names[1]


def test_id_map_finds_every_id_and_only_those() -> None:
    from flows.serving.version import IdMap

    ids = ["10", "9", "b", "a", "", "é", "100", "1"]
    m = IdMap(np.array(ids, dtype=object))
    assert [m.index(x) for x in ids] == list(range(len(ids)))
    assert [m.index(x) for x in ("11", "0", "c", "A", "ée")] == [None] * 5
    assert m.take(np.array([3, 0, 7])) == ["a", "10", "1"] and m[5] == "é"


def test_serve_without_published_codes_fails_with_one_line(tmp_path: Path) -> None:
    out = CliRunner().invoke(cli, ["serve", "--workdir", str(tmp_path / "empty"), "--port", str(free_port())])
    assert out.exit_code == 1 and "no published codes yet" in out.output and "hqgnn export" in out.output


@pytest.mark.parametrize("bucketed", [False, True])
def test_batched_ranking_equals_one_user_at_a_time(template: tuple[Path, list[str]], bucketed: bool) -> None:
    """What the batcher computes (LoadedVersion.recommend_many) is Retriever.recommend's answer,
    items and float32 scores exactly, on both 1-bit paths (scan; bucketed FAISS index)."""
    root, names = template
    v = load_version(root, root / "codes" / names[0], verify=False, scaled_index_min_items=1 if bucketed else 100_000)
    assert (v.retriever._scaled is not None) == bucketed
    users = list(range(60))
    for exclude_seen in (True, False):
        many = v.recommend_many(users, 25, exclude_seen)
        for u in users:
            one = v.recommend(u, 25, exclude_seen)
            assert many[u].ids == one.ids and many[u].scores == one.scores


def test_the_bucketed_index_holds_16_bytes_per_item_and_answers_like_the_scan(template: tuple[Path, list[str]]) -> None:
    """With the bucketed index the served version keeps the item codes once (in the index: code
    8 B + scale 4 B + bucket-order permutation 4 B per item at d = 64) and every endpoint's
    ranking is the one-scan version's, item for item, scores included."""
    root, names = template
    path = root / "codes" / names[-1]
    bucketed = load_version(root, path, verify=False, scaled_index_min_items=1)
    scan = load_version(root, path, verify=False)
    n = len(bucketed.item_ids)
    held = bucketed.retriever.item_nbytes()
    assert bucketed.retriever._items is None and held["faiss_codes"] == 8 * n
    assert sum(held.values()) - held["buckets"] == 16 * n and held["buckets"] < 1024, held
    assert sum(scan.retriever.item_nbytes().values()) == 12 * n  # packed-only table: no unpacked copy
    for u in range(len(bucketed.user_ids)):
        assert bucketed.recommend(u, 20) == scan.recommend(u, 20)
    for i in range(0, n, 7):
        assert bucketed.similar(i, 10) == scan.similar(i, 10)
    for items in ([1, 2], [5, 60, 119], [0]):
        assert bucketed.recommend_for_items(items, 10) == scan.recommend_for_items(items, 10)
    w = WorkDir(root)
    for user in ("u0", "u7", "u59"):  # and `hqgnn recommend`'s answer
        want = recommend(w, user, 15, print_result=False, version=names[-1])
        dense = bucketed.user_ids.index(user)
        assert dense is not None
        got = bucketed.recommend(dense, 15)
        assert got.ids == list(want.item_ids) and got.scores == pytest.approx(list(want.scores), rel=1e-6)


def test_workers_share_one_metrics_view(work: tuple[WorkDir, list[str]], tmp_path: Path) -> None:
    """`hqgnn serve --workers 2`: /metrics, whichever worker answers, counts the requests of both
    (prometheus_client multiprocess mode in a fresh folder, removed when the server stops)."""
    w, _ = work
    port, tmp = free_port(), tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--workdir", str(w.root), "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        assert len(list(tmp.glob("hqgnn-serve-metrics-*"))) <= 1
        pids, calls, deadline = set(), 0, time.monotonic() + 120
        while len(pids) < 2:  # until both workers have answered (each connection goes to one)
            assert proc.poll() is None and time.monotonic() < deadline, f"workers did not both start; pids {pids}"
            try:
                pids.add(httpx.get(f"{url}/version", timeout=10).json()["pid"])
                calls += 1
            except httpx.TransportError:
                time.sleep(0.2)
        for _ in range(20):
            assert httpx.get(f"{url}/recommend", params={"user": "u3", "k": 5}).status_code == 200
        seen_by = set()
        for _ in range(6):
            want = (f'hqgnn_requests_total{{endpoint="/version",status="200"}} {float(calls)}',
                    'hqgnn_requests_total{endpoint="/recommend",status="200"} 20.0')
            for _ in range(50):  # a request is counted just after its answer is sent: allow a moment
                text = httpx.get(f"{url}/metrics").text
                if all(line in text for line in want):
                    break
                time.sleep(0.05)
            assert all(line in text for line in want), text
            seen_by.add(httpx.get(f"{url}/version").json()["pid"])
            calls += 1
        assert seen_by <= pids
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert not list(tmp.glob("hqgnn-serve-metrics-*")), "the metrics folder outlived the server"
