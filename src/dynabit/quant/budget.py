"""The bit budget: training penalty, measured refine ratios and ``B_avg``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from dynabit.quant.layers import QuantLayerMixin


def quant_layers(model: nn.Module) -> list[tuple[str, QuantLayerMixin]]:
    """All quantized layers of ``model`` (DDP-wrapped or not), in registration order."""
    return [(m.layer_name, m) for m in model.modules() if isinstance(m, QuantLayerMixin)]


def dynamic_layers(model: nn.Module) -> list[tuple[str, QuantLayerMixin]]:
    """The dual-precision layers of ``model``."""
    return [(n, m) for n, m in quant_layers(model) if m.dynamic]


def budget_penalty(model: nn.Module) -> torch.Tensor:
    """Penalty of the last training forward, weighted by the config's penalty weights.

    ``penalty_block`` weighs the mean hinge distance of every block's refine ratio to its
    bounds ``[r_lo, r_hi]``; ``penalty_budget`` weighs how far the MAC-weighted ``B_avg`` of the
    network exceeds ``B_target``, in units of ``B_lo``. Both are linear hinges so they keep
    pushing until the bounds hold, rather than fading near them.
    """
    cfg = _config(model)
    layers = [m for _, m in dynamic_layers(model) if m.last_block_ratio is not None]
    if not layers:
        return torch.zeros(())
    block_terms = []
    bits_sum = macs_sum = 0.0
    for m in layers:
        r_lo, r_hi = m.bounds()
        ratio = m.last_block_ratio
        block_terms.append(torch.relu(r_lo - ratio) + torch.relu(ratio - r_hi))
        bits = m.qcfg.hi_bits + m.qcfg.lo_bits * m.last_mac_ratio
        bits_sum = bits_sum + bits * m.last_macs
        macs_sum += m.last_macs
    block_pen = torch.cat(block_terms).mean()
    b_avg = bits_sum / max(macs_sum, 1.0)
    budget_pen = torch.relu(b_avg - cfg.budget) / cfg.lo_bits
    return cfg.penalty_block * block_pen + cfg.penalty_budget * budget_pen


def _config(model: nn.Module):  # noqa: ANN202 - QuantConfig, imported lazily to avoid a cycle
    base = model.module if hasattr(model, "module") else model
    cfg = getattr(base, "dynabit_config", None)
    if cfg is None:
        raise ValueError("model has no dynabit_config: call dynabit.quant.prepare(model, config)")
    return cfg


def reset_stats(model: nn.Module) -> None:
    """Zero every layer's decision counters (e.g. at the start of an epoch or evaluation)."""
    for _, m in quant_layers(model):
        m.reset_stats()


@dataclass
class LayerStats:
    """Measured decisions of one dynamic layer."""

    ratio_elements: float
    ratio_macs: float
    block_ratios: list[float]
    bounds: tuple[float, float]
    macs: float
    elements: float
    hi_bits: int
    lo_bits: int

    @property
    def b_avg(self) -> float:
        """Average activation bits of this layer (MAC-weighted)."""
        return self.hi_bits + self.lo_bits * self.ratio_macs

    @property
    def blocks_in_bounds(self) -> float:
        """Fraction of blocks whose measured ratio lies within the bounds."""
        lo, hi = self.bounds
        inside = [lo - 1e-9 <= r <= hi + 1e-9 for r in self.block_ratios]
        return sum(inside) / max(1, len(inside))


@dataclass
class BudgetStats:
    """Measured refine ratios and average bit widths of the dynamic layers."""

    layers: dict[str, LayerStats] = field(default_factory=dict)

    def _weighted(self, weight: str, value: str) -> float:
        total = sum(getattr(s, weight) for s in self.layers.values())
        if total == 0:
            return float("nan")
        return sum(getattr(s, weight) * getattr(s, value) for s in self.layers.values()) / total

    @property
    def refine_ratio(self) -> float:
        """Share of low-pass MACs actually done (MAC-weighted over layers)."""
        return self._weighted("macs", "ratio_macs")

    @property
    def b_avg_macs(self) -> float:
        """``B_hi + r * B_lo`` weighted by MACs."""
        total = sum(s.macs for s in self.layers.values())
        if total == 0:
            return float("nan")
        return (
            sum(s.macs * (s.hi_bits + s.lo_bits * s.ratio_macs) for s in self.layers.values())
            / total
        )

    @property
    def b_avg_elements(self) -> float:
        """``B_hi + r * B_lo`` weighted by activation elements."""
        total = sum(s.elements for s in self.layers.values())
        if total == 0:
            return float("nan")
        return (
            sum(
                s.elements * (s.hi_bits + s.lo_bits * s.ratio_elements)
                for s in self.layers.values()
            )
            / total
        )

    def to_dict(self) -> dict:
        """Plain dict for JSON: totals and per-layer figures."""
        return {
            "b_avg_macs": self.b_avg_macs,
            "b_avg_elements": self.b_avg_elements,
            "refine_ratio": self.refine_ratio,
            "layers": {name: {**asdict(s), "b_avg": s.b_avg} for name, s in self.layers.items()},
        }


def model_stats(model: nn.Module, all_reduce: bool = True) -> BudgetStats:
    """Decisions counted since the last :func:`reset_stats`, summed over processes.

    Under ``torch.distributed`` every rank gets the global figures (the counters are
    all-reduced); pass ``all_reduce=False`` for this process's own.
    """
    layers = dynamic_layers(model)
    packed = [
        torch.cat([m.stat_block_refined, m.stat_block_groups, m.stat_totals]) for _, m in layers
    ]
    if all_reduce and dist.is_available() and dist.is_initialized() and packed:
        flat = torch.cat(packed)
        dist.all_reduce(flat)
        packed = list(torch.split(flat, [p.numel() for p in packed]))
    stats = BudgetStats()
    for (name, m), p in zip(layers, packed, strict=True):
        nb = m.stat_block_refined.numel()
        refined, groups, totals = p[:nb], p[nb : 2 * nb], p[2 * nb :]
        ref_e, elems, ref_m, macs = totals.tolist()
        stats.layers[name] = LayerStats(
            ratio_elements=ref_e / elems if elems else float("nan"),
            ratio_macs=ref_m / macs if macs else float("nan"),
            block_ratios=(refined / groups.clamp_min(1)).tolist(),
            bounds=m.bounds(),
            macs=macs,
            elements=elems,
            hi_bits=m.qcfg.hi_bits,
            lo_bits=m.qcfg.lo_bits,
        )
    return stats


@contextmanager
def record_decisions(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Collect every dynamic layer's hard masks ``(N, blocks, gh, gw)`` while active.

    Yields a dict ``name -> list of per-forward masks`` (concatenate along dim 0 for all samples).
    """
    layers = dynamic_layers(model)
    out: dict[str, list[torch.Tensor]] = {}
    for name, m in layers:
        m._recorded = out.setdefault(name, [])
    try:
        yield out
    finally:
        for _, m in layers:
            m._recorded = None
