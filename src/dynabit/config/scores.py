"""Group scores: how the values of one ``(block, group)`` cell become the number compared
with the block's threshold.

Each score is one class here, registered in :data:`SCORES` and named in :data:`Score`. Its
methods are written once against an array module ``xp`` (``numpy`` or ``torch``: both spell
``amax``, ``sum`` and ``floor_divide`` alike), so the training layers, the frozen layers, the
integer engine, the numpy golden model of the RTL and the ONNX export all compute the same
score from the same code. The RTL decision unit implements each score in hardware
(:mod:`dynabit.rtl.decision`); a new score needs a datapath there too.

To add a score: write a :class:`GroupScore` subclass below, add it to :data:`SCORES` and its
name to :data:`Score`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

Score = Literal["max", "mean"]


class GroupScore:
    """One way of scoring a cell. ``cells`` hold a cell's values along ``axes``; ``counts()``
    gives the real (unpadded) elements of each cell, broadcastable to the reduced shape (a
    callable, so a score that does not need them costs nothing)."""

    name: ClassVar[str]
    description: ClassVar[str]

    def pad_value(self, lowest: Any) -> Any:
        """What padded elements (outside the map) hold so they never change the score;
        ``lowest`` is the smallest value of the data's type."""
        raise NotImplementedError

    def exact(self, cells: Any, axes: Any, counts: Callable[[], Any], xp: Any) -> Any:
        """The integer score of integer ``cells`` (frozen layer, engine, RTL)."""
        raise NotImplementedError

    def soft(self, cells: Any, axes: Any, counts: Callable[[], Any], xp: Any) -> Any:
        """The float score of float ``cells`` (training and float evaluation)."""
        raise NotImplementedError

    def onnx(self, b: Any, cells: str, axes: str, counts: Callable[[], Any], base: str) -> str:
        """ONNX nodes computing :meth:`exact` with builder ``b`` (``b.node``, ``b.const``,
        ``b.floor_div``); ``counts()`` is a numpy array. Returns the score's tensor name."""
        raise NotImplementedError


class MaxScore(GroupScore):
    """The largest value: one comparator per element and an OR in hardware."""

    name = "max"
    description = "max (comparators + OR)"

    def pad_value(self, lowest: Any) -> Any:
        return lowest

    def exact(self, cells: Any, axes: Any, counts: Any, xp: Any) -> Any:
        return xp.amax(cells, axes)

    def soft(self, cells: Any, axes: Any, counts: Any, xp: Any) -> Any:
        return xp.amax(cells, axes)

    def onnx(self, b: Any, cells: str, axes: str, counts: Any, base: str) -> str:
        return b.node("ReduceMax", [cells, axes], base + "_score", keepdims=0)


class MeanScore(GroupScore):
    """The mean over the cell's real elements (the floor of it, in integers)."""

    name = "mean"
    description = "mean (an adder tree and one multiplier per column)"

    def pad_value(self, lowest: Any) -> Any:
        return 0

    def exact(self, cells: Any, axes: Any, counts: Any, xp: Any) -> Any:
        return xp.floor_divide(xp.sum(cells, axes), counts())

    def soft(self, cells: Any, axes: Any, counts: Any, xp: Any) -> Any:
        return xp.sum(cells, axes) / counts()

    def onnx(self, b: Any, cells: str, axes: str, counts: Any, base: str) -> str:
        total = b.node("ReduceSum", [cells, axes], base + "_total", keepdims=0)
        return b.floor_div(total, b.const(counts(), base + "_counts"), base + "_score")


SCORES: dict[str, GroupScore] = {s.name: s() for s in (MaxScore, MeanScore)}
SCORE_NAMES: tuple[str, ...] = tuple(SCORES)
DEFAULT_SCORE = "max"


def score_for(name: str) -> GroupScore:
    """The registered score called ``name``; a ``ValueError`` naming the allowed ones."""
    try:
        return SCORES[name]
    except (KeyError, TypeError):
        allowed = ", ".join(SCORE_NAMES)
        raise ValueError(f"unknown score {name!r}; allowed: {allowed}") from None
