"""`hqgnn versions` and `hqgnn rollback`: the code versions on disk, and switching back to one.

- :func:`list_versions`: every ``codes/<version>/`` with a manifest, oldest first: width, run,
  snapshot, gate verdict (the manifest's ``gate`` record), its metric, and which pointers
  (``current``, ``current-<b>bit``) name it. A version is *published* when the gate passed
  (or a pointer names it).
- :func:`rollback`: re-checks the target (hashes + code contracts,
  :func:`flows.code_versions.check_code_version`), then switches ``current-<b>bit`` and
  ``current`` to it (each an atomic symlink rename, in export's order), and records a row in
  the warehouse ``runs`` table. Without ``--to``: the newest published version of the same
  width older than the current one. A running `hqgnn serve` picks the change up by itself.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from flows.code_versions import check_code_version, version_manifest
from flows.errors import HqgnnError, InputError
from flows.publish import publish_version
from flows.runs import RunRecord, record_run
from flows.serving.swap import pointer_target
from flows.workdir import WorkDir


@dataclass(frozen=True)
class VersionInfo:
    """One row of `hqgnn versions`."""

    version: str
    created_at: str
    bits: int
    dim: int
    run: str | None
    snapshot: str | None
    gate_passed: bool | None
    gate_reason: str | None
    metric: str | None
    value: float | None
    pointers: tuple[str, ...]  # "current", "current-1bit", ...
    user_bits: int = -1  # 32: float users (a float_users run); else ``bits``

    @property
    def published(self) -> bool:
        return bool(self.gate_passed) or bool(self.pointers)


def _pointers(workdir: WorkDir) -> dict[Path, list[str]]:
    """Target folder -> names of the pointers (``current``, ``current-<b>bit``) naming it."""
    out: dict[Path, list[str]] = {}
    if not workdir.codes.is_dir():
        return out
    for p in sorted(workdir.codes.iterdir()):
        if p.is_symlink() and (p.name == "current" or (p.name.startswith("current-") and p.name.endswith("bit"))):
            target = pointer_target(p)
            if target is not None:
                out.setdefault(target, []).append(p.name)
    return out


def list_versions(workdir: WorkDir) -> list[VersionInfo]:
    """Every code version folder with a readable manifest, oldest first (by ``created_at``)."""
    pointers = _pointers(workdir)
    rows = []
    folders = sorted(workdir.codes.iterdir()) if workdir.codes.is_dir() else []
    for folder in folders:
        if folder.is_symlink() or not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            m = version_manifest(folder)
        except InputError:
            continue  # not a version folder (or a broken one: `hqgnn doctor` reports those)
        gate: dict[str, Any] = m.get("gate") or {}
        rows.append(VersionInfo(
            version=folder.name, created_at=str(m.get("created_at", "")), bits=int(m.get("bits", -1)),
            dim=int(m.get("dim", -1)), run=m.get("run"), snapshot=m.get("snapshot"),
            gate_passed=gate.get("passed"), gate_reason=gate.get("reason"), metric=gate.get("metric"),
            value=gate.get("value"), pointers=tuple(pointers.get(folder.resolve(), [])),
            user_bits=int(m.get("user_bits", m.get("bits", -1))),
        ))
    return sorted(rows, key=lambda r: (r.created_at, r.version))


def print_versions(rows: list[VersionInfo]) -> None:
    """Tab-separated table on standard output (one line per version, oldest first)."""
    print("version\tbits\tdim\tpublished\tgate\tmetric\tvalue\tcurrent\trun\tusers")
    for r in rows:
        gate = "n/a" if r.gate_passed is None else ("passed" if r.gate_passed else "refused")
        value = "" if r.value is None else f"{r.value:.4f}"
        print(f"{r.version}\t{r.bits}\t{r.dim}\t{'yes' if r.published else 'no'}\t{gate}\t"
              f"{r.metric or ''}\t{value}\t{','.join(r.pointers) or '-'}\t{r.run or ''}\t"
              f"{'float32' if r.user_bits == 32 and r.bits != 32 else 'codes'}")


def rollback_target(workdir: WorkDir, to: str | None) -> Path:
    """The folder to switch to: ``to``, or the newest published version of the current width (and
    user width: float users or user codes, so users.parquet keeps its schema) created before the
    current one. InputError naming what is missing."""
    if to is not None:
        folder = workdir.codes / to
        if to in ("current", "") or "/" in to or to.startswith(".") or not folder.is_dir() or folder.is_symlink():
            raise InputError(f"--to {to!r}: no code version folder {folder} (list them with `hqgnn versions`)")
        gate = version_manifest(folder).get("gate") or {}
        if gate.get("passed") is False and not _ever_pointed(workdir, folder):
            raise InputError(f"--to {to}: this version was refused by the publish gate ({gate.get('reason')}); "
                             "publish it with `hqgnn export --run RUN --force` instead")
        return folder
    current = pointer_target(workdir.codes / "current")
    if current is None:
        raise InputError(f"nothing to roll back: {workdir.codes / 'current'} does not exist (run `hqgnn export` first)")
    rows = list_versions(workdir)
    now = next((r for r in rows if r.version == current.name), None)
    if now is None:
        raise InputError(f"{workdir.codes / 'current'} points to {current}, which has no manifest; name a version with --to")
    older = [r for r in rows if (r.bits, r.user_bits) == (now.bits, now.user_bits)  # users.parquet keeps its schema
             and (r.created_at, r.version) < (now.created_at, now.version) and r.gate_passed]
    if not older:
        users = " with float users" if now.user_bits != now.bits else ""
        raise InputError(f"no published {now.bits}-bit version{users} older than {now.version} to roll back to; "
                         "name one with --to (see `hqgnn versions`)")
    return workdir.codes / older[-1].version


def _ever_pointed(workdir: WorkDir, folder: Path) -> bool:
    return folder.resolve() in _pointers(workdir)


def rollback(workdir: WorkDir, to: str | None = None, console: Console | None = None) -> Path:
    """Switch ``current`` (and ``current-<b>bit``) to a verified version; record it in ``runs``.
    A writer: the caller holds the work directory's lock (:func:`flows.lock.workdir_lock`)."""
    console = console or Console(stderr=True)
    started = datetime.now(UTC)
    target = rollback_target(workdir, to)
    before = pointer_target(workdir.codes / "current")
    with console.status(f"[bold]rollback[/]: checking {target.name} (hashes, contracts)"):
        try:
            check_code_version(target)
        except HqgnnError as e:
            raise InputError(f"rollback to {target.name} refused, codes/current unchanged: {e}") from e
    bits = int(version_manifest(target)["bits"])
    publish_version(workdir, target, bits)  # journalled: a kill between the two switches is finished by the next writer
    try:
        record_run(workdir.warehouse, RunRecord(
            run_id=f"rollback-{uuid.uuid4().hex[:12]}", flow_run_name="rollback", status="completed",
            started_at=started, finished_at=datetime.now(UTC),
            parameters={"command": "rollback", "to": to, "from": before.name if before else None, "target": target.name},
            code_version=target.name,
        ))
    except Exception as e:  # the switch happened: say so, and that only the record is missing
        console.print(f"[yellow]warning:[/] rollback done, but its row in {workdir.warehouse} (runs) could not be "
                      f"written: {' '.join(str(e).split())}", highlight=False, soft_wrap=True)
    console.print(f"[bold]rollback[/]: codes/current and codes/current-{bits}bit -> {target.name} "
                  f"(was {before.name if before else 'nothing'})", highlight=False)
    return target
