"""Typed, validated configuration objects."""

from dynabit.config.hardware import HardwareConfig
from dynabit.config.io import ConfigError, load, save, validate
from dynabit.config.quant import LayerQuantConfig, Override, QuantConfig
from dynabit.config.run import RunConfig
from dynabit.config.training import TrainConfig

__all__ = [
    "ConfigError",
    "HardwareConfig",
    "LayerQuantConfig",
    "Override",
    "QuantConfig",
    "RunConfig",
    "TrainConfig",
    "load",
    "save",
    "validate",
]
