"""The iso-area benchmark's comparison step on a small network (the full run takes minutes)."""

import pytest
from bench_scripts import load_benchmark

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware import network_shapes, synthetic_masks


def test_workload_ratios_are_against_baselines_of_the_same_run() -> None:
    bench = load_benchmark("iso_area")
    hw = HardwareConfig(rows=8, cols=8, lanes=8)
    shapes = network_shapes("resnet20", hw=hw)
    masks = synthetic_masks(shapes, 0.25, samples=2)
    res = bench.compare_workload(shapes, masks, hw, 8)
    assert set(res["designs"]) == {"dual", "int8", "int4", "bitserial"}
    for base in ("int8", "int4", "bitserial"):
        assert res[f"per_area_vs_{base}_core"][base] == 1.0
        assert res[f"energy_vs_{base}"][base] == 1.0
    d, i8 = res["designs"]["dual"], res["designs"]["int8"]
    expect = (i8["compute_cycles"] * i8["area"]["core"]) / (d["compute_cycles"] * d["area"]["core"])
    assert res["per_area_vs_int8_core"]["dual"] == pytest.approx(expect)
    # the bit-serial design runs at the 5-bit budget: 5 steps per INT8 step, the fill once
    assert i8["compute_cycles"] < res["designs"]["bitserial"]["compute_cycles"]
    assert res["designs"]["bitserial"]["compute_cycles"] < 5 * i8["compute_cycles"]
