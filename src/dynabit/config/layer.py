"""One layer's decision geometry and precision: :class:`LayerSpec` and its :class:`GridGeometry`.

Every floor describes a conv/linear layer with this one record (torch-free, so the hardware
model, the RTL host code and the exporters read it without importing the training stack):

- the quantization layers cut their maps with :class:`~dynabit.quant.decisions.Grid`, a
  :class:`GridGeometry` with the tensor operations added;
- the integer program stores a spec's fields as its layer attributes and reads them back
  (:meth:`dynabit.engine.IntegerProgram.layer_spec`);
- the hardware model's :class:`~dynabit.hardware.LayerShape` is a spec plus its output width;
- the RTL's :class:`~dynabit.rtl.program.LayerJob` carries one.

The grid's ceiling arithmetic (blocks, groups, partial edges, the ``(k_lo, k_hi)`` refine
bounds) is derived here once; :func:`hardware_units` is the one place where the array's
default decision units fill a layer that gives none, and :func:`hardware_split` the one for its
default high plane.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from dynabit.config.scores import Score

if TYPE_CHECKING:
    from dynabit.config.hardware import HardwareConfig

Kind = Literal["conv", "linear"]
Decision = Literal["output", "input"]
DECISIONS: tuple[str, ...] = ("output", "input")
SpecT = TypeVar("SpecT", bound="LayerSpec")


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for positive integers."""
    return -(-a // b)


def group_budget(r_lo: float, r_hi: float, n_groups: int) -> tuple[int, int]:
    """``(k_lo, k_hi)``: the fewest and most groups a block may refine.

    The upper bound wins when the grid is too coarse for both (it sets the worst-case latency).
    """
    k_hi = math.floor(r_hi * n_groups + 1e-9)
    k_lo = min(math.ceil(r_lo * n_groups - 1e-9), k_hi)
    return k_lo, k_hi


@dataclass(frozen=True)
class GridGeometry:
    """How a ``C x H x W`` map is cut into blocks of channels and groups of pixels.

    The last block and the last row/column of groups may be partial: padding exists only in
    the decision grid, never in the data.
    """

    channels: int
    height: int
    width: int
    block_size: int
    group_h: int
    group_w: int

    @property
    def group(self) -> tuple[int, int]:
        """``(g_h, g_w)``."""
        return (self.group_h, self.group_w)

    @property
    def n_blocks(self) -> int:
        """Channel blocks (the last one may be partial)."""
        return ceil_div(self.channels, self.block_size)

    @property
    def n_gh(self) -> int:
        """Rows of groups."""
        return ceil_div(self.height, self.group_h)

    @property
    def n_gw(self) -> int:
        """Columns of groups."""
        return ceil_div(self.width, self.group_w)

    @property
    def n_groups(self) -> int:
        """Groups per block."""
        return self.n_gh * self.n_gw

    @property
    def cells(self) -> tuple[int, int, int]:
        """``(n_blocks, n_gh, n_gw)``: the decisions per sample."""
        return (self.n_blocks, self.n_gh, self.n_gw)

    @property
    def padding(self) -> tuple[int, int, int]:
        """Grid padding ``(channels, rows, columns)`` past the map's edges."""
        return (
            self.n_blocks * self.block_size - self.channels,
            self.n_gh * self.group_h - self.height,
            self.n_gw * self.group_w - self.width,
        )

    @property
    def cell_shape(self) -> tuple[int, int, int, int, int, int]:
        """The padded map as ``(n_blocks, block, n_gh, g_h, n_gw, g_w)``."""
        return (
            self.n_blocks,
            self.block_size,
            self.n_gh,
            self.group_h,
            self.n_gw,
            self.group_w,
        )

    def extents(self) -> tuple[list[int], list[int], list[int]]:
        """Real channels of each block, rows of each group row, columns of each group column
        (the last of each may be partial); a cell holds the product of its three extents."""

        def sizes(total: int, size: int, n: int) -> list[int]:
            return [min(size, total - i * size) for i in range(n)]

        return (
            sizes(self.channels, self.block_size, self.n_blocks),
            sizes(self.height, self.group_h, self.n_gh),
            sizes(self.width, self.group_w, self.n_gw),
        )

    def mask_shape(self, samples: int) -> tuple[int, int, int, int]:
        """``(N, n_blocks, n_gh, n_gw)`` of a group mask."""
        return (samples, *self.cells)

    def k_bounds(self, r_lo: float, r_hi: float) -> tuple[int, int]:
        """:func:`group_budget` of ratio bounds on this grid's groups per block."""
        return group_budget(r_lo, r_hi, self.n_groups)


def _pair2(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class LayerSpec:
    """One conv or linear layer's geometry (per sample) and its decision precision.

    A linear layer is a 1x1 conv on a ``1 x L`` map. ``group``/``block_size``/``decision``
    describe the decision grid: for output-directed decisions it covers the output channels
    and map, for input-directed decisions the input ones. ``bits``/``hi_bits``: activation bits
    of the layer's input codes and how many form the high plane (a static layer keeps the split
    and runs both planes). ``k_bounds``: the enforced per-block refine counts, or ``None``.
    """

    name: str
    kind: Kind
    in_channels: int
    out_channels: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    group: tuple[int, int] = (4, 4)
    block_size: int = 16
    decision: Decision = "output"
    dynamic: bool = True
    bits: int = 8
    hi_bits: int = 4
    score: Score = "max"
    k_bounds: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for fname in ("in_channels", "out_channels", "groups", "block_size", "bits"):
            if getattr(self, fname) < 1:
                raise ValueError(f"layer {self.name!r}: {fname} must be >= 1")
        for fname in ("in_hw", "out_hw", "kernel", "stride", "dilation", "group"):
            v = getattr(self, fname)
            if len(v) != 2 or min(v) < 1:
                raise ValueError(f"layer {self.name!r}: {fname} must be two integers >= 1, got {v}")
        if min(self.padding) < 0:
            raise ValueError(f"layer {self.name!r}: padding must be >= 0, got {self.padding}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"layer {self.name!r}: groups={self.groups} must divide in_channels="
                f"{self.in_channels} and out_channels={self.out_channels}"
            )
        if not 1 <= self.hi_bits <= self.bits:
            raise ValueError(f"layer {self.name!r}: hi_bits must lie in 1..bits={self.bits}")
        if self.decision not in DECISIONS:
            raise ValueError(f"layer {self.name!r}: decision must be 'output' or 'input'")

    @property
    def lo_bits(self) -> int:
        """Bits of the low plane."""
        return self.bits - self.hi_bits

    def decision_map(self, decision: Decision | None = None) -> tuple[int, tuple[int, int]]:
        """``(channels, (H, W))`` the decision grid covers (output or input side)."""
        d = decision or self.decision
        if d == "output":
            return self.out_channels, self.out_hw
        return self.in_channels, self.in_hw

    def grid(self, decision: Decision | None = None) -> GridGeometry:
        """The decision grid over the map of ``decision`` (default: the layer's own)."""
        ch, (h, w) = self.decision_map(decision)
        return GridGeometry(ch, h, w, self.block_size, self.group[0], self.group[1])

    def mask_shape(self, samples: int, decision: Decision | None = None) -> tuple[int, ...]:
        """``(N, n_blocks, n_gh, n_gw)`` of this layer's group masks (ceil-ed grid)."""
        return self.grid(decision).mask_shape(samples)

    def spec_dict(self) -> dict[str, Any]:
        """The :class:`LayerSpec` fields alone, JSON-able (a subclass's extras left out)."""
        d = asdict(self)
        return {k: d[k] for k in LayerSpec.__dataclass_fields__}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls: type[SpecT], d: dict[str, Any]) -> SpecT:
        """Inverse of :meth:`to_dict` (lists become tuples; absent fields take defaults)."""
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)


def hardware_units(
    hw: HardwareConfig,
    group: Any = None,
    block_size: int | None = None,
    aligned: bool = True,
) -> tuple[tuple[int, int], int]:
    """``(group, block_size)`` of a layer, the array's defaults filling what is ``None``.

    ``aligned``: the units the configured dataflow advances in lock-step
    (:meth:`~dynabit.config.hardware.HardwareConfig.aligned_units`, used for layers the
    simulator describes itself); otherwise the output-stationary defaults (rows as a squarest
    patch, columns as a block), which quantization configs and static program layers take.
    The two agree on square arrays.
    """
    if aligned:
        hw_group, hw_block = hw.aligned_units()
    else:
        hw_group, hw_block = hw.default_group_shape(), hw.default_block_size()
    g = _pair2(group) if group is not None else tuple(hw_group)
    b = int(block_size) if block_size is not None else int(hw_block)
    return (int(g[0]), int(g[1])), b


def hardware_split(hw: HardwareConfig, bits: int) -> int:
    """High-plane bits of a ``bits``-wide layer that gives no split of its own: one activation
    chunk of the array (``act_chunk_bits``), at most ``bits``."""
    return min(int(hw.act_chunk_bits), int(bits))
