"""Execution of an integer program with integer arithmetic only.

Everything after the input quantization (the one float step, at the boundary) runs on torch
integer tensors: int32 matrix products (int64 when a layer's accumulator bound needs it),
int64 requantization. A dual-precision layer computes its high pass for every group and its
low pass **only for the refined groups**: the engine gathers the refined groups' input windows
(output-directed: the output pixels of each refined (block, group); input-directed: the output
pixels whose window touches a refined input group of the block) and multiplies just those, so
the skipped MACs are not executed. This code is independent of the PyTorch model's frozen path;
:func:`dynabit.engine.lower` only copies the integers over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dynabit.config.layer import LayerSpec
from dynabit.config.scores import score_for
from dynabit.data.base import check_finite
from dynabit.engine.program import IntegerProgram, Op
from dynabit.engine.trace import EngineTrace, LayerTrace

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
I64 = torch.int64


class EngineError(RuntimeError):
    """The program cannot run on this input (wrong shape, accumulator overflow...)."""


@dataclass
class EngineResult:
    """What one run returns: the logits (dequantized), their integer codes, the trace."""

    logits: torch.Tensor  # float64: logits_int * scale
    logits_int: torch.Tensor  # int64
    trace: EngineTrace


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _per_channel(p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ``(C,)`` or ``(1,)`` parameter broadcast along dim 1 of ``x``."""
    if p.numel() == 1:
        return p.reshape(())
    return p.reshape(1, -1, *([1] * (x.dim() - 2)))


def _windows(x: torch.Tensor, kernel, stride, padding, dilation, fill: int = 0) -> torch.Tensor:
    """Sliding windows of ``x`` ``(N, C, H, W)``: ``(N, C, Ho, Wo, kh, kw)`` (a view when
    possible); padding takes the value ``fill``."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph), value=fill)
    win = x.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)
    return win[..., ::dh, ::dw]


class _Layer:
    """Precomputed constants of one conv/linear op."""

    def __init__(
        self,
        op: Op,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        spec: LayerSpec,
    ) -> None:
        a = op.attrs
        self.op = op
        self.name = op.name
        self.is_conv = op.kind == "conv2d"
        w = op.params["weight"].to(I64)
        if not self.is_conv:
            w = w.reshape(*w.shape, 1, 1)
            in_shape, out_shape = (in_shape[0], 1, 1), (out_shape[0], 1, 1)
        self.in_shape, self.out_shape = in_shape, out_shape
        self.cout, self.cin_g, self.kh, self.kw = (int(s) for s in w.shape)
        self.spec = spec
        self.stride, self.padding, self.dilation = spec.stride, spec.padding, spec.dilation
        self.groups = spec.groups
        self.cout_g = self.cout // self.groups
        self.k = self.cin_g * self.kh * self.kw  # MACs per output element
        self.pixels = out_shape[1] * out_shape[2]
        self.dense_macs = self.cout * self.pixels * self.k
        # Largest |accumulator|: decides int32 vs int64 products (the hardware holds int32).
        bits = int(a["bits"])
        qmax = (1 << (bits - 1)) if a["signed"] else (1 << bits) - 1
        bound = self.k * qmax * int(w.abs().max()) + int(op.params["bias"].abs().max())
        if bound > (1 << 62):
            raise EngineError(f"{self.name}: accumulator bound {bound} exceeds int64")
        self.mm_dtype = torch.int32 if bound <= INT32_MAX else I64
        # Weights as (groups, Cout_g, K) matrices, K ordered (ky, kx, c) like the windows: the
        # input channels innermost, so im2col copies runs of channels of a channels-last map.
        w = w.permute(0, 2, 3, 1).reshape(self.groups, self.cout_g, self.k)
        self.w_mat = w.contiguous().to(self.mm_dtype)
        self.bias = op.params["bias"].to(I64)
        self.dynamic = bool(a["dynamic"])
        if self.dynamic:
            grid = self.grid = spec.grid()
            self.lo_bits = spec.lo_bits
            self.midpoint = bool(a["midpoint"])
            self.decision = spec.decision
            self.score = spec.score
            self.block = grid.block_size
            self.gh, self.gw = grid.group
            self.grid_c, self.grid_h, self.grid_w = grid.channels, grid.height, grid.width
            self.n_blocks, self.n_gh, self.n_gw = grid.cells
            self.threshold = op.params["threshold"].to(I64)
            self.score_mult = op.params.get("score_mult")
            self.k_bounds = spec.k_bounds
            # Real elements of every (block, gy, gx) cell (partial blocks/groups at the edges).
            ch, rh, rw = (torch.tensor(e, dtype=I64) for e in grid.extents())
            self.cell_counts = ch[:, None, None] * rh[None, :, None] * rw[None, None, :]

    # ------------------------------------------------------------------ products
    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """All input windows of ``x`` ``(N, C, H, W)`` as a strided view ``(N, Ho, Wo, groups,
        kh, kw, C / groups)`` of one channels-last copy of the map."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            (self.kh, self.kw),
            self.stride,
            self.padding,
            self.dilation,
        )
        x = x.to(self.mm_dtype).permute(0, 2, 3, 1).contiguous()  # (N, H, W, C)
        if ph or pw:
            x = F.pad(x, (0, 0, pw, pw, ph, ph))
        win = x.unfold(1, dh * (kh - 1) + 1, sh).unfold(2, dw * (kw - 1) + 1, sw)
        win = win[..., ::dh, ::dw]  # (N, Ho, Wo, C, kh, kw)
        n, ho, wo = win.shape[:3]
        win = win.reshape(n, ho, wo, self.groups, self.cin_g, kh, kw)
        return win.permute(0, 1, 2, 3, 5, 6, 4)

    def im2col(self, x: torch.Tensor) -> torch.Tensor:
        """``(N*Ho*Wo, groups*K)`` contiguous: one row of window codes per output pixel, each
        group's ``K`` ordered ``(ky, kx, c)``."""
        return self.windows(x).reshape(-1, self.groups * self.k)

    def matmul(self, cols: torch.Tensor) -> torch.Tensor:
        """All output channels for im2col rows ``cols``: int64 ``(Cout, rows)``."""
        out = [
            self.w_mat[g] @ cols[:, g * self.k : (g + 1) * self.k].t() for g in range(self.groups)
        ]
        return (out[0] if self.groups == 1 else torch.cat(out)).to(I64)

    def split(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hi, lo)`` parts of integer codes: ``hi = q_hi << B_lo`` (+ the midpoint offset),
        ``lo = q - hi``; zero codes (and the zero padding) split into zeros."""
        q_hi = q >> self.lo_bits  # floor division by 2**lo_bits (arithmetic shift)
        hi = q_hi << self.lo_bits
        if self.midpoint and self.lo_bits > 0:
            hi = hi + (q_hi != 0).to(hi.dtype) * (1 << (self.lo_bits - 1))
        return hi, q - hi

    def gather(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """im2col rows of the output pixels ``rows`` (flat ``n*Ho*Wo + y*Wo + x``) only:
        ``(len(rows), groups*K)`` as :meth:`im2col`; nothing is copied for the other pixels.
        ``x`` is a map ``(N, C, H, W)`` or its :meth:`windows`."""
        ho, wo = self.out_shape[1:]
        win = x if x.dim() == 7 else self.windows(x)
        n, rem = rows // (ho * wo), rows % (ho * wo)
        return win[n, rem // wo, rem % wo].reshape(rows.numel(), -1)

    def product(
        self, cols: torch.Tensor, cin: tuple[int, int], cout: tuple[int, int]
    ) -> torch.Tensor:
        """Weights of output channels ``cout`` times ``cols`` (im2col rows over the input
        channels ``cin``, both inside one conv group, as :meth:`k_slice` cuts them): int64
        ``(len(cout), rows)``."""
        g = cin[0] // self.cin_g
        w = self.w_mat[g][cout[0] - g * self.cout_g : cout[1] - g * self.cout_g]
        if cin[1] - cin[0] < self.cin_g:
            w = self.k_slice(w, g, *cin, grouped=False)
        return (w @ cols.t()).to(I64)

    def k_slice(
        self, cols: torch.Tensor, g: int, c0: int, c1: int, grouped: bool = True
    ) -> torch.Tensor:
        """The columns of input channels ``[c0, c1)`` (inside conv group ``g``) of im2col rows
        ``cols`` (``grouped``: over all groups, else over group ``g`` only): ``(rows,
        kh*kw*(c1-c0))``, ordered ``(ky, kx, c)``."""
        if grouped:
            cols = cols[:, g * self.k : (g + 1) * self.k]
        lo, hi = c0 - g * self.cin_g, c1 - g * self.cin_g
        if lo == 0 and hi == self.cin_g:
            return cols
        sub = cols.reshape(cols.shape[0], self.kh * self.kw, self.cin_g)[:, :, lo:hi]
        return sub.reshape(cols.shape[0], -1)

    # ------------------------------------------------------------------ decisions
    def scores(self, values: torch.Tensor) -> torch.Tensor:
        """Integer score of every (sample, block, gy, gx) cell of int64 ``values``."""
        n = values.shape[0]
        pc, ph, pw = self.grid.padding
        score = score_for(self.score)
        fill = score.pad_value(torch.iinfo(I64).min)
        v = F.pad(values, (0, pw, 0, ph, 0, pc), value=fill) if pc or ph or pw else values
        v = v.reshape(n, *self.grid.cell_shape)
        v = v.permute(0, 1, 3, 5, 2, 4, 6).reshape(n, self.n_blocks, self.n_gh, self.n_gw, -1)
        return score.exact(v, -1, lambda: self.cell_counts, torch)

    def decide(self, score: torch.Tensor) -> torch.Tensor:
        """Refine mask ``(N, blocks, gy, gx)``: above threshold, then the exact top-k bounds."""
        passed = score > self.threshold.view(1, -1, 1, 1)
        if self.k_bounds is None:
            return passed
        k_lo, k_hi = self.k_bounds
        n, b = score.shape[:2]
        s = score.reshape(n, b, -1)
        # rank = number of groups ahead: strictly higher score, or equal with a lower index.
        idx = torch.arange(s.shape[-1])
        ahead = (s[..., None, :] > s[..., :, None]) | (
            (s[..., None, :] == s[..., :, None]) & (idx[None, :] < idx[:, None])
        )
        rank = ahead.sum(dim=-1).reshape(score.shape)
        return (passed & (rank < k_hi)) | (rank < k_lo)

    def expand(self, mask: torch.Tensor) -> torch.Tensor:
        """A cell mask ``(N, blocks, gy, gx)`` as an element mask over the grid's map."""
        m = mask.repeat_interleave(self.block, 1)[:, : self.grid_c]
        m = m.repeat_interleave(self.gh, 2)[:, :, : self.grid_h]
        return m.repeat_interleave(self.gw, 3)[:, :, :, : self.grid_w]

    # ------------------------------------------------------------------ run
    def as_map(self, acc: torch.Tensor, n: int) -> torch.Tensor:
        """``(Cout, N*Ho*Wo)`` viewed as ``(N, Cout, Ho, Wo)`` (no copy)."""
        ho, wo = self.out_shape[1:]
        return acc.reshape(-1, n, ho, wo).permute(1, 0, 2, 3)

    def __call__(self, codes: torch.Tensor) -> tuple[torch.Tensor, LayerTrace]:
        n = codes.shape[0]
        x = codes.reshape(n, *self.in_shape).to(I64)
        bias = self.bias.view(-1, 1)
        if not self.dynamic:
            acc = self.matmul(self.im2col(x)) + bias  # the codes' windows, copied once
            macs = torch.full((n,), self.dense_macs, dtype=I64)
            elems = self.cout * self.pixels
            trace = LayerTrace.static(self.name, macs, self.dense_macs, elems)
            return self.as_map(acc, n), trace
        # Split the codes on the map, before im2col copies each K times (zeros split into
        # zeros, so the padding of the windows is the same either way).
        hi, lo = self.split(x)
        acc = self.matmul(self.im2col(hi)) + bias  # high pass: every group
        if self.decision == "output":
            values = self.as_map(acc, n) * self.score_mult.to(I64).view(1, -1, 1, 1)
            mask = self.decide(self.scores(values))
            lo_macs = self._low_pass_output(acc, lo, mask)
            refined_macs = lo_macs
        else:
            mask = self.decide(self.scores(x))
            lo_macs, refined_macs = self._low_pass_input(acc, lo, mask)
        refined_elems = (mask.to(I64) * self.cell_counts).sum(dim=(1, 2, 3))
        trace = LayerTrace(
            name=self.name,
            dynamic=True,
            decision=self.decision,
            mask=mask,
            macs_hi=torch.full((n,), self.dense_macs, dtype=I64),
            macs_lo=lo_macs,
            macs_lo_refined=refined_macs,
            macs_dense=self.dense_macs,
            elements=int(self.cell_counts.sum()),
            refined_elements=refined_elems,
            grid=(self.grid_c, self.grid_h, self.grid_w, self.block, self.gh, self.gw),
        )
        return self.as_map(acc, n), trace

    @staticmethod
    def _pieces(c0: int, c1: int, per_group: int) -> list[tuple[int, int, int]]:
        """``(conv group, lo, hi)`` pieces of the channel range ``[c0, c1)``."""
        return [
            (g, max(c0, g * per_group), min(c1, (g + 1) * per_group))
            for g in range(c0 // per_group, (c1 - 1) // per_group + 1)
        ]

    def _low_pass_output(self, acc: torch.Tensor, lo: torch.Tensor, mask: torch.Tensor):
        """Add the low pass of the refined (block, group) cells to ``acc``, and nothing else:
        for each block, the windows of the low codes ``lo`` at its refined pixels are gathered
        and multiplied by the block's weights. Returns the MACs done per sample."""
        n = mask.shape[0]
        ho, wo = self.out_shape[1:]
        macs = torch.zeros(n, dtype=I64)
        if not bool(mask.any()):
            return macs
        # (blocks, N*Ho*Wo): which output pixels each block refines
        pix = mask.repeat_interleave(self.gh, 2)[:, :, :ho].repeat_interleave(self.gw, 3)
        pix = pix[:, :, :, :wo].transpose(0, 1).reshape(self.n_blocks, -1)
        win = self.windows(lo)  # one channels-last copy of the low codes for every block
        for b in range(self.n_blocks):
            rows = pix[b].nonzero().reshape(-1)
            if rows.numel() == 0:
                continue
            cols = self.gather(win, rows)  # refined rows only
            c0, c1 = b * self.block, min((b + 1) * self.block, self.cout)
            for g, a0, a1 in self._pieces(c0, c1, self.cout_g):
                cin = (g * self.cin_g, (g + 1) * self.cin_g)
                part = cols[:, g * self.k : (g + 1) * self.k]
                acc[a0:a1].index_add_(1, rows, self.product(part, cin, (a0, a1)))
                macs += torch.bincount(rows // self.pixels, minlength=n) * ((a1 - a0) * self.k)
        return macs

    def _low_pass_input(self, acc: torch.Tensor, lo: torch.Tensor, mask: torch.Tensor):
        """Add the low pass of the refined input groups: for each input block, only the output
        pixels whose window holds one of its refined inputs, and only the block's channels.
        Returns (MACs done, MACs on refined inputs) per sample."""
        n = mask.shape[0]
        kk = self.kh * self.kw
        macs = torch.zeros(n, dtype=I64)
        refined = torch.zeros(n, dtype=I64)
        if not bool(mask.any()):
            return macs, refined
        elem = self.expand(mask).to(I64)  # (N, Cin, H, W): refined input elements
        win_args = ((self.kh, self.kw), self.stride, self.padding, self.dilation)
        work = []  # (rows, conv group, input channel range)
        touched = torch.zeros(n * self.pixels, dtype=torch.bool)
        for b in range(self.n_blocks):
            if not bool(mask[:, b].any()):
                continue
            c0, c1 = b * self.block, min((b + 1) * self.block, self.grid_c)
            for g, a0, a1 in self._pieces(c0, c1, self.cin_g):
                # refined inputs of this piece inside each output pixel's window
                hits = _windows(elem[:, a0:a1].sum(dim=1, keepdim=True), *win_args)
                hits = hits.sum(dim=(-1, -2)).reshape(-1)  # (N*Ho*Wo,)
                refined += hits.reshape(n, -1).sum(dim=1) * self.cout_g
                rows = hits.nonzero().reshape(-1)
                if rows.numel():
                    work.append((rows, g, a0, a1))
                    touched[rows] = True
        if not work:
            return macs, refined
        union = touched.nonzero().reshape(-1)
        pos = torch.cumsum(touched, 0) - 1
        cols = self.gather(lo * elem, union)  # unrefined low parts never enter a product
        for rows, g, a0, a1 in work:
            sub = self.k_slice(cols.index_select(0, pos[rows]), g, a0, a1)
            cout = (g * self.cout_g, (g + 1) * self.cout_g)
            acc[cout[0] : cout[1]].index_add_(1, rows, self.product(sub, (a0, a1), cout))
            macs += torch.bincount(rows // self.pixels, minlength=n) * (
                (a1 - a0) * kk * self.cout_g
            )
        return macs, refined


class Executor:
    """Runs an :class:`IntegerProgram`; constants are prepared once at construction."""

    def __init__(self, program: IntegerProgram) -> None:
        self.program = program
        self.layers: dict[int, _Layer] = {}
        for i, op in enumerate(program.ops):
            if op.kind in ("conv2d", "linear"):
                in_shape = program.tensors[op.inputs[0]].shape
                out_shape = program.tensors[op.output].shape
                self.layers[i] = _Layer(op, in_shape, out_shape, program.layer_spec(op))

    def quantize_input(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The boundary step (the only float arithmetic): input codes for each quantizer."""
        out = {}
        for op in self.program.ops:
            if op.kind == "quantize":
                s = torch.tensor(op.attrs["scale"], dtype=torch.float32)
                q = torch.round(x.to(torch.float32) / s)
                out[op.output] = torch.clamp(q, op.attrs["qmin"], op.attrs["qmax"]).to(I64)
        return out

    def __call__(self, x: torch.Tensor, keep: bool = False) -> EngineResult:
        """Run on float inputs ``(N, C, H, W)``; ``keep`` also keeps every layer's input codes
        and accumulators in the trace.

        Raises:
            EngineError: the samples' shape is not the program's input shape.
            ValueError: the inputs hold NaN or Inf (the message counts them).
        """
        expect = self.program.input_shape
        if tuple(x.shape[1:]) != tuple(expect):
            raise EngineError(
                f"input samples have shape {tuple(x.shape[1:])}, the program was lowered for "
                f"{tuple(expect)}"
            )
        # NaN/Inf would quantize to arbitrary codes (a silent wrong answer): refuse them.
        check_finite(x, "integer engine input")
        return self.run_codes(self.quantize_input(x), x.shape[0], keep)

    def run_codes(
        self, codes: dict[str, torch.Tensor], batch: int, keep: bool = False
    ) -> EngineResult:
        """Run from the input codes of :meth:`quantize_input`: integer arithmetic only."""
        env: dict[str, torch.Tensor] = dict(codes)
        layers: list[LayerTrace] = []
        for i, op in enumerate(self.program.ops):
            if op.kind == "quantize":
                continue
            args = [env[name] for name in op.inputs]
            if op.kind in ("conv2d", "linear"):
                acc, lt = self.layers[i](args[0])
                if int(acc.max()) > INT32_MAX or int(acc.min()) < INT32_MIN:
                    raise EngineError(f"{op.name}: accumulator overflows int32")
                if op.kind == "linear":
                    acc = acc.reshape(batch, -1)
                if keep:
                    lt.codes, lt.acc = args[0], acc
                layers.append(lt)
                env[op.output] = acc
            else:
                env[op.output] = _simple_op(op, args)
        out = env[self.program.output]
        scale = self.program.tensors[self.program.output].scale
        logits = out.double() * _per_channel(scale, out)
        return EngineResult(logits, out, EngineTrace(layers, batch))


def _simple_op(op: Op, args: list[torch.Tensor]) -> torch.Tensor:
    x = args[0]
    p, a = op.params, op.attrs
    if op.kind == "requant":
        mult, shift = _per_channel(p["mult"], x), _per_channel(p["shift"], x)
        y = (x * mult + (torch.ones_like(shift) << (shift - 1))) >> shift
        return torch.clamp(y, a["qmin"], a["qmax"])
    if op.kind == "clamp":
        lo, hi = _per_channel(p["lo"], x), _per_channel(p["hi"], x)
        return torch.minimum(torch.maximum(x, lo), hi)
    if op.kind == "maxpool2d":
        fill = torch.iinfo(I64).min
        win = _windows(
            x,
            _pair(a["kernel"]),
            _pair(a["stride"]),
            _pair(a["padding"]),
            _pair(a["dilation"]),
            fill,
        )
        return win.amax(dim=(-1, -2))
    if op.kind == "avgpool2d":
        ph, pw = _pair(a["padding"])
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        rows = [(int(r0), int(r1)) for r0, r1 in a["row_bins"]]
        cols = [(int(c0), int(c1)) for c0, c1 in a["col_bins"]]
        out = torch.empty(x.shape[0], x.shape[1], len(rows), len(cols), dtype=I64)
        for i, (r0, r1) in enumerate(rows):
            for j, (c0, c1) in enumerate(cols):
                total = x[:, :, r0:r1, c0:c1].sum(dim=(-1, -2))
                count = (r1 - r0) * (c1 - c0)
                out[:, :, i, j] = torch.div(2 * total + count, 2 * count, rounding_mode="floor")
        return out
    if op.kind == "add":
        b = args[1]
        s = int(a["shift"])
        y = x * _per_channel(p["mult_a"], x) + b * _per_channel(p["mult_b"], b)
        return torch.clamp((y + (1 << (s - 1))) >> s, INT32_MIN, INT32_MAX)
    if op.kind == "flatten":
        return x.reshape(x.shape[0], -1)
    raise EngineError(f"unknown operation kind {op.kind!r} ({op.name})")


def run_program(program: IntegerProgram, x: torch.Tensor, keep: bool = False) -> EngineResult:
    """Run ``program`` on float inputs ``x`` ``(N, C, H, W)`` (see :class:`Executor`)."""
    return Executor(program)(x, keep)
