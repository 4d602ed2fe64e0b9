"""ShardedSampler: data order is a pure function of (seed, epoch), sharded and resumable."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynabit.train.distributed import DistEnv, ShardedSampler, epoch_permutation


def _batches(n: int, world: int, rank: int, per_rank: int, epoch: int, seed: int = 0, **kw):
    s = ShardedSampler(n, DistEnv(rank, world), per_rank_batch=per_rank, seed=seed, **kw)
    s.set_epoch(epoch)
    idx = list(s)
    assert len(idx) == len(s)
    return [idx[i : i + per_rank] for i in range(0, len(idx), per_rank)]


def test_order_is_a_function_of_seed_and_epoch():
    assert _batches(50, 1, 0, 8, epoch=3) == _batches(50, 1, 0, 8, epoch=3)
    assert _batches(50, 1, 0, 8, epoch=3) != _batches(50, 1, 0, 8, epoch=4)
    assert _batches(50, 1, 0, 8, epoch=3, seed=1) != _batches(50, 1, 0, 8, epoch=3)
    assert torch.equal(epoch_permutation(50, 7, 2), epoch_permutation(50, 7, 2))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 200),
    world=st.integers(1, 4),
    per_rank=st.integers(1, 16),
    epoch=st.integers(0, 5),
)
def test_ranks_split_the_single_process_batches(n, world, per_rank, epoch):
    """Step k on all ranks together sees exactly single-process step k (global batch)."""
    single = _batches(n, 1, 0, per_rank * world, epoch)
    shards = [_batches(n, world, r, per_rank, epoch) for r in range(world)]
    assert all(len(s) == len(single) for s in shards)  # every rank runs the same steps
    for k, batch in enumerate(single):
        assert sorted(sum((s[k] for s in shards), [])) == sorted(batch)
    if n >= per_rank * world:  # no sample repeats within an epoch
        flat = sum(single, [])
        assert len(flat) == len(set(flat))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(8, 120), per_rank=st.integers(1, 8), data=st.data())
def test_set_position_skips_exactly_the_done_steps(n, per_rank, data):
    s = ShardedSampler(n, DistEnv(), per_rank_batch=per_rank, seed=3)
    full = _batches(n, 1, 0, per_rank, epoch=2, seed=3)
    step = data.draw(st.integers(0, len(full)))
    s.set_position(2, step)
    idx = list(s)
    assert len(idx) == len(s)
    assert idx == sum(full[step:], [])


def test_max_steps_caps_the_epoch():
    s = ShardedSampler(100, DistEnv(), per_rank_batch=10, max_steps=3)
    assert s.steps_per_epoch() == 3 and len(list(s)) == 30


@given(n=st.integers(0, 50), world=st.integers(1, 5))
def test_eval_mode_covers_each_sample_once(n, world):
    parts = [list(ShardedSampler(n, DistEnv(r, world), shuffle=False)) for r in range(world)]
    assert sorted(sum(parts, [])) == list(range(n))
    assert all(
        len(ShardedSampler(n, DistEnv(r, world), shuffle=False)) == len(p)
        for r, p in enumerate(parts)
    )
