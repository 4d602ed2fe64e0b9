"""Drop-in quantized ``Conv2d`` and ``Linear``: static, or dynamic dual-precision.

A dynamic layer runs a high pass on ``q_hi << B_lo`` for every output, scores each group of its
high-pass output (or of its input, for input-directed decisions) per block, and adds the low
pass ``W * q_lo`` only where the score exceeds the block's trainable threshold.

Three execution modes share one module:
- training / float eval: fake quantization in float, hard masks with a sigmoid surrogate;
- frozen (after :func:`dynabit.quant.convert`): integer-faithful arithmetic — integer codes and
  weights, exact accumulators (float64 holds them exactly), integer thresholds and scores,
  fixed-point requantization of the input from the producer's integers
  (:mod:`dynabit.quant.integer_ops`) — the same rules the integer engine applies;
- calibration: observing activations (float pass-through) or collecting group scores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynabit.config.layer import ceil_div
from dynabit.config.quant import LayerQuantConfig
from dynabit.quant.decisions import Grid, enforce_bounds
from dynabit.quant.fused import (
    DualConvSpec,
    dual_codes,
    dual_conv,
    hard_mask,
    low_pass,
    masked_low_pass,
)
from dynabit.quant.integer_ops import (
    channel_param,
    fixed_point,
    int_group_score,
    quantize_float,
    recover,
    requantize,
)
from dynabit.quant.quantizers import ActQuantizer, high_pass, quantize_weight

# Fixed-point precision of the per-channel score multipliers of a frozen layer.
SCORE_FRAC_BITS = 16


class NotCalibratedError(RuntimeError):
    """A quantized layer ran before :func:`dynabit.quant.calibrate` set its scales."""


class QuantLayerMixin:
    """Shared state and logic of :class:`QuantConv2d` and :class:`QuantLinear`."""

    # Set by subclasses: how the layer maps onto a (N, C, H, W) grid.
    in_channels: int
    out_channels: int

    def _init_quant(self, name: str, cfg: LayerQuantConfig, dynamic: bool) -> None:
        self.layer_name = name
        # In the budget (model_stats, B_avg): dynamic layers, and the layers the uniform
        # baseline runs static at ``uniform_bits`` (the first layer and classifier are not).
        self.in_budget = dynamic
        update: dict[str, object] = {"dynamic": dynamic}
        if dynamic and cfg.uniform_bits is not None:
            dynamic = False
            update = {"dynamic": False, "static_bits": cfg.uniform_bits}
        if dynamic and cfg.block_all_channels:
            side = self.out_channels if cfg.decision == "output" else self.in_channels
            update["block_size"] = side
        cfg = cfg.model_copy(update=update)
        self.qcfg = cfg
        self.dynamic = dynamic
        self.act_quant = ActQuantizer(cfg.bits if dynamic else cfg.static_bits)
        self.register_buffer("frozen", torch.tensor(False))
        self.bn_weight: nn.Parameter | None = None
        self.bn_bias: nn.Parameter | None = None
        if dynamic:
            channels = self.out_channels if cfg.decision == "output" else self.in_channels
            n_blocks = ceil_div(channels, cfg.block_size)
            self.threshold = nn.Parameter(torch.zeros(n_blocks), requires_grad=cfg.train_thresholds)
            self.register_buffer("score_scale", torch.tensor(1.0))
            self.register_buffer("thresholds_calibrated", torch.tensor(False))
            if cfg.threshold_penalty > 0:
                # Target of the L2 threshold pull (PG): fixed, or the calibrated thresholds
                # (taken by ``budget_penalty`` at the first training step).
                fixed = cfg.threshold_target is not None
                target = cfg.threshold_target if fixed else 0.0
                self.register_buffer("threshold_target", torch.full((n_blocks,), float(target)))
                self.register_buffer("threshold_target_set", torch.tensor(fixed))
        # Calibration and statistics state: plain attributes, so DDP never broadcasts them.
        self._calibrating = False
        self._collected: list[torch.Tensor] | None = None
        self._recorded: list[torch.Tensor] | None = None
        self._int_record: dict[str, list[torch.Tensor]] | None = None
        self._int_wired = False
        self._cell_fanout_key: tuple[Grid, torch.device] | None = None
        self._cell_fanout = torch.zeros(0)
        self.reset_stats()

    # ----------------------------------------------------------------- weights and BN
    def attach_bn(self, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
        """Absorb a following BatchNorm: running statistics frozen, affine parameters trained."""
        if bn.num_features != self.out_channels:
            raise ValueError(
                f"{self.layer_name}: BatchNorm has {bn.num_features} features, "
                f"the layer has {self.out_channels} outputs"
            )
        dev = self.weight.device
        gamma = bn.weight.detach() if bn.affine else torch.ones(self.out_channels, device=dev)
        beta = bn.bias.detach() if bn.affine else torch.zeros(self.out_channels, device=dev)
        self.bn_weight = nn.Parameter(gamma.clone())
        self.bn_bias = nn.Parameter(beta.clone())
        mean = bn.running_mean if bn.running_mean is not None else torch.zeros_like(gamma)
        var = bn.running_var if bn.running_var is not None else torch.ones_like(gamma)
        self.register_buffer("bn_mean", mean.detach().clone())
        self.register_buffer("bn_inv_std", torch.rsqrt(var.detach() + bn.eps))

    def folded_weight_bias(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias with the absorbed BatchNorm folded in (float)."""
        w, b = self.weight, self.bias
        if self.bn_weight is None:
            return w, b
        a = self.bn_weight * self.bn_inv_std
        b0 = b if b is not None else torch.zeros_like(a)
        w = w * a.view(-1, *([1] * (w.dim() - 1)))
        return w, self.bn_bias + (b0 - self.bn_mean) * a

    # ----------------------------------------------------------------- geometry
    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def _as_map(self, y: torch.Tensor) -> torch.Tensor:
        """View an output/input as ``(N, C, H, W)`` for the decision grid."""
        raise NotImplementedError

    def macs_per_output(self) -> int:
        """Multiply-accumulates behind one output element."""
        raise NotImplementedError

    def _check_input(self, x: torch.Tensor) -> None:
        """Refuse inputs of the wrong rank or channel count with the layer's name."""
        want = 4 if isinstance(self, nn.Conv2d) else 2
        channels_dim = 1 if want == 4 else -1
        if x.dim() != want or x.shape[channels_dim] != self.in_channels:
            layout = "(N, C, H, W)" if want == 4 else "(N, features)"
            raise ValueError(
                f"layer {self.layer_name!r} expects {layout} with C={self.in_channels}, "
                f"got shape {tuple(x.shape)}"
            )

    def decision_grid(self, channels: int, height: int, width: int) -> Grid:
        """The decision grid of a ``(channels, height, width)`` decision map of this layer (its
        output for output-directed decisions, its input otherwise; 1 x 1 for ``Linear``)."""
        gh, gw = self.qcfg.group
        return Grid(channels, height, width, self.qcfg.block_size, gh, gw)

    @property
    def last_grid(self) -> Grid | None:
        """The decision grid of the last forward pass (None before the first)."""
        shape = getattr(self, "_last_map_shape", None)
        return None if shape is None else self.decision_grid(*shape)

    def group_bounds(self, grid: Grid) -> tuple[int, int]:
        """``(k_lo, k_hi)``: the fewest and most groups a block of ``grid`` may refine."""
        return grid.k_bounds(*self.bounds())

    def _grid(self, m: torch.Tensor) -> Grid:
        _, c, h, w = m.shape
        self._last_map_shape = (c, h, w)
        return self.decision_grid(c, h, w)

    def bounds(self) -> tuple[float, float]:
        """This layer's per-block refine-ratio bounds ``(r_lo, r_hi)``."""
        return self.qcfg.ratio_bounds()

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        aq = self.act_quant
        if aq.observing:
            aq.observe(x)
            w, b = self.folded_weight_bias()
            return self._op(x, w, b)
        if not bool(aq.calibrated):
            raise NotCalibratedError(
                f"layer {self.layer_name!r} has no activation scale yet: run "
                "dynabit.quant.calibrate(model, batches) after prepare()"
            )
        if bool(self.frozen):
            return self._forward_frozen(x)
        return self._forward_float(x)

    def _forward_float(self, x: torch.Tensor) -> torch.Tensor:
        aq = self.act_quant
        s = aq.scale_for_codes(x)
        w_float, b = self.folded_weight_bias()
        w_int, s_w = quantize_weight(w_float, self.qcfg.weight_bits)
        w = w_int * s_w.view(-1, *([1] * (w_int.dim() - 1)))
        if not self.dynamic:
            xq, _, _ = dual_codes(x, s, aq.qrange, 0, False)
            y = self._op(xq, w, b)
            if self.in_budget:
                self._account_static(y)
            return y
        if self._fused_training():
            spec = self._dual_spec()
            y, mask = dual_conv(x, s, w, b, self.threshold, self.score_scale, spec)
            self._account(mask, self.last_grid)
            return y
        # x_hi = q_hi * 2^B_lo * s carries the straight-through gradient; the low codes none.
        x_hi, lo, q = dual_codes(x, s, aq.qrange, self.qcfg.lo_bits, self.qcfg.midpoint)
        y_hi = self._op(x_hi, w, b)
        if self.qcfg.decision == "output":
            y_map = self._as_map(y_hi)
            grid = self._grid(y_map)
            mask = self._decide(grid.reduce(y_map, self.qcfg.score) / self.score_scale, grid)
            if grid.whole_blocks and not grid.per_element and torch.is_grad_enabled():
                y = masked_low_pass(
                    grid.by_block(y_map),
                    lo,
                    s,
                    w,
                    grid.to_pixels(mask).unsqueeze(2),
                    self._op_nobias,
                    self._weight_grad,
                    lambda t: grid.by_block(self._as_map(t)),
                )
                return y.reshape(y_hi.shape)
            y_lo = self._low_pass(lo, s, w)
            return grid.add_masked(y_map, self._as_map(y_lo), mask).reshape(y_hi.shape)
        x_map = self._as_map(q * s.detach())
        grid = self._grid(x_map)
        mask = self._decide(grid.reduce(x_map, self.qcfg.score) / self.score_scale, grid)
        lo_kept = grid.masked(self._as_map(lo), mask).reshape(lo.shape)
        return y_hi + self._low_pass(lo_kept, s, w)

    def _fused_training(self) -> bool:
        """True where :func:`dual_conv` computes this forward: training with gradients, an
        output-directed conv with calibrated thresholds, max scores over whole blocks."""
        if not (self.training and torch.is_grad_enabled() and self.qcfg.decision == "output"):
            return False
        if self.qcfg.score != "max" or self._collected is not None:
            return False
        if not isinstance(self, QuantConv2d) or isinstance(self.padding, str):
            return False
        if not bool(self.thresholds_calibrated):
            return False
        return self.out_channels % self.qcfg.block_size == 0 and not (
            self.qcfg.block_size == 1 and tuple(self.qcfg.group) == (1, 1)
        )

    def _dual_spec(self) -> DualConvSpec:
        # Built per call (cheap): a spec kept on the module would tie copies to the original.
        return DualConvSpec(
            qrange=self.act_quant.qrange,
            lo_bits=self.qcfg.lo_bits,
            midpoint=self.qcfg.midpoint,
            temperature=self.qcfg.temperature,
            op=self._op,
            backward=self._conv_backward,  # type: ignore[attr-defined]
            grid=lambda y: self._grid(self._as_map(y)),
        )

    def _low_pass(self, lo: torch.Tensor, s: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``op(lo * s, w)`` without bias; its backward skips the unused input gradient."""
        return low_pass(lo, s, w, self._op_nobias, self._weight_grad)

    def _op_nobias(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self._op(x, w, None)

    def _weight_grad(self, x: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Gradient of ``sum(g * op(x, w))`` with respect to ``w``."""
        raise NotImplementedError

    def _split(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hi_codes, lo_codes)`` with ``hi + lo == q``; gradients flow through the high part."""
        # With midpoint, half a low step estimates the truncated bits; the low pass removes it.
        lo = q.detach() - high_pass(q.detach(), self.qcfg.lo_bits, self.qcfg.midpoint)
        return q - lo, lo

    def _decide(self, score: torch.Tensor, grid: Grid) -> torch.Tensor:
        """Mask ``(N, blocks, gh, gw)``: surrogate while training, hard (and bounded) otherwise."""
        if self._collected is not None:
            self._collected.append(score.detach())
        if not bool(self.thresholds_calibrated):
            if not self._calibrating:
                raise NotCalibratedError(
                    f"layer {self.layer_name!r} has no block thresholds yet: run "
                    "dynabit.quant.calibrate(model, batches) after prepare()"
                )
            return torch.ones_like(score)
        if self.training:
            mask = hard_mask(score, self.threshold, self.qcfg.temperature)
        else:
            passed = score > self.threshold.view(1, -1, 1, 1)
            if self.qcfg.enforce_bounds:
                passed = enforce_bounds(score, passed, *self._k_bounds(grid))
            mask = passed.to(score.dtype)
        self._account(mask, grid)
        return mask

    def _k_bounds(self, grid: Grid) -> tuple[int, int]:
        return self.group_bounds(grid)

    # ----------------------------------------------------------------- calibration and recording
    # The state behind these methods is plain attributes (never in the state dict, never
    # broadcast by DDP); other modules steer it only through them.
    def set_calibrating(self, on: bool) -> None:
        """While on, a layer without calibrated thresholds refines everything instead of
        refusing to run (threshold calibration of the layers before it); off also drops any
        scores being collected."""
        self._calibrating = on
        if not on:
            self._collected = None

    def collect_scores(self) -> None:
        """Start keeping the normalized group scores of every forward pass."""
        self._collected = []

    def take_scores(self) -> torch.Tensor:
        """The scores kept since :meth:`collect_scores`, ``(N, blocks, gh, gw)``; stops keeping."""
        if not self._collected:
            raise RuntimeError(f"{self.layer_name}: no scores collected")
        scores = torch.cat(self._collected)
        self._collected = None
        return scores

    def record_masks(self, into: list[torch.Tensor] | None) -> None:
        """Append each forward's hard mask ``(N, blocks, gh, gw)`` to ``into`` (None: stop)."""
        self._recorded = into

    def record_integers(self, into: dict[str, list[torch.Tensor]] | None) -> None:
        """Append a frozen layer's input codes and accumulators of each forward to
        ``into["codes"]`` and ``into["acc"]`` (None: stop)."""
        self._int_record = into

    @property
    def int_wired(self) -> bool:
        """True once :meth:`wire_input` said how this frozen layer gets its input codes."""
        return bool(getattr(self, "_int_wired", False))

    # ----------------------------------------------------------------- frozen (integer) path
    def freeze(self) -> None:
        """Fix scales, fold BN and store integer weights, bias, score multipliers, thresholds."""
        if not bool(self.act_quant.calibrated):
            raise NotCalibratedError(f"cannot convert {self.layer_name!r}: it was never calibrated")
        with torch.no_grad():
            w_float, b = self.folded_weight_bias()
            w_int, s_w = quantize_weight(w_float, self.qcfg.weight_bits)
            acc_scale = self.act_quant.scale().double() * s_w.double()
            bias = b.double() if b is not None else torch.zeros_like(acc_scale)
            self.register_buffer("w_int", w_int.round().to(torch.int32))
            self.register_buffer("acc_scale", acc_scale)
            self.register_buffer("bias_int", torch.round(bias / acc_scale).to(torch.int64))
            self.weight.data.copy_(w_int * s_w.view(-1, *([1] * (w_int.dim() - 1))))
            if self.bias is None:
                self.bias = nn.Parameter(torch.zeros_like(s_w))
            self.bias.data.copy_((self.bias_int.double() * acc_scale).to(self.bias.dtype))
            if self.dynamic:
                self._freeze_thresholds(acc_scale)
            self.bn_weight = self.bn_bias = None
            self.frozen.fill_(True)

    def _freeze_thresholds(self, acc_scale: torch.Tensor) -> None:
        delta = self.threshold.detach().double() * self.score_scale.double()
        if self.qcfg.decision == "output":
            # Scores compare across channels, so each channel's accumulator is brought to a
            # common fixed-point unit: S_ref * 2**-SCORE_FRAC_BITS with S_ref the largest scale.
            ref = acc_scale.max()
            mult = torch.round(acc_scale / ref * (1 << SCORE_FRAC_BITS)).clamp_min(1)
            unit = ref / (1 << SCORE_FRAC_BITS)
        else:
            # Input codes share one scale: the score is in code units.
            mult = torch.ones(1, dtype=torch.float64)
            unit = self.act_quant.scale().double()
        self.register_buffer("score_mult", mult.to(torch.int64))
        self.register_buffer("threshold_int", torch.floor(delta / unit).to(torch.int64))

    def wire_input(self, scale: torch.Tensor | None) -> None:
        """Say how this frozen layer gets its input codes (set by ``convert``'s graph analysis).

        ``None``: the input is the float model input, quantized here (float32, round half to
        even, as ONNX QuantizeLinear). A tensor: the input holds integers times ``scale``
        (float64, per channel of the producer, or one value), requantized here to this layer's
        codes with fixed-point multipliers ``in_mult`` and shifts ``in_shift``.
        """
        if not bool(self.frozen):
            raise RuntimeError(f"{self.layer_name}: wire_input() needs a frozen layer")
        self._int_wired = True
        if scale is None:
            self.int_input = False
            return
        scale = scale.detach().double().reshape(-1).clone()
        mult, shift = fixed_point(scale / self.act_quant.scale().detach().double())
        self.int_input = True
        self.register_buffer("in_scale", scale)
        self.register_buffer("in_mult", mult)
        self.register_buffer("in_shift", shift)

    def _frozen_codes(self, x: torch.Tensor) -> torch.Tensor:
        """This layer's integer input codes (int64)."""
        qn, qp = self.act_quant.qrange
        if getattr(self, "int_input", False):
            t = recover(x, self.in_scale)
            return requantize(
                t, channel_param(self.in_mult, t), channel_param(self.in_shift, t), qn, qp
            )
        return quantize_float(x, self.act_quant.scale(), qn, qp)

    def _forward_frozen(self, x: torch.Tensor) -> torch.Tensor:
        codes = self._frozen_codes(x)
        q = codes.double()  # integer-valued: float64 convolutions on it are exact
        w = self.w_int.double()
        bias = self.bias_int.double()
        if not self.dynamic:
            acc = self._op(q, w, bias)
            if getattr(self, "in_budget", False):
                self._account_static(acc)
            return self._frozen_out(codes, acc, x)
        hi, lo = self._split(q)
        acc_hi = self._op(hi, w, bias)
        if self.qcfg.decision == "output":
            acc_map = self._as_map(acc_hi)
            grid = self._grid(acc_map)
            values = acc_map.to(torch.int64) * self.score_mult.view(1, -1, 1, 1)
            mask = self._decide_int(int_group_score(values, grid, self.qcfg.score), grid)
            acc_lo = self._op(lo, w, None)
            acc = grid.add_masked(acc_map, self._as_map(acc_lo), mask).reshape(acc_hi.shape)
        else:
            q_map = self._as_map(codes)
            grid = self._grid(q_map)
            mask = self._decide_int(int_group_score(q_map, grid, self.qcfg.score), grid)
            lo_kept = grid.masked(self._as_map(lo), mask).reshape(lo.shape)
            acc = acc_hi + self._op(lo_kept, w, None)
        return self._frozen_out(codes, acc, x)

    def _decide_int(self, score: torch.Tensor, grid: Grid) -> torch.Tensor:
        passed = score > self.threshold_int.view(1, -1, 1, 1)
        if self.qcfg.enforce_bounds:
            passed = enforce_bounds(score, passed, *self._k_bounds(grid))
        mask = passed.double()
        self._account(mask, grid)
        return mask

    def _frozen_out(self, codes: torch.Tensor, acc: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``acc * acc_scale``: float64 between wired layers (exact), else the float dtype."""
        acc_int = acc.to(torch.int64)
        record = self._int_record
        if record is not None:
            record["codes"].append(codes.cpu())
            record["acc"].append(acc_int.cpu())
        out = acc * channel_param(self.acc_scale, acc)
        if not self.int_wired:
            return out.to(x.dtype)
        dtype = getattr(self, "int_out_dtype", None)
        return out if dtype is None else out.to(dtype)

    # ----------------------------------------------------------------- statistics
    def reset_stats(self) -> None:
        """Zero the decision counters."""
        n_blocks = self.threshold.numel() if self.dynamic else 0
        self.stat_block_refined = torch.zeros(n_blocks, dtype=torch.float64)
        self.stat_block_groups = torch.zeros(n_blocks, dtype=torch.float64)
        # [refined elements, elements, refined MACs, MACs] of the low pass.
        self.stat_totals = torch.zeros(4, dtype=torch.float64)
        self.last_block_ratio: torch.Tensor | None = None
        self.last_mac_ratio: torch.Tensor | None = None
        self.last_macs = 0.0

    def _account(self, mask: torch.Tensor, grid: Grid) -> None:
        """Update counters from a ``(N, blocks, gh, gw)`` mask; keep differentiable ratios."""
        hard = mask.detach() > 0.5
        n = mask.shape[0]
        counts = grid.valid_counts(mask.device).to(mask.dtype)
        self.stat_block_refined += hard.sum(dim=(0, 2, 3)).double().cpu()
        self.stat_block_groups += float(n * grid.n_groups)
        elems = counts.sum() * n
        # One element per cell: the counts are all one and the products with them no-ops.
        unit = grid.per_element
        ref_elems = hard.sum().to(counts.dtype) if unit else (hard.to(counts.dtype) * counts).sum()
        if self.qcfg.decision == "output":
            per = self.macs_per_output()
            ref_macs, macs = ref_elems * per, elems * per
        else:
            ref_macs = self._input_refined_macs(hard, grid)
            macs = n * self._dense_macs_per_sample()
        self.stat_totals += torch.tensor(
            [float(ref_elems), float(elems), float(ref_macs), float(macs)], dtype=torch.float64
        )
        if self.training:
            self.last_block_ratio = mask.mean(dim=(0, 2, 3))
            self.last_mac_ratio = (mask.sum() if unit else (mask * counts).sum()) / elems
            self.last_macs = float(macs) / n
        if self._recorded is not None:
            self._recorded.append(hard.cpu())

    def _account_static(self, y: torch.Tensor) -> None:
        """Count the outputs and MACs of a static layer in the budget (all at full precision)."""
        n = y.shape[0]
        elems = float(y.numel())
        macs = elems * self.macs_per_output()
        self.stat_totals += torch.tensor([elems, elems, macs, macs], dtype=torch.float64)
        if self.training:
            self.last_macs = macs / max(n, 1)

    def _dense_macs_per_sample(self) -> int:
        raise NotImplementedError

    def _input_refined_macs(self, hard: torch.Tensor, grid: Grid) -> float:
        """Low-pass MACs of the refined inputs, from the ``(N, blocks, gh, gw)`` input mask."""
        # Each input element feeds as many MACs as outputs read it; summed per cell once per
        # geometry, so the count needs no full-resolution mask.
        key = (grid, hard.device)
        if self._cell_fanout_key != key:
            ones = torch.ones(1, grid.channels, grid.height, grid.width, dtype=torch.float64)
            fanout = ones * self._input_fanout(grid.height, grid.width)
            self._cell_fanout = grid.reduce(fanout, "sum")[0].to(hard.device)
            self._cell_fanout_key = key
        return float((hard.double() * self._cell_fanout).sum())

    def _input_fanout(self, height: int, width: int) -> torch.Tensor:
        """MACs each input pixel of one channel feeds, as a ``(height, width)`` map."""
        raise NotImplementedError


class QuantConv2d(QuantLayerMixin, nn.Conv2d):
    """Quantized ``nn.Conv2d`` (static, or dynamic dual-precision)."""

    def __init__(self, conv: nn.Conv2d, name: str, cfg: LayerQuantConfig, dynamic: bool) -> None:
        if conv.padding_mode != "zeros":
            raise ValueError(
                f"{name}: padding_mode={conv.padding_mode!r} is not supported; allowed: 'zeros'"
            )
        nn.Conv2d.__init__(
            self,
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        self.load_state_dict(conv.state_dict())
        self._out_hw: tuple[int, int] = (0, 0)
        self._init_quant(name, cfg, dynamic)

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        y = F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)
        self._out_hw = (y.shape[-2], y.shape[-1])
        return y

    def _as_map(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def macs_per_output(self) -> int:
        kh, kw = self.kernel_size
        return (self.in_channels // self.groups) * kh * kw

    def _dense_macs_per_sample(self) -> int:
        return self.out_channels * self._out_hw[0] * self._out_hw[1] * self.macs_per_output()

    def _input_fanout(self, height: int, width: int) -> torch.Tensor:
        # How many output windows read each input pixel (the input gradient of a unit-weight
        # conv), times the output channels of its group.
        ones = torch.ones(1, 1, *self.kernel_size, dtype=torch.float64)
        oh, ow = self._out_hw
        reads = torch.nn.grad.conv2d_input(
            (1, 1, height, width),
            ones,
            torch.ones(1, 1, oh, ow, dtype=torch.float64),
            self.stride,
            self.padding,
            self.dilation,
        )
        return reads[0, 0] * (self.out_channels // self.groups)

    def _conv_backward(
        self, g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, mask: tuple[bool, bool, bool]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """``(input, weight, bias)`` gradients of ``op(x, w, b)`` for output gradient ``g``,
        those ``mask`` asks for (int padding only)."""
        return torch.ops.aten.convolution_backward(
            g,
            x,
            w,
            [self.out_channels] if mask[2] else None,
            list(self.stride),
            list(self.padding),
            list(self.dilation),
            False,
            [0, 0],
            self.groups,
            list(mask),
        )

    def _weight_grad(self, x: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if isinstance(self.padding, str):  # "same"/"valid": let autograd derive the geometry
            with torch.enable_grad():
                wt = w.detach().requires_grad_(True)
                (grad,) = torch.autograd.grad(self._op(x, wt, None), wt, g)
            return grad
        return self._conv_backward(g, x, w, (False, True, False))[1]


class QuantLinear(QuantLayerMixin, nn.Linear):
    """Quantized ``nn.Linear``: a 1x1 convolution on a 1x1 map for the decision grid."""

    def __init__(self, linear: nn.Linear, name: str, cfg: LayerQuantConfig, dynamic: bool) -> None:
        nn.Linear.__init__(
            self,
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        self.load_state_dict(linear.state_dict())
        self.in_channels, self.out_channels = linear.in_features, linear.out_features
        self._init_quant(name, cfg, dynamic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = super().forward(x.reshape(-1, x.shape[-1]))
        return y.reshape(*lead, y.shape[-1])

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, w, b)

    def _as_map(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(y.shape[0], y.shape[1], 1, 1)

    def macs_per_output(self) -> int:
        return self.in_features

    def _dense_macs_per_sample(self) -> int:
        return self.in_features * self.out_features

    def _input_fanout(self, height: int, width: int) -> torch.Tensor:
        return torch.full((height, width), float(self.out_features), dtype=torch.float64)

    def _weight_grad(self, x: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return g.t().mm(x)
