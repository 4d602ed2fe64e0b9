"""``run_simulation``: every input of ``dynabit simulate`` in one call."""

from __future__ import annotations

import numpy as np
import pytest

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware import (
    MaskMemoryError,
    compare_masks,
    load_hardware,
    network_shapes,
    run_simulation,
    save_masks,
    save_shapes,
    synthetic_masks,
)
from dynabit.hardware.run import check_mask_memory, mask_memory


def test_named_network_matches_the_steps_it_replaces() -> None:
    sim = run_simulation(network="resnet20", rows=16, cols=16, samples=2, ratio=0.3, seed=5)
    hw = HardwareConfig(**{**load_hardware().model_dump(), "rows": 16, "cols": 16})
    shapes = network_shapes("resnet20", hw=hw, group="fit")
    masks = synthetic_masks(shapes, 0.3, 2, 5)
    ref = compare_masks(shapes, masks, hw, seed=5)
    assert sim.hw == hw and sim.shapes == shapes and sim.real is None
    assert sim.masks_note is None
    assert sorted(sim.result.results) == sorted(ref.results)
    for mode, run in ref.results.items():
        np.testing.assert_array_equal(sim.result.results[mode].cycles, run.cycles)


def test_files_and_a_config_object(tmp_path) -> None:
    hw = HardwareConfig(rows=8, cols=8, dataflow="ws")
    shapes = network_shapes("resnet20", hw=hw, group=None)
    masks = synthetic_masks(shapes, 0.5, samples=3)
    save_shapes(shapes, tmp_path / "s.json")
    save_masks(masks, tmp_path / "m.npz")
    sim = run_simulation(
        shapes=tmp_path / "s.json", masks=tmp_path / "m.npz", hardware=hw, element=False
    )
    assert sim.hw == hw and sim.shapes == shapes
    assert "element" not in sim.result.results and "region" in sim.result.results
    assert sim.result.ours.samples == 3
    ref = compare_masks(shapes, masks, hw, element=False)
    np.testing.assert_array_equal(sim.result.ours.cycles, ref.ours.cycles)


def test_overrides_are_validated() -> None:
    with pytest.raises(ValueError, match="rows"):
        run_simulation(network="resnet20", rows=0)


def test_masks_too_large_for_memory_are_refused_before_drawing() -> None:
    shapes = network_shapes("resnet18", image_size=16384)
    assert mask_memory(shapes, 64, True, True) > 2**40  # more than a TiB
    with pytest.raises(MaskMemoryError, match="GiB, more than half the"):
        check_mask_memory(shapes, 64, True, True)
    with pytest.raises(MaskMemoryError):
        run_simulation(network="resnet18", image_size=16384, samples=64)


def test_per_area_table_or_why_not() -> None:
    result = run_simulation(network="resnet20", lanes=4, samples=1).result
    assert result.per_area is not None and result.per_area["lanes"] == 4
    assert "int8" in result.per_area["designs"]
    result = run_simulation(network="resnet20", lanes=3, samples=1).result
    assert result.per_area is None and "no area row" in result.per_area_note
