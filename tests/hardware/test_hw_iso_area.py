"""Designs compared per area: lane MAC energy, leakage, tile area, cycles of each design."""

from __future__ import annotations

import pytest

from dynabit.config.hardware import EnergyTable, HardwareConfig
from dynabit.hardware import network_shapes, simulate, synthetic_masks
from dynabit.hardware.energy import leakage_energy
from dynabit.hardware.iso_area import (
    Design,
    area,
    break_even,
    energy_ratios,
    load_area_table,
    ratios,
    run_design,
)

HW = HardwareConfig(rows=8, cols=8, lanes=8)


@pytest.fixture(scope="module")
def shapes() -> list:
    return network_shapes("resnet20", hw=HW, keep_first_last=False)


def test_lane_mac_shares_one_accumulator_add() -> None:
    e = EnergyTable()
    assert e.lane_mac(8, 8, 1) == e.mac(8, 8)
    n = 8
    expect = e.mac(8, 8) - e.accumulate_pj + e.accumulate_pj / n + e.tree_add_pj * (n - 1) / n
    assert e.lane_mac(8, 8, n) == pytest.approx(expect)
    assert e.lane_mac(8, 8, n) < e.mac(8, 8)


def test_leakage_is_area_times_time() -> None:
    hw = HardwareConfig(clock_mhz=1000.0)
    # 5 nW x 1e6 transistors for 1000 cycles of 1 ns = 5 mW x 1 us = 5 nJ
    assert float(leakage_energy(1e6, 1000, hw)) == pytest.approx(5000.0)
    assert float(leakage_energy(2e6, 1000, hw)) == pytest.approx(2 * 5000.0)


def test_area_levels_and_equal_buffers() -> None:
    table = load_area_table()
    parts = {d: area(Design(d), HW, table) for d in ("dual", "int8", "int4", "bitserial")}
    row = next(r for r in table["rows"] if r["design"] == "int8" and r["lanes"] == 8)
    assert parts["int8"]["array"] == 64 * row["transistors"]
    assert len({p["buffers"] for p in parts.values()}) == 1
    for d, p in parts.items():
        assert p["tile"] == p["core"] + p["buffers"]
        assert p["core"] == p["array"] + p["drain"] + p["decision"]
        assert (p["decision"] > 0) == (d == "dual")
    assert parts["dual"]["array"] < parts["int8"]["array"]


def test_ratio_zero_is_the_high_pass_and_one_both_planes(shapes) -> None:
    int4 = run_design(Design("int4"), shapes, None, HW)
    none = run_design(Design("dual"), shapes, synthetic_masks(shapes, 0.0), HW)
    assert none.compute_cycles == int4.compute_cycles
    full = run_design(Design("dual"), shapes, synthetic_masks(shapes, 1.0), HW)
    two = simulate(shapes, None, HW.model_copy(update={"act_chunk_bits": 4}), mode="uniform")
    # both planes of every tile, plus each layer's epilogue fold for its refined last tile
    fill = HW.rows + HW.cols - 2
    assert full.compute_cycles == float(two.compute_cycles.sum()) + fill * len(shapes)


def test_bitserial_streams_one_step_per_bit(shapes) -> None:
    """A5 costs 5/8 of A8 in streamed steps (each fold's fill is paid once either way)."""
    a8 = run_design(Design("bitserial", bits=8), shapes, None, HW)
    a5 = run_design(Design("bitserial", bits=5), shapes, None, HW)
    int8 = run_design(Design("int8"), shapes, None, HW)  # the same folds, one step per step
    assert a5.compute_cycles < a8.compute_cycles
    # B-bit serial = folds * (fill + B * T) - 1 per layer: (B - 1) * folds * T over INT8
    assert (a8.compute_cycles - int8.compute_cycles) * 4 == pytest.approx(
        (a5.compute_cycles - int8.compute_cycles) * 7
    )


def test_ratios_against_a_baseline(shapes) -> None:
    masks = synthetic_masks(shapes, 0.25, samples=2)
    runs = {d.name: run_design(d, shapes, masks, HW) for d in (Design("dual"), Design("int8"))}
    r = ratios(runs, "int8", "array")
    assert r["int8"] == 1.0
    dual, int8 = runs["dual"], runs["int8"]
    expect = (int8.compute_cycles * int8.area["array"]) / (dual.compute_cycles * dual.area["array"])
    assert r["dual"] == pytest.approx(expect)
    assert energy_ratios(runs, "int8")["int8"] == 1.0


def test_break_even_interpolates_the_crossing() -> None:
    assert break_even([0.0, 0.5, 1.0], [1.4, 1.2, 0.8]) == pytest.approx(0.75)
    assert break_even([0.0, 1.0], [0.9, 0.7]) == 0.0
    assert break_even([0.0, 1.0], [1.5, 1.1]) is None


def test_break_even_grid_falls_with_the_ratio(shapes) -> None:
    from dynabit.hardware.iso_area import break_even_grid

    grid = break_even_grid(shapes, HW, (0.0, 0.5, 1.0))
    for lvl, adv in grid["dual_per_area_over_int8"].items():
        assert adv[0] > adv[1] > adv[2], lvl  # more refinement: more cycles, same area
        assert grid["break_even"][lvl] == break_even([0.0, 0.5, 1.0], adv)


def test_summary_figures_and_rows() -> None:
    from dynabit.hardware.iso_area import summary_figures, summary_rows

    assert summary_figures({"speedup_vs_uniform": 1.2}) == {} and summary_rows({}) == []
    head = {
        "throughput_per_area_vs_int8": 1.18,
        "throughput_per_area_vs_int4": 0.74,
        "energy_per_inference_vs_int8": 0.93,
        "break_even_ratio_vs_int8": float("nan"),  # never crosses
        "lanes": 8.0,
    }
    s = summary_figures(head)
    assert s["break_even_ratio_vs_int8"] is None and s["per_area_lanes"] == 8
    rows = dict(summary_rows(s))
    assert (
        rows["throughput per area vs INT8 of the same organisation (8-lane PEs, equal buffers)"]
        == "1.180x"
    )
    assert rows["break-even refine ratio vs INT8"].startswith("none")
