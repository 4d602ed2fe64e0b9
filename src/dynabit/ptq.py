"""Training-free post-training quantization of a pretrained FP32 network.

Dynamic (dynabit) thresholds are set per block from score quantiles on a few calibration
images (:func:`dynabit.quant.calibrate`, in :data:`THRESHOLD_PASSES` joint passes); uniform
PTQ uses the same calibrated activation scales at a fixed width. Both are compared with the
FP32 model on the same images:

- ``top1_agreement``: share of images whose quantized top-1 class equals the FP32 top-1;
- ``top5_agreement``: share whose FP32 top-1 class is among the quantized top-5;
- ``kl``: mean over images of ``KL(softmax(fp32) || softmax(quant))`` in nats.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynabit.config.quant import QuantConfig
from dynabit.quant import calibrate, model_stats, prepare, reset_stats

SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "retina",
    "immunohistochemistry",
    "hubble_deep_field",
    "colorwheel",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Joint threshold passes of training-free calibration: on EfficientNet-Lite0 (48 dynamic
# layers) three keep the calibration B_avg within 0.01 of the budget at 1/8 of the time of
# the sequential way (docs/method.md).
THRESHOLD_PASSES = 3


def skimage_photos(names: Sequence[str] = SKIMAGE_PHOTOS) -> list[Tensor]:
    """scikit-image's bundled colour photos as ``(3, H, W)`` floats in ``[0, 1]``."""
    from skimage import data

    return [
        torch.from_numpy(getattr(data, n)()[..., :3].copy()).permute(2, 0, 1) / 255.0 for n in names
    ]


def image_folder(path: str | Path) -> list[Tensor]:
    """Every image file under ``path`` (sorted, recursive) as ``(3, H, W)`` floats in [0, 1]."""
    import numpy as np
    from PIL import Image

    files = sorted(p for p in Path(path).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {path}")
    out = []
    for f in files:
        with Image.open(f) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
        out.append(torch.from_numpy(arr).permute(2, 0, 1) / 255.0)
    return out


def views(
    img: Tensor,
    size: int = 224,
    resize: int = 256,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    ten_crop: bool = True,
) -> Tensor:
    """Normalised ``size`` crops of one image: centre only, or the ten-crop (5 crops + flips).

    The shorter side is resized to ``resize`` (bilinear, antialiased) first.
    """
    h, w = img.shape[-2:]
    scale = resize / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(img[None].float(), size=(nh, nw), mode="bilinear", antialias=True)[0]
    x = x.clamp(0, 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    corners = [(top, left)]
    if ten_crop:
        corners += [(0, 0), (0, nw - size), (nh - size, 0), (nh - size, nw - size)]
    crops = [x[:, t : t + size, c : c + size] for t, c in corners]
    if ten_crop:
        crops += [c.flip(-1) for c in crops]
    out = torch.stack(crops)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (out - m) / s


def agreement(ref_logits: Tensor, logits: Tensor) -> dict[str, float]:
    """Top-1 / top-5 agreement with the reference and mean ``KL(ref || quant)`` (nats)."""
    ref_top1 = ref_logits.argmax(1)
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    kl = F.kl_div(
        F.log_softmax(logits.double(), 1),
        F.log_softmax(ref_logits.double(), 1),
        reduction="none",
        log_target=True,
    ).sum(1)
    return {
        "top1_agreement": float((logits.argmax(1) == ref_top1).double().mean()),
        "top5_agreement": float((top5 == ref_top1[:, None]).any(1).double().mean()),
        "kl": float(kl.mean()),
    }


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 32) -> Tensor:
    """Logits of ``images`` in eval mode, in batches."""
    model.eval()
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def method_quant_config(
    model: nn.Module,
    method: str,
    budget: float,
    calib: Tensor,
    batch_size: int = 16,
    **fields: Any,
) -> QuantConfig:
    """The config ``method`` runs at ``budget`` on ``model``: ``method_config``, or, for the
    per-layer mixed precision (``mixed``), its assignment measured on ``calib``
    (:func:`dynabit.quant.mixed.mixed_precision`). ``fields`` are further config fields."""
    from dynabit.quant.baselines import method_config
    from dynabit.quant.mixed import is_mixed, mixed_precision

    if not is_mixed(method):
        return method_config(method, budget, **fields)
    batches = [calib[i : i + batch_size] for i in range(0, len(calib), batch_size)]
    return mixed_precision(model, batches, budget, **fields).config(**fields)


def quantize_training_free(
    model: nn.Module,
    config: QuantConfig,
    calib: Tensor,
    batch_size: int = 16,
    threshold_passes: int | None = THRESHOLD_PASSES,
) -> nn.Module:
    """``prepare`` a copy of ``model`` and ``calibrate`` it on ``calib``: no training.

    ``threshold_passes``: joint passes for the block thresholds (``None``: one pass per
    dynamic layer, the sequential way; see :func:`dynabit.quant.calibrate`)."""
    qmodel = prepare(model, config)
    batches = [calib[i : i + batch_size] for i in range(0, len(calib), batch_size)]
    calibrate(qmodel, batches, threshold_passes=threshold_passes)
    return qmodel.eval()


def evaluate_ptq(
    qmodel: nn.Module, images: Tensor, ref_logits: Tensor, batch_size: int = 32
) -> dict[str, Any]:
    """Agreement metrics against ``ref_logits`` and the measured MAC-weighted ``B_avg``."""
    reset_stats(qmodel)
    logits = predict(qmodel, images, batch_size)
    return {**agreement(ref_logits, logits), "b_avg": float(model_stats(qmodel).b_avg_macs)}
