"""Elaboration-time parameters of the RTL tile and the widths derived from them."""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Shape, signed, unsigned

from dynabit.config.scores import DEFAULT_SCORE, Score, score_for

# Scores the decision unit implements in hardware (rtl/decision.py); a registered score the
# tile has no datapath for is refused here rather than silently built as another.
TILE_SCORES: tuple[str, ...] = ("max", "mean")


def check_tile_score(score: str) -> None:
    """Refuse an unknown score (naming the registered ones) or a registered one the tile has
    no datapath for."""
    score_for(score)  # refuses an unknown score, naming the registered ones
    if score not in TILE_SCORES:
        raise ValueError(
            f"score {score!r} has no datapath in the tile; it implements {', '.join(TILE_SCORES)}"
        )


def score_suffix(score: str) -> str:
    """Tag suffix naming the score, only when it is not the default (``""`` or ``_mean``)."""
    return "" if score == DEFAULT_SCORE else f"_{score}"


@dataclass(frozen=True)
class TileParams:
    """One ``rows x cols`` output-stationary tile.

    ``dynamic=True`` builds the dual-precision tile (``hi_bits``-bit high chunk, ``lo_bits``-bit
    low chunk, a decision unit and a scheduler that skips the low pass); ``dynamic=False`` builds
    the uniform baseline whose PEs multiply the whole ``hi_bits + lo_bits``-bit code in one pass.
    """

    rows: int = 4
    cols: int = 4
    hi_bits: int = 4
    lo_bits: int = 4
    weight_bits: int = 8
    acc_bits: int = 32
    act_signed: bool = False
    dynamic: bool = True
    score: Score = "max"
    mult_bits: int = 17
    addr_bits: int = 16

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1 or self.rows + self.cols < 3:
            raise ValueError(
                f"array {self.rows}x{self.cols}: need rows, cols >= 1 and rows + cols >= 3 "
                "(the prefetch uses an idle cycle of each fold)"
            )
        if self.hi_bits < 1 or self.lo_bits < 1:
            raise ValueError(
                f"hi_bits and lo_bits must be >= 1, got {self.hi_bits}, {self.lo_bits}"
            )
        if self.weight_bits < 2 or self.acc_bits < 8 or self.mult_bits < 1 or self.addr_bits < 2:
            raise ValueError("weight_bits >= 2, acc_bits >= 8, mult_bits >= 1, addr_bits >= 2")
        check_tile_score(self.score)

    # ------------------------------------------------------------------ derived widths
    @property
    def bits(self) -> int:
        """Activation code bits ``B = B_hi + B_lo``."""
        return self.hi_bits + self.lo_bits

    @property
    def hi_shape(self) -> Shape:
        """A lane of the high plane (signed when the codes are)."""
        return signed(self.hi_bits) if self.act_signed else unsigned(self.hi_bits)

    @property
    def lo_shape(self) -> Shape:
        """A lane of the low plane (always unsigned)."""
        return unsigned(self.lo_bits)

    @property
    def full_shape(self) -> Shape:
        """A lane of the uniform tile's single plane (the whole code)."""
        return signed(self.bits) if self.act_signed else unsigned(self.bits)

    @property
    def act_shape(self) -> Shape:
        """The activation operand of a PE multiplier."""
        if not self.dynamic:
            return self.full_shape
        if self.act_signed:
            return signed(max(self.hi_bits, self.lo_bits + 1))
        return unsigned(max(self.hi_bits, self.lo_bits))

    @property
    def thr_shape(self) -> Shape:
        """Per-column threshold register: one bit wider than the accumulator (exact clamping)."""
        return signed(self.acc_bits + 1)

    @property
    def score_limit(self) -> int:
        """``L > |mean-score sum|``; the mean threshold ``X`` is clamped to ``[-L, L]``."""
        return self.rows * self.cols * (1 << (self.acc_bits - 1 + self.mult_bits))

    @property
    def x_shape(self) -> Shape:
        """Per-block mean threshold register ``X``."""
        return signed(self.score_limit.bit_length() + 1)

    @property
    def tag(self) -> str:
        """Short name, e.g. ``dyn4x4_b4+4_w8`` or ``uni4x4_b8_w8``."""
        if self.dynamic:
            kind = f"dyn{self.rows}x{self.cols}_b{self.hi_bits}+{self.lo_bits}"
            return f"{kind}_w{self.weight_bits}" + score_suffix(self.score)
        return f"uni{self.rows}x{self.cols}_b{self.bits}_w{self.weight_bits}"

    def uniform(self) -> TileParams:
        """The uniform ``B``-bit baseline with the same array and widths."""
        return TileParams(
            rows=self.rows,
            cols=self.cols,
            hi_bits=self.hi_bits,
            lo_bits=self.lo_bits,
            weight_bits=self.weight_bits,
            acc_bits=self.acc_bits,
            act_signed=self.act_signed,
            dynamic=False,
            score=self.score,
            mult_bits=self.mult_bits,
            addr_bits=self.addr_bits,
        )

    def fold_cycles(self, k: int) -> int:
        """Cycles of one output-stationary fold streaming ``k`` operands: ``R + C + K - 2``."""
        return self.rows + self.cols + k - 2
