"""A tile of dot-product PEs: array + capture drain + decision unit + lane scheduler.

Same buffer protocol as :class:`dynabit.rtl.tile.Tile` (synchronous reads answered one cycle
later, no back-pressure), with one activation buffer for every design:

- ``act_rd_*``: one word per (group, step) at address ``group * S + step``: ``R`` rows of
  ``N`` whole codes (window elements ``step * N .. step * N + N - 1``, zeros past ``K``),
  plus ``keep`` (the group's valid rows) in the dual tile. The dual tile takes the high or
  the low bits of these codes; a refined tile reads its words twice (no second buffer);
- ``w_rd_*``: one word per (block, step): ``C`` columns of ``N`` weights (zeros past ``K``);
- ``prm_rd_*``: per block: bias per column; dual: valid columns and decision constants;
- ``out_*``: one row of ``C`` outputs (bias included) per cycle while ``out_valid``;
- ``dec_*`` (dual): each tile's decision in the cycle it is taken.

Each PE has one accumulator; a capture register per PE takes it when the ``snap`` token
passes (skewed like the operands), and the drain reads the captured rows through a row
multiplexer (a dual PE keeps its high-pass sum aligned by ``B_lo`` already, so an unrefined
tile drains without a shift).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring

from dynabit.rtl.decision import DecisionUnit
from dynabit.rtl.lane_params import (
    LaneTileParams,
    lane_act_layout,
    lane_out_layout,
    lane_param_layout,
    lane_weight_layout,
)
from dynabit.rtl.lane_scheduler import LaneScheduler
from dynabit.rtl.lanes import LaneParams, LanePE, lane_ctl_layout
from dynabit.rtl.ports import tile_members
from dynabit.rtl.skew import delay_taps, wire_grid


class LaneTile(wiring.Component):
    """An ``R x C`` tile of :class:`~dynabit.rtl.lanes.LanePE` (see the module doc)."""

    def __init__(self, p: LaneTileParams) -> None:
        self.p = p
        ab = p.addr_bits
        members = tile_members(
            p.rows,
            ab,
            lane_act_layout(p),
            lane_weight_layout(p),
            lane_param_layout(p),
            lane_out_layout(p),
            p.dynamic,
        )
        super().__init__(members)
        self.sched = LaneScheduler(p)
        self.pes = [[LanePE(p.pe) for _ in range(p.cols)] for _ in range(p.rows)]
        self.decision = DecisionUnit(p.decision_params()) if p.dynamic else None

    def elaborate(self, platform: object) -> Module:  # noqa: PLR0915 - one datapath
        p, pe_p = self.p, self.p.pe
        m = Module()
        sch = self.sched
        m.submodules.scheduler = sch
        rows, cols, n = p.rows, p.cols, p.lanes
        for name in ("start", "k_len", "n_groups", "n_blocks"):
            m.d.comb += getattr(sch, name).eq(getattr(self, name))
        for name in (
            "busy", "done", "perf_cycles", "act_rd_en", "act_rd_addr", "w_rd_en", "w_rd_addr",
            "prm_rd_en", "prm_rd_addr", "out_valid", "out_row", "out_block", "out_group",
        ):  # fmt: skip
            m.d.comb += getattr(self, name).eq(getattr(sch, name))

        # Block parameters, valid rows and the element-0 latch, loaded with a tile's first
        # high element. The latch keeps the weights and, of the activations, only the low
        # plane's operands: it feeds a refined tile's low element 0 and nothing else.
        cfg = Signal(lane_param_layout(p), name="cfg_cur", reset_less=True)
        latch_w = Signal(lane_weight_layout(p), name="latch_w", reset_less=True)
        with m.If(sch.new_tile):
            m.d.sync += [cfg.eq(self.prm_rd_data), latch_w.eq(self.w_rd_data)]

        # Operands of element t: the plane's bits of the port's whole codes, or the latch.
        codes = self.act_rd_data.lanes
        fw = data.View(
            lane_weight_layout(p),
            Mux(sch.f_latch, latch_w.as_value(), self.w_rd_data.as_value()),
        )
        fv = Signal(data.ArrayLayout(data.ArrayLayout(pe_p.act_shape, n), rows), name="fv")
        latch_lo = None
        if p.dynamic:
            lo_shape = pe_p.act_shape if pe_p.midpoint else unsigned(pe_p.lo_bits)
            latch_lo = Signal(
                data.ArrayLayout(data.ArrayLayout(lo_shape, n), rows),
                name="latch_lo",
                reset_less=True,
            )
        offsets = _plane_offsets(pe_p.planes)
        for r in range(rows):
            for i in range(n):
                q = Value.cast(codes[r][i])
                val = Signal(pe_p.act_shape, name=f"plane_r{r}_l{i}")
                if pe_p.midpoint:
                    low = _midpoint_planes(m, pe_p, q, sch.f_plane, val)
                else:
                    low = q[: pe_p.planes[-1]]
                    with m.Switch(sch.f_plane):
                        for j, (width, off) in enumerate(zip(pe_p.planes, offsets, strict=True)):
                            with m.Case(j):
                                bits = q[off : off + width]
                                top = j == 0 and pe_p.act_signed
                                m.d.comb += val.eq(bits.as_signed() if top else bits)
                if latch_lo is None:
                    m.d.comb += fv[r][i].eq(val)
                    continue
                with m.If(sch.new_tile):
                    m.d.sync += latch_lo[r][i].eq(low)
                m.d.comb += fv[r][i].eq(Mux(sch.f_latch, latch_lo[r][i], val))

        ctl = Signal(lane_ctl_layout(pe_p), name="fctl")
        m.d.comb += [ctl.valid.eq(sch.f_valid), ctl.restart.eq(sch.f_restart)]
        if p.dynamic:
            m.d.comb += [ctl.low.eq(sch.f_plane != 0), ctl.cmp.eq(sch.f_cmp)]
        elif len(pe_p.planes) > 1:
            m.d.comb += ctl.shift.eq(sch.f_shift)

        # Skew: control and activations delayed r cycles per row, weights c per column, the
        # snap r + c per PE; the PEs forward all three (registered) to their neighbours.
        ctl_taps = delay_taps(m, ctl, lane_ctl_layout(pe_p), rows - 1, "ctl_skew", ctl=True)
        snap_taps = delay_taps(m, sch.f_snap, 1, rows + cols - 2, "snap_skew", ctl=True)
        act_taps = [
            delay_taps(m, fv[r], fv.shape().elem_shape, r, f"act_skew_r{r}")[-1]
            for r in range(rows)
        ]
        w_taps = [
            delay_taps(m, fw[c], fw.shape().elem_shape, c, f"w_skew_c{c}")[-1] for c in range(cols)
        ]

        thr = None
        if p.dynamic and p.score == "max":
            # A tile's first compare may fall in the cycle its parameters arrive (S = 1).
            thr = Mux(sch.new_tile, self.prm_rd_data.thr.as_value(), cfg.thr.as_value())
            thr = data.View(cfg.thr.shape(), thr)
        wire_grid(m, self.pes, act_taps, ctl_taps, w_taps)
        caps = []
        for r in range(rows):
            row_caps = []
            for c in range(cols):
                pe = self.pes[r][c]
                if thr is not None:
                    m.d.comb += pe.thr.eq(thr[c])
                cap = Signal(signed(pe_p.width), name=f"cap_{r}_{c}", reset_less=True)
                with m.If(snap_taps[r + c]):
                    m.d.sync += cap.eq(pe.acc)
                row_caps.append(cap)
            caps.append(row_caps)

        # Drain: the captured row plus the bias (the refined one with the mid-point offset).
        bias = Signal(
            data.ArrayLayout(signed(p.out_bits), cols), name="drain_bias", reset_less=True
        )
        with m.If(sch.f_snap):
            m.d.sync += bias.eq(cfg.bias)
        bias_lo = None
        if pe_p.low_offset:  # a refined tile's bias also removes low_offset * sum_k w_k
            bias_lo = Signal.like(bias, name="drain_bias_lo", reset_less=True)
            with m.If(sch.f_snap):
                m.d.sync += bias_lo.eq(cfg.bias_lo)
        for c in range(cols):
            row = Signal(signed(pe_p.width), name=f"drain_col{c}")
            with m.Switch(sch.out_row):
                for r in range(rows):
                    with m.Case(r):
                        m.d.comb += row.eq(caps[r][c])
            b = bias[c] if bias_lo is None else Mux(sch.out_shift, bias[c], bias_lo[c])
            m.d.comb += self.out_data[c].eq(row + b)
        if not p.dynamic:
            return m

        dec = self.decision
        m.submodules.decision = dec
        row_ok = Signal(rows, name="row_ok", reset_less=True)
        with m.If(sch.new_tile):
            m.d.sync += row_ok.eq(self.act_rd_data.keep)
        m.d.comb += [
            dec.row_ok.eq(row_ok),
            dec.col_ok.eq(cfg.col_ok),
            sch.refine.eq(dec.refine),
            self.dec_valid.eq(sch.dec_valid),
            self.dec_block.eq(sch.dec_block),
            self.dec_group.eq(sch.dec_group),
            self.dec_refine.eq(dec.refine),
        ]
        if p.score == "max":
            m.d.comb += dec.flags.eq(
                Cat(*(self.pes[r][c].flag for r in range(rows) for c in range(cols)))
            )
        else:
            m.d.comb += [dec.mult.eq(cfg.mult), dec.x.eq(cfg.x)]
            for r in range(rows):
                for c in range(cols):
                    # the PE holds the high sum aligned by the shift, as the host expects
                    m.d.comb += dec.accs[r * cols + c].eq(self.pes[r][c].acc)
        return m


def _midpoint_planes(m: Module, pe: LaneParams, q: Value, plane: Value, out: Value) -> Value:
    """One lane's mid-point operands (module doc of :mod:`dynabit.rtl.lanes`): plane 0 is
    ``h' = 2 q_hi + nz``, plane 1 the residual ``r`` (signed codes) or ``r + 2^(B_lo-1)``
    (unsigned), with ``nz = [q_hi != 0]``; returns the plane-1 operand."""
    lo = pe.lo_bits
    q_hi, q_lo = q[lo:], q[:lo]
    nz = q_hi.any()
    top = q_lo[lo - 1]
    if pe.act_signed:
        h = Cat(nz, q_hi).as_signed()
        r = Cat(q_lo[: lo - 1], top ^ nz, nz & ~top).as_signed()
    else:
        h, z = Cat(nz, q_hi), ~nz
        r = Cat(q_lo[: lo - 1], top ^ z, top & z)
    m.d.comb += out.eq(Mux(plane == 0, h, r))
    return r


def _plane_offsets(planes: tuple[int, ...]) -> list[int]:
    """Bit offset of each plane inside the code (planes most significant first)."""
    out, low = [], 0
    for width in reversed(planes):
        out.append(low)
        low += width
    return out[::-1]
