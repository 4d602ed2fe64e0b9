"""The engine's trace: per layer and per sample, the decisions taken and the MACs done.

Saved as one ``.safetensors`` file (``layers/<name>/<field>`` tensors; the header metadata holds
``format`` = :data:`TRACE_FORMAT`, ``version`` and a JSON description of each layer), so the
hardware simulator and the RTL tests can replay real decisions. See ``docs/engine.md``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from dynabit.utils.files import atomic_write_bytes

TRACE_FORMAT = "dynabit-engine-trace"
TRACE_VERSION = 2  # 2: a sha256 over the tensors and the description


@dataclass
class LayerTrace:
    """One conv/linear layer over a batch of ``N`` samples.

    ``mask`` (bool ``(N, blocks, gy, gx)``) holds the refine decisions of a dynamic layer (the
    blocks and groups of its output map, or of its input map for input-directed decisions).
    ``macs_hi`` / ``macs_lo`` are the MACs the engine executed in the high / low pass per sample
    (a static layer's single pass counts as high); ``macs_lo_refined`` counts the low-pass MACs
    whose activation is refined (equal to ``macs_lo`` for output-directed decisions, fewer for
    input-directed ones, whose gathered windows may mix refined and unrefined inputs);
    ``macs_dense`` is one full pass per sample; ``elements`` the elements of the decision map
    per sample and ``refined_elements`` those in refined groups.
    """

    name: str
    dynamic: bool
    decision: str | None
    mask: torch.Tensor | None
    macs_hi: torch.Tensor
    macs_lo: torch.Tensor
    macs_lo_refined: torch.Tensor
    macs_dense: int
    elements: int = 0
    refined_elements: torch.Tensor | None = None
    grid: tuple[int, ...] | None = None  # (channels, height, width, block, g_h, g_w)
    codes: torch.Tensor | None = None  # input codes (only with keep=True)
    acc: torch.Tensor | None = None  # output accumulators (only with keep=True)

    @classmethod
    def static(cls, name: str, macs: torch.Tensor, dense: int, elements: int = 0) -> LayerTrace:
        """The trace of a static (single-pass) layer with ``elements`` outputs per sample."""
        zeros = torch.zeros_like(macs)
        full = torch.full_like(macs, elements)
        return cls(name, False, None, None, macs, zeros, zeros.clone(), dense, elements, full)

    @property
    def samples(self) -> int:
        """Samples traced."""
        return int(self.macs_hi.shape[0])

    def to_json(self) -> dict[str, Any]:
        """The per-layer JSON metadata of a saved trace."""
        return {
            "dynamic": self.dynamic,
            "decision": self.decision,
            "macs_dense": self.macs_dense,
            "elements": self.elements,
            "grid": list(self.grid) if self.grid is not None else None,
        }


def _cat(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if parts[0] is None else torch.cat(parts)  # type: ignore[arg-type]


@dataclass
class EngineTrace:
    """Every layer's :class:`LayerTrace`, in execution order, for ``samples`` samples."""

    layers: list[LayerTrace] = field(default_factory=list)
    samples: int = 0

    def layer(self, name: str) -> LayerTrace:
        """The trace of the layer called ``name``."""
        for lt in self.layers:
            if lt.name == name:
                return lt
        raise KeyError(name)

    @classmethod
    def concat(cls, traces: list[EngineTrace]) -> EngineTrace:
        """Join the traces of consecutive batches (same program)."""
        if not traces:
            return cls()
        layers = []
        for parts in zip(*(t.layers for t in traces), strict=True):
            first = parts[0]
            layers.append(
                LayerTrace(
                    name=first.name,
                    dynamic=first.dynamic,
                    decision=first.decision,
                    mask=_cat([p.mask for p in parts]),
                    macs_hi=torch.cat([p.macs_hi for p in parts]),
                    macs_lo=torch.cat([p.macs_lo for p in parts]),
                    macs_lo_refined=torch.cat([p.macs_lo_refined for p in parts]),
                    macs_dense=first.macs_dense,
                    elements=first.elements,
                    refined_elements=_cat([p.refined_elements for p in parts]),
                    grid=first.grid,
                    codes=_cat([p.codes for p in parts]),
                    acc=_cat([p.acc for p in parts]),
                )
            )
        return cls(layers, sum(t.samples for t in traces))

    def budget(self, bits: dict[str, tuple[int, int]]) -> dict[str, Any]:
        """Measured ``B_avg`` (MAC- and element-weighted) and refine ratios of the layers in
        ``bits`` (name -> ``(B_hi, B_lo)``, see :func:`dynabit.engine.layer_bits`), as
        :func:`dynabit.quant.model_stats` defines them: a static layer in the budget (the uniform
        baseline) counts at its bits, ratio 1."""
        per_layer = {}
        num_m = den_m = num_e = den_e = ref_m = 0.0
        for lt in self.layers:
            if lt.name not in bits:
                continue
            hi, lo = bits[lt.name]
            macs = float(lt.macs_dense) * lt.samples
            elems = float(lt.elements) * lt.samples
            if lt.dynamic:
                r_m = float(lt.macs_lo_refined.sum()) / macs if macs else float("nan")
                assert lt.refined_elements is not None
                r_e = float(lt.refined_elements.sum()) / elems if elems else float("nan")
            else:
                r_m = r_e = 1.0
            per_layer[lt.name] = {
                "ratio_macs": r_m,
                "ratio_elements": r_e,
                "b_avg": hi + lo * r_m,
                "macs_lo_done": int(lt.macs_lo.sum()),
                "macs_lo_dense": int(macs),
            }
            num_m += macs * (hi + lo * r_m)
            den_m += macs
            ref_m += macs * r_m
            num_e += elems * (hi + lo * r_e)
            den_e += elems
        nan = float("nan")
        return {
            "b_avg_macs": num_m / den_m if den_m else nan,
            "b_avg_elements": num_e / den_e if den_e else nan,
            "refine_ratio": ref_m / den_m if den_m else nan,
            "layers": per_layer,
        }

    def save(self, path: str | Path) -> None:
        """Write the trace (masks and MAC counts; kept codes are not saved)."""
        tensors: dict[str, torch.Tensor] = {}
        for lt in self.layers:
            pre = f"layers/{lt.name}/"
            tensors[pre + "macs_hi"] = lt.macs_hi.contiguous()
            tensors[pre + "macs_lo"] = lt.macs_lo.contiguous()
            # A copy: for output-directed layers it may be the very tensor macs_lo is, and
            # safetensors refuses tensors that share memory.
            tensors[pre + "macs_lo_refined"] = lt.macs_lo_refined.clone()
            if lt.mask is not None:
                tensors[pre + "mask"] = lt.mask.to(torch.uint8).contiguous()
            if lt.refined_elements is not None:
                tensors[pre + "refined_elements"] = lt.refined_elements.contiguous()
        meta = {
            "format": TRACE_FORMAT,
            "version": str(TRACE_VERSION),
            "samples": str(self.samples),
            "layers": json.dumps({lt.name: lt.to_json() for lt in self.layers}),
            "order": json.dumps([lt.name for lt in self.layers]),
        }
        meta["sha256"] = _trace_digest(tensors, meta)
        atomic_write_bytes(path, save(tensors, metadata=meta))


_DESCRIBED = ("samples", "layers", "order")  # the metadata entries the checksum covers


def _trace_digest(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """sha256 of the tensors (names and bytes, in key order) and of the described metadata."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    for k in _DESCRIBED:
        h.update(f"\0{k}\0{meta.get(k)}".encode())
    return h.hexdigest()


class TraceFormatError(ValueError):
    """An engine trace file is missing, truncated, corrupt or of another version."""


def load_trace(path: str | Path) -> EngineTrace:
    """Read a trace written by :meth:`EngineTrace.save`.

    Raises:
        TraceFormatError: the file is missing, not a trace, of another version, or damaged.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError) as e:
        raise TraceFormatError(f"{path}: not a readable engine trace ({e})") from None
    if meta.get("format") != TRACE_FORMAT or meta.get("version") != str(TRACE_VERSION):
        raise TraceFormatError(
            f"{path}: not a dynabit engine trace of version {TRACE_VERSION} "
            f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
        )
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError, ValueError) as e:
        raise TraceFormatError(f"{path}: damaged engine trace ({type(e).__name__}: {e})") from None
    if _trace_digest(tensors, meta) != meta.get("sha256"):
        raise TraceFormatError(
            f"{path}: the trace's tensors or description no longer match its checksum "
            "(corrupt or edited file); run the program again to write it"
        )
    try:
        return _read_trace(tensors, meta)
    except (OSError, SafetensorError, ValueError, KeyError, TypeError) as e:
        raise TraceFormatError(f"{path}: damaged engine trace ({type(e).__name__}: {e})") from None


def _read_trace(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> EngineTrace:
    info = json.loads(meta["layers"])
    layers = []
    for name in json.loads(meta["order"]):
        d = info[name]
        pre = f"layers/{name}/"
        mask = tensors.get(pre + "mask")
        layers.append(
            LayerTrace(
                name=name,
                dynamic=d["dynamic"],
                decision=d["decision"],
                mask=None if mask is None else mask.bool(),
                macs_hi=tensors[pre + "macs_hi"],
                macs_lo=tensors[pre + "macs_lo"],
                macs_lo_refined=tensors[pre + "macs_lo_refined"],
                macs_dense=int(d["macs_dense"]),
                elements=int(d["elements"]),
                refined_elements=tensors.get(pre + "refined_elements"),
                grid=None if d["grid"] is None else tuple(d["grid"]),
            )
        )
    return EngineTrace(layers, int(meta["samples"]))
