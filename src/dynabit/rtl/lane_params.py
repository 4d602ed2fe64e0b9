"""Parameters of a tile of dot-product PEs (:mod:`dynabit.rtl.lanes`) and its buffer words."""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from dynabit.rtl.lanes import LaneParams
from dynabit.rtl.params import Score, TileParams, check_tile_score, score_suffix


@dataclass(frozen=True)
class LaneTileParams:
    """An ``rows x cols`` output-stationary tile of :class:`~dynabit.rtl.lanes.LanePE`.

    ``pe`` fixes the design (``dual``, ``int8``, ``int4``, ``bitserial``), the lanes ``N`` and
    the bit widths; ``out_bits`` is the width of a drained output (accumulator + bias).
    Every design reads the same activation buffer: one word per (group, step) holding the
    whole code of ``N`` window elements for each of the ``R`` rows.
    """

    rows: int = 4
    cols: int = 4
    pe: LaneParams = field(default_factory=lambda: LaneParams(lanes=4, k_max=4608))
    score: Score = "max"
    mult_bits: int = 17
    addr_bits: int = 16
    out_bits: int = 32

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1 or self.rows + self.cols < 3:
            raise ValueError(
                f"array {self.rows}x{self.cols}: need rows, cols >= 1 and rows + cols >= 3"
            )
        check_tile_score(self.score)
        if self.out_bits < self.pe.width:
            raise ValueError(
                f"out_bits={self.out_bits} is narrower than the {self.pe.width}-bit accumulator"
            )

    # ------------------------------------------------------------------ derived
    @property
    def dynamic(self) -> bool:
        """The dual-precision design (a decision unit and a low pass on demand)."""
        return self.pe.design == "dual"

    @property
    def lanes(self) -> int:
        """Lanes ``N`` per PE."""
        return self.pe.lanes

    @property
    def fill(self) -> int:
        """Fill + drain cycles of a fold: ``R + C - 2``."""
        return self.rows + self.cols - 2

    @property
    def code_shape(self) -> Shape:
        """One lane of an activation word: the whole code."""
        b = self.pe.code_bits
        return signed(b) if self.pe.act_signed else unsigned(b)

    @property
    def tag(self) -> str:
        """Short name, e.g. ``dual8_b4+4_w8_4x4``."""
        return f"{self.pe.tag}_{self.rows}x{self.cols}" + score_suffix(self.score)

    def steps(self, k: int) -> int:
        """Steps of a ``K``-element window: ``ceil(K / N)``."""
        return -(-k // self.lanes)

    def fold_cycles(self, k: int) -> int:
        """Longest fold: ``fill`` plus two planes (dual) or all planes (uniform) of steps."""
        planes = 2 if self.dynamic else len(self.pe.planes)
        return self.fill + planes * self.steps(k)

    def decision_params(self) -> TileParams:
        """The :class:`TileParams` whose widths the decision unit and the host constants use.

        Its accumulator is the high-pass sum shifted by ``B_lo`` (what the two-bank tile
        compared; ``B_lo - 1`` of ``h'`` with the mid-point offset), so the host's exact
        rewrites are shared; the PEs compare the unshifted sum.
        """
        pe = self.pe
        return TileParams(
            rows=self.rows,
            cols=self.cols,
            hi_bits=pe.hi_bits,
            lo_bits=pe.lo_bits,
            weight_bits=pe.weight_bits,
            acc_bits=pe.cmp_bits + pe.shift,
            act_signed=pe.act_signed,
            dynamic=True,
            score=self.score,
            mult_bits=self.mult_bits,
            addr_bits=self.addr_bits,
        )


def lane_act_layout(p: LaneTileParams) -> data.StructLayout:
    """Activation word: ``R`` rows of ``N`` whole codes, plus ``keep`` (valid rows, dual)."""
    fields: dict[str, object] = {
        "lanes": data.ArrayLayout(data.ArrayLayout(p.code_shape, p.lanes), p.rows)
    }
    if p.dynamic:
        fields["keep"] = unsigned(p.rows)
    return data.StructLayout(fields)


def lane_weight_layout(p: LaneTileParams) -> data.ArrayLayout:
    """Weight word: ``C`` columns of ``N`` signed weights."""
    return data.ArrayLayout(data.ArrayLayout(signed(p.pe.weight_bits), p.lanes), p.cols)


def lane_param_layout(p: LaneTileParams) -> data.StructLayout:
    """Block word: per-column bias (unsigned mid-point: and the refined tiles' ``bias_lo``);
    dual: valid columns and the decision constants."""
    fields: dict[str, object] = {"bias": data.ArrayLayout(signed(p.out_bits), p.cols)}
    if p.pe.low_offset:
        fields["bias_lo"] = data.ArrayLayout(signed(p.out_bits), p.cols)
    if p.dynamic:
        fields["col_ok"] = unsigned(p.cols)
        if p.score == "max":
            fields["thr"] = data.ArrayLayout(p.pe.thr_shape, p.cols)
        else:
            dp = p.decision_params()
            fields["mult"] = data.ArrayLayout(unsigned(p.mult_bits), p.cols)
            fields["x"] = dp.x_shape
    return data.StructLayout(fields)


def lane_out_layout(p: LaneTileParams) -> data.ArrayLayout:
    """One drained row: ``C`` outputs with the bias added."""
    return data.ArrayLayout(signed(p.out_bits), p.cols)
