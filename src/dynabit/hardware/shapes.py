"""Layer geometry the simulator needs: ``LayerShape``, from a model's hooks or a named network.

A conv layer is described by its channels, kernel, stride, padding, dilation, conv groups and
input/output maps; a linear layer is a 1x1 conv on a 1x1 map (one output pixel per sample; a
``(N, L, F)`` input is an ``1 x L`` map). The decision grid (``group``, ``block_size``,
``decision``) is the one the quantization layers use: for output-directed decisions it covers
the output channels and output map, for input-directed decisions the input channels and map.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from dynabit.config.hardware import HardwareConfig
from dynabit.config.layer import Decision, GridGeometry, Kind, LayerSpec, hardware_units

__all__ = [
    "NETWORKS",
    "Decision",
    "Kind",
    "LayerShape",
    "conv_out",
    "fitted_group",
    "layer_shapes_from_model",
    "load_shapes",
    "network_shapes",
    "save_shapes",
    "shape_of",
]


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a convolution along one axis (PyTorch's floor convention)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def fitted_group(hw_map: tuple[int, int], edge: int) -> tuple[int, int]:
    """Group ``(g_h, g_w)``, ``g_h * g_w <= edge``, needing the fewest folds of one group each.

    Ties go to the squarer, then the larger shape. A 56x56 map on 32 rows gets 4x8 (98 folds,
    as many as the even split); a 14x14 map gets 2x14 (7 folds, against 8 for 4x8 groups whose
    edge groups are partial).
    """
    h, w = hw_map
    best: tuple[int, int, int] | None = None
    best_shape = (1, 1)
    for gh in range(1, min(h, edge) + 1):
        gw = min(w, edge // gh)
        n = GridGeometry(1, h, w, 1, gh, gw).n_groups
        key = (n, abs(gh - gw), -gh * gw)
        if best is None or key < best:
            best, best_shape = key, (gh, gw)
    return best_shape


@dataclass(frozen=True)
class LayerShape(LayerSpec):
    """One conv or linear layer as the array sees it (per sample): its
    :class:`~dynabit.config.layer.LayerSpec` and the width of its stored outputs.

    ``bits``/``hi_bits``: activation bits of the layer's input codes and how many of them form
    the high plane (a static layer keeps the same split and always runs both planes).
    ``out_bits``: bits of each stored output activation.
    """

    out_bits: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.out_bits < 1:
            raise ValueError(f"layer {self.name!r}: out_bits must be >= 1")

    # --- GEMM view -------------------------------------------------------------------------
    @property
    def pixels(self) -> int:
        """Output pixels per sample (the GEMM's M)."""
        return self.out_hw[0] * self.out_hw[1]

    @property
    def window(self) -> int:
        """Reduction length per conv group (the GEMM's K = kh * kw * C_in / groups)."""
        return self.kernel[0] * self.kernel[1] * (self.in_channels // self.groups)

    @property
    def channels_per_group(self) -> int:
        """Output channels per conv group (the GEMM's N)."""
        return self.out_channels // self.groups

    @property
    def macs(self) -> int:
        """Multiply-accumulates per sample (padding taps included, as the array runs them)."""
        return self.pixels * self.out_channels * self.window

    def element_mask_shape(self, samples: int) -> tuple[int, int, int, int]:
        """``(N, C_out, H_out, W_out)`` of a per-element gating mask."""
        return (samples, self.out_channels, *self.out_hw)


def shape_of(spec: LayerSpec, out_bits: int = 8) -> LayerShape:
    """The :class:`LayerShape` of a layer described by ``spec``."""
    return LayerShape(**spec.spec_dict(), out_bits=out_bits)


def save_shapes(shapes: Sequence[LayerShape], path: str | Path) -> None:
    """Write shapes as a JSON list (atomically)."""
    from dynabit.utils.files import atomic_write_text

    atomic_write_text(Path(path), json.dumps([s.to_dict() for s in shapes], indent=1))


def load_shapes(path: str | Path) -> list[LayerShape]:
    """Read shapes written by :func:`save_shapes`."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of layer shapes")
    return [LayerShape.from_dict(d) for d in data]


# --- from a model ------------------------------------------------------------------------------


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


def layer_shapes_from_model(
    model: Any,
    example_input: Any,
    hw: HardwareConfig | None = None,
    keep_first_last: bool = True,
) -> list[LayerShape]:
    """Run ``model(example_input)`` once with forward hooks and describe every conv/linear.

    Layers with a ``qcfg`` attribute (the quantization layers) take group, block size,
    decision, dynamic and bits from it; plain layers get the hardware's aligned decision units
    and are dynamic except the first and the last when ``keep_first_last``. Layers appear in
    execution order.
    """
    import torch
    from torch import nn

    hw = hw or HardwareConfig()
    records: list[tuple[str, nn.Module, tuple[int, ...], tuple[int, ...]]] = []
    names = {m: n for n, m in model.named_modules()}
    handles = []

    def hook(mod: nn.Module, inp: tuple[Any, ...], out: Any) -> None:
        x = inp[0]
        records.append((names.get(mod, type(mod).__name__), mod, tuple(x.shape), tuple(out.shape)))

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(hook))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(example_input)
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()

    shapes: list[LayerShape] = []
    seen: dict[str, int] = {}
    for idx, (name, mod, ishape, oshape) in enumerate(records):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        q = getattr(mod, "qcfg", None)
        edge = idx == 0 or idx == len(records) - 1
        dynamic = bool(q.dynamic) if q is not None else not (keep_first_last and edge)
        group, block = hardware_units(
            hw, getattr(q, "group", None), getattr(q, "block_size", None)
        )
        if q is not None:
            bits = int(q.bits) if dynamic else int(q.static_bits)
            hi = min(int(q.hi_bits), bits)
        else:
            bits, hi = 8, min(hw.act_chunk_bits, 8)
        if isinstance(mod, nn.Conv2d):
            if isinstance(mod.padding, str):
                raise ValueError(f"layer {name!r}: string padding {mod.padding!r} is not supported")
            geometry: dict[str, Any] = dict(
                kind="conv",
                in_channels=mod.in_channels,
                out_channels=mod.out_channels,
                in_hw=(ishape[-2], ishape[-1]),
                out_hw=(oshape[-2], oshape[-1]),
                kernel=_pair(mod.kernel_size),
                stride=_pair(mod.stride),
                padding=_pair(mod.padding),
                dilation=_pair(mod.dilation),
                groups=mod.groups,
            )
        else:
            rows = int(math.prod(ishape[1:-1])) if len(ishape) > 2 else 1
            geometry = dict(
                kind="linear",
                in_channels=mod.in_features,
                out_channels=mod.out_features,
                in_hw=(1, rows),
                out_hw=(1, rows),
            )
        spec = LayerSpec(
            name=name,
            **geometry,
            group=group,
            block_size=block,
            decision=q.decision if q is not None else "output",
            dynamic=dynamic,
            bits=bits,
            hi_bits=hi,
            score=getattr(q, "score", "max"),
        )
        shapes.append(shape_of(spec))
    return shapes


# --- named networks --------------------------------------------------------------------------


class _Builder:
    """Appends conv/linear shapes while tracking the feature-map size."""

    def __init__(self, common: dict[str, Any]) -> None:
        self.common = common
        self.layers: list[LayerShape] = []

    def conv(
        self, name: str, cin: int, cout: int, hw: tuple[int, int], k: int, s: int, p: int
    ) -> tuple[int, int]:
        out = (conv_out(hw[0], k, s, p), conv_out(hw[1], k, s, p))
        geometry = dict(kernel=(k, k), stride=(s, s), padding=(p, p))
        self.layers.append(
            shape_of(LayerSpec(name, "conv", cin, cout, hw, out, **geometry, **self.common))
        )
        return out

    def linear(self, name: str, fin: int, fout: int) -> None:
        spec = LayerSpec(name, "linear", fin, fout, (1, 1), (1, 1), **self.common)
        self.layers.append(shape_of(spec))


def _basic_blocks(
    b: _Builder, prefix: str, cin: int, cout: int, hw: tuple[int, int], n: int, stride: int
) -> tuple[int, tuple[int, int]]:
    for i in range(n):
        s = stride if i == 0 else 1
        out = b.conv(f"{prefix}.{i}.conv1", cin, cout, hw, 3, s, 1)
        b.conv(f"{prefix}.{i}.conv2", cout, cout, out, 3, 1, 1)
        if s != 1 or cin != cout:
            b.conv(f"{prefix}.{i}.downsample.0", cin, cout, hw, 1, s, 0)
        cin, hw = cout, out
    return cin, hw


def _resnet18(b: _Builder, image_size: int, num_classes: int) -> None:
    hw = b.conv("conv1", 3, 64, (image_size, image_size), 7, 2, 3)
    hw = (conv_out(hw[0], 3, 2, 1), conv_out(hw[1], 3, 2, 1))  # max-pool 3x3 / 2
    c = 64
    for stage, (width, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        c, hw = _basic_blocks(b, f"layer{stage}", c, width, hw, 2, stride)
    b.linear("fc", c, num_classes)


def _resnet20(b: _Builder, image_size: int, num_classes: int) -> None:
    hw = b.conv("conv1", 3, 16, (image_size, image_size), 3, 1, 1)
    c = 16
    for stage, (width, stride) in enumerate([(16, 1), (32, 2), (64, 2)], start=1):
        c, hw = _basic_blocks(b, f"layer{stage}", c, width, hw, 3, stride)
    b.linear("fc", c, num_classes)


NETWORKS = {"resnet18": (_resnet18, 224, 1000), "resnet20": (_resnet20, 32, 10)}


def network_shapes(
    name: str,
    image_size: int | None = None,
    num_classes: int | None = None,
    hw: HardwareConfig | None = None,
    keep_first_last: bool = True,
    decision: Decision = "output",
    group: tuple[int, int] | Literal["fit"] | None = None,
    block_size: int | None = None,
    bits: int = 8,
    hi_bits: int | None = None,
) -> list[LayerShape]:
    """Conv/linear shapes of a named network (``resnet18``: ImageNet; ``resnet20``: CIFAR).

    ResNet-18 follows the standard ImageNet table (7x7/2 stem, 3x3/2 max-pool, four stages of
    two basic blocks, 1x1/2 projection shortcuts, 512->classes classifier); ResNet-20 the CIFAR
    one with 1x1 projection shortcuts. Group and block default to the hardware's aligned
    units; ``group="fit"`` picks :func:`fitted_group` per layer (on the map the decision grid
    covers, against the array edge that holds pixels). The first and last layers are static
    (``bits`` wide) when ``keep_first_last``.
    """
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known: {sorted(NETWORKS)}")
    fn, default_size, default_classes = NETWORKS[name]
    hw = hw or HardwareConfig()
    g, bs = hardware_units(hw, group if group and group != "fit" else None, block_size or None)
    common = dict(
        group=g,
        block_size=bs,
        decision=decision,
        dynamic=True,
        bits=bits,
        hi_bits=hi_bits if hi_bits is not None else min(hw.act_chunk_bits, bits),
    )
    b = _Builder(common)
    fn(b, image_size or default_size, num_classes or default_classes)
    layers = b.layers
    if group == "fit":
        edge = hw.flow.group_edge(hw.rows, hw.cols)
        layers = [replace(s, group=fitted_group(s.decision_map()[1], edge)) for s in layers]
    if keep_first_last and layers:
        layers[0] = replace(layers[0], dynamic=False)
        layers[-1] = replace(layers[-1], dynamic=False)
    return layers
