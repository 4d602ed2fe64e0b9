"""Scheduler of a tile of dot-product PEs: one accumulator per PE, low pass before the next tile.

Tiles (one group of ``R`` pixels x one block of ``C`` channels) run block-major, as in
:mod:`dynabit.rtl.scheduler`; the window ``K`` is streamed in ``S = ceil(K / N)`` *steps*.
A fold lasts ``fill + L`` cycles (``fill = R + C - 2``), ``L`` the steps it streams:

- uniform designs: fold ``f`` streams every plane of tile ``f`` (``planes * S`` steps);
- dual design: fold ``f`` streams, when tile ``f-1`` was refined, the **low plane of tile
  f-1 first** (``S`` steps continuing the same accumulator after a shift by ``B_lo``) and
  then the high plane of tile ``f`` (``S`` steps, a fresh sum). A refined last tile gets an
  epilogue fold with its low plane alone. Same fold lengths as the two-bank schedule, so the
  cycle model is unchanged.

Cycle ``t = 0`` of a fold is the *resolution*: the high pass of the tile before is complete in
every PE, the decision unit reads it and ``refine`` picks the fold's first element. The buffers
answer a read one cycle late, so element 0 of a fold is read in the last cycle of the fold
before — always the next tile's high element 0. When the tile is refined instead, element 0
of its low plane comes from the **element-0 latch** (the activation and weight words of each
tile's first step, kept when its high pass started; the activation word holds the whole code,
so its low bits are there) and the high element 0 is read again before the high plane.

A tile's first high element carries ``snap``: every PE copies its accumulator (the finished
tile before) into its capture register as the token passes, ``r + c`` cycles later for PE
``(r, c)``; row ``r`` of the captured tile leaves the drain ``C + r`` cycles after the snap.
The last tile is captured by a snap-only token after its last fold.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dynabit.rtl.lane_params import LaneTileParams
from dynabit.rtl.ports import decisions, descriptor, drain, read_port


class LaneState(enum.IntEnum):
    """Scheduler states."""

    IDLE = 0
    BOOT = 1  # read element 0 of tile 0 and its block parameters
    RUN = 2  # folds back to back
    FLUSH = 3  # wait for the last drain


class LaneScheduler(wiring.Component):
    """Fold counter, element positions, read requests, decisions, snap and drain.

    Descriptor: ``start``, ``k_len`` (steps ``S >= 1``), ``n_groups``, ``n_blocks`` (held while
    busy); dual: ``refine`` from the decision unit. The token of element ``t``: ``f_valid``,
    ``f_restart``, ``f_shift``, ``f_cmp``, ``f_plane`` (plane index), ``f_latch`` (take the
    operands from the element-0 latch), ``f_snap``; ``new_tile`` (a tile's first high
    element: load its block parameters, valid rows and the latch); ``snap_shift`` (the
    snapped tile was not refined: the mid-point drain adds its plain bias); drain ``out_*``.
    """

    def __init__(self, p: LaneTileParams) -> None:
        self.p = p
        ab = p.addr_bits
        self.t_bits = (3 * (1 << ab) + p.rows + p.cols).bit_length()
        self.n_planes = len(p.pe.planes)
        members = (
            descriptor(ab)
            | {
                "f_valid": Out(1),
                "f_restart": Out(1),
                "f_shift": Out(1),
                "f_cmp": Out(1),
                "f_plane": Out(range(max(2, self.n_planes))),
                "f_latch": Out(1),
                "f_snap": Out(1),
                "snap_shift": Out(1),
                "new_tile": Out(1),
            }
            | read_port("act", ab)
            | read_port("w", ab)
            | read_port("prm", ab)
            | drain(p.rows, ab)
            | {"out_shift": Out(1), "perf_cycles": Out(32)}
        )
        if p.dynamic:
            members |= {"refine": In(1)} | decisions(ab, refine=False)
        super().__init__(members)

    # ------------------------------------------------------------------ positions
    def _pos(self, name: str) -> SimpleNamespace:
        ab = self.p.addr_bits
        return SimpleNamespace(
            lo=Signal(name=f"{name}_lo"),
            plane=Signal(range(max(2, self.n_planes)), name=f"{name}_plane"),
            step=Signal(ab, name=f"{name}_step"),
        )

    def _next(self, m: Module, pos: SimpleNamespace, name: str) -> SimpleNamespace:
        """The element after ``pos``: next step, or step 0 of the next plane (low -> high)."""
        nxt = self._pos(name)
        wrap = pos.step + 1 == self.k_len
        m.d.comb += [
            nxt.step.eq(Mux(wrap, 0, pos.step + 1)),
            nxt.lo.eq(pos.lo & ~wrap),
            nxt.plane.eq(Mux(wrap & ~pos.lo, pos.plane + 1, Mux(wrap, 0, pos.plane))),
        ]
        return nxt

    @staticmethod
    def _assign(pos: SimpleNamespace, src: SimpleNamespace) -> list:
        return [pos.lo.eq(src.lo), pos.plane.eq(src.plane), pos.step.eq(src.step)]

    # ------------------------------------------------------------------ elaboration
    def elaborate(self, platform: object) -> Module:  # noqa: PLR0915 - one FSM
        p = self.p
        ab = p.addr_bits
        m = Module()
        k = self.k_len
        r = SimpleNamespace(
            state=Signal(LaneState, name="state"),
            t=Signal(self.t_bits, name="t"),
            first=Signal(name="first_fold"),
            length=Signal(self.t_bits, name="stream_len"),
            has_l=Signal(name="has_l"),
            has_h=Signal(name="has_h"),
            tb=Signal(ab, name="tile_block"),
            tg=Signal(ab, name="tile_group"),
            g_base=Signal(ab, name="group_base"),
            b_base=Signal(ab, name="block_base"),
            lo_tb=Signal(ab, name="lo_block"),
            lo_tg=Signal(ab, name="lo_group"),
            lo_g_base=Signal(ab, name="lo_group_base"),
            lo_b_base=Signal(ab, name="lo_block_base"),
            perf=Signal(32, name="perf"),
            d_wait=Signal(range(p.cols + 1), name="drain_wait"),
            d_on=Signal(name="drain_on"),
            d_row=Signal(range(p.rows), name="drain_row"),
            d_blk=Signal(ab, name="drain_block"),
            d_grp=Signal(ab, name="drain_group"),
            d_shift=Signal(name="drain_shift"),
        )
        fd = self._pos("feed")  # element t (t >= 1)
        rd = self._pos("read")  # element t + 1
        fill = p.fill
        t = r.t
        last_g = r.tg == self.n_groups - 1
        last_b = r.tb == self.n_blocks - 1
        has_next = Signal(name="has_next")
        nxt_g, nxt_b = Signal(ab, name="next_group"), Signal(ab, name="next_block")
        nxt_gb, nxt_bb = Signal(ab, name="next_group_base"), Signal(ab, name="next_block_base")
        m.d.comb += [
            has_next.eq(~(last_g & last_b)),
            nxt_g.eq(Mux(last_g, 0, r.tg + 1)),
            nxt_b.eq(Mux(last_g, r.tb + 1, r.tb)),
            nxt_gb.eq(Mux(last_g, 0, r.g_base + k)),
            nxt_bb.eq(Mux(last_g, r.b_base + k, r.b_base)),
        ]
        fold_len = Signal(self.t_bits, name="fold_len")
        m.d.comb += fold_len.eq(r.length + fill)
        hi_len = k * (1 if p.dynamic else self.n_planes)

        m.d.comb += [
            self.busy.eq(r.state != LaneState.IDLE),
            self.perf_cycles.eq(r.perf),
            self.out_valid.eq(r.d_on & (r.d_wait == 0)),
            self.out_row.eq(r.d_row),
            self.out_block.eq(r.d_blk),
            self.out_group.eq(r.d_grp),
            self.out_shift.eq(r.d_shift),
        ]
        if p.dynamic:
            m.d.comb += [self.dec_block.eq(r.tb), self.dec_group.eq(r.tg)]
        # Drain: wait C - 1 cycles after the snap, then one row per cycle.
        with m.If(r.d_on):
            with m.If(r.d_wait != 0):
                m.d.sync += r.d_wait.eq(r.d_wait - 1)
            with m.Elif(r.d_row == p.rows - 1):
                m.d.sync += r.d_on.eq(0)
            with m.Else():
                m.d.sync += r.d_row.eq(r.d_row + 1)

        def snap(blk: Value, grp: Value, shift: Value) -> None:
            m.d.comb += [self.f_snap.eq(1), self.snap_shift.eq(shift)]
            m.d.sync += [
                r.d_on.eq(1),
                r.d_wait.eq(p.cols - 1),
                r.d_row.eq(0),
                r.d_blk.eq(blk),
                r.d_grp.eq(grp),
                r.d_shift.eq(shift),
            ]

        def read(
            pos: SimpleNamespace,
            g_base: Value,
            b_base: Value,
            lo_g: Value,
            lo_b: Value,
            block: Value,
        ) -> None:
            """Read request for the element at ``pos`` (a high element 0 also reads params)."""
            m.d.comb += [
                self.act_rd_en.eq(1),
                self.act_rd_addr.eq(Mux(pos.lo, lo_g, g_base) + pos.step),
                self.w_rd_en.eq(1),
                self.w_rd_addr.eq(Mux(pos.lo, lo_b, b_base) + pos.step),
            ]
            with m.If(~pos.lo & (pos.plane == 0) & (pos.step == 0)):
                m.d.comb += [self.prm_rd_en.eq(1), self.prm_rd_addr.eq(block)]

        def token(
            pos: SimpleNamespace,
            latch: Value,
            prev_tile: Value,
            blk: Value,
            grp: Value,
            shift: Value,
        ) -> None:
            """Issue element ``pos``; a tile's first high element also snaps the tile before."""
            restart = ~pos.lo & (pos.plane == 0) & (pos.step == 0)
            m.d.comb += [
                self.f_valid.eq(1),
                self.f_restart.eq(restart),
                self.f_shift.eq((pos.step == 0) & (pos.lo | (pos.plane != 0))),
                self.f_cmp.eq(~pos.lo & (pos.step == k - 1)),
                self.f_plane.eq(Mux(pos.lo, 1, pos.plane)),
                self.f_latch.eq(latch),
                self.new_tile.eq(restart),
            ]
            with m.If(restart & prev_tile):
                snap(blk, grp, shift)

        def start_fold(
            length: Value,
            has_l: Value,
            has_h: Value,
            pos0: SimpleNamespace,
            g_base: Value,
            b_base: Value,
            lo_g: Value,
            lo_b: Value,
            block: Value,
        ) -> None:
            """Cycle 0 of a fold: ``pos0`` was issued; read element 1, set up the counters."""
            pos1 = self._next(m, pos0, "pos1")
            pos2 = self._next(m, pos1, "pos2")
            with m.If(length > 1):
                read(pos1, g_base, b_base, lo_g, lo_b, block)
            m.d.sync += [r.t.eq(1), r.length.eq(length), r.has_l.eq(has_l), r.has_h.eq(has_h)]
            m.d.sync += self._assign(fd, pos1) + self._assign(rd, pos2)
            m.d.sync += r.perf.eq(r.perf + 1)

        def const_pos(lo: int, name: str) -> SimpleNamespace:
            pos = self._pos(name)
            m.d.comb += [pos.lo.eq(lo), pos.plane.eq(0), pos.step.eq(0)]
            return pos

        hi0 = const_pos(0, "hi0")
        lo0 = const_pos(1, "lo0")

        with m.Switch(r.state):
            with m.Case(LaneState.IDLE), m.If(self.start):
                m.d.sync += [
                    r.tb.eq(0),
                    r.tg.eq(0),
                    r.g_base.eq(0),
                    r.b_base.eq(0),
                    r.perf.eq(0),
                    r.d_on.eq(0),
                    r.state.eq(LaneState.BOOT),
                ]
            with m.Case(LaneState.BOOT):
                read(hi0, r.g_base, r.b_base, r.g_base, r.b_base, r.tb)
                m.d.sync += [r.state.eq(LaneState.RUN), r.t.eq(0), r.first.eq(1)]
            with m.Case(LaneState.RUN):
                with m.If(t == 0):
                    m.d.sync += r.first.eq(0)
                    with m.If(r.first):  # tile 0: its high plane
                        token(hi0, 0, 0, r.tb, r.tg, 0)
                        start_fold(hi_len, 0, 1, hi0, r.g_base, r.b_base, r.g_base, r.b_base, r.tb)
                    with m.Elif(r.has_h):  # after the fold of the current tile
                        refine = self.refine if p.dynamic else Value.cast(0)
                        if p.dynamic:
                            m.d.comb += self.dec_valid.eq(1)
                        with m.If(has_next):
                            m.d.sync += [
                                r.tb.eq(nxt_b),
                                r.tg.eq(nxt_g),
                                r.g_base.eq(nxt_gb),
                                r.b_base.eq(nxt_bb),
                                r.lo_tb.eq(r.tb),
                                r.lo_tg.eq(r.tg),
                                r.lo_g_base.eq(r.g_base),
                                r.lo_b_base.eq(r.b_base),
                            ]
                            with m.If(refine):  # low plane of the current tile first
                                token(lo0, 1, 0, r.tb, r.tg, 0)
                                start_fold(
                                    k + hi_len, 1, 1, lo0, nxt_gb, nxt_bb, r.g_base, r.b_base, nxt_b
                                )
                            with m.Else():
                                token(hi0, 0, 1, r.tb, r.tg, p.dynamic)
                                start_fold(
                                    hi_len, 0, 1, hi0, nxt_gb, nxt_bb, r.g_base, r.b_base, nxt_b
                                )
                        with m.Elif(refine):  # epilogue: the low plane of the last tile
                            m.d.sync += [
                                r.lo_tb.eq(r.tb),
                                r.lo_tg.eq(r.tg),
                                r.lo_g_base.eq(r.g_base),
                                r.lo_b_base.eq(r.b_base),
                            ]
                            token(lo0, 1, 0, r.tb, r.tg, 0)
                            start_fold(k, 1, 0, lo0, r.g_base, r.b_base, r.g_base, r.b_base, r.tb)
                        with m.Else():
                            snap(r.tb, r.tg, p.dynamic)
                            m.d.sync += r.state.eq(LaneState.FLUSH)
                    with m.Else():  # after the epilogue
                        snap(r.tb, r.tg, 0)
                        m.d.sync += r.state.eq(LaneState.FLUSH)
                with m.Else():
                    self._stream(
                        m, r, fd, rd, fold_len, read, token, has_next, nxt_gb, nxt_bb, nxt_b, hi0
                    )
            with m.Case(LaneState.FLUSH), m.If(~r.d_on):
                m.d.comb += self.done.eq(1)
                m.d.sync += r.state.eq(LaneState.IDLE)
        return m

    def _stream(
        self, m, r, fd, rd, fold_len, read, token, has_next, nxt_gb, nxt_bb, nxt_b, hi0
    ) -> None:  # noqa: ANN001 - closures of elaborate
        """Cycles ``t >= 1``: issue element ``t``, read element ``t + 1``, next fold's 0."""
        t = r.t
        m.d.sync += r.perf.eq(r.perf + 1)
        with m.If(t == fold_len - 1):
            m.d.sync += t.eq(0)
        with m.Else():
            m.d.sync += t.eq(t + 1)
        with m.If(t < r.length):
            # The snapped tile (the low-plane tile) was refined: no drain shift.
            token(fd, 0, 1, r.lo_tb, r.lo_tg, 0)
        with m.If(t + 1 < r.length):
            read(rd, r.g_base, r.b_base, r.lo_g_base, r.lo_b_base, r.tb)
            m.d.sync += self._assign(fd, rd) + self._assign(rd, self._next(m, rd, "rd_next"))
        with m.If((t == fold_len - 1) & r.has_h & has_next):
            read(hi0, nxt_gb, nxt_bb, nxt_gb, nxt_bb, nxt_b)
