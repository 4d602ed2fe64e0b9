"""``simulate``: cycles, traffic and energy of a network on the array, per layer and per sample.

Modes (all on the same ``R x C`` array of ``act_chunk_bits x weight_bits`` PEs unless noted):

* ``dense``: one chunk pass per layer, no masks: the standard systolic formulas.
* ``uniform``: every layer at its full activation width, both planes chained in every fold.
* ``high``: dynamic layers run the high pass only (the floor); static layers stay full width.
* ``dynamic``: dynamic layers follow their group masks (output- or input-directed per layer).
* ``element``: per-element gating masks ``(N, C_out, H_out, W_out)`` (Precision-Gating style).
* ``region``: group masks on the layer's *input* (DRQ-style region gating) for every dynamic
  layer, whatever the layer's own decision source.
* ``bitparallel``: an array of the same PE count with bit-parallel ``8 x weight_bits`` PEs.

Each mode is a :class:`~dynabit.hardware.modes.SimMode` (:mod:`dynabit.hardware.modes`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.energy import ENERGY_KEYS, layer_energy
from dynabit.hardware.mapping import fold_plan
from dynabit.hardware.modes import MASKED_MODES, MODES, Mode, mode_for
from dynabit.hardware.shapes import LayerShape
from dynabit.hardware.traffic import DRAM_KEYS, SRAM_KEYS, Precision, layer_traffic, stall_cycles

if TYPE_CHECKING:
    from dynabit.hardware.scalesim.memory import ScaleSimMemory

__all__ = [
    "MASKED_MODES",
    "MEMORY_MODELS",
    "MODES",
    "Mode",
    "SimResult",
    "check_masks",
    "expected_mask_shape",
    "precision_for",
    "simulate",
    "uses_group_mapping",
]

MEMORY_MODELS = ("dynabit", "scalesim")  # see docs/hardware.md, "Memory models"


def precision_for(shape: LayerShape, mode: str, hw: HardwareConfig) -> Precision:
    """How the layer's activations are streamed in ``mode``."""
    return mode_for(mode).precision(shape, hw)


def uses_group_mapping(shape: LayerShape, mode: str) -> bool:
    """Whether the layer's output pixels are folded group by group in this mode.

    Our design (``dynamic``, and its floor ``high``) folds an output-directed dynamic layer so
    that its groups line up with folds; every other mode uses SCALE-Sim's even split.
    """
    return mode_for(mode).group_mapping(shape)


def expected_mask_shape(shape: LayerShape, mode: str, samples: int) -> tuple[int, ...]:
    """Shape a mask for ``shape`` must have in ``mode``."""
    return mode_for(mode).mask_shape(shape, samples)


def check_masks(shapes: Sequence[LayerShape], masks: Mapping[str, np.ndarray], mode: str) -> int:
    """Validate names, shapes and sample counts of ``masks``; return the number of samples."""
    names = {s.name for s in shapes}
    unknown = sorted(set(masks) - names)
    if unknown:
        raise ValueError(
            f"masks for unknown layers {unknown[:5]}; layers are {sorted(names)[:8]}..."
        )
    dyn = [s for s in shapes if s.dynamic]
    missing = [s.name for s in dyn if s.name not in masks]
    if missing:
        raise ValueError(f"mode {mode!r}: no mask for dynamic layer(s) {missing[:5]}")
    counts = {np.asarray(masks[s.name]).shape[0] for s in dyn}
    if len(counts) > 1:
        raise ValueError(f"masks disagree on the number of samples: {sorted(counts)}")
    samples = counts.pop() if counts else 1
    sim_mode = mode_for(mode)
    for s in dyn:
        m = np.asarray(masks[s.name])
        exp = sim_mode.mask_shape(s, samples)
        if m.shape != exp:
            raise ValueError(
                f"layer {s.name!r}: {mode} mask has shape {m.shape}, expected {exp} "
                f"(group {s.group}, block {s.block_size}, decision {s.decision})"
            )
    return samples


@dataclass
class SimResult:
    """Per-layer, per-sample results: every array is ``(layers, samples)``."""

    mode: str
    hw: HardwareConfig
    layers: list[LayerShape]
    compute_cycles: np.ndarray
    stall_cycles: np.ndarray
    macs: np.ndarray  # chunk MACs performed
    refined: np.ndarray  # MAC-weighted refine ratio (dynamic layers in masked modes)
    bits_avg: np.ndarray  # average activation bits processed
    sram_bits: dict[str, np.ndarray] = field(default_factory=dict)
    dram_bits: dict[str, np.ndarray] = field(default_factory=dict)
    energy_pj: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        """Number of samples simulated."""
        return self.compute_cycles.shape[1]

    @property
    def cycles(self) -> np.ndarray:
        """Compute plus stall cycles, ``(layers, samples)``."""
        return self.compute_cycles + self.stall_cycles

    @property
    def total_cycles(self) -> np.ndarray:
        """Whole-network cycles per sample."""
        return self.cycles.sum(axis=0)

    @property
    def utilisation(self) -> np.ndarray:
        """Fraction of PE-cycles doing a MAC, ``(layers, samples)``."""
        return self.macs / (self.hw.rows * self.hw.cols * np.maximum(self.cycles, 1))

    @property
    def energy_total(self) -> np.ndarray:
        """Energy per layer and sample (pJ)."""
        return sum(self.energy_pj.values())  # type: ignore[return-value]

    def layer_index(self, names: Sequence[str]) -> np.ndarray:
        """Row indices of the named layers."""
        pos = {s.name: i for i, s in enumerate(self.layers)}
        return np.array([pos[n] for n in names], dtype=np.int64)

    def summary(self) -> dict[str, float]:
        """Network totals, averaged over samples."""
        cyc = self.total_cycles.astype(np.float64)
        e = {k: float(v.sum(axis=0).mean()) for k, v in self.energy_pj.items()}
        return {
            "cycles": float(cyc.mean()),
            "cycles_min": float(cyc.min()),
            "cycles_max": float(cyc.max()),
            "compute_cycles": float(self.compute_cycles.sum(axis=0).mean()),
            "stall_cycles": float(self.stall_cycles.sum(axis=0).mean()),
            "time_us": float(cyc.mean() / self.hw.clock_mhz),
            "utilisation": float(
                self.macs.sum(axis=0).mean() / (self.hw.rows * self.hw.cols * cyc.mean())
            ),
            "sram_bytes": float(sum(v.sum(axis=0).mean() for v in self.sram_bits.values()) / 8),
            "dram_bytes": float(sum(v.sum(axis=0).mean() for v in self.dram_bits.values()) / 8),
            **{
                f"sram_{k}_bytes": float(v.sum(axis=0).mean() / 8)
                for k, v in self.sram_bits.items()
            },
            **{
                f"dram_{k}_bytes": float(v.sum(axis=0).mean() / 8)
                for k, v in self.dram_bits.items()
            },
            **{f"energy_{k}_uj": v / 1e6 for k, v in e.items()},
            "energy_uj": sum(e.values()) / 1e6,
        }


def simulate(
    shapes: Sequence[LayerShape],
    masks: Mapping[str, np.ndarray] | None = None,
    hw: HardwareConfig | None = None,
    mode: Mode = "dynamic",
    samples: int | None = None,
    memory: str | ScaleSimMemory = "dynabit",
) -> SimResult:
    """Simulate ``shapes`` on ``hw`` in ``mode``; masked modes need ``masks`` for dynamic layers.

    Masks are ``dict[layer name -> bool array]`` with one leading sample axis; all samples
    are simulated at once. Unmasked modes simulate ``samples`` identical samples (default 1).
    ``memory="scalesim"`` (dense mode only) takes the stalls from SCALE-Sim 3.0.0's
    double-buffered scratchpads (:mod:`dynabit.hardware.scalesim.memory`) instead of ours,
    every buffer at ``hw.dram_words_per_cycle``; a ``ScaleSimMemory`` gives the buffers (and
    per-buffer bandwidths) to use instead.
    """
    hw = hw or HardwareConfig()
    sim_mode = mode_for(mode)
    if not shapes:
        raise ValueError("no layers to simulate")
    scratchpads = None
    if not isinstance(memory, str):
        scratchpads, memory = memory, "scalesim"
    if memory not in MEMORY_MODELS or (memory == "scalesim" and mode != "dense"):
        raise ValueError(
            f"memory model {memory!r} with mode {mode!r}: allowed {MEMORY_MODELS}, 'scalesim' "
            "only with mode 'dense'"
        )
    if sim_mode.masked:
        if masks is None:
            raise ValueError(f"mode {mode!r} needs masks for the dynamic layers")
        n = check_masks(shapes, masks, mode)
    else:
        n = samples or 1
    n_layers = len(shapes)
    comp = np.zeros((n_layers, n), dtype=np.int64)
    stall = np.zeros_like(comp)
    macs = np.zeros((n_layers, n))
    refined = np.zeros((n_layers, n))
    bits_avg = np.zeros((n_layers, n))
    sram = {k: np.zeros((n_layers, n)) for k in SRAM_KEYS}
    dram = {k: np.zeros((n_layers, n)) for k in DRAM_KEYS}
    energy = {k: np.zeros((n_layers, n)) for k in ENERGY_KEYS}
    for i, shape in enumerate(shapes):
        prec = sim_mode.precision(shape, hw)
        plan = fold_plan(shape, hw, group_aligned=sim_mode.group_mapping(shape))
        mask = None
        if prec.masked and masks is not None:
            mask = np.asarray(masks[shape.name], dtype=bool)
        lp = sim_mode.low_pass(shape, plan, hw, mask, n, prec.c_hi, prec.c_lo)
        cyc = (plan.fill + lp.t_main).sum(axis=1)
        cyc = cyc + ((lp.t_second > 0) * plan.fill + lp.t_second).sum(axis=1)
        comp[i] = cyc + lp.epilogue - 1
        tr = layer_traffic(shape, plan, hw, lp, prec)
        stall[i] = stall_cycles(tr.dram_total, comp[i], hw)
        if memory == "scalesim":
            from dynabit.hardware.scalesim.memory import ScaleSimMemory

            pads = scratchpads or ScaleSimMemory.from_hw(hw)
            stall[i] = pads.layer(shape, hw).stall_cycles
        macs[i] = shape.macs * prec.c_hi + lp.lo_macs
        refined[i] = lp.refined if prec.c_lo else 0.0
        bits_avg[i] = prec.hi_bits + refined[i] * prec.lo_bits
        for k in SRAM_KEYS:
            sram[k][i] = tr.sram[k]
        for k in DRAM_KEYS:
            dram[k][i] = tr.dram[k]
        for k, v in layer_energy(shape, plan, hw, lp, prec, tr).items():
            energy[k][i] = v
    return SimResult(
        mode=mode,
        hw=hw,
        layers=list(shapes),
        compute_cycles=comp,
        stall_cycles=stall,
        macs=macs,
        refined=refined,
        bits_avg=bits_avg,
        sram_bits=sram,
        dram_bits=dram,
        energy_pj=energy,
    )
