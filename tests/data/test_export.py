"""`hqgnn export` (flows.stages.export): the code Parquet, the manifest, the publish gate and
`hqgnn recommend` on the published codes. Tiny planted runs (tests/codes_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from codes_fixtures import make_run, make_split, planted

import flows.stages.export as export_stage
from flows.code_versions import read_code_version
from flows.config import ExportConfig
from flows.errors import DataContractError, InputError, PublishGateError
from flows.split_files import load_split
from flows.stages.export import export
from flows.stages.recommend import recommend
from flows.workdir import WorkDir
from hqgnn.quant import quantize
from hqgnn.retrieval import Retriever


@pytest.fixture()
def work(tmp_path: Path) -> tuple[WorkDir, Path, np.ndarray, np.ndarray]:
    w = WorkDir(tmp_path / "w")
    u, i, split = planted()
    return w, make_split(w, split, len(u), len(i)), u, i


def current(w: WorkDir, name: str = "current") -> str:
    return (w.codes / name).resolve().name


def test_parquet_schema_and_manifest(work: tuple) -> None:
    w, split_dir, u, i = work
    make_run(w, "r4", split_dir, u, i, 4)
    res = export(w, ExportConfig())
    assert res.published and current(w) == res.version == current(w, "current-4bit")
    schema = pq.read_schema(res.path / "items.parquet")
    assert schema.field("item_idx").type == pa.int32() and schema.field("item_id").type == pa.string()
    assert schema.field("bits").type == pa.int8() and schema.field("code").type == pa.binary()
    assert schema.field("scale").type == pa.float32() and schema.field("code_values").type == pa.list_(pa.int8())
    manifest = json.loads((res.path / "manifest.json").read_text())
    assert (manifest["bits"], manifest["dim"], manifest["estimator"], manifest["run"]) == (4, 64, "gste", "r4")
    assert manifest["snapshot"] == "snap1" and set(manifest["snapshot_hashes"]) >= {"train.parquet", "users.parquet"}
    assert manifest["metrics"]["valid_codes"]["recall@20"] == pytest.approx(res.metrics["recall@20"])
    # the codes read back are exactly the model's quantizer output, ids from the id map
    v = read_code_version(res.path)
    q = quantize(__import__("torch").from_numpy(i), 4)
    assert np.array_equal(v.items.values, q.codes.numpy()) and np.array_equal(v.items.scale, q.scale.numpy())
    assert v.item_ids.tolist() == load_split(split_dir).item_ids.tolist()
    assert not (w.codes / ".tmp").exists() and not list(w.codes.glob(".*tmp"))


def test_one_bit_codes_are_packed_words(work: tuple) -> None:
    w, split_dir, u, i = work
    make_run(w, "r1", split_dir, u, i, 1)
    res = export(w, ExportConfig())
    t = pq.read_table(res.path / "users.parquet")
    assert "code_values" not in t.column_names
    codes = t.column("code").to_pylist()
    assert {len(c) for c in codes} == {8}  # 64 dims = one 64-bit word
    word = np.frombuffer(codes[0], dtype="<u8")[0]
    signs = [(int(word) >> j) & 1 for j in range(64)]
    assert signs == [1 if x >= 0 else 0 for x in u[0]]


def test_publish_gate(work: tuple) -> None:
    w, split_dir, u, i = work
    rng = np.random.default_rng(9)
    make_run(w, "good", split_dir, u, i, 1)
    first = export(w, ExportConfig())
    assert first.published and "first published" in first.gate_reason

    make_run(w, "bad", split_dir, rng.normal(size=u.shape).astype(np.float32), rng.normal(size=i.shape).astype(np.float32), 1)
    with pytest.raises(PublishGateError, match="NOT published.*recall@20") as info:
        export(w, ExportConfig())
    assert current(w) == first.version and current(w, "current-1bit") == first.version
    refused = [p for p in w.codes.iterdir() if p.name.endswith("-bad")]
    assert len(refused) == 1 and str(refused[0]) in str(info.value)
    assert json.loads((refused[0] / "manifest.json").read_text())["gate"]["passed"] is False

    forced = export(w, ExportConfig(force=True))
    assert forced.published and "--force" in forced.gate_reason and current(w) == forced.version

    # another width is compared with its own current, not with codes/current
    make_run(w, "four", split_dir, rng.normal(size=u.shape).astype(np.float32), rng.normal(size=i.shape).astype(np.float32), 4)
    assert export(w, ExportConfig()).published  # first 4-bit codes: contracts alone
    make_run(w, "good-again", split_dir, u, i, 1)
    again = export(w, ExportConfig())  # compared with current-1bit (the forced bad run): better
    assert again.published and forced.version in again.gate_reason


def test_contract_failure_is_never_overridden(work: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    w, split_dir, u, i = work
    make_run(w, "good", split_dir, u, i, 1)
    first = export(w, ExportConfig())
    real = export_stage.code_table_arrow

    def broken(kind: str, ids: np.ndarray, table: object, with_values: bool | None = None) -> pa.Table:
        t = real(kind, ids, table, with_values)
        scale = np.asarray(t.column("scale").to_numpy()).copy()
        scale[3] = -1.0
        return t.set_column(t.column_names.index("scale"), "scale", pa.array(scale, pa.float32()))

    monkeypatch.setattr(export_stage, "code_table_arrow", broken)
    make_run(w, "broken", split_dir, u, i, 1)
    versions = set(p.name for p in w.codes.iterdir())
    with pytest.raises(DataContractError, match="scale"):
        export(w, ExportConfig(force=True))
    assert current(w) == first.version
    assert set(p.name for p in w.codes.iterdir()) == versions  # temp folder removed, nothing new


def test_recommend_from_current_codes(work: tuple, capsys: pytest.CaptureFixture[str]) -> None:
    w, split_dir, u, i = work
    make_run(w, "r1", split_dir, u, i, 1)
    export(w, ExportConfig())
    split = load_split(split_dir)
    v = read_code_version(w.code_version())
    for rank_by in ("score", "hamming"):
        rec = recommend(w, "u5", 10, rank_by)
        want, _ = Retriever(v.users, v.items, rank_by).topk(np.array([5]), 10, [split.train])
        assert list(rec.item_ids) == [split.item_ids[j] for j in want[0]]
        seen = set(split.item_ids[split.train.indices[split.train.indptr[5] : split.train.indptr[6]].numpy()])
        assert not seen & set(rec.item_ids)
    assert "i" in capsys.readouterr().out
    with pytest.raises(InputError, match="unknown user 'nobody'"):
        recommend(w, "nobody", 5)


def test_float_runs_export_float_vectors(work: tuple) -> None:
    w, split_dir, u, i = work
    make_run(w, "f", split_dir, u, i, 32)
    res = export(w, ExportConfig())
    v = read_code_version(res.path)
    assert v.bits == 32 and np.array_equal(v.users.values, u) and np.all(v.users.scale == 1)
