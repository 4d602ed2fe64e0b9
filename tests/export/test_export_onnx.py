"""ONNX export: standard operators, run by onnxruntime, bit-exact with the integer engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from digits_fixtures import fp32_digits_cnn

from dynabit.config import QuantConfig
from dynabit.engine import Executor, lower
from dynabit.export import OnnxExportError, check_onnx, export_onnx, program_to_onnx
from dynabit.models import build_model
from dynabit.quant import calibrate, convert, prepare

HW = {"rows": 4, "cols": 8}


def _program(name: str, size: int, **cfg):
    torch.manual_seed(0)
    pm = prepare(build_model(name, 1, 10, size, width=4), QuantConfig(hardware=HW, **cfg))
    x = torch.randn(16, 1, size, size)
    calibrate(pm, [x])
    return lower(convert(pm, strict=True), (1, size, size)), x


@pytest.mark.parametrize(
    ("name", "size", "cfg"),
    [
        ("small_cnn", 28, {}),
        ("small_cnn", 12, {"decision": "input", "score": "mean", "midpoint": True}),
        ("resnet20", 12, {"score": "mean", "enforce_bounds": True}),
        ("resnet20", 12, {"decision": "input", "enforce_bounds": True, "bounds": (0.2, 0.4)}),
        ("resnet18", 16, {"midpoint": True, "keep_first_last": False}),
        ("resnet20", 12, {"method": "pg"}),  # per-element gating baseline
        ("small_cnn", 12, {"method": "drq"}),  # DRQ input regions baseline
    ],
)
def test_onnxruntime_is_bit_exact_with_engine(name: str, size: int, cfg: dict) -> None:
    program, x = _program(name, size, **cfg)
    model = program_to_onnx(program)
    check = check_onnx(model.SerializeToString(), program, x, batch_size=7)  # batches 7,7,2
    assert check.logits_int_mismatches == 0
    assert check.mask_mismatches == 0
    assert check.same_predictions == check.samples == 16
    assert check.ok


def test_graph_uses_qdq_at_the_boundaries_and_integer_passes(tmp_path: Path) -> None:
    program, x = _program("resnet20", 8)
    path = export_onnx(program, tmp_path / "m.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "ConvInteger", "MatMulInteger"} <= ops
    assert {"ReduceMax", "Greater", "Expand"} <= ops  # group scores and masks
    # every integer product is u8 x u8 (exact in onnxruntime on every CPU; its u8 x s8 kernel
    # saturates pair sums on x86 without VNNI): weights offset by 128, zero point 128
    inits = {i.name: i for i in model.graph.initializer}
    weights = [i for i in inits.values() if i.name.endswith("_w")]
    assert weights and all(i.data_type == onnx.TensorProto.UINT8 for i in weights)
    conv = next(op for op in program.ops if op.kind == "conv2d")
    stored = onnx.numpy_helper.to_array(inits[conv.output + "_w"]).astype(np.int64)
    assert np.array_equal(stored - 128, conv.params["weight"].numpy())
    for n in model.graph.node:
        if n.op_type in ("ConvInteger", "MatMulInteger"):
            assert len(n.input) == 4  # both zero points given
            zp_w = onnx.numpy_helper.to_array(inits[n.input[3]])
            assert zp_w.dtype == np.uint8 and int(zp_w) == 128
    outputs = [o.name for o in model.graph.output]
    assert outputs[:2] == ["logits", "logits_int"]
    assert len(outputs) == 2 + len(program.dynamic_ops())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(["logits"], {"input": x[:1].numpy()})  # any batch size
    assert logits.shape == (1, 10)


def test_quantize_linear_matches_the_model_input_quantization() -> None:
    """ORT's QuantizeLinear = float32 x / s, round half to even: ties included."""
    program, _ = _program("small_cnn", 8)
    q = next(op for op in program.ops if op.kind == "quantize")
    s = np.float32(q.attrs["scale"])
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            (rng.integers(-130, 130, 4000) + 0.5) * s,  # exact ties (where representable)
            rng.uniform(-140, 140, 4000) * s,
        ]
    ).astype(np.float32)
    images = torch.from_numpy(x.reshape(-1, 1, 8, 8))
    check = check_onnx(program_to_onnx(program).SerializeToString(), program, images)
    assert check.logits_int_mismatches == 0 and check.mask_mismatches == 0


def test_trained_digits_model_same_top1() -> None:
    model, train, test = fp32_digits_cnn()
    pm = prepare(model, QuantConfig(hardware=HW, budget=5.0))
    calibrate(pm, [train.images[:256]])
    fm = convert(pm, strict=True)
    program = lower(fm, (1, 8, 8))
    check = check_onnx(
        program_to_onnx(program).SerializeToString(), program, test.images, test.labels
    )
    with torch.no_grad():
        model_top1 = 100.0 * float((fm(test.images).argmax(1) == test.labels).sum()) / len(test)
    assert check.onnx_top1 == check.engine_top1 == pytest.approx(model_top1)
    assert check.onnx_top1 > 80.0
    assert check.ok and check.logits_int_mismatches == 0


def test_more_than_8_bits_is_refused() -> None:
    program, _ = _program("small_cnn", 8, bits=10, hi_bits=5, budget=7.0)
    with pytest.raises(OnnxExportError, match="<= 8 bits"):
        program_to_onnx(program)
    # the engine itself runs any bit width
    x = torch.randn(2, 1, 8, 8)
    assert Executor(program)(x).logits.shape == (2, 10)
