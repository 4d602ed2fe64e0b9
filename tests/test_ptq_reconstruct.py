"""Label-free block reconstruction (dynabit.ptq.reconstruct): lower block error, in bounds."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_cnn, tiny_lite

from dynabit.ptq import predict, quantize_training_free, reconstruct, reconstruction_blocks
from dynabit.quant import model_stats, prepare, reset_stats
from dynabit.quant.baselines import method_config

HW = {"rows": 4, "cols": 8}


@pytest.fixture
def calib() -> torch.Tensor:
    return torch.randn(48, 1, 9, 9, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("method", ["dynabit", "dynabit-input", "pg", "drq", "uniform"])
def test_reconstruction_lowers_block_error_and_keeps_bounds(
    calib: torch.Tensor, method: str
) -> None:
    torch.set_num_threads(1)
    model = tiny_cnn().eval()
    cfg = method_config(method, 4 if method == "uniform" else 5.0, hardware=HW)
    q = quantize_training_free(model, cfg, calib)
    weights = {n: p.detach().clone() for n, p in q.named_parameters() if n.endswith("weight")}
    trainable = {n: p.requires_grad for n, p in q.named_parameters()}
    report = reconstruct(q, model, calib, steps=60, lr=1e-2)
    assert [r["block"] for r in report] == reconstruction_blocks(q) == ["0", "3", "6", "11"]
    for r in report:
        assert r["mse_after"] <= r["mse_before"]
    assert sum(r["mse_after"] for r in report) < sum(r["mse_before"] for r in report)
    for n, w in weights.items():  # only scales and thresholds are fitted
        assert torch.equal(dict(q.named_parameters())[n], w)
    reset_stats(q)
    predict(q, calib)
    stats = model_stats(q)
    for s in stats.layers.values():
        assert not s.dynamic or s.blocks_in_bounds == 1.0
    if method != "uniform":
        assert stats.b_avg_macs <= 5.0 + 0.05
    assert {n: p.requires_grad for n, p in q.named_parameters()} == trainable


def test_blocks_of_an_inverted_residual_net() -> None:
    q = prepare(tiny_lite(), method_config("dynabit", 5.0, hardware=HW))
    assert reconstruction_blocks(q) == [
        "stem",
        "blocks.0",
        "blocks.1",
        "blocks.2",
        "blocks.3",
        "head",
        "classifier",
    ]
