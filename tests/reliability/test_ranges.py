"""Numbers checked before any work starts (class 4), contradictions refused or warned about
(class 5), and NaN/Inf inputs refused alike by the QAT model, the frozen model and the engine
(class 6); see docs/errors.md."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_process import dynabit_process, one_error_line
from digits_fixtures import fp32_digits_cnn
from tiny_runs import tiny_cfg

from dynabit.config import ConfigError, QuantConfig
from dynabit.config.run import save_run_config, validate_run
from dynabit.data import DatasetError, load_dataset
from dynabit.engine import Executor, lower
from dynabit.quant import calibrate, convert, prepare
from dynabit.train import train

torch.set_num_threads(1)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: uint8, or big-endian int32 for larger values."""
    code, data = (
        (0x08, array.astype(np.uint8)) if array.max() < 256 else (0x0C, array.astype(">i4"))
    )
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + data.tobytes())


def idx_dir(path: Path, train_side: int = 8, test_side: int = 8, top_label: int = 9) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, side in (("train", train_side), ("t10k", test_side)):
        write_idx(path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (40, side, side)))
        labels = np.arange(40) % 10
        labels[-1] = top_label
        write_idx(path / f"{prefix}-labels-idx1-ubyte", labels)
    return path


# ------------------------------------------------------------------------ class 4: ranges


@pytest.mark.parametrize(
    "section,field,value,needle",
    [
        ("train", "seed", 2**64, "less than or equal to 9223372036854775807"),
        ("train", "seed", -1, "greater than or equal to 0"),
        ("train", "epochs", True, "expected a number, got the boolean True"),
        ("quant", "temperature", float("inf"), "finite number"),
        ("quant", "threshold_target", float("nan"), "finite number"),
        ("quant", "threshold_target", 1e300, "less than or equal to 1" + "0" * 30),
    ],
)
def test_config_values_are_checked_at_load(section, field, value, needle) -> None:
    with pytest.raises(ConfigError) as e:
        validate_run({section: {field: value}}, "cfg.yaml")
    assert f"cfg.yaml [{section}]" in str(e.value) and field in str(e.value)
    assert needle in str(e.value)


def test_cli_seed_beyond_64_bits_fails_before_the_run_dir_exists(tmp_path: Path) -> None:
    res = dynabit_process(
        "train", "-o", str(tmp_path / "run"), "--seed", str(2**64), "--dataset", "digits"
    )
    one_error_line(res, "seed", str(2**64))
    assert not (tmp_path / "run").exists()


def test_idx_label_out_of_range_is_refused_without_allocating(tmp_path: Path) -> None:
    d = idx_dir(tmp_path / "idx", top_label=2_000_000_000)
    with pytest.raises(DatasetError, match=r"label 2000000000 is out of range.*\[0, 99999\]"):
        load_dataset("idx", "train", d)


def test_train_and_test_splits_of_different_image_sizes(tmp_path: Path) -> None:
    d = idx_dir(tmp_path / "idx", train_side=8, test_side=10)
    cfg = tiny_cfg(dataset="idx", data_dir=str(d), train_subset=None, test_subset=None)
    with pytest.raises(DatasetError, match="train images are 1x8x8, test images 1x10x10"):
        train(cfg, tmp_path / "run")
    save_run_config(cfg, tmp_path / "cfg.yaml")
    res = dynabit_process("train", "-c", str(tmp_path / "cfg.yaml"), "-o", str(tmp_path / "run2"))
    one_error_line(res, "1x8x8", "1x10x10")
    assert not (tmp_path / "run2" / "checkpoints").exists()


@pytest.mark.parametrize(
    "args,needle",
    [
        (("--image-size", "0"), "--image-size must lie in [1, 16384], got 0"),
        (("--image-size", "100000"), "--image-size must lie in [1, 16384], got 100000"),
        (("--image-size", "16384", "--samples", "64"), "GiB, more than half the"),
        (("--samples", "0"), "--samples must be >= 1"),
        (("--ratio", "1.5"), "--ratio must lie in [0, 1]"),
    ],
)
def test_simulate_ranges_and_memory_estimate(args, needle) -> None:
    one_error_line(dynabit_process("simulate", "--network", "resnet18", *args), needle)


@pytest.mark.parametrize("size", ["-4", "0"])
def test_eval_batch_size_out_of_range(tmp_path: Path, size: str) -> None:
    one_error_line(dynabit_process("eval", str(tmp_path), "--batch-size", size), f"got {size}")


# ------------------------------------------------------------------ class 5: contradictions


def test_resume_without_a_run_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    one_error_line(dynabit_process("train", "-o", str(missing), "--resume"), "does not exist")
    assert not missing.exists()
    (tmp_path / "empty").mkdir()
    one_error_line(
        dynabit_process("train", "-o", str(tmp_path / "empty"), "--resume"), "no run to resume"
    )
    assert list((tmp_path / "empty").iterdir()) == []


def _digits_model() -> torch.nn.Module:
    model, _, _ = fp32_digits_cnn(epochs=0)
    return model


def test_override_matching_no_layer_is_an_error(tmp_path: Path) -> None:
    cfg = QuantConfig(overrides=[{"pattern": "features\\.conv9", "settings": {"bits": 6}}])
    with pytest.raises(ConfigError, match=r"overrides\[0\]: pattern 'features\\\\.conv9' matches"):
        prepare(_digits_model(), cfg)
    run_cfg = tiny_cfg({"overrides": cfg.model_dump()["overrides"]}, quantize=True)
    save_run_config(run_cfg, tmp_path / "cfg.yaml")
    res = dynabit_process("train", "-c", str(tmp_path / "cfg.yaml"), "-o", str(tmp_path / "run"))
    one_error_line(res, "matches no quantizable layer")


def test_uniform_bits_with_an_unused_budget_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dynabit.quant.prepare"):
        prepare(_digits_model(), QuantConfig(uniform_bits=6, budget=5.0))
    assert "quant.uniform_bits=6" in caplog.text and "quant.budget=5 is not used" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dynabit.quant.prepare"):
        prepare(_digits_model(), QuantConfig(method="uniform", budget=6))  # consistent
    assert "not used" not in caplog.text


def test_bounds_without_r_star_warn(caplog: pytest.LogCaptureFixture) -> None:
    # (0, 0) forces the high pass everywhere: a deliberate setting, so a warning, not an error.
    with caplog.at_level(logging.WARNING, logger="dynabit.quant.prepare"):
        prepare(_digits_model(), QuantConfig(bounds=(0.5, 0.6)))
    assert "quant.bounds (0.5, 0.6) do not contain r* = 0.25" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dynabit.quant.prepare"):
        prepare(_digits_model(), QuantConfig(bounds=(0.2, 0.3)))
    assert "do not contain" not in caplog.text


def test_conv1d_left_in_float_is_named(caplog: pytest.LogCaptureFixture) -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(1, 2), torch.nn.Conv1d(4, 4, 3)
    )
    model.add_module("head", torch.nn.Linear(4, 2))
    with caplog.at_level(logging.WARNING, logger="dynabit.quant.prepare"):
        prepare(model, QuantConfig(hardware={"rows": 4, "cols": 4}))
    assert "1 layer(s) stay in float" in caplog.text and ": 2" in caplog.text


# --------------------------------------------------------- class 6: non-finite inputs


def test_qat_frozen_and_engine_all_refuse_nan_images() -> None:
    model, train_split, test = fp32_digits_cnn(epochs=1)
    qat = prepare(model, QuantConfig(hardware={"rows": 4, "cols": 4}))
    calibrate(qat, [train_split.images[:64]])
    frozen = convert(qat, strict=True)
    x = test.images[:4].clone()
    x[2, 0, 3, 3] = float("nan")
    x[3, 0, 1, 1] = float("inf")
    for net in (qat, frozen):
        with pytest.raises(ValueError, match=r"2 non-finite value\(s\).* in 2 sample"):
            net(x)
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\).* in 2 sample"):
        Executor(lower(frozen, (1, 8, 8)))(x)
    ok = test.images[:4]
    assert torch.isfinite(frozen(ok)).all() and torch.isfinite(qat(ok)).all()
