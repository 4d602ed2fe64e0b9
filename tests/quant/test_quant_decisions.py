import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynabit.quant.decisions import (
    Grid,
    enforce_bounds,
    group_budget,
    group_max,
    surrogate_mask,
)


@given(
    c=st.integers(1, 10),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    bs=st.integers(1, 6),
    gh=st.integers(1, 4),
    gw=st.integers(1, 4),
)
@settings(max_examples=60, deadline=None)
def test_grid_covers_every_element_once(c, h, w, bs, gh, gw) -> None:
    grid = Grid(c, h, w, bs, gh, gw)
    x = torch.randn(2, c, h, w)
    counts = grid.valid_counts()
    assert int(counts.sum()) == c * h * w  # partial groups included, nothing dropped
    assert torch.allclose(grid.reduce(x, "sum").sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), atol=1e-4)
    # The max of each cell is attained inside it, and expand() puts each cell's value back.
    cell_max = grid.reduce(x, "max")
    back = grid.expand(cell_max)
    assert back.shape == x.shape and bool((back >= x).all())
    ids = torch.arange(grid.n_blocks * grid.n_groups, dtype=torch.float32)
    ids = ids.view(1, grid.n_blocks, grid.n_gh, grid.n_gw)
    assert torch.equal(grid.reduce(grid.expand(ids), "max"), ids)


def test_surrogate_mask_hard_forward_soft_backward() -> None:
    score = torch.tensor([[[-1.0, 0.5, 2.0]]], requires_grad=True).view(1, 1, 3)
    thr = torch.tensor([0.4], requires_grad=True)
    m = surrogate_mask(score, thr, temperature=0.5)
    assert m.tolist() == [[[0.0, 1.0, 1.0]]]
    m.sum().backward()
    assert thr.grad is not None and float(thr.grad) < 0  # raising the threshold refines less


def test_group_budget() -> None:
    assert group_budget(0.15, 0.35, 4) == (1, 1)
    assert group_budget(0.0, 1.0, 7) == (0, 7)
    assert group_budget(1.0, 1.0, 5) == (5, 5)
    assert group_budget(0.4, 0.45, 1) == (0, 0)  # too coarse: the upper bound wins


@given(st.integers(0, 1000), st.integers(1, 12), st.data())
@settings(max_examples=60, deadline=None)
def test_enforce_bounds_exact(seed, groups, data) -> None:
    k_hi = data.draw(st.integers(0, groups))
    k_lo = data.draw(st.integers(0, k_hi))
    g = torch.Generator().manual_seed(seed)
    score = torch.randn(3, 2, groups, generator=g)
    passed = score > data.draw(st.floats(-2, 2))
    out = enforce_bounds(score, passed, k_lo, k_hi)
    n_ref = out.sum(dim=-1)
    assert bool((n_ref >= k_lo).all()) and bool((n_ref <= k_hi).all())
    # Within bounds the threshold decision is kept unchanged.
    inside = (passed.sum(-1) >= k_lo) & (passed.sum(-1) <= k_hi)
    assert torch.equal(out[inside], passed[inside])
    # What is kept is always the highest-scoring groups.
    for n in range(3):
        for b in range(2):
            kept = score[n, b][out[n, b]]
            dropped = score[n, b][~out[n, b]]
            if kept.numel() and dropped.numel():
                assert float(kept.min()) >= float(dropped.max())


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from([(8, 7, 5, 4, 4, 4), (16, 8, 8, 8, 4, 4), (4, 3, 6, 2, 1, 2)]),
)
def test_group_max_gradient_equals_amax_with_ties(seed, geometry) -> None:
    """The sparse backward of the group max gives exactly amax's gradient, ties shared."""
    c, h, w, bs, gh, gw = geometry
    grid = Grid(c, h, w, bs, gh, gw)
    gen = torch.Generator().manual_seed(seed)
    # Few distinct values: many cells have several elements equal to their max.
    x = torch.randint(-2, 3, (3, c, h, w), generator=gen).float().requires_grad_(True)
    g = torch.randn(3, grid.n_blocks, grid.n_gh, grid.n_gw, generator=gen)
    (got,) = torch.autograd.grad((group_max(x, grid) * g).sum(), x)
    ref = grid._pad(x, float("-inf")).amax(dim=(2, 4, 6))
    (want,) = torch.autograd.grad((ref * g).sum(), x)
    assert torch.equal(group_max(x, grid), ref)
    assert torch.equal(got, want)
