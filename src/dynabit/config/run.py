"""The config of a whole run: ``train`` and ``quant`` sections, plus an optional FP32 stage.

One YAML/JSON file holds every section::

    train: {dataset: fashion-mnist, epochs: 3, lr: 0.01}
    quant: {budget: 5}
    pretrain: {epochs: 8, lr: 0.05}   # optional: FP32 stage first, fields override ``train``

The same file is written into the run directory and beside every checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dynabit.config.io import ConfigError, read_mapping, validate
from dynabit.config.quant import QuantConfig
from dynabit.config.training import TrainConfig

SECTIONS = ("train", "quant", "pretrain")


class RunConfig(BaseModel):
    """Everything a ``dynabit train`` run needs; ``pretrain`` adds an FP32 stage before QAT."""

    model_config = ConfigDict(extra="forbid")

    train: TrainConfig = Field(default_factory=TrainConfig)
    quant: QuantConfig = Field(default_factory=QuantConfig)
    pretrain: dict[str, Any] | None = Field(
        None,
        description="FP32 stage run first (then QAT warm-starts from it); fields override `train`.",
    )

    @field_validator("pretrain")
    @classmethod
    def _pretrain_fields(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            bad = sorted(set(v) & {"quantize", "init_from"})
            if bad:
                raise ValueError(f"pretrain may not set {bad}: the FP32 stage fixes them")
            unknown = sorted(set(v) - set(TrainConfig.model_fields))
            if unknown:
                raise ValueError(
                    f"unknown pretrain field(s) {unknown}; allowed: the fields of `train`"
                )
        return v

    def pretrain_config(self, where: str = "config") -> TrainConfig:
        """The FP32 stage: ``train`` with the ``pretrain`` overrides, ``quantize=False``."""
        if self.pretrain is None:
            raise ValueError("this run has no pretrain stage")
        data = {**self.train.model_dump(), **self.pretrain, "quantize": False, "init_from": None}
        return validate(TrainConfig, data, f"{where} [pretrain]")

    @property
    def two_stage(self) -> bool:
        """True when this run trains FP32 first and then fine-tunes with quantization."""
        return self.pretrain is not None and self.train.quantize and self.train.init_from is None

    def updated(
        self,
        train: dict[str, Any] | None = None,
        quant: dict[str, Any] | None = None,
        where: str = "overrides",
    ) -> RunConfig:
        """A validated copy with some ``train`` / ``quant`` fields replaced."""
        data = self.model_dump(mode="json")
        data["train"].update(train or {})
        data["quant"].update(quant or {})
        return validate_run(data, where)


def validate_run(data: Any, where: str = "config") -> RunConfig:
    """Build a ``RunConfig`` from a mapping; errors name the file, the section and the field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with sections {list(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {unknown}; allowed: {list(SECTIONS)}")
    # Validate each section on its own so the message says which section is wrong.
    train = validate(TrainConfig, data.get("train"), f"{where} [train]")
    quant = validate(QuantConfig, data.get("quant"), f"{where} [quant]")
    run = validate(RunConfig, {"pretrain": data.get("pretrain")}, where)
    run = run.model_copy(update={"train": train, "quant": quant})
    if run.pretrain is not None:
        run.pretrain_config(where)  # the merged FP32 stage must validate too
    return run


def load_run_config(path: str | Path) -> RunConfig:
    """Load a run config from a ``.yaml``/``.yml``/``.json`` file with sections."""
    return validate_run(read_mapping(path), str(path))


def save_run_config(cfg: RunConfig, path: str | Path) -> None:
    """Write a run config as YAML or JSON (by extension), atomically."""
    from dynabit.config.io import save

    save(cfg, path)
