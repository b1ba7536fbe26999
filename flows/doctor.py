"""``hqgnn doctor [--repair]``: check a whole work directory, repair what can be repaired without losing data.

Checks, in order (each problem is one :class:`Finding`, printed as one line):

1. **debris** — temporary files and folders a killed command left (``.*.tmp``, ``.<name>.old.<pid>``,
   DuckDB spill files in ``.duckdb-tmp/``). Repair: delete them.
2. **interrupted publication** — ``codes/.publish.json`` (a kill between the two pointer switches
   of ``export``). Repair: finish the switch (:func:`flows.publish.finish_interrupted_publish`).
3. **versions** — every ``splits/<snapshot>/``, ``codes/<version>/`` and finished ``models/<run>/``
   against its manifest (:mod:`flows.integrity`). Repair: a damaged snapshot is rebuilt from the
   warehouse by ``prepare`` with its manifest's config when the warehouse still holds exactly its
   source batches; a damaged code version or run cannot be rebuilt here (re-export / retrain).
4. **pointers** — ``splits/current``, ``models/latest``, ``codes/current``, ``codes/current-<b>bit``
   resolve to an intact version, and ``current`` agrees with ``current-<b>bit`` of its width.
   Repair: point a pointer whose target is gone or damaged back at the newest intact version
   (codes: the newest intact one of the same width that passed the gate); ``current-<b>bit``
   follows ``current`` (what readers are served) when they disagree.
5. **contracts** — the data contracts of what ``splits/current`` and ``codes/current`` point at.
6. **runs** — rows of the ``runs`` table left ``running`` (doctor holds the lock, so no run is
   alive). Repair: mark them ``abandoned``.
7. **warehouse space** — more than 16 MB (and a quarter of the file) held by rolled-back work
   (a killed or failed ingest on a full disk). Repair: rewrite the file without it
   (:func:`flows.warehouse.compact`); failed commands also CHECKPOINT, which lets DuckDB reuse it.

Unfinished training runs (killed before ``summary.json``) are reported as notes, not problems:
``hqgnn train --resume --run RUN`` (or the next ``hqgnn run`` with the same inputs) continues them.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.errors import HqgnnError
from flows.integrity import clear_hash_cache, verify_code_version, verify_run, verify_split
from flows.publish import JOURNAL, finish_interrupted_publish, width_pointer
from flows.workdir import WorkDir, switch_pointer

DEBRIS = re.compile(r"^\..+(\.tmp|\.old\.\d+)$")


@dataclass
class Finding:
    """One problem (or note): what is wrong, where, and the repair (None: cannot be repaired here)."""

    kind: str
    path: Path
    problem: str
    repair: Callable[[], str] | None = None
    note: bool = False  # informational: not a problem
    outcome: str | None = None  # what the repair did, once run

    def line(self) -> str:
        if self.note:
            return f"note      {self.kind}: {self.path}: {self.problem}"
        if self.outcome is not None:
            return f"repaired  {self.kind}: {self.path}: {self.problem} -> {self.outcome}"
        how = "repairable with --repair" if self.repair else "cannot be repaired here"
        return f"problem   {self.kind}: {self.path}: {self.problem} ({how})"


@dataclass
class Report:
    """Every finding of one doctor pass."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.note and f.outcome is None]

    @property
    def unrepairable(self) -> list[Finding]:
        return [f for f in self.problems if f.repair is None]


def examine(wd: WorkDir, contracts: bool = True) -> Report:
    """Check ``wd`` (read-only); the caller holds the work directory's lock."""
    clear_hash_cache()  # doctor re-hashes everything
    report = Report()
    report.findings += _debris(wd)
    report.findings += _journal(wd)
    damaged = _versions(wd, report)
    report.findings += _pointers(wd, damaged)
    if contracts:
        report.findings += _contracts(wd, damaged)
    report.findings += _runs(wd)
    report.findings += _warehouse_space(wd)
    return report


def repair(wd: WorkDir, report: Report) -> Report:
    """Run the repair of every repairable problem in order, recording each outcome; then examine again."""
    for f in report.findings:
        if f.repair is not None and not f.note:
            try:
                f.outcome = f.repair()
            except (HqgnnError, OSError, ValueError) as e:
                f.outcome = f"FAILED: {e}"
    return report


# ---- 1. debris ---------------------------------------------------------------------------------


def _debris(wd: WorkDir) -> list[Finding]:
    found: list[Finding] = []
    if not wd.root.is_dir():
        return found
    for path in sorted(_walk(wd.root)):
        if DEBRIS.match(path.name):
            found.append(Finding("debris", path, "left by a killed or failed command", _remover(path)))
    spill = wd.root / ".duckdb-tmp"
    if spill.is_dir():
        for path in sorted(spill.iterdir()):
            found.append(Finding("debris", path, "DuckDB spill file of a killed command", _remover(path)))
    return found


def _walk(root: Path) -> list[Path]:
    """Every entry under ``root`` without following symlinks; debris folders are not entered."""
    out: list[Path] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for p in entries:
            out.append(p)
            if p.is_dir() and not p.is_symlink() and not DEBRIS.match(p.name) and p.name != ".duckdb-tmp":
                stack.append(p)
    return out


def _remover(path: Path) -> Callable[[], str]:
    def remove() -> str:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        return "deleted"

    return remove


# ---- 2. interrupted publication ---------------------------------------------------------------


def _journal(wd: WorkDir) -> list[Finding]:
    journal = wd.codes / JOURNAL
    if not journal.exists():
        return []
    return [Finding("publish", journal, "an export was killed between its two pointer switches",
                    lambda: finish_interrupted_publish(wd) or "nothing left to do")]


# ---- 3. versions -------------------------------------------------------------------------------


def _folders(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))


def _versions(wd: WorkDir, report: Report) -> set[Path]:
    """Check every version folder; returns the damaged ones (resolved paths)."""
    damaged: set[Path] = set()
    for snap in _folders(wd.splits):
        try:
            verify_split(snap)
        except HqgnnError as e:
            damaged.add(snap.resolve())
            report.findings.append(Finding("snapshot", snap, str(e), _snapshot_rebuilder(wd, snap)))
    for version in _folders(wd.codes):
        try:
            verify_code_version(version)
        except HqgnnError as e:
            damaged.add(version.resolve())
            report.findings.append(Finding("codes", version, f"{e}; re-export its run with `hqgnn export --run RUN`", None))
    for run in _folders(wd.models):
        try:
            summary = verify_run(run)
        except HqgnnError as e:
            damaged.add(run.resolve())
            report.findings.append(Finding("run", run, f"{e}; retrain it (`hqgnn train`)", None))
            continue
        if not summary:
            report.findings.append(Finding("run", run, f"unfinished (killed?): `hqgnn train --resume --run {run.name}` continues it", note=True))
    return damaged


def _snapshot_rebuilder(wd: WorkDir, snap: Path) -> Callable[[], str] | None:
    """Rebuild ``snap`` with ``prepare`` if its manifest names a config and the warehouse still
    holds exactly its source batches (the same snapshot id); else None."""
    try:
        manifest = json.loads((snap / "manifest.json").read_text())
        from flows.config import PrepareConfig
        from flows.stages.prepare import snapshot_id

        cfg = PrepareConfig(**manifest["config"])
        sources = _warehouse_sources(wd)
    except (OSError, ValueError, KeyError, TypeError, HqgnnError):
        return None
    if sources is None or snapshot_id(cfg, sources) != snap.name:
        return None

    def rebuild() -> str:
        from flows.stages.prepare import prepare

        prepare(wd, cfg, switch_current=False)
        verify_split(snap)
        return "rebuilt from the warehouse (prepare with the manifest's config)"

    return rebuild


def _warehouse_sources(wd: WorkDir) -> list[dict[str, Any]] | None:
    if not wd.warehouse.is_file():
        return None
    import duckdb

    from flows.warehouse import connect, query

    with connect(wd.warehouse, read_only=True) as con:
        try:
            rel = query(con, "splits/probes/source_batches")
            cols, rows = rel.columns, rel.fetchall()
        except duckdb.CatalogException:
            return None
    return [dict(zip(cols, r, strict=True)) for r in rows]


# ---- 4. pointers -------------------------------------------------------------------------------


def _created(path: Path, name: str) -> str:
    try:
        return str(json.loads((path / name).read_text()).get("created_at") or json.loads((path / name).read_text()).get("created") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _newest_intact(candidates: list[Path], damaged: set[Path], stamp: Callable[[Path], str],
                   ok: Callable[[Path], bool] = lambda p: True) -> Path | None:
    good = [p for p in candidates if p.resolve() not in damaged and ok(p)]
    return max(good, key=lambda p: (stamp(p), p.name)) if good else None


def _pointer_finding(kind: str, pointer: Path, damaged: set[Path], target: Path | None, verify: Callable[[Path], Any],
                     rebuilding: bool = False) -> Finding | None:
    """A finding when ``pointer`` is dangling or its target damaged; repair: switch to ``target``."""
    if not pointer.is_symlink() and not pointer.exists():
        return None  # never created: nothing published yet
    resolved = pointer.resolve()
    if resolved.is_dir() and resolved not in damaged:
        return None
    if resolved.is_dir() and rebuilding:
        return None  # its snapshot is rebuilt in place
    problem = f"points at {resolved.name}, which is {'damaged' if resolved.is_dir() else 'missing'}"
    if target is None:
        return Finding(kind, pointer, problem + "; no intact version to point at instead", None)

    def switch() -> str:
        verify(target)
        switch_pointer(pointer, target)
        return f"now points at {target.name}"

    return Finding(kind, pointer, problem, switch)


def _pointers(wd: WorkDir, damaged: set[Path]) -> list[Finding]:
    out: list[Finding] = []
    snaps = _folders(wd.splits)
    rebuilt = {snap.resolve() for snap in snaps if snap.resolve() in damaged and _snapshot_rebuilder(wd, snap) is not None}
    current_split = wd.splits / "current"
    f = _pointer_finding("pointer", current_split, damaged, _newest_intact(snaps, damaged, lambda p: _created(p, "manifest.json")),
                         verify_split, rebuilding=current_split.resolve() in rebuilt)
    out += [f] if f else []

    runs = _folders(wd.models)
    finished = lambda p: (p / "summary.json").is_file()  # noqa: E731
    f = _pointer_finding("pointer", wd.models / "latest", damaged,
                         _newest_intact(runs, damaged, lambda p: _created(p, "config.json"), finished), verify_run)
    out += [f] if f else []

    versions = _folders(wd.codes)

    def published(bits: int | None) -> Callable[[Path], bool]:
        def ok(p: Path) -> bool:
            try:
                m = json.loads((p / "manifest.json").read_text())
                return bool(m["gate"]["passed"]) and (bits is None or int(m["bits"]) == bits)
            except (OSError, ValueError, KeyError, TypeError):
                return False
        return ok

    def stamp(p: Path) -> str:
        return _created(p, "manifest.json")

    width_pointers = sorted(wd.codes.glob("current-*bit")) if wd.codes.is_dir() else []
    for pointer in width_pointers:
        try:
            bits = int(pointer.name.removeprefix("current-").removesuffix("bit"))
        except ValueError:
            continue
        f = _pointer_finding("pointer", pointer, damaged, _newest_intact(versions, damaged, stamp, published(bits)), verify_code_version)
        out += [f] if f else []
    current = wd.codes / "current"
    bits_of_current = _bits(current)
    f = _pointer_finding("pointer", current, damaged,
                         _newest_intact(versions, damaged, stamp, published(bits_of_current)), verify_code_version)
    out += [f] if f else []
    if f is None and current.is_symlink() and bits_of_current is not None and not (wd.codes / JOURNAL).exists():
        width = width_pointer(wd, bits_of_current)
        if not width.is_symlink() or width.resolve() != current.resolve():
            target = current.resolve()
            def repair(width: Path = width, target: Path = target) -> str:
                switch_pointer(width, target)
                return f"now points at {target.name}"

            out.append(Finding("pointer", width, f"disagrees with codes/current ({target.name})", repair))
    return out


def _bits(pointer: Path) -> int | None:
    try:
        return int(json.loads((pointer / "manifest.json").read_text())["bits"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---- 5. contracts ------------------------------------------------------------------------------


def _contracts(wd: WorkDir, damaged: set[Path]) -> list[Finding]:
    from flows.errors import DataContractError

    out: list[Finding] = []
    split = wd.splits / "current"
    if split.is_dir() and split.resolve() not in damaged:
        from flows.contracts import validate_splits

        manifest = json.loads((split / "manifest.json").read_text())
        try:
            validate_splits(split.resolve(), {"num_users": manifest["num_users"], "num_items": manifest["num_items"]})
        except DataContractError as e:
            out.append(Finding("contract", split.resolve(), str(e).splitlines()[0], None))
    codes = wd.codes / "current"
    if codes.is_dir() and codes.resolve() not in damaged:
        from flows.code_versions import contract_params, side_bits
        from flows.contracts import validate

        m = json.loads((codes / "manifest.json").read_text())
        for kind, file in (("user", "users.parquet"), ("item", "items.parquet")):
            try:
                validate(f"{kind}_codes", codes / file, contract_params(kind, int(m[f"num_{kind}s"]), side_bits(m)[kind], int(m["dim"])))
            except DataContractError as e:
                out.append(Finding("contract", codes.resolve() / file, str(e).splitlines()[0], None))
    return out


# ---- 6. runs table -----------------------------------------------------------------------------


def _runs(wd: WorkDir) -> list[Finding]:
    from flows.runs import abandon_runs, running_runs

    rows = running_runs(wd.warehouse)
    if not rows:
        return []
    names = ", ".join(f"{name} ({run_id}, started {started:%Y-%m-%d %H:%M})" for run_id, name, started in rows)
    return [Finding("runs", wd.warehouse, f"{len(rows)} run(s) left `running` by a killed process: {names}",
                    lambda: f"marked abandoned: {', '.join(abandon_runs(wd.warehouse))}")]


# ---- 7. warehouse space ------------------------------------------------------------------------

COMPACT_MIN_BYTES = 16 << 20


def _warehouse_space(wd: WorkDir) -> list[Finding]:
    from flows.warehouse import compact, free_bytes

    if not wd.warehouse.is_file():
        return []
    unused, size = free_bytes(wd.warehouse)
    if unused < COMPACT_MIN_BYTES or unused < size // 4:
        return []

    def run() -> str:
        before, after = compact(wd.warehouse)
        return f"compacted: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB"

    return [Finding("space", wd.warehouse, f"{unused / 1e6:.1f} MB of {size / 1e6:.1f} MB held by rolled-back work", run)]
