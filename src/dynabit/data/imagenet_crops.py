"""ImageNet evaluation preprocessing of one photo into a fixed set of 224x224 crops.

The shorter side is resized to 256 pixels (bilinear, antialiased; the longer side keeps the
aspect ratio), then crops of 224x224 are cut. :data:`TEN_CROP` names the views in order:

====  =====================================  ====  =====================================
view  crop                                   view  crop
====  =====================================  ====  =====================================
0     centre (the standard evaluation crop)  5     centre, flipped left-right
1     top-left corner                        6     top-left, flipped
2     top-right corner                       7     top-right, flipped
3     bottom-left corner                     8     bottom-left, flipped
4     bottom-right corner                    9     bottom-right, flipped
====  =====================================  ====  =====================================

``views="centre"`` keeps view 0 only. Crops stay ``uint8`` (a tenth of the memory of floats);
normalize them per batch with the model's constants.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

CROP_SIZE = 224
RESIZE_TO = 256
Views = Literal["ten", "centre"]
VIEWS: tuple[Views, ...] = ("ten", "centre")
TEN_CROP: tuple[str, ...] = (
    "centre",
    "top-left",
    "top-right",
    "bottom-left",
    "bottom-right",
    "centre-flip",
    "top-left-flip",
    "top-right-flip",
    "bottom-left-flip",
    "bottom-right-flip",
)


def views_per_photo(views: Views) -> int:
    """10 for ``"ten"``, 1 for ``"centre"``."""
    if views not in VIEWS:
        raise ValueError(f"unknown views {views!r}; allowed: {', '.join(VIEWS)}")
    return len(TEN_CROP) if views == "ten" else 1


def resize_shorter(img: Tensor, resize: int = RESIZE_TO, min_size: int = CROP_SIZE) -> Tensor:
    """``uint8 [3, H, W]`` with the shorter side resized to ``resize`` (both sides >= min_size)."""
    h, w = img.shape[-2:]
    scale = resize / min(h, w)
    nh, nw = max(min_size, round(h * scale)), max(min_size, round(w * scale))
    x = F.interpolate(img[None].float(), size=(nh, nw), mode="bilinear", antialias=True)[0]
    return x.round().clamp(0, 255).to(torch.uint8)


def imagenet_crops(
    rgb: np.ndarray, views: Views = "ten", size: int = CROP_SIZE, resize: int = RESIZE_TO
) -> Tensor:
    """The crops of one ``uint8 [H, W, 3]`` photo as ``uint8 [V, 3, size, size]`` (see above)."""
    n = views_per_photo(views)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"want a uint8 [H, W, 3] image, got {rgb.dtype} {tuple(rgb.shape)}")
    x = resize_shorter(torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1), resize, size)
    nh, nw = x.shape[-2:]
    corners = [((nh - size) // 2, (nw - size) // 2)]
    if n > 1:
        corners += [(0, 0), (0, nw - size), (nh - size, 0), (nh - size, nw - size)]
    crops = [x[:, t : t + size, c : c + size] for t, c in corners]
    if n > 1:
        crops += [c.flip(-1) for c in crops]
    return torch.stack(crops).contiguous()
