"""Hardware config: defaults, the packaged YAML, validation errors, energy table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dynabit.config.hardware import EnergyTable, HardwareConfig
from dynabit.config.io import ConfigError, load, save, validate
from dynabit.config.quant import QuantConfig

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "src/dynabit/configs/hardware_default.yaml"


def test_packaged_default_loads_and_is_documented():
    hw = load(HardwareConfig, DEFAULT_YAML)
    assert (hw.rows, hw.cols, hw.dataflow) == (32, 32, "os")
    assert hw.default_group_shape() == (4, 8) and hw.default_block_size() == 32
    assert "Horowitz" in hw.energy.source and "ISSCC 2014" in hw.energy.source
    text = DEFAULT_YAML.read_text()
    assert "Horowitz" in text and "45 nm" in text  # the source is written in the file
    # the file states every field explicitly, so it cannot drift silently from the code
    assert hw.model_dump() == HardwareConfig(**hw.model_dump()).model_dump()
    for field in HardwareConfig.model_fields:
        assert f"{field}:" in text, field


def test_existing_fields_keep_their_meaning():
    hw = HardwareConfig(rows=12, cols=20)
    assert hw.default_group_shape() == (3, 4)
    assert hw.default_block_size() == 20
    q = QuantConfig(hardware=hw)
    assert q.for_layer("x").group == (3, 4) and q.for_layer("x").block_size == 20


@pytest.mark.parametrize(
    ("df", "expected"), [("os", ((2, 4), 16)), ("ws", ((2, 4), 16)), ("is", ((4, 4), 8))]
)
def test_aligned_units_follow_the_dataflow(df, expected):
    assert HardwareConfig(rows=8, cols=16, dataflow=df).aligned_units() == expected


def test_zero_rows_names_the_field_and_range():
    with pytest.raises(ConfigError) as e:
        validate(HardwareConfig, {"rows": 0})
    assert "rows" in str(e.value) and "greater than or equal to 1" in str(e.value)


def test_unknown_dataflow_lists_the_allowed_ones():
    with pytest.raises(ConfigError) as e:
        validate(HardwareConfig, {"dataflow": "rs"})
    msg = str(e.value)
    assert "dataflow" in msg and "'os'" in msg and "'ws'" in msg and "'is'" in msg


@pytest.mark.parametrize(
    ("df", "field", "kib"),
    [
        ("os", "output_buffer_kib", 3.9),  # 32x32 accumulators of 32 bit = 4 KiB
        ("ws", "weight_buffer_kib", 0.9),  # 32x32 weights of 8 bit = 1 KiB
        ("is", "input_buffer_kib", 0.49),  # 32x32 activation chunks of 4 bit = 0.5 KiB
    ],
)
def test_buffer_smaller_than_one_tile_is_rejected(df, field, kib):
    with pytest.raises(ConfigError) as e:
        validate(HardwareConfig, {"rows": 32, "cols": 32, "dataflow": df, field: kib})
    msg = str(e.value)
    assert field in msg and "smaller than one tile" in msg and "allowed" in msg
    # just enough is accepted
    need = {"output_buffer_kib": 4.0, "weight_buffer_kib": 1.0, "input_buffer_kib": 0.5}[field]
    validate(HardwareConfig, {"rows": 32, "cols": 32, "dataflow": df, field: need})


def test_negative_bandwidth_and_unknown_field_fail():
    with pytest.raises(ConfigError, match="dram_words_per_cycle"):
        validate(HardwareConfig, {"dram_words_per_cycle": 0})
    with pytest.raises(ConfigError, match="extra|not permitted"):
        validate(HardwareConfig, {"bandwidth": 3})


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    hw = HardwareConfig(rows=8, cols=24, dataflow="ws", dram_words_per_cycle=2.5)
    path = tmp_path / f"hw{suffix}"
    save(hw, path)
    assert load(HardwareConfig, path) == hw


def test_sram_energy_interpolates_between_the_table_points():
    e = EnergyTable()
    assert math.isclose(e.sram_access(8), 10.0) and math.isclose(e.sram_access(32), 20.0)
    assert math.isclose(e.sram_access(1024), 100.0)
    assert math.isclose(e.sram_access(16), math.sqrt(10.0 * 20.0))  # log-log midpoint
    sizes = [1, 4, 8, 16, 32, 100, 1024, 4096]
    values = [e.sram_access(s) for s in sizes]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))


def test_energy_scales_with_word_width():
    narrow = HardwareConfig(word_bits=32)
    wide = HardwareConfig(word_bits=64)
    assert math.isclose(2 * narrow.dram_pj(), wide.dram_pj())
    assert math.isclose(2 * narrow.sram_pj("weight"), wide.sram_pj("weight"))


def test_mac_table_lookup_and_errors():
    e = EnergyTable()
    assert e.mac(4, 8) == 0.2 and e.mac(8, 8) == 0.3
    with pytest.raises(KeyError, match="2x8"):
        e.mac(2, 8)
    with pytest.raises(ValueError, match="look like"):
        EnergyTable(mac_pj={"four-by-eight": 1.0})
