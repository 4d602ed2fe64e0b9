"""``compare``: our design against the same-array baselines, and the ideal ``B / B_avg``.

Speedups are ratios of mean cycles per sample (throughput at batch 1); energy savings are
``1 - E_ours / E_baseline``. The ideal speedup of dual precision over uniform precision is
``sum(MAC * B) / sum(MAC * B_avg)`` over the chosen layers (``B_avg = B_hi + r * B_lo`` with
the measured MAC-weighted refine ratio ``r``), i.e. ``B / B_avg`` when every layer has the
same ``B``. *Compute-bound* layers are the dynamic layers that stall on DRAM in neither our
run nor the uniform one.

Every speedup here is against baselines on the *same* array of the same PEs. Per area, a
comparison also carries the designs of the same organisation (``hw.lanes``-lane dot-product
PEs, equal buffers) from :mod:`dynabit.hardware.iso_area`: the dual design's throughput per
area and energy per inference against INT8 and INT4 arrays, and the break-even refine ratio
against INT8 (``per_area``; ``None`` with ``per_area_note`` saying why when the area table has
no row for the config).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware import iso_area
from dynabit.hardware.shapes import LayerShape
from dynabit.hardware.simulator import SimResult, simulate

BASELINES = ("uniform", "high", "element", "region", "bitparallel")


@dataclass
class Comparison:
    """Our run (``results[reference]``) beside the baselines, all on the same array."""

    results: dict[str, SimResult]
    reference: str = "dynamic"
    per_area: dict[str, Any] | None = None  # iso_area.compare_designs of our masks
    per_area_note: str = ""  # why ``per_area`` is missing

    @property
    def ours(self) -> SimResult:
        """The reference run."""
        return self.results[self.reference]

    @property
    def layers(self) -> list[LayerShape]:
        """Layer shapes (identical in every run)."""
        return self.ours.layers

    def _idx(self, layers: Sequence[str] | None) -> np.ndarray:
        if layers is None:
            return np.arange(len(self.layers))
        return self.ours.layer_index(layers)

    def mean_cycles(self, mode: str, layers: Sequence[str] | None = None) -> float:
        """Mean cycles per sample of ``mode`` over ``layers`` (default all)."""
        res = self.results[mode]
        return float(res.cycles[self._idx(layers)].sum(axis=0).mean())

    def mean_energy(self, mode: str, layers: Sequence[str] | None = None) -> float:
        """Mean energy per sample (pJ) of ``mode`` over ``layers``."""
        res = self.results[mode]
        return float(res.energy_total[self._idx(layers)].sum(axis=0).mean())

    def speedup(self, baseline: str, layers: Sequence[str] | None = None) -> float:
        """Baseline cycles over ours."""
        return self.mean_cycles(baseline, layers) / self.mean_cycles(self.reference, layers)

    def energy_saving(self, baseline: str, layers: Sequence[str] | None = None) -> float:
        """``1 - E_ours / E_baseline``."""
        return 1.0 - self.mean_energy(self.reference, layers) / self.mean_energy(baseline, layers)

    def ideal(self, layers: Sequence[str] | None = None, mode: str | None = None) -> float:
        """``sum(MAC*B) / sum(MAC*B_avg)`` with ``B_avg`` measured in ``mode`` (default ours)."""
        res = self.results[mode or self.reference]
        idx = self._idx(layers)
        macs = np.array([self.layers[i].macs for i in idx], dtype=np.float64)
        full = np.array([self.layers[i].bits for i in idx], dtype=np.float64)
        avg = (macs[:, None] * res.bits_avg[idx]).sum(axis=0).mean()
        return float((macs * full).sum() / avg)

    def dynamic_layers(self) -> list[str]:
        """Names of the dynamic layers."""
        return [s.name for s in self.layers if s.dynamic]

    def compute_bound_layers(self) -> list[str]:
        """Dynamic layers with no DRAM stall in our run and in the uniform run."""
        ours, uni = self.ours, self.results["uniform"]
        return [
            s.name
            for i, s in enumerate(self.layers)
            if s.dynamic and not ours.stall_cycles[i].any() and not uni.stall_cycles[i].any()
        ]

    def realized_fraction(self, layers: Sequence[str] | None = None) -> float:
        """Speedup over uniform divided by the ideal, on ``layers`` (default compute-bound)."""
        names = self.compute_bound_layers() if layers is None else list(layers)
        if not names:
            return float("nan")
        return self.speedup("uniform", names) / self.ideal(names)

    def headline(self) -> dict[str, float]:
        """The figures a report leads with."""
        cb = self.compute_bound_layers()
        out: dict[str, float] = {
            "ideal_network": self.ideal(),
            "ideal_dynamic_layers": self.ideal(self.dynamic_layers()),
            "compute_bound_layers": float(len(cb)),
        }
        if cb:
            out["ideal_compute_bound"] = self.ideal(cb)
            out["speedup_uniform_compute_bound"] = self.speedup("uniform", cb)
            out["realized_fraction_of_ideal"] = self.realized_fraction(cb)
            if "element" in self.results:
                out["element_speedup_compute_bound"] = self.mean_cycles("uniform", cb) / (
                    self.mean_cycles("element", cb)
                )
            if "region" in self.results:
                out["region_speedup_compute_bound"] = self.mean_cycles("uniform", cb) / (
                    self.mean_cycles("region", cb)
                )
        for b in self.results:
            if b != self.reference:
                out[f"speedup_vs_{b}"] = self.speedup(b)
                out[f"energy_saving_vs_{b}"] = self.energy_saving(b)
        if self.per_area is not None:
            out.update(iso_area.headline(self.per_area))
        return out


def compare(
    shapes: Sequence[LayerShape],
    masks: Mapping[str, np.ndarray],
    hw: HardwareConfig | None = None,
    element_masks: Mapping[str, np.ndarray] | None = None,
    region_masks: Mapping[str, np.ndarray] | None = None,
    baselines: Sequence[str] = ("uniform", "high", "bitparallel"),
    per_area: bool = True,
) -> Comparison:
    """Simulate our masks and every baseline on the same array.

    ``element_masks`` add per-element gating, ``region_masks`` DRQ-style region gating; the
    other baselines need no masks. ``uniform`` is always included (it defines the ideal).
    ``per_area``: add the designs of the same organisation per area (see the module doc).
    """
    hw = hw or HardwareConfig()
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; allowed: {BASELINES}")
    results = {"dynamic": simulate(shapes, masks, hw, "dynamic")}
    for b in dict.fromkeys(("uniform", *baselines)):
        if b in ("element", "region"):
            continue
        results[b] = simulate(shapes, None, hw, b)  # type: ignore[arg-type]
    if element_masks is not None:
        results["element"] = simulate(shapes, element_masks, hw, "element")
    if region_masks is not None:
        results["region"] = simulate(shapes, region_masks, hw, "region")
    if not per_area:
        return Comparison(results, per_area_note="not asked for")
    try:
        return Comparison(results, per_area=iso_area.compare_designs(shapes, masks, hw))
    except KeyError as e:  # the area table has no PE of this organisation
        return Comparison(results, per_area_note=str(e.args[0]))
