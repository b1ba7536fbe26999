"""The real thing, as a user runs it: a local Prefect server, the process work pool, `prefect
deploy --all` of prefect.yaml, a worker, and `prefect deployment run hqgnn/train` on tiny data.

Everything runs on 127.0.0.1 with a free port, a temporary PREFECT_HOME and telemetry off.
Every process the test starts is stopped at the end, worker before server, even on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from pipeline_checks import check_published, tiny_params, tiny_raw_file

from flows.config import IngestConfig
from flows.paths import REPO_ROOT
from flows.workdir import WorkDir

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

POOL = "hqgnn-process"
SERVER_START_S = 90
RUN_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _prefect(*args: str) -> list[str]:
    """The prefect CLI of this interpreter (the venv the tests run in)."""
    return [sys.executable, "-m", "prefect", *args]


class Processes:
    """Processes started by the test, each in its own session; stopped in reverse order."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(_prefect(*args), cwd=REPO_ROOT, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.started.append((name, proc))
        return proc

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(_prefect(*args), cwd=REPO_ROOT, env=self.env, capture_output=True,
                             text=True, timeout=timeout)
        assert out.returncode == 0, f"prefect {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return out

    def stop_all(self) -> None:
        """SIGTERM each process group we started (latest first: worker before server), then SIGKILL."""
        for _name, proc in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]


@pytest.fixture
def prefect_env(tmp_path: Path) -> dict[str, str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "False",
    })
    return env


@pytest.fixture
def processes(prefect_env: dict[str, str], tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(prefect_env, tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()
    assert all(p.poll() is not None for _, p in procs.started), "a process outlived the test"


def _api(env: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    r = httpx.request(method, env["PREFECT_API_URL"] + path, json=body, timeout=10)
    r.raise_for_status()
    return r.json()


def _wait_healthy(env: dict[str, str], server: subprocess.Popen[bytes], procs: Processes) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < SERVER_START_S:
        assert server.poll() is None, f"prefect server exited:\n{procs.log('server')}"
        with contextlib.suppress(httpx.HTTPError):
            if _api(env, "GET", "/health") is True:
                return time.monotonic() - t0
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {SERVER_START_S} s:\n{procs.log('server')}")


def test_deployment_run_hqgnn_train_on_tiny_data(tmp_path: Path, prefect_env: dict[str, str], processes: Processes) -> None:
    from flows.stages.ingest import ingest

    # A tiny warehouse: `hqgnn/train` retrains on what is in it.
    workdir = tmp_path / "work"
    params = tiny_params(tiny_raw_file(tmp_path / "raw"))
    ingest(WorkDir(workdir), IngestConfig(**params.pop("ingest")))

    server = processes.start("server", "server", "start", "--host", "127.0.0.1",
                             "--port", prefect_env["PREFECT_SERVER_API_PORT"], "--no-ui")
    healthy_s = _wait_healthy(prefect_env, server, processes)

    t_deploy = time.monotonic()
    processes.run("work-pool", "create", POOL, "--type", "process")
    deployed = processes.run("--no-prompt", "deploy", "--all")
    deploy_s = time.monotonic() - t_deploy
    assert "hqgnn/train" in deployed.stdout and "hqgnn/nightly" in deployed.stdout
    deployments = {d["name"]: d for d in _api(prefect_env, "POST", "/deployments/filter", {})}
    assert set(deployments) == {"train", "nightly", "sweep"}
    assert not deployments["sweep"]["schedules"]  # issue 7: on demand only
    nightly = deployments["nightly"]
    assert nightly["schedules"] and nightly["schedules"][0]["schedule"]["cron"] == "30 2 * * *"
    assert nightly["parameters"]["drop_folder"] == "hqgnn-drop"
    assert deployments["train"]["work_pool_name"] == POOL

    worker = processes.start("worker", "worker", "start", "--pool", POOL)
    t0 = time.monotonic()
    run = processes.run(
        "deployment", "run", "hqgnn/train",
        "--param", f"workdir={workdir}",
        "--params", json.dumps({k: params[k] for k in ("prepare", "train")}),
        "--watch", "--watch-timeout", str(RUN_TIMEOUT_S),
        timeout=RUN_TIMEOUT_S + 30,
    )
    run_s = time.monotonic() - t0
    assert worker.poll() is None, f"worker exited:\n{processes.log('worker')}"

    (flow_run,) = _api(prefect_env, "POST", "/flow_runs/filter",
                       {"flow_runs": {"deployment_id": {"any_": [deployments["train"]["id"]]}}})
    assert flow_run["state"]["type"] == "COMPLETED", f"{flow_run['state']}\n{run.stdout}\n{processes.log('worker')}"
    assert flow_run["parameters"]["train"]["epochs"] == 2

    manifest = check_published(workdir)
    con = duckdb.connect(str(WorkDir(workdir).warehouse), read_only=True)
    try:
        rows = con.execute("select status, deployment, train_run, code_version, metrics from runs where run_id = $id",
                           {"id": flow_run["id"]}).fetchall()
    finally:
        con.close()
    ((status, deployment, train_run, code_version, metrics),) = rows
    assert (status, deployment) == ("completed", "hqgnn/train")
    assert (train_run, code_version) == (manifest["run"], manifest["version"])
    assert json.loads(metrics)["rows"]

    keys = {a["key"] for a in _api(prefect_env, "POST", "/artifacts/filter",
                                  {"artifacts": {"flow_run_id": {"any_": [flow_run["id"]]}}})}
    assert {"data-manifest", "evaluation", "evaluation-plots"} <= keys
    print(f"\nserver healthy in {healthy_s:.1f} s; pool + deploy {deploy_s:.1f} s; "
          f"deployment run --watch (incl. worker start) {run_s:.1f} s")
