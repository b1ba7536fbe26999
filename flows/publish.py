"""Publishing a code version: the publish gate's verdict (:func:`gate_decision`), then
``codes/current-<b>bit`` and ``codes/current`` switched together.

Two symlinks cannot be switched in one rename(2), so the switch is journalled: ``codes/.publish.json``
(written atomically) names the version and width first, then both pointers are switched, then the
journal is removed. A process killed in between leaves the journal; the next ``export`` (and
``hqgnn doctor --repair``) finishes the switch from it (:func:`finish_interrupted_publish`), so
``current`` and ``current-<b>bit`` never stay on different versions. A version is only ever
journalled after it is complete on disk and passed the gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from flows.errors import InputError
from flows.integrity import verify_code_version
from flows.workdir import WorkDir, switch_pointer
from hqgnn.files import atomic_write_json

JOURNAL = ".publish.json"


def width_pointer(workdir: WorkDir, bits: int) -> Path:
    """``codes/current-<b>bit``: the published version of one bit width."""
    return workdir.codes / f"current-{bits}bit"


def publish_version(workdir: WorkDir, version_dir: Path, bits: int) -> None:
    """Point ``current-<bits>bit`` and ``current`` at ``version_dir`` (journalled, see module doc)."""
    journal = workdir.codes / JOURNAL
    atomic_write_json(journal, {"version": version_dir.name, "bits": int(bits)})
    switch_pointer(width_pointer(workdir, bits), version_dir)
    switch_pointer(workdir.codes / "current", version_dir)
    journal.unlink()


def finish_interrupted_publish(workdir: WorkDir) -> str | None:
    """Complete a publication a killed process left half done; returns what was done (None: nothing to do).

    The journalled version is verified first (files against its manifest, gate passed); a version
    that fails is not published and the journal is dropped (the pointers keep their targets)."""
    journal = workdir.codes / JOURNAL
    if not journal.exists():
        return None
    try:
        entry = json.loads(journal.read_text())
        version, bits = str(entry["version"]), int(entry["bits"])
        target = workdir.code_version(version)
        manifest = verify_code_version(target)
        if not (manifest.get("gate") or {}).get("passed", False) or int(manifest["bits"]) != bits:
            raise InputError(f"{target} did not pass the publish gate as a {bits}-bit version")
    except (OSError, ValueError, KeyError, TypeError) as e:  # InputError is a ValueError
        journal.unlink()
        return f"dropped the journal of an interrupted publication ({e}); the pointers keep their targets"
    publish_version(workdir, target, bits)
    return f"finished the interrupted publication of {version}: codes/current and codes/current-{bits}bit point at it"


@dataclass(frozen=True)
class GateDecision:
    """The publish gate's verdict on a new code version.

    ``new_value`` and ``current_value`` are measured on the same split, in the same process
    (:func:`hqgnn.comparison.compare`); ``current_value`` is None when there is nothing to compare.
    """

    passed: bool
    reason: str
    metric: str
    new_value: float
    current_value: float | None
    current_version: str | None


def gate_decision(
    metric: str,
    new_value: float,
    current_value: float | None,
    current_version: str | None,
    tolerance: float,
    force: bool,
    user_width_change: str | None = None,
) -> GateDecision:
    """Decide on the metric part of the publish gate (contracts are checked before this).

    ``current_version``: the published codes of the same bit width (None = first of its width,
    which passes on contracts alone). ``new_value`` / ``current_value``: the challenger's and the
    champion's metric on the SAME split and users (``current_value`` None or NaN: the champion
    shares no scored user with the split, so no like-for-like comparison exists and the gate
    refuses unless ``force``). Passes if ``new_value >= current_value - tolerance``, or with ``force``.
    ``user_width_change``: why the challenger's users differ in width from the champion's (float
    users against user codes): users.parquet would change its schema under the scripts that read
    it, so the gate refuses unless ``force``, whatever the metric.
    """
    if user_width_change is not None and current_version is not None and not force:
        return GateDecision(False, f"{user_width_change}: publishing would change users.parquet's code width under "
                            "the scripts reading it (publish with --force to switch)", metric, new_value, current_value, current_version)
    if current_version is None:
        return GateDecision(True, f"first published codes of this bit width ({metric} {new_value:.4f} on valid)", metric, new_value, None, None)
    if current_value is None or current_value != current_value or new_value != new_value:
        what = f"published {current_version} shares no valid user/item with this split: no like-for-like comparison"
        if force:
            return GateDecision(True, f"{what}; published with --force", metric, new_value, None, current_version)
        return GateDecision(False, what, metric, new_value, None, current_version)
    what = f"{metric} on the same valid split {new_value:.4f} vs {current_value:.4f} of published {current_version} (tolerance {tolerance:g})"
    if new_value >= current_value - tolerance:
        return GateDecision(True, f"not worse: {what}", metric, new_value, current_value, current_version)
    if force:
        return GateDecision(True, f"worse, published with --force: {what}", metric, new_value, current_value, current_version)
    return GateDecision(False, f"worse by more than the tolerance: {what}", metric, new_value, current_value, current_version)
