"""One frozen config model per pipeline stage (the application's; the library's training recipe is
:class:`hqgnn.recipe.TrainRecipe`, which :class:`TrainConfig` extends).

The same shapes are the parameters of the Prefect flows and the keys of a ``--config`` YAML
file (one section per stage). Unknown keys are rejected, so a typo fails loudly instead of
silently falling back to a default. A config is unpacked once, at the edge (CLI, flow, stage
runner); models and SQL never read configs by string key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hqgnn.recipe import TrainRecipe

RawFormat = Literal["csv", "tsv", "parquet", "movielens", "lightgcn"]
SplitRole = Literal["train", "test"]
SplitMethod = Literal["random", "temporal", "loo", "predefined"]
Device = Literal["auto", "cpu", "cuda"]

COLUMN_ROLES = ("user", "item", "timestamp", "rating")


def _plain_name(v: str | None) -> str | None:
    """Run and snapshot names are folder names inside the work directory (no separators, no '..')."""
    if v is None:
        return v
    if not v or "/" in v or "\\" in v or v in (".", "..") or v.startswith(".") or Path(v).is_absolute():
        raise ValueError(f"{v!r} must be a plain name: no '/', no '..', not absolute, not starting with '.'")
    return v


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


class TrainConfig(TrainRecipe):
    """Stage `train`: the training recipe (:class:`hqgnn.recipe.TrainRecipe`) plus where the run
    reads and writes and how it is launched."""

    snapshot: str | None = None  # splits/<snapshot>; None = splits/current
    run: str | None = None  # models/<run>; None = generated from time and settings
    device: Device = "auto"
    nproc: int = Field(1, ge=1)  # data-parallel processes (torch.distributed); batch_size stays the global batch
    resume: bool = False
    # Warm start (issue 16): "none" (cold), "published" (the run behind codes/current-<bits>bit; cold
    # when nothing is published yet), "latest" (models/latest; cold when there is none) or a run
    # name. The stage pins it to the run it resolved (config.json); rows are matched by original id.
    init_from: str = Field("none", min_length=1)
    warm_epochs: int | None = Field(None, ge=1)  # a warm run's epochs (None: `epochs`); early stopping still applies
    warm_lr: float | None = Field(None, gt=0)  # a warm run's learning rate (None: `lr`): fine-tuning a converged parent wants a smaller one
    warm_new_rows: Literal["neighbours", "random"] = "neighbours"  # init of users/items new to the snapshot (hqgnn.warm_start)
    warm_carry_users: bool = True  # False: carry only the parent's item rows, every user row the mean of its items' (hqgnn.warm_start)
    # Whose ranking a distilling run (distill_top > 0) learns: "parent" (the warm start's float parent;
    # a cold run then has no teacher), "best" (the finished float32 run on the same split with the
    # highest validation Recall@20, else the parent; pinned to it in config.json) or the name of a
    # trained float32 run in models/ of any width, e.g. a wider, stronger float model than the one the
    # run starts from (rows matched by original id).
    distill_from: str = Field("parent", min_length=1)

    @field_validator("run", "snapshot", "distill_from")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        return _plain_name(v)

    def recipe(self) -> TrainRecipe:
        """The hyperparameters alone, as the library's trainer takes them."""
        return TrainRecipe(**self.model_dump(include=set(TrainRecipe.model_fields), exclude_unset=True))

    @property
    def warm(self) -> bool:
        """True when the run asks for a warm start (``init_from`` other than ``none``)."""
        return self.init_from != "none"


class ExportConfig(StageConfig):
    """Publish a run's codes through the publish gate."""

    run: str | None = None  # None = latest run
    force: bool = False  # overrides the metric check, never the contracts
    gate_metric: str = "recall@20"
    gate_tolerance: float = Field(0.005, ge=0)

    @field_validator("run")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        return _plain_name(v)


class FoldInConfig(StageConfig):
    """Stage `foldin`: codes for users of a snapshot that the published codes do not know."""

    bits: int | None = None  # the width whose published codes are extended (None: the width of codes/current)
    snapshot: str | None = None  # splits/<snapshot> with the new users' interactions; None = splits/current
    refine_rounds: int = Field(4, ge=0)  # 1 bit: rounds of user-code refinement after the fold-in (hqgnn.fold_in.fold_in_codes)


class EvaluateConfig(StageConfig):
    """Offline evaluation of a run on valid and test, float and codes."""

    run: str | None = None
    ks: tuple[int, ...] = (20, 50)
    rerank: bool = False  # HashGNN-style: top-R by codes, re-ranked with float embeddings
    rerank_r: int = Field(200, ge=1)
    batch_size: int = Field(1024, ge=1)

    @field_validator("run")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        return _plain_name(v)

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
    foldin: FoldInConfig | None = None  # the flow folds in new users after prepare when this section is given
