"""The skewed operand streams and the systolic wiring every output-stationary grid shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from amaranth.hdl import Module, Signal


def delay_taps(m: Module, v: Any, shape: Any, depth: int, name: str, ctl: bool = False) -> list:
    """``[v, v delayed 1, ..., v delayed depth]`` through registers named ``<name>_<d>``
    (control ones reset, data ones not)."""
    taps = [v]
    for d in range(depth):
        s = Signal(shape, name=f"{name}_{d}", reset_less=not ctl)
        m.d.sync += s.eq(taps[-1])
        taps.append(s)
    return taps


def wire_grid(
    m: Module,
    pes: Sequence[Sequence[Any]],
    act: Sequence[Any],
    ctl: Sequence[Any],
    w: Sequence[Any],
) -> None:
    """Add ``pes[r][c]`` as ``pe_<r>_<c>`` and wire them systolically: row ``r`` takes
    activations ``act[r]`` and control ``ctl[r]`` at its left edge and forwards them right;
    column ``c`` takes weights ``w[c]`` at the top and forwards them down."""
    for r, row in enumerate(pes):
        for c, pe in enumerate(row):
            m.submodules[f"pe_{r}_{c}"] = pe
            if c == 0:
                m.d.comb += [pe.a_in.eq(act[r]), pe.ctl_in.eq(ctl[r])]
            else:
                left = row[c - 1]
                m.d.comb += [pe.a_in.eq(left.a_out), pe.ctl_in.eq(left.ctl_out)]
            m.d.comb += pe.w_in.eq(w[c] if r == 0 else pes[r - 1][c].w_out)
