"""Typed, validated configuration objects."""

from dynabit.config.hardware import HardwareConfig
from dynabit.config.io import ConfigError, load, save, validate
from dynabit.config.layer import LayerSpec
from dynabit.config.quant import LayerQuantConfig, Override, QuantConfig
from dynabit.config.run import RunConfig
from dynabit.config.training import TrainConfig

__all__ = [
    "ConfigError",
    "HardwareConfig",
    "LayerQuantConfig",
    "LayerSpec",
    "Override",
    "QuantConfig",
    "RunConfig",
    "TrainConfig",
    "load",
    "save",
    "validate",
]
