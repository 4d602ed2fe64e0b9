"""Our own models (torchvision is not usable here): made only of modules, BN after its conv."""

from dynabit.models.efficientnet_lite import (
    EfficientNetLite,
    efficientnet_lite,
    efficientnet_lite0,
    efficientnet_lite1,
    load_efficientnet_lite0_pretrained,
    load_efficientnet_lite_pretrained,
)
from dynabit.models.layers import Add, ConvBNReLU, init_weights
from dynabit.models.mobilenet_v2 import InvertedResidual, MobileNetV2, mobilenet_v2
from dynabit.models.registry import DEFAULT_WIDTHS, MODEL_NAMES, build_model
from dynabit.models.resnet import BasicBlock, ResNet, resnet18, resnet20
from dynabit.models.small_cnn import SmallCNN

__all__ = [
    "DEFAULT_WIDTHS",
    "MODEL_NAMES",
    "Add",
    "BasicBlock",
    "ConvBNReLU",
    "EfficientNetLite",
    "InvertedResidual",
    "MobileNetV2",
    "ResNet",
    "SmallCNN",
    "build_model",
    "efficientnet_lite",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "init_weights",
    "load_efficientnet_lite0_pretrained",
    "load_efficientnet_lite_pretrained",
    "mobilenet_v2",
    "resnet18",
    "resnet20",
]
