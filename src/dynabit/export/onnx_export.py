"""ONNX export of an integer program, checked with onnxruntime.

The graph is built from the :class:`~dynabit.engine.IntegerProgram` (so it holds the very
integers the engine runs) with standard ONNX operators only:

- the model input is quantized with ``QuantizeLinear`` (float32 ``x / s``, round half to even:
  the model's own input quantization) and the logits leave through ``DequantizeLinear``
  (int32 accumulator x per-class scale);
- every conv/linear pass is a ``ConvInteger`` / ``MatMulInteger`` on 8-bit codes (int32 exact
  accumulators): static layers one pass, dynamic layers the high pass on ``q_hi << B_lo`` and
  the low pass on ``q_lo``. Both operands are uint8 with zero points: weights (and signed
  activation codes) are stored offset by 128 with zero point 128. onnxruntime computes a
  uint8 x uint8 product exactly on every CPU, whereas its uint8 x int8 kernel for x86 CPUs
  without VNNI (AVX2's ``vpmaddubsw``) saturates the int16 sum of two products, so 8-bit codes
  times 8-bit weights would come out wrong there;
- group scores (``Mul`` by the score multipliers, ``Pad`` + ``Reshape`` + ``ReduceMax`` /
  ``ReduceSum``), the threshold test (``Greater``), the exact top-k bounds (pairwise ranks) and
  the mask expansion (``Expand``/``Reshape``/``Slice``) are int64/bool operators; the low pass
  is added where the mask is set;
- requantization is int64 ``Mul``/``Add`` and a floor division by ``2**shift`` (``Mod`` with
  Python semantics, ``Sub``, ``Div``), then ``Clip`` — the engine's fixed-point arithmetic.

An ONNX graph cannot skip work: it computes the low pass everywhere and masks it; the engine
(:mod:`dynabit.engine`) is the one that skips. The export needs activation codes and weights
of at most 8 bits (``ConvInteger``'s operand types).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynabit.config.scores import score_for
from dynabit.engine.program import IntegerProgram, Op

OPSET = 21
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


class OnnxExportError(ValueError):
    """The program has something the ONNX export does not support."""


def _require_onnx():  # noqa: ANN202 - returns the onnx module
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise OnnxExportError(
            "ONNX export needs the 'onnx' package: pip install 'dynabit[onnx]'"
        ) from None
    return onnx


def _code_dtype(lo: int, hi: int) -> tuple[int, Any]:
    """The 8-bit ONNX type holding integers in ``[lo, hi]``: (TensorProto enum, numpy dtype)."""
    onnx = _require_onnx()
    if lo >= 0 and hi <= 255:
        return onnx.TensorProto.UINT8, np.uint8
    if lo >= -128 and hi <= 127:
        return onnx.TensorProto.INT8, np.int8
    raise OnnxExportError(f"codes in [{lo}, {hi}] do not fit 8 bits: ONNX export needs B <= 8")


class _Builder:
    def __init__(self, program: IntegerProgram) -> None:
        self.onnx = _require_onnx()
        self.p = program
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.names: set[str] = set()
        self.extra_outputs: list[tuple[str, str, list[Any]]] = []

    # ------------------------------------------------------------------ helpers
    def fresh(self, base: str) -> str:
        base = base.replace("/", "_")
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def const(self, value: Any, base: str, dtype: Any = np.int64) -> str:
        name = self.fresh(base)
        arr = np.asarray(value, dtype=dtype)
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op_type: str, inputs: list[str], base: str, **attrs: Any) -> str:
        out = self.fresh(base)
        self.nodes.append(self.onnx.helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def channel_const(self, v: torch.Tensor, rank: int, base: str) -> str:
        """A per-channel vector (or one value) shaped to broadcast along dim 1."""
        v = v.detach().cpu().to(torch.int64).numpy().reshape(-1)
        shape = (1,) if v.size == 1 else (1, v.size) + (1,) * (rank - 2)
        return self.const(v.reshape(shape), base)

    def floor_div(self, x: str, d: str, base: str) -> str:
        """Exact ``floor(x / d)`` for int64 ``x`` and positive int64 ``d``."""
        r = self.node("Mod", [x, d], base + "_mod", fmod=0)  # in [0, d): Python semantics
        return self.node("Div", [self.node("Sub", [x, r], base + "_sub"), d], base + "_div")

    def rshift_round(self, x: str, shift: torch.Tensor | int, rank: int, base: str) -> str:
        """``floor(x / 2**shift + 1/2)`` (per-channel shifts allowed)."""
        sh = torch.as_tensor(shift, dtype=torch.int64).reshape(-1)
        half = self.channel_const(torch.ones_like(sh) << (sh - 1), rank, base + "_half")
        div = self.channel_const(torch.ones_like(sh) << sh, rank, base + "_pow")
        return self.floor_div(self.node("Add", [x, half], base + "_rnd"), div, base)

    def clip(self, x: str, lo: int, hi: int, base: str) -> str:
        return self.node(
            "Clip", [x, self.const(lo, base + "_lo"), self.const(hi, base + "_hi")], base
        )

    def rank(self, name: str) -> int:
        return len(self.p.tensors[name].shape) + 1

    # ------------------------------------------------------------------ ops
    def quantize(self, op: Op, x: str) -> str:
        a = op.attrs
        enum, dt = _code_dtype(a["qmin"], a["qmax"])
        s = self.const(np.float32(a["scale"]), op.output + "_scale", np.float32)
        zp = self.const(0, op.output + "_zp", dt)
        q = self.node("QuantizeLinear", [x, s, zp], op.output + "_q8")
        q = self.node("Cast", [q], op.output + "_i64", to=self.onnx.TensorProto.INT64)
        lo, hi = (0, 255) if dt is np.uint8 else (-128, 127)
        if (a["qmin"], a["qmax"]) != (lo, hi):
            q = self.clip(q, a["qmin"], a["qmax"], op.output + "_clip")
        return q

    def requant(self, op: Op, x: str) -> str:
        r = self.rank(op.inputs[0])
        m = self.node(
            "Mul",
            [x, self.channel_const(op.params["mult"], r, op.output + "_m")],
            op.output + "_mul",
        )
        y = self.rshift_round(m, op.params["shift"], r, op.output)
        return self.clip(y, op.attrs["qmin"], op.attrs["qmax"], op.output + "_clip")

    def clamp(self, op: Op, x: str) -> str:
        r = self.rank(op.inputs[0])
        lo, hi = op.params["lo"], op.params["hi"]
        y = self.node("Max", [x, self.channel_const(lo, r, op.output + "_lo")], op.output + "_max")
        if int(hi.min()) < (1 << 62):  # a ReLU has no upper bound
            y = self.node("Min", [y, self.channel_const(hi, r, op.output + "_hi")], op.output)
        return y

    def maxpool(self, op: Op, x: str) -> str:
        a = op.attrs
        f = self.node("Cast", [x], op.output + "_f64", to=self.onnx.TensorProto.DOUBLE)
        ph, pw = a["padding"]
        y = self.node(
            "MaxPool",
            [f],
            op.output + "_pool",
            kernel_shape=a["kernel"],
            strides=a["stride"],
            pads=[ph, pw, ph, pw],
            dilations=a["dilation"],
        )  # exact: a selection of integers below 2**53
        return self.node("Cast", [y], op.output, to=self.onnx.TensorProto.INT64)

    def avgpool(self, op: Op, x: str) -> str:
        a = op.attrs
        ph, pw = a["padding"]
        if ph or pw:
            pads = self.const([0, 0, ph, pw, 0, 0, ph, pw], op.output + "_pads")
            x = self.node("Pad", [x, pads], op.output + "_pad")
        # Integral image (exact int64), then each bin's sum from its four corners.
        ax2, ax3 = self.const(2, op.output + "_ax2"), self.const(3, op.output + "_ax3")
        c = self.node(
            "CumSum", [self.node("CumSum", [x, ax2], op.output + "_cs2"), ax3], op.output + "_cs3"
        )
        c = self.node(
            "Pad",
            [c, self.const([0, 0, 1, 1, 0, 0, 0, 0], op.output + "_ip")],
            op.output + "_integral",
        )
        rows, cols = np.asarray(a["row_bins"]), np.asarray(a["col_bins"])

        def corner(r: np.ndarray, cc: np.ndarray, tag: str) -> str:
            g = self.node(
                "Gather", [c, self.const(r, op.output + "_r" + tag)], op.output + "_g" + tag, axis=2
            )
            return self.node(
                "Gather",
                [g, self.const(cc, op.output + "_c" + tag)],
                op.output + "_gg" + tag,
                axis=3,
            )

        s = self.node(
            "Sub",
            [corner(rows[:, 1], cols[:, 1], "11"), corner(rows[:, 0], cols[:, 1], "01")],
            op.output + "_s1",
        )
        s = self.node("Sub", [s, corner(rows[:, 1], cols[:, 0], "10")], op.output + "_s2")
        s = self.node("Add", [s, corner(rows[:, 0], cols[:, 0], "00")], op.output + "_sum")
        counts = (rows[:, 1] - rows[:, 0])[:, None] * (cols[:, 1] - cols[:, 0])[None, :]
        two = self.const(2, op.output + "_two")
        num = self.node(
            "Add",
            [self.node("Mul", [s, two], op.output + "_2s"), self.const(counts, op.output + "_cnt")],
            op.output + "_num",
        )
        return self.floor_div(num, self.const(2 * counts, op.output + "_den"), op.output)

    def add(self, op: Op, a_in: str, b_in: str) -> str:
        r = self.rank(op.inputs[0])
        ma = self.node(
            "Mul",
            [a_in, self.channel_const(op.params["mult_a"], r, op.output + "_ma")],
            op.output + "_a",
        )
        mb = self.node(
            "Mul",
            [b_in, self.channel_const(op.params["mult_b"], r, op.output + "_mb")],
            op.output + "_b",
        )
        s = self.node("Add", [ma, mb], op.output + "_ab")
        y = self.rshift_round(s, int(op.attrs["shift"]), r, op.output)
        return self.clip(y, INT32_MIN, INT32_MAX, op.output + "_clip")

    def flatten(self, op: Op, x: str) -> str:
        return self.node("Flatten", [x], op.output, axis=1)

    # ------------------------------------------------------------------ layers
    def product(self, op: Op, x8: tuple[str, str], w: tuple[str, str], base: str) -> str:
        """One integer pass: ConvInteger / MatMulInteger of (uint8 operand, zero point) pairs
        -> int64."""
        a = op.attrs
        inputs = [x8[0], w[0], x8[1], w[1]]
        if op.kind == "conv2d":
            ph, pw = a["padding"]
            y = self.node(
                "ConvInteger",
                inputs,
                base + "_conv",
                strides=a["stride"],
                pads=[ph, pw, ph, pw],
                dilations=a["dilation"],
                group=a["groups"],
            )
        else:
            y = self.node("MatMulInteger", inputs, base + "_mm")
        return self.node("Cast", [y], base, to=self.onnx.TensorProto.INT64)

    def to8(self, x: str, lo: int, hi: int, base: str) -> tuple[str, str]:
        """int64 codes in ``[lo, hi]`` as a uint8 operand and its zero point (signed codes
        offset by 128; see the module docstring)."""
        _code_dtype(lo, hi)  # refuses codes wider than 8 bits
        if lo < 0:
            x = self.node("Add", [x, self.const(128, base + "_off")], base + "_u")
        zp = self.const(0 if lo >= 0 else 128, base + "_zp", np.uint8)
        return self.node("Cast", [x], base, to=self.onnx.TensorProto.UINT8), zp

    def layer(self, op: Op, x: str) -> str:
        a = op.attrs
        bits, signed = int(a["bits"]), bool(a["signed"])
        if bits > 8 or int(a["weight_bits"]) > 8:
            raise OnnxExportError(
                f"{op.name}: ONNX export needs activation codes and weights of <= 8 bits "
                f"(B={bits}, weights {a['weight_bits']} bits)"
            )
        qlo, qhi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        w = op.params["weight"].cpu().numpy().astype(np.int8)
        if op.kind == "linear":
            w = w.T.copy()  # MatMulInteger: (in, out)
        w_name = (
            self.const(w.astype(np.int16) + 128, op.output + "_w", np.uint8),
            self.const(128, op.output + "_wzp", np.uint8),
        )
        bias = self.channel_const(
            op.params["bias"], 4 if op.kind == "conv2d" else 2, op.output + "_bias"
        )
        if not a["dynamic"]:
            acc = self.product(
                op, self.to8(x, qlo, qhi, op.output + "_x8"), w_name, op.output + "_acc"
            )
            return self.node("Add", [acc, bias], op.output)
        lo_bits = int(a["lo_bits"])
        step = self.const(1 << lo_bits, op.output + "_step")
        q_hi = self.floor_div(x, step, op.output + "_qhi")
        hi = self.node("Mul", [q_hi, step], op.output + "_hi")
        if a["midpoint"] and lo_bits > 0:
            nz = self.node(
                "Cast",
                [
                    self.node(
                        "Not",
                        [
                            self.node(
                                "Equal",
                                [q_hi, self.const(0, op.output + "_zero")],
                                op.output + "_eq0",
                            )
                        ],
                        op.output + "_nz",
                    )
                ],
                op.output + "_nzi",
                to=self.onnx.TensorProto.INT64,
            )
            half = self.const(1 << (lo_bits - 1), op.output + "_mid")
            hi = self.node(
                "Add", [hi, self.node("Mul", [nz, half], op.output + "_off")], op.output + "_hi_mid"
            )
        lo = self.node("Sub", [x, hi], op.output + "_lo")
        # q_hi * 2**B_lo (+ 2**(B_lo-1)) stays inside the code range, so it keeps its 8-bit type
        acc_hi = self.product(
            op, self.to8(hi, qlo, qhi, op.output + "_hi8"), w_name, op.output + "_acchi"
        )
        acc_hi = self.node("Add", [acc_hi, bias], op.output + "_acchi_b")
        c = self.p.layer_spec(op).grid().channels
        as_map = (
            (lambda t, base: t)
            if op.kind == "conv2d"
            else (
                lambda t, base: self.node(
                    "Reshape", [t, self.const([-1, c, 1, 1], base + "_shp")], base
                )
            )
        )
        if a["decision"] == "output":
            vals = self.node(
                "Mul",
                [
                    as_map(acc_hi, op.output + "_accmap"),
                    self.channel_const(op.params["score_mult"], 4, op.output + "_smult"),
                ],
                op.output + "_vals",
            )
            mask_e = self.decisions(op, vals)
            lo8 = self.to8(lo, -128, 127, op.output + "_lo8")
            acc_lo = self.product(op, lo8, w_name, op.output + "_acclo")
            if op.kind == "linear":
                mask_e = self.node(
                    "Reshape",
                    [mask_e, self.const([-1, c], op.output + "_m2")],
                    op.output + "_mask2d",
                )
            masked = self.node("Mul", [acc_lo, mask_e], op.output + "_lo_masked")
            return self.node("Add", [acc_hi, masked], op.output)
        mask_e = self.decisions(op, as_map(x, op.output + "_xmap"))
        if op.kind == "linear":
            mask_e = self.node(
                "Reshape", [mask_e, self.const([-1, c], op.output + "_m2")], op.output + "_mask2d"
            )
        kept = self.node("Mul", [lo, mask_e], op.output + "_lo_kept")
        acc_lo = self.product(
            op, self.to8(kept, -128, 127, op.output + "_lo8"), w_name, op.output + "_acclo"
        )
        return self.node("Add", [acc_hi, acc_lo], op.output)

    def decisions(self, op: Op, values: str) -> str:
        """Element mask (int64 0/1, the grid's map shape) from int64 ``values`` (N, C, H, W)."""
        base = op.output
        spec = self.p.layer_spec(op)
        grid = spec.grid()
        bs, (gh, gw) = grid.block_size, grid.group
        nb, ngh, ngw = grid.cells
        pc, ph, pw = grid.padding
        score = score_for(spec.score)
        fill = score.pad_value(-(1 << 62))
        v = values
        if pc or ph or pw:
            pads = self.const([0, 0, 0, 0, 0, pc, ph, pw], base + "_gpads")
            v = self.node("Pad", [v, pads, self.const(fill, base + "_gfill")], base + "_gpad")
        v = self.node(
            "Reshape",
            [v, self.const([-1, nb, bs, ngh, gh, ngw, gw], base + "_g7")],
            base + "_cells",
        )
        axes = self.const([2, 4, 6], base + "_gaxes")

        def counts() -> np.ndarray:
            ch, rh, rw = (np.array(e, dtype=np.int64) for e in grid.extents())
            return ch[:, None, None] * rh[None, :, None] * rw[None, None, :]

        score_t = score.onnx(self, v, axes, counts, base)
        thr = self.channel_const(op.params["threshold"], 4, base + "_thr")
        mask = self.node("Greater", [score_t, thr], base + "_passed")
        if spec.k_bounds is not None:
            mask = self.bounds(score_t, mask, list(spec.k_bounds), (nb, ngh, ngw), base)
        self.extra_outputs.append((mask, op.name, ["N", nb, ngh, ngw]))
        m = self.node("Cast", [mask], base + "_mask_i", to=self.onnx.TensorProto.INT64)
        m = self.node(
            "Reshape", [m, self.const([-1, nb, 1, ngh, 1, ngw, 1], base + "_m7")], base + "_m7r"
        )
        shape7 = self.node(
            "Concat",
            [
                self.node(
                    "Slice",
                    [
                        self.node("Shape", [m], base + "_ms"),
                        self.const([0], base + "_s0"),
                        self.const([1], base + "_s1"),
                    ],
                    base + "_n",
                ),
                self.const([nb, bs, ngh, gh, ngw, gw], base + "_e6"),
            ],
            base + "_eshape",
            axis=0,
        )
        m = self.node("Expand", [m, shape7], base + "_mexp")
        m = self.node(
            "Reshape",
            [m, self.const([-1, nb * bs, ngh * gh, ngw * gw], base + "_m4")],
            base + "_m4r",
        )
        if pc or ph or pw:
            m = self.node(
                "Slice",
                [
                    m,
                    self.const([0, 0, 0], base + "_cs"),
                    self.const([grid.channels, grid.height, grid.width], base + "_ce"),
                    self.const([1, 2, 3], base + "_ca"),
                ],
                base + "_mcrop",
            )
        return m

    def bounds(
        self, score: str, passed: str, k: list[int], cells: tuple[int, int, int], base: str
    ) -> str:
        """Exact per-block top-k: rank = groups with a higher score, or an equal one at a lower
        index; keep ``passed & rank < k_hi`` or ``rank < k_lo``."""
        nb, ngh, ngw = cells
        g = ngh * ngw
        s = self.node("Reshape", [score, self.const([-1, nb, g], base + "_rs")], base + "_sflat")
        si = self.node("Unsqueeze", [s, self.const([3], base + "_u3")], base + "_si")  # (N,b,g,1)
        sj = self.node("Unsqueeze", [s, self.const([2], base + "_u2")], base + "_sj")  # (N,b,1,g)
        higher = self.node("Greater", [sj, si], base + "_higher")
        tie = self.node("Equal", [sj, si], base + "_tie")
        earlier = self.const(
            np.arange(g)[None, :] < np.arange(g)[:, None], base + "_earlier", np.bool_
        )
        ahead = self.node(
            "Or", [higher, self.node("And", [tie, earlier], base + "_tie_e")], base + "_ahead"
        )
        rank = self.node(
            "ReduceSum",
            [
                self.node("Cast", [ahead], base + "_ahead_i", to=self.onnx.TensorProto.INT64),
                self.const([3], base + "_rax"),
            ],
            base + "_rank",
            keepdims=0,
        )
        rank = self.node(
            "Reshape", [rank, self.const([-1, nb, ngh, ngw], base + "_rr")], base + "_rank4"
        )
        top_hi = self.node("Less", [rank, self.const(k[1], base + "_khi")], base + "_tophi")
        top_lo = self.node("Less", [rank, self.const(k[0], base + "_klo")], base + "_toplo")
        return self.node(
            "Or", [self.node("And", [passed, top_hi], base + "_keep"), top_lo], base + "_bounded"
        )

    # ------------------------------------------------------------------ graph
    def build(self, with_masks: bool) -> Any:
        h, tp = self.onnx.helper, self.onnx.TensorProto
        env: dict[str, str] = {self.p.input: "input"}
        self.names.add("input")
        for op in self.p.ops:
            args = [env[i] for i in op.inputs]
            if op.kind == "quantize":
                out = self.quantize(op, args[0])
            elif op.kind == "requant":
                out = self.requant(op, args[0])
            elif op.kind in ("conv2d", "linear"):
                out = self.layer(op, args[0])
            elif op.kind == "clamp":
                out = self.clamp(op, args[0])
            elif op.kind == "maxpool2d":
                out = self.maxpool(op, args[0])
            elif op.kind == "avgpool2d":
                out = self.avgpool(op, args[0])
            elif op.kind == "add":
                out = self.add(op, args[0], args[1])
            elif op.kind == "flatten":
                out = self.flatten(op, args[0])
            else:
                raise OnnxExportError(f"no ONNX form for operation {op.kind!r} ({op.name})")
            env[op.output] = out
        acc = env[self.p.output]
        self.nodes.append(h.make_node("Identity", [acc], ["logits_int"]))
        acc32 = self.node("Cast", [acc], "logits_i32", to=tp.INT32)
        scale = self.p.tensors[self.p.output].scale.cpu().numpy().astype(np.float32)
        s = self.const(scale.reshape(-1), "logits_scale", np.float32)
        zp = self.const(np.zeros(scale.size, np.int32), "logits_zp", np.int32)
        self.nodes.append(h.make_node("DequantizeLinear", [acc32, s, zp], ["logits"], axis=1))
        c, hh, ww = self.p.input_shape
        inputs = [h.make_tensor_value_info("input", tp.FLOAT, ["N", c, hh, ww])]
        n_out = self.p.tensors[self.p.output].shape
        outputs = [
            h.make_tensor_value_info("logits", tp.FLOAT, ["N", *n_out]),
            h.make_tensor_value_info("logits_int", tp.INT64, ["N", *n_out]),
        ]
        if with_masks:
            for mask, name, shape in self.extra_outputs:
                out_name = f"mask:{name}"
                self.nodes.append(h.make_node("Identity", [mask], [out_name]))
                outputs.append(h.make_tensor_value_info(out_name, tp.BOOL, shape))
        graph = h.make_graph(self.nodes, "dynabit", inputs, outputs, initializer=self.inits)
        model = h.make_model(
            graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="dynabit"
        )
        model.ir_version = min(model.ir_version, 10)
        meta = model.metadata_props.add()
        meta.key, meta.value = "dynabit", "integer program export (bit-exact with the engine)"
        self.onnx.checker.check_model(model)
        return model


def program_to_onnx(program: IntegerProgram, with_masks: bool = True) -> Any:
    """The ONNX ``ModelProto`` of ``program``: input ``input`` (float32 ``N x C x H x W``),
    outputs ``logits`` (float32), ``logits_int`` (int64) and, with ``with_masks``, one bool
    ``mask:<layer>`` ``(N, blocks, gy, gx)`` per dynamic layer."""
    return _Builder(program).build(with_masks)


def export_onnx(program: IntegerProgram, path: str | Path, with_masks: bool = True) -> Path:
    """Write ``program`` as an ONNX file (see :func:`program_to_onnx`); returns the path."""
    from dynabit.utils.files import atomic_write_bytes

    model = program_to_onnx(program, with_masks)
    atomic_write_bytes(path, model.SerializeToString())
    return Path(path)
