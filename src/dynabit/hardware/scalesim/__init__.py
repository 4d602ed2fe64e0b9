"""SCALE-Sim interoperability: its topology CSVs and ``.cfg`` files in, its reports out.

One call::

    from dynabit.hardware.scalesim import simulate_scalesim
    result = simulate_scalesim("net.csv", "scale.cfg", report_dir="reports/")

reads the topology and the config, runs the dense model (one pass of 8-bit PEs, SCALE-Sim's
convention) and writes ``COMPUTE_REPORT.csv``, ``BANDWIDTH_REPORT.csv``,
``DETAILED_ACCESS_REPORT.csv`` (SCALE-Sim 3.0.0's columns) and ``DYNABIT_REPORT.csv``.
"""

from __future__ import annotations

from pathlib import Path

from dynabit.hardware.scalesim.cfg import ScaleSimConfig, ScaleSimConfigError, parse_cfg, read_cfg
from dynabit.hardware.scalesim.memory import MemoryResult, ScaleSimMemory
from dynabit.hardware.scalesim.reports import (
    REPORT_FILES,
    layer_reports,
    read_report,
    write_reports,
)
from dynabit.hardware.scalesim.topology import (
    TopologyError,
    TopologyLayer,
    format_topology,
    from_shape,
    parse_topology,
    read_topology,
    topology_shapes,
)
from dynabit.hardware.simulator import SimResult, simulate

EXAMPLES = Path(__file__).resolve().parent / "examples"


def simulate_scalesim(
    topology: str | Path,
    cfg: str | Path,
    report_dir: str | Path | None = None,
    memory: str = "dynabit",
) -> SimResult:
    """Simulate a SCALE-Sim topology on a SCALE-Sim config (dense mode); write reports if asked.

    ``memory``: ``"dynabit"`` (our reuse model, the default) or ``"scalesim"`` (SCALE-Sim
    3.0.0's double-buffered scratchpads at the config's bandwidths: ifmap and filter at
    ``IfmapSRAMBankBandwidth`` / ``FilterSRAMBankBandwidth``, ofmap at ``Bandwidth``).
    """
    conf = read_cfg(cfg)
    shapes = topology_shapes(topology)
    hw = conf.hardware()
    mem: str | ScaleSimMemory = memory
    if memory == "scalesim":
        mem = ScaleSimMemory.from_hw(hw, conf.ifmap_bandwidth, conf.filter_bandwidth)
    res = simulate(shapes, hw=hw, mode="dense", memory=mem)
    if report_dir is not None:
        write_reports(res, report_dir)
    return res


__all__ = [
    "EXAMPLES",
    "REPORT_FILES",
    "MemoryResult",
    "ScaleSimMemory",
    "ScaleSimConfig",
    "ScaleSimConfigError",
    "TopologyError",
    "TopologyLayer",
    "format_topology",
    "from_shape",
    "layer_reports",
    "parse_cfg",
    "parse_topology",
    "read_cfg",
    "read_report",
    "read_topology",
    "simulate_scalesim",
    "topology_shapes",
    "write_reports",
]
