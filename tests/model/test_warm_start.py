"""Warm start (issue 16): rows carried by original id, new rows from the graph, the warm schedule,
every width, --resume, --nproc, and the parent recorded in config/summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from kill_fixtures import train_killed_after_epoch
from split_fixtures import tiny_split

from flows.config import TrainConfig
from flows.errors import InputError
from flows.split_files import load_split, write_split
from flows.stages.train import pin_warm_start, train
from flows.workdir import WorkDir, switch_pointer
from hqgnn.checkpoint import load_checkpoint
from hqgnn.interactions import InteractionMatrix
from hqgnn.trainer import Trainer
from hqgnn.warm_start import warm_start

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"batch_size": 256, "lr": 0.02, "device": "cpu", "dim": 16, "patience": 50, "hutchinson_samples": 2, "hutchinson_batches": 1}


def test_rows_are_carried_by_original_id_and_new_rows_come_from_neighbours() -> None:
    prev_u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]])  # ids a, b, gone
    prev_i = torch.tensor([[2.0, 2.0], [4.0, 0.0]])  # ids x, y
    user_ids = np.array(["b", "new", "a"], dtype=object)  # reshuffled, one new, one dropped
    item_ids = np.array(["y", "z", "x"], dtype=object)  # z is new
    # train: b-y, new-x, new-z, a-z, a-x
    train = InteractionMatrix.from_pairs(np.array([0, 1, 1, 2, 2]), np.array([0, 2, 1, 1, 2]), 3, 3)
    ws = warm_start(prev_u, prev_i, np.array(["a", "b", "gone"], dtype=object), np.array(["x", "y"], dtype=object),
                    user_ids, item_ids, train)
    users, items = ws.embedding[:3], ws.embedding[3:]
    assert torch.equal(users[0], prev_u[1]) and torch.equal(users[2], prev_u[0])  # b, a by id
    assert torch.equal(items[0], prev_i[1]) and torch.equal(items[2], prev_i[0])  # y, x by id
    torch.testing.assert_close(items[1], prev_u[0])  # z: mean of its carried users (a; "new" is not carried)
    torch.testing.assert_close(users[1], (prev_i[0] + prev_u[0]) / 2)  # new: mean of x and z
    assert ws.counts() == {"users_carried": 2, "users_new": 1, "users_dropped": 1, "items_carried": 2, "items_new": 1,
                           "items_dropped": 0, "new_rows": "neighbours"}
    rnd = warm_start(prev_u, prev_i, np.array(["a", "b", "gone"], dtype=object), np.array(["x", "y"], dtype=object),
                     user_ids, item_ids, train, new_rows="random", seed=1)
    assert torch.equal(rnd.embedding[0], prev_u[1]) and rnd.embedding[1].abs().max() < 1.0  # random start, std 0.1
    items_only = warm_start(prev_u, prev_i, np.array(["a", "b", "gone"], dtype=object), np.array(["x", "y"], dtype=object),
                            user_ids, item_ids, train, carry_users=False)
    u2, i2 = items_only.embedding[:3], items_only.embedding[3:]
    assert torch.equal(i2[0], prev_i[1]) and torch.equal(i2[2], prev_i[0])  # items still carried by id
    torch.testing.assert_close(u2[0], prev_i[1])  # b: the mean of its item y, not its previous row
    torch.testing.assert_close(u2[2], prev_i[0])  # a: of x (z is new and not yet set at step 2)
    torch.testing.assert_close(i2[1], (u2[1] + u2[2]) / 2)  # z: of its users new and a (step 3)
    assert items_only.counts()["users_carried"] == 0 and items_only.counts()["items_carried"] == 2


def test_trainer_starts_from_the_initial_table(tmp_path: Path) -> None:
    data = load_split(tiny_split(tmp_path))
    table = torch.randn(data.num_users + data.num_items, 16)
    t = Trainer(TrainConfig(bits=32, epochs=1, **FAST), data, tmp_path / "run", torch.device("cpu"), initial_embedding=table)
    assert torch.equal(t.model.embedding.detach(), table)
    with pytest.raises(ValueError, match="initial_embedding has shape"):
        Trainer(TrainConfig(bits=32, epochs=1, **FAST), data, tmp_path / "run", torch.device("cpu"), initial_embedding=table[:3])


def _grown_snapshot(root: Path, split_dir: Path, seed: int = 0) -> Path:
    """splits/grown: the same users and items in another dense order, plus 5 new users who copy
    the train items of 5 old ones; becomes splits/current."""
    data = load_split(split_dir)
    rng = np.random.default_rng(seed)
    n_u, n_i = data.num_users, data.num_items
    perm_u, perm_i = rng.permutation(n_u), rng.permutation(n_i)  # new index of old row k: perm[k]
    pairs = {}
    for part in ("train", "valid", "test"):
        m = getattr(data, part)
        u, i = perm_u[m.rows().numpy()], perm_i[m.indices.numpy()]
        if part == "train":  # new users n_u .. n_u + 4 copy the train rows of old users 0 .. 4
            for k in range(5):
                rows = m.indices[m.indptr[k] : m.indptr[k + 1]].numpy()
                u, i = np.concatenate([u, np.full(len(rows), n_u + k)]), np.concatenate([i, perm_i[rows]])
        pairs[part] = (u, i)
    ids_u = np.empty(n_u + 5, dtype=object)
    ids_u[perm_u] = data.user_ids
    ids_u[n_u:] = [f"new{k}" for k in range(5)]
    ids_i = np.empty(n_i, dtype=object)
    ids_i[perm_i] = data.item_ids
    out = write_split(root / "splits" / "grown", pairs, n_u + 5, n_i, "grown", user_ids=ids_u.tolist(), item_ids=ids_i.tolist())
    switch_pointer(root / "splits" / "current", out)
    return out


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> WorkDir:
    """Night 1: a cold 1-bit run `night1` on splits/tiny; then splits/current = a grown snapshot."""
    root = tmp_path_factory.mktemp("warm")
    split = tiny_split(root)
    wd = WorkDir(root)
    train(wd, TrainConfig(run="night1", bits=1, epochs=6, **FAST))
    _grown_snapshot(root, split)
    return wd


@pytest.mark.parametrize("bits", [32, 1, 4])
def test_warm_run_carries_rows_records_its_parent_and_learns_faster_than_cold(nights: WorkDir, bits: int) -> None:
    cold = train(nights, TrainConfig(run=f"cold{bits}", bits=bits, epochs=1, **FAST))
    warm = train(nights, TrainConfig(run=f"warm{bits}", bits=bits, epochs=200, warm_epochs=1, init_from="night1", **FAST))
    config = json.loads((warm.path / "config.json").read_text())
    summary = json.loads((warm.path / "summary.json").read_text())
    assert config["config"]["init_from"] == "night1" and config["config"]["epochs"] == 1 and warm.epochs_run == 1
    assert config["config"]["lr"] == FAST["lr"]  # no warm_lr: the recipe's lr
    record = config["warm_start"]
    assert record == summary["warm_start"]
    assert (record["parent_run"], record["users_carried"], record["users_new"], record["users_dropped"]) == ("night1", 60, 5, 0)
    assert (record["items_carried"], record["items_new"]) == (80, 0)
    # one warm epoch starts from a trained model: far above one cold epoch
    assert warm.best_valid["recall@20"] > cold.best_valid["recall@20"] + 0.05


def test_a_warm_run_from_a_float_parent_keeps_one_float_epoch(nights: WorkDir) -> None:
    train(nights, TrainConfig(run="float-parent", bits=32, epochs=1, **FAST))
    recipe = dict(bits=1, epochs=60, float_warmup_epochs=30, warm_epochs=5, **FAST)  # the cold schedule warms up 30 epochs
    warmup = {parent: pin_warm_start(nights, TrainConfig(init_from=parent, **recipe)).float_warmup_epochs
              for parent in ("float-parent", "night1", "none")}
    # a float parent: one float epoch places the quantizer's switch (and ITQ); a quantized parent went through it; cold: as written
    assert warmup == {"float-parent": 1, "night1": 0, "none": 30}


def test_warm_lr_applies_to_warm_runs_only(nights: WorkDir) -> None:
    recipe = dict(bits=4, epochs=2, warm_epochs=1, warm_lr=1e-4, **FAST)  # one recipe: a cold schedule and a warm one
    warm = train(nights, TrainConfig(run="warm-lr", init_from="night1", **recipe))
    cold = train(nights, TrainConfig(run="cold-lr", init_from="none", **recipe))
    warm_cfg = json.loads((warm.path / "config.json").read_text())["config"]
    cold_cfg = json.loads((cold.path / "config.json").read_text())["config"]
    first_lr = {r.run: json.loads((r.path / "history.json").read_text())[0]["lr"] for r in (warm, cold)}  # what Adam ran with
    assert (warm_cfg["lr"], warm_cfg["epochs"], first_lr["warm-lr"]) == (1e-4, 1, 1e-4)
    assert (cold_cfg["lr"], cold_cfg["epochs"], first_lr["cold-lr"]) == (FAST["lr"], 2, FAST["lr"])


def test_cli_warm_lr_reaches_the_warm_run(nights: WorkDir, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"train": dict(bits=4, epochs=2, **FAST)}))
    out = CliRunner().invoke(app, ["train", "--run", "warm-cli", "--init-from", "night1", "--warm-epochs", "1", "--warm-lr", "3e-4",
                                   "--workdir", str(nights.root), "--config", str(cfg_file)])
    assert out.exit_code == 0, out.output
    history = json.loads((nights.models / "warm-cli" / "history.json").read_text())
    assert len(history) == 1 and history[0]["lr"] == pytest.approx(3e-4)


def test_items_only_warm_start_rebuilds_every_user_row_from_its_items(nights: WorkDir) -> None:
    run = train(nights, TrainConfig(run="items-only", bits=1, epochs=1, init_from="night1", warm_carry_users=False,
                                    **{**FAST, "lr": 1e-12}))
    record = json.loads((run.path / "config.json").read_text())["warm_start"]
    assert (record["users_carried"], record["users_new"], record["items_carried"]) == (0, 65, 80)
    table = load_checkpoint(run.path / "best.pt")["model"]["embedding"]
    grown = load_split(nights.splits / "grown")
    users, items = table[: grown.num_users], table[grown.num_users :]
    for k in range(0, grown.num_users, 9):
        mine = grown.train.indices[grown.train.indptr[k] : grown.train.indptr[k + 1]]
        torch.testing.assert_close(users[k], items[mine].mean(0), atol=1e-5, rtol=0)


def test_carried_rows_are_the_parents_by_id(nights: WorkDir) -> None:
    run = train(nights, TrainConfig(run="frozen", bits=1, epochs=1, init_from="night1", **{**FAST, "lr": 1e-12}))
    parent, child = load_checkpoint(nights.models / "night1" / "best.pt"), load_checkpoint(run.path / "best.pt")
    old = dict(zip(load_split(nights.splits / "tiny").user_ids, parent["model"]["embedding"][:60], strict=True))
    new_ids = load_split(nights.splits / "grown").user_ids
    for k in range(0, 60, 7):
        if str(new_ids[k]).startswith("u"):
            torch.testing.assert_close(child["model"]["embedding"][k], old[new_ids[k]], atol=1e-6, rtol=0)


def test_published_latest_and_missing_parents(nights: WorkDir, tmp_path: Path) -> None:
    cold = train(nights, TrainConfig(run="nothing-published", bits=2, epochs=1, init_from="published", **FAST))
    record = json.loads((cold.path / "summary.json").read_text())["warm_start"]
    assert record["parent_run"] is None and "cold start" in record["note"]  # first night: nothing to warm from
    version = nights.codes / "v1"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text(json.dumps({"version": "v1", "run": "night1", "bits": 2}))
    switch_pointer(nights.codes / "current-2bit", version)
    warm = train(nights, TrainConfig(run="from-published", bits=2, epochs=1, init_from="published", **FAST))
    assert json.loads((warm.path / "config.json").read_text())["warm_start"]["parent_run"] == "night1"
    latest = train(nights, TrainConfig(run="from-latest", bits=2, epochs=1, init_from="latest", **FAST))
    assert json.loads((latest.path / "config.json").read_text())["warm_start"]["parent_run"] == "from-published"
    with pytest.raises(InputError, match="no such trained run"):
        train(nights, TrainConfig(run="x", bits=2, epochs=1, init_from="nope", **FAST))
    with pytest.raises(InputError, match="same width"):
        train(nights, TrainConfig(run="y", bits=2, epochs=1, init_from="night1", **{**FAST, "dim": 8}))


def test_a_resumed_warm_run_restores_and_does_not_reinitialise(nights: WorkDir, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = dict(bits=1, epochs=50, warm_epochs=3, init_from="night1", **FAST)
    full = train(nights, TrainConfig(run="warm-straight", **cfg))
    train_killed_after_epoch(nights, TrainConfig(run="warm-killed", **cfg), 1, monkeypatch)
    import flows.stages.train as stage

    monkeypatch.setattr(stage, "warm_start", lambda *a, **k: pytest.fail("a resumed warm run re-initialised"))
    resumed = train(nights, TrainConfig(run="warm-killed", resume=True, device="cpu"))
    a, b = load_checkpoint(full.path / "last.pt"), load_checkpoint(resumed.path / "last.pt")
    assert b["epoch"] == 3 and torch.equal(a["model"]["embedding"], b["model"]["embedding"])
    assert json.loads((resumed.path / "summary.json").read_text())["warm_start"]["parent_run"] == "night1"


@pytest.mark.slow
def test_nproc_2_warm_run_matches_one_process(nights: WorkDir, tmp_path: Path) -> None:
    cfg = dict(bits=1, epochs=2, init_from="night1", **FAST)
    single = train(nights, TrainConfig(run="warm-one", **cfg))
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"train": cfg}))
    hqgnn = Path(sys.executable).parent / "hqgnn"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([str(hqgnn), "train", "--nproc", "2", "--run", "warm-two", "--workdir", str(nights.root),
                           "--config", str(cfg_file)], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    two = nights.models / "warm-two"
    assert json.loads((two / "summary.json").read_text())["warm_start"]["users_carried"] == 60
    a, b = load_checkpoint(single.path / "last.pt"), load_checkpoint(two / "last.pt")
    torch.testing.assert_close(a["model"]["embedding"], b["model"]["embedding"], atol=1e-4, rtol=0)
