"""SCALE-Sim ``.cfg`` files to a ``HardwareConfig``.

Read: ``[architecture_presets]`` ArrayHeight, ArrayWidth, IfmapSramSzkB, FilterSramSzkB,
OfmapSramSzkB, Dataflow, Bandwidth; ``[run_presets]`` InterfaceBandwidth (USER or CALC);
``[layout]`` IfmapSRAMBankBandwidth / FilterSRAMBankBandwidth when present (SCALE-Sim 3.0.0
feeds the ifmap and filter buffers at these rates in USER mode and the ofmap buffer at
Bandwidth; so does the ``scalesim`` memory mode of ``simulate_scalesim``). Everything else
(offsets, request buffers, sparsity, Ramulator) is ignored.

Units as in SCALE-Sim: a word is one byte, SRAM sizes are in KB (1024 bytes), bandwidth is in
words per cycle. In the ``HardwareConfig`` this is ``word_bits=8``, 8-bit activations, weights
and outputs (one pass of 8-bit PEs), buffers in KiB, ``dram_words_per_cycle`` = Bandwidth.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

from dynabit.config.hardware import HardwareConfig


class ScaleSimConfigError(ValueError):
    """A malformed ``.cfg`` file: the message starts with ``file:line:column:``."""


@dataclass(frozen=True)
class ScaleSimConfig:
    """The fields of a SCALE-Sim ``.cfg`` that the cycle and memory models use."""

    run_name: str
    rows: int
    cols: int
    ifmap_kb: int
    filter_kb: int
    ofmap_kb: int
    dataflow: str
    bandwidth: int  # words/cycle: the ofmap buffer's, and our model's DRAM bandwidth
    user_bandwidth: bool  # InterfaceBandwidth = USER
    ifmap_bandwidth: int
    filter_bandwidth: int

    def hardware(self) -> HardwareConfig:
        """The equivalent ``HardwareConfig`` (1-byte words, 8-bit operands, KB buffers)."""
        return HardwareConfig(
            rows=self.rows,
            cols=self.cols,
            dataflow=self.dataflow,  # type: ignore[arg-type]
            act_chunk_bits=8,
            weight_bits=8,
            acc_bits=8,
            word_bits=8,
            input_buffer_kib=float(self.ifmap_kb),
            weight_buffer_kib=float(self.filter_kb),
            output_buffer_kib=float(self.ofmap_kb),
            dram_words_per_cycle=float(self.bandwidth),
        )

    def to_text(self) -> str:
        """A ``.cfg`` SCALE-Sim 3.0.0 runs (USER bandwidth, no custom layout)."""
        return (
            f"[general]\nrun_name = {self.run_name}\n\n"
            "[architecture_presets]\n"
            f"ArrayHeight: {self.rows}\nArrayWidth: {self.cols}\n"
            f"IfmapSramSzkB: {self.ifmap_kb}\nFilterSramSzkB: {self.filter_kb}\n"
            f"OfmapSramSzkB: {self.ofmap_kb}\n"
            "IfmapOffset: 0\nFilterOffset: 10000000\nOfmapOffset: 20000000\n"
            f"Bandwidth : {self.bandwidth}\nDataflow : {self.dataflow}\nMemoryBanks: 1\n"
            "ReadRequestBuffer: 32\nWriteRequestBuffer: 32\n\n"
            "[layout]\nIfmapCustomLayout: False\n"
            f"IfmapSRAMBankBandwidth: {self.ifmap_bandwidth}\nIfmapSRAMBankNum: 1\n"
            "IfmapSRAMBankPort: 2\nFilterCustomLayout: False\n"
            f"FilterSRAMBankBandwidth: {self.filter_bandwidth}\nFilterSRAMBankNum: 1\n"
            "FilterSRAMBankPort: 2\n\n"
            "[sparsity]\nSparsitySupport : false\nSparseRep : ellpack_block\n"
            "OptimizedMapping : false\nBlockSize : 8\nRandomNumberGeneratorSeed : 40\n\n"
            "[run_presets]\n"
            f"InterfaceBandwidth: {'USER' if self.user_bandwidth else 'CALC'}\n"
            "UseRamulatorTrace: False\n"
        )


def _locate(lines: list[str], section: str, key: str) -> tuple[int, int]:
    """1-based (line, column of the value) of ``key`` in ``section``; (1, 1) when absent."""
    current = None
    for i, line in enumerate(lines, start=1):
        s = line.strip()
        m = re.match(r"\[(.+)\]", s)
        if m:
            current = m.group(1).strip().lower()
            continue
        if current == section.lower():
            m = re.match(rf"\s*{re.escape(key)}\s*[:=]\s*", line, flags=re.IGNORECASE)
            if m:
                return i, m.end() + 1
    return 1, 1


def parse_cfg(text: str, source: str = "<cfg>") -> ScaleSimConfig:
    """Parse ``.cfg`` text; errors name the file, line and column."""
    lines = text.splitlines()
    cp = configparser.ConfigParser()
    try:
        cp.read_string(text, source=source)
    except configparser.Error as e:
        line = getattr(e, "lineno", 1) or 1
        raise ScaleSimConfigError(
            f"{source}:{line}:1: not a valid .cfg file ({e.message})"
        ) from None

    def get(section: str, key: str, default: str | None = None) -> tuple[str, str]:
        line, col = _locate(lines, section, key)
        where = f"{source}:{line}:{col}"
        if not cp.has_option(section, key):
            if default is not None:
                return default, where
            raise ScaleSimConfigError(f"{source}:{line}:{col}: missing [{section}] {key}")
        return cp.get(section, key).strip(), where

    def integer(section: str, key: str, default: str | None = None) -> int:
        raw, where = get(section, key, default)
        try:
            v = int(raw)
        except ValueError:
            raise ScaleSimConfigError(
                f"{where}: [{section}] {key} must be a positive integer, got {raw!r}"
            ) from None
        if v < 1:
            raise ScaleSimConfigError(f"{where}: [{section}] {key} must be >= 1, got {v}")
        return v

    df, where = get("architecture_presets", "Dataflow")
    if df.lower() not in ("os", "ws", "is"):
        raise ScaleSimConfigError(f"{where}: Dataflow must be os, ws or is, got {df!r}")
    mode, where = get("run_presets", "InterfaceBandwidth", "CALC")
    if mode.upper() not in ("USER", "CALC"):
        raise ScaleSimConfigError(f"{where}: InterfaceBandwidth must be USER or CALC, got {mode!r}")
    bw_raw, where = get("architecture_presets", "Bandwidth", "10")
    first = bw_raw.split(",")[0].strip()
    try:
        bw = int(first)
    except ValueError:
        raise ScaleSimConfigError(
            f"{where}: Bandwidth must be a positive integer (words/cycle), got {bw_raw!r}"
        ) from None
    if bw < 1:
        raise ScaleSimConfigError(f"{where}: Bandwidth must be >= 1 word/cycle, got {bw}")
    run_name = cp.get("general", "run_name", fallback=Path(source).stem).strip()
    return ScaleSimConfig(
        run_name=run_name,
        rows=integer("architecture_presets", "ArrayHeight"),
        cols=integer("architecture_presets", "ArrayWidth"),
        ifmap_kb=integer("architecture_presets", "IfmapSramSzkB"),
        filter_kb=integer("architecture_presets", "FilterSramSzkB"),
        ofmap_kb=integer("architecture_presets", "OfmapSramSzkB"),
        dataflow=df.lower(),
        bandwidth=bw,
        user_bandwidth=mode.upper() == "USER",
        ifmap_bandwidth=integer("layout", "IfmapSRAMBankBandwidth", str(bw)),
        filter_bandwidth=integer("layout", "FilterSRAMBankBandwidth", str(bw)),
    )


def read_cfg(path: str | Path) -> ScaleSimConfig:
    """Read a SCALE-Sim ``.cfg`` file."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ScaleSimConfigError(f"{p}: cannot read .cfg file ({e.strerror})") from None
    return parse_cfg(text, str(p))
