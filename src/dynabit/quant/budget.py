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


def budget_layers(model: nn.Module) -> list[tuple[str, QuantLayerMixin]]:
    """The layers ``B_avg`` covers: the dynamic ones and those the uniform baseline runs static
    at ``uniform_bits``. The first layer, the classifier and layers made static by an override
    stay outside, as before."""
    return [(n, m) for n, m in quant_layers(model) if m.dynamic or getattr(m, "in_budget", False)]


def budget_penalty(model: nn.Module) -> torch.Tensor:
    """Penalty of the last training forward, weighted by the config's penalty weights.

    ``penalty_block`` weighs the mean hinge distance of every block's refine ratio to its
    bounds ``[r_lo, r_hi]``; ``penalty_budget`` weighs how far the MAC-weighted ``B_avg`` of the
    network exceeds ``B_target``, in units of ``B_lo``. Both are linear hinges so they keep
    pushing until the bounds hold, rather than fading near them. Static layers in the budget
    (the uniform baseline's) enter ``B_avg`` at their bits.

    Layers with a ``threshold_penalty`` (Precision Gating) add that weight times the mean
    squared distance of their thresholds to their targets; a target left to calibration is
    taken from the thresholds the first time this runs.
    """
    cfg = _config(model)
    layers = [m for _, m in dynamic_layers(model) if m.last_block_ratio is not None]
    if not layers:
        return torch.zeros(())
    block_terms, pulls = [], []
    bits_sum = macs_sum = 0.0
    for m in layers:
        r_lo, r_hi = m.bounds()
        ratio = m.last_block_ratio
        block_terms.append(torch.relu(r_lo - ratio) + torch.relu(ratio - r_hi))
        bits = m.qcfg.hi_bits + m.qcfg.lo_bits * m.last_mac_ratio
        bits_sum = bits_sum + bits * m.last_macs
        macs_sum += m.last_macs
        if m.qcfg.threshold_penalty > 0:
            pulls.append(m.qcfg.threshold_penalty * _threshold_pull(m))
    for _, m in budget_layers(model):
        if not m.dynamic and m.last_macs > 0:
            bits_sum = bits_sum + float(m.act_quant.bits) * m.last_macs
            macs_sum += m.last_macs
    block_pen = torch.cat(block_terms).mean()
    b_avg = bits_sum / max(macs_sum, 1.0)
    budget_pen = torch.relu(b_avg - cfg.budget) / cfg.lo_bits
    out = cfg.penalty_block * block_pen + cfg.penalty_budget * budget_pen
    if pulls:
        out = out + torch.cat(pulls).mean()
    return out


def _threshold_pull(m: QuantLayerMixin) -> torch.Tensor:
    """Squared distance of each threshold of ``m`` to its target (PG's penalty)."""
    if not bool(m.threshold_target_set):
        with torch.no_grad():
            m.threshold_target.copy_(m.threshold.detach())
            m.threshold_target_set.fill_(True)
    return (m.threshold - m.threshold_target) ** 2


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


# The per-layer decision counters (plain attributes: not in the state dict, not broadcast).
_COUNTERS = ("stat_block_refined", "stat_block_groups", "stat_totals")


def stats_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """This process's decision counters as ``{"<layer>.<counter>": tensor}`` (for checkpoints)."""
    return {
        f"{name}.{attr}": getattr(m, attr).clone()
        for name, m in quant_layers(model)
        for attr in _COUNTERS
    }


def load_stats_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Restore counters saved by :func:`stats_state` (missing entries are left as they are)."""
    for name, m in quant_layers(model):
        for attr in _COUNTERS:
            if f"{name}.{attr}" in state:
                setattr(m, attr, state[f"{name}.{attr}"].clone())


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
    dynamic: bool = True  # False: a static layer in the budget (B_hi = its bits, B_lo = 0)

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
        """Share of low-pass MACs actually done (MAC-weighted over the dynamic layers; NaN
        when there are none, e.g. for the uniform baseline)."""
        dyn = [s for s in self.layers.values() if s.dynamic]
        total = sum(s.macs for s in dyn)
        if total == 0:
            return float("nan")
        return sum(s.macs * s.ratio_macs for s in dyn) / total

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
    all-reduced); pass ``all_reduce=False`` for this process's own. Static layers in the budget
    (:func:`budget_layers`) report their bits: ``ratio`` 1, ``B_hi`` = bits, ``B_lo`` = 0.
    """
    layers = budget_layers(model)
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
        if not m.dynamic:
            bits = int(m.act_quant.bits)
            stats.layers[name] = LayerStats(
                ratio_elements=1.0,
                ratio_macs=1.0,
                block_ratios=[],
                bounds=(1.0, 1.0),
                macs=macs,
                elements=elems,
                hi_bits=bits,
                lo_bits=0,
                dynamic=False,
            )
            continue
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
        m.record_masks(out.setdefault(name, []))
    try:
        yield out
    finally:
        for _, m in layers:
            m.record_masks(None)
