"""Shared test helper (not a test module): a small CNN trained on sklearn's digits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynabit.data import ImageDataset, load_dataset
from dynabit.models import build_model


def fp32_digits_cnn(epochs: int = 3) -> tuple[nn.Module, ImageDataset, ImageDataset]:
    """``(model in eval mode, train split, test split)``: a width-8 small CNN, SGD, seed 0."""
    torch.manual_seed(0)
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    model = build_model("small_cnn", 1, 10, 8, width=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        for idx in torch.randperm(len(train)).split(64):
            loss = F.cross_entropy(model(train.images[idx]), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), train, test
