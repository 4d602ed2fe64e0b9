"""One call from a trained model (or its integer program), a dataset and a hardware config to
the accelerator's figures: what ``dynabit simulate`` does, for Python users.

Typical use::

    from dynabit.hardware import run_simulation, simulate_run, to_markdown

    print(to_markdown(simulate_run("runs/demo", images=64)))   # the demo's QAT model
    sim = run_simulation(network="resnet18", ratio=0.25, rows=32, cols=32)  # synthetic masks
    print(to_markdown(sim.result))

``simulate_run`` accepts a run directory or checkpoint (the model's decisions on the first
``images`` test images), an integer program file or object (the integer engine's decisions), or
a quantized ``nn.Module`` with the images to trace. :func:`run_simulation` takes every input of
``dynabit simulate``: such a source, or layer shapes (a named network or a shapes file) with
synthetic or saved masks, on a hardware config file with overrides.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware.compare import Comparison, compare
from dynabit.hardware.masks import load_masks, mask_ratio, synthetic_masks
from dynabit.hardware.shapes import Decision, LayerShape, load_shapes, network_shapes

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_HARDWARE = Path(__file__).resolve().parents[1] / "configs" / "hardware_default.yaml"


BYTES_PER_MASK_ENTRY = 10  # a float64 draw and a bool per entry, plus the counting pass


def load_hardware(
    path: str | Path | HardwareConfig | None = None, **overrides: Any
) -> HardwareConfig:
    """A hardware config from ``path`` (default: the packaged one; a config object is taken as
    it is) with ``overrides`` that are not ``None`` applied and validated (raises
    :class:`dynabit.config.io.ConfigError`)."""
    from dynabit.config.io import load, validate

    hw = (
        path if isinstance(path, HardwareConfig) else load(HardwareConfig, path or DEFAULT_HARDWARE)
    )
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


class MaskMemoryError(ValueError):
    """Synthetic masks that would not fit in half the available memory (nothing was drawn)."""

    def __init__(self, need: int, have: int) -> None:
        gib = 2**30
        super().__init__(
            f"the masks of this simulation need about {need / gib:.1f} GiB, more than half the "
            f"{have / gib:.1f} GiB of memory available"
        )
        self.need, self.have = need, have


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``; else all of RAM)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def mask_memory(shapes: Sequence[LayerShape], samples: int, element: bool, region: bool) -> int:
    """Bytes the synthetic masks of ``shapes`` take while they are drawn and compared."""
    entries = 0
    for s in shapes:
        if not s.dynamic:
            continue
        entries += math.prod(s.mask_shape(samples))
        entries += math.prod(s.mask_shape(samples, "input")) if region else 0
        entries += math.prod(s.element_mask_shape(samples)) if element else 0
    return entries * BYTES_PER_MASK_ENTRY


def check_mask_memory(
    shapes: Sequence[LayerShape], samples: int, element: bool, region: bool
) -> None:
    """Raise :class:`MaskMemoryError` before drawing masks that would not fit in half the
    available memory."""
    need, have = mask_memory(shapes, samples, element, region), available_memory()
    if need > have // 2:
        raise MaskMemoryError(need, have)


@dataclass
class Simulation:
    """What one ``dynabit simulate`` computes: the layers, the masks they were costed with,
    the array and the comparison; ``real`` says where real masks came from (``None``:
    synthetic or read from a file)."""

    shapes: list[LayerShape]
    masks: dict[str, np.ndarray]
    hw: HardwareConfig
    result: Comparison
    real: RealMasks | None = None

    @property
    def masks_note(self) -> str | None:
        """One line naming the images and the model the real masks come from."""
        rm = self.real
        if rm is None:
            return None
        return f"masks: {rm.samples} test images of {rm.dataset} through {rm.source}"


def run_simulation(
    source: Any = None,
    *,
    network: str = "resnet18",
    shapes: str | Path | Sequence[LayerShape] | None = None,
    masks: str | Path | dict[str, np.ndarray] | None = None,
    image_size: int | None = None,
    group: tuple[int, int] | Literal["fit"] | None = "fit",
    decision: Decision = "output",
    ratio: float = 0.25,
    samples: int = 4,
    seed: int = 0,
    hardware: str | Path | HardwareConfig | None = None,
    rows: int | None = None,
    cols: int | None = None,
    dataflow: str | None = None,
    lanes: int | None = None,
    dataset: str | None = None,
    data_dir: str | None = None,
    images: int | torch.Tensor = 64,
    element: bool = True,
    region: bool = True,
) -> Simulation:
    """Everything ``dynabit simulate`` computes, in one call.

    The array: ``hardware`` (a config file or object; default the packaged one) with ``rows``,
    ``cols``, ``dataflow`` and ``lanes`` overriding it. The layers and masks, first match wins:

    - ``source`` (see :func:`real_masks`): the decisions real images produce in a trained
      model or an integer program, on the model's own array (only ``dataflow`` and ``lanes``
      taken from the overrides);
    - else ``shapes`` (a file written by :func:`~dynabit.hardware.save_shapes`, or a list),
      otherwise the named ``network`` at ``image_size`` with ``group`` (``"fit"``, ``None``
      for the array's default units, or ``(g_h, g_w)``) and ``decision``; and ``masks`` (an
      ``.npz`` written by :func:`~dynabit.hardware.save_masks`, or a dict), otherwise
      ``samples`` synthetic ones at ``ratio`` (:class:`MaskMemoryError` first if they would
      not fit in half the memory).

    Per-element (``element``) and region gating (``region``) run at the masks' refine ratio.
    """
    hw = load_hardware(hardware, rows=rows, cols=cols, dataflow=dataflow, lanes=lanes)
    real = None
    if source is not None:
        real = real_masks(
            source, dataset=dataset, data_dir=data_dir, images=images, dataflow=hw.dataflow
        )
        layers, got, hw = real.shapes, real.masks, real.hw
        if lanes is not None:
            hw = hw.model_copy(update={"lanes": lanes})
    else:
        if shapes is None:
            layers = network_shapes(
                network, image_size=image_size, hw=hw, group=group, decision=decision
            )
        elif isinstance(shapes, str | Path):
            layers = load_shapes(shapes)
        else:
            layers = list(shapes)
        if masks is None:
            check_mask_memory(layers, samples, element, region)
            got = synthetic_masks(layers, ratio, samples, seed)
        elif isinstance(masks, str | Path):
            got = load_masks(masks)
        else:
            got = dict(masks)
    result = compare_masks(layers, got, hw, element=element, region=region, seed=seed)
    return Simulation(layers, got, hw, result, real)


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
