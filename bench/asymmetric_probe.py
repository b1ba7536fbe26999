"""Probe (issue 19): float user vectors scored against b-bit item codes ("asymmetric"), trained
quantization-aware on the item side only, vs the shipped symmetric codes (both sides quantized).

Bytes per item are the same (the item code + scale); users ship float32 (``4 * dim`` B per user)
and scoring becomes ``s_i <e_u, q_i>``, a float product with the item codes instead of a popcount.
This measures whether that trade is worth building into the product (trainer, export, retrieval,
serving); it does not change the library: it runs ``bench/quality.py`` with the trainer's two
quantizer calls per side patched so that only the item call quantizes (in a step: users' rows,
then items'; in an evaluation: the user table, then the item table), and reads test with float
users against the dequantized item codes (``--eval-only --ptq-bits B`` of a float run: its items
quantized after training, against its float users). The first argument picks the harness whose flags follow:
``quality`` (``bench/quality.py``, LightGCN-format data) or ``frontier`` (``bench/frontier.py``, one
point per invocation, a probe: give it its own ``--schedule`` tag and ``--override``; its record
goes to the JSONL beside the grid's, reported apart)::

    flock /tmp/bench.lock .venv/bin/python bench/asymmetric_probe.py quality QUALITY_FLAGS
    flock /tmp/bench.lock .venv/bin/python bench/asymmetric_probe.py frontier --dataset lastfm --bits 1 --dim 64 --seed 2024 \
        --schedule asym-slow --override '{"lr": 5e-3, "lr_schedule": "constant", "epochs": 150, "eval_every": 5, "patience": 3}'

User-code refinement is off (there are no user codes).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality  # noqa: E402
import torch  # noqa: E402
from quality import TrainConfig, evaluate_ranking, itq_rotation, load_run, load_split, quantize  # noqa: E402

import hqgnn.trainer as trainer  # noqa: E402
from hqgnn.bits import FLOAT_BITS  # noqa: E402


def items_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` on every second call (the item side; the trainer quantizes users first, then items)."""
    calls = {"n": 0}

    def wrapped(x: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return x if calls["n"] % 2 == 1 else fn(x, *args, **kwargs)

    return wrapped


def evaluate_on_test(run_path: Path) -> tuple[Any, dict[str, float]]:
    """Test metrics @20/@50 of float users against the run's dequantized item codes (a float run's
    float items)."""
    run = load_run(run_path)
    data = load_split(run.split_dir)
    users, items = run.user_emb, run.item_emb
    if run.bits != FLOAT_BITS:  # a float run (--eval-only of a parent) is scored as it is
        items = run.quantize_items().dequantize()
    return run, evaluate_ranking(lambda b: users[b] @ items.T, data.test, [data.train, data.valid], (20, 50), 1024)


def post_training_quantization(users: torch.Tensor, items: torch.Tensor, bits: int, data: Any) -> dict[str, dict[str, float]]:
    """``bench/quality.py --eval-only --ptq-bits B`` with float users: test metrics of a float
    run's items quantized after training (as trained, and after the trainer's ITQ rotation,
    applied to both sides so that scores are kept), scored against its float users."""
    rot = itq_rotation(torch.cat([users, items]), seed=TrainConfig().seed)
    out = {}
    for name, (u, i) in {"as_trained": (users, items), "itq": (users @ rot, items @ rot)}.items():
        qi = quantize(i, bits).dequantize()
        out[name] = evaluate_ranking(lambda b, u=u, qi=qi: u[b] @ qi.T, data.test, [data.train, data.valid], (20, 50), 1024)
    return out


def no_user_refinement(settings: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``bench/frontier.py``'s point settings without user-code refinement."""
    return lambda *args, **kwargs: settings(*args, **kwargs) | {"refine_user_codes": 0}


if __name__ == "__main__":
    os.environ.setdefault("DO_NOT_TRACK", "1")
    harness = sys.argv.pop(1) if len(sys.argv) > 1 else ""
    if harness not in ("quality", "frontier"):
        sys.exit("usage: asymmetric_probe.py quality|frontier FLAGS (the flags of bench/quality.py or bench/frontier.py)")
    if "--refine-user-codes" in sys.argv or any(a in sys.argv for a in ("--queue", "--run-missing")):
        sys.exit("asymmetric_probe: no --refine-user-codes (users stay float) and no --queue (its subprocesses would run unpatched)")
    trainer.straight_through = items_only(trainer.straight_through)
    trainer.fake_quantize = items_only(trainer.fake_quantize)
    if harness == "quality":
        quality.evaluate_on_test = evaluate_on_test
        quality.post_training_quantization = post_training_quantization
        sys.argv += ["--refine-user-codes", "0"]
        quality.main()
    else:
        import frontier

        frontier.evaluate_on_test = evaluate_on_test
        frontier.train_settings = no_user_refinement(frontier.train_settings)
        frontier.main()
    print(json.dumps({"probe": "asymmetric: float users x item codes"}))
