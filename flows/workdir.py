"""The work-directory layout of ``shared/interface.md`` and the atomic-write helpers every stage uses.

```
<root>/
  warehouse.duckdb        raw, quarantine, clean, kcore tables; runs table
  splits/<snapshot>/      train/valid/test/users/items .parquet + manifest.json
  splits/current          pointer (symlink) to the newest contract-checked snapshot
  models/<run>/           checkpoints, history, config
  models/latest           pointer to the newest run
  codes/<version>/        users.parquet items.parquet manifest.json
  codes/current           pointer to the published version (switched atomically)
  reports/<run>/          metrics.parquet metrics.json report.md plots/*.png
```

Nothing here touches the disk at import time; directories are made when a stage writes.
Every published output is written to a temporary sibling and renamed into place, so a failed
stage leaves the last good output untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_WORKDIR = Path("hqgnn-work")


@dataclass(frozen=True)
class WorkDir:
    """Paths of one work directory (see module docstring)."""

    root: Path

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def splits(self) -> Path:
        return self.root / "splits"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def codes(self) -> Path:
        return self.root / "codes"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def split(self, snapshot: str | None = None) -> Path:
        """Folder of a split snapshot; ``None`` resolves ``splits/current``."""
        return self.splits / check_name(snapshot, "--snapshot") if snapshot else resolve_pointer(self.splits / "current", "split snapshot", "hqgnn prepare")

    def run(self, run: str | None = None) -> Path:
        """Folder of a training run; ``None`` resolves ``models/latest``."""
        return self.models / check_name(run, "--run") if run else resolve_pointer(self.models / "latest", "training run", "hqgnn train")

    def code_version(self, version: str | None = None) -> Path:
        """Folder of an exported code version; ``None`` resolves ``codes/current``."""
        return self.codes / check_name(version, "version") if version else resolve_pointer(self.codes / "current", "published codes", "hqgnn export")

    @property
    def data_docs(self) -> Path:
        """The Great Expectations Data Docs (HTML) of every contract check: ``reports/data-docs``."""
        return self.reports / "data-docs"

    def report(self, run: str) -> Path:
        return self.reports / run


def check_name(name: str, what: str) -> str:
    """``name`` if it is one plain folder name inside the work directory: no path separator, not
    ``.``/``..``, not hidden, not absolute; else an :class:`~flows.errors.InputError`."""
    from flows.errors import InputError

    if not name or "/" in name or "\\" in name or "\0" in name or name in (".", "..") or name.startswith(".") or os.path.isabs(name):
        raise InputError(f"{what} {name!r}: expected a plain name (letters, digits, -, _ ...; no '/', no '..', "
                         "not absolute, not starting with '.'), so it stays inside the work directory")
    return name


def resolve_pointer(pointer: Path, what: str, producer: str) -> Path:
    """Follow a pointer symlink, or fail with a message that says which command creates it."""
    if not pointer.is_symlink() and not pointer.exists():
        raise FileNotFoundError(f"no {what} yet: {pointer} does not exist (run `{producer}` first)")
    target = pointer.resolve()
    if not target.is_dir():
        raise FileNotFoundError(f"{pointer} points to {target}, which is missing")
    return target


def switch_pointer(pointer: Path, target: Path) -> None:
    """Point ``pointer`` at ``target`` atomically (relative symlink, replaced with rename(2))."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(target, pointer.parent)
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(rel, tmp)
    os.replace(tmp, pointer)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success rename it to ``final``, on error delete it.

    An existing ``final`` is replaced only after the new folder is complete (it is moved aside,
    the new one renamed in, then the old one removed).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; published folders get the usual mode
    try:
        yield tmp
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno is not None and e.filename is None:  # e.g. Arrow's failed write
            raise OSError(e.errno, e.strerror or str(e), str(final)) from e
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old.{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
