"""The decision unit: is a tile's group refined?

``max`` (default): every PE registered ``acc > thr[c]`` with its last high-pass MAC; the unit
ANDs those flags with the tile's valid rows and the block's valid columns and ORs them.
``mean``: an adder tree sums each column's valid accumulators, multiplies each column sum by the
channel's score multiplier, sums the columns and compares with ``n_rows * X``.

Both compare forms are exact rewrites, done once per block by the host, of the model's rule
(see :mod:`dynabit.rtl.program`): with ``m_c >= 1`` the score multiplier, ``b_c`` the bias and
``t`` the block threshold,
``max_c,p (acc + b_c) m_c > t  <=>  exists (c, p): acc > floor(t / m_c) - b_c`` and
``floor(sum (acc + b_c) m_c / n) > t  <=>  sum_c m_c sum_p acc >= n_rows * X`` with
``X = n_cols (t + 1) - sum_c b_c m_c``.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynabit.rtl.params import TileParams


def tree_sum(values: Sequence[Value]) -> Value:
    """Balanced adder tree (each ``+`` widens by one bit, so the sum is exact)."""
    vals = list(values)
    if not vals:
        return Value.cast(0)
    while len(vals) > 1:
        nxt = [vals[i] + vals[i + 1] for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]


class DecisionUnit(wiring.Component):
    """Combinational refine decision of the tile whose high pass just ended.

    Ports: ``row_ok`` (valid rows of the tile), ``col_ok`` (valid columns of the block),
    ``flags`` (max) or ``accs`` + ``mult`` + ``x`` (mean), and the output ``refine``.
    """

    def __init__(self, p: TileParams) -> None:
        self.p = p
        r, c = p.rows, p.cols
        members = {"row_ok": In(r), "col_ok": In(c), "refine": Out(1)}
        if p.score == "max":
            members |= {"flags": In(r * c)}
        else:
            members |= {
                "accs": In(data.ArrayLayout(signed(p.acc_bits), r * c)),
                "mult": In(data.ArrayLayout(unsigned(p.mult_bits), c)),
                "x": In(p.x_shape),
            }
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        p = self.p
        m = Module()
        rows, cols = p.rows, p.cols
        if p.score == "max":
            hits = [
                self.flags[r * cols + c] & self.row_ok[r] & self.col_ok[c]
                for r in range(rows)
                for c in range(cols)
            ]
            m.d.comb += self.refine.eq(_or_tree(hits))
            return m
        col_sums = []
        for c in range(cols):
            col = tree_sum([Mux(self.row_ok[r], self.accs[r * cols + c], 0) for r in range(rows)])
            s = Signal(signed(col.shape().width), name=f"colsum{c}")
            m.d.comb += s.eq(col)
            col_sums.append(s)
        weighted = [Mux(self.col_ok[c], self.mult[c], 0) * col_sums[c] for c in range(cols)]
        total = Signal(signed(tree_sum(weighted).shape().width + 1), name="score_sum")
        m.d.comb += total.eq(tree_sum(weighted))
        n_rows = tree_sum([self.row_ok[r] for r in range(rows)])
        m.d.comb += self.refine.eq(total >= n_rows * self.x)
        return m


def _or_tree(bits: Sequence[Value]) -> Value:
    vals = list(bits)
    while len(vals) > 1:
        nxt = [vals[i] | vals[i + 1] for i in range(0, len(vals) - 1, 2)]
        if len(vals) % 2:
            nxt.append(vals[-1])
        vals = nxt
    return vals[0]
