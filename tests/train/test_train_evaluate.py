"""evaluate(): exact counts, batching paths, and the training mode left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from dynabit.data import load_dataset
from dynabit.train.distributed import DistEnv, ShardedSampler
from dynabit.train.evaluate import evaluate, inputs_at, iterate_batches


class _Plain(Dataset):
    """A dataset without ``images``/``labels`` tensors: goes through the DataLoader path."""

    def __init__(self, ds) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        return self.ds[i]


class _Constant(nn.Module):
    def __init__(self, cls: int) -> None:
        super().__init__()
        self.cls = cls
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 10)
        logits[:, self.cls] = 5.0
        return logits + self.dummy


@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_top1_and_loss_are_exact(batch_size):
    ds = load_dataset("digits", "test", subset=97)
    model = _Constant(3).train()
    res = evaluate(model, ds, batch_size=batch_size)
    expected = 100.0 * (ds.labels == 3).float().mean().item()
    assert res.top1 == pytest.approx(expected) and res.samples == 97
    ce = nn.functional.cross_entropy(model(ds.images), ds.labels).item()
    assert res.loss == pytest.approx(ce, rel=1e-6)
    assert res.stats is None
    assert model.training  # restored


def test_fast_and_dataloader_paths_agree():
    ds = load_dataset("digits", "train", subset=100)
    sampler = ShardedSampler(len(ds), DistEnv(), per_rank_batch=8, seed=1)
    sampler.set_position(1, 2)
    fast = list(iterate_batches(ds, sampler, 8))
    slow = list(iterate_batches(_Plain(ds), sampler, 8))
    assert len(fast) == len(slow) == 12 - 2
    for (a, y), (b, z) in zip(fast, slow, strict=True):
        assert torch.equal(a, b) and torch.equal(y, z)
    idx = torch.tensor([5, 1, 9])
    assert torch.equal(inputs_at(ds, idx), inputs_at(_Plain(ds), idx))
