"""Integer arithmetic of frozen models: fixed-point requantization and integer modules.

After :func:`dynabit.quant.convert` every tensor that flows between the modules of a frozen
model is an exact integer tensor times a known scale, held in float64 (the integer is recovered
exactly by ``round(v / scale)``), and every rounding is an integer operation that the integer
engine (:mod:`dynabit.engine`) repeats bit for bit:

- a quantized layer's output is its int32 accumulator (scale ``s_in * s_w[c]``, per channel);
- a layer's input codes come from the producer's integers by a fixed-point *requantization*
  ``clamp((t * m[c] + 2**(k[c]-1)) >> k[c], q_min, q_max)`` (round half up), or, for the
  model input, by ``clamp(round_half_even(x / s), ...)`` in float32 (as ONNX QuantizeLinear);
- a residual add becomes :class:`IntAdd`: both operands are brought to a fine common unit with
  one shared shift and rounded once; the sum is kept in int32;
- average pooling becomes :class:`IntAvgPool` (integer sum, rounded division, same unit) and
  ``ReLU6``/``Hardtanh`` become :class:`IntClamp` (integer bounds, per channel).

``ReLU``, max pooling, flatten, identity and dropout are exact on such tensors and stay as they
are. :mod:`dynabit.quant.faithful` finds where each of these applies.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dynabit.config.scores import score_for
from dynabit.quant.decisions import Grid

# Multipliers are normalised to [2**(MULT_BITS-1), 2**MULT_BITS): 30 bits keeps every
# product of an int32 value by a multiplier, plus the rounding constant, inside int64.
MULT_BITS = 30
# Largest right shift used by a requantization (2**62 still fits int64).
MAX_SHIFT = 62
# Residual (Add output) tensors: units of 2**-RESIDUAL_FRAC_BITS of their consumer's step.
RESIDUAL_FRAC_BITS = 8
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class UnsupportedLayerError(ValueError):
    """A model contains an operation the integer path cannot represent exactly."""


# ----------------------------------------------------------------------------- arithmetic


def fixed_point(ratio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer multipliers and right shifts with ``m * 2**-k ~= ratio`` (each ratio > 0).

    ``m`` lies in ``[2**(MULT_BITS-1), 2**MULT_BITS)`` (relative error <= 2**-MULT_BITS) unless
    the ratio is so small that the shift is capped at :data:`MAX_SHIFT`. Shifts are >= 1.
    """
    flat = ratio.detach().double().reshape(-1).tolist()
    mults, shifts = [], []
    for r in flat:
        if not (r > 0 and math.isfinite(r)):
            raise ValueError(f"requantization ratio must be positive and finite, got {r}")
        f, e = math.frexp(r)  # r = f * 2**e, f in [0.5, 1)
        m = round(f * (1 << MULT_BITS))
        if m == 1 << MULT_BITS:
            m, e = m >> 1, e + 1
        k = MULT_BITS - e
        if k < 1:
            raise ValueError(
                f"requantization ratio {r:.3g} is too large (>= 2**{MULT_BITS - 1}): "
                "the scales of this model are inconsistent"
            )
        if k > MAX_SHIFT:
            m = (m + (1 << (k - MAX_SHIFT - 1))) >> (k - MAX_SHIFT)
            k = MAX_SHIFT
        mults.append(m)
        shifts.append(k)
    shape = ratio.shape
    return (
        torch.tensor(mults, dtype=torch.int64).reshape(shape),
        torch.tensor(shifts, dtype=torch.int64).reshape(shape),
    )


def rshift_round(t: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``floor(t / 2**shift + 1/2)`` for int64 ``t`` (round half up), ``shift >= 1``."""
    return (t + (torch.ones_like(shift) << (shift - 1))) >> shift


def requantize(
    t: torch.Tensor, mult: torch.Tensor, shift: torch.Tensor, qmin: int, qmax: int
) -> torch.Tensor:
    """``clamp(round_half_up(t * mult / 2**shift), qmin, qmax)`` in int64 (broadcasting)."""
    return torch.clamp(rshift_round(t * mult, shift), qmin, qmax)


def quantize_float(x: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Model-input codes: ``clamp(round_half_even(x / s), qmin, qmax)`` computed in float32.

    This is ONNX ``QuantizeLinear``'s arithmetic, so an exported graph quantizes identically.
    Returns int64.
    """
    s = scale.detach().to(torch.float32)
    return torch.clamp(torch.round(x.to(torch.float32) / s), qmin, qmax).to(torch.int64)


def channel_param(p: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-channel vector (or a scalar) along dim 1 of ``like``.

    A vector of ``C`` entries applied to a ``(N, C*k)`` tensor (a flattened ``(N, C, H, W)``
    map) is repeated ``k`` times per channel, matching ``flatten(1)``'s channel-major order.
    """
    if p.numel() == 1:
        return p.reshape(())
    if like.dim() < 2:
        raise ValueError(f"per-channel parameter needs a (N, C, ...) tensor, got {like.shape}")
    c = like.shape[1]
    if c != p.numel():
        if c % p.numel():
            raise ValueError(f"{p.numel()} per-channel values do not fit {c} channels")
        p = p.repeat_interleave(c // p.numel())
    return p.reshape(1, c, *([1] * (like.dim() - 2)))


def recover(v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The exact integers behind ``v = t * scale`` (float64 values), as int64."""
    s = channel_param(scale.to(torch.float64), v)
    return torch.round(v.double() / s).to(torch.int64)


def int_group_score(values: torch.Tensor, grid: Grid, how: str) -> torch.Tensor:
    """Integer group score of int64 ``values`` ``(N, C, H, W)``: max, or floor of the mean.

    Returns int64 ``(N, blocks, gh, gw)``; padding cells (partial blocks and groups) are
    ignored.
    """
    n = values.shape[0]
    pc, ph, pw = grid.padding
    score = score_for(how)
    fill = score.pad_value(torch.iinfo(torch.int64).min)
    if pc or ph or pw:
        values = F.pad(values, (0, pw, 0, ph, 0, pc), value=fill)
    cells = values.reshape(n, *grid.cell_shape)
    return score.exact(
        cells, (2, 4, 6), lambda: grid.valid_counts(values.device).to(torch.int64), torch
    )


def add_multipliers(
    scale_a: torch.Tensor, scale_b: torch.Tensor, scale_out: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-channel multipliers of both add operands and their common right shift."""
    ratios = torch.cat([scale_a.reshape(-1), scale_b.reshape(-1)]).double() / float(scale_out)
    _, k = fixed_point(ratios.max().reshape(1))  # the shift that fits the largest ratio
    shift = int(k)
    mult = torch.round(ratios * float(2**shift)).to(torch.int64)
    if int(mult.max()) >= 1 << MULT_BITS:
        shift -= 1
        mult = torch.round(ratios * float(2**shift)).to(torch.int64)
    if shift < 1:
        raise ValueError("residual add: operand scales too large for its output unit")
    n = scale_a.numel()
    return mult[:n].clone(), mult[n:].clone(), shift


# ----------------------------------------------------------------------------- modules


class IntModule(nn.Module):
    """Base of the integer-faithful replacement modules: float64 out, or the model's dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.out_dtype: torch.dtype = torch.float64

    def _emit(self, t: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return (t.double() * channel_param(scale.double(), t)).to(self.out_dtype)


class IntAdd(IntModule):
    """Residual add on integers: ``clamp32(round_half_up((a*Ma[c] + b*Mb[c]) / 2**k))``.

    Operand ``a`` has per-channel scale ``scale_a`` and ``Ma = round(scale_a/scale_out * 2**k)``,
    likewise ``b``; the output is an int32 tensor in units of ``scale_out`` (a scalar).
    """

    def __init__(
        self, scale_a: torch.Tensor, scale_b: torch.Tensor, scale_out: torch.Tensor
    ) -> None:
        super().__init__()
        mult_a, mult_b, shift = add_multipliers(scale_a, scale_b, scale_out)
        self.register_buffer("scale_a", scale_a.double().reshape(-1).clone())
        self.register_buffer("scale_b", scale_b.double().reshape(-1).clone())
        self.register_buffer("scale_out", scale_out.double().reshape(1).clone())
        self.register_buffer("mult_a", mult_a)
        self.register_buffer("mult_b", mult_b)
        self.shift = shift

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(f"IntAdd operands differ in shape: {a.shape} vs {b.shape}")
        ta, tb = recover(a, self.scale_a), recover(b, self.scale_b)
        acc = ta * channel_param(self.mult_a, ta) + tb * channel_param(self.mult_b, tb)
        z = torch.clamp(rshift_round(acc, torch.tensor(self.shift)), INT32_MIN, INT32_MAX)
        return self._emit(z, self.scale_out)

    def extra_repr(self) -> str:
        return f"shift={self.shift}"


def _pair(v: int | tuple[int, ...] | None) -> tuple[int, int] | None:
    if v is None:
        return None
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


Bins = tuple[tuple[int, int], ...]


def pool_bins(
    pool: nn.AvgPool2d | nn.AdaptiveAvgPool2d, in_hw: tuple[int, int]
) -> tuple[tuple[int, int], Bins, Bins]:
    """``(padding, row_bins, col_bins)`` of an average pool on an ``in_hw`` input.

    Bins are half-open ``[start, end)`` ranges on the zero-padded input; output ``(i, j)`` is
    the mean over ``row_bins[i] x col_bins[j]`` (padding counts, as ``count_include_pad``).
    ``AdaptiveAvgPool2d`` uses PyTorch's bins ``[floor(i*H/o), ceil((i+1)*H/o))``.
    """
    if isinstance(pool, nn.AdaptiveAvgPool2d):
        o = pool.output_size
        o = (o, o) if isinstance(o, int) or o is None else tuple(o)
        bins = []
        for size, out in zip(in_hw, o, strict=True):
            out = size if out is None else int(out)
            bins.append(tuple((i * size // out, -(-(i + 1) * size // out)) for i in range(out)))
        return (0, 0), bins[0], bins[1]
    problem = pool_problem(pool)
    if problem:
        raise UnsupportedLayerError(problem)
    k = _pair(pool.kernel_size)
    st = _pair(pool.stride) or k
    pad = _pair(pool.padding)
    bins = []
    for size, kk, ss, pp in zip(in_hw, k, st, pad, strict=True):
        n_out = (size + 2 * pp - kk) // ss + 1
        bins.append(tuple((i * ss, i * ss + kk) for i in range(n_out)))
    return pad, bins[0], bins[1]


def bin_sums(t: torch.Tensor, row_bins: Bins, col_bins: Bins) -> torch.Tensor:
    """Exact int64 sums of ``t`` ``(N, C, H, W)`` over every ``row_bin x col_bin`` window."""
    integral = F.pad(t.to(torch.int64).cumsum(-2).cumsum(-1), (1, 0, 1, 0))
    r0 = torch.tensor([b[0] for b in row_bins])
    r1 = torch.tensor([b[1] for b in row_bins])
    c0 = torch.tensor([b[0] for b in col_bins])
    c1 = torch.tensor([b[1] for b in col_bins])

    def at(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return integral[:, :, r[:, None], c[None, :]]

    return at(r1, c1) - at(r0, c1) - at(r1, c0) + at(r0, c0)


class IntAvgPool(IntModule):
    """Average pooling of integers: exact window sums, then ``round_half_up(sum / count)``.

    Built from an ``AvgPool2d`` or an ``AdaptiveAvgPool2d`` (any input and output size: bins
    of different sizes, overlapping or not, each divided by its own element count); zero
    padding counts in the window. The unit is unchanged.
    """

    def __init__(self, pool: nn.AvgPool2d | nn.AdaptiveAvgPool2d, scale: torch.Tensor) -> None:
        super().__init__()
        problem = pool_problem(pool)
        if problem:
            raise UnsupportedLayerError(problem)
        self.pool = pool
        self.register_buffer("scale", scale.double().reshape(-1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad, row_bins, col_bins = pool_bins(self.pool, (x.shape[-2], x.shape[-1]))
        t = recover(x, self.scale)
        if any(pad):
            t = F.pad(t, (pad[1], pad[1], pad[0], pad[0]))
        sums = bin_sums(t, row_bins, col_bins)
        counts = torch.tensor(
            [[(r1 - r0) * (c1 - c0) for c0, c1 in col_bins] for r0, r1 in row_bins],
            dtype=torch.int64,
        )
        out = torch.div(2 * sums + counts, 2 * counts, rounding_mode="floor")
        return self._emit(out, self.scale)


def pool_problem(pool: nn.Module) -> str | None:
    """Why an average pool has no integer form here, or None."""
    if isinstance(pool, nn.AvgPool2d):
        if pool.ceil_mode or pool.divisor_override is not None:
            return "AvgPool2d with ceil_mode or divisor_override is not supported"
        if any(_pair(pool.padding) or (0, 0)) and not pool.count_include_pad:
            return "padded AvgPool2d needs count_include_pad=True"
        return None
    if isinstance(pool, nn.AdaptiveAvgPool2d):
        return None
    return f"{type(pool).__name__} is not an average pool"


class IntClamp(IntModule):
    """``clamp(t, lo[c], hi[c])`` on integers (ReLU6 / Hardtanh on a known-scale tensor)."""

    def __init__(self, scale: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", scale.double().reshape(-1).clone())
        self.register_buffer("lo", lo.to(torch.int64).reshape(-1).clone())
        self.register_buffer("hi", hi.to(torch.int64).reshape(-1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = recover(x, self.scale)
        t = torch.minimum(torch.maximum(t, channel_param(self.lo, t)), channel_param(self.hi, t))
        return self._emit(t, self.scale)
