"""The pretrained EfficientNet-Lite0/Lite1 in the integer engine and ONNX: bit-exact on photos.

Both have ``ZeroPad2d`` (TF "SAME") and depthwise convs; the integer-ready copy folds the
padding into the convs and zeroes the dead channels whose integer bias would overflow int32.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dynabit.config import QuantConfig
from dynabit.data.photos import load_photos
from dynabit.engine import UnsupportedLayerError, check_parity, lower
from dynabit.export import check_onnx, program_to_onnx
from dynabit.models.efficientnet_lite import (
    INPUT_MEAN,
    INPUT_STD,
    integer_ready,
    load_efficientnet_lite_pretrained,
)
from dynabit.quant import calibrate, convert, prepare

SIZE = 64  # small input: the same layers, a twelfth of the work of 224x224


def _crops(n: int) -> torch.Tensor:
    photos = load_photos(
        "calibration", views="centre", max_photos=n, sources=("skimage", "sklearn", "matplotlib")
    )
    x = photos.normalized(INPUT_MEAN, INPUT_STD)
    return F.interpolate(x, size=SIZE, mode="bilinear", antialias=True)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lite0", "lite1"])
def test_pretrained_engine_and_onnx_are_bit_exact(variant: str) -> None:
    torch.set_num_threads(1)
    x = _crops(3)
    cfg = QuantConfig(budget=5.0, hardware={"rows": 16, "cols": 16})
    qmodel = prepare(integer_ready(load_efficientnet_lite_pretrained(variant)), cfg)
    calibrate(qmodel, [x])
    frozen = convert(qmodel, strict=True).eval()
    program = lower(frozen, tuple(x.shape[1:]))
    kinds = {op.kind for op in program.ops}
    assert {"conv2d", "add", "linear"} <= kinds
    depthwise = [op for op in program.ops if op.kind == "conv2d" and op.attrs.get("groups", 1) > 1]
    assert len(depthwise) == len(qmodel.blocks)
    report = check_parity(frozen, x, program=program)
    assert report.samples == 3 and report.mismatches == 0 and report.logits_mismatches == 0
    check = check_onnx(program_to_onnx(program).SerializeToString(), program, x, batch_size=2)
    assert check.logits_int_mismatches == 0 and check.mask_mismatches == 0
    assert check.same_predictions == 3


def test_zero_pad_is_refused_without_the_integer_ready_copy() -> None:
    torch.set_num_threads(1)
    qmodel = prepare(load_efficientnet_lite_pretrained("lite0"), QuantConfig())
    calibrate(qmodel, [_crops(1)])
    with pytest.raises(UnsupportedLayerError, match="ZeroPad2d"):
        convert(qmodel, strict=True)
