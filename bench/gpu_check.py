"""GPU check (issue 20): one short run that proves the CUDA path against the CPU and measures it.

Imports only the pure library ``hqgnn/`` (torch, torch_geometric, numpy, pyarrow, pydantic) and
``bench/lightgcn_data.py`` (numpy): no prefect, duckdb, great_expectations, FAISS or ``flows``.

    python bench/gpu_check.py --data ../shared/data/gowalla-lightgcn                 # a GPU machine, <= 5 min
    python bench/gpu_check.py --data ../shared/data/gowalla-lightgcn --device cpu --epochs 1

1. Correctness, on a small random graph, the target device against the CPU: one float32 and one
   1-bit GSTE training step (propagated outputs, loss, embedding gradient), each without and
   with AMP (AMP is CUDA-only); GSTE's δ (Hutchinson on the same triples; its random vectors
   differ by device, hence a looser tolerance); int8 codes; full-ranking evaluation.
2. Speed and quality on the data folder (``train.txt``; ``test.txt`` is the test split and a
   seeded ``--valid-ratio`` of each user's train pairs the validation split): float32 with the
   fast recipe for ``--epochs``, then 1 bit with the shipped recipe shortened (``--epochs`` of
   float warm-up, ITQ, ``--epochs`` of GSTE, ``--refine-rounds`` of user-code refinement),
   printing per-epoch seconds, peak GPU memory and test Recall/NDCG@20; then a few float32 steps
   of the same code on the CPU and on the target (``cpu_over_gpu``: the ratio of their step times).
   ``float_epoch_s`` / ``onebit_epoch_s``: the median of the float32 / quantized epochs that ran
   no validation pass (validation runs after the last epoch only); with ``--epochs 1`` the only
   such epoch includes it (and, for 1 bit, the ITQ rotation and the first δ estimate).
3. With two or more GPUs: 2 NCCL processes (``hqgnn.distributed``, spawned by
   ``torch.multiprocessing``) against one process, a few 1-bit GSTE epochs of the small graph
   (``--dist-cpu`` runs the same with 2 gloo processes on the CPU).

Without CUDA (or with ``--device cpu``) one line says so and the CPU half runs: every check that
compares with the CPU compares the CPU with itself, AMP checks are skipped, and ``gpu=none``,
``cpu_over_gpu=na``. Exit status 0 when every check passed, 1 otherwise.

Last line: ``gpu=<name> float_epoch_s=<s> onebit_epoch_s=<s> float_recall20=<r> cpu_over_gpu=<ratio> checks=<passed>/<total>``.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lightgcn_data import carve_valid, read_folder  # noqa: E402

# Every hqgnn symbol, in one block (a rename in the library is a change here and in make_config).
from hqgnn.bits import FLOAT_BITS  # noqa: E402
from hqgnn.checkpoint import load_checkpoint  # noqa: E402
from hqgnn.dataset import SplitData  # noqa: E402
from hqgnn.delta import DeltaState, estimate_delta  # noqa: E402
from hqgnn.distributed import DistributedTrainer, init_process_group  # noqa: E402
from hqgnn.interactions import InteractionMatrix  # noqa: E402
from hqgnn.metrics import evaluate_ranking  # noqa: E402
from hqgnn.quant import quantize  # noqa: E402
from hqgnn.recipe import TrainRecipe  # noqa: E402
from hqgnn.trainer import Trainer  # noqa: E402

APP_MODULES = ("prefect", "duckdb", "great_expectations", "faiss", "flows")

# The recipes of README.md ("Training") and BENCHMARKS.md ("Quality on Gowalla"), shortened by --epochs.
FLOAT_RECIPE: dict[str, Any] = {"bits": 32, "batch_size": 32768, "lr": 2e-2, "lr_schedule": "cosine"}
ONEBIT_RECIPE: dict[str, Any] = {**FLOAT_RECIPE, "bits": 1, "estimator": "gste", "itq_rotation": True, "delta_every": 10}

# Tolerances: max |target - cpu| / max |cpu| over a tensor (float32 summation order differs by device).
TOL_FP32 = 1e-4
TOL_AMP = 1e-2
# δ, relative: Hutchinson's Rademacher vectors come from each device's own generator. About 3x the
# largest CPU seed-to-seed spread of 11 seed pairs at 256 vectors x 4 batches (1.6 % and 4.9 %).
TOL_DELTA = {"table": 0.05, "dimension": 0.15}
TOL_METRIC = 1e-5  # absolute, on mean Recall/NDCG of exactly representable scores
TOL_DIST = 1e-4  # 2 processes vs 1 after a few epochs (tests/model/test_distributed.py: 1e-5 on gloo)


def make_config(**fields: Any) -> TrainRecipe:
    """The one place a training recipe is built."""
    return TrainRecipe(**fields)


# --- data -------------------------------------------------------------------------------------
def split_from_pairs(pairs: dict[str, tuple[np.ndarray, np.ndarray]], num_users: int, num_items: int) -> SplitData:
    """A :class:`SplitData` from ``{"train"|"valid"|"test": (users, items)}`` int arrays ``[nnz]``."""
    mats = {k: InteractionMatrix.from_pairs(u, i, num_users, num_items) for k, (u, i) in pairs.items()}
    return SplitData(mats["train"], mats["valid"], mats["test"], num_users, num_items,
                     np.array([]), np.array([]), "gpu-check", Path("."), {})


def random_pairs(num_users: int = 48, num_items: int = 64, per_user: int = 10, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A small random graph (more items than the trainer's largest cut-off, 50), split 70/15/15 per pair: ``{"train"|"valid"|"test": (users, items)}``."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(num_users), per_user)
    items = np.concatenate([rng.choice(num_items, per_user, replace=False) for _ in range(num_users)])
    r = rng.random(users.size)
    masks = {"train": r < 0.7, "valid": (r >= 0.7) & (r < 0.85), "test": r >= 0.85}
    return {k: (users[m], items[m]) for k, m in masks.items()}


def load_folder(folder: Path, valid_ratio: float, seed: int, max_users: int | None) -> SplitData:
    """train.txt (less a seeded ``valid_ratio`` of each user's pairs, the validation split) and test.txt."""
    raw = read_folder(folder, max_users)
    (tu, ti), (su, si) = raw["train"], raw["test"]
    num_users = int(max(tu.max(), su.max())) + 1
    num_items = int(max(ti.max(), si.max())) + 1
    keep, valid = carve_valid(tu, valid_ratio, seed)
    return split_from_pairs({"train": (tu[keep], ti[keep]), "valid": (tu[valid], ti[valid]), "test": (su, si)},
                            num_users, num_items)


# --- bookkeeping ------------------------------------------------------------------------------
@dataclass
class Checks:
    """Named pass/fail results, printed as they come."""

    results: list[tuple[str, bool]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.results.append((name, ok))
        print(f"check {name}: {'ok' if ok else 'FAILED'} ({detail})", flush=True)

    def skip(self, name: str, why: str) -> None:
        print(f"check {name}: skipped ({why})", flush=True)

    @property
    def passed(self) -> int:
        return sum(ok for _, ok in self.results)


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """``max |got - ref| / max |ref|`` (both moved to the CPU, as float64)."""
    got, ref = got.detach().cpu().double(), ref.detach().cpu().double()
    return float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- 1. correctness on a small random graph -----------------------------------------------------
class FixedTriples:
    """Stands in for the sampler of :func:`estimate_delta`: the same int64 ``[B]`` triples whatever
    the generator, so both devices estimate δ on the same batches."""

    def __init__(self, triples: tuple[torch.Tensor, ...], device: torch.device) -> None:
        self.triples = tuple(t.to(device) for t in triples)

    def sample(self, n: int, generator: torch.Generator | None = None, candidates: int = 1) -> tuple[torch.Tensor, ...]:
        return tuple(t[:n] for t in self.triples)


def step_probe(cfg: TrainRecipe, data: SplitData, device: torch.device, delta: DeltaState,
               batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    """One :meth:`Trainer.step` from the seeded initial table: the propagated outputs ``[N, d]``
    before it, the loss, and the embedding gradient ``[N, d]`` it computed."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, data, Path(tmp), device)
        trainer.delta = delta
        with torch.no_grad():
            out = trainer.model.propagate(trainer.adj)
        loss = trainer.step(*(t.to(device) for t in batch))
        assert trainer.model.embedding.grad is not None
        return {"output": out.cpu(), "loss": loss.float().cpu(), "grad": trainer.model.embedding.grad.cpu()}


def correctness(target: torch.device, checks: Checks) -> None:
    """The target device against the CPU on a small random graph (module docstring, 1)."""
    cpu = torch.device("cpu")
    data = split_from_pairs(random_pairs(), 48, 64)
    common = {"dim": 16, "layers": 3, "batch_size": 64, "lr": 1e-2, "seed": 3,
              "hutchinson_samples": 256, "hutchinson_batches": 4, "hutchinson_rtol": 1e-9}
    float_cfg = make_config(**common, bits=32)
    onebit_cfg = make_config(**common, bits=1, estimator="gste")
    with tempfile.TemporaryDirectory() as tmp:
        ref = Trainer(onebit_cfg, data, Path(tmp), cpu)
        batch = ref.sampler.sample(onebit_cfg.batch_size)
        users, items = ref.embeddings()
    fixed = tuple(ref.sampler.sample(48, generator=torch.Generator().manual_seed(k)) for k in range(2))
    triples = tuple(torch.cat(parts) for parts in zip(*fixed, strict=True))

    # GSTE's δ, per table and per dimension, from the same triples on both devices
    deltas = {}
    for gran in ("table", "dimension"):
        cfg = make_config(**common, bits=1, estimator="gste", delta_granularity=gran)
        d_cpu = estimate_delta(users, items, FixedTriples(triples, cpu), **cfg.delta_settings(), seed=11)  # type: ignore[arg-type]
        d_dev = estimate_delta(users.to(target), items.to(target), FixedTriples(triples, target), **cfg.delta_settings(), seed=11)  # type: ignore[arg-type]
        a = torch.tensor([d_cpu.user, d_cpu.item, *d_cpu.user_dims, *d_cpu.item_dims])
        b = torch.tensor([d_dev.user, d_dev.item, *d_dev.user_dims, *d_dev.item_dims])
        err = rel_err(b, a)
        checks.add(f"delta_{gran}", bool(err <= TOL_DELTA[gran] and (a > 0).all()),
                   f"{target.type} vs cpu: rel err {err:.2e} <= {TOL_DELTA[gran]}; cpu δ user {d_cpu.user:.4g} item {d_cpu.item:.4g}")
        deltas[gran] = d_cpu

    # one step, float32 and 1-bit GSTE (the CPU's per-table δ on both devices), without and with AMP
    for name, cfg in (("float32", float_cfg), ("onebit_gste", onebit_cfg)):
        delta = deltas["table"] if cfg.bits == 1 else DeltaState()
        want = step_probe(cfg, data, cpu, delta, batch)
        for amp in (False, True):
            label = f"step_{name}{'_amp' if amp else ''}"
            if amp and target.type != "cuda":
                checks.skip(label, "AMP is CUDA-only; on the CPU the step is the float32 one")
                continue
            got = step_probe(cfg.model_copy(update={"amp": amp}), data, target, delta, batch)
            tol = TOL_AMP if amp else TOL_FP32
            errs = {k: rel_err(got[k], want[k]) for k in want}
            checks.add(label, max(errs.values()) <= tol,
                       f"{target.type} vs cpu, rel err " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()) + f" <= {tol}")

    # int8 codes made on the device, and full-ranking evaluation scored on it
    table = torch.cat([users, items])
    q_cpu, q_dev = quantize(table, 1), quantize(table.to(target), 1)
    clear = table.abs() > 1e-6  # a sign of a value this close to 0 may differ by rounding
    same = bool((q_dev.codes.cpu() == q_cpu.codes)[clear].all()) and q_dev.codes.device.type == target.type
    checks.add("int8_codes", same and q_dev.codes.dtype == torch.int8 and rel_err(q_dev.scale, q_cpu.scale) <= TOL_FP32,
               f"1-bit int8 codes made on {q_dev.codes.device}, equal to the CPU's")
    gen = torch.Generator().manual_seed(5)
    eu = (torch.randn(48, 8, generator=gen) * 4).round() / 4  # quarter steps: exact scores, many ties
    ei = (torch.randn(64, 8, generator=gen) * 4).round() / 4
    m_cpu = evaluate_ranking(lambda b: eu[b] @ ei.T, data.test, [data.train, data.valid], (20,), 16, cpu)
    du, di = eu.to(target), ei.to(target)
    m_dev = evaluate_ranking(lambda b: du[b] @ di.T, data.test, [data.train, data.valid], (20,), 16, target)
    err = max(abs(m_dev[k] - m_cpu[k]) for k in m_cpu)
    checks.add("evaluate_ranking", err <= TOL_METRIC, f"{target.type} vs cpu, max abs diff {err:.1e} <= {TOL_METRIC} (recall@20 {m_cpu['recall@20']:.4f})")


# --- 2. speed and quality ---------------------------------------------------------------------
def test_metrics(users: torch.Tensor, items: torch.Tensor, bits: int, data: SplitData, device: torch.device) -> dict[str, float]:
    """Test Recall/NDCG@20 of float outputs ``[U, d]``, ``[I, d]`` scored as the run ships them
    (dequantized int8 codes for ``bits < 32``), train and valid masked, on ``device``."""
    users, items = users.to(device), items.to(device)
    if bits != FLOAT_BITS:
        users, items = quantize(users, bits).dequantize(), quantize(items, bits).dequantize()
    return evaluate_ranking(lambda b: users[b] @ items.T, data.test, [data.train, data.valid], (20,), 1024, device)


def train_recipe(name: str, cfg: TrainRecipe, data: SplitData, device: torch.device) -> dict[str, Any]:
    """Train ``cfg`` on ``device`` and test its best checkpoint; per-epoch lines as it goes."""
    def on_epoch(r: dict[str, Any]) -> None:
        print(f"  {name} epoch {r['epoch']}: {r['epoch_seconds']:.2f} s, loss {r['loss']:.4f}, "
              f"{'quantized' if r['quantized'] else 'float'}, valid recall@20 {r['valid_recall@20']:.4f}", flush=True)

    def on_refine(r: dict[str, Any]) -> None:
        print(f"  {name} refinement round {r['round']}: {r['seconds']:.2f} s, {r['flips']} flips, "
              f"valid recall@20 {r['valid_recall@20']:.4f}", flush=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, data, Path(tmp), device, on_epoch=on_epoch, on_refine=on_refine)
        t0 = time.perf_counter()
        res = trainer.fit()
        sync(device)
        seconds = time.perf_counter() - t0
        best = load_checkpoint(Path(tmp) / "best.pt")
    test = test_metrics(best["user_emb"], best["item_emb"], cfg.bits, data, device)
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "n/a"
    # an epoch's time without its validation pass: the median over epochs that did not evaluate
    timed = [r for r in res.history if r["quantized"] == (cfg.bits != FLOAT_BITS)]
    plain = [r["epoch_seconds"] for r in timed if math.isnan(r["valid_recall@20"])]
    epoch_s = statistics.median(plain or [r["epoch_seconds"] for r in timed])
    refine_s = sum(r["seconds"] for r in (res.code_refinement or {}).get("rounds", []))
    print(f"{name}: {res.epochs_run} epochs in {seconds:.1f} s (refinement {refine_s:.1f} s), "
          f"{'quantized ' if cfg.bits != FLOAT_BITS else ''}epoch {epoch_s:.2f} s, peak GPU memory {peak}, "
          f"test recall@20 {test['recall@20']:.4f} ndcg@20 {test['ndcg@20']:.4f}", flush=True)
    return {"epoch_s": epoch_s, "test": test, "seconds": seconds}


def step_seconds(cfg: TrainRecipe, data: SplitData, device: torch.device, steps: int) -> float:
    """Mean seconds of one :meth:`Trainer.step` on ``device`` over ``steps`` steps (after one untimed)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, data, Path(tmp), device)
        batches = [trainer.sampler.sample(cfg.batch_size) for _ in range(steps + 1)]
        trainer.step(*batches[0])
        sync(device)
        t0 = time.perf_counter()
        for batch in batches[1:]:
            trainer.step(*batch)
        sync(device)
        return (time.perf_counter() - t0) / steps


# --- 3. two processes against one ---------------------------------------------------------------
DIST_CFG: dict[str, Any] = {"dim": 16, "batch_size": 71, "lr": 1e-2, "epochs": 3, "bits": 1, "estimator": "gste",
                            "delta_every": 1, "hutchinson_samples": 4, "hutchinson_batches": 2, "seed": 7}


def _dist_worker(rank: int, world: int, port: int, device: str, out: str) -> None:
    """One rank of the 2-process run (spawned); rank 0 saves the final layer-0 table ``[N, d]`` to ``out``."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    ctx = init_process_group(device, timeout_s=300)
    try:
        cfg = make_config(**DIST_CFG)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = DistributedTrainer(cfg, split_from_pairs(random_pairs(), 48, 64), Path(tmp), ctx)
            trainer.fit()
            if rank == 0:
                torch.save(trainer.model.embedding.detach().cpu(), out)
    finally:
        torch.distributed.destroy_process_group()


def distributed(device: torch.device, checks: Checks) -> None:
    """2 processes (NCCL on GPUs 0 and 1, gloo on the CPU) against 1 process, same config."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.pt")
        t0 = time.perf_counter()
        mp.spawn(_dist_worker, args=(2, port, device.type, out), nprocs=2, join=True)
        two = torch.load(out)
        seconds = time.perf_counter() - t0
        single = Trainer(make_config(**DIST_CFG), split_from_pairs(random_pairs(), 48, 64), Path(tmp),
                         torch.device(device.type, 0) if device.type == "cuda" else device)
        single.fit()
    err = rel_err(two, single.model.embedding)
    backend = "nccl" if device.type == "cuda" else "gloo"
    checks.add(f"two_processes_{backend}", err <= TOL_DIST,
               f"{DIST_CFG['epochs']} 1-bit GSTE epochs, 2 {backend} processes vs 1: rel err {err:.1e} <= {TOL_DIST} ({seconds:.0f} s with start-up)")


# --- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a LightGCN-format folder (train.txt, test.txt)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--epochs", type=int, default=20, help="float32 epochs; 1 bit: as many warm-up then as many GSTE epochs")
    ap.add_argument("--refine-rounds", type=int, default=2, help="1-bit user-code refinement rounds (shipped: 8)")
    ap.add_argument("--cpu-steps", type=int, default=3, help="float32 steps timed on the CPU (and 10 on the GPU)")
    ap.add_argument("--valid-ratio", type=float, default=0.05)
    ap.add_argument("--max-users", type=int, default=None, help="keep users below this id (a quick subsample)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    ap.add_argument("--dist-cpu", action="store_true", help="also run the 2-process check with gloo on the CPU")
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available (torch.cuda.is_available() is false)", file=sys.stderr)
        return 2
    use_cuda = args.device != "cpu" and torch.cuda.is_available()
    target = torch.device("cuda", 0) if use_cuda else torch.device("cpu")
    gpu = torch.cuda.get_device_name(0).replace(" ", "_") if use_cuda else "none"
    if use_cuda:
        print(f"GPU: {torch.cuda.device_count()} visible, checking cuda:0 = {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    else:
        why = "--device cpu" if args.device == "cpu" else "no CUDA (torch.cuda.is_available() is false)"
        print(f"{why}: running the CPU half only (checks compare the CPU with itself, AMP and NCCL skipped); torch {torch.__version__}", flush=True)
    checks = Checks()
    t_start = time.perf_counter()

    print("== 1. correctness: small random graph, target vs CPU", flush=True)
    correctness(target, checks)

    print(f"== 2. speed and quality: {args.data}", flush=True)
    data = load_folder(args.data, args.valid_ratio, 2024, args.max_users)
    print(f"data: {data.num_users} users, {data.num_items} items, train {data.train.nnz}, valid {data.valid.nnz}, "
          f"test {data.test.nnz} (valid: {args.valid_ratio:.0%} of each user's train.txt pairs, seed 2024)", flush=True)
    n = args.epochs
    float_cfg = make_config(**FLOAT_RECIPE, epochs=n, eval_every=n)
    onebit_cfg = make_config(**ONEBIT_RECIPE, epochs=2 * n, float_warmup_epochs=n, eval_every=2 * n,
                             refine_user_codes=args.refine_rounds)
    print(f"float32 recipe: {FLOAT_RECIPE} epochs={n} (fast recipe: 300)", flush=True)
    print(f"1-bit recipe: {ONEBIT_RECIPE} epochs={2 * n} float_warmup_epochs={n} refine_user_codes={args.refine_rounds} "
          "(shipped: 60, 30 and 8)", flush=True)
    fl = train_recipe("float32", float_cfg, data, target)
    ob = train_recipe("1-bit", onebit_cfg, data, target)
    chance = 20 / data.num_items
    for name, res in (("float32", fl), ("onebit", ob)):
        r = res["test"]["recall@20"]
        checks.add(f"{name}_learns", math.isfinite(r) and r > 2 * chance,
                   f"test recall@20 {r:.4f} > 2 x chance {2 * chance:.4f}")
    steps_per_epoch = math.ceil(data.train.nnz / float_cfg.batch_size)
    ratio = "na"
    cpu_step = step_seconds(float_cfg, data, torch.device("cpu"), args.cpu_steps)
    print(f"float32 step on the CPU ({torch.get_num_threads()} threads): {cpu_step * 1000:.0f} ms over {args.cpu_steps} steps, "
          f"{cpu_step * steps_per_epoch:.2f} s per epoch of {steps_per_epoch} steps", flush=True)
    if use_cuda:
        gpu_step = step_seconds(float_cfg, data, target, 10)
        ratio = f"{cpu_step / gpu_step:.1f}"
        print(f"float32 step on {gpu}: {gpu_step * 1000:.1f} ms over 10 steps, {gpu_step * steps_per_epoch:.2f} s per epoch; "
              f"cpu/gpu {ratio}", flush=True)

    print("== 3. two processes against one", flush=True)
    if use_cuda and torch.cuda.device_count() >= 2:
        distributed(target, checks)
    elif args.dist_cpu:
        distributed(torch.device("cpu"), checks)
    else:
        print("skipped: fewer than 2 GPUs visible (--dist-cpu runs it with gloo on the CPU)", flush=True)

    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(APP_MODULES))
    checks.add("pure_library", not loaded, f"application modules loaded: {loaded or 'none'}")
    print(f"total {time.perf_counter() - t_start:.0f} s", flush=True)
    print(f"gpu={gpu} float_epoch_s={fl['epoch_s']:.3f} onebit_epoch_s={ob['epoch_s']:.3f} "
          f"float_recall20={fl['test']['recall@20']:.4f} cpu_over_gpu={ratio} checks={checks.passed}/{len(checks.results)}")
    return 0 if checks.passed == len(checks.results) else 1


if __name__ == "__main__":
    sys.exit(main())
