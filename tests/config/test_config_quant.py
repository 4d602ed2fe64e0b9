"""Bad configs fail at load time naming the field and what is allowed."""

import json

import pytest

from dynabit.config import ConfigError, HardwareConfig, QuantConfig, load, save, validate


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bits": 8, "hi_bits": 8}, "hi_bits .* must be < bits"),
        ({"budget": 9.0}, r"budget .* must lie in \[B_hi, B\] = \[4, 8\]"),
        ({"budget": 3.5}, r"budget .* must lie in"),
        ({"group": [8, 8], "hardware": {"rows": 16}}, "larger than the array's 16 rows"),
        ({"block_size": 0}, "block_size must be >= 1"),
        ({"bits": 1}, "bits: Input should be greater than or equal to 2"),
        ({"score": "median"}, "score: Input should be 'max' or 'mean'"),
        ({"decision": "sideways"}, "decision"),
        ({"bounds": [0.6, 0.2]}, "0 <= r_lo <= r_hi <= 1"),
        ({"temperature": 0}, "temperature"),
        ({"frobnicate": 1}, "frobnicate: Extra inputs are not permitted"),
        ({"hardware": {"rows": 0}}, "hardware.rows"),
        ({"overrides": [{"pattern": "(", "settings": {}}]}, "not a valid regular expression"),
        ({"overrides": [{"pattern": "x", "settings": {"colour": 1}}]}, r"unknown override"),
        ({"overrides": [{"pattern": "x", "settings": {"budget": 2}}]}, r"override 'x'.*budget"),
        ({"overrides": [{"pattern": "x", "settings": {"group": [5, 5]}}]}, "override 'x'"),
    ],
)
def test_bad_values_name_the_field(data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(QuantConfig, data, "quant")


def test_defaults_follow_the_hardware() -> None:
    cfg = QuantConfig(hardware={"rows": 32, "cols": 8})
    layer = cfg.for_layer("conv")
    assert layer.group == (4, 8) and layer.block_size == 8
    assert layer.target_ratio == 0.25 and layer.ratio_bounds() == pytest.approx((0.15, 0.35))
    assert QuantConfig(bounds=(0.2, 0.3)).for_layer("x").ratio_bounds() == (0.2, 0.3)
    assert HardwareConfig(rows=16).default_group_shape() == (4, 4)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_files(tmp_path, suffix) -> None:
    cfg = QuantConfig(budget=4.5, overrides=[{"pattern": "layer1.*", "settings": {"budget": 6}}])
    path = tmp_path / f"q{suffix}"
    save(cfg, path)
    assert load(QuantConfig, path) == cfg


def test_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(QuantConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load(QuantConfig, bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"quant": {"bits": 8, "hi_bits": 9}}))
    with pytest.raises(ConfigError, match=r"wrong.json \[quant\]"):
        load(QuantConfig, wrong, section="quant")
