"""Baselines, the realized fraction of the ideal speedup, and the report formats."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware import compare, network_shapes, synthetic_masks, to_csv, to_json, to_markdown
from dynabit.hardware.simulator import simulate


@pytest.fixture(scope="module")
def resnet18_os32():
    hw = HardwareConfig(rows=32, cols=32, dataflow="os")
    return hw, network_shapes("resnet18", hw=hw, group="fit")


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5])
def test_block_aligned_masks_realize_most_of_the_ideal(resnet18_os32, ratio):
    hw, shapes = resnet18_os32
    masks = synthetic_masks(shapes, ratio, samples=2, seed=1)
    elem = synthetic_masks(shapes, ratio, samples=2, seed=2, kind="element")
    c = compare(shapes, masks, hw, element_masks=elem)
    cb = c.compute_bound_layers()
    assert len(cb) >= 10
    ideal = c.ideal(cb)
    assert ideal == pytest.approx(8 / (4 + 4 * ratio), rel=0.03)  # B / B_avg, measured
    ours = c.speedup("uniform", cb)
    assert ours >= 0.85 * ideal
    assert ours <= ideal + 1e-9  # fill/drain and lock-step can only eat into it
    per_element = c.mean_cycles("uniform", cb) / c.mean_cycles("element", cb)
    assert per_element < 1 + 0.5 * (ours - 1)  # much less than ours
    assert c.realized_fraction() == pytest.approx(ours / ideal)


def test_ideal_is_b_over_b_avg_on_a_single_layer():
    hw = HardwareConfig(rows=16, cols=16)
    shapes = network_shapes("resnet20", hw=hw, keep_first_last=False)
    masks = synthetic_masks(shapes, 0.25, samples=1)
    c = compare(shapes, masks, hw)
    name = shapes[3].name
    r = c.ours.refined[3, 0]
    assert c.ideal([name]) == pytest.approx(8 / (4 + 4 * r))


def test_headline_and_baselines(resnet18_os32):
    hw, shapes = resnet18_os32
    masks = synthetic_masks(shapes, 0.25, samples=2)
    region = synthetic_masks(shapes, 0.25, samples=2, kind="region")
    c = compare(
        shapes, masks, hw, region_masks=region, baselines=("uniform", "high", "bitparallel")
    )
    h = c.headline()
    for key in (
        "ideal_network",
        "realized_fraction_of_ideal",
        "speedup_vs_uniform",
        "energy_saving_vs_uniform",
        "speedup_vs_high",
        "speedup_vs_bitparallel",
        "speedup_vs_region",
        "region_speedup_compute_bound",
    ):
        assert key in h and np.isfinite(h[key]), key
    assert h["speedup_vs_uniform"] > 1 > h["speedup_vs_high"]
    assert 0 < h["energy_saving_vs_uniform"] < 1
    with pytest.raises(ValueError, match="unknown baselines"):
        compare(shapes, masks, hw, baselines=("fp32",))


def test_reports(resnet18_os32, tmp_path):
    hw, shapes = resnet18_os32
    masks = synthetic_masks(shapes, 0.25, samples=2)
    c = compare(shapes, masks, hw, element_masks=synthetic_masks(shapes, 0.25, 2, kind="element"))
    data = json.loads(to_json(c, tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert set(data["runs"]) == {"dynamic", "uniform", "high", "bitparallel", "element"}
    layer = data["runs"]["dynamic"]["layers"][1]
    for key in (
        "cycles",
        "stall_cycles",
        "utilisation",
        "sram_in_hi_bytes",
        "sram_in_lo_bytes",
        "dram_in_lo_bytes",
        "energy_compute_uj",
        "energy_sram_uj",
        "energy_dram_uj",
        "energy_control_uj",
    ):
        assert key in layer
    rows = list(csv.DictReader(io.StringIO(to_csv(c))))
    assert len(rows) == 5 * len(shapes)
    md = to_markdown(c)
    assert md.count("\n| ") > len(shapes) and "energy saving" in md
    single = simulate(shapes, masks, hw, "dynamic")
    assert json.loads(to_json(single))["summary"]["cycles"] == pytest.approx(
        single.total_cycles.mean()
    )
    assert to_markdown(single).startswith("## dynamic")
    assert len(list(csv.DictReader(io.StringIO(to_csv(single))))) == len(shapes)


def test_per_area_figures_come_from_the_iso_area_module(resnet18_os32):
    from dynabit.hardware.iso_area import compare_designs

    hw, shapes = resnet18_os32
    hw8 = hw.model_copy(update={"lanes": 8})
    masks = synthetic_masks(shapes, 0.25, samples=2)
    c = compare(shapes, masks, hw8)
    ref = compare_designs(shapes, masks, hw8)
    h = c.headline()
    assert h["throughput_per_area_vs_int8"] == pytest.approx(ref["per_area_vs_int8"]["dual"])
    assert h["throughput_per_area_vs_int4"] == pytest.approx(ref["per_area_vs_int4"]["dual"])
    assert h["energy_per_inference_vs_int8"] == pytest.approx(ref["energy_vs_int8"]["dual"])
    assert 0.0 < h["break_even_ratio_vs_int8"] < 1.0
    assert h["break_even_ratio_vs_int8"] == pytest.approx(ref["break_even_ratio_vs_int8"])
    md = to_markdown(c)
    assert "per area, against designs of the same organisation (32x32, 8-lane PEs" in md
    assert f"{h['throughput_per_area_vs_int8']:.3f}x INT8's" in md
    data = json.loads(to_json(c))
    assert data["per_area"]["per_area_vs_int8"]["int8"] == 1.0
    assert compare(shapes, masks, hw8, per_area=False).per_area is None


def test_per_area_is_skipped_with_the_reason(resnet18_os32):
    hw, shapes = resnet18_os32
    masks = synthetic_masks(shapes, 0.25, samples=1)
    c = compare(shapes, masks, hw.model_copy(update={"lanes": 3}))
    assert c.per_area is None and "no area row for dual with 3 lanes" in c.per_area_note
    assert "throughput_per_area_vs_int8" not in c.headline()
    assert "per area: not available (no area row for dual with 3 lanes" in to_markdown(c)
    a8 = compare(shapes, masks, hw.model_copy(update={"act_chunk_bits": 8}))
    assert a8.per_area is None and "8-bit chunks" in a8.per_area_note
