"""Stage `export` (issue 4): a run's best checkpoint -> ``codes/<version>/``, published through the gate.

extract (run, split) -> compute (codes) -> write (temp folder) -> validate (contracts, id maps,
valid metric from the written files) -> rename to ``codes/<version>/`` -> gate -> publish.

Publish gate (``shared/interface.md``): ``codes/current`` moves only if every contract passes
and the challenger's valid ``gate_metric`` is not worse than the champion's (the published codes
OF THE SAME BIT WIDTH, ``codes/current-<b>bit``) by more than ``gate_tolerance``, BOTH scored here,
in this process, from their code files, on THIS run's validation split (like with like: a number
stored from another snapshot is never compared). Rows are matched by original id; the rule for
users and items the champion does not know is :data:`hqgnn.comparison.RULE` (users both know;
items unknown to the champion removed from both rankings). A champion that shares no scored valid
user with the split cannot be compared: refused unless ``--force``. The first codes of a width
pass on contracts alone. ``--force`` overrides the metric check, never the contracts. The
manifest's ``gate`` records both numbers, the split, the rule, the common ground and the decision.

- A contract failure raises :class:`DataContractError`: the temporary folder is deleted, no
  version folder appears, nothing is published.
- A metric refusal raises :class:`PublishGateError`: ``codes/<version>/`` stays on disk as an
  unpublished version (its manifest records ``gate.passed: false`` and why); ``current`` and
  ``current-<b>bit`` keep pointing where they did.
- Per-width record: ``codes/current-<b>bit`` points at the published version of each width,
  so "current of the same bit width" is defined even when ``codes/current`` is another width.

32-bit (float) runs are exported as float32 vectors (``bits = 32``, scale 1), so ``recommend``
and the inner-product SQL query work on them unchanged. A ``float_users`` run exports float32
users beside its b-bit items (manifest ``user_bits`` 32; its width is the items'); publishing
it over codes of the same width with user codes (or back) changes ``users.parquet``'s schema,
so the gate refuses it without ``--force``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from flows.code_versions import (
    CODE_CONTRACTS,
    CODE_FILES,
    code_values_wanted,
    contract_params,
    file_consistency_failures,
    read_code_table,
    read_code_version,
    side_bits,
    write_code_table,
)
from flows.config import ExportConfig
from flows.errors import DataContractError, InputError, PublishGateError
from flows.integrity import file_record
from flows.publish import (
    GateDecision,
    finish_interrupted_publish,
    gate_decision,
    publish_version,
    width_pointer,
)
from flows.split_files import load_split
from flows.trained_runs import TrainedRun, load_run
from flows.workdir import WorkDir, atomic_dir, file_sha256
from hqgnn.bits import is_float
from hqgnn.codes import code_bytes
from hqgnn.comparison import RULE, CodeModel, Comparison, compare
from hqgnn.export import code_table_arrow
from hqgnn.files import atomic_write_json
from hqgnn.metrics import evaluate_ranking
from hqgnn.retrieval import Retriever


@dataclass(frozen=True)
class ExportResult:
    """What `hqgnn export` did: the version written, whether it went live, and why."""

    version: str
    path: Path
    published: bool
    gate_reason: str
    metrics: dict[str, float]
    bits: int


def published_version(workdir: WorkDir, bits: int) -> Path | None:
    """Folder of the published codes of width ``bits`` (None if none was ever published)."""
    pointer = width_pointer(workdir, bits)
    if pointer.is_symlink() and (pointer / "manifest.json").is_file():
        return pointer.resolve()
    current = workdir.codes / "current"  # codes published before per-width pointers existed
    if current.is_symlink() and (current / "manifest.json").is_file():
        manifest = json.loads((current / "manifest.json").read_text())
        if int(manifest.get("bits", -1)) == bits:
            return current.resolve()
    return None


def published_manifest(workdir: WorkDir, bits: int) -> dict[str, Any] | None:
    """Manifest of the published codes of width ``bits`` (None if none was ever published)."""
    folder = published_version(workdir, bits)
    return None if folder is None else json.loads((folder / "manifest.json").read_text())


def export(workdir: WorkDir, cfg: ExportConfig, console: Console | None = None) -> ExportResult:
    """Export the codes of ``cfg.run`` (default: latest) and publish them through the gate."""
    console = console or Console(stderr=True)
    start = time.perf_counter()
    finished = finish_interrupted_publish(workdir)  # a kill between the two pointer switches
    if finished:
        console.print(f"[yellow]export[/]: {finished}", highlight=False)
    run_dir = workdir.run(cfg.run)
    if (run_dir / "config.json").is_file() and not (run_dir / "summary.json").is_file():
        raise InputError(f"run {run_dir.name} has not finished training ({run_dir / 'summary.json'} is missing: it is "
                         f"still training, or was killed): finish it with `hqgnn train --resume --run {run_dir.name}`, then export")
    with console.status(f"[bold]export[/]: loading run {run_dir.name}"):
        run = load_run(run_dir)
        split = load_split(run.split_dir)
    _check_run_matches_split(run, split.num_users, split.num_items)
    users, items = run.code_tables()
    version = f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{run.name}"
    final = workdir.codes / version

    with atomic_dir(final) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private; published codes are for every reader
        with console.status(f"[bold]export[/]: writing {version}"):
            for kind, table, ids in (("user", users, split.user_ids), ("item", items, split.item_ids)):
                values = code_values_wanted(kind, users.bits, items.bits)
                write_code_table(tmp / CODE_FILES[kind], code_table_arrow(kind, ids, table, with_values=values))
        with console.status("[bold]export[/]: checking contracts"):
            _validate(tmp, {"user": (split.user_ids, users.bits), "item": (split.item_ids, items.bits)}, users.dim, workdir.data_docs)
        with console.status("[bold]export[/]: valid metrics from the written codes"):
            metrics = _valid_metrics_from_files(tmp, run_side_bits(run), run.dim, split, cfg.gate_metric)
        with console.status("[bold]export[/]: champion and challenger on this split"):
            champion, comparison = _compare_with_champion(workdir, tmp, run, split, cfg.gate_metric)
        decision = gate_decision(
            cfg.gate_metric,
            _metric(comparison.challenger, cfg.gate_metric) if comparison else _metric(metrics, cfg.gate_metric),
            _metric(comparison.champion, cfg.gate_metric) if comparison else None,
            champion, cfg.gate_tolerance, cfg.force, _user_width_change(workdir, run),
        )
        atomic_write_json(tmp / "manifest.json", _manifest(version, run, split, tmp, metrics, decision, cfg, comparison))

    if not decision.passed:
        raise PublishGateError(
            f"codes {version} NOT published: {decision.reason}. The version stays unpublished in {final}; "
            f"codes/current is unchanged. Re-run with --force to publish anyway (contracts still apply)."
        )
    publish_version(workdir, final, run.bits)  # current-<b>bit and current, journalled (flows.publish)
    console.print(
        f"[bold]export[/]: published {version} ({_width_words(run)}, {len(users)} users, {len(items)} items) "
        f"as codes/current in {time.perf_counter() - start:.1f}s -- {decision.reason}",
        highlight=False,
    )
    return ExportResult(version, final, True, decision.reason, metrics, run.bits)


def _check_run_matches_split(run: TrainedRun, num_users: int, num_items: int) -> None:
    if (run.num_users, run.num_items) != (num_users, num_items):
        raise DataContractError(
            "user_codes", [f"run {run.name} has {run.num_users} users x {run.num_items} items but its split {run.split_dir} has {num_users} x {num_items}"]
        )


def run_side_bits(run: TrainedRun) -> dict[str, int]:
    """Width of each side of a run's export: ``bits``, and 32 for the users of a ``float_users`` run."""
    return {"user": run.user_bits, "item": run.bits}


def _width_words(run: TrainedRun) -> str:
    """``"1 bits"`` (as the messages always said), or ``"1-bit items, float32 users"`` for a ``float_users`` run."""
    return f"{run.bits} bits" if run.user_bits == run.bits else f"{run.bits}-bit items, float32 users"


def _user_width_change(workdir: WorkDir, run: TrainedRun) -> str | None:
    """Why publishing ``run`` would change the user width of its width's published codes (float
    users over codes, or back), or None: a change of users.parquet's schema needs ``--force``."""
    manifest = published_manifest(workdir, run.bits)
    if manifest is None or side_bits(manifest)["user"] == run.user_bits:
        return None

    def words(b: int) -> str:
        return "float32 users" if is_float(b) else f"{b}-bit user codes"

    return f"the published {run.bits}-bit codes have {words(side_bits(manifest)['user'])}, run {run.name} {words(run.user_bits)}"


def _validate(folder: Path, sides: dict[str, tuple[np.ndarray, int]], dim: int, docs: Path | None = None) -> None:
    """Both contracts, then the id-map and code_values invariants; raises DataContractError.
    ``sides``: per kind (``"user"``, ``"item"``), the id map ``[n]`` and the side's width."""
    from flows.contracts import validate

    for kind, (ids, bits) in sides.items():
        path = folder / CODE_FILES[kind]
        validate(CODE_CONTRACTS[kind], path, contract_params(kind, len(ids), bits, dim), docs)
        table, _ = read_code_table(path, kind, bits, dim)
        failures = file_consistency_failures(path, kind, table, ids)
        if failures:
            raise DataContractError(CODE_CONTRACTS[kind], failures)


def _valid_metrics_from_files(folder: Path, bits: dict[str, int], dim: int, split: Any, gate_metric: str) -> dict[str, float]:
    """Valid metrics (train masked) of the codes as written: read back, then the model score.

    Cut-offs 20 and 50, plus the gate metric's (``recall@10`` adds 10)."""
    name, _, k = gate_metric.partition("@")
    if name not in ("recall", "ndcg", "precision", "hit_rate") or not k.isdigit() or int(k) <= 0:
        raise ValueError(f"gate_metric must look like recall@20, ndcg@50, precision@10 or hit_rate@20; got {gate_metric!r}")
    users, items = read_code_version_tables(folder, bits, dim)
    retriever = Retriever(users, items, "score")
    return evaluate_ranking(retriever.scores, split.valid, (split.train,), sorted({20, 50, int(k)}))


def _compare_with_champion(workdir: WorkDir, folder: Path, run: TrainedRun, split: Any, gate_metric: str) -> tuple[str | None, Comparison | None]:
    """The champion's version name and both models scored on ``split``'s valid interactions
    (:func:`hqgnn.comparison.compare`, from the code files); ``(None, None)`` without a champion."""
    published = published_version(workdir, run.bits)
    if published is None:
        return None, None
    champ = read_code_version(published)
    chall = read_code_version_tables(folder, run_side_bits(run), run.dim)
    k = int(gate_metric.partition("@")[2])
    comparison = compare(
        CodeModel(champ.users, champ.items, champ.user_ids, champ.item_ids),
        CodeModel(chall[0], chall[1], split.user_ids, split.item_ids),
        split.valid, split.train, sorted({20, 50, k}),
    )
    return published.name, comparison


def read_code_version_tables(folder: Path, bits: dict[str, int], dim: int) -> tuple[Any, Any]:
    """User and item :class:`hqgnn.codes.CodeTable` of a (possibly unfinished) version folder,
    each side read at its width (``bits``: ``{"user": ..., "item": ...}``)."""
    users, _ = read_code_table(folder / CODE_FILES["user"], "user", bits["user"], dim)
    items, _ = read_code_table(folder / CODE_FILES["item"], "item", bits["item"], dim)
    return users, items


def _metric(metrics: dict[str, float], name: str) -> float:
    if name not in metrics:
        raise ValueError(f"gate_metric {name!r} is not computed; choose one of {sorted(k for k in metrics if k != 'users')}")
    return float(metrics[name])


def _manifest(
    version: str, run: TrainedRun, split: Any, folder: Path, metrics: dict[str, float], decision: GateDecision, cfg: ExportConfig,
    comparison: Comparison | None = None,
) -> dict[str, Any]:
    recorded = split.manifest.get("files") or {}
    snapshot_hashes = {}
    for name in ("train.parquet", "valid.parquet", "test.parquet", "users.parquet", "items.parquet"):
        info = recorded.get(name)
        snapshot_hashes[name] = info["sha256"] if isinstance(info, dict) and "sha256" in info else file_sha256(split.path / name)
    return {
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run": run.name,
        "model": {"run": run.name, "best_epoch": run.best_epoch, "config": run.config.model_dump(mode="json")},
        "bits": run.bits,
        "user_bits": run.user_bits,  # 32 for a float_users run (float32 users beside the item codes)
        "dim": run.dim,
        "estimator": run.estimator,
        "code_bytes": code_bytes(run.bits, run.dim),
        "num_users": run.num_users,
        "num_items": run.num_items,
        "snapshot": split.snapshot,
        "split_dir": str(split.path),
        "snapshot_hashes": snapshot_hashes,
        "files": {name: file_record(folder / name) for name in CODE_FILES.values()},
        "metrics": {
            "valid_codes": {k: v for k, v in metrics.items()},
            "train_best_valid": run.best_valid,
        },
        "ranking": ("model score s_u s_i <q_u, q_i> (1 bit: s_u s_i (dim - 2 Hamming)); ties by lower item index" if run.user_bits == run.bits
                    else "model score s_i <e_u, q_i> (float32 users e_u); ties by lower item index"),
        "gate": {
            "passed": decision.passed, "reason": decision.reason, "metric": decision.metric,
            "value": decision.new_value, "compared_to": decision.current_version,
            "compared_value": decision.current_value, "tolerance": cfg.gate_tolerance, "force": cfg.force,
            "split": {"snapshot": split.snapshot, "split_dir": str(split.path), "part": "valid",
                      "valid_sha256": snapshot_hashes["valid.parquet"]},
            "rule": RULE,
            "comparison": None if comparison is None else {
                "champion": comparison.champion, "challenger": comparison.challenger,
                "users_compared": comparison.users_compared, "valid_users": comparison.valid_users,
                "items_common": comparison.items_common, "items_new": comparison.items_new,
                "valid_interactions_compared": comparison.valid_interactions_compared,
                "valid_interactions": comparison.valid_interactions,
            },
        },
    }
