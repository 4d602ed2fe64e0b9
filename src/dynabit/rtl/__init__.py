"""RTL of the dual-precision datapath in Amaranth: PE, array tile, decision unit, scheduler.

Typical use::

    from dynabit.rtl import TileParams, Tile, verify_job, engine_jobs, synthesize

    p = TileParams(rows=4, cols=4)                    # 4 x 4 PEs, 4 + 4-bit activations
    for job, ref in engine_jobs(converted_model, images[:1]):
        check = verify_job(job, p, references=[ref])  # bit- and cycle-exact?
    print(synthesize(p), synthesize(p.uniform()))    # cells, flip-flops, transistors

See ``docs/rtl.md`` for the block diagram, the interfaces and the timing of a tile.
"""

from dynabit.rtl.array import SystolicArray
from dynabit.rtl.decision import DecisionUnit
from dynabit.rtl.extract import Reference, UnsupportedForRtl, engine_jobs, frozen_reference
from dynabit.rtl.lane_params import LaneTileParams
from dynabit.rtl.lane_program import LaneProgram, build_lane_program, design_job, lane_params_for
from dynabit.rtl.lane_tile import LaneTile
from dynabit.rtl.lanes import LaneParams, LanePE
from dynabit.rtl.params import TileParams
from dynabit.rtl.pe import PE
from dynabit.rtl.program import (
    LayerJob,
    TileProgram,
    build_program,
    golden,
    golden_uniform,
    predicted_cycles,
)
from dynabit.rtl.scheduler import Scheduler
from dynabit.rtl.sim import SimResult, simulate, simulate_lanes
from dynabit.rtl.synth import (
    SynthesisError,
    SynthStats,
    compare_tiles,
    synthesize,
    verilog_text,
    write_verilog,
)
from dynabit.rtl.tile import Tile
from dynabit.rtl.verify import (
    LayerCheck,
    lane_model_cycles,
    model_cycles,
    params_for,
    verify_job,
    verify_lanes,
)

__all__ = [
    "PE",
    "DecisionUnit",
    "LaneParams",
    "LanePE",
    "LaneProgram",
    "LaneTile",
    "LaneTileParams",
    "LayerCheck",
    "LayerJob",
    "Reference",
    "Scheduler",
    "SimResult",
    "SynthStats",
    "SynthesisError",
    "SystolicArray",
    "Tile",
    "TileParams",
    "TileProgram",
    "UnsupportedForRtl",
    "build_lane_program",
    "build_program",
    "compare_tiles",
    "design_job",
    "engine_jobs",
    "frozen_reference",
    "golden",
    "golden_uniform",
    "lane_model_cycles",
    "lane_params_for",
    "model_cycles",
    "params_for",
    "predicted_cycles",
    "simulate",
    "simulate_lanes",
    "synthesize",
    "verify_job",
    "verify_lanes",
    "verilog_text",
    "write_verilog",
]
