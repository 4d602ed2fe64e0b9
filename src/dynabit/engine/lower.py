"""Lowering: a converted dynabit model -> an :class:`~dynabit.engine.program.IntegerProgram`.

The converted model is traced with ``torch.fx`` and read node by node. Every integer the
program needs (weights, biases, requantization multipliers and shifts, score multipliers,
thresholds, add multipliers) is taken from the frozen modules, so the program computes exactly
what the frozen model computes; the engine's execution code is separate from the model's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from dynabit.config.hardware import HardwareConfig
from dynabit.config.layer import LayerSpec, hardware_units
from dynabit.engine.program import IntegerProgram, Op, TensorInfo, spec_attrs
from dynabit.quant.budget import reset_stats
from dynabit.quant.faithful import PASS_FUNCTIONS, PASS_METHODS, analyze, trace
from dynabit.quant.integer_ops import (
    IntAdd,
    IntAvgPool,
    IntClamp,
    UnsupportedLayerError,
    pool_bins,
)
from dynabit.quant.layers import QuantConv2d, QuantLayerMixin, QuantLinear

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


def _expand(p: torch.Tensor, channels: int) -> torch.Tensor:
    """A per-channel vector (or one value) expanded to ``channels`` entries along dim 1."""
    p = p.detach().reshape(-1)
    if p.numel() == channels:
        return p.clone()
    if p.numel() == 1:
        return p.expand(channels).clone()
    if channels % p.numel():
        raise UnsupportedLayerError(f"{p.numel()} per-channel values do not fit {channels}")
    return p.repeat_interleave(channels // p.numel())


def _weight_dtype(bits: int) -> torch.dtype:
    return torch.int8 if bits <= 8 else torch.int16 if bits <= 16 else torch.int32


def _map(shape: tuple[int, ...]) -> tuple[int, tuple[int, int]]:
    """``(channels, (H, W))`` of a program tensor (a flat one is a ``1 x 1`` map)."""
    return (int(shape[0]), (int(shape[1]), int(shape[2])) if len(shape) == 3 else (1, 1))


def _layer_spec(
    m: QuantLayerMixin, kind: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> LayerSpec:
    """The :class:`LayerSpec` of a frozen layer on its traced input and output shapes."""
    cfg = m.qcfg
    (cin, in_hw), (cout, out_hw) = _map(in_shape), _map(out_shape)
    bits = int(m.act_quant.bits)
    group, block = cfg.group, cfg.block_size
    if group is None or block is None:  # a layer built outside prepare(): the array defaults
        group, block = hardware_units(HardwareConfig(), group, block, aligned=False)
    geometry: dict[str, Any] = {}
    if kind == "conv2d":
        geometry = {
            "kernel": tuple(int(k) for k in m.kernel_size),
            "stride": tuple(int(v) for v in m.stride),
            "padding": tuple(int(v) for v in m.padding),
            "dilation": tuple(int(v) for v in m.dilation),
            "groups": int(m.groups),
        }
    spec = LayerSpec(
        name=m.layer_name,
        kind="conv" if kind == "conv2d" else "linear",
        in_channels=cin,
        out_channels=cout,
        in_hw=in_hw,
        out_hw=out_hw,
        group=tuple(group),
        block_size=int(block),
        decision=cfg.decision,
        dynamic=bool(m.dynamic),
        bits=bits,
        hi_bits=int(cfg.hi_bits) if m.dynamic else min(int(cfg.hi_bits), bits),
        score=cfg.score,
        **geometry,
    )
    if m.dynamic and cfg.enforce_bounds:
        spec = replace(spec, k_bounds=spec.grid().k_bounds(*m.bounds()))
    return spec


class _Lowering:
    def __init__(self, model: nn.Module, input_shape: Sequence[int]) -> None:
        self.model = model
        self.gm = trace(model)
        an = analyze(self.gm)
        if an.issues:
            raise UnsupportedLayerError("; ".join(an.issues))
        self.an = an
        self.input_shape = tuple(int(s) for s in input_shape)
        example = torch.zeros(1, *self.input_shape)
        with torch.no_grad():
            ShapeProp(self.gm).propagate(example)
        reset_stats(model)
        self.ops: list[Op] = []
        self.tensors: dict[str, TensorInfo] = {}
        self.name_of: dict[fx.Node, str] = {}  # node -> program tensor of its integers
        self.quantized: dict[tuple[Any, ...], str] = {}  # float node + quantizer -> codes

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def shape(node: fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        if meta is None:
            raise UnsupportedLayerError(f"no shape for graph node {node.name!r}")
        return tuple(int(s) for s in meta.shape[1:])

    def new_tensor(self, name: str, shape: tuple[int, ...], kind: str, scale: torch.Tensor) -> str:
        base, i = name, 1
        while name in self.tensors:
            i += 1
            name = f"{base}_{i}"
        self.tensors[name] = TensorInfo(shape, kind, scale.detach().double().reshape(-1).clone())
        return name

    def emit(
        self,
        kind: str,
        name: str,
        inputs: list[str],
        output: str,
        attrs: dict[str, Any] | None = None,
        params: dict[str, torch.Tensor] | None = None,
    ) -> str:
        self.ops.append(Op(kind, name, inputs, output, attrs or {}, params or {}))
        return output

    def channels(self, tensor: str) -> int:
        shape = self.tensors[tensor].shape
        return shape[0]

    # ------------------------------------------------------------------ float prefix
    def codes_of_float(self, node: fx.Node, layer: QuantLayerMixin) -> str:
        """Codes of a float node for ``layer``'s quantizer: quantize the model input, then
        replay the (order-preserving) operations between it and ``node`` on the codes."""
        s = float(layer.act_quant.scale().detach().float())
        qn, qp = layer.act_quant.qrange
        key = (node, s, qn, qp)
        if key in self.quantized:
            return self.quantized[key]
        if node.op == "placeholder":
            out = self.new_tensor(
                f"{node.name}.q", self.shape(node), "codes", torch.tensor([s], dtype=torch.float64)
            )
            self.emit(
                "quantize",
                node.name,
                [self.name_of[node]],
                out,
                {"scale": s, "qmin": qn, "qmax": qp},
            )
        else:
            src = self.codes_of_float(node.args[0], layer)
            out = self.pass_op(node, src)
        self.quantized[key] = out
        return out

    # ------------------------------------------------------------------ pass-through ops
    def pass_op(self, node: fx.Node, src: str) -> str:
        """Emit the integer op of a value-keeping node (ReLU, max pool, flatten, identity)."""
        info = self.tensors[src]
        m = self.an.module(node) if node.op == "call_module" else None
        target = node.target
        out_shape = self.shape(node)
        if isinstance(m, nn.ReLU) or target in (torch.relu, torch.nn.functional.relu, "relu"):
            out = self.new_tensor(node.name, out_shape, info.kind, info.scale)
            params = {
                "lo": torch.zeros(1, dtype=torch.int64),
                "hi": torch.full((1,), INT64_MAX, dtype=torch.int64),
            }
            return self.emit("clamp", str(node.target), [src], out, {}, params)
        if isinstance(m, nn.MaxPool2d):
            out = self.new_tensor(node.name, out_shape, info.kind, info.scale)

            def pair(v: int | tuple[int, ...]) -> list[int]:
                return [int(v), int(v)] if isinstance(v, int) else [int(a) for a in v]

            attrs = {
                "kernel": pair(m.kernel_size),
                "stride": pair(m.stride if m.stride is not None else m.kernel_size),
                "padding": pair(m.padding),
                "dilation": pair(m.dilation),
            }
            return self.emit("maxpool2d", str(node.target), [src], out, attrs)
        is_flatten = isinstance(m, nn.Flatten) or target in (torch.flatten, "flatten")
        if is_flatten and len(info.shape) > 1:
            out = self.new_tensor(node.name, out_shape, info.kind, info.scale)
            return self.emit("flatten", str(node.target), [src], out)
        return src  # identity, dropout, contiguous, flatten of a flat tensor

    # ------------------------------------------------------------------ layers
    def layer(self, node: fx.Node, m: QuantLayerMixin) -> str:
        src_node = node.args[0]
        src_val = self.an.values[src_node]
        qn, qp = m.act_quant.qrange
        in_shape = self.shape(src_node)
        if src_val.kind == "float":
            codes = self.codes_of_float(src_node, m)
        else:
            src = self.name_of[src_node]
            c = self.channels(src)
            s = m.act_quant.scale().detach().double().reshape(1)
            codes = self.new_tensor(f"{node.target}.in", in_shape, "codes", s)
            params = {"mult": _expand(m.in_mult, c), "shift": _expand(m.in_shift, c)}
            self.emit("requant", str(node.target), [src], codes, {"qmin": qn, "qmax": qp}, params)
        out_shape = self.shape(node)
        out = self.new_tensor(str(node.target), out_shape, "acc", m.acc_scale)
        kind = "conv2d" if isinstance(m, QuantConv2d) else "linear"
        if not isinstance(m, QuantConv2d | QuantLinear):
            raise UnsupportedLayerError(f"unsupported quantized layer type {type(m).__name__}")
        cfg = m.qcfg
        spec = _layer_spec(m, kind, in_shape, out_shape)
        attrs: dict[str, Any] = {
            **spec_attrs(spec),
            "signed": bool(m.act_quant.signed),
            "weight_bits": int(cfg.weight_bits),
            # counted in B_avg: dynamic layers, and static ones of the uniform baseline
            "in_budget": bool(m.dynamic or getattr(m, "in_budget", False)),
        }
        if m.dynamic:
            attrs["midpoint"] = bool(cfg.midpoint)
        params = {
            "weight": m.w_int.to(_weight_dtype(cfg.weight_bits)).clone(),
            "bias": m.bias_int.clone(),
        }
        if m.dynamic:
            params["threshold"] = m.threshold_int.clone()
            if cfg.decision == "output":
                params["score_mult"] = m.score_mult.clone()
        return self.emit(kind, m.layer_name, [codes], out, attrs, params)

    def add(self, node: fx.Node, m: IntAdd) -> str:
        a, b = self.name_of[node.args[0]], self.name_of[node.args[1]]
        c = self.channels(a)
        out = self.new_tensor(str(node.target), self.shape(node), "int", m.scale_out)
        params = {"mult_a": _expand(m.mult_a, c), "mult_b": _expand(m.mult_b, c)}
        return self.emit("add", str(node.target), [a, b], out, {"shift": int(m.shift)}, params)

    def avgpool(self, node: fx.Node, m: IntAvgPool) -> str:
        src = self.name_of[node.args[0]]
        info = self.tensors[src]
        pad, rows, cols = pool_bins(m.pool, info.shape[1:3])
        out = self.new_tensor(str(node.target), self.shape(node), info.kind, info.scale)
        attrs = {
            "padding": list(pad),
            "row_bins": [list(b) for b in rows],
            "col_bins": [list(b) for b in cols],
        }
        return self.emit("avgpool2d", str(node.target), [src], out, attrs)

    def clamp(self, node: fx.Node, m: IntClamp) -> str:
        src = self.name_of[node.args[0]]
        info = self.tensors[src]
        out = self.new_tensor(str(node.target), self.shape(node), info.kind, info.scale)
        c = self.channels(src)
        params = {"lo": _expand(m.lo, c), "hi": _expand(m.hi, c)}
        return self.emit("clamp", str(node.target), [src], out, {}, params)

    # ------------------------------------------------------------------ main
    def run(self) -> IntegerProgram:
        graph_input = output = None
        for node in self.gm.graph.nodes:
            val = self.an.values.get(node)
            if node.op == "placeholder":
                graph_input = self.new_tensor(
                    "input", self.input_shape, "float", torch.ones(1, dtype=torch.float64)
                )
                self.name_of[node] = graph_input
                continue
            if node.op == "output":
                output = self.name_of[node.args[0]]
                continue
            if val is not None and val.kind == "float":
                continue  # quantized on demand by the layers it feeds
            m = self.an.module(node) if node.op == "call_module" else None
            if isinstance(m, QuantLayerMixin):
                self.name_of[node] = self.layer(node, m)
            elif isinstance(m, IntAdd):
                self.name_of[node] = self.add(node, m)
            elif isinstance(m, IntAvgPool):
                self.name_of[node] = self.avgpool(node, m)
            elif isinstance(m, IntClamp):
                self.name_of[node] = self.clamp(node, m)
            elif m is not None or node.target in PASS_FUNCTIONS or node.target in PASS_METHODS:
                if not isinstance(node.args[0], fx.Node):
                    raise UnsupportedLayerError(f"unsupported graph node {node.name!r}")
                self.name_of[node] = self.pass_op(node, self.name_of[node.args[0]])
            else:
                raise UnsupportedLayerError(f"unsupported graph node {node.name!r}")
        assert graph_input is not None and output is not None
        cfg = getattr(self.model, "dynabit_config", None)
        meta = {
            "model": type(self.model).__name__,
            "quant_config": cfg.model_dump(mode="json") if cfg is not None else None,
        }
        return IntegerProgram(graph_input, output, self.ops, self.tensors, meta)


def lower(model: nn.Module, input_shape: Sequence[int]) -> IntegerProgram:
    """Lower a converted model (:func:`dynabit.quant.convert`) for inputs of ``input_shape``.

    ``input_shape`` is one sample's ``(C, H, W)``. Raises
    :class:`~dynabit.quant.integer_ops.UnsupportedLayerError` naming the first unsupported
    layer, or when the model was not converted.
    """
    if not any(isinstance(m, QuantLayerMixin) for m in model.modules()):
        raise UnsupportedLayerError("the model has no quantized layers: prepare() and convert()")
    not_wired = [
        m.layer_name for m in model.modules() if isinstance(m, QuantLayerMixin) and not m.int_wired
    ]
    if not_wired:
        raise UnsupportedLayerError(
            f"layers {not_wired} are not converted integer-faithfully: call "
            "dynabit.quant.convert(model, strict=True) to see why"
        )
    was_training = model.training
    model.eval()
    try:
        return _Lowering(model, input_shape).run()
    finally:
        model.train(was_training)
