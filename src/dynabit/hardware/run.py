"""One call from a trained model (or its integer program) and a dataset to the accelerator's
figures: what ``dynabit simulate`` does, for Python users.

Typical use::

    from dynabit.hardware import simulate_run, to_markdown

    print(to_markdown(simulate_run("runs/demo", images=64)))   # the demo's QAT model

``simulate_run`` accepts a run directory or checkpoint (the model's decisions on the first
``images`` test images), an integer program file or object (the integer engine's decisions), or
a quantized ``nn.Module`` with the images to trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.compare import Comparison, compare
from dynabit.hardware.masks import mask_ratio, synthetic_masks
from dynabit.hardware.shapes import LayerShape

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_HARDWARE = Path(__file__).resolve().parents[1] / "configs" / "hardware_default.yaml"


def load_hardware(path: str | Path | None = None, **overrides: Any) -> HardwareConfig:
    """A hardware config from ``path`` (default: the packaged one) with ``overrides`` that are
    not ``None`` applied and validated (raises :class:`dynabit.config.io.ConfigError`)."""
    from dynabit.config.io import load, validate

    hw = load(HardwareConfig, path or DEFAULT_HARDWARE)
    over = {k: v for k, v in overrides.items() if v is not None}
    return validate(HardwareConfig, {**hw.model_dump(), **over}, "overrides") if over else hw


@dataclass
class RealMasks:
    """Layer shapes and the group decisions real images produced, on the model's array."""

    shapes: list[LayerShape]
    masks: dict[str, np.ndarray]
    hw: HardwareConfig
    source: str
    dataset: str | None = None

    @property
    def samples(self) -> int:
        """Images the masks come from."""
        return next(iter(self.masks.values())).shape[0] if self.masks else 0


def real_masks(
    source: Any,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    images: int | torch.Tensor = 64,
    dataflow: str | None = None,
) -> RealMasks:
    """The decisions of a trained model or integer program on real images.

    ``source``: a run directory / checkpoint path (the QAT model; the directory of
    ``dynabit demo`` works too), an integer program (path or object), or a quantized module.
    ``images``: the number of test images of ``dataset`` (default: the model's own), or a tensor
    of images (required for a module). The array geometry is the model's own; only
    ``dataflow`` may differ.
    """
    from dynabit.engine import IntegerProgram, load_program

    if isinstance(source, str | Path) and Path(source).is_file():  # runs are folders
        source = load_program(source)
    if isinstance(source, IntegerProgram):
        return _program_masks(source, dataset, data_dir, images, dataflow)
    if isinstance(source, str | Path):
        return _checkpoint_masks(Path(source), dataset, data_dir, images, dataflow)
    return _module_masks(source, images, dataflow)


def simulate_run(
    source: Any,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    images: int | torch.Tensor = 64,
    dataflow: str | None = None,
    element: bool = True,
    region: bool = True,
    seed: int = 0,
    baselines: tuple[str, ...] | None = None,
) -> Comparison:
    """Cycles, traffic and energy of ``source`` (see :func:`real_masks`) with its real
    decisions, against the baselines; per-element (``element``) and region gating (``region``)
    run at the same refine ratio."""
    rm = real_masks(source, dataset=dataset, data_dir=data_dir, images=images, dataflow=dataflow)
    return compare_masks(
        rm.shapes, rm.masks, rm.hw, element=element, region=region, seed=seed, baselines=baselines
    )


def compare_masks(
    shapes: list[LayerShape],
    masks: dict[str, np.ndarray],
    hw: HardwareConfig,
    *,
    element: bool = True,
    region: bool = True,
    seed: int = 0,
    baselines: tuple[str, ...] | None = None,
) -> Comparison:
    """:func:`compare` with gating baselines drawn at the refine ratio of ``masks``."""
    ratio = mask_ratio(shapes, masks)
    n = next(iter(masks.values())).shape[0] if masks else 1
    elem = synthetic_masks(shapes, ratio, n, seed + 1, kind="element") if element else None
    reg = synthetic_masks(shapes, ratio, n, seed + 2, kind="region") if region else None
    kw: dict[str, Any] = {} if baselines is None else {"baselines": baselines}
    return compare(shapes, masks, hw, element_masks=elem, region_masks=reg, **kw)


def _with_dataflow(hw: HardwareConfig, dataflow: str | None) -> HardwareConfig:
    if dataflow is None or dataflow == hw.dataflow:
        return hw
    from dynabit.config.io import validate

    return validate(HardwareConfig, {**hw.model_dump(), "dataflow": dataflow}, "dataflow")


def _checkpoint_masks(
    path: Path, dataset: str | None, data_dir: str | None, images: Any, dataflow: str | None
) -> RealMasks:
    from dynabit.data import load_dataset
    from dynabit.hardware.trace import trace_model
    from dynabit.train import CheckpointError, load_model
    from dynabit.train.evaluate import check_dataset_for_run

    model, cfg, ck = load_model(path)
    if not cfg.train.quantize:
        raise CheckpointError(f"{str(ck)!r} is an FP32 run: it has no decisions to simulate")
    hw = _with_dataflow(cfg.quant.hardware, dataflow)
    name = dataset or cfg.train.dataset
    if isinstance(images, int):
        ddir = data_dir or (cfg.train.data_dir if dataset is None else None)
        test = load_dataset(name, "test", ddir, images)
        check_dataset_for_run(test, cfg, ck)
        images = test.images
    shapes, masks = trace_model(model, images, hw)
    return RealMasks(shapes, masks, hw, str(ck), name)


def _program_masks(
    prog: Any, dataset: str | None, data_dir: str | None, images: Any, dataflow: str | None
) -> RealMasks:
    from dynabit.data import DatasetError, load_dataset
    from dynabit.engine import Executor
    from dynabit.engine.evaluate import check_dataset_for_program
    from dynabit.hardware.engine_trace import program_shapes, trace_masks

    hw = HardwareConfig(**prog.meta["hardware"]) if "hardware" in prog.meta else load_hardware()
    hw = _with_dataflow(hw, dataflow)
    name = dataset or prog.meta.get("dataset")
    source = str(prog.meta.get("checkpoint", "integer program"))
    if isinstance(images, int):
        if name is None:
            raise DatasetError("the program records no dataset: pass the dataset")
        test = load_dataset(name, "test", data_dir or prog.meta.get("data_dir"), images)
        check_dataset_for_program(test, prog, source)
        images = test.images
    result = Executor(prog)(images)
    return RealMasks(program_shapes(prog, hw), trace_masks(result.trace), hw, source, name)


def _module_masks(model: nn.Module, images: Any, dataflow: str | None) -> RealMasks:
    from dynabit.hardware.trace import trace_model
    from dynabit.quant import dynamic_layers

    if isinstance(images, int):
        raise TypeError("a module needs the images to trace (a tensor), not a count")
    config = getattr(model, "dynabit_config", None)  # set by prepare()
    if config is None or not dynamic_layers(model):
        raise ValueError("the model has no dynamic layers: prepare() it first")
    hw = _with_dataflow(config.hardware, dataflow)
    shapes, masks = trace_model(model, images, hw)
    return RealMasks(shapes, masks, hw, type(model).__name__)
