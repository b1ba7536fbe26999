"""The publish gate compares like with like (issue 16): champion and challenger scored on the
challenger's validation split, in one process, rows matched by original id.

A snapshot that grows between two runs (new users and items, dense indices reshuffled) must not
refuse a retrained model that is as good on what both know, and a genuinely worse challenger on
the same split is still refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from codes_fixtures import make_run, planted

from flows.config import ExportConfig
from flows.errors import PublishGateError
from flows.split_files import write_split
from flows.stages.export import export
from flows.workdir import WorkDir, switch_pointer
from hqgnn.codes import CodeTable
from hqgnn.comparison import CodeModel, align, compare, restrict
from hqgnn.interactions import InteractionMatrix


def _snapshot(w: WorkDir, name: str, split: dict, users: np.ndarray, items: np.ndarray) -> tuple[Path, np.ndarray, np.ndarray]:
    """``splits/<name>`` with the planted interactions of ``users`` x ``items`` (original planted
    indices, in this snapshot's dense order), ids ``user-<k>`` / ``item-<k>`` by planted index."""
    u_pos = {int(k): j for j, k in enumerate(users)}
    i_pos = {int(k): j for j, k in enumerate(items)}
    pairs = {}
    train = {(a, b) for a, b in zip(*(x.tolist() for x in split["train"]), strict=True)}
    for part, (pu, pi) in split.items():
        keep = [(u_pos[a], i_pos[b]) for a, b in zip(pu.tolist(), pi.tolist(), strict=True)
                if a in u_pos and b in i_pos and (part == "train" or (a, b) not in train)]
        arr = np.asarray(keep, dtype=np.int64).reshape(-1, 2)
        pairs[part] = (arr[:, 0], arr[:, 1])
    path = write_split(w.splits / name, pairs, len(users), len(items), name,
                       user_ids=[f"user-{k}" for k in users], item_ids=[f"item-{k}" for k in items])
    switch_pointer(w.splits / "current", path)
    return path, users, items


def test_growing_snapshot_is_compared_on_common_ground_and_a_worse_model_is_refused(tmp_path: Path) -> None:
    w = WorkDir(tmp_path / "w")
    u, i, split = planted(num_users=60, num_items=120)
    rng = np.random.default_rng(5)
    # night 1: 40 users, 100 items, in a shuffled dense order
    old_users, old_items = rng.permutation(40), rng.permutation(100)
    snap1, *_ = _snapshot(w, "snap1", split, old_users, old_items)
    make_run(w, "night1", snap1, u[old_users], i[old_items], 1)
    first = export(w, ExportConfig())
    assert first.published
    stored = json.loads((first.path / "manifest.json").read_text())["metrics"]["valid_codes"]["recall@20"]

    # night 2: 20 new users (whose rows the model barely knows) and 20 new items, order reshuffled
    new_users, new_items = rng.permutation(60), rng.permutation(120)
    snap2, *_ = _snapshot(w, "snap2", split, new_users, new_items)
    users2 = u[new_users].copy()
    fresh = new_users >= 40
    users2[fresh] = rng.normal(size=(int(fresh.sum()), u.shape[1])).astype(np.float32)
    make_run(w, "night2", snap2, users2, i[new_items], 1)
    second = export(w, ExportConfig())
    # on its whole split the retrained model scores below the number stored from night 1's split,
    # which the old gate would have refused; on the common ground it is as good, so it passes
    assert second.metrics["recall@20"] < stored - 0.005
    assert second.published and "same valid split" in second.gate_reason
    gate = json.loads((second.path / "manifest.json").read_text())["gate"]
    assert gate["split"]["snapshot"] == "snap2" and gate["rule"] and gate["compared_to"] == first.version
    cmp = gate["comparison"]
    assert cmp["items_new"] == 20 and cmp["items_common"] == 100
    assert 0 < cmp["users_compared"] <= 40 < cmp["valid_users"]
    assert gate["value"] == pytest.approx(cmp["challenger"]["recall@20"])
    assert gate["compared_value"] == pytest.approx(cmp["champion"]["recall@20"])
    assert gate["value"] == pytest.approx(gate["compared_value"])  # same rows, same codes, same ground

    # a genuinely worse challenger on the same split is refused
    make_run(w, "worse", snap2, rng.normal(size=users2.shape).astype(np.float32), i[new_items], 1)
    with pytest.raises(PublishGateError, match="same valid split"):
        export(w, ExportConfig())
    assert (w.codes / "current-1bit").resolve().name == second.version


def test_champion_without_common_users_is_refused_unless_forced(tmp_path: Path) -> None:
    w = WorkDir(tmp_path / "w")
    u, i, split = planted(num_users=60, num_items=120)
    snap1, *_ = _snapshot(w, "snap1", split, np.arange(30), np.arange(120))
    make_run(w, "a", snap1, u[:30], i, 1)
    assert export(w, ExportConfig()).published
    snap2, *_ = _snapshot(w, "snap2", split, np.arange(30, 60), np.arange(120))
    make_run(w, "b", snap2, u[30:], i, 1)
    with pytest.raises(PublishGateError, match="no like-for-like"):
        export(w, ExportConfig())
    assert export(w, ExportConfig(force=True)).published


def test_compare_matches_a_naive_loop() -> None:
    """compare() on a hand-made case: the champion knows users a, b and items x, y; tonight adds
    user c and item z (z is removed from both rankings and from the truth)."""
    assert align(np.array(["c", "a", "b"], dtype=object), np.array(["b", "a"], dtype=object))[1].tolist() == [1, 0]
    m = InteractionMatrix.from_pairs(np.array([0, 1, 2]), np.array([0, 2, 1]), 3, 3)
    sub = restrict(m, np.array([2, 0]), np.array([1, 0]))
    assert sub.dense_rows(torch.arange(2)).tolist() == [[True, False], [False, True]]

    f = CodeTable.from_float
    # tonight: users [a, b, c], items [x, y, z]; champion: users [b, a], items [y, x]
    chall = CodeModel(f(np.array([[1.0, 0], [0, 1], [1, 1]])), f(np.array([[1.0, 0], [0, 1], [5, 5]])),
                      np.array(["a", "b", "c"], dtype=object), np.array(["x", "y", "z"], dtype=object))
    champ = CodeModel(f(np.array([[1.0, 0], [1, 0]])), f(np.array([[1.0, 0], [0, 1]])),
                      np.array(["b", "a"], dtype=object), np.array(["y", "x"], dtype=object))
    # valid: a -> x, b -> y, c -> x, a -> z (z unknown to the champion: dropped); no train
    valid = InteractionMatrix.from_pairs(np.array([0, 1, 2, 0]), np.array([0, 1, 0, 2]), 3, 3)
    train = InteractionMatrix.from_pairs(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 3, 3)
    c = compare(champ, chall, valid, train, ks=(1,))
    assert (c.users_compared, c.valid_users, c.items_new, c.valid_interactions_compared) == (2, 3, 1, 2)
    # challenger: a ranks x first (hit), b ranks y first (hit) -> 1.0 (z, scored 5, is not a candidate)
    assert c.challenger["recall@1"] == pytest.approx(1.0)
    # champion: a = [1,0] scores y=1 (row y=[1,0]) first (miss); b = [1,0] also y first (hit) -> 0.5
    assert c.champion["recall@1"] == pytest.approx(0.5)
