"""Quantization configuration: bit widths, decision units, bit budget, per-layer overrides."""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dynabit.config.hardware import HardwareConfig
from dynabit.config.io import StrictConfig
from dynabit.config.layer import Decision, Score, hardware_units

Method = Literal["dynabit", "uniform", "pg", "drq", "fp32"]
ScaleFit = Literal["full", "dual"]

# Fields a per-layer override may change (everything that describes one layer).
LAYER_FIELDS = (
    "dynamic",
    "bits",
    "hi_bits",
    "weight_bits",
    "static_bits",
    "group",
    "block_size",
    "score",
    "decision",
    "budget",
    "bound_margin",
    "bounds",
    "enforce_bounds",
    "temperature",
    "midpoint",
    "scale_fit",
    "uniform_bits",
    "block_all_channels",
    "train_thresholds",
    "threshold_penalty",
    "threshold_target",
)

# What each ``QuantConfig.method`` sets; a field given explicitly (or in an override) wins.
# ``uniform`` also derives ``uniform_bits`` from an integer ``budget`` (see ``_apply_method``).
# See ``docs/baselines.md`` for how the presets map onto the papers.
METHOD_PRESETS: dict[str, dict[str, Any]] = {
    "dynabit": {},
    # Uniform static quantization of the budgeted layers (``uniform_bits`` from the budget).
    "uniform": {},
    # Precision Gating (Zhang et al., ICLR 2020): per-element decisions on the high-pass output,
    # one learned threshold per output channel, an L2 pull of each threshold toward a target.
    "pg": {
        "group": (1, 1),
        "block_size": 1,
        "decision": "output",
        "penalty_block": 0.0,
        "threshold_penalty": 1.0,
    },
    # DRQ (Song et al., ISCA 2020): input regions (all channels of a patch) scored by their mean,
    # thresholds fixed after calibration to the target ratio.
    "drq": {
        "decision": "input",
        "block_all_channels": True,
        "score": "mean",
        "train_thresholds": False,
        "penalty_block": 0.0,
        "penalty_budget": 0.0,
    },
    # Not quantized: train with ``train.quantize: false``. If prepared anyway, every layer is
    # static at 16 bits (numerically close to FP32) and nothing counts in the budget.
    "fp32": {"dynamic": False, "static_bits": 16, "weight_bits": 16},
}


class LayerQuantConfig(StrictConfig):
    """The resolved settings of one quantized layer (a ``QuantConfig`` after overrides)."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False
    )

    dynamic: bool = Field(True, description="Dual-precision (True) or static quantization (False).")
    bits: int = Field(8, ge=2, le=16, description="Activation bits B of a dynamic layer.")
    hi_bits: int = Field(4, ge=1, le=15, description="High-part bits B_hi; B_lo = B - B_hi.")
    weight_bits: int = Field(8, ge=2, le=16, description="Weight bits, per output channel.")
    static_bits: int = Field(8, ge=2, le=16, description="Activation bits of a static layer.")
    group: tuple[int, int] | None = Field(
        None, description="Group (g_h, g_w) of output pixels; None: from the hardware rows."
    )
    block_size: int | None = Field(
        None, description="Output channels per block; None: the hardware columns."
    )
    score: Score = Field("max", description="Group score: max (comparators + OR) or mean.")
    decision: Decision = Field("output", description="Decide on the high-pass output or the input.")
    budget: float = Field(5.0, description="Target average activation bits B_target.")
    bound_margin: float = Field(
        0.1, ge=0.0, le=1.0, description="Per-block bounds r* -/+ margin (unless bounds given)."
    )
    bounds: tuple[float, float] | None = Field(
        None, description="Explicit per-block refine-ratio bounds (r_lo, r_hi)."
    )
    enforce_bounds: bool = Field(
        False, description="At inference keep each block's refine ratio inside its bounds (top-k)."
    )
    temperature: float = Field(
        0.25, gt=0.0, description="Sigmoid surrogate temperature, in units of the score scale."
    )
    midpoint: bool = Field(
        False, description="Add half a low-part step to the high pass where q_hi > 0."
    )
    scale_fit: ScaleFit = Field(
        "full",
        description="Calibration of a dynamic layer's activation scale: 'full' minimises the "
        "error of the B-bit codes; 'dual' the expected error of what the layer computes, "
        "r* x (B-bit error) + (1 - r*) x (high-pass error).",
    )
    uniform_bits: int | None = Field(
        None,
        ge=2,
        le=16,
        description="Run a budgeted layer static at this many activation bits, counted in B_avg "
        "(uniform baseline); None: dual precision.",
    )
    block_all_channels: bool = Field(
        False, description="One block spans all channels of the decision map (DRQ regions)."
    )
    train_thresholds: bool = Field(
        True, description="Learn the block thresholds (False: fixed after calibration, DRQ)."
    )
    threshold_penalty: float = Field(
        0.0,
        ge=0.0,
        description="Weight of the L2 pull of each threshold toward its target (PG); 0: none.",
    )
    threshold_target: float | None = Field(
        None,
        ge=-1e30,
        le=1e30,
        description="Target threshold (score-scale units) of that pull, a float32 value; None: "
        "the calibrated one.",
    )

    @property
    def lo_bits(self) -> int:
        """B_lo = B - B_hi."""
        return self.bits - self.hi_bits

    @property
    def target_ratio(self) -> float:
        """r* = (B_target - B_hi) / B_lo, the refine ratio that meets the budget."""
        return (self.budget - self.hi_bits) / self.lo_bits

    def ratio_bounds(self) -> tuple[float, float]:
        """Per-block refine-ratio bounds ``(r_lo, r_hi)``."""
        if self.bounds is not None:
            return self.bounds
        r = self.target_ratio
        return max(0.0, r - self.bound_margin), min(1.0, r + self.bound_margin)

    @field_validator("group")
    @classmethod
    def _group_positive(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and (v[0] < 1 or v[1] < 1):
            raise ValueError(f"group must be two positive integers (g_h, g_w), got {v}")
        return v

    @field_validator("block_size")
    @classmethod
    def _block_positive(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"block_size must be >= 1, got {v}")
        return v

    @field_validator("bounds")
    @classmethod
    def _bounds_ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (0.0 <= v[0] <= v[1] <= 1.0):
            raise ValueError(f"bounds must satisfy 0 <= r_lo <= r_hi <= 1, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> LayerQuantConfig:
        if self.hi_bits >= self.bits:
            raise ValueError(
                f"hi_bits (B_hi={self.hi_bits}) must be < bits (B={self.bits}): "
                f"allowed 1..{self.bits - 1}"
            )
        if not (self.hi_bits <= self.budget <= self.bits) or not math.isfinite(self.budget):
            raise ValueError(
                f"budget (B_target={self.budget}) must lie in [B_hi, B] = "
                f"[{self.hi_bits}, {self.bits}]"
            )
        return self


class Override(BaseModel):
    """Settings for the layers whose qualified name equals or fully matches ``pattern``."""

    model_config = ConfigDict(extra="forbid")

    pattern: str = Field(..., description="Module name or regular expression (full match).")
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(
                f"override pattern {v!r} is not a valid regular expression: {e}"
            ) from e
        return v

    @field_validator("settings")
    @classmethod
    def _known_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(LAYER_FIELDS))
        if unknown:
            raise ValueError(f"unknown override field(s) {unknown}; allowed: {list(LAYER_FIELDS)}")
        return v

    def matches(self, name: str) -> bool:
        """True when ``name`` equals the pattern or fully matches it as a regex."""
        return name == self.pattern or re.fullmatch(self.pattern, name) is not None


class QuantConfig(LayerQuantConfig):
    """How ``prepare`` quantizes a model.

    The layer fields are the defaults for every eligible layer; ``overrides`` change them for
    layers matched by name or regex (later overrides win). ``keep_first_last`` leaves the first
    conv/linear and the classifier static at ``static_bits``.
    """

    method: Method = Field(
        "dynabit",
        description="dynabit, or a baseline (uniform, pg, drq, fp32) whose preset fills the "
        "fields not given explicitly (see METHOD_PRESETS).",
    )
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    keep_first_last: bool = Field(True, description="First layer and classifier stay static.")
    fold_bn: bool = Field(True, description="Fold a BatchNorm that directly follows a conv.")
    penalty_block: float = Field(
        1.0, ge=0.0, description="Training penalty weight: blocks outside their bounds."
    )
    penalty_budget: float = Field(
        1.0, ge=0.0, description="Training penalty weight: MAC-weighted ratio above r*."
    )
    overrides: list[Override] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _apply_method(cls, data: Any) -> Any:
        """Fill the fields the method's preset sets, unless the input gives them."""
        if not isinstance(data, dict):
            return data
        method = data.get("method", "dynabit")
        if not isinstance(method, str) or method not in METHOD_PRESETS:
            return data  # the field validator reports it
        data = {**METHOD_PRESETS[method], **data}
        if method == "uniform" and data.get("uniform_bits") is None:
            budget = data.get("budget", cls.model_fields["budget"].default)
            try:
                bits = float(budget)
            except (TypeError, ValueError):
                return data  # the field validator reports it
            if not bits.is_integer():
                raise ValueError(
                    f"method 'uniform' runs at an integer activation width: give uniform_bits, "
                    f"or an integer budget (got budget={budget})"
                )
            data["uniform_bits"] = int(bits)
        return data

    @model_validator(mode="after")
    def _fits_hardware(self) -> QuantConfig:
        self._check_layer(self._layer_dict(), "config")
        for ov in self.overrides:
            merged = {**self._layer_dict(), **ov.settings}
            try:
                layer = LayerQuantConfig(**merged)
            except ValidationError as e:
                details = "; ".join(
                    f"{'.'.join(map(str, err['loc'])) or 'settings'}: "
                    f"{err['msg'].removeprefix('Value error, ')}"
                    for err in e.errors()
                )
                raise ValueError(f"override {ov.pattern!r}: {details}") from None
            self._check_layer(layer.model_dump(), f"override {ov.pattern!r}")
        return self

    def _layer_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in LAYER_FIELDS}

    def _check_layer(self, layer: dict[str, Any], where: str) -> None:
        rows = self.hardware.rows
        group = layer["group"]
        if group is not None:
            size = group[0] * group[1]
            if size > rows:
                raise ValueError(
                    f"{where}: group {tuple(group)} covers {size} output pixels, larger than the "
                    f"array's {rows} rows; allowed: g_h*g_w <= hardware.rows"
                )

    def for_layer(self, name: str) -> LayerQuantConfig:
        """The resolved settings for the module called ``name`` (overrides applied in order)."""
        merged = self._layer_dict()
        for ov in self.overrides:
            if ov.matches(name):
                merged.update(ov.settings)
        layer = LayerQuantConfig(**merged)
        if layer.group is None or layer.block_size is None:
            group, block = hardware_units(
                self.hardware, layer.group, layer.block_size, aligned=False
            )
            layer.group, layer.block_size = group, block
        return layer
