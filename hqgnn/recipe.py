"""The training recipe: every hyperparameter of one LightGCN + b-bit quantizer run, one frozen model.

Unknown keys are rejected, so a typo fails loudly instead of silently falling back to a default.
The trainer unpacks it once; the application's stage config (``flows.config.TrainConfig``) adds
where the run reads and writes (snapshot, run name, resume, device, processes).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hqgnn.bits import FLOAT_BITS, Bits, Estimator, default_estimator, is_float

LrSchedule = Literal["constant", "cosine"]
DeltaGranularity = Literal["table", "dimension"]
Loss = Literal["bpr", "softmax"]


class TrainRecipe(BaseModel):
    """LightGCN encoder + b-bit quantizer training. ``bits=32`` means float32 (no quantizer).
    ``float_users`` keeps the user side float32 (asymmetric scoring: float user vectors against
    b-bit item codes; the bytes per item are those of ``bits``).

    ``estimator`` defaults from ``bits`` (:func:`hqgnn.bits.default_estimator`) when not given;
    the derived value does not count as set, so a copy with other ``bits`` derives it again.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bits: Bits = 1
    estimator: Estimator = Field(default_factory=lambda data: default_estimator(data["bits"]))
    dim: int = Field(64, ge=1)
    layers: int = Field(3, ge=0)
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(2048, ge=1)
    lr: float = Field(1e-3, gt=0)
    lr_schedule: LrSchedule = "constant"  # cosine: from lr down to lr_min over `epochs`
    lr_min: float = Field(0.0, ge=0)
    l2: float = Field(1e-4, ge=0)
    loss: Loss = "bpr"  # bpr: LightGCN's pairwise loss; softmax: sampled softmax over cosine scores (hqgnn.loss.sampled_softmax_loss)
    softmax_negatives: int = Field(1024, ge=1)  # softmax: negatives shared by the whole batch (the first of its uniform draws)
    softmax_temperature: float = Field(0.1, gt=0)  # softmax: the cosine scores are divided by this
    negative_candidates: int = Field(1, ge=1)  # 1: uniform negatives (LightGCN); k > 1: the highest-scored of k uniform candidates (dynamic negative sampling)
    bpr_negatives: int = Field(1, ge=1)  # BPR: uniform negatives per positive, the loss averaged over them (more signal per propagation)
    hard_negatives_from_epoch: int = Field(0, ge=0)  # with negative_candidates > 1: epochs before this one (0-based) stay uniform
    seed: int = 2024
    amp: bool = False  # mixed precision on CUDA only
    eval_every: int = Field(1, ge=1)
    patience: int | None = Field(10, ge=1)  # evaluations without a gain before training stops; None: never stop early (the best epoch is still kept)
    delta_every: int = Field(5, ge=1)  # epochs between Hutchinson re-estimates of GSTE's delta
    delta_scale: float = Field(1.0, ge=0)  # multiplier on the formula's delta (open question, see method.md)
    delta_granularity: DeltaGranularity = "table"  # one delta per table (users, items), or one per embedding dimension from the Hessian diagonal
    float_warmup_epochs: int = Field(0, ge=0)  # quantized runs: first epochs train float32, then the quantizer switches on (float32 runs: ignored)
    itq_rotation: bool = True  # at that switch, rotate the embeddings so sign codes lose less (hqgnn.rotation)
    float_users: bool = False  # quantized runs: users stay float32 vectors, only the items are quantized (scores s_i <e_u, q_i>; no user codes to refine)
    distill_top: int = Field(0, ge=0)  # > 0 adds a BPR term for each user's top this many items under a float teacher's ranking (hqgnn.distill): a warm run's float parent, or the trainer's teacher_embedding; 0: off
    distill_weight: float = Field(1.0, ge=0)  # that term's weight against the main BPR term
    distill_decay: float = Field(10.0, gt=0)  # a teacher item of rank r is drawn with weight exp(-r / distill_decay)
    distill_order_weight: float = Field(0.0, ge=0)  # > 0: also rank that teacher item above one drawn from the second half of the teacher's list (the order within it; hqgnn.distill); 0: off
    refine_user_codes: int = Field(0, ge=0)  # 1-bit runs: after training, up to this many rounds of greedy user-code bit flips (hqgnn.code_refinement), the count kept chosen on validation (other widths: ignored, so one config serves a sweep)
    refine_temperature: float = Field(2.0, gt=0)  # the refinement objective's softmax temperature on the codes' scores
    refine_top_items: int = Field(1024, ge=1)  # the refinement's log-sum-exp runs over each user's top items
    hutchinson_samples: int = Field(16, ge=1)
    hutchinson_batches: int = Field(4, ge=1)
    hutchinson_rtol: float = Field(0.05, gt=0)  # stop sampling once the trace's std error is below this share

    @model_validator(mode="before")
    @classmethod
    def _no_null_estimator(cls, data: Any) -> Any:
        """``estimator: null`` (YAML, older configs) means "derive it from bits", as leaving it out does."""
        if isinstance(data, dict) and "estimator" in data and data["estimator"] is None:
            data = {k: v for k, v in data.items() if k != "estimator"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> TrainRecipe:
        if is_float(self.bits) and self.estimator != "none":
            raise ValueError(f"bits=32 is float32: estimator must be 'none', got {self.estimator!r}")
        if not is_float(self.bits) and self.estimator == "none":
            raise ValueError(f"bits={self.bits} needs an estimator ('ste' or 'gste'), got 'none'")
        if self.loss == "softmax" and self.negative_candidates > 1:
            raise ValueError("negative_candidates > 1 (hard negatives) is a BPR option; loss 'softmax' ranks against shared negatives")
        if self.bpr_negatives > 1 and (self.negative_candidates > 1 or self.loss != "bpr"):
            raise ValueError("bpr_negatives > 1 averages BPR over uniform negatives: it excludes negative_candidates > 1 and loss 'softmax'")
        if self.distill_top > 0 and self.loss != "bpr":
            raise ValueError("distill_top > 0 adds a BPR term for the teacher's items: it needs loss 'bpr'")
        if self.distill_order_weight > 0 and self.distill_top < 2:
            raise ValueError(f"distill_order_weight > 0 ranks the teacher's items among themselves: it needs distill_top >= 2, got {self.distill_top}")
        if self.hard_negatives_from_epoch > 0 and self.negative_candidates == 1:
            raise ValueError(
                f"hard_negatives_from_epoch={self.hard_negatives_from_epoch} needs negative_candidates > 1 "
                "(with 1 candidate every epoch draws uniform negatives)"
            )
        if not is_float(self.bits) and self.float_warmup_epochs >= self.epochs:  # float32 runs have no quantizer to switch on
            raise ValueError(
                f"float_warmup_epochs={self.float_warmup_epochs} must be < epochs={self.epochs}: "
                f"the quantizer switches on after the warm-up, and a {self.bits}-bit run has to train with it"
            )
        return self

    def delta_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`hqgnn.delta.estimate_delta` (all but the seed) this recipe sets."""
        return {"bits": self.bits, "batch_size": self.batch_size, "batches": self.hutchinson_batches,
                "samples": self.hutchinson_samples, "rtol": self.hutchinson_rtol,
                "granularity": self.delta_granularity, "scale": self.delta_scale, "quantize_users": self.quantizes_users}

    @property
    def quantized(self) -> bool:
        """True unless float32."""
        return not is_float(self.bits)

    @property
    def user_bits(self) -> int:
        """The width the users ship at: ``bits``, or 32 with ``float_users`` (and in float32 runs)."""
        return FLOAT_BITS if self.float_users else self.bits

    @property
    def quantizes_users(self) -> bool:
        """True when the user side is quantized too (a quantized run without ``float_users``)."""
        return not is_float(self.user_bits)
