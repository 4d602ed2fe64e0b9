"""The decision grid: group scores per block, hard masks with a surrogate gradient, and the
exact enforcement of per-block refine-ratio bounds."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dynabit.config.layer import GridGeometry, group_budget
from dynabit.config.scores import score_for

__all__ = ["Grid", "enforce_bounds", "group_budget", "surrogate_mask"]


@dataclass(frozen=True)
class Grid(GridGeometry):
    """A :class:`~dynabit.config.layer.GridGeometry` that also cuts ``(N, C, H, W)`` tensors.

    The last block and the last row/column of groups may be partial: padding exists only in
    the decision grid, never in the data.
    """

    def _pad(self, x: torch.Tensor, value: float) -> torch.Tensor:
        pc, ph, pw = self.padding
        if pc or ph or pw:
            x = F.pad(x, (0, pw, 0, ph, 0, pc), value=value)
        return x.reshape(x.shape[0], *self.cell_shape)

    def valid_counts(self, device: torch.device | None = None) -> torch.Tensor:
        """Real (unpadded) elements in each ``(block, gh, gw)`` cell."""
        ones = torch.ones(1, self.channels, self.height, self.width, device=device)
        return self._pad(ones, 0.0).sum(dim=(2, 4, 6))[0]

    def reduce(self, x: torch.Tensor, how: str) -> torch.Tensor:
        """Score each ``(sample, block, gh, gw)`` cell of ``x`` by a registered score
        (:mod:`dynabit.config.scores`), or by its ``"sum"``."""
        if how == "sum":
            return self._pad(x, 0.0).sum(dim=(2, 4, 6))
        score = score_for(how)
        cells = self._pad(x, score.pad_value(float("-inf")))
        return score.soft(
            cells, (2, 4, 6), lambda: self.valid_counts(x.device).to(x.dtype), torch
        )

    def expand(self, m: torch.Tensor) -> torch.Tensor:
        """Broadcast a ``(N, blocks, gh, gw)`` mask back to ``(N, C, H, W)``."""
        n = m.shape[0]
        full = m.reshape(n, self.n_blocks, 1, self.n_gh, 1, self.n_gw, 1).expand(
            n, *self.cell_shape
        )
        full = full.reshape(
            n, self.n_blocks * self.block_size, self.n_gh * self.group_h, self.n_gw * self.group_w
        )
        return full[:, : self.channels, : self.height, : self.width]


def surrogate_mask(
    score: torch.Tensor, threshold: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Hard ``score > threshold`` forward; sigmoid((score - threshold)/T) gradient backward.

    ``threshold`` broadcasts over the block axis (dim 1) of ``score``.
    """
    t = threshold.view(1, -1, *([1] * (score.dim() - 2)))
    hard = (score > t).to(score.dtype)
    soft = torch.sigmoid((score - t) / temperature)
    return hard + soft - soft.detach()


def enforce_bounds(score: torch.Tensor, passed: torch.Tensor, k_lo: int, k_hi: int) -> torch.Tensor:
    """Keep each block's refined count within ``[k_lo, k_hi]`` per sample.

    ``score`` and ``passed`` are ``(N, blocks, groups...)``. When more than ``k_hi`` groups pass
    the threshold the ``k_hi`` highest-scoring ones are kept; when fewer than ``k_lo`` pass the
    ``k_lo`` highest-scoring ones are refined. Ties go to the lower group index.
    """
    n, b = score.shape[:2]
    flat = score.reshape(n, b, -1)
    order = torch.argsort(flat, dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(flat.shape[-1], device=flat.device).expand_as(order))
    rank = rank.reshape(score.shape)
    return (passed & (rank < k_hi)) | (rank < k_lo)
