"""RunConfig: one file with train / quant / pretrain sections."""

from __future__ import annotations

import json

import pytest

from dynabit.config.io import ConfigError
from dynabit.config.run import RunConfig, load_run_config, save_run_config, validate_run


def test_yaml_sections_load(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text(
        "train:\n  dataset: digits\n  epochs: 7\n  lr: 0.01\n"
        "quant:\n  budget: 6\n  hardware: {rows: 4, cols: 8}\n"
    )
    cfg = load_run_config(p)
    assert cfg.train.dataset == "digits" and cfg.train.epochs == 7 and cfg.train.lr == 0.01
    assert cfg.quant.budget == 6 and cfg.quant.hardware.cols == 8
    assert cfg.pretrain is None and not cfg.two_stage


def test_json_and_missing_sections_default(tmp_path):
    p = tmp_path / "run.json"
    p.write_text(json.dumps({"quant": {"hi_bits": 3, "budget": 4}}))
    cfg = load_run_config(p)
    assert cfg.train == RunConfig().train
    assert cfg.quant.hi_bits == 3


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_load_roundtrip(tmp_path, suffix):
    cfg = validate_run(
        {
            "train": {"dataset": "digits", "epochs": 3, "checkpoint_every": 5},
            "quant": {"budget": 5.5, "group": [2, 2]},
            "pretrain": {"epochs": 9, "lr": 0.1},
        }
    )
    save_run_config(cfg, tmp_path / f"c{suffix}")
    assert load_run_config(tmp_path / f"c{suffix}") == cfg


def test_error_names_file_section_and_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  epochs: 0\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml \[train\]: epochs"):
        load_run_config(p)
    p.write_text("quant:\n  budget: 9\n")
    with pytest.raises(ConfigError, match=r"\[quant\]"):
        load_run_config(p)


def test_unknown_section_and_field_rejected():
    with pytest.raises(ConfigError, match="unknown section"):
        validate_run({"trian": {}})
    with pytest.raises(ConfigError, match="lrr"):
        validate_run({"train": {"lrr": 1}})


def test_pretrain_merges_over_train_and_is_fp32():
    cfg = validate_run({"train": {"epochs": 2, "lr": 0.01, "seed": 4}, "pretrain": {"epochs": 8}})
    pre = cfg.pretrain_config()
    assert (pre.epochs, pre.lr, pre.seed, pre.quantize) == (8, 0.01, 4, False)
    assert cfg.two_stage
    assert not cfg.updated(train={"quantize": False}).two_stage


@pytest.mark.parametrize(
    "pretrain, msg",
    [({"quantize": True}, "may not set"), ({"epochz": 1}, "unknown pretrain"), ({"lr": -1}, "lr")],
)
def test_pretrain_validation(pretrain, msg):
    with pytest.raises(ConfigError, match=msg):
        validate_run({"pretrain": pretrain}, "f.yaml")


def test_updated_revalidates():
    cfg = RunConfig()
    assert cfg.updated(train={"epochs": 11}, quant={"budget": 6}).quant.budget == 6
    with pytest.raises(ConfigError, match="overrides"):
        cfg.updated(quant={"budget": 99})
