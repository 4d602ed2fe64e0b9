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

import contextlib
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


# ----------------------------------------------------------------------------- reconstruction


class _Stop(Exception):
    """Raised by a forward hook once the block's input is captured (skips the rest)."""


def reconstruction_blocks(model: nn.Module) -> list[str]:
    """The blocks :func:`reconstruct` fits, in registration order: a container of several
    parts with quantized layers (a ``Sequential``, the model itself) is split into them; any
    other module with quantized layers is one block (an inverted residual, a ``conv_bn``)."""
    from dynabit.quant.layers import QuantLayerMixin

    def has_quant(m: nn.Module) -> bool:
        return any(isinstance(x, QuantLayerMixin) for x in m.modules())

    def walk(m: nn.Module, prefix: str) -> list[str]:
        parts = [(n, c) for n, c in m.named_children() if has_quant(c)]
        out: list[str] = []
        for n, c in parts:
            name = f"{prefix}{n}"
            split = isinstance(c, nn.Sequential) and sum(map(has_quant, c.children())) > 1
            out += walk(c, name + ".") if split else [name]
        return out

    return walk(model, "")


def _block_penalty(layers: list[Any]) -> Tensor:
    """The budget penalty of one block's dynamic layers (as :func:`dynabit.quant.budget_penalty`
    for the network): mean hinge distance of every block's refine ratio to its bounds, plus how
    far the block's MAC-weighted ``B_avg`` exceeds ``B_target``, in units of ``B_lo``."""
    terms, bits, macs = [], torch.zeros(()), 0.0
    dyn = [m for m in layers if m.dynamic and m.last_block_ratio is not None]
    for m in dyn:
        lo, hi = m.bounds()
        r = m.last_block_ratio
        terms.append(torch.relu(lo - r) + torch.relu(r - hi))
        bits = bits + (m.qcfg.hi_bits + m.qcfg.lo_bits * m.last_mac_ratio) * m.last_macs
        macs += m.last_macs
    if not terms:
        return torch.zeros(())
    c = dyn[0].qcfg
    over = torch.relu(bits / max(macs, 1.0) - c.budget) / c.lo_bits
    return torch.cat(terms).mean() + over


def reconstruct(
    qmodel: nn.Module,
    model: nn.Module,
    calib: Tensor,
    steps: int = 100,
    lr: float = 1e-3,
    batch_size: int = 16,
    penalty: float = 1.0,
    blocks: Sequence[str] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Label-free block reconstruction of a calibrated ``qmodel`` against its float ``model``.

    Block by block in order (:func:`reconstruction_blocks`), the quantized block's output on
    the calibration crops, fed what the quantized model (with the blocks before it already
    fitted) feeds it, is fitted to the float block's output (the float model's own input):
    Adam on the block's activation scales and, for the gating methods, its trainable
    thresholds through the surrogate, with ``penalty`` times the budget penalty of the block's
    layers (each block's refine ratio within its bounds, the block's ``B_avg`` at most
    ``B_target``). Weights stay as they are. A block ends with the
    parameters of its lower error (before or after); thresholds that are not trained (DRQ's)
    are then set again by quantiles on the fitted block's inputs. Returns per block ``{"block",
    "mse_before", "mse_after"}`` (eval mode, on the calibration crops).
    """
    from dynabit.quant.budget import quant_layers, reset_stats
    from dynabit.quant.prepare import bn_followers
    from dynabit.utils.progress import progress_bar

    names = list(blocks) if blocks is not None else reconstruction_blocks(qmodel)
    follows = bn_followers(model) if qmodel.dynabit_config.fold_bn else {}
    xs = [calib[i : i + batch_size] for i in range(0, len(calib), batch_size)]
    targets = _outputs(model, xs, [follows.get(n, n) for n in names])
    qparams = [p for p in qmodel.parameters()]
    was_grad = [p.requires_grad for p in qparams]
    bar = progress_bar(total=len(names) * steps, desc="reconstruction", disable=not progress)
    report = []
    qmodel.eval()
    try:
        for name, target in zip(names, targets, strict=True):
            block = qmodel.get_submodule(name)
            inputs = _block_inputs(qmodel, xs, block)
            layers = [m for _, m in quant_layers(block)]
            train = [m.act_quant.act_scale for m in layers]
            train += [m.threshold for m in layers if m.dynamic and m.qcfg.train_thresholds]
            for p in qparams:
                p.requires_grad_(False)
            for p in train:
                p.requires_grad_(True)
            before = _block_mse(block, inputs, target)
            saved = [p.detach().clone() for p in train]
            # Scales move in proportion to their size; thresholds are in score-scale units.
            groups = [
                {"params": [p], "lr": lr * float(p.detach().abs()) if p.dim() == 0 else lr}
                for p in train
            ]
            opt = torch.optim.Adam(groups)
            g = torch.Generator().manual_seed(0)
            x_all, t_all = torch.cat(inputs), torch.cat(target)
            power = float(t_all.pow(2).mean()) or 1.0
            with torch.enable_grad():
                for _ in range(steps):
                    idx = torch.randint(0, len(x_all), (min(batch_size, len(x_all)),), generator=g)
                    block.train()
                    out = block(x_all[idx])
                    fit = F.mse_loss(out, t_all[idx]) / power  # relative: O(1) like the penalty
                    loss = fit + penalty * _block_penalty(layers)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    block.eval()
                    bar.update(1)
            after = _block_mse(block, inputs, target)
            if after > before:  # keep what fitted better
                with torch.no_grad():
                    for p, s in zip(train, saved, strict=True):
                        p.copy_(s)
                after = before
            _reset_fixed_thresholds(block, layers, inputs)
            after = _block_mse(block, inputs, target)
            report.append({"block": name, "mse_before": before, "mse_after": after})
    finally:
        bar.close()
        for p, g_ in zip(qparams, was_grad, strict=True):
            p.requires_grad_(g_)
        qmodel.eval()
        reset_stats(qmodel)
    return report


@torch.no_grad()
def _reset_fixed_thresholds(block: nn.Module, layers: list[Any], inputs: list[Tensor]) -> None:
    """Thresholds that are not trained (DRQ's) set again on the fitted block's calibration
    inputs, one layer at a time, as DRQ sets them offline on the network it runs."""
    from dynabit.quant.calibrate import set_thresholds

    for m in layers:
        if m.dynamic and not m.qcfg.train_thresholds:
            m.set_calibrating(True)
            m.collect_scores()
            for x in inputs:
                block(x)
            set_thresholds(m, m.take_scores(), None)
            m.set_calibrating(False)


@torch.no_grad()
def _outputs(model: nn.Module, xs: list[Tensor], names: list[str]) -> list[list[Tensor]]:
    """Each named module's outputs on every batch, from one pass per batch (hooks)."""
    model.eval()
    out: list[list[Tensor]] = [[] for _ in names]
    hooks = [
        model.get_submodule(n).register_forward_hook(
            lambda _m, _a, y, i=i: out[i].append(y.detach())
        )
        for i, n in enumerate(names)
    ]
    try:
        for x in xs:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


@torch.no_grad()
def _block_inputs(qmodel: nn.Module, xs: list[Tensor], block: nn.Module) -> list[Tensor]:
    """What ``qmodel`` feeds ``block`` on every batch (the forward stops there)."""
    got: list[Tensor] = []

    def grab(_m: nn.Module, args: tuple) -> None:
        got.append(args[0].detach())
        raise _Stop

    h = block.register_forward_pre_hook(grab)
    try:
        for x in xs:
            with contextlib.suppress(_Stop):
                qmodel(x)
    finally:
        h.remove()
    return got


@torch.no_grad()
def _block_mse(block: nn.Module, inputs: list[Tensor], target: list[Tensor]) -> float:
    block.eval()
    err = sum(
        float(F.mse_loss(block(x), t, reduction="sum")) for x, t in zip(inputs, target, strict=True)
    )
    return err / sum(t.numel() for t in target)
