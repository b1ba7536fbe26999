"""`hqgnn serve` under load: closed-loop clients on loopback, 1-bit codes vs float32, hot swaps.

Catalogues (d = 64):

- **gowalla**: real codes. A quick 1-bit run trained by the pipeline's own stage
  (``flows.stages.train``, ``--gowalla-epochs`` epochs, batch 32768, lr 0.01) on the
  LightGCN-format Gowalla folder (train.txt less 5 % per user for validation; test.txt), then
  published by ``hqgnn export`` (contracts, gate). The float32 baseline is the same run's float
  embeddings written as a 32-bit version.
- **1m**: ``--items`` synthetic items (default 1 M) and ``--users`` users: Gaussian vectors times a
  log-normal norm (popularity-like scales), 1-bit codes by the model's quantizer; float32 = the
  same vectors. Each user has ``--seen`` random train items.

For each catalogue, one server process per kind (`hqgnn serve`, 127.0.0.1 only, 1 worker,
``--threads 1``; kinds: 1 bit with the library's default index, 1 bit by one scan where the
catalogue is large enough for the bucketed index, float32), all started side by side, each with
its own work directory (symlinks to the same version folders). For each concurrency C in
``--concurrency``, ``--rounds`` rounds each run every kind once in turn (round-robin, so a slow
spell of the shared machine hits all kinds alike): C client threads (keep-alive
``http.client`` connections, this process) send ``GET /recommend?user=<random>&k=20`` back to
back, each cell bounded by ``--requests`` and ``--seconds``, after ``--warmup`` untimed
requests. Reported: p50 / p99 latency (client side, all rounds pooled), requests per second
(median of the rounds), errors, server RSS (psutil: idle, and the peak during the cells). Then
cells on the 1-bit server while ``codes/current`` moves to a second version (same codes,
another folder, so the service loads and verifies it for real) after a third of the requests,
running until the new version has answered a third more: errors must be 0, every answer names
its version, the peak RSS includes both versions during the swap.

Index bytes per item: every array the 1-bit ranking holds (``Retriever.item_nbytes``: the
bucketed index's FAISS codes, scales and bucket-order permutation, or the packed codes and
scales of the one-scan path), measured on a version loaded here.

    .venv/bin/python bench/serve_load.py                      # everything, ~10 min
    .venv/bin/python bench/serve_load.py --only 1m --concurrency 1,8
    .venv/bin/python bench/serve_load.py --only 1m --float-users   # float users x 1-bit items: batched vs one at a time
    .venv/bin/python bench/serve_load.py --only 1m --float-users 4 # the same against 4-bit item codes (sliced grid)

The last line is ``key=value`` pairs for BENCHMARKS.md. Loopback only; every server it starts is
stopped (also on error).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lightgcn_data import read_folder  # noqa: E402
from flows.code_versions import CODE_FILES, code_values_wanted, write_code_table  # noqa: E402
from flows.split_files import write_split  # noqa: E402
from flows.workdir import WorkDir, atomic_dir, file_sha256, switch_pointer  # noqa: E402
from hqgnn.codes import CodeTable, code_bytes  # noqa: E402
from hqgnn.export import code_table_arrow  # noqa: E402
from hqgnn.files import atomic_write_json  # noqa: E402
from hqgnn.quant import quantize  # noqa: E402

HOST = "127.0.0.1"  # loopback only, by design
REPO = Path(__file__).resolve().parents[1]
SCAN = 10**12  # scaled_index_min_items that keeps every catalogue on the one-scan 1-bit path


# ----------------------------------------------------------------------------- code versions


def write_version(w: WorkDir, name: str, users: CodeTable, items: CodeTable, user_ids: np.ndarray, item_ids: np.ndarray,
                  snapshot: str, publish: bool = True) -> Path:
    """``codes/<name>/`` as export writes it (Parquet + a manifest with the files' hashes)."""
    final = w.codes / name
    if final.is_dir():
        return final
    split_dir = w.splits / snapshot
    with atomic_dir(final) as tmp:
        for kind, table, ids in (("user", users, user_ids), ("item", items, item_ids)):
            write_code_table(tmp / CODE_FILES[kind], code_table_arrow(kind, ids, table, code_values_wanted(kind, users.bits, items.bits)))
        atomic_write_json(tmp / "manifest.json", {
            "version": name, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            "run": "bench", "bits": items.bits, "user_bits": users.bits, "dim": users.dim, "code_bytes": code_bytes(items.bits, items.dim),
            "num_users": len(users), "num_items": len(items), "snapshot": snapshot, "split_dir": str(split_dir),
            "snapshot_hashes": {"train.parquet": file_sha256(split_dir / "train.parquet")},
            "files": {f: {"sha256": file_sha256(tmp / f), "size": (tmp / f).stat().st_size} for f in CODE_FILES.values()},
            "gate": {"passed": True, "reason": "bench/serve_load.py: written directly (no gate)"},
        })
    if publish:
        switch_pointer(w.codes / "current", final)
    return final


def second_copy(w: WorkDir, source: Path) -> Path:
    """The same codes under another version name (the hot-swap target)."""
    target = source.with_name(source.name + "-b")
    if not target.is_dir():
        with atomic_dir(target) as tmp:
            for f in (*CODE_FILES.values(), "manifest.json"):
                shutil.copy2(source / f, tmp / f)
            m = json.loads((tmp / "manifest.json").read_text())
            m["version"] = target.name
            (tmp / "manifest.json").write_text(json.dumps(m))
    return target


def setup_gowalla(root: Path, data: Path, epochs: int) -> dict[str, Path]:
    """Work directory with Gowalla's split, a quick trained 1-bit run exported, and float32."""
    from flows.config import ExportConfig, TrainConfig
    from flows.stages.export import export
    from flows.stages.train import train_in_process
    from flows.trained_runs import load_run

    w = WorkDir(root)
    done = {"1bit": w.codes / "gowalla-1bit", "fp32": w.codes / "gowalla-fp32", "fu1bit": w.codes / "gowalla-fu1bit"}
    if done["1bit"].is_dir() and done["fp32"].is_dir():
        _float_users_version(w, done, "gowalla")  # also into a work folder from before the float-users kind
        return done
    raw = read_folder(data)
    (tu, ti), (su, si) = raw["train"], raw["test"]
    n_u, n_i = int(max(tu.max(), su.max())) + 1, int(max(ti.max(), si.max())) + 1
    rng = np.random.default_rng(0)
    valid = rng.random(len(tu)) < 0.05
    split = write_split(w.splits / "gowalla", {"train": (tu[~valid], ti[~valid]), "valid": (tu[valid], ti[valid]), "test": (su, si)},
                        n_u, n_i, "gowalla")
    switch_pointer(w.splits / "current", split)
    start = time.perf_counter()
    train_in_process(w, TrainConfig(bits=1, epochs=epochs, batch_size=32768, lr=0.01, device="cpu", run="gowalla-1bit"))
    print(f"gowalla: trained {epochs} epochs in {time.perf_counter() - start:.0f}s", flush=True)
    res = export(w, ExportConfig(run="gowalla-1bit", force=True))
    os.replace(res.path, done["1bit"])  # a stable name for the benchmark
    for p in ("current", "current-1bit"):
        switch_pointer(w.codes / p, done["1bit"])
    run = load_run(w.models / "gowalla-1bit")
    manifest = json.loads((done["1bit"] / "manifest.json").read_text())
    print(f"gowalla 1-bit codes: valid {json.dumps(manifest['metrics']['valid_codes'])}", flush=True)
    from flows.split_files import load_split

    s = load_split(split)
    write_version(w, "gowalla-fp32", CodeTable.from_float(run.float_user_emb.numpy()), CodeTable.from_float(run.item_emb.numpy()),
                  s.user_ids, s.item_ids, "gowalla", publish=False)
    _float_users_version(w, done, "gowalla")
    return done


def _float_users_version(w: WorkDir, done: dict[str, Path], snapshot: str, bits: int = 1) -> Path:
    """``done["fu<bits>bit"]``: the float32 version's users against ``bits``-bit item codes (the
    layout a ``float_users`` run exports), for the float-users kinds (``--float-users``); kept if
    written. 1 bit: the 1-bit version's item codes; wider: the float32 items quantized as they are."""
    from flows.code_versions import read_code_version

    key = f"fu{bits}bit"
    done[key] = done["fp32"].with_name(done["fp32"].name.removesuffix("fp32") + key)
    if not done[key].is_dir():
        fp = read_code_version(done["fp32"])
        if bits == 1:
            items = read_code_version(done["1bit"]).items
        else:
            q = quantize(torch.from_numpy(fp.items.dequantize()), bits)
            items = CodeTable.from_values(q.codes.numpy(), q.scale.numpy(), bits)
        write_version(w, done[key].name, fp.users, items, fp.user_ids, fp.item_ids, snapshot, publish=False)
    return done[key]


def setup_synthetic(root: Path, num_items: int, num_users: int, seen: int, dim: int = 64) -> dict[str, Path]:
    """Work directory with ``num_items`` synthetic items: a 1-bit and a float32 version."""
    w = WorkDir(root)
    done = {"1bit": w.codes / "synthetic-1bit", "fp32": w.codes / "synthetic-fp32", "fu1bit": w.codes / "synthetic-fu1bit"}
    if done["1bit"].is_dir() and done["fp32"].is_dir():
        _float_users_version(w, done, "synthetic")  # also into a work folder from before the float-users kind
        return done
    rng = np.random.default_rng(0)
    items = (rng.normal(size=(num_items, dim)) * rng.lognormal(0, 0.5, (num_items, 1))).astype(np.float32)
    users = rng.normal(size=(num_users, dim)).astype(np.float32)
    tu = np.repeat(np.arange(num_users), seen)
    ti = rng.integers(0, num_items, len(tu))
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    split = write_split(w.splits / "synthetic", {"train": (tu, ti), "valid": empty, "test": empty}, num_users, num_items, "synthetic")
    switch_pointer(w.splits / "current", split)
    user_ids = np.array([f"u{j}" for j in range(num_users)], dtype=object)
    item_ids = np.array([f"i{j}" for j in range(num_items)], dtype=object)
    for kind, table in (("1bit", lambda x: _one_bit(x)), ("fp32", CodeTable.from_float)):
        write_version(w, done[kind].name, table(users), table(items), user_ids, item_ids, "synthetic", publish=kind == "1bit")
    _float_users_version(w, done, "synthetic")
    return done


def _one_bit(x: np.ndarray) -> CodeTable:
    q = quantize(torch.from_numpy(x), 1)
    return CodeTable.from_values(q.codes.numpy(), q.scale.numpy(), 1)


def index_bytes_per_item(root: Path, version: Path, scaled_from: int) -> dict[str, float]:
    """Bytes per item the 1-bit ranking holds (``Retriever.item_nbytes``: every array reachable from
    the served retriever that grows with the catalogue; ``index_total`` is their sum), and, beside
    it, the other per-item arrays a served version keeps (id map, fold-in's item degrees)."""
    from flows.serving.version import load_version

    v = load_version(root, version, verify=False, scaled_index_min_items=scaled_from)
    n = len(v.item_ids)
    held = v.retriever.item_nbytes()
    out = {f"index.{part}": b / n for part, b in held.items()}
    out["index_total"] = sum(held.values()) / n
    out["item_id_map"] = v.item_ids.nbytes / n
    out["item_degree"] = v.item_degree.numel() * v.item_degree.element_size() / n
    return out


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """`hqgnn serve` in a subprocess on loopback (stopped on exit, also on error)."""

    def __init__(self, root: Path, log: Path, scaled_from: int, batch: bool = True) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO), "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "False",
               "HQGNN_SERVE_BATCH": "1" if batch else "0"}
        cmd = [sys.executable, "-m", "flows.cli", "serve", "--workdir", str(root), "--host", HOST,
               "--port", str(self.port), "--threads", "1", "--poll", "0.5", "--bucket-index-from", str(scaled_from)]
        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO)
        self.ps = psutil.Process(self.proc.pid)

    def wait_ready(self, timeout: float = 600) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                c = http.client.HTTPConnection(HOST, self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return time.perf_counter() - start
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become healthy")

    def get(self, path: str) -> dict[str, Any]:
        c = http.client.HTTPConnection(HOST, self.port, timeout=30)
        c.request("GET", path)
        return json.loads(c.getresponse().read())

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ----------------------------------------------------------------------------- load


@dataclass
class Cell:
    latencies: list[float]
    errors: int
    versions: dict[str, int]
    seconds: float
    peak_rss_mb: float

    def row(self) -> dict[str, Any]:
        lat = np.array(self.latencies) * 1e3 if self.latencies else np.array([np.nan])
        return {"requests": len(self.latencies), "errors": self.errors, "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)), "rps": len(self.latencies) / self.seconds,
                "peak_rss_mb": self.peak_rss_mb, "versions": self.versions}


def load(server: Server, users: list[str], concurrency: int, requests: int, seconds: float, warmup: int,
         swap_to: Path | None = None, pointer: Path | None = None, seed: int = 0) -> Cell:
    """Closed loop: ``concurrency`` threads, each one request at a time, until ``requests``
    answers or ``seconds`` elapsed. With ``swap_to``: ``pointer`` moves to it after a third of
    the requests, and the cell runs until the new version has answered a third of ``requests``
    more (or ``seconds``), so both versions and the swap itself are under load."""
    lock = threading.Lock()
    lat: list[float] = []
    versions: dict[str, int] = {}
    errors = [0]
    stop, ready = threading.Event(), threading.Event()

    def client(slot: int) -> None:
        rng = np.random.default_rng(seed * 1000 + slot)
        conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
        for n in range(warmup // concurrency + 1):
            conn.request("GET", f"/recommend?user={users[(slot + n) % len(users)]}&k=20")
            conn.getresponse().read()
        ready.wait()
        while not stop.is_set():
            path = f"/recommend?user={users[int(rng.integers(len(users)))]}&k=20"
            t = time.perf_counter()
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200
                version = json.loads(body)["version"] if ok else None
            except (OSError, http.client.HTTPException, ValueError):
                ok, version = False, None
                conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
            dt = time.perf_counter() - t
            with lock:
                if ok:
                    lat.append(dt)
                    versions[version] = versions.get(version, 0) + 1
                else:
                    errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(s,), daemon=True) for s in range(concurrency)]
    for t in threads:
        t.start()
    time.sleep(0.2 + warmup * 0.002)
    peak = server.rss_mb()
    swapped = swap_to is None
    start = time.perf_counter()
    ready.set()
    while True:
        peak = max(peak, server.rss_mb())
        with lock:
            done = len(lat)
            new = versions.get(swap_to.name, 0) if swap_to is not None else 0
        if not swapped and done >= requests // 3:
            assert pointer is not None and swap_to is not None
            switch_pointer(pointer, swap_to)
            swapped = True
        finished = done >= requests if swap_to is None else new >= requests // 3
        if finished or time.perf_counter() - start > seconds:
            stop.set()
            break
        time.sleep(0.02)
    for t in threads:
        t.join(60)
    elapsed = time.perf_counter() - start
    return Cell(lat, errors[0], versions, elapsed, max(peak, server.rss_mb()))


def serving_dir(out: Path, name: str, kind: str, root: Path, versions: list[Path]) -> WorkDir:
    """A work directory of its own for one server (its own ``codes/current``), whose ``splits``
    and version folders are symlinks to the catalogue's: all servers run side by side."""
    w = WorkDir(out / f"{name}-{kind}-serve")
    w.codes.mkdir(parents=True, exist_ok=True)
    if not w.splits.is_symlink():
        w.splits.symlink_to(WorkDir(root).splits.resolve())
    for v in versions:
        if not (w.codes / v.name).is_symlink():
            (w.codes / v.name).symlink_to(v.resolve())
    switch_pointer(w.codes / "current", w.codes / versions[0].name)
    return w


def run_catalogue(name: str, root: Path, versions: dict[str, Path], args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Every kind's server started at once; cells round-robin (each round runs every kind once
    per concurrency), so a slow spell of the shared machine hits all kinds alike; then the
    hot-swap cells on the 1-bit server."""
    results: dict[str, Any] = {"items": None, "cells": {}, "rounds": {}}
    scaled_from = args.scaled_index_min_items
    num_items = int(json.loads((versions["1bit"] / "manifest.json").read_text())["num_items"])
    kinds: dict[str, tuple[Path, int]] = {"1bit": (versions["1bit"], scaled_from), "fp32": (versions["fp32"], scaled_from)}
    if num_items >= scaled_from:  # the same codes ranked by one scan (no bucketed FAISS index)
        kinds = {"1bit": kinds["1bit"], "1bit-scan": (versions["1bit"], SCAN), "fp32": kinds["fp32"]}
    if args.float_users:  # float users x b-bit items, micro-batched (the default) and one request at a time
        snapshot = json.loads((versions["fp32"] / "manifest.json").read_text())["snapshot"]
        fu, key = _float_users_version(WorkDir(root), versions, snapshot, args.float_users), f"fu{args.float_users}bit"
        kinds = {key: (fu, scaled_from), f"{key}-single": (fu, scaled_from), "fp32": kinds["fp32"]}
    other = second_copy(WorkDir(root), versions["1bit"])
    dirs = {k: serving_dir(out, name, k, root, [v, other] if k == "1bit" else [v]) for k, (v, _) in kinds.items()}
    servers: dict[str, Server] = {}
    try:
        for kind, (_, index_from) in kinds.items():
            servers[kind] = Server(dirs[kind].root, out / f"{name}-{kind}.log", index_from, batch=not kind.endswith("-single"))
        idle: dict[str, float] = {}
        for kind, server in servers.items():
            ready_s = server.wait_ready()
            info = server.get("/version")
            results["items"] = info["rows"]["items"]
            idle[kind] = server.rss_mb()
            print(f"{name} {kind}: ready in {ready_s:.1f}s, {info['rows']}, idle RSS {idle[kind]:.0f} MB", flush=True)
        users = [str(u) for u in _user_ids(versions["1bit"], args.query_users)]
        for c in args.concurrency:
            raw: dict[str, list[Cell]] = {k: [] for k in kinds}
            for r in range(args.rounds):
                for kind, server in servers.items():
                    raw[kind].append(load(server, users, c, args.requests, args.seconds, args.warmup, seed=c * 10 + r))
            for kind, cells in raw.items():
                merged = Cell([x for cell in cells for x in cell.latencies], sum(cell.errors for cell in cells),
                              {}, sum(cell.seconds for cell in cells), max(cell.peak_rss_mb for cell in cells))
                for cell in cells:
                    for v, n in cell.versions.items():
                        merged.versions[v] = merged.versions.get(v, 0) + n
                row = merged.row()
                row["rps_per_round"] = [len(cell.latencies) / cell.seconds for cell in cells]
                row["rps"] = float(np.median(row["rps_per_round"]))  # median of the rounds
                results["cells"][f"{kind}/c{c}"] = {**row, "idle_rss_mb": idle[kind], "load_avg": os.getloadavg()[0]}
                print(f"  {kind} c={c}: {_fmt(row)} (req/s per round {[round(x, 1) for x in row['rps_per_round']]})", flush=True)
        for c in args.concurrency if "1bit" in servers else ():  # the hot-swap cells: the 1-bit server only
            server, pointer = servers["1bit"], dirs["1bit"].codes / "current"
            now = server.get("/version")["version"]
            target = dirs["1bit"].codes / (versions["1bit"].name if now == other.name else other.name)
            cell = load(server, users, c, args.requests, args.swap_seconds, args.warmup, swap_to=target, pointer=pointer, seed=c).row()
            deadline = time.time() + 120
            while server.get("/version")["version"] != target.name and time.time() < deadline:
                time.sleep(0.2)
            swapped = server.get("/version")
            cell["swapped_to"], cell["refused"] = swapped["version"] == target.name, swapped["refused"]
            results["cells"][f"1bit-swap/c{c}"] = {**cell, "load_avg": os.getloadavg()[0]}
            print(f"  1bit c={c} during swap -> {target.name}: {_fmt(cell)} swapped={cell['swapped_to']}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    results["index_bytes_per_item"] = {kind: index_bytes_per_item(root, v, f) for kind, (v, f) in kinds.items() if kind != "fp32"}
    return results


def _user_ids(version: Path, n: int) -> list[str]:
    import pyarrow.parquet as pq

    ids = pq.read_table(version / "users.parquet", columns=["user_id"]).column("user_id").to_pylist()
    rng = np.random.default_rng(1)
    return [ids[j] for j in rng.choice(len(ids), min(n, len(ids)), replace=False)]


def _fmt(cell: dict[str, Any]) -> str:
    return (f"{cell['requests']} req, {cell['errors']} errors, p50 {cell['p50_ms']:.2f} ms, p99 {cell['p99_ms']:.2f} ms, "
            f"{cell['rps']:.1f} req/s, peak RSS {cell['peak_rss_mb']:.0f} MB, versions {cell['versions']}")


def memory_breakdown(root: Path, version: Path) -> None:
    """RSS of this process after each step a server takes to load ``version`` (printed)."""
    import gc

    ps = psutil.Process()
    step = lambda what: print(f"memory: {what}: RSS {ps.memory_info().rss / 2**20:.0f} MB", flush=True)  # noqa: E731
    step("start")
    import flows.serving.app  # noqa: F401 - the service's imports (torch, FAISS, FastAPI)

    step("service imports")
    from flows.code_versions import check_code_version
    from flows.serving.version import load_version

    check_code_version(version)
    gc.collect()
    step("after verify_code_version (hashes + GX contracts)")
    v = load_version(root, version, verify=False)
    step(f"after load_version ({len(v.item_ids)} items)")
    n = len(v.item_ids)
    held = v.retriever.item_nbytes()
    print("memory: the 1-bit ranking holds, per item: " + ", ".join(f"{k} {b / n:.3f} B" for k, b in held.items())
          + f" = {sum(held.values()) / n:.3f} B; beside it the id map {v.item_ids.nbytes / n:.1f} B, "
          f"fold-in's item degrees {v.item_degree.numel() * v.item_degree.element_size() / n:.1f} B", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "serve")
    p.add_argument("--gowalla", type=Path, default=Path("/work/shared/data/gowalla-lightgcn"))
    p.add_argument("--gowalla-epochs", type=int, default=3)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=20_000)
    p.add_argument("--seen", type=int, default=30)
    p.add_argument("--only", choices=("gowalla", "1m"), default=None)
    p.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32])
    p.add_argument("--requests", type=int, default=1500, help="per cell and round, at most")
    p.add_argument("--seconds", type=float, default=6.0, help="per cell and round, at most")
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds over the kinds (median req/s)")
    p.add_argument("--swap-seconds", type=float, default=120.0, help="per swap cell, at most (a swap loads and verifies the version)")
    p.add_argument("--warmup", type=int, default=32)
    p.add_argument("--query-users", type=int, default=2000)
    p.add_argument("--scaled-index-min-items", type=int, default=100_000,
                   help="Retriever's switch to the bucketed FAISS index (the library default); a huge value = one scan")
    p.add_argument("--float-users", type=int, nargs="?", const=1, default=0, choices=(1, 2, 4, 8), metavar="BITS",
                   help="kinds: float users x BITS-bit items (default 1) micro-batched (fu<BITS>bit) and one request at a time "
                        "(fu<BITS>bit-single), float32; no swap cells")
    p.add_argument("--setup-only", action="store_true")
    p.add_argument("--memory-breakdown", action="store_true", help="only print the RSS after each loading step (1-bit version)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {os.getloadavg()}", flush=True)
    todo = {}
    if args.only in (None, "gowalla"):
        if not args.gowalla.is_dir():
            print(f"skipping gowalla: {args.gowalla} not found", flush=True)
        else:
            todo["gowalla"] = (args.out / "gowalla-work", setup_gowalla(args.out / "gowalla-work", args.gowalla, args.gowalla_epochs))
    if args.only in (None, "1m"):
        root = args.out / f"synthetic-{args.items}-work"
        todo["1m"] = (root, setup_synthetic(root, args.items, args.users, args.seen))
    if args.setup_only:
        return 0
    if args.memory_breakdown:
        for root, versions in todo.values():
            memory_breakdown(root, versions["1bit"])
        return 0
    report = {name: run_catalogue(name, root, versions, args, args.out) for name, (root, versions) in todo.items()}
    report["load_avg_end"] = os.getloadavg()
    tag = ((f"-scaled{args.scaled_index_min_items}" if args.scaled_index_min_items != 100_000 else "") + (f"-float-users{'' if args.float_users == 1 else args.float_users}" if args.float_users else "")
           + (f"-{args.only}" if args.only else ""))
    (args.out / f"serve_load{tag}.json").write_text(json.dumps(report, indent=1))
    summary = []
    for name, r in report.items():
        if not isinstance(r, dict):
            continue
        cells = r["cells"]
        for c in args.concurrency:
            one, fp = cells.get(f"1bit/c{c}"), cells.get(f"fp32/c{c}")
            if one and fp:
                summary.append(f"{name}_c{c}_speedup={one['rps'] / fp['rps']:.2f}")
            if one:
                summary.append(f"{name}_c{c}_1bit_p99_ms={one['p99_ms']:.2f}")
        summary.append(f"{name}_swap_errors={sum(v['errors'] for k, v in cells.items() if 'swap' in k)}")
        for kind, b in r["index_bytes_per_item"].items():
            summary.append(f"{name}_{kind}_index_B_per_item={b['index_total']:.2f}")
        for c in args.concurrency:
            key = f"fu{args.float_users}bit"
            fu, single, fp = cells.get(f"{key}/c{c}"), cells.get(f"{key}-single/c{c}"), cells.get(f"fp32/c{c}")
            if fu and single and fp:
                t = "fu" if args.float_users == 1 else f"fu{args.float_users}"
                summary.append(f"{name}_c{c}_{t}_batched_vs_single={fu['rps'] / single['rps']:.2f} {name}_c{c}_{t}_vs_fp32={fu['rps'] / fp['rps']:.2f}")
        for kind in ("1bit", "1bit-scan"):
            one, fp = cells.get(f"{kind}/c8"), cells.get("fp32/c8")
            if one and fp and kind == "1bit-scan":
                summary.append(f"{name}_c8_scan_speedup={one['rps'] / fp['rps']:.2f}")
    print(" ".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
