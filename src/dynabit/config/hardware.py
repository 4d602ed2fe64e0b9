"""Hardware configuration: the PE array that sets block and group shapes, and the simulator's rest.

The quantization layers only need the array geometry (rows, columns) to derive their
decision units; the simulator (``dynabit.hardware``) uses the rest of this config: buffers,
DRAM bandwidth, clock and the per-operation energy table.

Units, everywhere in this file:

* buffer sizes in KiB (1 KiB = 8192 bits); the input buffer size is **per bit plane** (the
  high and the low plane each have one such buffer);
* DRAM bandwidth in words of ``word_bits`` bits per cycle;
* energies in pJ: per operation for arithmetic, per ``EnergyTable.table_word_bits``-bit word for
  SRAM and DRAM accesses (rescaled linearly to the config's ``word_bits``).

Energy source (the default table). M. Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014, energy per operation at 45 nm, 0.9 V:

* integer add: 8 bit 0.03 pJ, 32 bit 0.1 pJ; integer multiply: 8 bit 0.2 pJ, 32 bit 3.1 pJ;
* 64-bit SRAM (cache) read: 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ;
* 64-bit DRAM access: 1.3 to 2.6 nJ.

Scaling applied (ours, first order, documented in ``docs/hardware.md``): an array multiplier's
energy grows with the number of partial-product bits, so a 4x8 multiply is taken as
``0.2 * (4*8)/(8*8) = 0.1 pJ``; a MAC is the multiply plus one 32-bit accumulator add (0.1 pJ);
the shift-and-add that merges the high and low partial sums and the threshold comparator are
each one 32-bit add (0.1 pJ); DRAM uses the middle of Horowitz's range (1.95 nJ per 64 bits);
SRAM writes cost the same as reads (the paper gives one figure); SRAM energy at other sizes is
interpolated log-log between the three points. The register figure (0.03 pJ per 8-bit operand
latched in a PE) has no figure in the paper: it is our estimate, set equal to an 8-bit add.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from dynabit.config.dataflow import Dataflow as DataflowModel
from dynabit.config.dataflow import dataflow_for, squarest_factors
from dynabit.config.io import StrictConfig

Dataflow = Literal["os", "ws", "is"]

KIB_BITS = 8 * 1024


class SramPoint(StrictConfig):
    """SRAM access energy for one buffer size, per ``table_word_bits``-bit word."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    size_kib: float = Field(..., gt=0.0, description="Buffer capacity in KiB.")
    read_pj: float = Field(..., gt=0.0, description="Energy of one word read, pJ.")
    write_pj: float = Field(..., gt=0.0, description="Energy of one word write, pJ.")


def _horowitz_sram() -> list[SramPoint]:
    # Horowitz ISSCC 2014, 45 nm: 64-bit cache access 8 KB 10 pJ, 32 KB 20 pJ, 1 MB 100 pJ.
    return [
        SramPoint(size_kib=8, read_pj=10.0, write_pj=10.0),
        SramPoint(size_kib=32, read_pj=20.0, write_pj=20.0),
        SramPoint(size_kib=1024, read_pj=100.0, write_pj=100.0),
    ]


class EnergyTable(StrictConfig):
    """Energy per operation (pJ). Defaults: Horowitz ISSCC 2014, 45 nm, scaled as in the module doc.

    ``mac_pj`` is keyed ``"<activation bits>x<weight bits>"``: the dual-precision PE uses the
    ``act_chunk_bits x weight_bits`` entry, the bit-parallel baseline the ``8x<weight_bits>``
    entry. Memory energies are per ``table_word_bits``-bit word and rescale linearly with the
    config's ``word_bits``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    source: str = Field(
        "Horowitz, ISSCC 2014, 45 nm 0.9 V; 4x8 multiply scaled by partial-product bits from the "
        "8-bit multiply; MAC = multiply + 32-bit add; DRAM = mid-range 1.95 nJ per 64 bits; "
        "register = estimate (8-bit add)",
        description="Where the numbers come from and how they were scaled.",
    )
    mac_pj: dict[str, float] = Field(
        default_factory=lambda: {"4x8": 0.2, "8x8": 0.3},
        description="Multiply-accumulate per precision 'AxW' (multiply + 32-bit accumulate), pJ.",
    )
    shift_add_pj: float = Field(
        0.1, ge=0.0, description="Shift-and-add merging the high and low sums of one output, pJ."
    )
    comparator_pj: float = Field(
        0.1, ge=0.0, description="One threshold compare (32-bit), pJ; per decision input."
    )
    register_pj: float = Field(
        0.03, ge=0.0, description="Latching one operand in a PE pipeline register, pJ (estimate)."
    )
    sram: list[SramPoint] = Field(
        default_factory=_horowitz_sram,
        description="SRAM read/write energy per word at several sizes; interpolated log-log.",
    )
    dram_pj_per_word: float = Field(1950.0, gt=0.0, description="DRAM access per word, pJ.")
    accumulate_pj: float = Field(
        0.1,
        ge=0.0,
        description="The accumulator add inside each mac_pj entry (32-bit add, Horowitz), pJ: "
        "a PE with N lanes pays it once per step, not once per product.",
    )
    tree_add_pj: float = Field(
        0.05,
        ge=0.0,
        description="One add of an N-lane PE's adder tree (about 16 bits: between Horowitz's "
        "8-bit 0.03 pJ and 32-bit 0.1 pJ), pJ; N - 1 of them per step.",
    )
    leakage_nw_per_transistor: float = Field(
        5.0,
        ge=0.0,
        description="Static power per transistor, nW (estimate: the order of the Nangate 45 nm "
        "Open Cell Library's typical-corner cell leakage, about 10-20 nW for a 2-4 transistor "
        "INV/NAND2); leakage energy = this x transistors x cycles / clock.",
    )
    table_word_bits: int = Field(
        64, ge=1, le=4096, description="Word width the memory energies above refer to."
    )

    @field_validator("mac_pj")
    @classmethod
    def _mac_keys(cls, v: dict[str, float]) -> dict[str, float]:
        for key, pj in v.items():
            parts = key.split("x")
            if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise ValueError(
                    f"mac_pj key {key!r} must look like '4x8' (activation x weight bits)"
                )
            if not (pj >= 0.0 and math.isfinite(pj)):
                raise ValueError(f"mac_pj[{key!r}] must be a finite energy >= 0 pJ, got {pj}")
        return v

    @field_validator("sram")
    @classmethod
    def _sram_sorted(cls, v: list[SramPoint]) -> list[SramPoint]:
        if not v:
            raise ValueError("sram needs at least one (size_kib, read_pj, write_pj) point")
        sizes = [p.size_kib for p in v]
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"sram sizes must be distinct, got {sizes}")
        return sorted(v, key=lambda p: p.size_kib)

    def mac(self, act_bits: int, weight_bits: int) -> float:
        """Energy of one ``act_bits x weight_bits`` MAC (pJ); clear error if the table lacks it."""
        key = f"{act_bits}x{weight_bits}"
        if key not in self.mac_pj:
            raise KeyError(
                f"energy.mac_pj has no entry {key!r} (have {sorted(self.mac_pj)}); add one"
            )
        return self.mac_pj[key]

    def lane_mac(self, act_bits: int, weight_bits: int, lanes: int = 1) -> float:
        """Energy per product in an ``N``-lane dot-product PE (pJ).

        ``mac - accumulate + (N - 1) / N * tree_add + accumulate / N``: the multiply, the
        product's share of the adder tree and of the one accumulator add; ``N = 1`` is
        :meth:`mac`.
        """
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        mac = self.mac(act_bits, weight_bits)
        acc = min(self.accumulate_pj, mac)
        return mac - acc + acc / lanes + self.tree_add_pj * (lanes - 1) / lanes

    def leakage_pj(self, transistors: float, cycles: float, clock_mhz: float) -> float:
        """Leakage energy (pJ) of ``transistors`` over ``cycles`` at ``clock_mhz``."""
        seconds = cycles / (clock_mhz * 1e6)
        return self.leakage_nw_per_transistor * 1e-9 * transistors * seconds * 1e12

    def sram_access(self, size_kib: float, write: bool = False) -> float:
        """Energy per table word of an SRAM of ``size_kib`` (log-log interpolation, pJ)."""
        pts = self.sram
        vals = [p.write_pj if write else p.read_pj for p in pts]
        if len(pts) == 1:
            return vals[0]
        xs = [math.log(p.size_kib) for p in pts]
        ys = [math.log(v) for v in vals]
        x = math.log(size_kib)
        i = 0
        while i < len(xs) - 2 and x > xs[i + 1]:
            i += 1
        t = (x - xs[i]) / (xs[i + 1] - xs[i])
        return math.exp(ys[i] + t * (ys[i + 1] - ys[i]))


class HardwareConfig(StrictConfig):
    """An ``rows x cols`` array of dual-precision PEs, its buffers, DRAM and energy table.

    With the output-stationary mapping, rows hold output pixels and columns output channels:
    a *block* is ``cols`` consecutive output channels and a *group* is a patch of output
    pixels covering the rows (``group_h * group_w == rows`` by default).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    rows: int = Field(16, ge=1, le=4096, description="PE array rows R (output pixels in OS).")
    cols: int = Field(16, ge=1, le=4096, description="PE array columns C (output channels in OS).")
    dataflow: Dataflow = Field("os", description="os | ws | is (output/weight/input stationary).")
    act_chunk_bits: int = Field(
        4, ge=1, le=16, description="Activation bits a PE multiplies per pass."
    )
    weight_bits: int = Field(8, ge=2, le=16, description="Weight bits per PE.")
    lanes: int = Field(
        1,
        ge=1,
        le=1024,
        description="Lanes N per PE: elements of the streamed window K a PE multiplies per "
        "cycle and sums with an adder tree into one accumulator (1 = one MAC per PE).",
    )
    acc_bits: int = Field(32, ge=8, le=64, description="Accumulator / partial-sum width in bits.")
    word_bits: int = Field(
        64,
        ge=8,
        le=4096,
        description="SRAM/DRAM word width in bits (unit of bandwidth and energy).",
    )
    input_buffer_kib: float = Field(
        128.0, gt=0.0, le=1 << 20, description="Input (activation) buffer per bit plane, KiB."
    )
    weight_buffer_kib: float = Field(256.0, gt=0.0, le=1 << 20, description="Weight buffer, KiB.")
    output_buffer_kib: float = Field(
        256.0, gt=0.0, le=1 << 20, description="Output / partial-sum buffer, KiB."
    )
    dram_words_per_cycle: float = Field(
        4.0, gt=0.0, le=1 << 16, description="DRAM bandwidth in words of word_bits per cycle."
    )
    clock_mhz: float = Field(1000.0, gt=0.0, le=1e5, description="Array clock in MHz.")
    energy: EnergyTable = Field(default_factory=EnergyTable)

    @property
    def flow(self) -> DataflowModel:
        """The configured dataflow's object (see ``dynabit.config.dataflow``)."""
        return dataflow_for(self.dataflow)

    def default_group_shape(self) -> tuple[int, int]:
        """Output-pixel patch ``(g_h, g_w)`` that fills the array's rows, as square as possible."""
        return squarest_factors(self.rows)

    def default_block_size(self) -> int:
        """Output channels advanced in lock-step: the array's columns."""
        return self.cols

    def aligned_units(self) -> tuple[tuple[int, int], int]:
        """``(group, block_size)`` that the configured dataflow advances in lock-step.

        OS: pixels on the rows, channels on the columns (the defaults above). WS: channels on
        the columns, pixels streamed in time (the defaults keep a group one row-count of
        pixels). IS: pixels on the columns, channels streamed in time: the group fills the
        columns and a block is ``rows`` channels. Identical to the defaults on square arrays.
        """
        return self.flow.aligned_units(self.rows, self.cols)

    def buffer_bits(self, which: Literal["input", "weight", "output"]) -> int:
        """Capacity of one buffer in bits (the input buffer: one bit plane)."""
        kib = {
            "input": self.input_buffer_kib,
            "weight": self.weight_buffer_kib,
            "output": self.output_buffer_kib,
        }[which]
        return int(kib * KIB_BITS)

    def min_tile_bits(self) -> dict[str, int]:
        """Smallest contents each buffer must hold to run one fold (see ``docs/hardware.md``).

        The stationary operand needs one ``R x C`` tile; a streamed operand needs two waves
        (double buffering) along its array edge.
        """
        return self.flow.min_tile_bits(
            self.rows, self.cols, self.act_chunk_bits, self.weight_bits, self.acc_bits
        )

    def sram_pj(self, which: Literal["input", "weight", "output"], write: bool = False) -> float:
        """Energy of one ``word_bits`` access to that buffer (pJ)."""
        kib = self.buffer_bits(which) / KIB_BITS
        per_table_word = self.energy.sram_access(kib, write=write)
        return per_table_word * self.word_bits / self.energy.table_word_bits

    def dram_pj(self) -> float:
        """Energy of one ``word_bits`` DRAM access (pJ)."""
        return self.energy.dram_pj_per_word * self.word_bits / self.energy.table_word_bits

    @model_validator(mode="after")
    def _buffers_hold_a_tile(self) -> HardwareConfig:
        need = self.min_tile_bits()
        for which, bits in need.items():
            have = self.buffer_bits(which)  # type: ignore[arg-type]
            if have < bits:
                raise ValueError(
                    f"{which}_buffer_kib={getattr(self, which + '_buffer_kib')} holds {have} bits, "
                    f"smaller than one tile of the {self.rows}x{self.cols} {self.dataflow.upper()} "
                    f"array ({bits} bits = {bits / KIB_BITS:.4g} KiB); allowed: "
                    f">= {bits / KIB_BITS:.4g} KiB"
                )
        return self
