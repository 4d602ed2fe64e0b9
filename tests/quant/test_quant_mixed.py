"""Per-layer static mixed precision: it meets its B_avg and promotes the sensitive layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dynabit.ptq import predict
from dynabit.quant import model_stats, reset_stats
from dynabit.quant.mixed import greedy_bits, mixed_config, mixed_precision, prepare_calibrated

C = 16


def outlier_chain() -> nn.Sequential:
    """Six equal-width linear layers; ``1`` and ``3`` see one channel 200x larger than the
    others (their producers amplify it, they undo it), so only those two need 8 bits."""
    torch.manual_seed(0)
    gain = torch.ones(C)
    gain[0] = 200.0
    layers = []
    for i in range(6):
        lin = nn.Linear(C, C, bias=False)
        with torch.no_grad():
            w = torch.eye(C) + 0.05 * torch.randn(C, C)
            if i in (0, 2):  # amplify channel 0 for the next layer's input
                w = gain[:, None] * w
            if i in (1, 3):  # and undo it, so every channel matters to the output
                w = w / gain[None, :]
            lin.weight.copy_(w)
        layers += [lin, nn.ReLU()] if i < 5 else [lin]
    return nn.Sequential(*layers).eval()


@pytest.fixture
def inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.rand(64, C, generator=g) for _ in range(2)]


def test_greedy_promotes_by_sensitivity_and_skips_overshoots() -> None:
    sens = {"a": 0.1, "b": 3.0, "c": 2.0, "d": 0.5}
    macs = {"a": 100.0, "b": 100.0, "c": 300.0, "d": 100.0}
    # 600 MACs at 4 bits; budget 5.5 leaves 900 bit-MACs: b (400) fits, c (1200) does not,
    # d (400) still does, a (400) no more
    bits = greedy_bits(sens, macs, 5.5)
    assert bits == {"a": 4, "b": 8, "c": 4, "d": 8}
    b_avg = sum(macs[n] * b for n, b in bits.items()) / sum(macs.values())
    assert b_avg == pytest.approx(16 / 3)
    assert bits["b"] == 8 and bits["c"] == 4
    with pytest.raises(ValueError, match="budget 9"):
        greedy_bits(sens, macs, 9.0)


@pytest.mark.parametrize(("budget", "n_high"), [(5.0, 1), (6.0, 2)])
def test_sensitive_layers_get_8_bits_and_budget_is_met(
    inputs: list[torch.Tensor], budget: float, n_high: int
) -> None:
    torch.set_num_threads(1)
    model = outlier_chain()
    a = mixed_precision(model, inputs, budget)
    # budgeted layers: the four inner linears (indices 2, 4, 6, 8 of the Sequential)
    assert set(a.bits) == {"2", "4", "6", "8"}
    top = sorted(a.sensitivity, key=a.sensitivity.get, reverse=True)
    assert set(top[:2]) == {"2", "6"}  # the layers with the outlier inputs
    assert min(a.sensitivity["2"], a.sensitivity["6"]) > 10 * max(
        a.sensitivity["4"], a.sensitivity["8"]
    )
    assert set(a.high_layers) == set(top[:n_high])
    qmodel = prepare_calibrated(model, a.config(), inputs)
    reset_stats(qmodel)
    predict(qmodel, torch.cat(inputs))
    measured = model_stats(qmodel).b_avg_macs
    assert measured == pytest.approx(a.b_avg)
    assert abs(measured - budget) <= 0.05


def test_mixed_beats_the_reverse_assignment(inputs: list[torch.Tensor]) -> None:
    """The chosen layers matter: the same number of 8-bit layers elsewhere is worse."""
    from dynabit.ptq import agreement

    torch.set_num_threads(1)
    model = outlier_chain()
    x = torch.cat(inputs)
    ref = predict(model, x)
    a = mixed_precision(model, inputs, 5.0)
    other = dict.fromkeys(a.bits, 4)
    other["8"] = 8  # an insensitive layer promoted instead
    kl = [
        agreement(ref, predict(prepare_calibrated(model, mixed_config(bits), inputs), x))["kl"]
        for bits in (a.bits, other)
    ]
    assert kl[0] < kl[1]
