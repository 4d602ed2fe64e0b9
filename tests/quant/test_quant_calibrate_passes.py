"""Threshold calibration in a few joint passes against the sequential one, pass by layer."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_cnn, tiny_lite

from dynabit.ptq import predict
from dynabit.quant import calibrate, dynamic_layers, model_stats, prepare, reset_stats
from dynabit.quant.baselines import method_config

HW = {"rows": 4, "cols": 8}
METHODS = ("dynabit", "dynabit-midpoint-dual", "dynabit-input", "pg", "drq")


def _calibrated(model, method: str, batches: list[torch.Tensor], passes: int | None):
    q = prepare(model, method_config(method, 5.0, hardware=HW))
    calibrate(q, batches, threshold_passes=passes)
    return q


def _thresholds(q) -> list[torch.Tensor]:
    return [m.threshold.detach().clone() for _, m in dynamic_layers(q)]


def _batches(images: torch.Tensor, size: int = 8) -> list[torch.Tensor]:
    return list(images.split(size))


@pytest.mark.parametrize("method", METHODS)
def test_joint_passes_reach_the_sequential_thresholds(images: torch.Tensor, method: str) -> None:
    """A chain of two dynamic layers: one joint pass gets the first layer right (it sees no
    earlier decisions), two passes both (each sees the decisions it sees sequentially)."""
    torch.set_num_threads(1)
    model = tiny_cnn().eval()
    batches = _batches(images)
    seq = _thresholds(_calibrated(model, method, batches, None))
    one = _thresholds(_calibrated(model, method, batches, 1))
    two = _thresholds(_calibrated(model, method, batches, 2))
    assert len(seq) == 2
    torch.testing.assert_close(one[0], seq[0])
    for a, b in zip(two, seq, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_joint_passes_count_forward_passes(images: torch.Tensor) -> None:
    """One scale pass plus ``k`` threshold passes over the batches, whatever the depth."""
    torch.set_num_threads(1)
    q = prepare(tiny_lite(), method_config("dynabit", 5.0, hardware=HW))
    calls = []
    q.register_forward_pre_hook(lambda *_: calls.append(1))
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    batches = _batches(x)
    calibrate(q, batches, threshold_passes=2)
    assert len(dynamic_layers(q)) > 3
    assert len(calls) == len(batches) * (1 + 2)
    calls.clear()
    q2 = prepare(tiny_lite(), method_config("dynabit", 5.0, hardware=HW))
    q2.register_forward_pre_hook(lambda *_: calls.append(1))
    calibrate(q2, batches)  # sequential: one pass per dynamic layer (+1 for the order)
    assert len(calls) >= len(batches) * (1 + len(dynamic_layers(q2)))


@pytest.mark.parametrize("method", METHODS)
def test_joint_passes_keep_blocks_in_bounds_and_the_budget(method: str) -> None:
    """On a deeper net (12 dynamic layers) three joint passes keep the calibration crops'
    ``B_avg`` at the budget and as many blocks inside their bounds as the sequential way."""
    torch.set_num_threads(1)
    model = tiny_lite()
    x = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    batches = _batches(x)
    measured = {}
    for passes in (None, 3):
        q = _calibrated(model, method, batches, passes)
        reset_stats(q)
        predict(q, x)
        st = model_stats(q)
        inside = [s.blocks_in_bounds for s in st.layers.values() if s.dynamic]
        measured[passes] = (st.b_avg_macs, sum(inside) / len(inside))
    assert abs(measured[3][0] - 5.0) <= 0.1
    assert measured[3][1] >= measured[None][1] - 0.05


def test_every_block_in_bounds_on_the_chain(images: torch.Tensor) -> None:
    torch.set_num_threads(1)
    q = _calibrated(tiny_cnn().eval(), "dynabit", _batches(images), 2)
    reset_stats(q)
    predict(q, images)
    for s in model_stats(q).layers.values():
        assert s.blocks_in_bounds == 1.0


def test_bad_pass_count_is_refused(images: torch.Tensor) -> None:
    q = prepare(tiny_cnn().eval(), method_config("dynabit", 5.0, hardware=HW))
    with pytest.raises(ValueError, match="threshold_passes"):
        calibrate(q, _batches(images), threshold_passes=0)
