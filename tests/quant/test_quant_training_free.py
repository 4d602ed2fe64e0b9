"""Training-free path: calibrate a random network to a bit budget, compare with FP32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny_lite

from dynabit.config import QuantConfig
from dynabit.ptq import (
    agreement,
    evaluate_ptq,
    image_folder,
    predict,
    quantize_training_free,
    views,
)
from dynabit.quant import dynamic_layers
from dynabit.quant.baselines import method_config


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 3, 32, 32, generator=g)


@pytest.mark.parametrize("budget", [4.5, 5.0, 6.0])
def test_calibration_meets_budget(images: torch.Tensor, budget: float) -> None:
    torch.set_num_threads(1)
    model = tiny_lite()
    cfg = QuantConfig(budget=budget, hardware={"rows": 4, "cols": 8})
    qmodel = quantize_training_free(model, cfg, images, batch_size=8)
    assert dynamic_layers(qmodel), "depthwise and pointwise convs must be dynamic"
    res = evaluate_ptq(qmodel, images, predict(model, images))
    assert abs(res["b_avg"] - budget) <= 0.1
    assert 0.0 <= res["top1_agreement"] <= 1.0 and res["kl"] >= 0.0


def test_uniform_ptq_reports_its_width(images: torch.Tensor) -> None:
    torch.set_num_threads(1)
    model = tiny_lite()
    qmodel = quantize_training_free(model, method_config("uniform", 6), images)
    res = evaluate_ptq(qmodel, images, predict(model, images))
    assert res["b_avg"] == pytest.approx(6.0)
    assert res["kl"] < 0.05


def test_agreement_metrics() -> None:
    ref = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], [0.0, 5.0, 0.0, 0.0, 0.0, 0.0]])
    same = agreement(ref, ref)
    assert same == {"top1_agreement": 1.0, "top5_agreement": 1.0, "kl": pytest.approx(0.0)}
    # first sample: class 0 drops to rank 6, out of the top 5
    other = torch.tensor([[-9.0, 2.0, 1.0, 0.0, -1.0, -2.0], [0.0, 5.0, 0.0, 0.0, 0.0, 0.0]])
    res = agreement(ref, other)
    assert res["top1_agreement"] == 0.5 and res["top5_agreement"] == 0.5 and res["kl"] > 0


def test_views_shapes() -> None:
    img = torch.rand(3, 40, 60)
    assert views(img, size=24, resize=28).shape == (10, 3, 24, 24)
    assert views(img, size=24, resize=28, ten_crop=False).shape == (1, 3, 24, 24)


def test_image_folder_reads_rgb(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "b.jpg")  # grayscale
    imgs = image_folder(tmp_path)
    assert [tuple(i.shape) for i in imgs] == [(3, 20, 30), (3, 16, 16)]
    assert float(imgs[0].max()) == pytest.approx(200 / 255)
    with pytest.raises(FileNotFoundError):
        image_folder(tmp_path / "empty")
