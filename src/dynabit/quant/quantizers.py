"""Fake-quantization primitives: activation codes with a learned scale, per-channel weights,
and the split of a code into high and low parts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# Values kept per calibration batch to choose a scale (a random subsample bounds the memory).
_OBSERVE_SAMPLES = 1 << 16


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even forward, identity backward (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def grad_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Same value as ``x``; its gradient is multiplied by ``factor`` (LSQ step-size scaling)."""
    return x * factor + (x - x * factor).detach()


def code_range(bits: int, signed: bool) -> tuple[int, int]:
    """Smallest and largest integer code of a ``bits``-bit (un)signed quantizer."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def split_codes(q: torch.Tensor, lo_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split integer codes into ``(q_hi, q_lo)`` with ``q = q_hi * 2**lo_bits + q_lo``.

    ``q_lo`` lies in ``[0, 2**lo_bits)`` and ``q_hi`` is the floor quotient, so the split is
    exact for unsigned and two's-complement signed codes alike.
    """
    step = float(1 << lo_bits)
    q_hi = torch.floor(q / step)
    return q_hi, q - q_hi * step


def high_pass(q: torch.Tensor, lo_bits: int, midpoint: bool = False) -> torch.Tensor:
    """The codes an unrefined group computes with: ``q_hi * 2**lo_bits`` (plus half a low step
    where ``q_hi != 0`` with ``midpoint``, so zeros stay zero)."""
    q_hi, _ = split_codes(q, lo_bits)
    step = float(1 << lo_bits)
    out = q_hi * step
    if midpoint and lo_bits > 0:
        out = out + (q_hi != 0).to(q.dtype) * (step / 2)
    return out


@dataclass(frozen=True)
class DualSplit:
    """What scale calibration needs of a dual-precision layer (``scale_fit: dual``)."""

    lo_bits: int
    refine_ratio: float
    midpoint: bool


def quantize_weight(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel weight quantization.

    Returns ``(w_int, scale)`` where ``w_int`` holds integer values (float dtype, with a
    straight-through gradient) in ``[-(2**(bits-1)-1), 2**(bits-1)-1]`` and ``scale`` has
    shape ``(out_channels,)``; ``w_int * scale`` approximates ``w``.
    """
    qmax = (1 << (bits - 1)) - 1
    flat = w.detach().reshape(w.shape[0], -1)
    scale = (flat.abs().amax(dim=1) / qmax).clamp_min(1e-12)
    view = (-1,) + (1,) * (w.dim() - 1)
    w_int = torch.clamp(round_ste(w / scale.view(view)), -qmax, qmax)
    return w_int, scale


class ActQuantizer(nn.Module):
    """Activation quantizer with a learned (LSQ) scale that is fixed once trained.

    The scale is set by calibration (:meth:`observe` then :meth:`finish_observation`), never
    from the current batch's maximum, so samples stay independent and integer inference sees
    the same scale. Signedness is detected at calibration (unsigned after a ReLU).
    """

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.act_scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("signed", torch.tensor(False))
        self.register_buffer("calibrated", torch.tensor(False))
        self._observed: list[torch.Tensor] | None = None

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={bool(self.signed)}"

    @property
    def qrange(self) -> tuple[int, int]:
        """``(q_min, q_max)`` of the codes."""
        return code_range(self.bits, bool(self.signed))

    @property
    def observing(self) -> bool:
        """True between :meth:`start_observation` and :meth:`finish_observation`."""
        return self._observed is not None

    def scale(self) -> torch.Tensor:
        """The positive step size."""
        return self.act_scale.abs().clamp_min(1e-12)

    def scale_for_codes(self, x: torch.Tensor) -> torch.Tensor:
        """The step size that quantizes ``x``: while training, with LSQ's gradient scaling."""
        s = self.scale()
        if self.training:
            per_sample = x[0].numel() if x.dim() > 1 else x.numel()
            s = grad_scale(s, 1.0 / math.sqrt(max(1, per_sample) * self.qrange[1]))
        return s

    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer codes of ``x`` (float dtype, straight-through) and the scale to dequantize."""
        qn, qp = self.qrange
        s = self.scale_for_codes(x)
        q = torch.clamp(round_ste(x / s), qn, qp)
        return q, s

    def start_observation(self) -> None:
        """Begin collecting activation samples for calibration."""
        self._observed = []

    def observe(self, x: torch.Tensor) -> None:
        """Keep a random subsample of ``x`` (calibration only)."""
        flat = x.detach().reshape(-1).float()
        if flat.numel() > _OBSERVE_SAMPLES:
            idx = torch.randint(0, flat.numel(), (_OBSERVE_SAMPLES,), device=flat.device)
            flat = torch.cat([flat[idx], flat.min().view(1), flat.max().view(1)])
        assert self._observed is not None
        self._observed.append(flat.cpu())

    def finish_observation(self, dual: DualSplit | None = None) -> None:
        """Choose signedness and the scale that minimises the quantization MSE on the samples.

        With ``dual``, the error minimised is the expected one of a dual-precision layer: the
        full codes with probability ``refine_ratio``, the high pass otherwise.
        """
        assert self._observed is not None and self._observed, "observe() was never called"
        x = torch.cat(self._observed)
        self._observed = None
        if not torch.isfinite(x).all():
            raise ValueError("activation calibration saw NaN or Inf values in the inputs")
        signed = bool(x.min() < 0)
        self.signed.fill_(signed)
        qn, qp = self.qrange
        peak = float(x.abs().max())
        if peak == 0.0:
            self.act_scale.data.fill_(1.0 / qp)
            self.calibrated.fill_(True)
            return
        clips = peak * torch.linspace(0.2, 1.0, 41)
        scales = clips / qp
        q = torch.clamp(torch.round(x[None, :] / scales[:, None]), qn, qp)
        mse = ((q * scales[:, None] - x[None, :]) ** 2).mean(dim=1)
        if dual is not None and dual.lo_bits > 0:
            hi = high_pass(q, dual.lo_bits, dual.midpoint)
            mse_hi = ((hi * scales[:, None] - x[None, :]) ** 2).mean(dim=1)
            mse = dual.refine_ratio * mse + (1.0 - dual.refine_ratio) * mse_hi
        self.act_scale.data.fill_(float(scales[int(torch.argmin(mse))]))
        self.calibrated.fill_(True)
