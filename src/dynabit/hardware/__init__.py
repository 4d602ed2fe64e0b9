"""Accelerator model: cycles, traffic and energy of dual-precision layers on a systolic array.

Typical use::

    from dynabit.config import HardwareConfig
    from dynabit.hardware import network_shapes, synthetic_masks, compare, to_markdown

    hw = HardwareConfig(rows=32, cols=32, dataflow="os")
    shapes = network_shapes("resnet18", hw=hw, group="fit")
    masks = synthetic_masks(shapes, ratio=0.25, samples=8)
    print(to_markdown(compare(shapes, masks, hw)))

From a trained model and a dataset in one call: ``simulate_run("runs/x", images=64)``;
everything ``dynabit simulate`` does (a model, program or named network, real, saved or
synthetic masks, a hardware config with overrides): ``run_simulation(...)``
(:mod:`dynabit.hardware.run`). See ``docs/hardware.md`` for the model.
"""

from dynabit.hardware.compare import Comparison, compare
from dynabit.hardware.mapping import FoldPlan, aligned_segments, dense_formula, fold_plan
from dynabit.hardware.masks import load_masks, save_masks, synthetic_masks
from dynabit.hardware.modes import SIM_MODES, SimMode, mode_for
from dynabit.hardware.report import to_csv, to_dict, to_json, to_markdown
from dynabit.hardware.run import (
    MaskMemoryError,
    RealMasks,
    Simulation,
    compare_masks,
    load_hardware,
    real_masks,
    run_simulation,
    simulate_run,
)
from dynabit.hardware.shapes import (
    LayerShape,
    fitted_group,
    layer_shapes_from_model,
    load_shapes,
    network_shapes,
    save_shapes,
    shape_of,
)
from dynabit.hardware.simulator import MODES, SimResult, simulate
from dynabit.hardware.trace import trace_model

__all__ = [
    "MODES",
    "SIM_MODES",
    "Comparison",
    "FoldPlan",
    "LayerShape",
    "MaskMemoryError",
    "RealMasks",
    "SimMode",
    "SimResult",
    "Simulation",
    "aligned_segments",
    "compare",
    "compare_masks",
    "dense_formula",
    "fitted_group",
    "fold_plan",
    "layer_shapes_from_model",
    "load_hardware",
    "load_masks",
    "load_shapes",
    "mode_for",
    "network_shapes",
    "real_masks",
    "run_simulation",
    "save_masks",
    "save_shapes",
    "shape_of",
    "simulate",
    "simulate_run",
    "synthetic_masks",
    "to_csv",
    "to_dict",
    "to_json",
    "to_markdown",
    "trace_model",
]
