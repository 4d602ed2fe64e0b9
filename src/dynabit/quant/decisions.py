"""The decision grid: group scores per block, hard masks with a surrogate gradient, and the
exact enforcement of per-block refine-ratio bounds."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

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

    @property
    def whole_blocks(self) -> bool:
        """No partial block: a map's channels are a view of whole blocks."""
        return self.channels % self.block_size == 0

    @property
    def per_element(self) -> bool:
        """Every cell is one element (blocks of one channel, 1 x 1 groups)."""
        return self.block_size == 1 and self.group_h == 1 and self.group_w == 1

    # Masks and scores go through the channels first, then the (much smaller) pixel map: a
    # reduction or broadcast over the middle axis of ``(N, blocks, block_size, H, W)`` keeps
    # rows of pixels contiguous, where one over the seven axes of a cell view does not.
    def by_block(self, x: torch.Tensor) -> torch.Tensor:
        """View ``(N, C, H, W)`` as ``(N, blocks, block_size, H, W)`` (:attr:`whole_blocks`)."""
        return x.reshape(x.shape[0], self.n_blocks, self.block_size, self.height, self.width)

    def to_pixels(self, m: torch.Tensor) -> torch.Tensor:
        """``(N, blocks, gh, gw)`` -> ``(N, blocks, H, W)``: each group's value at its pixels."""
        n, nb = m.shape[0], self.n_blocks
        full = m[:, :, :, None, :, None].expand(
            n, nb, self.n_gh, self.group_h, self.n_gw, self.group_w
        )
        full = full.reshape(n, nb, self.n_gh * self.group_h, self.n_gw * self.group_w)
        return full[:, :, : self.height, : self.width]

    def pixel_reduce(self, t: torch.Tensor, how: str) -> torch.Tensor:
        """``(N, blocks, H, W)`` -> ``(N, blocks, gh, gw)`` by the max or sum of each group."""
        ph = self.n_gh * self.group_h - self.height
        pw = self.n_gw * self.group_w - self.width
        if ph or pw:
            t = F.pad(t, (0, pw, 0, ph), value=float("-inf") if how == "max" else 0.0)
        n = t.shape[0]
        t = t.reshape(n, self.n_blocks, self.n_gh, self.group_h, self.n_gw, self.group_w)
        return t.amax(dim=(3, 5)) if how == "max" else t.sum(dim=(3, 5))

    def _blocked(self, x: torch.Tensor) -> torch.Tensor:
        return self.by_block(x) if self.whole_blocks else x

    def _pixel_mask(self, m: torch.Tensor) -> torch.Tensor:
        if self.whole_blocks:
            return self.to_pixels(m).unsqueeze(2)
        return self.expand(m)

    def add_masked(self, base: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``base + expand(m) * x`` for ``(N, C, H, W)`` maps, broadcasting the mask over each
        block's channels instead of expanding it (a 0/1 mask makes the sum exact either way)."""
        if self.per_element:
            return _add_masked(base, x, m.reshape(base.shape))
        out = _add_masked(self._blocked(base), self._blocked(x), self._pixel_mask(m))
        return out.reshape(base.shape)

    def masked(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``expand(m) * x`` for a ``(N, C, H, W)`` map, broadcasting over each block."""
        if self.per_element:
            return x * m.reshape(x.shape)
        return (self._blocked(x) * self._pixel_mask(m)).reshape(x.shape)

    def _pad(self, x: torch.Tensor, value: float) -> torch.Tensor:
        pc, ph, pw = self.padding
        if pc or ph or pw:
            x = F.pad(x, (0, pw, 0, ph, 0, pc), value=value)
        return x.reshape(x.shape[0], *self.cell_shape)

    def valid_counts(self, device: torch.device | None = None) -> torch.Tensor:
        """Real (unpadded) elements in each ``(block, gh, gw)`` cell (float32; do not modify:
        it is cached per grid)."""
        return _valid_counts(self, torch.device("cpu") if device is None else torch.device(device))

    def reduce(self, x: torch.Tensor, how: str) -> torch.Tensor:
        """Score each ``(sample, block, gh, gw)`` cell of ``x`` by a registered score
        (:mod:`dynabit.config.scores`), or by its ``"sum"``."""
        if self.per_element:  # one element a cell: every score is the element itself
            return x.reshape(x.shape[0], self.n_blocks, self.n_gh, self.n_gw)
        if self.whole_blocks and how in ("max", "mean", "sum"):
            # Channels first, then the pixel map: the same values as the cell view, faster.
            if how == "max":
                return group_max(x, self)
            total = self.pixel_reduce(self.by_block(x).sum(dim=2), "sum")
            if how == "sum":
                return total
            return total / self.valid_counts(x.device).to(total.dtype)
        if how == "sum":
            return self._pad(x, 0.0).sum(dim=(2, 4, 6))
        score = score_for(how)
        cells = self._pad(x, score.pad_value(float("-inf")))
        return score.soft(cells, (2, 4, 6), lambda: self.valid_counts(x.device).to(x.dtype), torch)

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


class _AddMasked(torch.autograd.Function):
    """``base + x * m`` with ``m`` broadcast; backward without autograd's extra full copy."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, base: torch.Tensor, x: torch.Tensor, m: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(x, m)
        return torch.addcmul(base, x, m)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, m = ctx.saved_tensors
        grad_x = g * m if ctx.needs_input_grad[1] else None
        grad_m = (g * x).sum_to_size(m.shape) if ctx.needs_input_grad[2] else None
        return g, grad_x, grad_m


def _add_masked(base: torch.Tensor, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and (base.requires_grad or x.requires_grad or m.requires_grad):
        return _AddMasked.apply(base, x, m)
    return torch.addcmul(base, x, m)


class _GroupMax(torch.autograd.Function):
    """Max over each cell; the gradient is shared by the elements equal to the max (as
    ``amax``'s). Only the pixels whose channel max equals their cell's max can hold such an
    element, so the backward compares channels at those few pixels, not at every element."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, grid: Grid) -> torch.Tensor:  # type: ignore[override]
        pix = grid.by_block(x).amax(dim=2)
        score = grid.pixel_reduce(pix, "max")
        ctx.save_for_backward(x, pix, score)
        ctx.grid = grid
        return score

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        x, pix, score = ctx.saved_tensors
        grid: Grid = ctx.grid
        n_, b_, h_, w_ = (pix == grid.to_pixels(score)).nonzero(as_tuple=True)
        gi, gj = h_ // grid.group_h, w_ // grid.group_w
        blocks = grid.by_block(x)
        hit = blocks[n_, b_, :, h_, w_] == score[n_, b_, gi, gj].unsqueeze(1)  # (K, block_size)
        cell = ((n_ * grid.n_blocks + b_) * grid.n_gh + gi) * grid.n_gw + gj
        count = torch.zeros(score.numel(), dtype=g.dtype, device=g.device)
        count.index_add_(0, cell, hit.sum(dim=1).to(g.dtype))
        share = (g.reshape(-1) / count)[cell]
        out = torch.zeros_like(blocks)
        out[n_, b_, :, h_, w_] = torch.where(hit, share.unsqueeze(1), 0.0)
        return out.reshape(x.shape), None


def group_max(x: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Max of each ``(sample, block, gh, gw)`` cell of a whole-block ``(N, C, H, W)`` map."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _GroupMax.apply(x, grid)
    return grid.pixel_reduce(grid.by_block(x).amax(dim=2), "max")


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
