"""The dual design with the mid-point offset beside the plain one: same cycles, its own area."""

from __future__ import annotations

import pytest

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware import network_shapes, synthetic_masks
from dynabit.hardware.iso_area import (
    Design,
    area,
    compare_designs,
    design_config,
    load_area_table,
    run_design,
)

HW = HardwareConfig(rows=8, cols=8, lanes=8)


@pytest.fixture(scope="module")
def shapes() -> list:
    return network_shapes("resnet20", hw=HW, keep_first_last=False)


def test_midpoint_costs_area_not_cycles(shapes) -> None:
    table = load_area_table()
    masks = synthetic_masks(shapes, 0.25)
    plain = run_design(Design("dual"), shapes, masks, HW, table)
    mid = run_design(Design("dual_midpoint"), shapes, masks, HW, table)
    assert mid.compute_cycles == plain.compute_cycles  # the offset changes no cycle
    assert mid.area["pe"] > plain.area["pe"]  # the PE rows differ
    assert mid.area["decision"] > plain.area["decision"]
    int8 = area(Design("int8"), HW, table)
    assert mid.area["array"] < int8["array"]  # still a smaller PE than INT8's
    assert mid.per_area() < plain.per_area()
    assert mid.energy_pj > plain.energy_pj  # one partial-product row more per lane MAC


def test_midpoint_mac_energy_scales_the_4x8_entry() -> None:
    plain = design_config(Design("dual"), HW).energy
    mid = design_config(Design("dual_midpoint"), HW).energy
    acc = plain.accumulate_pj
    assert mid.mac(4, 8) - acc == pytest.approx((plain.mac(4, 8) - acc) * 5 / 4)


def test_compare_designs_reports_midpoint_only_when_asked(shapes) -> None:
    masks = synthetic_masks(shapes, 0.25)
    base = compare_designs(shapes, masks, HW, with_break_even=False)
    assert "dual_midpoint" not in base["designs"]
    res = compare_designs(shapes, masks, HW, with_break_even=False, midpoint=True)
    assert set(res["designs"]) == {"dual", "dual_midpoint", "int8", "int4", "bitserial"}
    assert res["per_area_vs_int8"]["dual_midpoint"] < res["per_area_vs_int8"]["dual"]
    assert res["per_area_vs_int8"]["dual"] == pytest.approx(base["per_area_vs_int8"]["dual"])
