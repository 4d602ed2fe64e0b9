"""Bad inputs: data that does not fit a trained model, empty or tiny datasets, NaN/Inf inputs.

Each case either fails with a clear error (exit status 2 from the CLI, no traceback) or has the
documented behaviour (see docs/errors.md).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tiny_runs
import torch
from torch.utils.data import TensorDataset
from typer.testing import CliRunner

from dynabit.cli.main import app
from dynabit.config.io import ConfigError
from dynabit.config.run import RunConfig, save_run_config
from dynabit.data import (
    FASHION_MNIST_DIR,
    NORM_STATS,
    DatasetError,
    DatasetMismatchError,
    load_dataset,
)
from dynabit.data.base import build_image_dataset
from dynabit.engine import Executor, evaluate_program, load_program, lower_checkpoint
from dynabit.train import evaluate, evaluate_checkpoint, load_model, run_training

torch.set_num_threads(1)
runner = CliRunner()

needs_fashion = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason=f"{FASHION_MNIST_DIR} absent (dataset-fashion-mnist)"
)

FAST = {"epochs": 1, "max_steps_per_epoch": 3, "train_subset": 200, "test_subset": 50}


def tiny_cfg(quant: dict[str, Any] | None = None, **train: Any) -> RunConfig:
    """The shared tiny digits run, shorter, quantized unless told otherwise."""
    return tiny_runs.tiny_cfg(quant, **{**FAST, "quantize": True, **train})


def write_idx(path: Path, array: np.ndarray) -> None:
    """A raw (big-endian, uint8) IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def idx_dir(path: Path, n: int, side: int, classes: int = 10) -> Path:
    """An MNIST-style directory: ``n`` random ``side x side`` images per split."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, side, side)))
        write_idx(path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % classes)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained quantized digits run (8x8 images, 1 channel, 10 classes)."""
    path = tmp_path_factory.mktemp("bad_inputs") / "run"
    run_training(tiny_cfg(), path)
    return path


@pytest.fixture(scope="module")
def program(run: Path) -> Path:
    path = run.parent / "model.safetensors"
    lower_checkpoint(run).save(path)
    return path


@pytest.fixture(scope="module")
def idx28(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An IDX dataset of 28x28 images (like Fashion-MNIST)."""
    return idx_dir(tmp_path_factory.mktemp("idx28"), 40, 28)


def user_error(args: list[str], *needles: str) -> str:
    """Run the CLI: exit status 2, one ``error:`` line holding every needle, no traceback."""
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert "Traceback" not in res.output
    assert "error:" in res.stderr, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr
    return res.stderr


# ------------------------------------------------- a) images that do not fit the model

SHAPES = ("1x28x28 images", "expects 1x8x8 images", "'digits'")


@needs_fashion
def test_eval_digits_run_on_fashion_mnist_cli(run: Path) -> None:
    args = ["eval", str(run), "--dataset", "fashion-mnist", "--subset", "20"]
    user_error(args, "'fashion-mnist'", *SHAPES)


def test_eval_on_wrong_image_size_cli_and_api(run: Path, idx28: Path) -> None:
    user_error(["eval", str(run), "--dataset", "idx", "--data-dir", str(idx28)], *SHAPES)
    with pytest.raises(DatasetMismatchError, match="1x28x28 images.*expects 1x8x8"):
        evaluate_checkpoint(run, dataset="idx", data_dir=str(idx28))


def test_eval_on_too_many_classes(run: Path, tmp_path: Path) -> None:
    many = idx_dir(tmp_path / "many", 40, 8, classes=20)
    msg = user_error(["eval", str(run), "--dataset", "idx", "--data-dir", str(many)])
    assert "20 classes" in msg and "at most 10 classes" in msg and "classes)" in msg


def test_run_trained_on_28x28_evaluated_on_digits(tmp_path: Path, idx28: Path) -> None:
    """The other way round: a run on 28x28 images fed the 8x8 digits."""
    other = tmp_path / "run28"
    data = {"dataset": "idx", "data_dir": str(idx28), "train_subset": None, "test_subset": None}
    run_training(tiny_cfg(**data, quantize=False, max_steps_per_epoch=1), other)
    msg = user_error(["eval", str(other), "--dataset", "digits"], "1x8x8 images")
    assert "expects 1x28x28 images" in msg and "trained on 'idx'" in msg


def test_engine_and_simulate_refuse_wrong_images(run: Path, program: Path, idx28: Path) -> None:
    data = ["--dataset", "idx", "--data-dir", str(idx28)]
    user_error(["run-int", str(program), *data, "--no-trace"], str(program), *SHAPES)
    user_error(["simulate", "--program", str(program), *data, "--images", "4"], *SHAPES)
    user_error(["simulate", "--checkpoint", str(run), *data, "--images", "4"], *SHAPES)


def test_export_onnx_check_refuses_wrong_images(run: Path, idx28: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    args = ["export", str(run), "--onnx", str(tmp_path / "m.onnx"), "--dataset", "idx"]
    user_error([*args, "--data-dir", str(idx28)], *SHAPES)


def test_engine_python_api_wrong_labels(program: Path) -> None:
    prog = load_program(program)
    test = load_dataset("digits", "test", subset=8)
    with pytest.raises(ValueError, match="program has 10 outputs"):
        evaluate_program(prog, test.images, test.labels + 10)
    with pytest.raises(ValueError, match="one label per image"):
        evaluate_program(prog, test.images, test.labels[:4])


# ------------------------------------------------------ b) empty and tiny datasets


def test_zero_subsets_are_config_errors() -> None:
    for field in ("train_subset", "test_subset"):
        with pytest.raises(ConfigError, match=f"{field}.*greater than or equal to 1"):
            tiny_cfg(**{field: 0})


def test_idx_file_with_no_images(run: Path, tmp_path: Path) -> None:
    empty = idx_dir(tmp_path / "empty", 0, 8)
    with pytest.raises(DatasetError, match="holds no images"):
        load_dataset("idx", "test", empty)
    user_error(["eval", str(run), "--dataset", "idx", "--data-dir", str(empty)], "no images")


def test_empty_split_is_refused_by_every_loader() -> None:
    """One check for all loaders (CIFAR-10 batches may hold no rows)."""
    raw = torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(DatasetError, match="'cifar10': the test split holds no samples"):
        build_image_dataset(
            raw,
            torch.zeros(0, dtype=torch.int64),
            raw_max=255,
            stats=NORM_STATS["cifar10"],
            num_classes=10,
            name="cifar10",
            split="test",
            subset=None,
        )


def test_empty_test_set_for_evaluation(run: Path, program: Path) -> None:
    model, _, _ = load_model(run)
    empty = TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty: nothing to evaluate"):
        evaluate(model, empty)
    with pytest.raises(ValueError, match="no images"):
        evaluate_program(load_program(program), empty.tensors[0], empty.tensors[1])


def test_single_sample_train_set_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"'digits' \(train, 1 sample\).*at least 2"):
        run_training(tiny_cfg(train_subset=1), tmp_path / "one")
    path = tmp_path / "one.yaml"
    save_run_config(tiny_cfg(train_subset=1), path)
    user_error(["train", "-c", str(path), "-o", str(tmp_path / "cli")], "at least 2 samples")


def test_batch_of_one_with_training_batchnorm_is_refused(tmp_path: Path) -> None:
    """FP32 resnet18 on 8x8 digits has a 1x1 BatchNorm: a batch of one used to fail deep in
    torch ("Expected more than 1 value per channel")."""
    cfg = tiny_cfg(model="resnet18", quantize=False, batch_size=1, max_steps_per_epoch=1)
    with pytest.raises(ConfigError, match="batch_size is 1.*BatchNorm.*at least 2"):
        run_training(cfg, tmp_path / "bs1")


def test_train_set_smaller_than_a_batch_trains_one_step(tmp_path: Path) -> None:
    """Documented: one step per epoch over all samples, repeated to fill the batch."""
    cfg = tiny_cfg(train_subset=5, batch_size=32, epochs=2)
    res = run_training(cfg, tmp_path / "five")
    (final,) = res.values()
    assert final.global_step == 2 and final.epochs == 2


# ---------------------------------------------------------- c) NaN/Inf at inference


def _poisoned(n: int = 8) -> Any:
    ds = load_dataset("digits", "test", subset=n)
    ds.images[1, 0, 0, 0] = float("nan")
    ds.images[3, 0, 2, 2] = float("inf")
    ds.images[3, 0, 2, 3] = float("-inf")
    return ds


def test_engine_refuses_non_finite_inputs(program: Path) -> None:
    ds = _poisoned()
    prog = load_program(program)
    msg = r"integer engine input: the inputs hold 3 non-finite value\(s\).*2 sample\(s\).*index 1"
    with pytest.raises(ValueError, match=msg):
        Executor(prog)(ds.images)
    with pytest.raises(ValueError, match="3 non-finite"):
        evaluate_program(prog, ds.images, ds.labels)


def test_evaluate_refuses_non_finite_inputs(run: Path) -> None:
    model, _, _ = load_model(run)  # quantized
    with pytest.raises(ValueError, match=r"'digits' \(test, 8 samples\).*3 non-finite"):
        evaluate(model, _poisoned())
    # a dataset that is not in memory is checked batch by batch
    ds = _poisoned()
    plain = TensorDataset(ds.images, ds.labels)
    with pytest.raises(ValueError, match="a batch of the TensorDataset.*3 non-finite"):
        evaluate(model, plain)
