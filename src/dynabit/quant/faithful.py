"""Graph analysis that makes a frozen model integer-faithful (used by ``convert`` and lowering).

The model is traced with ``torch.fx`` (at convert/lowering time only; ``prepare`` stays module
swapping). Every traced tensor gets a :class:`Value`: the float model input, or integers times
a known scale. Then :func:`make_integer_faithful` tells every quantized layer how to obtain its
input codes from its producer's integers, and swaps the modules that are not exact on such
tensors for the integer ones of :mod:`dynabit.quant.integer_ops`.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from dynabit.quant.integer_ops import (
    RESIDUAL_FRAC_BITS,
    IntAdd,
    IntAvgPool,
    IntClamp,
    IntModule,
    UnsupportedLayerError,
    pool_problem,
)
from dynabit.quant.layers import QuantLayerMixin


def _add_types() -> tuple[type, ...]:
    from dynabit.models.layers import Add

    return (Add, IntAdd)


class IntTracer(fx.Tracer):
    """fx tracer that keeps quantized layers, residual adds and integer modules opaque."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (QuantLayerMixin, IntModule, *_add_types())):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> fx.GraphModule:
    """Symbolically trace ``model`` with :class:`IntTracer` (modules are shared, not copied)."""
    try:
        graph = IntTracer().trace(model)
    except Exception as e:  # noqa: BLE001 - any tracing failure is reported the same way
        raise UnsupportedLayerError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {e}); "
            "the integer path needs a forward without data-dependent control flow"
        ) from None
    return fx.GraphModule(model, graph)


@dataclass
class Value:
    """What a traced tensor holds: the float model input, or integers times ``scale``."""

    kind: str  # "float" | "int"
    scale: torch.Tensor | None = None  # float64, per channel (C,) or one value (1,)


# Modules and functions exact on any integer-times-scale tensor, which also commute with the
# input quantization: the value passes through unchanged.
PASS_MODULES = (nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Identity, nn.Dropout)
PASS_FUNCTIONS = (torch.flatten, torch.relu, F.relu)
PASS_METHODS = ("flatten", "relu", "contiguous")
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
# Modules whose integer form depends on where they are used (one module per call).
_PER_CALL = (nn.Hardtanh, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_SUPPORTED = (
    "supported: conv, linear (BN folded into its conv), ReLU, ReLU6/Hardtanh, the residual "
    "dynabit.models.layers.Add, max and average pooling, flatten, identity, dropout"
)


@dataclass
class Analysis:
    """The integer interpretation of every node of a traced model."""

    gm: fx.GraphModule
    values: dict[fx.Node, Value] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    output_node: fx.Node | None = None  # the node the model returns
    output_producer: fx.Node | None = None  # the module node that computed its integers

    def module(self, node: fx.Node) -> nn.Module:
        """The module a ``call_module`` node calls."""
        return self.gm.get_submodule(str(node.target))


def _describe(node: fx.Node) -> str:
    if node.op == "call_module":
        return f"layer {node.target!r}"
    name = getattr(node.target, "__name__", str(node.target))
    return f"operation {name!r} (graph node {node.name!r})"


def pass_module_problem(m: nn.Module) -> str | None:
    """Why a pass-through module is used in an unsupported way, or None."""
    if isinstance(m, nn.MaxPool2d) and (m.return_indices or m.ceil_mode):
        return "MaxPool2d with return_indices or ceil_mode is not supported"
    if isinstance(m, nn.Flatten) and (m.start_dim != 1 or m.end_dim != -1):
        return "only Flatten(start_dim=1, end_dim=-1) is supported"
    return None


def first_quant_consumer(node: fx.Node, gm: fx.GraphModule) -> QuantLayerMixin | None:
    """The first quantized layer (in graph order) fed by ``node``, directly or through other
    operations."""
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    seen, frontier, found = {node}, [node], []
    while frontier:
        nxt = []
        for n in frontier:
            for u in n.users:
                if u in seen:
                    continue
                seen.add(u)
                if u.op == "call_module" and isinstance(
                    gm.get_submodule(str(u.target)), QuantLayerMixin
                ):
                    found.append(u)
                else:
                    nxt.append(u)
        frontier = nxt
    if not found:
        return None
    first = min(found, key=order.__getitem__)
    return gm.get_submodule(str(first.target))  # type: ignore[return-value]


def analyze(gm: fx.GraphModule) -> Analysis:
    """Assign a :class:`Value` to every node; unsupported operations go to ``issues``."""
    an = Analysis(gm)
    add_types = _add_types()
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    n_inputs = sum(n.op == "placeholder" for n in gm.graph.nodes)
    if n_inputs != 1:
        an.issues.append(f"the model must take exactly one input tensor, it takes {n_inputs}")

    def arg(node: fx.Node, i: int = 0) -> Value | None:
        a = node.args[i] if len(node.args) > i else None
        if not isinstance(a, fx.Node):
            an.issues.append(f"{_describe(node)}: argument {i} is not a tensor of the graph")
            return None
        return an.values.get(a)

    def needs_int(node: fx.Node, v: Value | None, what: str) -> Value | None:
        if v is not None and v.kind != "int":
            an.issues.append(
                f"{_describe(node)} ({what}) acts on the unquantized model input; only ReLU, "
                "max pooling and flatten may come before the first quantized layer"
            )
            return None
        return v

    for node in gm.graph.nodes:
        val: Value | None = None
        if node.op == "placeholder":
            val = Value("float")
        elif node.op == "call_module":
            m = an.module(node)
            target = str(node.target)
            per_call = isinstance(m, (QuantLayerMixin, IntModule, *add_types, *_PER_CALL))
            if per_call and calls[target] > 1:
                an.issues.append(
                    f"layer {target!r} is called {calls[target]} times; the integer path needs "
                    "one module per call (its scales depend on where it is used)"
                )
            if isinstance(m, QuantLayerMixin):
                if not bool(m.frozen):
                    an.issues.append(f"layer {target!r} is not frozen: call convert() first")
                elif arg(node) is not None:
                    val = Value("int", m.acc_scale.double().reshape(-1))
            elif isinstance(m, add_types):
                va = needs_int(node, arg(node, 0), "residual add")
                vb = needs_int(node, arg(node, 1), "residual add")
                if va is not None and vb is not None:
                    if isinstance(m, IntAdd):
                        val = Value("int", m.scale_out)
                    else:
                        consumer = first_quant_consumer(node, gm)
                        if consumer is None:
                            an.issues.append(
                                f"layer {target!r} (Add) feeds no quantized layer, so its "
                                "output has no scale; end the model with a conv or linear"
                            )
                        else:
                            s = consumer.act_quant.scale().detach().double().reshape(1)
                            val = Value("int", s * 2.0**-RESIDUAL_FRAC_BITS)
            elif isinstance(m, PASS_MODULES):
                problem = pass_module_problem(m)
                if problem:
                    an.issues.append(f"layer {target!r}: {problem}")
                val = arg(node)
            elif isinstance(m, IntAvgPool | nn.AvgPool2d | nn.AdaptiveAvgPool2d):
                problem = None if isinstance(m, IntAvgPool) else pool_problem(m)
                if problem:
                    an.issues.append(f"layer {target!r}: {problem}")
                val = needs_int(node, arg(node), type(m).__name__)
            elif isinstance(m, IntClamp | nn.Hardtanh):
                val = needs_int(node, arg(node), type(m).__name__)
            else:
                hint = ""
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    hint = " (a BatchNorm is folded only when registered right after its conv)"
                an.issues.append(
                    f"unsupported layer {target!r} ({type(m).__name__}){hint}; {_SUPPORTED}"
                )
        elif node.op == "call_function":
            if node.target in PASS_FUNCTIONS:
                if node.target is torch.flatten and tuple(node.args[1:2]) != (1,):
                    an.issues.append(f"{_describe(node)}: only torch.flatten(x, 1) is supported")
                val = arg(node)
            elif node.target in _ADD_FUNCTIONS:
                an.issues.append(
                    f"{_describe(node)}: a functional add cannot be made integer-faithful; "
                    "use the dynabit.models.layers.Add module"
                )
            else:
                an.issues.append(f"unsupported {_describe(node)}; {_SUPPORTED}")
        elif node.op == "call_method":
            if node.target in PASS_METHODS:
                if node.target == "flatten" and tuple(node.args[1:2]) != (1,):
                    an.issues.append(f"{_describe(node)}: only x.flatten(1) is supported")
                val = arg(node)
            else:
                an.issues.append(f"unsupported method {node.target!r} (graph node {node.name!r})")
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node):
                an.issues.append("the model must return a single tensor")
            else:
                an.output_node = out
                an.output_producer = _producer(out, an)
                v = an.values.get(out)
                if v is not None and v.kind != "int":
                    an.issues.append("the model output does not come from a quantized layer")
        else:
            an.issues.append(f"unsupported graph node {node.op} {node.target!r}")
        if val is not None:
            an.values[node] = val
    return an


def _producer(node: fx.Node, an: Analysis) -> fx.Node | None:
    """Walk back through pass-through nodes to the module node that computed the integers."""
    while True:
        if node.op == "call_module":
            if isinstance(an.module(node), PASS_MODULES):
                node = node.args[0]  # type: ignore[assignment]
                continue
            return node
        if node.op in ("call_function", "call_method") and isinstance(node.args[0], fx.Node):
            node = node.args[0]
            continue
        return None


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def make_integer_faithful(model: nn.Module, strict: bool = False) -> bool:
    """Wire a frozen model so every tensor between its layers is an exact integer times a scale.

    Sets each quantized layer's input requantization (or its float input quantization), swaps
    residual adds, average pools and ReLU6/Hardtanh for :class:`IntAdd`, :class:`IntAvgPool`
    and :class:`IntClamp`, and makes the module that produces the output return the model's
    float dtype. Returns True when wired. With an unsupported operation it raises
    :class:`UnsupportedLayerError` when ``strict``, else warns and leaves the model unwired
    (each frozen layer then quantizes its float input on its own).
    """
    try:
        gm = trace(model)
        an = analyze(gm)
        if an.issues:
            raise UnsupportedLayerError("; ".join(an.issues))
    except UnsupportedLayerError as e:
        if strict:
            raise
        warnings.warn(f"the frozen model is not integer-faithful: {e}", stacklevel=2)
        return False
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        m = an.module(node)
        target = str(node.target)
        if isinstance(m, QuantLayerMixin):
            v = an.values[node.args[0]]
            m.wire_input(None if v.kind == "float" else v.scale)
        elif isinstance(m, _add_types()) and not isinstance(m, IntAdd):
            va, vb = an.values[node.args[0]], an.values[node.args[1]]
            _set_module(model, target, IntAdd(va.scale, vb.scale, an.values[node].scale))
        elif isinstance(m, nn.AvgPool2d | nn.AdaptiveAvgPool2d):
            _set_module(model, target, IntAvgPool(m, an.values[node].scale))
        elif isinstance(m, nn.Hardtanh):  # ReLU6 is a Hardtanh
            s = an.values[node].scale
            lo = torch.round(float(m.min_val) / s).to(torch.int64)
            hi = torch.round(float(m.max_val) / s).to(torch.int64)
            _set_module(model, target, IntClamp(s, lo, hi))
    producer = an.output_producer
    if producer is not None:
        pm = model.get_submodule(str(producer.target))
        if isinstance(pm, QuantLayerMixin):
            pm.int_out_dtype = dtype
        elif isinstance(pm, IntModule):
            pm.out_dtype = dtype
    return True


@contextmanager
def record_integers(model: nn.Module) -> Iterator[dict[str, dict[str, list[torch.Tensor]]]]:
    """Collect every frozen quantized layer's input codes and accumulators while active.

    Yields ``name -> {"codes": [...], "acc": [...]}`` (int64 tensors, one per forward). The
    accumulator is the layer's integer output before any requantization (for the classifier:
    the logits' codes).
    """
    layers = [m for m in model.modules() if isinstance(m, QuantLayerMixin)]
    out: dict[str, dict[str, list[torch.Tensor]]] = {}
    for m in layers:
        m.record_integers(out.setdefault(m.layer_name, {"codes": [], "acc": []}))
    try:
        yield out
    finally:
        for m in layers:
            m.record_integers(None)
