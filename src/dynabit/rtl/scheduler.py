"""The scheduler: the fold sequence of a layer, the buffer reads and the low-pass skip.

A *tile* is one group of ``R`` output pixels x one block of ``C`` output channels; tiles run
block-major (all groups of block 0, then block 1, ...), ``F`` of them. A *fold* streams one or
two *segments* of ``T = K`` elements and lasts ``fill + T * segments`` cycles, ``fill = R+C-2``;
folds follow each other with no gap. Dynamic tile:

- fold ``f < F`` streams the high pass of tile ``f`` into accumulator bank ``f % 2`` and then,
  when tile ``f-1`` was refined, the low pass of tile ``f-1`` into bank ``(f-1) % 2``;
- a refined last tile gets an *epilogue* fold with its low pass alone.

Cycle ``t = 0`` of a fold is the *resolution* of the fold before: the decision unit reads the
flags (or sums) the high pass of tile ``f`` left and the scheduler registers ``refine``, which
is needed only ``T`` elements later, when the low segment starts (or, for the last tile, at
once: the epilogue's first element is fetched speculatively and ``refine`` gates it). Tile
``f-1`` is complete by then in either case and is snapshotted into the drain (``copy``).

Buffers are synchronous-read (a read issued at ``t`` returns data at ``t + 1``), so element
``e`` of a fold is read at ``t = e - 1`` and element 0 in the last cycle of the fold before.

The uniform tile runs one segment per fold (the whole code), one bank, no decision.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace

from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dynabit.rtl.params import TileParams
from dynabit.rtl.ports import decisions, descriptor, drain, read_port


class State(enum.IntEnum):
    """Scheduler states."""

    IDLE = 0
    BOOT = 1  # read element 0 of tile 0 and its block parameters
    RUN = 2  # folds back to back
    FLUSH = 3  # drain the last tile(s)


class Scheduler(wiring.Component):
    """Control of one tile: fold counter, tile indices, read requests, decisions, drain.

    Inputs: ``start`` and the layer descriptor ``k_len`` (``K >= 2``), ``n_groups``,
    ``n_blocks`` (held while busy); dynamic: ``refine`` from the decision unit.
    Outputs: the control token ``f_*`` for element ``t`` of the fold; read requests
    ``*_rd_en``/``*_rd_addr``; ``new_tile`` (load the block parameters and valid rows that
    arrive with a tile's element 0); ``copy`` (+ ``copy_bank``) and the drain ``out_*``;
    dynamic: ``shift_lo`` (the current tile becomes the low-pass tile), ``sel_bank`` and the
    decision report ``dec_*``; ``busy``, ``done`` and ``perf_cycles`` (cycles spent in folds).
    """

    def __init__(self, p: TileParams) -> None:
        self.p = p
        ab = p.addr_bits
        self.t_bits = (2 * (1 << ab) + p.rows + p.cols).bit_length()
        members = (
            descriptor(ab)
            | {"f_valid": Out(1), "f_restart": Out(1)}
            | read_port("act", ab)
            | read_port("w", ab)
            | read_port("prm", ab)
            | {"new_tile": Out(1), "copy": Out(1)}
            | drain(p.rows, ab)
            | {"perf_cycles": Out(32)}
        )
        if p.dynamic:
            members |= (
                {"refine": In(1), "f_hi": Out(1), "f_cmp": Out(1), "f_bank": Out(1)}
                | read_port("lo", ab)
                | {"shift_lo": Out(1), "copy_bank": Out(1), "sel_bank": Out(1)}
                | decisions(ab, refine=False)
            )
        super().__init__(members)

    # ------------------------------------------------------------------ helpers
    def _read_hi(self, m: Module, act_addr: Value, w_addr: Value) -> None:
        m.d.comb += [
            self.act_rd_en.eq(1),
            self.act_rd_addr.eq(act_addr),
            self.w_rd_en.eq(1),
            self.w_rd_addr.eq(w_addr),
        ]

    def _read_lo(self, m: Module, lo_addr: Value, w_addr: Value) -> None:
        m.d.comb += [
            self.lo_rd_en.eq(1),
            self.lo_rd_addr.eq(lo_addr),
            self.w_rd_en.eq(1),
            self.w_rd_addr.eq(w_addr),
        ]

    def _token(self, m: Module, hi: Value, restart: Value, cmp: Value, bank: Value) -> None:
        m.d.comb += [self.f_valid.eq(1), self.f_restart.eq(restart)]
        if self.p.dynamic:
            m.d.comb += [self.f_hi.eq(hi), self.f_cmp.eq(cmp), self.f_bank.eq(bank)]

    # ------------------------------------------------------------------ elaboration
    def elaborate(self, platform: object) -> Module:
        p = self.p
        ab = p.addr_bits
        m = Module()
        r = SimpleNamespace(
            state=Signal(State, name="state"),
            t=Signal(self.t_bits, name="t"),
            first=Signal(name="first_fold"),
            has_h=Signal(name="has_h"),  # the fold streams a high segment (not the epilogue)
            has_l=Signal(name="has_l"),  # the fold streams a low segment
            tb=Signal(ab, name="tile_block"),
            tg=Signal(ab, name="tile_group"),
            g_base=Signal(ab, name="group_base"),  # tg * K
            b_base=Signal(ab, name="block_base"),  # tb * K
            bank=Signal(name="bank"),  # bank of the current (high-pass) tile
            lo_tb=Signal(ab, name="lo_block"),  # the tile before: low segment, next copy
            lo_tg=Signal(ab, name="lo_group"),
            lo_g_base=Signal(ab, name="lo_group_base"),
            lo_b_base=Signal(ab, name="lo_block_base"),
            lo_bank=Signal(name="lo_bank"),
            have_lo=Signal(name="have_lo_tile"),
            pending=Signal(name="pending_copy"),
            drain_cnt=Signal(range(p.rows + 1), name="drain_cnt"),
            drain_blk=Signal(ab, name="drain_blk"),
            drain_grp=Signal(ab, name="drain_grp"),
            perf=Signal(32, name="perf"),
        )
        k = self.k_len
        fill = p.rows + p.cols - 2

        # Next tile (block-major order).
        last_g = r.tg == self.n_groups - 1
        last_b = r.tb == self.n_blocks - 1
        r.has_next = Signal(name="has_next")
        r.nxt_g_base = Signal(ab, name="next_group_base")
        r.nxt_b_base = Signal(ab, name="next_block_base")
        r.nxt_b = Signal(ab, name="next_block")
        r.nxt_g = Signal(ab, name="next_group")
        m.d.comb += [
            r.has_next.eq(~(last_g & last_b)),
            r.nxt_g.eq(Mux(last_g, 0, r.tg + 1)),
            r.nxt_b.eq(Mux(last_g, r.tb + 1, r.tb)),
            r.nxt_g_base.eq(Mux(last_g, 0, r.g_base + k)),
            r.nxt_b_base.eq(Mux(last_g, r.b_base + k, r.b_base)),
        ]

        # Fold geometry: stream length L and fold length P; segment of elements t and t+1.
        stream = Signal(self.t_bits, name="stream_len")
        fold = Signal(self.t_bits, name="fold_len")
        m.d.comb += [
            stream.eq(Mux(r.has_h & r.has_l, 2 * k, k)),
            fold.eq(stream + fill),
        ]
        t = r.t
        in_h = r.has_h & (t < k)
        in_h1 = r.has_h & (t + 1 < k)
        k1 = Signal(self.t_bits, name="k_next")
        m.d.comb += k1.eq(Mux(in_h1 | ~r.has_h, t + 1, t + 1 - k))

        m.d.comb += [
            self.busy.eq(r.state != State.IDLE),
            self.perf_cycles.eq(r.perf),
            self.out_valid.eq(r.drain_cnt != 0),
            self.out_row.eq(r.drain_cnt - 1),
            self.out_block.eq(r.drain_blk),
            self.out_group.eq(r.drain_grp),
        ]
        if p.dynamic:
            m.d.comb += [
                self.copy_bank.eq(r.lo_bank),
                self.sel_bank.eq(r.bank),
                self.dec_block.eq(r.tb),
                self.dec_group.eq(r.tg),
            ]
        with m.If(r.drain_cnt != 0):
            m.d.sync += r.drain_cnt.eq(r.drain_cnt - 1)

        with m.Switch(r.state):
            with m.Case(State.IDLE), m.If(self.start):
                m.d.sync += [
                    r.tb.eq(0),
                    r.tg.eq(0),
                    r.g_base.eq(0),
                    r.b_base.eq(0),
                    r.bank.eq(0),
                    r.have_lo.eq(0),
                    r.pending.eq(0),
                    r.perf.eq(0),
                    r.state.eq(State.BOOT),
                ]
            with m.Case(State.BOOT):
                self._read_hi(m, r.g_base, r.b_base)
                m.d.comb += [self.prm_rd_en.eq(1), self.prm_rd_addr.eq(r.tb)]
                m.d.sync += [r.state.eq(State.RUN), r.t.eq(0), r.first.eq(1)]
            with m.Case(State.RUN):
                with m.If(t == 0):
                    self._resolve(m, r)
                with m.Else():
                    self._stream(m, r, stream, fold, in_h, in_h1, k1)
            with m.Case(State.FLUSH), m.If(r.drain_cnt == 0):
                with m.If(r.pending):
                    self._copy(m, r)
                    m.d.sync += r.pending.eq(0)
                with m.Else():
                    m.d.comb += self.done.eq(1)
                    m.d.sync += r.state.eq(State.IDLE)
        return m

    def _copy(self, m: Module, r: SimpleNamespace) -> None:
        """Snapshot the finished tile into the drain (dynamic: the low-pass tile's bank)."""
        blk, grp = (r.lo_tb, r.lo_tg) if self.p.dynamic else (r.tb, r.tg)
        m.d.comb += self.copy.eq(1)
        m.d.sync += [r.drain_cnt.eq(self.p.rows), r.drain_blk.eq(blk), r.drain_grp.eq(grp)]

    def _stream(
        self,
        m: Module,
        r: SimpleNamespace,
        stream: Value,
        fold: Value,
        in_h: Value,
        in_h1: Value,
        k1: Value,
    ) -> None:
        """Cycles ``t >= 1``: element ``t``, read of element ``t+1``, next fold's element 0."""
        p = self.p
        t, k = r.t, self.k_len
        m.d.sync += r.perf.eq(r.perf + 1)
        with m.If(t == fold - 1):
            m.d.sync += t.eq(0)
        with m.Else():
            m.d.sync += t.eq(t + 1)
        with m.If(t < stream):
            self._token(
                m, hi=in_h, restart=0, cmp=in_h & (t == k - 1), bank=Mux(in_h, r.bank, r.lo_bank)
            )
        with m.If(t + 1 < stream):
            with m.If(in_h1):
                self._read_hi(m, r.g_base + k1, r.b_base + k1)
            if p.dynamic:
                with m.Else():
                    self._read_lo(m, r.lo_g_base + k1, r.lo_b_base + k1)
        with m.If((t == fold - 1) & r.has_h):
            with m.If(r.has_next):
                self._read_hi(m, r.nxt_g_base, r.nxt_b_base)
                m.d.comb += [self.prm_rd_en.eq(1), self.prm_rd_addr.eq(r.nxt_b)]
            if p.dynamic:
                with m.Else():  # speculative: element 0 of a possible epilogue
                    self._read_lo(m, r.g_base, r.b_base)

    def _start_fold(self, m: Module, r: SimpleNamespace, has_h: Value, has_l: Value) -> None:
        m.d.sync += [
            r.t.eq(1),
            r.has_h.eq(has_h),
            r.has_l.eq(has_l),
            r.perf.eq(r.perf + 1),
        ]

    def _start_tile(self, m: Module, r: SimpleNamespace, run_lo: Value, advance: bool) -> None:
        """Begin a fold whose high segment is the next tile (or tile 0 at boot)."""
        k = self.k_len
        if advance:
            m.d.sync += [
                r.tb.eq(r.nxt_b),
                r.tg.eq(r.nxt_g),
                r.g_base.eq(r.nxt_g_base),
                r.b_base.eq(r.nxt_b_base),
            ]
            g_base, b_base = r.nxt_g_base, r.nxt_b_base
        else:
            g_base, b_base = r.g_base, r.b_base
        bank = ~r.bank if (advance and self.p.dynamic) else r.bank
        if advance and self.p.dynamic:
            m.d.sync += r.bank.eq(~r.bank)
        m.d.comb += self.new_tile.eq(1)
        self._token(m, hi=1, restart=1, cmp=(k == 1), bank=bank)
        self._read_hi(m, g_base + 1, b_base + 1)
        self._start_fold(m, r, 1, run_lo)

    def _resolve(self, m: Module, r: SimpleNamespace) -> None:
        """Cycle ``t = 0``: end of the previous fold, start of the next one."""
        m.d.sync += r.first.eq(0)
        with m.If(r.first):
            self._start_tile(m, r, 0, advance=False)
        if not self.p.dynamic:
            with m.Else():
                self._copy(m, r)
                with m.If(r.has_next):
                    self._start_tile(m, r, 0, advance=True)
                with m.Else():
                    m.d.sync += r.state.eq(State.FLUSH)
            return
        with m.Elif(r.has_h):  # after the fold of tile f: decide f, copy f-1
            refine = self.refine
            m.d.comb += [self.dec_valid.eq(1), self.shift_lo.eq(1)]
            with m.If(r.have_lo):
                self._copy(m, r)
            m.d.sync += [
                r.lo_tb.eq(r.tb),
                r.lo_tg.eq(r.tg),
                r.lo_g_base.eq(r.g_base),
                r.lo_b_base.eq(r.b_base),
                r.lo_bank.eq(r.bank),
                r.have_lo.eq(1),
            ]
            with m.If(r.has_next):
                self._start_tile(m, r, refine, advance=True)
            with m.Elif(refine):  # epilogue: the low pass of the last tile alone
                self._token(m, hi=0, restart=0, cmp=0, bank=r.bank)
                self._read_lo(m, r.g_base + 1, r.b_base + 1)
                self._start_fold(m, r, 0, 1)
            with m.Else():
                m.d.sync += [r.state.eq(State.FLUSH), r.pending.eq(1)]
        with m.Else():  # after the epilogue
            self._copy(m, r)
            m.d.sync += r.state.eq(State.FLUSH)
