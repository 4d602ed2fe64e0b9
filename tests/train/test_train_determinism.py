"""Same seed and config: the same parameters, decisions and simulator figures, run after run."""

from __future__ import annotations

import numpy as np
import torch

from dynabit.data import load_dataset
from dynabit.hardware import compare, to_dict, trace_model
from dynabit.train import load_model, train


def test_two_runs_give_identical_parameters_decisions_and_cycles(tmp_path, tiny_cfg) -> None:
    cfg = tiny_cfg(quantize=True)
    runs = [train(cfg, tmp_path / f"run{i}") for i in (0, 1)]
    a, b = (r.model.state_dict() for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].stats == runs[1].stats  # test-set decision statistics, every layer

    images = load_dataset("digits", "test", subset=64).images
    figures = []
    for r in runs:
        model, run_cfg, _ = load_model(r.run_dir)
        shapes, masks = trace_model(model, images, run_cfg.quant.hardware)
        figures.append((masks, to_dict(compare(shapes, masks, run_cfg.quant.hardware))))
    (m0, sim0), (m1, sim1) = figures
    assert m0.keys() == m1.keys() and m0
    assert all(np.array_equal(m0[k], m1[k]) for k in m0)
    assert sim0 == sim1
