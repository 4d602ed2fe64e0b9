"""The one layer description: grid arithmetic, validation, round trip, hardware defaults."""

from __future__ import annotations

import pytest

from dynabit.config import HardwareConfig
from dynabit.config.layer import (
    GridGeometry,
    LayerSpec,
    group_budget,
    hardware_split,
    hardware_units,
)


def test_grid_ceils_and_pads_partial_edges() -> None:
    g = GridGeometry(channels=20, height=7, width=9, block_size=8, group_h=2, group_w=4)
    assert g.cells == (3, 4, 3) and g.n_groups == 12
    assert g.padding == (4, 1, 3)
    assert g.cell_shape == (3, 8, 4, 2, 3, 4)
    assert g.extents() == ([8, 8, 4], [2, 2, 2, 1], [4, 4, 1])
    assert g.mask_shape(5) == (5, 3, 4, 3)


def test_grid_extents_cover_the_map_exactly() -> None:
    for c, h, w, b, gh, gw in [(1, 1, 1, 1, 1, 1), (33, 14, 14, 16, 4, 8), (64, 56, 56, 32, 4, 8)]:
        ch, rh, rw = GridGeometry(c, h, w, b, gh, gw).extents()
        assert (sum(ch), sum(rh), sum(rw)) == (c, h, w)
        assert max(ch) <= b and max(rh) <= gh and max(rw) <= gw


def test_k_bounds_follow_group_budget() -> None:
    g = GridGeometry(16, 8, 8, 16, 2, 2)  # 16 groups per block
    assert g.k_bounds(0.25, 0.5) == group_budget(0.25, 0.5, 16) == (4, 8)
    # the upper bound wins on a grid too coarse for both
    assert group_budget(0.4, 0.45, 2) == (0, 0)


def test_spec_grid_follows_the_decision_side() -> None:
    spec = LayerSpec(
        name="c",
        kind="conv",
        in_channels=8,
        out_channels=24,
        in_hw=(16, 16),
        out_hw=(8, 8),
        kernel=(3, 3),
        stride=(2, 2),
        padding=(1, 1),
        group=(2, 4),
        block_size=16,
    )
    assert spec.grid().cells == (2, 4, 2)
    assert spec.grid("input").cells == (1, 8, 4)
    assert spec.mask_shape(3) == (3, 2, 4, 2)
    assert spec.lo_bits == 4


def test_spec_round_trips_through_a_dict() -> None:
    spec = LayerSpec(
        name="fc",
        kind="linear",
        in_channels=64,
        out_channels=10,
        in_hw=(1, 1),
        out_hw=(1, 1),
        score="mean",
        decision="input",
        k_bounds=(1, 3),
    )
    d = spec.to_dict()
    assert isinstance(d["k_bounds"], tuple)
    as_json = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
    assert LayerSpec.from_dict(as_json) == spec


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("block_size", 0, "block_size must be >= 1"),
        ("group", (0, 2), "group must be two integers >= 1"),
        ("hi_bits", 9, "hi_bits must lie in 1..bits=8"),
        ("decision", "both", "decision must be 'output' or 'input'"),
        ("groups", 3, "groups=3 must divide"),
    ],
)
def test_spec_refuses_bad_geometry(field: str, value: object, words: str) -> None:
    kw = dict(name="x", kind="conv", in_channels=8, out_channels=8, in_hw=(4, 4), out_hw=(4, 4))
    with pytest.raises(ValueError, match=words):
        LayerSpec(**{**kw, field: value})


def test_hardware_units_fill_only_what_is_missing() -> None:
    hw = HardwareConfig(rows=8, cols=16, dataflow="is")
    assert hardware_units(hw) == hw.aligned_units()
    assert hardware_units(hw, aligned=False) == (
        hw.default_group_shape(),
        hw.default_block_size(),
    )
    assert hardware_units(hw, (1, 2), None, aligned=False) == ((1, 2), 16)
    assert hardware_units(hw, None, 5) == (hw.aligned_units()[0], 5)


def test_hardware_split_is_one_chunk_at_most_the_width() -> None:
    assert hardware_split(HardwareConfig(act_chunk_bits=4), 8) == 4
    assert hardware_split(HardwareConfig(act_chunk_bits=4), 3) == 3
    assert hardware_split(HardwareConfig(act_chunk_bits=2), 8) == 2
