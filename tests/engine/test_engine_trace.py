"""The trace: decisions and MAC counts per layer and sample; the low pass is really skipped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dynabit.config import QuantConfig
from dynabit.engine import (
    EngineTrace,
    Executor,
    evaluate_program,
    load_trace,
    lower,
    with_refine_ratio,
)
from dynabit.engine import execute as engine_execute
from dynabit.models import build_model
from dynabit.quant import calibrate, convert, model_stats, prepare, reset_stats


def _program(decision: str = "output", size: int = 12):
    torch.manual_seed(1)
    cfg = QuantConfig(hardware={"rows": 4, "cols": 8}, decision=decision)
    pm = prepare(build_model("small_cnn", 1, 10, size, width=4), cfg)
    x = torch.randn(10, 1, size, size)
    calibrate(pm, [x])
    fm = convert(pm, strict=True)
    return fm, lower(fm, (1, size, size)), x


@pytest.fixture
def count_products(monkeypatch):
    """Count the MACs the engine's low-pass products really multiply."""
    done = {"macs": 0, "calls": 0}
    original = engine_execute._Layer.product

    def counting(self, cols, cin, cout):
        done["macs"] += cols.shape[0] * cols.shape[1] * (cout[1] - cout[0])
        done["calls"] += 1
        return original(self, cols, cin, cout)

    monkeypatch.setattr(engine_execute._Layer, "product", counting)
    return done


@pytest.mark.parametrize("decision", ["output", "input"])
@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 1.0])
def test_low_pass_multiplies_only_refined_work(decision, ratio, count_products) -> None:
    _, program, x = _program(decision)
    prog = with_refine_ratio(program, ratio)
    res = Executor(prog)(x)
    lo_done = sum(int(lt.macs_lo.sum()) for lt in res.trace.layers)
    assert count_products["macs"] == lo_done  # the trace reports what was multiplied
    if ratio == 0.0:
        assert count_products["calls"] == 0 and lo_done == 0
    for lt in res.trace.layers:
        if not lt.dynamic:
            assert int(lt.macs_lo.sum()) == 0
            continue
        per_block = lt.mask.sum(dim=(2, 3))
        _, h, w, _, gh, gw = lt.grid
        n_groups = -(-h // gh) * -(-w // gw)
        assert bool((per_block == int(ratio * n_groups + 1e-9)).all())  # exact top-k
        assert lt.macs_hi.tolist() == [lt.macs_dense] * x.shape[0]
        if decision == "output":  # refined output elements x MACs per output, per sample
            assert torch.equal(lt.macs_lo, lt.refined_elements * (lt.macs_dense // lt.elements))
        assert bool((lt.macs_lo_refined <= lt.macs_lo).all())
        assert bool((lt.macs_lo <= lt.macs_dense).all())
    if ratio == 1.0 and decision == "output":
        dyn = [lt for lt in res.trace.layers if lt.dynamic]
        assert all(int(lt.macs_lo.sum()) == lt.macs_dense * x.shape[0] for lt in dyn)


@pytest.mark.parametrize("decision", ["output", "input"])
def test_trace_budget_equals_model_stats(decision) -> None:
    fm, program, x = _program(decision)
    reset_stats(fm)
    with torch.no_grad():
        fm(x)
    stats = model_stats(fm)
    ev = evaluate_program(program, x, torch.zeros(x.shape[0], dtype=torch.int64), batch_size=4)
    assert ev.budget["b_avg_macs"] == pytest.approx(stats.b_avg_macs, abs=1e-12)
    assert ev.budget["b_avg_elements"] == pytest.approx(stats.b_avg_elements, abs=1e-12)
    for name, layer in stats.layers.items():
        assert ev.budget["layers"][name]["ratio_macs"] == pytest.approx(layer.ratio_macs)


def test_trace_concat_save_load(tmp_path: Path) -> None:
    _, program, x = _program("output")
    ex = Executor(program)
    whole = ex(x).trace
    joined = EngineTrace.concat([ex(x[:4]).trace, ex(x[4:]).trace])
    path = tmp_path / "trace.safetensors"
    joined.save(path)
    back = load_trace(path)
    assert back.samples == whole.samples == x.shape[0]
    for a, b in zip(whole.layers, back.layers, strict=True):
        assert a.name == b.name and a.grid == b.grid and a.macs_dense == b.macs_dense
        assert torch.equal(a.macs_lo, b.macs_lo) and torch.equal(a.macs_hi, b.macs_hi)
        if a.mask is not None:
            assert torch.equal(a.mask, b.mask)
            assert b.mask.shape == (x.shape[0], *a.mask.shape[1:])


def test_with_refine_ratio_checks_range() -> None:
    _, program, _ = _program("output")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        with_refine_ratio(program, 1.5)
    assert program.dynamic_ops()[0].attrs["k_bounds"] is None  # the original is untouched


@pytest.mark.parametrize("method", ["uniform", "pg", "drq", "dynabit"])
def test_baseline_methods_run_bit_exact_with_the_same_budget(method: str) -> None:
    from dynabit.engine import check_parity

    torch.manual_seed(2)
    cfg = QuantConfig(hardware={"rows": 4, "cols": 8}, method=method, budget=5.0)
    pm = prepare(build_model("small_cnn", 1, 10, 12, width=4), cfg)
    x = torch.randn(8, 1, 12, 12)
    calibrate(pm, [x])
    fm = convert(pm, strict=True)
    program = lower(fm, (1, 12, 12))
    assert check_parity(fm, x, program=program).ok
    reset_stats(fm)
    with torch.no_grad():
        fm(x)
    stats = model_stats(fm)
    ev = evaluate_program(program, x, torch.zeros(8, dtype=torch.int64))
    assert set(ev.budget["layers"]) == set(stats.layers)
    assert ev.budget["b_avg_macs"] == pytest.approx(stats.b_avg_macs, abs=1e-12)
    assert ev.budget["b_avg_elements"] == pytest.approx(stats.b_avg_elements, abs=1e-12)
