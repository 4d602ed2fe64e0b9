"""The ``R x C`` output-stationary systolic array with its skew buffers and output drain.

Rows hold output pixels, columns output channels. Activation lanes enter on the left, row ``r``
delayed by ``r`` cycles; weight lanes enter on the top, column ``c`` delayed by ``c`` cycles;
so PE ``(r, c)`` sees element ``e`` of a fold's operand streams at cycle ``e + r + c`` of the
fold. The control token follows the activations (one shared delay chain taps each row).

The drain is double-buffered: ``copy`` moves every PE's accumulator (bank ``copy_bank``) into a
shadow register at once, and the shadow rows then shift down one per cycle, leaving the array
at the bottom, row ``R-1`` first, while the next fold computes.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynabit.rtl.params import TileParams
from dynabit.rtl.pe import PE, ctl_layout
from dynabit.rtl.skew import delay_taps, wire_grid


class SystolicArray(wiring.Component):
    """PE grid plus skew buffers and the shadow-register drain.

    Ports: ``fv`` (``R`` activation lanes), ``fctl`` (control token), ``fw`` (``C`` weight
    lanes), ``copy`` (snapshot into the drain), ``drain`` (the bottom shadow row). Dynamic
    arrays also take ``thr`` (one threshold per column), ``copy_bank`` and ``sel_bank`` (the
    bank that ``accs`` shows, row-major, for the mean decision) and give ``flags``
    (bit ``r*C + c``); uniform arrays show their single bank in ``accs``.
    """

    def __init__(self, p: TileParams) -> None:
        self.p = p
        r, c = p.rows, p.cols
        members = {
            "fv": In(data.ArrayLayout(p.act_shape, r)),
            "fctl": In(ctl_layout(p)),
            "fw": In(data.ArrayLayout(signed(p.weight_bits), c)),
            "copy": In(1),
            "drain": Out(data.ArrayLayout(signed(p.acc_bits), c)),
            "accs": Out(data.ArrayLayout(signed(p.acc_bits), r * c)),
        }
        if p.dynamic:
            members |= {
                "thr": In(data.ArrayLayout(p.thr_shape, c)),
                "copy_bank": In(1),
                "sel_bank": In(1),
                "flags": Out(r * c),
            }
        super().__init__(members)
        self.pes = [[PE(p) for _ in range(c)] for _ in range(r)]

    def elaborate(self, platform: object) -> Module:
        p = self.p
        m = Module()
        rows, cols = p.rows, p.cols

        # Skew buffers: a shared control chain, one activation chain per row, one weight
        # chain per column (row/column i is i registers deep).
        ctl_taps = delay_taps(m, self.fctl, ctl_layout(p), rows - 1, "ctl_skew", ctl=True)
        w_shape = signed(p.weight_bits)
        act_taps = [
            delay_taps(m, self.fv[r], p.act_shape, r, f"act_skew_r{r}")[-1] for r in range(rows)
        ]
        w_taps = [delay_taps(m, self.fw[c], w_shape, c, f"w_skew_c{c}")[-1] for c in range(cols)]
        wire_grid(m, self.pes, act_taps, ctl_taps, w_taps)

        for r in range(rows):
            for c in range(cols):
                pe = self.pes[r][c]
                if p.dynamic:
                    m.d.comb += [pe.thr.eq(self.thr[c]), self.flags[r * cols + c].eq(pe.flag)]
                    if p.score == "mean":
                        m.d.comb += self.accs[r * cols + c].eq(Mux(self.sel_bank, pe.acc1, pe.acc0))
                else:
                    m.d.comb += self.accs[r * cols + c].eq(pe.acc)

        # Drain: shadow registers loaded in parallel, shifted down one row per cycle.
        for c in range(cols):
            prev = None
            for r in range(rows):
                pe = self.pes[r][c]
                sh = Signal(signed(p.acc_bits), name=f"shadow_{r}_{c}", reset_less=True)
                src = Mux(self.copy_bank, pe.acc1, pe.acc0) if p.dynamic else pe.acc
                with m.If(self.copy):
                    m.d.sync += sh.eq(src)
                with m.Else():
                    m.d.sync += sh.eq(prev if prev is not None else 0)
                prev = sh
            m.d.comb += self.drain[c].eq(prev)
        return m
