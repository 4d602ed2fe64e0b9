"""Cycle model: the standard formulas in dense mode, and the identities of the dual schedule."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.mapping import aligned_segments
from dynabit.hardware.masks import synthetic_masks
from dynabit.hardware.shapes import LayerShape, conv_out, network_shapes
from dynabit.hardware.simulator import simulate

ARRAYS = [16, 32, 64]
DATAFLOWS = ["os", "ws", "is"]


def scalesim(shape: LayerShape, r: int, c: int, df: str, passes: int = 1) -> int:
    """SCALE-Sim's closed form from first principles (conv arithmetic done here)."""
    ho = (shape.in_hw[0] + 2 * shape.padding[0] - shape.kernel[0]) // shape.stride[0] + 1
    wo = (shape.in_hw[1] + 2 * shape.padding[1] - shape.kernel[1]) // shape.stride[1] + 1
    m = ho * wo
    k = shape.kernel[0] * shape.kernel[1] * shape.in_channels
    n = shape.out_channels
    sr, sc, t = {"os": (m, n, k), "ws": (k, n, m), "is": (k, m, n)}[df]
    per_fold = (r + c + passes * t - 2) if df == "os" else (2 * r + c + passes * t - 2)
    return math.ceil(sr / r) * math.ceil(sc / c) * per_fold - 1


@pytest.mark.parametrize("size", ARRAYS)
@pytest.mark.parametrize("df", DATAFLOWS)
def test_dense_mode_reproduces_the_formulas_on_resnet18(size, df):
    hw = HardwareConfig(rows=size, cols=size, dataflow=df)
    shapes = network_shapes("resnet18", hw=hw)
    res = simulate(shapes, None, hw, "dense")
    expected = [scalesim(s, size, size, df) for s in shapes]
    assert res.compute_cycles[:, 0].tolist() == expected
    # uniform 8-bit on 4-bit chunks streams T twice in every fold: the formula with 2T
    uni = simulate(shapes, None, hw, "uniform")
    assert uni.compute_cycles[:, 0].tolist() == [scalesim(s, size, size, df, 2) for s in shapes]


@pytest.mark.parametrize("df", DATAFLOWS)
def test_dense_formula_on_a_non_square_array(df):
    hw = HardwareConfig(rows=8, cols=24, dataflow=df)
    shapes = network_shapes("resnet20", hw=hw)
    res = simulate(shapes, None, hw, "dense")
    assert res.compute_cycles[:, 0].tolist() == [scalesim(s, 8, 24, df) for s in shapes]


def _dynamic_everywhere(shapes):
    return [replace(s, dynamic=True) for s in shapes]


@pytest.mark.parametrize("df", DATAFLOWS)
@pytest.mark.parametrize("kind", ["block", "region", "element"])
def test_ratio_zero_is_the_high_pass_only_run(df, kind):
    hw = HardwareConfig(rows=16, cols=16, dataflow=df)
    shapes = network_shapes("resnet20", hw=hw, group="fit")
    masks = synthetic_masks(shapes, 0.0, samples=2, kind=kind)
    mode = {"block": "dynamic", "region": "region", "element": "element"}[kind]
    res = simulate(shapes, masks, hw, mode)
    if kind == "block":  # our design's floor: the same group-aligned folds, high pass only
        floor = simulate(shapes, None, hw, "high").compute_cycles[:, 0]
    else:  # baselines fold evenly: the dense formula for dynamic layers, uniform for static
        floor = np.array(
            [scalesim(s, 16, 16, df, 1 if s.dynamic else 2) for s in shapes], dtype=np.int64
        )
    assert (res.compute_cycles == floor[:, None]).all()
    dyn = [i for i, s in enumerate(shapes) if s.dynamic]
    assert not res.sram_bits["in_lo"][dyn].any() and not res.dram_bits["in_lo"][dyn].any()
    assert (res.refined[dyn] == 0).all()


@pytest.mark.parametrize("df", DATAFLOWS)
def test_ratio_one_input_directed_is_uniform_8bit(df):
    hw = HardwareConfig(rows=16, cols=16, dataflow=df)
    shapes = network_shapes("resnet20", hw=hw)
    uni = simulate(shapes, None, hw, "uniform")
    masks = synthetic_masks(shapes, 1.0, samples=2, kind="region")
    res = simulate(shapes, masks, hw, "region")
    assert (res.compute_cycles == uni.compute_cycles).all()


@pytest.mark.parametrize("size", [16, 32])
def test_ratio_one_output_directed_os_is_uniform_plus_one_epilogue_fold(size):
    # maps that divide into whole groups: group-aligned folds are SCALE-Sim's even folds
    hw = HardwareConfig(rows=size, cols=size, dataflow="os")
    shapes = network_shapes("resnet18", hw=hw, image_size=256)
    uni = simulate(shapes, None, hw, "uniform")
    masks = synthetic_masks(shapes, 1.0, samples=2)
    res = simulate(shapes, masks, hw, "dynamic")
    epilogue = np.array([(size + size - 2) if s.dynamic else 0 for s in shapes])
    assert (res.compute_cycles == (uni.compute_cycles[:, 0] + epilogue)[:, None]).all()


@pytest.mark.parametrize("df", ["ws", "is"])
def test_ratio_one_output_directed_ws_is_pays_a_second_set_of_folds(df):
    hw = HardwareConfig(rows=16, cols=16, dataflow=df)
    shapes = network_shapes("resnet18", hw=hw, image_size=256)
    masks = synthetic_masks(shapes, 1.0, samples=1)
    res = simulate(shapes, masks, hw, "dynamic")
    want = [
        2 * scalesim(s, 16, 16, df) + 1 if s.dynamic else scalesim(s, 16, 16, df, 2) for s in shapes
    ]
    assert res.compute_cycles[:, 0].tolist() == want


def _layer(data):
    cin = data.draw(st.integers(1, 9))
    cout = data.draw(st.integers(1, 12))
    h, w = data.draw(st.integers(3, 11)), data.draw(st.integers(3, 11))
    k = data.draw(st.sampled_from([1, 3]))
    s = data.draw(st.sampled_from([1, 2]))
    p = k // 2
    group = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    block = data.draw(st.integers(1, 6))
    decision = data.draw(st.sampled_from(["output", "input"]))
    return LayerShape(
        name="x",
        kind="conv",
        in_channels=cin,
        out_channels=cout,
        in_hw=(h, w),
        out_hw=(conv_out(h, k, s, p), conv_out(w, k, s, p)),
        kernel=(k, k),
        stride=(s, s),
        padding=(p, p),
        group=group,
        block_size=block,
        decision=decision,
    )


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_cycles_and_low_traffic_never_decrease_when_a_group_is_added(data):
    shape = _layer(data)
    df = data.draw(st.sampled_from(DATAFLOWS))
    hw = HardwareConfig(
        rows=data.draw(st.integers(2, 8)),
        cols=data.draw(st.integers(2, 8)),
        dataflow=df,
        dram_words_per_cycle=data.draw(st.sampled_from([0.05, 4.0])),
    )
    mode = data.draw(st.sampled_from(["dynamic", "region", "element"]))
    kind = {"dynamic": "block", "region": "region", "element": "element"}[mode]
    masks = synthetic_masks(
        [shape], data.draw(st.floats(0, 1)), 1, data.draw(st.integers(0, 99)), kind=kind
    )
    m = masks["x"]
    off = np.flatnonzero(~m.ravel())
    if off.size == 0:
        return
    grown = m.copy().ravel()
    grown[data.draw(st.sampled_from(off.tolist()))] = True
    a = simulate([shape], {"x": m}, hw, mode)
    b = simulate([shape], {"x": grown.reshape(m.shape)}, hw, mode)
    assert b.cycles[0, 0] >= a.cycles[0, 0]
    assert b.compute_cycles[0, 0] >= a.compute_cycles[0, 0]
    assert b.dram_bits["in_lo"][0, 0] >= a.dram_bits["in_lo"][0, 0]
    assert b.sram_bits["in_lo"][0, 0] >= a.sram_bits["in_lo"][0, 0]
    assert b.macs[0, 0] >= a.macs[0, 0]


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 20), st.integers(1, 20), st.integers(1, 6), st.integers(1, 6), st.integers(1, 40)
)
def test_aligned_folds_never_cut_a_group(h, w, gh, gw, edge):
    starts, sizes = aligned_segments((h, w), (gh, gw), edge)
    assert sizes.sum() == h * w and (sizes <= edge).all() and (sizes > 0).all()
    assert (np.diff(starts) == sizes[:-1]).all() and starts[0] == 0
    # group boundaries in group-major order
    hs = [min(gh, h - i * gh) for i in range(-(-h // gh))]
    ws = [min(gw, w - j * gw) for j in range(-(-w // gw))]
    gsizes = [a * b for a in hs for b in ws]
    bounds = set(np.cumsum([0] + gsizes).tolist())
    ends = set((starts + sizes).tolist())
    if gh * gw <= edge:
        assert ends <= bounds  # every fold ends at a group boundary
    else:
        assert bounds - {0} <= ends  # every group ends at a fold boundary


def test_samples_are_independent():
    hw = HardwareConfig(rows=16, cols=16)
    shapes = network_shapes("resnet20", hw=hw, group="fit")
    masks = synthetic_masks(shapes, 0.3, samples=3, seed=4)
    together = simulate(shapes, masks, hw, "dynamic")
    for i in range(3):
        alone = simulate(shapes, {k: v[i : i + 1] for k, v in masks.items()}, hw, "dynamic")
        assert (alone.cycles[:, 0] == together.cycles[:, i]).all()
        for k in together.energy_pj:
            assert np.allclose(alone.energy_pj[k][:, 0], together.energy_pj[k][:, i])


def test_mask_errors_are_clear():
    hw = HardwareConfig(rows=16, cols=16)
    shapes = network_shapes("resnet20", hw=hw)
    masks = synthetic_masks(shapes, 0.3, samples=2)
    with pytest.raises(ValueError, match="needs masks"):
        simulate(shapes, None, hw, "dynamic")
    bad = dict(masks)
    bad["layer1.0.conv1"] = bad["layer1.0.conv1"][:, :, :1]
    with pytest.raises(ValueError, match="layer1.0.conv1.*expected"):
        simulate(shapes, bad, hw, "dynamic")
    missing = {k: v for k, v in masks.items() if k != "layer2.0.conv2"}
    with pytest.raises(ValueError, match="no mask for dynamic layer"):
        simulate(shapes, missing, hw, "dynamic")
    with pytest.raises(ValueError, match="unknown layers"):
        simulate(shapes, {**masks, "nope": masks["layer1.0.conv1"]}, hw, "dynamic")
    with pytest.raises(ValueError, match="unknown mode"):
        simulate(shapes, masks, hw, "fast")  # type: ignore[arg-type]


@pytest.mark.parametrize("lanes", [4, 8])
@pytest.mark.parametrize("df", DATAFLOWS)
def test_lanes_cover_the_window_n_per_cycle(lanes, df):
    """Dot-product PEs: K enters the formulas as ceil(K / N) steps (first layer K = 27 too)."""
    hw = HardwareConfig(rows=16, cols=16, dataflow=df, lanes=lanes)
    shapes = network_shapes("resnet18", hw=hw)
    assert shapes[0].window == 3 * 7 * 7  # 3 input channels: K = 147, not a multiple of N
    res = simulate(shapes, None, hw, "dense")
    expected = []
    for s in shapes:
        m = ((s.in_hw[0] + 2 * s.padding[0] - s.kernel[0]) // s.stride[0] + 1) * (
            (s.in_hw[1] + 2 * s.padding[1] - s.kernel[1]) // s.stride[1] + 1
        )
        k = math.ceil(s.kernel[0] * s.kernel[1] * s.in_channels / lanes)
        sr, sc, t = {"os": (m, s.out_channels, k), "ws": (k, s.out_channels, m)}.get(
            df, (k, m, s.out_channels)
        )
        fill = 16 + 16 - 2 if df == "os" else 2 * 16 + 16 - 2
        expected.append(math.ceil(sr / 16) * math.ceil(sc / 16) * (fill + t) - 1)
    assert res.compute_cycles[:, 0].tolist() == expected
    one = simulate(shapes, None, HardwareConfig(rows=16, cols=16, dataflow=df), "dense")
    assert (res.compute_cycles[:, 0] < one.compute_cycles[:, 0]).all()
