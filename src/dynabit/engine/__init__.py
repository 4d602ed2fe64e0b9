"""Integer reference engine: lower a converted model to an integer program, save/load it, and
run it with integer arithmetic only, skipping the low pass of unrefined groups.

Entry points: :func:`lower`, :func:`save_program` / :func:`load_program`, :class:`Executor` /
:func:`run_program`, :func:`evaluate_program`, :func:`check_parity`,
:func:`with_refine_ratio`, :func:`lower_checkpoint`.
"""

from dynabit.engine.evaluate import (
    ProgramEval,
    evaluate_program,
    layer_bits,
    lower_checkpoint,
    with_refine_ratio,
)
from dynabit.engine.execute import EngineError, EngineResult, Executor, run_program
from dynabit.engine.lower import lower
from dynabit.engine.parity import ParityReport, check_parity
from dynabit.engine.program import (
    PROGRAM_FORMAT,
    PROGRAM_VERSION,
    IntegerProgram,
    Op,
    ProgramFormatError,
    TensorInfo,
    load_program,
    save_program,
)
from dynabit.engine.trace import EngineTrace, LayerTrace, TraceFormatError, load_trace
from dynabit.quant.integer_ops import UnsupportedLayerError

__all__ = [
    "PROGRAM_FORMAT",
    "PROGRAM_VERSION",
    "EngineError",
    "EngineResult",
    "EngineTrace",
    "Executor",
    "IntegerProgram",
    "LayerTrace",
    "Op",
    "ParityReport",
    "ProgramEval",
    "ProgramFormatError",
    "TensorInfo",
    "UnsupportedLayerError",
    "check_parity",
    "evaluate_program",
    "layer_bits",
    "load_program",
    "load_trace",
    "TraceFormatError",
    "lower",
    "lower_checkpoint",
    "run_program",
    "save_program",
    "with_refine_ratio",
]
