"""Traffic, stalls and energy."""

from __future__ import annotations

import numpy as np
import pytest

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.masks import synthetic_masks
from dynabit.hardware.shapes import LayerShape, conv_out, network_shapes
from dynabit.hardware.simulator import simulate
from dynabit.hardware.traffic import receptive_pixels


@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_starved_bandwidth_stalls_and_generous_does_not(df):
    shapes = network_shapes("resnet20", hw=HardwareConfig(rows=16, cols=16, dataflow=df))
    masks = synthetic_masks(shapes, 0.25, samples=2)
    starved = HardwareConfig(rows=16, cols=16, dataflow=df, dram_words_per_cycle=0.01)
    generous = HardwareConfig(
        rows=16, cols=16, dataflow=df, dram_words_per_cycle=1e4, output_buffer_kib=1e4
    )
    a = simulate(shapes, masks, starved, "dynamic")
    b = simulate(shapes, masks, generous, "dynamic")
    assert (a.stall_cycles > 0).all()
    assert (b.stall_cycles == 0).all()
    assert (a.compute_cycles == b.compute_cycles).all()  # stalls come on top of compute
    # a stall is exactly the DRAM time that does not fit under the compute time
    dram = sum(a.dram_bits.values()) / (0.01 * 64)
    assert np.array_equal(a.cycles, np.maximum(a.compute_cycles, np.ceil(dram)))


def _conv(cin, cout, hw, k, s, p, group=(2, 2), block=4, decision="output"):
    out = (conv_out(hw[0], k, s, p), conv_out(hw[1], k, s, p))
    return LayerShape(
        "c",
        "conv",
        cin,
        cout,
        hw,
        out,
        (k, k),
        (s, s),
        (p, p),
        group=group,
        block_size=block,
        decision=decision,
    )


def test_input_plane_is_fetched_once_when_it_fits_and_per_column_fold_otherwise():
    shape = _conv(16, 64, (16, 16), 3, 1, 1)
    plane_bits = 16 * 16 * 16 * 4
    fits = HardwareConfig(rows=16, cols=16, input_buffer_kib=plane_bits / 8192)
    small = HardwareConfig(rows=16, cols=16, input_buffer_kib=plane_bits / 8192 / 2)
    a = simulate([shape], None, fits, "uniform")
    b = simulate([shape], None, small, "uniform")
    assert a.dram_bits["in_hi"][0, 0] == plane_bits and a.dram_bits["in_lo"][0, 0] == plane_bits
    assert b.dram_bits["in_hi"][0, 0] == plane_bits * 4  # 64 channels / 16 columns


def test_weights_come_from_dram_once_when_they_fit():
    shape = _conv(16, 64, (16, 16), 3, 1, 1)
    res = simulate([shape], None, HardwareConfig(rows=16, cols=16), "uniform")
    assert res.dram_bits["weight"][0, 0] == 64 * 16 * 9 * 8


def test_low_plane_dram_follows_the_refined_regions():
    shape = _conv(8, 8, (8, 8), 3, 1, 1, group=(4, 4), block=4, decision="input")
    hw = HardwareConfig(rows=16, cols=16)
    mask = np.zeros((1, 2, 2, 2), dtype=bool)
    mask[0, 1, 0, 1] = True  # one 4x4 region of 4 channels
    res = simulate([shape], {"c": mask}, hw, "region")
    assert res.dram_bits["in_lo"][0, 0] == 4 * 16 * 4  # elements x 4 low bits
    mask[0, 0, 1, 1] = True
    res2 = simulate([shape], {"c": mask}, hw, "region")
    assert res2.dram_bits["in_lo"][0, 0] == 2 * 4 * 16 * 4


def test_receptive_pixels_against_brute_force():
    rng = np.random.default_rng(0)
    for k, s, p in [(3, 1, 1), (3, 2, 1), (1, 2, 0), (5, 2, 2), (7, 2, 3)]:
        shape = _conv(1, 1, (13, 11), k, s, p)
        run = rng.random((3, *shape.out_hw)) < 0.2
        got = receptive_pixels(shape, run)
        for n in range(3):
            cover = np.zeros(shape.in_hw, dtype=bool)
            for oy, ox in zip(*np.nonzero(run[n]), strict=True):
                for dy in range(k):
                    for dx in range(k):
                        iy, ix = oy * s - p + dy, ox * s - p + dx
                        if 0 <= iy < 13 and 0 <= ix < 11:
                            cover[iy, ix] = True
            assert got[n] == cover.sum()


def test_energy_split_and_savings():
    hw = HardwareConfig(rows=32, cols=32)
    shapes = network_shapes("resnet18", hw=hw, group="fit", image_size=112)
    masks = synthetic_masks(shapes, 0.25, samples=2)
    dyn = simulate(shapes, masks, hw, "dynamic")
    uni = simulate(shapes, None, hw, "uniform")
    high = simulate(shapes, None, hw, "high")
    for res in (dyn, uni, high):
        assert set(res.energy_pj) == {"compute", "sram", "dram", "control"}
        assert all((v >= 0).all() for v in res.energy_pj.values())
    total = {m: r.energy_total.sum(axis=0).mean() for m, r in [("d", dyn), ("u", uni), ("h", high)]}
    assert total["h"] < total["d"] < total["u"]
    assert dyn.energy_pj["compute"].sum(0).max() < uni.energy_pj["compute"].sum()
    assert dyn.energy_pj["compute"].sum(0).min() > high.energy_pj["compute"].sum()
    assert uni.energy_pj["control"].sum() == 0 and dyn.energy_pj["control"].sum() > 0
    # DRAM energy is words x energy per word
    words = sum(dyn.dram_bits.values()) / 64
    assert np.allclose(dyn.energy_pj["dram"], words * hw.dram_pj())
    # doubling the DRAM energy doubles that part only
    hw2 = hw.model_copy(update={"energy": hw.energy.model_copy(update={"dram_pj_per_word": 3900})})
    dyn2 = simulate(shapes, masks, hw2, "dynamic")
    assert np.allclose(dyn2.energy_pj["dram"], 2 * dyn.energy_pj["dram"])
    assert np.allclose(dyn2.energy_pj["compute"], dyn.energy_pj["compute"])


def test_bitparallel_array_runs_one_pass():
    hw = HardwareConfig(rows=16, cols=16)
    shapes = network_shapes("resnet20", hw=hw)
    bp = simulate(shapes, None, hw, "bitparallel")
    dense = simulate(shapes, None, hw, "dense")
    assert (bp.compute_cycles == dense.compute_cycles).all()
    assert (bp.macs == dense.macs).all()
    # same MACs, each at 8x8 energy instead of 4x8
    assert bp.energy_pj["compute"].sum() > dense.energy_pj["compute"].sum()
