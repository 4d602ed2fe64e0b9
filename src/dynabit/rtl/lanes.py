"""Dot-product PEs: ``N`` lanes summed by an adder tree into ONE accumulator.

One PE owns one output position, like :class:`~dynabit.rtl.pe.PE`, but each valid cycle it
takes ``N`` activation chunks (``N`` input channels of the streamed dimension ``K``) and ``N``
weights, multiplies them lane by lane, sums the ``N`` products with a balanced adder tree and
adds the sum to a single accumulator. The tree is a unit of its own (its sum is a kept
``tree_bits``-wide signal, the module doc's formula), as in the published dot-product cells:
the accumulator adder takes the tree's sum, it is not merged into the tree's carry-save
reduction (where every product would be sign-extended to the accumulator's width).
Every design streams its activation code as one or more *planes*, most significant first, so
the finished accumulator holds ``sum_k w_k * q_k`` for the whole code ``q``:

- ``dual``: planes ``q_hi`` (``B_hi`` bits) and, for a refined tile only, ``q_lo`` (``B_lo``
  bits). The shift by ``B_lo`` is folded into the tree's output: a high-plane element adds
  ``tree << B_lo``, a low-plane element ``tree`` (a ``tree_bits``-wide multiplexer, where a
  shift of the accumulator would be an ``acc_bits``-wide one), so the high pass leaves
  ``(sum w q_hi) << B_lo`` in the accumulator and a refined tile simply continues it; the drain
  needs no shift. The comparator reads the high-pass sum above the ``B_lo`` always-zero low
  bits, so it is as wide as the high-pass sum, not the full accumulator;
- ``int8`` / ``int4``: one plane, the whole ``B``-bit code (bit-parallel ``B x W`` lanes);
- ``bitserial`` (in the manner of Stripes): ``ceil(B / s)`` planes of ``s`` bits (``s`` = 1 or
  2); a lane multiplier is ``s`` AND-rows, and the cost is proportional to the bit width. The
  first element of every plane but the first shifts the accumulator left by ``s``
  (``acc <- (acc << s) + tree``).

Signed codes: the top plane is signed, the lower planes unsigned (two's complement split).

Mid-point offset (``dual`` with ``midpoint``, the engine's ``_split``): the high value of a
code is ``hi = (q_hi << B_lo) + 2^(B_lo-1) nz`` with ``nz = [q_hi != 0]``, the low residual
``r = q - hi``, in ``[-2^(B_lo-1), 2^B_lo)``. The PE streams the high plane as the
``(B_hi + 1)``-bit value ``h' = 2 q_hi + nz`` (``nz`` appended below ``q_hi``'s bits) and
shifts by ``B_lo - 1`` instead of ``B_lo``, so the high-pass sum is
``sum w h' = (sum w hi) / 2^(B_lo-1)`` exactly and the decision compares it. The low plane:

- signed codes: ``r`` itself, a signed ``(B_lo + 1)``-bit value (``q_lo`` with its top bit
  inverted where ``nz``, sign ``nz & ~q_lo[B_lo-1]``): the operand is ``signed(B_lo + 1)``
  already, so the multiplier keeps its width;
- unsigned codes: ``r + 2^(B_lo-1) = q_lo + 2^(B_lo-1) [q_hi = 0]``, unsigned ``B_lo + 1``
  bits, so the operand stays unsigned (one multiplier row more than the plain PE, no sign
  row); the refined sum is then ``sum w q + 2^(B_lo-1) sum_k w_k``, a per-output-channel
  constant the drain removes with a second bias (:attr:`LaneParams.low_offset`).

Both plane values are formed once per row lane at the tile's edge; in the PE the changes are
the one-bit-wider activation operand and comparator. Every running sum is a sum of per-lane
terms ``w hi`` or ``w (q + low_offset)``, which the accumulator width below covers.

Accumulator width (worst case over ``K`` streamed elements, weights in ``[-2^(W-1), 2^(W-1))``,
``a_max`` the largest code magnitude, ``2^B - 1`` unsigned or ``2^(B-1)`` signed)::

    acc_bits(K) = bitlen(K * a_max * 2^(W-1)) + 1

the adder tree's sum ``tree_bits = bitlen(N * p_max * 2^(W-1)) + 1`` with ``p_max`` the
largest magnitude of a lane's activation operand, and the dual comparator and threshold
register ``bitlen(K * h_max * 2^(W-1)) + 1`` with ``h_max`` the largest high chunk (the host
clamps a threshold into that signed range, which keeps every outcome: the high-pass sum never
reaches its most negative value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynabit.rtl.decision import tree_sum

Design = Literal["dual", "int8", "int4", "bitserial"]
DESIGNS: tuple[str, ...] = ("dual", "int8", "int4", "bitserial")


def code_magnitude(bits: int, act_signed: bool) -> int:
    """Largest ``|q|`` of a ``bits``-bit code."""
    return (1 << (bits - 1)) if act_signed else (1 << bits) - 1


def sum_bits(k: int, code_bits: int, weight_bits: int, act_signed: bool) -> int:
    """Signed width holding any ``sum_{k<K} w_k q_k`` exactly (the module doc's formula)."""
    if k < 1:
        raise ValueError(f"K must be >= 1, got {k}")
    bound = k * code_magnitude(code_bits, act_signed) * (1 << (weight_bits - 1))
    return bound.bit_length() + 1


@dataclass(frozen=True)
class LaneParams:
    """One dot-product PE design: ``lanes`` N, the design kind and the bit widths.

    ``k_max`` is the largest streamed dimension the PE must sum without overflow; the
    accumulator width follows from it unless ``acc_bits`` is given, in which case a too
    narrow accumulator raises ``ValueError`` naming both. ``bits`` is the code width of the
    uniform and bit-serial designs (default: ``hi_bits + lo_bits`` for ``int8`` and
    ``bitserial``, ``hi_bits`` for ``int4``); ``serial_bits`` the bits per bit-serial step.
    """

    lanes: int = 8
    design: Design = "dual"
    hi_bits: int = 4
    lo_bits: int = 4
    weight_bits: int = 8
    k_max: int = 4608
    act_signed: bool = False
    serial_bits: int = 1
    bits: int | None = None
    acc_bits: int | None = None
    midpoint: bool = False

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValueError(f"design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        if self.midpoint and self.design != "dual":
            raise ValueError(f"midpoint is a dual-design option, got design {self.design!r}")
        if self.lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {self.lanes}")
        if self.hi_bits < 1 or self.lo_bits < 1 or self.weight_bits < 2:
            raise ValueError("hi_bits, lo_bits >= 1 and weight_bits >= 2")
        if self.serial_bits not in (1, 2):
            raise ValueError(f"serial_bits must be 1 or 2, got {self.serial_bits}")
        if self.acc_bits is not None and self.acc_bits < self.needed_acc_bits:
            raise ValueError(
                f"acc_bits={self.acc_bits} is too narrow for K={self.k_max}: "
                f"{self.design} with {self.code_bits}-bit codes and {self.weight_bits}-bit "
                f"weights needs {self.needed_acc_bits} bits"
            )

    # ------------------------------------------------------------------ derived
    @property
    def code_bits(self) -> int:
        """Bits of the whole activation code the PE accumulates."""
        if self.bits is not None:
            return self.bits
        return self.hi_bits if self.design == "int4" else self.hi_bits + self.lo_bits

    @property
    def needed_acc_bits(self) -> int:
        """``acc_bits(K_max)`` of the module doc (``a_max + low_offset`` with the offset)."""
        if self.low_offset:
            top = self.k_max * (code_magnitude(self.code_bits, False) + self.low_offset)
            return (top << (self.weight_bits - 1)).bit_length() + 1
        return sum_bits(self.k_max, self.code_bits, self.weight_bits, self.act_signed)

    @property
    def width(self) -> int:
        """The accumulator width in use."""
        return self.acc_bits if self.acc_bits is not None else self.needed_acc_bits

    @property
    def cmp_bits(self) -> int:
        """Dual design: width of the compared high-pass sum (of ``h'`` with ``midpoint``)."""
        hi = self.hi_bits + int(self.midpoint)  # |2 q_hi + 1| fits a (B_hi + 1)-bit code
        return sum_bits(self.k_max, hi, self.weight_bits, self.act_signed)

    @property
    def tree_bits(self) -> int:
        """Width of the adder tree's sum: ``bitlen(N * p_max * 2^(W-1)) + 1`` (module doc)."""
        a = self.act_shape
        p_max = (1 << (a.width - 1)) if a.signed else (1 << a.width) - 1
        return (self.lanes * p_max << (self.weight_bits - 1)).bit_length() + 1

    @property
    def low_offset(self) -> int:
        """What the unsigned mid-point low plane adds to each residual: ``2^(B_lo-1)``, else 0."""
        return (1 << (self.lo_bits - 1)) if self.midpoint and not self.act_signed else 0

    @property
    def thr_shape(self) -> Shape:
        """The threshold register: as wide as the compared sum (the host clamps into it)."""
        return signed(self.cmp_bits)

    @property
    def planes(self) -> tuple[int, ...]:
        """Plane widths, most significant first (the dual design's full schedule)."""
        if self.design == "dual":
            return (self.hi_bits, self.lo_bits)
        if self.design == "bitserial":
            s, b = self.serial_bits, self.code_bits
            top = b - s * ((b - 1) // s)  # the remainder goes to the top plane
            return (top,) + (s,) * ((b - 1) // s)
        return (self.code_bits,)

    @property
    def act_shape(self) -> Shape:
        """A lane's activation operand: the widest plane (+1 bit for the signed top plane).

        ``midpoint``: ``h'`` and the low plane, ``B_hi + 1`` and ``B_lo + 1`` bits, signed
        with the codes.
        """
        if self.midpoint:
            width = max(self.hi_bits, self.lo_bits) + 1
            return signed(width) if self.act_signed else unsigned(width)
        top, rest = self.planes[0], self.planes[1:]
        if self.act_signed:
            return signed(max([top] + [r + 1 for r in rest]))
        return unsigned(max(self.planes))

    @property
    def shift(self) -> int:
        """The accumulator shift at a plane change (all lower planes have this width;
        ``B_lo - 1`` with ``midpoint``, whose high plane carries one low bit)."""
        if self.midpoint:
            return self.lo_bits - 1
        return self.planes[-1] if len(self.planes) > 1 else 0

    @property
    def tag(self) -> str:
        """Short name, e.g. ``dual8_b4+4_w8`` or ``bitserial8_s1_b8_w8``."""
        n, w = self.lanes, self.weight_bits
        if self.design == "dual":
            return f"dual{n}_b{self.hi_bits}+{self.lo_bits}_w{w}" + ("_mid" * self.midpoint)
        if self.design == "bitserial":
            return f"bitserial{n}_s{self.serial_bits}_b{self.code_bits}_w{w}"
        return f"{self.design}{n}_b{self.code_bits}_w{w}"

    def plane_chunks(self, q: int) -> list[int]:
        """Split code ``q`` into the design's plane values, most significant first
        (``midpoint``: ``[h', r]`` of the module doc)."""
        if self.midpoint:
            q_hi, lo = q >> self.lo_bits, self.lo_bits
            nz = int(q_hi != 0)
            return [2 * q_hi + nz, q - (q_hi << lo) - (nz << (lo - 1)) + self.low_offset]
        out = []
        low = 0
        for width in reversed(self.planes[1:]):
            out.append((q >> low) & ((1 << width) - 1))
            low += width
        out.append(q >> low)  # arithmetic shift: signed top plane for signed codes
        return out[::-1]


def lane_ctl_layout(p: LaneParams) -> data.StructLayout:
    """Control token: ``valid``, ``restart`` (first element of the first plane); bit-serial:
    ``shift`` (first element of a later plane: shift the accumulator first); dual: ``low``
    (a low-plane element: add the tree unshifted) and ``cmp`` (last high-plane element:
    register the comparison)."""
    fields = {"valid": 1, "restart": 1}
    if p.design == "dual":
        fields |= {"low": 1, "cmp": 1}
    elif len(p.planes) > 1:
        fields |= {"shift": 1}
    return data.StructLayout(fields)


class LanePE(wiring.Component):
    """``N``-lane dot-product PE with one wrapping ``signed(width)`` accumulator.

    Ports: ``a_in``/``w_in`` (``N`` lanes each), ``ctl_in``; registered copies ``a_out``,
    ``w_out``, ``ctl_out`` for the neighbours; ``acc``; dual: ``thr`` in and ``flag`` out.
    """

    def __init__(self, p: LaneParams) -> None:
        self.p = p
        n = p.lanes
        a_lay = data.ArrayLayout(p.act_shape, n)
        w_lay = data.ArrayLayout(signed(p.weight_bits), n)
        members = {
            "a_in": In(a_lay),
            "w_in": In(w_lay),
            "ctl_in": In(lane_ctl_layout(p)),
            "a_out": Out(a_lay),
            "w_out": Out(w_lay),
            "ctl_out": Out(lane_ctl_layout(p)),
            "acc": Out(signed(p.width)),
        }
        if p.design == "dual":
            members |= {"thr": In(p.thr_shape), "flag": Out(1)}
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        p = self.p
        m = Module()
        ctl = self.ctl_in
        a_reg = Signal.like(self.a_out, name="a_reg", reset_less=True)
        w_reg = Signal.like(self.w_out, name="w_reg", reset_less=True)
        m.d.sync += [a_reg.eq(self.a_in), w_reg.eq(self.w_in), self.ctl_out.eq(ctl)]
        m.d.comb += [self.a_out.eq(a_reg), self.w_out.eq(w_reg)]
        prods = [self.w_in[i] * self.a_in[i] for i in range(p.lanes)]
        # the tree's own sum (exact at tree_bits), kept apart from the accumulator adder
        tree = Signal(signed(p.tree_bits), name="tree", attrs={"keep": 1})
        m.d.comb += tree.eq(tree_sum(prods))
        acc = Signal(signed(p.width), name="acc_reg", reset_less=True)
        base = Signal(signed(p.width), name="acc_base")
        addend = Signal(signed(p.width), name="acc_addend")
        if p.design == "dual":  # the shift by B_lo is on the tree's side (module doc)
            m.d.comb += [
                base.eq(Mux(ctl.restart, 0, acc)),
                addend.eq(Mux(ctl.low, tree, tree << p.shift)),
            ]
        elif len(p.planes) > 1:
            m.d.comb += [
                base.eq(Mux(ctl.restart, 0, Mux(ctl.shift, acc << p.shift, acc))),
                addend.eq(tree),
            ]
        else:
            m.d.comb += [base.eq(Mux(ctl.restart, 0, acc)), addend.eq(tree)]
        acc_next = Signal(signed(p.width), name="acc_next")  # truncation: two's-complement wrap
        m.d.comb += [acc_next.eq(base + addend), self.acc.eq(acc)]
        with m.If(ctl.valid):
            m.d.sync += acc.eq(acc_next)
        if p.design == "dual":
            flag = Signal(name="flag_reg", reset_less=True)
            # the high-pass sum sits above the shift's always-zero low bits
            hi_sum = acc_next[p.shift : p.shift + p.cmp_bits].as_signed()
            m.d.comb += self.flag.eq(flag)
            with m.If(ctl.valid & ctl.cmp):
                m.d.sync += flag.eq(hi_sum > self.thr)
        return m


def pe_cycles(p: LaneParams, k: int, refined: bool = False) -> int:
    """MAC cycles of one PE over a ``K``-element window: ``planes * ceil(K / N)``.

    The dual design streams its low plane only when ``refined``.
    """
    steps = -(-k // p.lanes)
    planes = len(p.planes) if p.design != "dual" else (2 if refined else 1)
    return planes * steps
