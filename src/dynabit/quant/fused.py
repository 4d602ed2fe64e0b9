"""Fused training kernels of the quantized layers (custom autograd functions).

Each function computes what the plain composition of torch ops computed before, with fewer
full-size intermediates and only the gradients that are used:

- :func:`dual_codes`: activation codes, their split and the dequantized high part in one pass,
  with the straight-through / LSQ gradients written out (no chain of six elementwise nodes,
  no bool mask: the clamp's pass range is read from ``x / s`` in the backward);
- :func:`low_pass`: the low-pass product ``op(lo * s, W)``, whose input ``lo`` carries no
  gradient, so its backward computes the weight gradient only and the scale gradient from the
  output (``dL/ds = sum(g * y) / s`` by linearity) instead of a full input-gradient convolution;
- :func:`masked_low_pass`: the low pass added under a pixel mask (output-directed blocks) in
  one node, so the scale gradient comes from the per-pixel mask gradient instead of another
  full-size product (a rounding-level change of that one scalar gradient);
- :func:`hard_mask`: the hard ``score > threshold`` mask whose backward is the sigmoid
  surrogate's, computed only in the backward pass and only when something needs it;
- :func:`dual_conv`: the whole training forward of an output-directed conv with max scores over
  whole blocks (the default method) in one node built from the same ops as the functions
  above, so its buffers are reused across the steps and no full-size zero gradient is built.

Values are identical to the composed ops; gradients agree up to float rounding (the tests in
``tests/quant/test_quant_fused.py`` compare them with the composed reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.autograd.function import FunctionCtx

from dynabit.quant.decisions import Grid

WeightGrad = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _split(
    q: torch.Tensor, lo_bits: int, midpoint: bool
) -> tuple[torch.Tensor, float, torch.Tensor]:
    """``(h, unit, lo)`` of integer-valued codes with ``high_pass(q) == h * unit`` and
    ``lo == q - high_pass(q)``, exactly."""
    # floor(q / 2^b) == round((q - (2^b - 1) / 2) / 2^b) for integers q: the offset puts every
    # quotient strictly inside (k - 1/2, k + 1/2), all steps are exact in binary, and round
    # runs several times faster than floor or remainder on the CPU.
    step = float(1 << lo_bits)
    # One pass for (q - offset) / 2^b: c + q * 2^-b with a 0-dim c, exact as well.
    c = q.new_tensor(-(step - 1.0) / (2.0 * step))
    quot = torch.add(c, q, alpha=1.0 / step).round_()
    if midpoint:
        # high_pass's q_hi * 2^b + (q_hi != 0) * 2^(b-1), in place and without a bool mask:
        # |sign(q_hi)| is that indicator, and both terms are exact.
        hp = quot.abs().sign_().mul_(step / 2.0).add_(quot, alpha=step)
        return hp, 1.0, torch.sub(q, hp)
    return quot, step, torch.add(q, quot, alpha=-step)


def _pass_bounds(qn: int, qp: int, dtype: torch.dtype) -> tuple[float, float] | None:
    """Open bounds ``(a, b)`` with ``qn <= round(v) <= qp`` exactly when ``a < v < b``
    (round half to even), or None where the dtype cannot hold them exactly."""
    half = torch.tensor([qn - 0.5, qp + 0.5], dtype=torch.float64)
    if not torch.equal(half.to(dtype).double(), half):
        return None
    t = half.to(dtype)
    # qn - 1/2 rounds to qn when qn is even (so it passes): step the bound just below it.
    lo = torch.nextafter(t[0], t[0] - 1) if qn % 2 == 0 else t[0]
    hi = torch.nextafter(t[1], t[1] + 1) if qp % 2 == 0 else t[1]
    return float(lo), float(hi)


class _DualCodes(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        x: torch.Tensor,
        s: torch.Tensor,
        qn: int,
        qp: int,
        lo_bits: int,
        midpoint: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = x / s
        q = torch.round(v).clamp_(qn, qp)
        if lo_bits > 0:
            h, unit, lo = _split(q, lo_bits, midpoint)
        else:
            h, unit, lo = q, 1.0, q.new_empty(0)
        # Where the clamp lets the straight-through gradient pass is a range of v; the
        # backward reads it from v (hardtanh's backward) instead of a saved bool mask, whose
        # compare and select are several times slower than a plain elementwise pass.
        ctx.save_for_backward(v, h)
        ctx.unit, ctx.qrange = unit, (qn, qp)  # type: ignore[attr-defined]
        ctx.bounds = _pass_bounds(qn, qp, v.dtype)  # type: ignore[attr-defined]
        ctx.mark_non_differentiable(lo, q)
        # The codes' gradients are always None: don't let autograd fill two full-size zeros.
        ctx.set_materialize_grads(False)
        # (h * unit) * s == h * (unit * s) exactly: unit is a power of two.
        return h * (s * unit), lo, q

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, g: torch.Tensor | None, _g_lo: object, _g_q: object
    ) -> tuple[torch.Tensor | None, ...]:
        if g is None:
            return None, None, None, None, None, None
        v, h = ctx.saved_tensors  # type: ignore[attr-defined]
        g = g.contiguous()
        bounds = ctx.bounds  # type: ignore[attr-defined]
        if bounds is not None:
            grad_x = torch.ops.aten.hardtanh_backward(g, v, *bounds)
        else:
            r = torch.round(v)
            grad_x = torch.where(r.clamp(*ctx.qrange) == r, g, 0.0)  # type: ignore[attr-defined]
        grad_s = None
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            # d(hi * s)/ds = hi + s * d(hi)/ds, and d(hi)/ds = -v / s where the codes pass.
            # Cascade sums (not a BLAS dot): a batch split across processes must round alike.
            # Both products share one scratch buffer (a fresh one costs page faults).
            t = torch.mul(g, h)
            gh = t.sum()
            gv = torch.mul(grad_x, v, out=t).sum()
            grad_s = gh * ctx.unit - gv  # type: ignore[attr-defined]
        return grad_x, grad_s, None, None, None, None


def dual_codes(
    x: torch.Tensor, s: torch.Tensor, qrange: tuple[int, int], lo_bits: int, midpoint: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(hi * s, lo, q)`` of ``q = clamp(round(x / s))``: the dequantized high part (with the
    straight-through gradient to ``x`` and the LSQ gradient to ``s``), the low codes and the
    codes (no gradient). ``lo_bits == 0``: a static layer, ``hi == q`` and ``lo`` is empty."""
    qn, qp = qrange
    if torch.is_grad_enabled() and (x.requires_grad or s.requires_grad):
        return _DualCodes.apply(x, s, qn, qp, lo_bits, midpoint)
    q = torch.round(x / s).clamp_(qn, qp)
    if lo_bits == 0:
        return q * s, q.new_empty(0), q
    h, unit, lo = _split(q, lo_bits, midpoint)
    return h * (s * unit), lo, q


class _LowPass(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        lo: torch.Tensor,
        s: torch.Tensor,
        w: torch.Tensor,
        op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        weight_grad: WeightGrad,
    ) -> torch.Tensor:
        inp = lo * s
        y = op(inp, w)
        ctx.save_for_backward(inp, y, s, w)
        ctx.weight_grad = weight_grad  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        inp, y, s, w = ctx.saved_tensors  # type: ignore[attr-defined]
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        g = g.contiguous()
        grad_s = (g * y).sum() / s if needs[1] else None
        grad_w = ctx.weight_grad(inp, g, w) if needs[2] else None  # type: ignore[attr-defined]
        return None, grad_s, grad_w, None, None


def low_pass(
    lo: torch.Tensor,
    s: torch.Tensor,
    w: torch.Tensor,
    op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    weight_grad: WeightGrad,
) -> torch.Tensor:
    """``op(lo * s, w)`` for codes ``lo`` that carry no gradient (``op`` is linear, no bias)."""
    if lo.requires_grad or not torch.is_grad_enabled():
        return op(lo * s, w)
    return _LowPass.apply(lo, s, w, op, weight_grad)


class _HardMask(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx, score: torch.Tensor, threshold: torch.Tensor, temperature: float
    ) -> torch.Tensor:
        t = threshold.view(1, -1, *([1] * (score.dim() - 2)))
        ctx.save_for_backward(score, threshold)
        ctx.temperature = temperature  # type: ignore[attr-defined]
        return (score > t).to(score.dtype)

    @staticmethod
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        score, threshold = ctx.saved_tensors  # type: ignore[attr-defined]
        t = threshold.view(1, -1, *([1] * (score.dim() - 2)))
        soft = torch.sigmoid((score - t) / ctx.temperature)  # type: ignore[attr-defined]
        d = torch.ops.aten.sigmoid_backward(g, soft) / ctx.temperature  # type: ignore[attr-defined]
        grad_score = d if ctx.needs_input_grad[0] else None  # type: ignore[attr-defined]
        grad_t = None
        if ctx.needs_input_grad[1]:  # type: ignore[attr-defined]
            dims = [0, *range(2, d.dim())]
            grad_t = -d.sum(dim=dims).reshape(threshold.shape)
        return grad_score, grad_t, None


def hard_mask(score: torch.Tensor, threshold: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hard ``score > threshold`` forward; sigmoid((score - threshold)/T) gradient backward.

    ``threshold`` broadcasts over the block axis (dim 1). Without anything to differentiate
    (a detached score and fixed thresholds) the surrogate is not computed at all.
    """
    if torch.is_grad_enabled() and (score.requires_grad or threshold.requires_grad):
        return _HardMask.apply(score, threshold, temperature)
    t = threshold.view(1, -1, *([1] * (score.dim() - 2)))
    return (score > t).to(score.dtype)


class _MaskedLowPass(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        base: torch.Tensor,
        lo: torch.Tensor,
        s: torch.Tensor,
        w: torch.Tensor,
        m: torch.Tensor,
        op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        weight_grad: WeightGrad,
        blocked: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        inp = lo * s
        y = op(inp, w)
        ctx.save_for_backward(inp, y, s, w, m)
        ctx.weight_grad, ctx.blocked = weight_grad, blocked  # type: ignore[attr-defined]
        return torch.addcmul(base, blocked(y), m)

    @staticmethod
    def backward(ctx: FunctionCtx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        inp, y, s, w, m = ctx.saved_tensors  # type: ignore[attr-defined]
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        yb = ctx.blocked(y)  # type: ignore[attr-defined]
        grad_m = grad_s = grad_w = t = None
        if needs[2] or needs[4]:
            # The mask's gradient per pixel; the scale's follows from it without another
            # full-size product: sum(g * m * y) == sum(m * sum_channels(g * y)).
            t = torch.mul(g, yb)
            grad_m = t.sum(dim=2, keepdim=True)
            if needs[2]:
                grad_s = (grad_m * m).sum() / s
        if needs[3]:
            # g * m into the product's buffer when there is one (a fresh one costs page faults).
            gm = (g * m if t is None else torch.mul(g, m, out=t)).reshape(y.shape)
            grad_w = ctx.weight_grad(inp, gm, w)  # type: ignore[attr-defined]
        return g, None, grad_s, grad_w, grad_m if needs[4] else None, None, None, None


def masked_low_pass(
    base: torch.Tensor,
    lo: torch.Tensor,
    s: torch.Tensor,
    w: torch.Tensor,
    m: torch.Tensor,
    op: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    weight_grad: WeightGrad,
    blocked: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``base + m * blocked(op(lo * s, w))`` for a blocked ``(N, blocks, block_size, H, W)``
    base and a ``(N, blocks, 1, H, W)`` pixel mask: the masked low pass of an output-directed
    layer in one node, whose backward gives the mask, scale and weight gradients from two
    full-size products (the scale's gradient differs from the separate nodes' by rounding)."""
    return _MaskedLowPass.apply(base, lo, s, w, m, op, weight_grad, blocked)


ConvBackward = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, tuple[bool, bool, bool]],
    tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
]


@dataclass(frozen=True)
class DualConvSpec:
    """What :func:`dual_conv` needs of its layer besides the tensors.

    ``op(x, w, b)`` is the layer's product, ``backward(g, inp, w, (input, weight, bias))`` its
    gradients (``aten.convolution_backward``'s), ``grid(y)`` the decision grid of an output.
    """

    qrange: tuple[int, int]
    lo_bits: int
    midpoint: bool
    temperature: float
    op: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
    backward: ConvBackward
    grid: Callable[[torch.Tensor], Grid]


def _split_(q: torch.Tensor, lo_bits: int, midpoint: bool) -> tuple[torch.Tensor, float]:
    """:func:`_split` turning ``q`` itself into the low codes: ``(h, unit)``, same values."""
    step = float(1 << lo_bits)
    c = q.new_tensor(-(step - 1.0) / (2.0 * step))
    quot = torch.add(c, q, alpha=1.0 / step).round_()
    if midpoint:
        hp = quot.abs().sign_().mul_(step / 2.0).add_(quot, alpha=step)
        q.sub_(hp)
        return hp, 1.0
    q.add_(quot, alpha=-step)
    return quot, step


class _DualConv(torch.autograd.Function):
    """The training forward of an output-directed dual-precision layer with max scores over
    whole blocks, in one node: codes and split, high pass, group max, hard mask, low pass
    and the masked sum, each value computed by the same torch op as in the separate nodes
    (:class:`_DualCodes`, :func:`group_max`, :class:`_HardMask`, :class:`_MaskedLowPass`).

    One node owns every intermediate, so the forward reuses the codes' buffer for the low
    pass input and the high pass's for the output, the group max's ties are found in the
    forward (before the high pass is overwritten), and the backward adds the max's sparse
    gradient into a copy of the output gradient instead of materialising a full-size zero
    tensor and summing it in, and reuses one product buffer throughout.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: FunctionCtx,
        x: torch.Tensor,
        s: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor | None,
        threshold: torch.Tensor,
        score_scale: torch.Tensor,
        spec: DualConvSpec,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        qn, qp = spec.qrange
        v = x / s
        codes = torch.round(v).clamp_(qn, qp)
        h, unit = _split_(codes, spec.lo_bits, spec.midpoint)  # codes now hold the low part
        x_hi = h * (s * unit)
        y = spec.op(x_hi, w, b)
        grid = spec.grid(y)
        blocks = grid.by_block(y)
        pix = blocks.amax(dim=2)
        # pixel_reduce(pix, "max"), keeping the cell view for finding the ties below.
        ph = grid.n_gh * grid.group_h - grid.height
        pw = grid.n_gw * grid.group_w - grid.width
        if ph or pw:
            pix = torch.nn.functional.pad(pix, (0, pw, 0, ph), value=float("-inf"))
        n, nb = pix.shape[:2]
        cells = pix.reshape(n, nb, grid.n_gh, grid.group_h, grid.n_gw, grid.group_w)
        score = cells.amax(dim=(3, 5))
        score_n = score / score_scale
        mask = (score_n > threshold.view(1, -1, 1, 1)).to(score_n.dtype)
        # The elements holding their cell's max (as _GroupMax's backward finds them).
        n_, b_, gi, di, gj, dj = (cells == score[:, :, :, None, :, None]).nonzero(as_tuple=True)
        h_, w_ = gi * grid.group_h + di, gj * grid.group_w + dj
        if ph or pw:  # a padded place ties only with a cell of -inf: never a real element
            real = (h_ < grid.height) & (w_ < grid.width)
            n_, b_, gi, gj, h_, w_ = n_[real], b_[real], gi[real], gj[real], h_[real], w_[real]
        k_, c_ = (blocks[n_, b_, :, h_, w_] == score[n_, b_, gi, gj].unsqueeze(1)).nonzero(
            as_tuple=True
        )
        n_, b_, h_, w_, gi, gj = n_[k_], b_[k_], h_[k_], w_[k_], gi[k_], gj[k_]
        # Each tied element once: its cell and its place in the (contiguous) output.
        cell = ((n_ * grid.n_blocks + b_) * grid.n_gh + gi) * grid.n_gw + gj
        flat = (((n_ * grid.n_blocks + b_) * grid.block_size + c_) * grid.height + h_) * grid.width
        flat += w_
        count = torch.zeros(score.numel(), dtype=y.dtype, device=y.device)
        count.index_add_(0, cell, torch.ones_like(cell, dtype=y.dtype))
        inp = codes.mul_(s)  # lo * s
        y_lo = spec.op(inp, w, None)
        ctx.m_pix = m_pix = grid.to_pixels(mask).unsqueeze(2)  # type: ignore[attr-defined]
        blocks.addcmul_(grid.by_block(y_lo), m_pix)  # y_hi + mask * y_lo, in place
        ctx.save_for_backward(v, h, x_hi, inp, y_lo, s, w, threshold, score_n, score_scale)
        ctx.ties = (cell, flat, count)  # type: ignore[attr-defined]
        ctx.spec, ctx.grid, ctx.unit = spec, grid, unit  # type: ignore[attr-defined]
        ctx.has_bias = b is not None  # type: ignore[attr-defined]
        ctx.bounds = _pass_bounds(qn, qp, v.dtype)  # type: ignore[attr-defined]
        ctx.set_materialize_grads(False)
        return y, mask

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: FunctionCtx, g: torch.Tensor | None, g_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        v, h, x_hi, inp, y_lo, s, w, threshold, score_n, score_scale = ctx.saved_tensors  # type: ignore[attr-defined]
        spec: DualConvSpec = ctx.spec  # type: ignore[attr-defined]
        grid: Grid = ctx.grid  # type: ignore[attr-defined]
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        g = torch.zeros_like(y_lo) if g is None else g.contiguous()
        m_pix = ctx.m_pix  # type: ignore[attr-defined]
        gb = grid.by_block(g)
        # The masked low pass: the mask's gradient per pixel, the scale's from it, then the
        # weight's from g * m in the same buffer (as _MaskedLowPass's backward).
        buf = torch.mul(gb, grid.by_block(y_lo))
        grad_mpix = buf.sum(dim=2, keepdim=True)
        grad_s_lo = (grad_mpix * m_pix).sum() / s
        grad_w_lo = None
        if needs[2]:
            gm = torch.mul(gb, m_pix, out=buf).reshape(y_lo.shape)
            _, grad_w_lo, _ = spec.backward(gm, inp, w, (False, True, False))
        # The hard mask's surrogate (as _HardMask's backward), fed by both of its uses.
        grad_m = grid.pixel_reduce(grad_mpix.squeeze(2), "sum")
        if g_mask is not None:
            grad_m = grad_m + g_mask
        t = threshold.view(1, -1, 1, 1)
        soft = torch.sigmoid((score_n - t) / spec.temperature)
        d = torch.ops.aten.sigmoid_backward(grad_m, soft) / spec.temperature
        grad_t = -d.sum(dim=[0, 2, 3]).reshape(threshold.shape) if needs[4] else None
        # The group max's gradient, shared by the tied elements, added at their positions.
        cell, flat, count = ctx.ties  # type: ignore[attr-defined]
        share = ((d / score_scale).reshape(-1) / count)[cell]
        g_hi = buf.view(y_lo.shape).copy_(g)
        g_hi.view(-1).index_put_((flat,), share, accumulate=True)  # g + share, once each
        want_in = needs[0] or needs[1]
        grad_in, grad_w, grad_b = spec.backward(
            g_hi,
            x_hi,
            w,
            (want_in, needs[2], ctx.has_bias and needs[3]),  # type: ignore[attr-defined]
        )
        if grad_w is not None and grad_w_lo is not None:
            grad_w = grad_w + grad_w_lo
        # The codes (as _DualCodes's backward): straight-through where the clamp passes, LSQ.
        grad_x = grad_s = None
        if want_in:
            assert grad_in is not None
            gin = grad_in.contiguous()
            bounds = ctx.bounds  # type: ignore[attr-defined]
            if bounds is not None:
                grad_x = torch.ops.aten.hardtanh_backward(gin, v, *bounds)
            else:
                r = torch.round(v)
                grad_x = torch.where(r.clamp(*spec.qrange) == r, gin, 0.0)
            if needs[1]:
                gh = gin.mul_(h).sum()
                gv = torch.mul(grad_x, v, out=gin).sum()
                grad_s = (gh * ctx.unit - gv) + grad_s_lo  # type: ignore[attr-defined]
        elif needs[1]:
            grad_s = grad_s_lo
        return (
            grad_x if needs[0] else None,
            grad_s,
            grad_w,
            grad_b,
            grad_t,
            None,
            None,
        )


def dual_conv(
    x: torch.Tensor,
    s: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    threshold: torch.Tensor,
    score_scale: torch.Tensor,
    spec: DualConvSpec,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, mask)`` of an output-directed dual-precision layer in training, max scores over
    whole blocks: ``y = y_hi + mask * y_lo`` and the hard mask ``(N, blocks, gh, gw)`` with the
    sigmoid surrogate's gradient, in one autograd node (values and gradients those of the
    separate nodes)."""
    return _DualConv.apply(x, s, w, b, threshold, score_scale, spec)
