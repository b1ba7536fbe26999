"""Crash and fault safety (issue 17): the work-directory lock, one line for every failure,
verified reads, ``hqgnn doctor``, kill -9 at planted and random moments.

The unit part runs in-process on one tiny trained work directory (copied per test). The fault
injection part kills real ``hqgnn`` subprocesses (:mod:`fault_harness`, :mod:`fault_inject`):
two planted kills run in every CI pass; one seeded random kill per stage, the kill of
``hqgnn run`` and its resume are marked ``slow``; ``bench/fault_injection.py`` runs many.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_checks import COLUMNS, tiny_raw_file
from typer.testing import CliRunner

from flows.cli import app, expand_bare_wait
from flows.config import ExportConfig, IngestConfig, PrepareConfig, TrainConfig
from flows.errors import InputError
from flows.lock import WorkdirLockedError, held_here, workdir_lock
from flows.workdir import WorkDir

ROOT = Path(__file__).resolve().parents[2]
TRAIN = {"epochs": 2, "dim": 16, "batch_size": 256, "device": "cpu", "hutchinson_samples": 2, "hutchinson_batches": 1}


# ---- a tiny trained and published work directory ---------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ingest -> prepare -> train (run r1) -> export, in-process, once per module."""
    from flows.stages.export import export
    from flows.stages.ingest import ingest
    from flows.stages.prepare import prepare
    from flows.stages.train import train

    root = tmp_path_factory.mktemp("built")
    wd = WorkDir(root / "w")
    raw = tiny_raw_file(root)
    ingest(wd, IngestConfig(files=(raw,), format="csv", columns=COLUMNS, rating_min=1.0, rating_max=5.0))
    prepare(wd, PrepareConfig(kcore_user=3, kcore_item=3))
    train(wd, TrainConfig(**TRAIN, run="r1"))
    export(wd, ExportConfig(run="r1"))
    return wd.root


@pytest.fixture
def wd(built: Path, tmp_path: Path) -> WorkDir:
    """A private copy of the built work directory."""
    shutil.copytree(built, tmp_path / "w", symlinks=True)
    return WorkDir(tmp_path / "w")


def cli(wd: WorkDir, *args: str) -> tuple[int, list[str]]:
    """Run ``hqgnn ARGS --workdir WD`` in-process; exit code and the non-empty output lines."""
    result = CliRunner().invoke(app, [*args, "--workdir", str(wd.root)])
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


def error_line(lines: list[str]) -> str:
    """The single ``error:`` line (asserting there is exactly one and no traceback)."""
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert not any("Traceback" in line for line in lines), lines
    return errors[0]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), e.get("PYTHONPATH", "")])
    return e


def hold_lock(root: Path, seconds: float, command: str = "train") -> subprocess.Popen[str]:
    """Another process holding the lock of ``root`` for ``seconds`` (returns once it holds it)."""
    code = (f"import time, pathlib; from flows.lock import workdir_lock\n"
            f"with workdir_lock(pathlib.Path({str(root)!r}), {command!r}):\n    print('held', flush=True); time.sleep({seconds})")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


# ---- 1. the work-directory lock ------------------------------------------------------------------


def test_second_writer_fails_at_once_naming_the_holder_then_waits_with_wait(wd: WorkDir) -> None:
    holder = hold_lock(wd.root, 3)
    try:
        t0 = time.perf_counter()
        code, lines = cli(wd, "prepare", "--kcore-user", "3", "--kcore-item", "3")
        assert code == 1 and time.perf_counter() - t0 < 2.5
        line = error_line(lines)
        assert "`hqgnn train`" in line and f"pid {holder.pid}" in line and "since" in line and "--wait" in line
        code, lines = cli(wd, "prepare", "--kcore-user", "3", "--kcore-item", "3", "--wait", "30")
        assert code == 0, lines  # queued behind the holder, then ran
    finally:
        holder.kill()
        holder.wait()


def test_lock_dies_with_its_holder_and_readers_never_take_it(wd: WorkDir) -> None:
    holder = hold_lock(wd.root, 60)
    try:
        user = json.loads((wd.code_version() / "manifest.json").read_text())["num_users"]
        assert user > 0
        code, lines = cli(wd, "recommend", "--user", "u1", "--k", "3")  # a reader, while a writer holds the lock
        assert code == 0 or "unknown user" in " ".join(lines)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with workdir_lock(wd, "export"):  # no stale lock after kill -9
        assert held_here(wd)


def test_lock_is_reentrant_in_one_process(tmp_path: Path) -> None:
    with workdir_lock(tmp_path, "run"):
        with workdir_lock(tmp_path, "train"):  # the stage flows inside `hqgnn run`
            assert held_here(tmp_path)
        assert held_here(tmp_path)
    assert not held_here(tmp_path)
    holder = hold_lock(tmp_path, 30, "export")
    try:
        with pytest.raises(WorkdirLockedError, match="hqgnn export"), workdir_lock(tmp_path, "run", wait=0.5):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_bare_wait_means_no_limit() -> None:
    assert expand_bare_wait(["prepare", "--wait"]) == ["prepare", "--wait", "inf"]
    assert expand_bare_wait(["prepare", "--wait", "--seed", "3"]) == ["prepare", "--wait", "inf", "--seed", "3"]
    assert expand_bare_wait(["prepare", "--wait", "30"]) == ["prepare", "--wait", "30"]


def test_prefect_deployments_run_one_at_a_time() -> None:
    import yaml

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for dep in spec["deployments"]:
        assert dep["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}, dep["name"]
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy

    assert ConcurrencyLimitStrategy("ENQUEUE")  # a strategy Prefect knows


# ---- 2. one line for every failure ---------------------------------------------------------------


def test_no_space_left_is_one_line_and_leaves_the_last_good_snapshot(wd: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    before = wd.split().name
    def full(table: object, where: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(where))

    monkeypatch.setattr(pq, "write_table", full)
    code, lines = cli(wd, "prepare", "--kcore-user", "3", "--kcore-item", "3", "--seed", "7")
    line = error_line(lines)
    assert code == 1 and "No space left on device" in line and ".parquet" in line and "free space" in line
    assert wd.split().name == before
    assert not [p for p in wd.root.rglob(".*.tmp")], "a failed prepare left temp files"


def test_no_space_left_while_checkpointing_names_the_checkpoint(wd: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # as write(2)/fsync(2) report it: no file name

    monkeypatch.setattr(os, "fsync", full)
    code, lines = cli(wd, "train", "--run", "r2", "--epochs", "1")
    line = error_line(lines)
    assert code == 1 and "No space left on device" in line and "r2/config.json" in line and "free space" in line, line
    assert not [p for p in wd.root.rglob(".*.tmp")]


@pytest.fixture
def tiny_disk(tmp_path: Path, built: Path):  # noqa: ANN201 - yields the work directory on it
    """The built work directory on a tmpfs with 1.5 MB to spare (skipped where mount is not allowed)."""
    used = sum(p.stat().st_size for p in built.rglob("*") if p.is_file() and not p.is_symlink())
    mnt = tmp_path / "disk"
    mnt.mkdir()
    size_kb = (used + 1_500_000) // 1024 + 64
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)], capture_output=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.decode().strip()}); the simulated ENOSPC tests cover it")
    try:
        shutil.copytree(built, mnt / "w", symlinks=True)
        yield WorkDir(mnt / "w")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_is_one_line_and_loses_nothing(tiny_disk: WorkDir, tmp_path: Path) -> None:
    from fault_harness import raw_counts

    from hqgnn.synthetic import SyntheticSpec, write_interactions

    wd = tiny_disk
    before = raw_counts(wd)
    big = write_interactions(tmp_path / "big.csv", SyntheticSpec(num_users=6000, num_items=3000, mean_events_per_user=40, seed=9))
    code, lines = cli(wd, "ingest", str(big), "--format", "csv", "--columns", "user=user_id,item=item_id,timestamp=timestamp,rating=rating")
    line = error_line(lines)
    assert code == 1 and "No space left on device" in line and "free space" in line, line
    assert raw_counts(wd) == before  # nothing of the failed ingest is kept
    code, lines = cli(wd, "recommend", "--user", "u1")  # readers still work on a full disk
    assert code == 0 or "unknown user" in " ".join(lines)


def test_permission_denied_is_one_line(wd: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.publish

    def denied(pointer: Path, target: Path) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(pointer))

    monkeypatch.setattr(flows.publish, "switch_pointer", denied)
    code, lines = cli(wd, "export", "--run", "r1", "--force")
    line = error_line(lines)
    assert code == 1 and "Permission denied" in line and "current" in line and "ls -l" in line


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_damaged_last_checkpoint_is_one_line(wd: WorkDir, damage: str) -> None:
    last = wd.models / "r1" / "last.pt"
    last.write_bytes(b"" if damage == "empty" else last.read_bytes()[: last.stat().st_size // 2])
    code, lines = cli(wd, "train", "--resume", "--run", "r1")
    assert code == 1 and "last.pt" in error_line(lines) and "damaged" in error_line(lines)


def test_truncated_best_checkpoint_is_one_line_before_export(wd: WorkDir) -> None:
    best = wd.models / "r1" / "best.pt"
    best.write_bytes(best.read_bytes()[:1000])
    code, lines = cli(wd, "export", "--run", "r1", "--force")
    line = error_line(lines)
    assert code == 1 and "best.pt is damaged" in line and "doctor" in line


def test_unfinished_run_is_not_exported(wd: WorkDir) -> None:
    (wd.models / "r1" / "summary.json").unlink()  # as a run that is still training, or was killed
    code, lines = cli(wd, "export", "--run", "r1", "--force")
    assert code == 1 and "has not finished training" in error_line(lines) and "--resume --run r1" in error_line(lines)


def test_empty_manifest_is_one_line(wd: WorkDir) -> None:
    (wd.code_version() / "manifest.json").write_text("{}")
    code, lines = cli(wd, "recommend", "--user", "u1")
    line = error_line(lines)
    assert code == 1 and "manifest.json lacks" in line and "'bits'" in line


def test_truncated_split_file_is_caught_before_use(wd: WorkDir) -> None:
    train = wd.split() / "train.parquet"
    train.write_bytes(train.read_bytes()[: train.stat().st_size // 2])
    code, lines = cli(wd, "train", "--run", "r2", "--epochs", "1")
    assert code == 1 and "train.parquet is damaged" in error_line(lines)
    assert not (wd.models / "r2" / "config.json").exists()


def test_rotated_codes_are_not_served(wd: WorkDir) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    items = wd.code_version() / "items.parquet"
    t = pq.read_table(items)
    codes = t.column("code").to_pylist()
    pq.write_table(t.set_column(t.schema.get_field_index("code"), "code", pa.array(codes[1:] + codes[:1], t.schema.field("code").type)), items)
    code, lines = cli(wd, "recommend", "--user", "u1")
    assert code == 1 and "items.parquet is damaged" in error_line(lines)


def test_empty_validation_split_fails_at_prepare(wd: WorkDir) -> None:
    code, lines = cli(wd, "prepare", "--kcore-user", "3", "--kcore-item", "3", "--train-ratio", "0.9", "--valid-ratio", "0.001")
    line = error_line(lines)
    assert code == 1 and "valid split came out empty" in line and "--valid-ratio" in line


def test_warehouse_open_elsewhere_is_one_line(wd: WorkDir, tmp_path: Path) -> None:
    code = f"import duckdb, time; c = duckdb.connect({str(wd.warehouse)!r}); print('open', flush=True); time.sleep(30)"
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "open"
        raw = tiny_raw_file(tmp_path, "more.csv")
        code_, lines = cli(wd, "ingest", str(raw), "--format", "csv", "--columns", "user=user_id,item=item_id")
        assert code_ == 1 and "open in another process" in error_line(lines)
    finally:
        other.kill()
        other.wait()


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(wd: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.stages.export as export_mod

    def bug(*args: object, **kwargs: object) -> None:
        raise TypeError("unsupported operand")

    monkeypatch.setattr(export_mod, "export", bug)
    code, lines = cli(wd, "export")
    assert code == 1 and "unexpected TypeError" in error_line(lines) and "--debug" in error_line(lines)
    result = CliRunner().invoke(app, ["export", "--debug", "--workdir", str(wd.root)])
    assert isinstance(result.exception, TypeError)


@pytest.mark.parametrize("name", ["../../x", "/tmp/elsewhere", "..", "a/b", ".hidden"])
def test_run_names_stay_inside_the_work_directory(wd: WorkDir, name: str) -> None:
    for args in (["train", "--run", name], ["export", "--run", name]):
        code, lines = cli(wd, *args)
        assert code == 1 and "plain name" in error_line(lines)
    with pytest.raises(InputError):
        wd.run(name)
    assert not (wd.root.parent / "x").exists()


def test_published_files_honour_the_umask(wd: WorkDir) -> None:
    from hqgnn.files import atomic_write_json, file_mode

    mask = os.umask(0o022)
    os.umask(mask)
    expected = 0o666 & ~mask
    assert file_mode() == expected
    for path in (wd.code_version() / "manifest.json", wd.split() / "manifest.json", wd.run("r1") / "config.json",
                 wd.run("r1") / "best.pt", wd.run("r1") / "summary.json"):
        assert path.stat().st_mode & 0o777 == expected, path
    atomic_write_json(wd.root / "x.json", {})
    assert (wd.root / "x.json").stat().st_mode & 0o777 == expected


# ---- 3. verified reads and doctor ---------------------------------------------------------------


def test_hashes_are_computed_once_per_process(wd: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.integrity as integrity

    calls: list[Path] = []
    real = integrity.file_sha256
    monkeypatch.setattr(integrity, "file_sha256", lambda p: calls.append(p) or real(p))
    integrity.clear_hash_cache()
    integrity.verify_split(wd.split())
    first = len(calls)
    integrity.verify_split(wd.split())
    assert first == 5 and len(calls) == first  # second read: no hashing
    (wd.split() / "users.parquet").write_bytes((wd.split() / "users.parquet").read_bytes())  # rewritten: new mtime
    integrity.verify_split(wd.split())
    assert len(calls) == first + 1


def test_doctor_reports_then_repairs_without_losing_data(wd: WorkDir) -> None:
    from flows.runs import RunRecord, record_run, running_runs
    from flows.stages.export import export

    old = wd.code_version()
    export(wd, ExportConfig(run="r1", force=True))  # a second published version; `old` stays on disk
    new = wd.code_version()
    assert new != old
    (new / "users.parquet").write_bytes(b"PAR1 garbage")  # the published version is damaged
    split = wd.split()
    (split / "test.parquet").write_bytes((split / "test.parquet").read_bytes()[:100])  # so is the snapshot
    (wd.models / ".last.pt.abc.tmp").write_bytes(b"x" * 100)  # debris of a killed command
    (wd.splits / ".1234.tmp").mkdir()
    from datetime import UTC, datetime

    record_run(wd.warehouse, RunRecord("killed-run", "witty-turtle", "running", datetime.now(UTC), {}))

    code, lines = cli(wd, "doctor")
    assert code == 1
    text = "\n".join(lines)
    for what in ("debris", "snapshot", "codes", "pointer", "runs"):
        assert f"problem   {what}" in text, text
    assert (new / "users.parquet").read_bytes() == b"PAR1 garbage"  # a check changes nothing

    code, lines = cli(wd, "doctor", "--repair")
    text = "\n".join(lines)
    assert "rebuilt from the warehouse" in text and f"now points at {old.name}" in text and "marked abandoned" in text
    assert wd.code_version() == old and (wd.codes / "current-1bit").resolve() == old
    assert not list(wd.root.rglob(".*.tmp")) and running_runs(wd.warehouse) == []
    assert new.is_dir()  # the damaged version is kept (nothing deleted but debris)
    # the damaged code version cannot be rebuilt here: reported, exit 1
    assert code == 1 and "still     codes" in text
    shutil.rmtree(new)
    code, lines = cli(wd, "doctor")
    assert code == 0 and lines[-1].endswith("is healthy"), lines


def test_rolled_back_space_is_reclaimed(wd: WorkDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb

    import flows.stages.ingest as ingest_mod

    checkpoints: list[object] = []
    real = ingest_mod.reclaim_space
    monkeypatch.setattr(ingest_mod, "reclaim_space", lambda con: (checkpoints.append(con), real(con)))
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id\n")  # no rows: the ingest fails and rolls back
    code, lines = cli(wd, "ingest", str(bad), "--format", "csv")
    assert code == 1 and len(checkpoints) == 1  # a failed ingest checkpoints after its rollback

    con = duckdb.connect(str(wd.warehouse))
    (rows,), = con.sql("select count(*) from raw").fetchall()
    con.execute("create table big (a bigint, b varchar)")
    con.execute("checkpoint")
    con.begin()  # rolled-back work, as a killed or failed ingest of a large file leaves it
    con.execute("insert into big select i, repeat('x', 50) || i from range(3000000) t(i)")
    con.rollback()
    con.execute("checkpoint")
    con.close()
    grown = wd.warehouse.stat().st_size
    code, lines = cli(wd, "doctor", "--no-contracts")
    assert code == 1 and any(line.startswith("problem   space") for line in lines), lines
    code, lines = cli(wd, "doctor", "--repair", "--no-contracts")
    assert code == 0 and any("compacted" in line for line in lines), lines
    assert wd.warehouse.stat().st_size < grown / 4
    con = duckdb.connect(str(wd.warehouse), read_only=True)
    assert con.sql("select count(*) from raw").fetchall() == [(rows,)]
    con.close()


def test_interrupted_publication_is_finished(wd: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.publish as publish
    from flows.stages.export import export

    old = wd.code_version()
    real = publish.switch_pointer
    calls: list[Path] = []

    def die_before_current(pointer: Path, target: Path) -> None:
        calls.append(pointer)
        if pointer.name == "current":
            raise KeyboardInterrupt  # stands for kill -9 between the two switches
        real(pointer, target)

    monkeypatch.setattr(publish, "switch_pointer", die_before_current)
    with pytest.raises(KeyboardInterrupt):
        export(wd, ExportConfig(run="r1", force=True))
    monkeypatch.setattr(publish, "switch_pointer", real)
    assert wd.code_version() == old and (wd.codes / "current-1bit").resolve() != old  # inconsistent now
    code, lines = cli(wd, "doctor", "--repair", "--no-contracts")
    assert code == 0 and any("finished the interrupted publication" in line for line in lines), lines
    assert wd.code_version() == (wd.codes / "current-1bit").resolve() != old


def test_unfinished_run_of_the_same_inputs_is_resumed(wd: WorkDir) -> None:
    from flows.stages.train import unfinished_run

    pinned = TrainConfig(**TRAIN, snapshot=wd.split().name)
    run = wd.models / "killed"
    run.mkdir()
    meta = json.loads((wd.models / "r1" / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**meta, "run": "killed", "config": pinned.model_dump(mode="json")}))
    assert unfinished_run(wd, pinned) == "killed"
    assert unfinished_run(wd, pinned.model_copy(update={"seed": 1})) is None  # other inputs: a new run
    (run / "summary.json").write_text("{}")
    assert unfinished_run(wd, pinned) is None  # finished runs are not resumed


def test_unfinished_warm_run_is_resumed(wd: WorkDir) -> None:
    """A warm run stores its config pinned (parent named, warm schedule applied): the pipeline's
    unpinned config still finds it."""
    from flows.stages.train import pin_warm_start, unfinished_run

    warm = TrainConfig(**TRAIN, snapshot=wd.split().name, init_from="latest", warm_epochs=1, warm_lr=1e-3)
    stored = pin_warm_start(wd, warm)
    assert (stored.init_from, stored.epochs) == ("r1", 1)  # what a killed warm run's config.json holds
    run = wd.models / "killed-warm"
    run.mkdir()
    meta = json.loads((wd.models / "r1" / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**meta, "run": run.name, "config": stored.model_dump(mode="json")}))
    assert unfinished_run(wd, warm) == "killed-warm"
    assert unfinished_run(wd, warm.model_copy(update={"warm_epochs": 2})) is None  # another warm schedule: a new run


# ---- 4. kill -9 at planted and random moments (real subprocesses) --------------------------------


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - fault_harness.References
    from fault_harness import build_references

    return build_references(tmp_path_factory.mktemp("fault-refs"))


@pytest.mark.parametrize(("stage", "fault"), [
    ("export", "replace:current:1"),  # between the two pointer switches
    ("train", "torn:last.pt:2"),  # mid-checkpoint: last.pt half written, then killed
])
def test_kill_at_a_planted_moment(refs, stage: str, fault: str, tmp_path: Path) -> None:  # noqa: ANN001
    from fault_harness import kill_cycle

    cycle = kill_cycle(refs, stage, fault, tmp_path)
    assert cycle.killed and cycle.violations == []


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["ingest", "prepare", "train", "export"])
def test_kill_at_a_seeded_random_moment(refs, stage: str, tmp_path: Path) -> None:  # noqa: ANN001
    from fault_harness import faults_for, kill_cycle

    rng = random.Random(f"issue-17-{stage}")
    fault = faults_for(stage, refs, rng)
    cycle = kill_cycle(refs, stage, fault, tmp_path)
    assert cycle.violations == [], (fault, cycle.violations)


@pytest.mark.slow
@pytest.mark.prefect
def test_killed_hqgnn_run_leaves_no_server_and_resumes_training(tmp_path: Path) -> None:
    """SIGKILL `hqgnn run` mid-training: Prefect's temporary server dies with it, the rerun
    marks the killed run abandoned and continues the killed training run from its last.pt."""
    import psutil
    import yaml
    from pipeline_checks import tiny_params

    config = tmp_path / "run.yaml"
    params = tiny_params(tiny_raw_file(tmp_path / "raw"))
    params["train"]["epochs"] = 6
    config.write_text(yaml.safe_dump({k: v for k, v in params.items()}))
    wd = WorkDir(tmp_path / "w")
    cmd = [sys.executable, "-m", "fault_inject", "run", "--config", str(config), "--workdir", str(wd.root)]
    e = env()
    e["HQGNN_FAULT"] = "call:hqgnn.trainer:Trainer.save:3"  # after the 3rd epoch's checkpoint... is written next
    proc = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    servers: set[int] = set()
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):  # the process may end between the calls
            servers |= {c.pid for c in psutil.Process(proc.pid).children(recursive=True) if "uvicorn" in " ".join(c.cmdline())}
        time.sleep(0.2)
    assert proc.returncode == -9, proc.stderr.read() if proc.stderr else ""
    assert servers, "no ephemeral Prefect server was seen"
    deadline = time.time() + 10
    while time.time() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in servers):
        time.sleep(0.2)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in servers), "the server outlived hqgnn run"
    (killed,) = [p for p in wd.models.iterdir() if not p.is_symlink()]
    assert (killed / "last.pt").is_file() and not (killed / "summary.json").exists()

    rerun = subprocess.run([sys.executable, "-m", "flows.cli", "run", "--config", str(config), "--workdir", str(wd.root)],
                           env=env(), capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming" in rerun.stderr
    assert [p for p in wd.models.iterdir() if not p.is_symlink()] == [killed]  # no new run: the killed one continued
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["epochs_run"] == 6
    import duckdb

    con = duckdb.connect(str(wd.warehouse), read_only=True)
    statuses = sorted(r[0] for r in con.sql("select status from runs").fetchall())
    con.close()
    assert statuses == ["abandoned", "completed"]
