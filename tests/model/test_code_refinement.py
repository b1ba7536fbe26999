"""Greedy bit flips of 1-bit user codes (hqgnn.code_refinement): exact gains, invariants, recovery."""

from __future__ import annotations

import pytest
import torch

from hqgnn.code_refinement import best_flips, refine_round, refine_user_codes
from hqgnn.interactions import InteractionMatrix
from hqgnn.quant import fake_quantize, sign_codes


def objective(users: torch.Tensor, items: torch.Tensor, train: InteractionMatrix, tau: float) -> torch.Tensor:
    """``L_u`` of every user ``[U]``, over all items (the explicit form of the module docstring)."""
    scores = fake_quantize(users, 1) @ fake_quantize(items, 1).T / tau  # [U, I]
    pos = train.dense_rows(torch.arange(train.num_users)).to(scores.dtype)
    return (scores * pos).sum(1) - pos.sum(1) * torch.logsumexp(scores, 1)


def random_case(seed: int, users: int = 12, items: int = 40, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor, InteractionMatrix]:
    g = torch.Generator().manual_seed(seed)
    u, i = torch.randn(users, dim, generator=g, dtype=torch.float64), torch.randn(items, dim, generator=g, dtype=torch.float64)
    mask = torch.rand(users, items, generator=g) < 0.15
    mask[0] = False  # a user without train items
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return u, i, InteractionMatrix.from_pairs(rows, cols, users, items)


def test_best_flip_gains_equal_explicit_flips() -> None:
    users, items, train = random_case(0)
    tau, rows = 0.7, torch.arange(train.num_users)
    pos = train.dense_rows(rows).to(users.dtype)
    iq = fake_quantize(items, 1)
    gain, bit = best_flips(fake_quantize(users, 1), iq, pos @ iq, pos.sum(1), tau, top_m=train.num_items)
    before = objective(users, items, train, tau)
    explicit = torch.empty(train.num_users, users.shape[1], dtype=users.dtype)
    for j in range(users.shape[1]):
        flipped = users.clone()
        flipped[:, j] *= -1
        explicit[:, j] = objective(flipped, items, train, tau) - before
    assert torch.allclose(gain, explicit.max(1).values, atol=1e-9)
    assert torch.equal(bit, explicit.argmax(1))


def test_a_round_flips_one_bit_where_it_helps_and_keeps_magnitudes() -> None:
    users, items, train = random_case(1)
    tau = 1.5
    out, flips = refine_round(users, items, train, tau, top_m=train.num_items, batch_users=5)
    changed = (sign_codes(out) != sign_codes(users)).sum(1)
    assert int(changed.max()) <= 1 and int(changed.sum()) == flips > 0
    assert int(changed[0]) == 0  # no train items: nothing to fit
    assert torch.equal(out.abs(), users.abs())  # so the per-node scale mean|x| is unchanged
    gained = objective(out, items, train, tau) - objective(users, items, train, tau)
    assert bool((gained[changed == 1] > 0).all()) and bool((gained[changed == 0] == 0).all())


def test_rounds_recover_corrupted_codes_of_a_planted_model() -> None:
    """Users' train items are the top items of planted codes. After 2 bits per user are corrupted, a
    few rounds bring most users back to (at least) the planted codes' objective; greedy single flips
    can stop at a local optimum, so not all of them."""
    g = torch.Generator().manual_seed(7)
    true_users = sign_codes(torch.randn(30, 16, generator=g))
    items = torch.randn(200, 16, generator=g)
    top = (true_users @ sign_codes(items).T * items.abs().mean(1)).topk(12, dim=1).indices
    train = InteractionMatrix.from_pairs(torch.arange(30).repeat_interleave(12), top.flatten(), 30, 200)
    corrupted = true_users.clone()
    for u in range(30):
        corrupted[u, torch.randperm(16, generator=g)[:2]] *= -1
    tau, users = 0.5, corrupted
    for _ in range(4):
        users, _ = refine_round(users, items, train, tau, top_m=64)
    planted, start, end = (objective(x, items, train, tau) for x in (true_users, corrupted, users))
    assert bool((end >= start).all()) and float(end.sum()) > float(start.sum())
    assert float((end >= planted - 1e-4).float().mean()) >= 0.8


def test_a_zero_coordinate_flips_to_a_negative_code() -> None:
    items = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    users = torch.tensor([[1.0, 0.0]])  # codes (+1, +1): item 0 scores highest; the user's item is 1
    train = InteractionMatrix.from_pairs(torch.tensor([0]), torch.tensor([1]), 1, 3)
    out, flips = refine_round(users, items, train, 1.0, top_m=3)
    assert flips == 1 and sign_codes(out).tolist() == [[1.0, -1.0]]  # the 0 coordinate (-0.0 would code +1)
    assert float(out[0, 1]) < 0 and float(out.abs().mean()) == pytest.approx(0.5)
    assert bool((objective(out, items, train, 1.0) > objective(users, items, train, 1.0)).all())


@pytest.mark.parametrize("top_m", [8, 40])
def test_rounds_raise_the_objective_over_all_items(top_m: int) -> None:
    """With the log-sum-exp on each user's top items (an approximation), the exact objective still rises."""
    users, items, train = random_case(2, users=20, items=40)
    out, _ = refine_round(users, items, train, 1.0, top_m=top_m)
    assert float(objective(out, items, train, 1.0).sum()) > float(objective(users, items, train, 1.0).sum())


def test_refine_user_codes_keeps_the_first_best_round_on_validation() -> None:
    """The callback scores each round; the record names every round run and the count kept."""
    users, items, train = random_case(3, users=20, items=40)
    scores = iter([0.3, 0.5, 0.5, 0.1])  # rounds 1-4: round 2 is the first best

    def evaluate(u: torch.Tensor) -> dict[str, float]:
        r = next(scores)
        return {"recall@20": r, "ndcg@20": r / 2}

    seen: list[dict[str, object]] = []
    out = refine_user_codes(users, items, train, evaluate, {"recall@20": 0.4, "ndcg@20": 0.2}, rounds=4,
                            temperature=1.0, top_m=8, on_round=seen.append)
    expected = users
    for _ in range(2):
        expected, _ = refine_round(expected, items, train, 1.0, 8)
    assert torch.equal(out.users, expected) and out.valid == {"recall@20": 0.5, "ndcg@20": 0.25}
    assert out.record["rounds_kept"] == 2 and out.record["valid_before"] == {"recall@20": 0.4, "ndcg@20": 0.2}
    assert [r["round"] for r in out.record["rounds"]] == [1, 2, 3, 4] and seen == out.record["rounds"]
    assert [r["kept"] for r in seen] == [0, 2, 2, 2] and all(r["of"] == 4 for r in seen)


def test_refine_user_codes_keeps_the_trained_codes_when_no_round_beats_them() -> None:
    users, items, train = random_case(4)
    out = refine_user_codes(users, items, train, lambda u: {"recall@20": 0.0, "ndcg@20": 0.0},
                            {"recall@20": 0.1, "ndcg@20": 0.1}, rounds=2, top_m=8)
    assert out.users is users and out.record["rounds_kept"] == 0 and out.valid == {"recall@20": 0.1, "ndcg@20": 0.1}
    with pytest.raises(ValueError, match="rounds"):
        refine_user_codes(users, items, train, lambda u: {}, {}, rounds=-1)
