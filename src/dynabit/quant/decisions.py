"""The decision grid: group scores per block, hard masks with a surrogate gradient, and the
exact enforcement of per-block refine-ratio bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Grid:
    """How a ``(N, C, H, W)`` map is cut into blocks of channels and groups of pixels.

    The last block and the last row/column of groups may be partial: padding exists only in
    the decision grid, never in the data.
    """

    channels: int
    height: int
    width: int
    block_size: int
    group_h: int
    group_w: int

    @property
    def n_blocks(self) -> int:
        return math.ceil(self.channels / self.block_size)

    @property
    def n_gh(self) -> int:
        return math.ceil(self.height / self.group_h)

    @property
    def n_gw(self) -> int:
        return math.ceil(self.width / self.group_w)

    @property
    def n_groups(self) -> int:
        """Groups per block."""
        return self.n_gh * self.n_gw

    @property
    def divisible(self) -> bool:
        """No partial block or group: a map is a view of whole cells, no padding needed."""
        return (
            self.channels % self.block_size == 0
            and self.height % self.group_h == 0
            and self.width % self.group_w == 0
        )

    @property
    def per_element(self) -> bool:
        """Every cell is one element (blocks of one channel, 1 x 1 groups)."""
        return self.block_size == 1 and self.group_h == 1 and self.group_w == 1

    def cells(self, x: torch.Tensor) -> torch.Tensor:
        """View a ``(N, C, H, W)`` map of a :attr:`divisible` grid as
        ``(N, blocks, block_size, gh, group_h, gw, group_w)``."""
        return x.reshape(
            x.shape[0], self.n_blocks, self.block_size, self.n_gh, self.group_h, self.n_gw,
            self.group_w,
        )

    def _cell_mask(self, m: torch.Tensor) -> torch.Tensor:
        return m.reshape(m.shape[0], self.n_blocks, 1, self.n_gh, 1, self.n_gw, 1)

    def add_masked(self, base: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``base + expand(m) * x`` for ``(N, C, H, W)`` maps, broadcasting the mask where the
        grid allows instead of expanding it (a 0/1 mask makes the sum exact either way)."""
        if self.per_element:
            return torch.addcmul(base, x, m.reshape(base.shape))
        if self.divisible:
            out = torch.addcmul(self.cells(base), self.cells(x), self._cell_mask(m))
            return out.reshape(base.shape)
        return torch.addcmul(base, x, self.expand(m))

    def masked(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``expand(m) * x`` for a ``(N, C, H, W)`` map, broadcasting where the grid allows."""
        if self.per_element:
            return x * m.reshape(x.shape)
        if self.divisible:
            return (self.cells(x) * self._cell_mask(m)).reshape(x.shape)
        return self.expand(m) * x

    def _pad(self, x: torch.Tensor, value: float) -> torch.Tensor:
        n = x.shape[0]
        pc = self.n_blocks * self.block_size - self.channels
        ph = self.n_gh * self.group_h - self.height
        pw = self.n_gw * self.group_w - self.width
        if pc or ph or pw:
            x = F.pad(x, (0, pw, 0, ph, 0, pc), value=value)
        return x.reshape(
            n, self.n_blocks, self.block_size, self.n_gh, self.group_h, self.n_gw, self.group_w
        )

    def valid_counts(self, device: torch.device | None = None) -> torch.Tensor:
        """Real (unpadded) elements in each ``(block, gh, gw)`` cell (float32; do not modify:
        it is cached per grid)."""
        return _valid_counts(self, torch.device("cpu") if device is None else torch.device(device))

    def reduce(self, x: torch.Tensor, how: str) -> torch.Tensor:
        """Score each ``(sample, block, gh, gw)`` cell of ``x`` by its max, sum or mean."""
        if self.per_element:
            return x.reshape(x.shape[0], self.n_blocks, self.n_gh, self.n_gw)
        if self.divisible:
            cells = self.cells(x)
            if how == "max":
                return cells.amax(dim=(2, 4, 6))
            total = cells.sum(dim=(2, 4, 6))
        elif how == "max":
            return self._pad(x, float("-inf")).amax(dim=(2, 4, 6))
        else:
            total = self._pad(x, 0.0).sum(dim=(2, 4, 6))
        if how == "sum":
            return total
        return total / self.valid_counts(x.device).to(total.dtype)

    def expand(self, m: torch.Tensor) -> torch.Tensor:
        """Broadcast a ``(N, blocks, gh, gw)`` mask back to ``(N, C, H, W)``."""
        n = m.shape[0]
        full = m.reshape(n, self.n_blocks, 1, self.n_gh, 1, self.n_gw, 1).expand(
            n, self.n_blocks, self.block_size, self.n_gh, self.group_h, self.n_gw, self.group_w
        )
        full = full.reshape(
            n, self.n_blocks * self.block_size, self.n_gh * self.group_h, self.n_gw * self.group_w
        )
        return full[:, : self.channels, : self.height, : self.width]


@lru_cache(maxsize=256)
def _valid_counts(grid: Grid, device: torch.device) -> torch.Tensor:
    ones = torch.ones(1, grid.channels, grid.height, grid.width, device=device)
    return grid._pad(ones, 0.0).sum(dim=(2, 4, 6))[0]


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


def group_budget(r_lo: float, r_hi: float, n_groups: int) -> tuple[int, int]:
    """``(k_lo, k_hi)``: the fewest and most groups a block may refine.

    The upper bound wins when the grid is too coarse for both (it sets the worst-case latency).
    """
    k_hi = math.floor(r_hi * n_groups + 1e-9)
    k_lo = min(math.ceil(r_lo * n_groups - 1e-9), k_hi)
    return k_lo, k_hi


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
