"""Synthetic masks at a given refine ratio, and reading/writing real ones (``.npz``).

Masks are ``dict[layer name -> bool array]``, one leading sample axis, for dynamic layers only:

* ``block``: the layer's own group masks ``(N, n_blocks, n_gh, n_gw)`` (output- or
  input-directed as the layer says); every (sample, block) refines ``ratio`` of its groups,
  rounded stochastically so the expected ratio is exact even for blocks with few groups;
* ``region``: the same on the layer's input channels and map (DRQ-style region gating);
* ``element``: per-output-element masks ``(N, C_out, H_out, W_out)``, each element refined
  independently with probability ``ratio`` (``cluster`` > 1 refines clusters of
  ``(channels, rows, cols)`` elements together, for spatially correlated masks).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from dynabit.config.layer import GridGeometry
from dynabit.hardware.shapes import LayerShape

MaskKind = Literal["block", "region", "element"]


def _exact_per_row(rng: np.random.Generator, shape: tuple[int, ...], ratio: float) -> np.ndarray:
    """Bool array: along the last axis, ``ratio`` of the entries set (stochastic rounding)."""
    *lead, g = shape
    target = ratio * g
    k = np.floor(target) + (rng.random(lead) < (target - np.floor(target)))
    ranks = rng.random(shape).argsort(axis=-1).argsort(axis=-1)
    return ranks < k[..., None]


def synthetic_masks(
    shapes: Sequence[LayerShape],
    ratio: float,
    samples: int = 1,
    seed: int = 0,
    kind: MaskKind = "block",
    cluster: tuple[int, int, int] = (1, 1, 1),
) -> dict[str, np.ndarray]:
    """Random masks for every dynamic layer of ``shapes`` at refine ratio ``ratio``."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1], got {ratio}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if kind not in ("block", "region", "element"):
        raise ValueError(f"unknown mask kind {kind!r}; allowed: block, region, element")
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for s in shapes:
        if not s.dynamic:
            continue
        if kind == "element":
            n, c, h, w = s.element_mask_shape(samples)
            cc, ch, cw = cluster
            coarse = rng.random(GridGeometry(c, h, w, cc, ch, cw).mask_shape(n)) < ratio
            full = coarse.repeat(cc, 1).repeat(ch, 2).repeat(cw, 3)
            out[s.name] = np.ascontiguousarray(full[:, :c, :h, :w])
            continue
        decision = "input" if kind == "region" else s.decision
        n, b, gh, gw = s.mask_shape(samples, decision)
        out[s.name] = _exact_per_row(rng, (n, b, gh * gw), ratio).reshape(n, b, gh, gw)
    return out


def mask_ratio(shapes: Sequence[LayerShape], masks: dict[str, np.ndarray]) -> float:
    """MAC-weighted mean of the masks' refined fraction over the dynamic layers (approximate:
    each mask entry counts equally, partial edge groups included)."""
    num = den = 0.0
    for s in shapes:
        if s.dynamic and s.name in masks:
            num += s.macs * float(np.mean(masks[s.name]))
            den += s.macs
    return num / den if den else 0.0


def save_masks(masks: dict[str, np.ndarray], path: str | Path) -> None:
    """Write masks as a compressed ``.npz`` keyed by layer name."""
    np.savez_compressed(Path(path), **{k: np.asarray(v, dtype=bool) for k, v in masks.items()})


def load_masks(path: str | Path) -> dict[str, np.ndarray]:
    """Read masks written by :func:`save_masks` (or any ``.npz`` of bool arrays)."""
    with np.load(Path(path)) as data:
        return {k: data[k].astype(bool) for k in data.files}
