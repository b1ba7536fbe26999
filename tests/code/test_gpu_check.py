"""bench/gpu_check.py (issue 20): its CPU half runs in CI time, passes its checks, prints the last
line, and imports no application module (prefect, duckdb, great_expectations, faiss, flows)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from bench_scripts import load_bench_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"
BLOCKED = ("prefect", "duckdb", "great_expectations", "faiss", "flows")
LAST_LINE = re.compile(
    r"^gpu=(?P<gpu>\S+) float_epoch_s=(?P<f>[0-9.]+) onebit_epoch_s=(?P<o>[0-9.]+) "
    r"float_recall20=(?P<r>[0-9.]+) cpu_over_gpu=(?P<ratio>na|[0-9.]+) checks=(?P<passed>\d+)/(?P<total>\d+)$"
)
# Runs the script with every application module blocked: importing one raises ImportError.
BLOCKER = """
import runpy, sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"gpu_check must not import {{name}}")
        return None
sys.meta_path.insert(0, Blocker())
sys.argv = [{script!r}, *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
"""


def lightgcn_data() -> ModuleType:
    """``bench/lightgcn_data.py``."""
    return load_bench_script("lightgcn_data")


def tiny_folder(root: Path, users: int = 120, items: int = 96, topics: int = 6) -> Path:
    """A LightGCN-format folder: each user likes 10 items of one topic and 2 of any (3 to test),
    plus a blank line and a user without items (both skipped)."""
    rng = np.random.default_rng(0)
    per = items // topics
    train, test = [], []
    for u in range(users):
        t = u % topics
        liked = np.unique(np.concatenate([rng.choice(np.arange(t * per, (t + 1) * per), 10, replace=False),
                                          rng.choice(items, 2, replace=False)]))
        rng.shuffle(liked)
        test.append(f"{u} " + " ".join(map(str, liked[:3])))
        train.append(f"{u} " + " ".join(map(str, liked[3:])))
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.txt").write_text("\n".join(train) + "\n\n")
    (root / "test.txt").write_text("\n".join(test) + f"\n{users}\n")
    return root


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """``gpu_check.py --device cpu --epochs 1`` on the tiny folder, application modules blocked."""
    folder = tiny_folder(tmp_path_factory.mktemp("gowalla-like"))
    code = BLOCKER.format(blocked=BLOCKED, script=str(SCRIPT))
    return subprocess.run([sys.executable, "-c", code, "--data", str(folder), "--device", "cpu", "--epochs", "1",
                           "--threads", "2"], capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.slow
def test_cpu_half_passes_its_checks_and_ends_with_the_summary_line(cpu_run: subprocess.CompletedProcess[str]) -> None:
    assert cpu_run.returncode == 0, cpu_run.stdout[-3000:] + cpu_run.stderr[-3000:]
    lines = cpu_run.stdout.strip().splitlines()
    assert lines[0].startswith("--device cpu: running the CPU half only")
    m = LAST_LINE.match(lines[-1])
    assert m, lines[-1]
    assert m["gpu"] == "none" and m["ratio"] == "na"
    assert int(m["total"]) >= 8 and m["passed"] == m["total"]
    assert float(m["f"]) > 0 and float(m["o"]) > 0 and 0 < float(m["r"]) <= 1
    assert "FAILED" not in cpu_run.stdout
    assert "check step_onebit_gste_amp: skipped" in cpu_run.stdout  # AMP is CUDA-only


@pytest.mark.slow
def test_it_imports_no_application_module(cpu_run: subprocess.CompletedProcess[str]) -> None:
    # the run above had every application module blocked at import, and the script checks sys.modules itself
    assert cpu_run.returncode == 0, cpu_run.stderr[-3000:]
    assert "must not import" not in cpu_run.stderr
    assert "check pure_library: ok (application modules loaded: none)" in cpu_run.stdout


def test_the_blocker_does_block(tmp_path: Path) -> None:
    script = tmp_path / "imports_duckdb.py"
    script.write_text("import duckdb\n")
    out = subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=BLOCKED, script=str(script))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "gpu_check must not import duckdb" in out.stderr


def test_reader_skips_blank_and_short_lines_and_valid_keeps_a_train_pair(tmp_path: Path) -> None:
    data = lightgcn_data()
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "train.txt").write_text("0 3 1\n\n2\n1 0 2 4 5\n")
    (folder / "test.txt").write_text("1 1\n0 0\n")
    pairs = data.read_folder(folder)
    assert pairs["train"][0].tolist() == [0, 0, 1, 1, 1, 1] and pairs["train"][1].tolist() == [3, 1, 0, 2, 4, 5]
    assert data.read_folder(folder, max_users=1)["test"][1].tolist() == [0]
    keep, valid = data.carve_valid(pairs["train"][0], 0.5, seed=1)
    assert (keep ^ valid).all() and valid.sum() >= 1
    for u in (0, 1):
        assert keep[pairs["train"][0] == u].sum() >= 1  # every user keeps a train pair
    (folder / "test.txt").write_text("0 x\n")
    with pytest.raises(ValueError, match=r"test.txt:1: expected integer ids"):
        data.read_folder(folder)


@pytest.mark.gpu
@pytest.mark.slow
def test_cuda_half_passes(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tiny_folder(tmp_path / "f")), "--epochs", "2"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    m = LAST_LINE.match(out.stdout.strip().splitlines()[-1])
    assert m and m["gpu"] != "none" and m["ratio"] != "na" and m["passed"] == m["total"]


def test_a_resume_on_another_device_type_reseeds_the_sampler(tmp_path: Path) -> None:
    """``last.pt`` saved on CUDA holds a 16-byte Philox sampler state, which a CPU generator
    rejects (and a CPU state a CUDA one): a resume with another ``--device`` must not fail there."""
    import torch

    from hqgnn.checkpoint import load_checkpoint, save_checkpoint
    from hqgnn.dataset import SplitData
    from hqgnn.interactions import InteractionMatrix
    from hqgnn.recipe import TrainRecipe
    from hqgnn.trainer import Trainer

    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 30, 300), rng.integers(0, 60, 300)
    mats = [InteractionMatrix.from_pairs(u[s], i[s], 30, 60) for s in (slice(0, 200), slice(200, 250), slice(250, 300))]
    data = SplitData(*mats, 30, 60, np.array([]), np.array([]), "t", tmp_path, {})
    cfg = TrainRecipe(bits=32, dim=8, epochs=2, batch_size=64)

    def kill(record: dict) -> None:
        raise InterruptedError  # a kill after epoch 1 of 2 (last.pt is written before on_epoch)

    with pytest.raises(InterruptedError):
        Trainer(cfg, data, tmp_path, torch.device("cpu"), on_epoch=kill).fit()
    state = load_checkpoint(tmp_path / "last.pt")
    state["rng"]["sampler"] = torch.zeros(16, dtype=torch.uint8)  # as a CUDA generator saves it
    save_checkpoint(tmp_path / "last.pt", state)
    trainer = Trainer(cfg, data, tmp_path, torch.device("cpu"))
    trainer.restore()
    assert trainer.epoch == 1 and trainer.fit().epochs_run == 2
