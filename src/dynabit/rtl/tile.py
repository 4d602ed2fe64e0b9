"""The tile: array + decision unit + scheduler, behind buffer interfaces.

Interfaces (one clock; a read issued at cycle ``t`` is answered at ``t + 1``, like a
synchronous SRAM; no back-pressure: the schedule is fixed and documented in ``docs/rtl.md``):

- descriptor: a ``start`` pulse with ``k_len`` (K >= 2), ``n_groups``, ``n_blocks`` held while
  ``busy``; ``done`` pulses when the last result has left the drain;
- ``act_rd_*``: the activation buffer, one vector of ``R`` lanes per (group, k) at address
  ``group * K + k``. Dynamic tile: the **high plane** (``B_hi``-bit lanes) plus ``keep``, the
  group's valid rows; uniform tile: the whole ``B``-bit code;
- ``lo_rd_*`` (dynamic): the **low plane**, ``B_lo``-bit lanes, same addressing, a separate
  buffer read only for refined tiles (plus one speculative vector for a possible epilogue);
- ``w_rd_*``: the weight buffer, ``C`` signed lanes per (block, k) at address ``block * K + k``;
- ``prm_rd_*``: per block (address ``block``): per-column bias, and for the dynamic tile the
  column valid bits and the decision constants (thresholds, or multipliers and ``X``);
- ``out_*``: one row of ``C`` accumulators (bias included) per cycle while ``out_valid``;
- ``dec_*`` (dynamic): each tile's decision, in the cycle it is taken;
- ``perf_cycles``: cycles spent in folds.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring

from dynabit.rtl.array import SystolicArray
from dynabit.rtl.decision import DecisionUnit
from dynabit.rtl.params import TileParams
from dynabit.rtl.ports import tile_members
from dynabit.rtl.scheduler import Scheduler


def act_layout(p: TileParams) -> data.StructLayout:
    """Word of the activation buffer: high-plane lanes and ``keep`` (dynamic) or full codes."""
    if p.dynamic:
        return data.StructLayout(
            {"lanes": data.ArrayLayout(p.hi_shape, p.rows), "keep": unsigned(p.rows)}
        )
    return data.StructLayout({"lanes": data.ArrayLayout(p.full_shape, p.rows)})


def lo_layout(p: TileParams) -> data.ArrayLayout:
    """Word of the low-plane buffer."""
    return data.ArrayLayout(p.lo_shape, p.rows)


def weight_layout(p: TileParams) -> data.ArrayLayout:
    """Word of the weight buffer: ``C`` signed weights."""
    return data.ArrayLayout(signed(p.weight_bits), p.cols)


def param_layout(p: TileParams) -> data.StructLayout:
    """Word of the block-parameter buffer."""
    fields: dict[str, object] = {"bias": data.ArrayLayout(signed(p.acc_bits), p.cols)}
    if p.dynamic:
        fields |= {"col_ok": unsigned(p.cols)}
        if p.score == "max":
            fields |= {"thr": data.ArrayLayout(p.thr_shape, p.cols)}
        else:
            fields |= {"mult": data.ArrayLayout(unsigned(p.mult_bits), p.cols), "x": p.x_shape}
    return data.StructLayout(fields)


def out_layout(p: TileParams) -> data.ArrayLayout:
    """One drained row: ``C`` accumulators with the bias added."""
    return data.ArrayLayout(signed(p.acc_bits), p.cols)


class Tile(wiring.Component):
    """A configured tile (dual-precision when ``p.dynamic``, else the uniform baseline)."""

    def __init__(self, p: TileParams) -> None:
        self.p = p
        ab = p.addr_bits
        members = tile_members(
            p.rows,
            ab,
            act_layout(p),
            weight_layout(p),
            param_layout(p),
            out_layout(p),
            p.dynamic,
            lo_layout(p) if p.dynamic else None,
        )
        super().__init__(members)
        self.sched = Scheduler(p)
        self.array = SystolicArray(p)
        self.decision = DecisionUnit(p) if p.dynamic else None

    def elaborate(self, platform: object) -> Module:
        p = self.p
        m = Module()
        sch, arr = self.sched, self.array
        m.submodules.scheduler = sch
        m.submodules.array = arr

        # Descriptor, status, read requests, drain bookkeeping.
        m.d.comb += [
            sch.start.eq(self.start),
            sch.k_len.eq(self.k_len),
            sch.n_groups.eq(self.n_groups),
            sch.n_blocks.eq(self.n_blocks),
            self.busy.eq(sch.busy),
            self.done.eq(sch.done),
            self.perf_cycles.eq(sch.perf_cycles),
            self.act_rd_en.eq(sch.act_rd_en),
            self.act_rd_addr.eq(sch.act_rd_addr),
            self.w_rd_en.eq(sch.w_rd_en),
            self.w_rd_addr.eq(sch.w_rd_addr),
            self.prm_rd_en.eq(sch.prm_rd_en),
            self.prm_rd_addr.eq(sch.prm_rd_addr),
            self.out_valid.eq(sch.out_valid),
            self.out_row.eq(sch.out_row),
            self.out_block.eq(sch.out_block),
            self.out_group.eq(sch.out_group),
            arr.copy.eq(sch.copy),
            arr.fctl.valid.eq(sch.f_valid),
            arr.fctl.restart.eq(sch.f_restart),
            arr.fw.eq(self.w_rd_data),
        ]

        # Block parameters of the tile in its high pass, arriving with its element 0.
        cfg = Signal(param_layout(p), name="cfg_cur", reset_less=True)
        drain_bias = Signal(
            data.ArrayLayout(signed(p.acc_bits), p.cols), name="drain_bias", reset_less=True
        )
        with m.If(sch.new_tile):
            m.d.sync += cfg.eq(self.prm_rd_data)
        # Drain: bottom shadow row + bias of the drained tile (wrapping, like the accumulator).
        for c in range(p.cols):
            m.d.comb += self.out_data[c].eq(arr.drain[c] + drain_bias[c])

        if not p.dynamic:
            with m.If(sch.copy):
                m.d.sync += drain_bias.eq(cfg.bias)
            m.d.comb += arr.fv.eq(self.act_rd_data.lanes)
            return m

        # ---- dynamic: low plane, bias of the low-pass tile, decision.
        dec = self.decision
        m.submodules.decision = dec
        bias_lo = Signal(
            data.ArrayLayout(signed(p.acc_bits), p.cols), name="bias_lo", reset_less=True
        )
        row_ok = Signal(p.rows, name="row_ok", reset_less=True)  # valid rows (high-pass tile)
        with m.If(sch.new_tile):
            m.d.sync += row_ok.eq(self.act_rd_data.keep)
        with m.If(sch.shift_lo):
            m.d.sync += bias_lo.eq(cfg.bias)
        with m.If(sch.copy):
            m.d.sync += drain_bias.eq(bias_lo)
        m.d.comb += [
            self.lo_rd_en.eq(sch.lo_rd_en),
            self.lo_rd_addr.eq(sch.lo_rd_addr),
            arr.fctl.hi.eq(sch.f_hi),
            arr.fctl.cmp.eq(sch.f_cmp),
            arr.fctl.bank.eq(sch.f_bank),
            arr.copy_bank.eq(sch.copy_bank),
            arr.sel_bank.eq(sch.sel_bank),
            dec.row_ok.eq(row_ok),
            dec.col_ok.eq(cfg.col_ok),
            sch.refine.eq(dec.refine),
            self.dec_valid.eq(sch.dec_valid),
            self.dec_block.eq(sch.dec_block),
            self.dec_group.eq(sch.dec_group),
            self.dec_refine.eq(dec.refine),
        ]
        if p.score == "max":
            m.d.comb += [arr.thr.eq(cfg.thr), dec.flags.eq(arr.flags)]
        else:
            m.d.comb += [dec.accs.eq(arr.accs), dec.mult.eq(cfg.mult), dec.x.eq(cfg.x)]

        # Activation lanes straight from the read port of the element's plane (sign- or
        # zero-extended to the multiplier's operand width).
        for r in range(p.rows):
            with m.If(sch.f_hi):
                m.d.comb += arr.fv[r].eq(self.act_rd_data.lanes[r])
            with m.Else():
                m.d.comb += arr.fv[r].eq(self.lo_rd_data[r])
        return m
