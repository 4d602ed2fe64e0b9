"""The processing element: a chunk x weight multiply-accumulate into one of two accumulators.

One PE of the output-stationary array owns one output position. Each cycle its control token
is valid it multiplies the activation chunk arriving from the left by the weight arriving from
the top and adds the product — shifted left by ``B_lo`` for a high-plane chunk — to the
accumulator *bank* the token names, then forwards both operands (registered) to its right and
bottom neighbours. Two banks let a fold stream the high pass of tile ``i`` into one bank while
continuing the low pass of tile ``i-1`` in the other. ``restart`` (first high element) starts a
fresh sum; the low pass continues it. With the last high element (``cmp``) the PE registers
``sum > thr`` — the per-PE comparator of the ``max`` decision.

The uniform baseline PE has one bank, no shift and no comparator: it multiplies the whole
``B``-bit code.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynabit.rtl.params import TileParams


def ctl_layout(p: TileParams) -> data.StructLayout:
    """The control token that travels with the activations.

    ``valid``: an operand pair is present; ``restart``: first element of a high pass (the sum
    restarts from 0); dynamic only: ``hi`` (a high-plane chunk: shift by ``B_lo``), ``cmp``
    (last high element: compare) and ``bank`` (which accumulator).
    """
    fields = {"valid": 1, "restart": 1}
    if p.dynamic:
        fields |= {"hi": 1, "cmp": 1, "bank": 1}
    return data.StructLayout(fields)


class PE(wiring.Component):
    """``act_shape`` x ``signed(W)`` MAC into wrapping ``signed(acc_bits)`` accumulators.

    Ports: ``a_in``/``w_in``/``ctl_in`` in, ``a_out``/``w_out``/``ctl_out`` out (registered
    copies for the neighbours). Dynamic PEs: ``acc0``/``acc1`` (the banks), ``thr`` (the
    column's threshold, ``acc_bits + 1`` bits), ``flag``. Uniform PEs: ``acc``. The
    accumulators hold the sums without the bias, which the drain adds.
    """

    def __init__(self, p: TileParams) -> None:
        self.p = p
        members = {
            "a_in": In(p.act_shape),
            "w_in": In(signed(p.weight_bits)),
            "ctl_in": In(ctl_layout(p)),
            "a_out": Out(p.act_shape),
            "w_out": Out(signed(p.weight_bits)),
            "ctl_out": Out(ctl_layout(p)),
        }
        if p.dynamic:
            members |= {
                "acc0": Out(signed(p.acc_bits)),
                "acc1": Out(signed(p.acc_bits)),
                "thr": In(p.thr_shape),
                "flag": Out(1),
            }
        else:
            members |= {"acc": Out(signed(p.acc_bits))}
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        p = self.p
        m = Module()
        ctl = self.ctl_in
        # Datapath registers carry no reset (only the control token must start invalid).
        a_reg = Signal(p.act_shape, name="a_reg", reset_less=True)
        w_reg = Signal(signed(p.weight_bits), name="w_reg", reset_less=True)
        m.d.sync += [a_reg.eq(self.a_in), w_reg.eq(self.w_in), self.ctl_out.eq(ctl)]
        m.d.comb += [self.a_out.eq(a_reg), self.w_out.eq(w_reg)]
        prod = Signal(signed(p.weight_bits + p.act_shape.width + 1))
        m.d.comb += prod.eq(self.w_in * self.a_in)
        acc_next = Signal(signed(p.acc_bits))  # assignment truncates: two's-complement wrap
        if not p.dynamic:
            acc = Signal(signed(p.acc_bits), name="acc_reg", reset_less=True)
            m.d.comb += [acc_next.eq(Mux(ctl.restart, 0, acc) + prod), self.acc.eq(acc)]
            with m.If(ctl.valid):
                m.d.sync += acc.eq(acc_next)
            return m
        acc0 = Signal(signed(p.acc_bits), name="acc0_reg", reset_less=True)
        acc1 = Signal(signed(p.acc_bits), name="acc1_reg", reset_less=True)
        flag = Signal(name="flag_reg", reset_less=True)
        term = Mux(ctl.hi, prod << p.lo_bits, prod)
        m.d.comb += [
            acc_next.eq(Mux(ctl.restart, 0, Mux(ctl.bank, acc1, acc0)) + term),
            self.acc0.eq(acc0),
            self.acc1.eq(acc1),
            self.flag.eq(flag),
        ]
        with m.If(ctl.valid):
            with m.If(ctl.bank):
                m.d.sync += acc1.eq(acc_next)
            with m.Else():
                m.d.sync += acc0.eq(acc_next)
            with m.If(ctl.cmp):
                m.d.sync += flag.eq(acc_next > self.thr)
        return m
