"""What the report reads from a ``dynabit demo`` run directory, and how it names it.

Every figure of the report says which model and which images its numbers come from; the
helpers here find those out from the run itself (the QAT stage's config, the demo's summary),
so that a caption never claims more than what was measured.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Human labels of the simulated designs (``simulation.json`` modes).
MODE_LABELS = {
    "dynamic": "dynamic (this model)",
    "uniform": "uniform 8-bit",
    "high": "high pass only",
    "bitparallel": "bit-parallel 8-bit",
    "element": "per-element gating",
    "region": "region gating",
}
MODE_WHAT = {
    "dynamic": "high pass everywhere, low pass only in the groups this model refines",
    "uniform": "both 4-bit passes in every group (the reference of the speedups)",
    "high": "the 4-bit high pass alone, no group refined (the floor of this array)",
    "bitparallel": "the same number of 8x8-bit PEs: the whole code in one pass",
    "element": "the same refine ratio, decided per element (Precision-Gating style)",
    "region": "the same ratio, decided on each layer's input (DRQ style)",
}
# Human labels of the designs compared per area (``simulation.json`` ``per_area``).
DESIGN_LABELS = {
    "dual": "dual precision (this model's decisions)",
    "int8": "bit-parallel INT8",
    "int4": "uniform INT4 (one 4x8 pass)",
    "bitserial": "bit-serial, 1 bit per step (at the bit budget)",
}
DATASET_LABELS = {
    "fashion-mnist": "Fashion-MNIST",
    "mnist": "MNIST",
    "digits": "scikit-learn digits",
    "cifar10": "CIFAR-10",
    "idx": "IDX",
}


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object written by the demo, or ``{}`` when the file is missing."""
    return json.loads(path.read_text()) if path.is_file() else {}


def metrics(stage: Path) -> list[dict[str, Any]]:
    """The records of a training stage's ``metrics.jsonl``."""
    path = stage / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class MeasuredImages:
    """The test images the demo measured on: ``count`` of them, all of the split or the first
    ``count`` (``subset``)."""

    dataset: str
    count: int
    subset: bool

    @property
    def name(self) -> str:
        """The data set's display name."""
        return DATASET_LABELS.get(self.dataset, self.dataset)

    def all(self) -> str:
        """``all 10000 test images of Fashion-MNIST`` (or ``the first N ...``)."""
        which = "the first" if self.subset else "all"
        if not self.count:  # an older run that did not record how many
            return f"{'a subset of the' if self.subset else 'all'} test images of {self.name}"
        return f"{which} {self.count} test images of {self.name}"

    def first(self, n: int) -> str:
        """A named subset: ``the first n test images of Fashion-MNIST``."""
        if not self.count:
            return f"the first {n} test images of {self.name}"
        if n >= self.count:
            return self.all()
        return f"the first {n} of the {self.count} test images of {self.name}"


def measured_images(run_dir: Path, summary: dict[str, Any]) -> MeasuredImages:
    """Which test images the demo's accuracies come from (its QAT stage's config)."""
    from dynabit.config.run import load_run_config

    qat = run_dir / "train" / "qat"
    subset = False
    dataset = str(summary.get("dataset", "?"))
    if (qat / "config.yaml").is_file():
        cfg = load_run_config(qat / "config.yaml")
        subset, dataset = cfg.train.test_subset is not None, cfg.train.dataset
    count = summary.get("parity_samples") or read_json(qat / "summary.json").get("samples") or 0
    return MeasuredImages(dataset, int(count), subset)


def threshold_history(stage: Path) -> tuple[list[int], dict[str, list[list[float]]]]:
    """Block thresholds per training step: from ``metrics.jsonl`` when it logs them (records
    with a ``thresholds`` dict, written with every step record of a QAT run and once after
    calibration), else one point per checkpoint of ``stage``."""
    steps: list[int] = []
    out: dict[str, list[list[float]]] = {}
    logged = [m for m in metrics(stage) if isinstance(m.get("thresholds"), dict)]
    if logged:
        for m in logged:
            steps.append(int(m.get("global_step", len(steps))))
            for name, v in m["thresholds"].items():
                out.setdefault(name, []).append([float(x) for x in np.atleast_1d(v)])
        return steps, out
    from safetensors import safe_open

    ckpts = sorted(
        (int(m.group(1)), p)
        for p in (stage / "checkpoints").glob("step-*")
        if (m := re.fullmatch(r"step-(\d+)", p.name)) and (p / "model.safetensors").is_file()
    )
    for step, p in ckpts:
        with safe_open(str(p / "model.safetensors"), framework="pt") as f:
            keys = sorted(k for k in f.keys() if k.endswith(".threshold"))  # noqa: SIM118
            if not keys:
                continue
            steps.append(step)
            for k in keys:
                vals = f.get_tensor(k).float().flatten().tolist()
                out.setdefault(k.removesuffix(".threshold"), []).append(vals)
    return steps, out
