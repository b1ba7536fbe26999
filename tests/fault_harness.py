"""Kill a real ``hqgnn`` subprocess inside a stage, check the invariants, recover, compare.

One cycle (:func:`kill_cycle`): copy the work directory as it stood before the stage (a
reference built once by :func:`build_references`), run the stage's command with a fault planted
(:mod:`fault_inject`), then assert

1. the warehouse's raw rows are unchanged or complete (never partial, never duplicated);
2. every pointer resolves to a version whose files match its manifest (:mod:`flows.integrity`);
3. ``hqgnn doctor`` finds nothing it cannot repair, and after ``--repair`` nothing at all;
4. rerunning the stage (``train --resume`` when the killed run exists) completes and gives what
   the uninterrupted reference run gave (raw row count, snapshot files, best epoch and metrics,
   published code files).

Shared by ``tests/code/test_faults.py`` and ``bench/fault_injection.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from flows.integrity import verify_code_version, verify_run, verify_split
from flows.workdir import WorkDir, file_sha256
from hqgnn.synthetic import SyntheticSpec, write_interactions

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = "user=user_id,item=item_id,timestamp=timestamp,rating=rating"
CONFIG = """\
prepare: {kcore_user: 3, kcore_item: 3}
train: {epochs: 3, dim: 16, batch_size: 128, device: cpu, hutchinson_samples: 2, hutchinson_batches: 1}
"""
# ~12 k rows: ingest and prepare last long enough (a second or two) to be killed inside them
SPEC = SyntheticSpec(num_users=400, num_items=200, mean_events_per_user=30, min_events_per_user=12, bad_rows=4, seed=5)
STAGES = ("ingest", "prepare", "train", "export")
BEFORE = {"ingest": "empty", "prepare": "ingest", "train": "prepare", "export": "train"}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), e.get("PYTHONPATH", "")])
    e.update({"DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "False", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
              "OMP_NUM_THREADS": "1", "HQGNN_DUCKDB_THREADS": "1"})
    return e


def command(stage: str, raw: Path, config: Path) -> list[str]:
    return {
        "ingest": ["ingest", str(raw), "--format", "csv", "--columns", COLUMNS],
        "prepare": ["prepare", "--config", str(config)],
        "train": ["train", "--config", str(config), "--run", "r1"],
        "export": ["export", "--run", "r1"],
    }[stage]


def hqgnn(wd: Path, args: list[str], fault: str = "none:", clock: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``hqgnn ARGS --workdir WD`` in a subprocess, with ``fault`` planted."""
    e = env()
    e["HQGNN_FAULT"] = fault
    if clock is not None:
        e["HQGNN_FAULT_CLOCK"] = str(clock)
    return subprocess.run([sys.executable, "-m", "fault_inject", *args, "--workdir", str(wd)], env=e, cwd=wd.parent,
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class References:
    """Work directories after each stage of an uninterrupted run, and what each stage produced."""

    root: Path
    raw: Path
    config: Path
    dirs: dict[str, Path] = field(default_factory=dict)  # "empty", "ingest", "prepare", "train", "export"
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> its duration after imports
    expected: dict[str, Any] = field(default_factory=dict)


def build_references(root: Path) -> References:
    """Run ingest -> prepare -> train -> export once, keeping a copy of the work directory after each."""
    root.mkdir(parents=True, exist_ok=True)
    raw = write_interactions(root / "log.csv", SPEC)
    config = root / "config.yaml"
    config.write_text(CONFIG)
    refs = References(root, raw, config)
    wd = root / "ref" / "w"
    wd.mkdir(parents=True)
    refs.dirs["empty"] = _snapshot_copy(wd, root / "after-empty")
    for stage in STAGES:
        clock = root / f"{stage}.clock"
        done = hqgnn(wd, command(stage, raw, config), clock=clock)
        assert done.returncode == 0, f"reference {stage} failed: {done.stderr[-2000:]}"
        refs.seconds[stage] = float(clock.read_text())
        refs.dirs[stage] = _snapshot_copy(wd, root / f"after-{stage}")
        refs.expected[stage] = outcome(stage, WorkDir(wd))
    return refs


def _snapshot_copy(wd: Path, dest: Path) -> Path:
    shutil.copytree(wd, dest / "w", symlinks=True)
    return dest / "w"


def outcome(stage: str, wd: WorkDir) -> Any:
    """What a completed stage produced, in a form two runs can be compared by."""
    if stage == "ingest":
        return raw_counts(wd)
    if stage == "prepare":
        split = wd.split()
        return split.name, {f: file_sha256(split / f) for f in ("train.parquet", "valid.parquet", "test.parquet", "users.parquet", "items.parquet")}
    if stage == "train":
        s = json.loads((wd.models / "r1" / "summary.json").read_text())
        return s["best_epoch"], s["epochs_run"], s["best_valid"]
    codes = wd.code_version()
    return {f: file_sha256(codes / f) for f in ("users.parquet", "items.parquet")}


def raw_counts(wd: WorkDir) -> tuple[int, int, int]:
    """(raw rows, distinct raw rows by batch and position, batches); zeros before the first ingest."""
    if not wd.warehouse.is_file():
        return 0, 0, 0
    con = duckdb.connect(str(wd.warehouse), read_only=True)
    try:
        tables = {r[0] for r in con.sql("select table_name from information_schema.tables").fetchall()}
        if "raw" not in tables:
            return 0, 0, 0
        (n, distinct), = con.sql("select count(*), count(distinct (batch_id, seq)) from raw").fetchall()
        (b,), = con.sql("select count(*) from batches").fetchall()
        return int(n), int(distinct), int(b)
    finally:
        con.close()


def invariant_violations(wd: WorkDir, before: tuple[int, int, int], complete: tuple[int, int, int]) -> list[str]:
    """Invariants 1-3 of the module doc, as a list of violations (empty: all hold). Runs doctor's repair."""
    from flows.doctor import examine, repair

    bad: list[str] = []
    counts = raw_counts(wd)
    if counts not in (before, complete):
        bad.append(f"raw rows {counts} are neither the rows before {before} nor the complete ones {complete}")
    if counts[0] != counts[1]:
        bad.append(f"raw rows duplicated: {counts[0]} rows, {counts[1]} distinct")
    pointers = [(wd.splits / "current", verify_split), (wd.models / "latest", verify_run), (wd.codes / "current", verify_code_version)]
    pointers += [(p, verify_code_version) for p in sorted(wd.codes.glob("current-*bit"))] if wd.codes.is_dir() else []
    for pointer, verify in pointers:
        if pointer.is_symlink() or pointer.exists():
            try:
                verify(pointer.resolve())
            except Exception as e:  # any failure is a violation to report, with its message
                bad.append(f"{pointer} -> {pointer.resolve().name}: {e}")
    report = examine(wd, contracts=False)
    bad += [f"doctor cannot repair: {f.line()}" for f in report.unrepairable]
    if report.problems:
        repair(wd, report)
        after = examine(wd, contracts=False)
        bad += [f"doctor left: {f.line()}" for f in after.problems]
    current, width = wd.codes / "current", wd.codes / "current-1bit"
    if current.is_symlink() and width.is_symlink() and current.resolve() != width.resolve():
        bad.append(f"codes/current ({current.resolve().name}) and codes/current-1bit ({width.resolve().name}) disagree after doctor")
    return bad


@dataclass
class Cycle:
    """One kill: where, whether the process died by it, and the invariant violations found."""

    stage: str
    fault: str
    killed: bool
    violations: list[str]
    seconds: float


def kill_cycle(refs: References, stage: str, fault: str, work: Path) -> Cycle:
    """Copy the state before ``stage``, run it with ``fault``, check, recover, compare (module doc)."""
    t0 = time.perf_counter()
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(refs.dirs[BEFORE[stage]], work / "w", symlinks=True)
    wd = WorkDir(work / "w")
    before = raw_counts(wd)
    killed_run = hqgnn(wd.root, command(stage, refs.raw, refs.config), fault=fault)
    killed = killed_run.returncode == -9
    violations: list[str] = []
    if not killed and killed_run.returncode != 0:
        violations.append(f"{stage} failed without being killed: {killed_run.stderr.strip()[-500:]}")
    violations += invariant_violations(wd, before, refs.expected["ingest"])
    args = command(stage, refs.raw, refs.config)
    if stage == "train" and (wd.models / "r1" / "config.json").is_file():
        args = [*args, "--resume"]
    rerun = hqgnn(wd.root, args)
    if rerun.returncode != 0:
        violations.append(f"rerun of {stage} failed: {rerun.stderr.strip()[-500:]}")
    else:
        got = outcome(stage, wd)
        if got != refs.expected[stage]:
            violations.append(f"rerun of {stage} differs from the uninterrupted run: {got} != {refs.expected[stage]}")
    return Cycle(stage, fault, killed, violations, time.perf_counter() - t0)


def faults_for(stage: str, refs: References, rng: Any) -> str:
    """A seeded random fault inside ``stage``: mostly a random moment, else one of the stage's named moments."""
    named = {
        "ingest": ["call:flows.stages.ingest:_ingest_file:1"],
        "prepare": ["call:flows.stages.prepare:_write_snapshot:1", "replace:manifest.json:1", "replace:current:1"],
        "train": ["call:hqgnn.trainer:Trainer.step:{k}", "torn:last.pt:{n}", "torn:best.pt:1", "replace:summary.json:1"],
        "export": ["replace:current-1bit:1", "replace:current:1", "call:flows.stages.export:_validate:1"],
    }[stage]
    if rng.random() < 0.5:  # within 70 % of the reference duration: the load of a shared machine varies
        return f"delay:{rng.uniform(0.0, 0.7 * refs.seconds[stage]):.3f}"
    pick = named[rng.randrange(len(named))]
    return pick.format(k=rng.randrange(1, 25), n=rng.randrange(1, 3))
