"""One frozen config model per pipeline stage.

The same shapes are the parameters of the Prefect flows and the keys of a ``--config`` YAML
file (one section per stage). Unknown keys are rejected, so a typo fails loudly instead of
silently falling back to a default. A config is unpacked once, at the edge (CLI, flow, stage
runner); models and SQL never read configs by string key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RawFormat = Literal["csv", "tsv", "parquet", "movielens", "lightgcn"]
SplitRole = Literal["train", "test"]
SplitMethod = Literal["random", "temporal", "loo", "predefined"]
Bits = Literal[1, 2, 4, 8, 32]
Estimator = Literal["none", "ste", "gste"]
Device = Literal["auto", "cpu", "cuda"]
LrSchedule = Literal["constant", "cosine"]
DeltaGranularity = Literal["table", "dimension"]

COLUMN_ROLES = ("user", "item", "timestamp", "rating")


class StageConfig(BaseModel):
    """Base: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class IngestConfig(StageConfig):
    """Raw interaction files into the warehouse.

    ``columns`` maps roles (user, item, timestamp, rating) to a column name of the file, or to a
    0-based column position for files without a header. Empty means the format's default.
    ``delimiter`` / ``header`` None: sniffed per file. ``timestamp_unit`` of numeric timestamps:
    unix seconds, milliseconds or microseconds, ``iso`` (ISO-8601 only), or ``auto`` (default:
    per file, from the median magnitude; ISO-8601 values are read as such in every unit but iso).
    """

    files: tuple[Path, ...] = ()
    format: RawFormat = "csv"
    columns: dict[str, str] = Field(default_factory=dict)
    delimiter: str | None = None
    header: bool | None = None
    split_role: SplitRole | None = None
    rating_min: float | None = None
    rating_max: float | None = None
    timestamp_unit: Literal["auto", "s", "ms", "us", "iso"] = "auto"

    @field_validator("columns")
    @classmethod
    def _known_roles(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(COLUMN_ROLES))
        if unknown:
            raise ValueError(f"unknown column role(s) {unknown}; expected some of {list(COLUMN_ROLES)}")
        return v

    @model_validator(mode="after")
    def _rating_range(self) -> IngestConfig:
        if self.rating_min is not None and self.rating_max is not None and self.rating_min > self.rating_max:
            raise ValueError(f"rating_min {self.rating_min} > rating_max {self.rating_max}")
        return self


class PrepareConfig(StageConfig):
    """Clean (implicit feedback, duplicates), k-core, split and id maps."""

    rating_threshold: float | None = None
    kcore_user: int = Field(10, ge=1)
    kcore_item: int = Field(10, ge=1)
    split: SplitMethod = "random"
    train_ratio: float = Field(0.8, gt=0, lt=1)
    valid_ratio: float = Field(0.1, ge=0, lt=1)
    seed: int = 2024

    @model_validator(mode="after")
    def _ratios(self) -> PrepareConfig:
        if self.split in ("random", "temporal") and self.train_ratio + self.valid_ratio >= 1:
            raise ValueError(
                f"train_ratio + valid_ratio must be < 1 (got {self.train_ratio} + {self.valid_ratio})"
            )
        return self


class TrainConfig(StageConfig):
    """LightGCN encoder + b-bit quantizer training. ``bits=32`` means float32 (no quantizer)."""

    snapshot: str | None = None  # splits/<snapshot>; None = splits/current
    run: str | None = None  # models/<run>; None = generated from time and settings
    bits: Bits = 1
    estimator: Estimator | None = None  # None: "none" for 32 bits, else "gste"
    dim: int = Field(64, ge=1)
    layers: int = Field(3, ge=0)
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(2048, ge=1)
    lr: float = Field(1e-3, gt=0)
    lr_schedule: LrSchedule = "constant"  # cosine: from lr down to lr_min over `epochs`
    lr_min: float = Field(0.0, ge=0)
    l2: float = Field(1e-4, ge=0)
    negative_candidates: int = Field(1, ge=1)  # 1: uniform negatives (LightGCN); k > 1: the highest-scored of k uniform candidates (dynamic negative sampling)
    hard_negatives_from_epoch: int = Field(0, ge=0)  # with negative_candidates > 1: epochs before this one (0-based) stay uniform
    seed: int = 2024
    device: Device = "auto"
    amp: bool = False  # mixed precision on CUDA only
    nproc: int = Field(1, ge=1)  # data-parallel processes (torch.distributed); batch_size stays the global batch
    eval_every: int = Field(1, ge=1)
    patience: int = Field(10, ge=1)
    delta_every: int = Field(5, ge=1)  # epochs between Hutchinson re-estimates of GSTE's delta
    delta_scale: float = Field(1.0, ge=0)  # multiplier on the formula's delta (open question, see method.md)
    delta_granularity: DeltaGranularity = "table"  # one delta per table (users, items), or one per embedding dimension from the Hessian diagonal
    float_warmup_epochs: int = Field(0, ge=0)  # quantized runs: first epochs train float32, then the quantizer switches on (float32 runs: ignored)
    itq_rotation: bool = True  # at that switch, rotate the embeddings so sign codes lose less (hqgnn.rotation)
    refine_user_codes: int = Field(0, ge=0)  # 1-bit runs: after training, up to this many rounds of greedy user-code bit flips (hqgnn.code_refinement), the count kept chosen on validation (other widths: ignored, so one config serves a sweep)
    refine_temperature: float = Field(2.0, gt=0)  # the refinement objective's softmax temperature on the codes' scores
    refine_top_items: int = Field(1024, ge=1)  # the refinement's log-sum-exp runs over each user's top items
    hutchinson_samples: int = Field(16, ge=1)
    hutchinson_batches: int = Field(4, ge=1)
    hutchinson_rtol: float = Field(0.05, gt=0)  # stop sampling once the trace's std error is below this share
    resume: bool = False

    @model_validator(mode="after")
    def _estimator_matches_bits(self) -> TrainConfig:
        est = self.estimator or ("none" if self.bits == 32 else "gste")
        if self.bits == 32 and est != "none":
            raise ValueError(f"bits=32 is float32: estimator must be 'none', got {est!r}")
        if self.bits != 32 and est == "none":
            raise ValueError(f"bits={self.bits} needs an estimator ('ste' or 'gste'), got 'none'")
        object.__setattr__(self, "estimator", est)
        if self.hard_negatives_from_epoch > 0 and self.negative_candidates == 1:
            raise ValueError(
                f"hard_negatives_from_epoch={self.hard_negatives_from_epoch} needs negative_candidates > 1 "
                "(with 1 candidate every epoch draws uniform negatives)"
            )
        if self.bits != 32 and self.float_warmup_epochs >= self.epochs:  # float32 runs have no quantizer to switch on
            raise ValueError(
                f"float_warmup_epochs={self.float_warmup_epochs} must be < epochs={self.epochs}: "
                f"the quantizer switches on after the warm-up, and a {self.bits}-bit run has to train with it"
            )
        return self


class ExportConfig(StageConfig):
    """Publish a run's codes through the publish gate."""

    run: str | None = None  # None = latest run
    force: bool = False  # overrides the metric check, never the contracts
    gate_metric: str = "recall@20"
    gate_tolerance: float = Field(0.005, ge=0)


class EvaluateConfig(StageConfig):
    """Offline evaluation of a run on valid and test, float and codes."""

    run: str | None = None
    ks: tuple[int, ...] = (20, 50)
    rerank: bool = False  # HashGNN-style: top-R by codes, re-ranked with float embeddings
    rerank_r: int = Field(200, ge=1)
    batch_size: int = Field(1024, ge=1)

    @field_validator("ks")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(k <= 0 for k in v):
            raise ValueError(f"ks must be positive integers, got {v}")
        return tuple(sorted(set(v)))


class PipelineConfig(StageConfig):
    """The whole pipeline: one section per stage (the layout of a ``--config`` YAML file)."""

    ingest: IngestConfig = IngestConfig()
    prepare: PrepareConfig = PrepareConfig()
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
