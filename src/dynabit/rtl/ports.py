"""The port groups every tile and scheduler share (the buffer protocol of ``docs/rtl.md``)."""

from __future__ import annotations

from typing import Any

from amaranth.lib.wiring import In, Out


def descriptor(ab: int) -> dict[str, Any]:
    """A ``start`` pulse with ``k_len``, ``n_groups``, ``n_blocks``; ``busy`` and ``done``."""
    return {
        "start": In(1),
        "k_len": In(ab),
        "n_groups": In(ab),
        "n_blocks": In(ab),
        "busy": Out(1),
        "done": Out(1),
    }


def read_port(name: str, ab: int, word: Any = None) -> dict[str, Any]:
    """A buffer read port ``<name>_rd_en/_addr`` (and ``_data`` of layout ``word``)."""
    out = {f"{name}_rd_en": Out(1), f"{name}_rd_addr": Out(ab)}
    return out if word is None else out | {f"{name}_rd_data": In(word)}


def drain(rows: int, ab: int, word: Any = None) -> dict[str, Any]:
    """The drain: ``out_valid``, the row, block and group (and ``out_data`` of ``word``)."""
    out = {
        "out_valid": Out(1),
        "out_row": Out(range(rows)),
        "out_block": Out(ab),
        "out_group": Out(ab),
    }
    return out if word is None else out | {"out_data": Out(word)}


def decisions(ab: int, refine: bool = True) -> dict[str, Any]:
    """Each tile's decision: ``dec_valid``, block and group (and ``dec_refine``)."""
    out = {"dec_valid": Out(1), "dec_block": Out(ab), "dec_group": Out(ab)}
    return out | {"dec_refine": Out(1)} if refine else out


def tile_members(
    rows: int, ab: int, act: Any, weights: Any, params: Any, out: Any, dynamic: bool, lo: Any = None
) -> dict[str, Any]:
    """A whole tile's ports: descriptor, the act/weight/param read ports, the drain, the perf
    counter; a dynamic tile adds its decisions (and the ``lo`` read port when it has one)."""
    members = (
        descriptor(ab)
        | read_port("act", ab, act)
        | read_port("w", ab, weights)
        | read_port("prm", ab, params)
        | drain(rows, ab, out)
        | {"perf_cycles": Out(32)}
    )
    if dynamic:
        members |= (read_port("lo", ab, lo) if lo is not None else {}) | decisions(ab)
    return members
