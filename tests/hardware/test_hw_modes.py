"""Simulator modes as objects: the registry, and what each mode asks of a layer."""

from __future__ import annotations

import pytest

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.modes import MASKED_MODES, MODES, SIM_MODES, mode_for
from dynabit.hardware.shapes import LayerShape


def _shape(**kw) -> LayerShape:
    base = dict(
        name="c", kind="conv", in_channels=16, out_channels=32, in_hw=(8, 8), out_hw=(8, 8)
    )
    return LayerShape(**{**base, **kw})


def test_registry_order_and_masked_modes() -> None:
    assert MODES == ("dense", "uniform", "high", "dynamic", "element", "region", "bitparallel")
    assert MASKED_MODES == ("dynamic", "element", "region")
    assert all(SIM_MODES[n].name == n for n in MODES)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        mode_for("fast")


def test_precisions_of_a_dynamic_and_a_static_layer() -> None:
    hw = HardwareConfig(act_chunk_bits=4)
    dyn, static = _shape(bits=8, hi_bits=4), _shape(dynamic=False, bits=8, hi_bits=4)
    got = {n: mode_for(n).precision(dyn, hw) for n in MODES}
    assert (got["dense"].c_hi, got["dense"].c_lo) == (1, 0)
    assert (got["uniform"].c_hi, got["uniform"].c_lo, got["uniform"].masked) == (1, 1, False)
    assert (got["high"].c_lo, got["high"].lo_bits) == (0, 0)
    assert all(got[n].masked for n in MASKED_MODES)
    assert (got["bitparallel"].chunk_bits, got["bitparallel"].c_hi) == (8, 1)
    # a static layer runs both planes, unmasked, in every chunked mode but dense
    for n in ("uniform", "high", "dynamic", "element", "region"):
        p = mode_for(n).precision(static, hw)
        assert (p.c_hi, p.c_lo, p.masked) == (1, 1, False)


def test_group_mapping_and_mask_shapes() -> None:
    out, inp = _shape(group=(2, 4), block_size=16), _shape(decision="input", block_size=16)
    assert [n for n in MODES if mode_for(n).group_mapping(out)] == ["high", "dynamic"]
    assert not any(mode_for(n).group_mapping(inp) for n in MODES)
    assert mode_for("dynamic").mask_shape(out, 2) == (2, 2, 4, 2)
    assert mode_for("element").mask_shape(out, 2) == (2, 32, 8, 8)
    assert mode_for("region").mask_shape(out, 2) == (2, 1, 4, 2)
