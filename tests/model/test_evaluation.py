"""Offline evaluation (hqgnn.evaluation, flows.stages.evaluate): masking in the evaluation path
against a naive loop, codes == dequantized embeddings, and the report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from codes_fixtures import make_run, make_split, planted

from flows.config import EvaluateConfig
from flows.split_files import load_split
from flows.stages.evaluate import evaluate
from flows.workdir import WorkDir
from hqgnn.evaluation import code_tables, evaluate_run
from hqgnn.interactions import InteractionMatrix
from hqgnn.metrics import evaluate_ranking
from hqgnn.quant import quantize
from hqgnn.retrieval import Retriever


def rows_of(m: InteractionMatrix, u: int) -> set[int]:
    return set(m.indices[m.indptr[u] : m.indptr[u + 1]].tolist())


def naive(scores: np.ndarray, truth: InteractionMatrix, exclude: list[InteractionMatrix], k: int) -> tuple[float, float]:
    """Recall@k and NDCG@k by a plain loop (IDCG from min(|truth|, k) hits)."""
    recalls, ndcgs = [], []
    for u in range(truth.num_users):
        t = rows_of(truth, u)
        if not t:
            continue
        banned = set().union(*(rows_of(m, u) for m in exclude))
        ranked = sorted((j for j in range(scores.shape[1]) if j not in banned), key=lambda j: (-scores[u, j], j))[:k]
        hits = [j in t for j in ranked]
        recalls.append(sum(hits) / len(t))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(t), k)))
        ndcgs.append(sum(h / math.log2(r + 2) for r, h in enumerate(hits)) / idcg)
    return float(np.mean(recalls)), float(np.mean(ndcgs))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[WorkDir, Path, np.ndarray, np.ndarray]:
    w = WorkDir(tmp_path_factory.mktemp("eval"))
    u, i, split = planted(num_users=40, num_items=100, seed=3)
    return w, make_split(w, split, len(u), len(i)), u, i


@pytest.mark.parametrize("bits", [1, 4])
def test_masking_in_the_evaluation_path_matches_a_naive_loop(data: tuple, bits: int) -> None:
    _, split_dir, u, i = data
    s = load_split(split_dir)
    ue, ie = torch.from_numpy(u), torch.from_numpy(i)
    users, items = code_tables(ue, ie, bits, quantize(ue, bits), quantize(ie, bits))
    rows = evaluate_run(ue, ie, users, items, s.train, s.valid, s.test, ks=(5, 20), latency_users=8)
    scores = Retriever(users, items).scores(np.arange(s.num_users)).numpy()
    for split_name, truth, exclude in (("valid", s.valid, [s.train]), ("test", s.test, [s.train, s.valid])):
        row = next(r for r in rows if r["variant"] == "codes" and r["split"] == split_name)
        for k in (5, 20):
            recall, ndcg = naive(scores, truth, exclude, k)
            assert row[f"recall@{k}"] == pytest.approx(recall, abs=1e-6)
            assert row[f"ndcg@{k}"] == pytest.approx(ndcg, abs=1e-6)
    # without the mask, train items (planted as the user's best) would crowd the top
    unmasked = evaluate_ranking(lambda b: torch.from_numpy(scores[b.numpy()]), s.valid, (), (5,))
    masked = next(r for r in rows if r["variant"] == "codes" and r["split"] == "valid")
    assert masked["recall@5"] > unmasked["recall@5"]


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_codes_evaluate_like_dequantized_embeddings(data: tuple, bits: int) -> None:
    _, split_dir, u, i = data
    s = load_split(split_dir)
    qu, qi = quantize(torch.from_numpy(u), bits), quantize(torch.from_numpy(i), bits)
    users, items = code_tables(torch.from_numpy(u), torch.from_numpy(i), bits, qu, qi)
    du, di = qu.dequantize().double(), qi.dequantize().double()
    for truth, exclude in ((s.valid, (s.train,)), (s.test, (s.train, s.valid))):
        from_codes = evaluate_ranking(Retriever(users, items).scores, truth, exclude, (10, 20))
        from_floats = evaluate_ranking(lambda b: (du[b] @ di.T).float(), truth, exclude, (10, 20))
        assert from_codes == pytest.approx(from_floats, abs=1e-9)


def test_evaluate_stage_writes_the_report(data: tuple) -> None:
    w, split_dir, u, i = data
    make_run(w, "r1", split_dir, u, i, 1)
    res = evaluate(w, EvaluateConfig(ks=(10, 20), rerank=True, rerank_r=30))
    folder = w.report("r1")
    assert res.report_dir == folder
    table = pq.read_table(folder / "metrics.parquet").to_pylist()
    assert {(r["variant"], r["split"]) for r in table} == {
        (v, s) for v in ("float", "codes", "codes_hamming", "rerank") for s in ("valid", "test")
    }
    assert all(r["latency_ms_per_query"] > 0 and r["search_bytes_per_item"] > 0 for r in table)
    by = {(r["variant"], r["split"]): r for r in table}
    assert by[("codes", "test")]["search_bytes_per_item"] == 8 + 4 and by[("float", "test")]["search_bytes_per_item"] == 256
    doc = json.loads((folder / "metrics.json").read_text())
    assert doc["run"] == "r1" and len(doc["rows"]) == 8
    report = (folder / "report.md").read_text()
    assert "min(|test items of the user|, K)" in report and "recall@10" in report
    for png in ("recall_vs_bits.png", "recall_vs_latency.png"):
        assert (folder / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_stage_reports_a_float_users_run(data: tuple) -> None:
    w, split_dir, u, i = data
    make_run(w, "fu", split_dir, u, i, 1, float_users=True)
    evaluate(w, EvaluateConfig(run="fu", ks=(10, 20)))
    folder = w.report("fu")
    table = pq.read_table(folder / "metrics.parquet").to_pylist()
    assert {r["variant"] for r in table} == {"float", "codes"}  # no Hamming ranking without user codes
    doc = json.loads((folder / "metrics.json").read_text())
    assert (doc["bits"], doc["user_bits"]) == (1, 32)
    assert "bits: 1 (items; users float32)" in (folder / "report.md").read_text()
