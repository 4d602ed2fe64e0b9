"""Every kind of file dynabit reads, corrupted several ways: the documented error, naming the file.

One tiny QAT run on digits (module fixture) gives real run directories and checkpoints; each
test works on its own copy. Corruptions: cut to half, cut to 0 bytes, bytes in the middle
overwritten with garbage, replaced by text of another format and, for JSON/YAML, valid syntax
of the wrong shape.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from corruptions import (
    CORRUPTIONS,
    GARBAGE,
    empty,
    garbage_head,
    half_lines,
    json_list,
    yaml_wrong_type,
)
from tiny_runs import tiny_cfg

from dynabit.config import ConfigError, HardwareConfig, QuantConfig, load, save
from dynabit.config.run import load_run_config, save_run_config, validate_run
from dynabit.data import DatasetError
from dynabit.data.idx import load_idx_split
from dynabit.engine import (
    Executor,
    ProgramFormatError,
    TraceFormatError,
    load_program,
    load_trace,
    lower,
)
from dynabit.quant import convert
from dynabit.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from dynabit.train.evaluate import evaluate_checkpoint, load_model
from dynabit.train.loop import train
from dynabit.train.rundir import RunDir, RunDirError

torch.set_num_threads(1)


BINARY = ["half", "empty", "garbage", "other_format"]


def _corrupt(p: Path, how: str) -> None:
    extra = {
        "garbage_head": garbage_head,
        "half_lines": half_lines,
        "json_list": json_list,
        "yaml_type": yaml_wrong_type,
    }
    (CORRUPTIONS.get(how) or extra[how])(p)


def _raises_naming(exc: type[Exception], path: Path, fn: Callable[[], Any]) -> str:
    """``fn()`` raises ``exc`` (exactly that class or a subclass) whose message names ``path``."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert str(path) in msg, f"message does not name {path}:\n{msg}"
    return msg


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch QAT run: config.yaml, metrics.jsonl, summary.json, 2 checkpoints."""
    run = tmp_path_factory.mktemp("trained") / "run"
    train(tiny_cfg(quantize=True), run)
    return run


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    """This test's own copy of the run directory."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


def _latest(run: Path) -> Path:
    ck = RunDir(run).latest()
    assert ck is not None
    return ck


# ------------------------------------------------------------------------------ config files


# A user's YAML cut at half may still be valid YAML (a prefix of a mapping): only files that
# dynabit wrote itself are checked for completeness (test_saved_run_config_in_run_dir).
USER_CONFIG_CASES = [
    (suffix, how)
    for suffix in (".yaml", ".json")
    for how in (*BINARY, "json_list", "bad_value")
    if not (suffix == ".yaml" and how == "half")
]


def _bad_value(path: Path, section: str | None, field: str) -> None:
    data = {field: "lots"} if section is None else {section: {field: "lots"}}
    path.write_text(json.dumps(data))  # JSON is valid YAML too


def _corrupt_config(path: Path, how: str, section: str | None, field: str) -> None:
    if how == "bad_value":
        _bad_value(path, section, field)
    else:
        _corrupt(path, how)


@pytest.mark.parametrize("suffix,how", USER_CONFIG_CASES)
def test_run_config(run: Path, tmp_path: Path, suffix: str, how: str) -> None:
    path = tmp_path / f"run{suffix}"
    save_run_config(load_run_config(run / "config.yaml"), path)
    _corrupt_config(path, how, "train", "epochs")
    _raises_naming(ConfigError, path, lambda: load_run_config(path))


@pytest.mark.parametrize("suffix,how", USER_CONFIG_CASES)
def test_quant_config(tmp_path: Path, suffix: str, how: str) -> None:
    path = tmp_path / f"quant{suffix}"
    cfg = QuantConfig(budget=4.5, hardware={"rows": 4, "cols": 4})
    save(validate_run({"quant": cfg.model_dump(mode="json")}), path)
    assert load(QuantConfig, path, section="quant") == cfg
    _corrupt_config(path, how, "quant", "budget")
    _raises_naming(ConfigError, path, lambda: load(QuantConfig, path, section="quant"))


@pytest.mark.parametrize("suffix,how", USER_CONFIG_CASES)
def test_hardware_config(tmp_path: Path, suffix: str, how: str) -> None:
    import dynabit

    default = Path(dynabit.__file__).parent / "configs" / "hardware_default.yaml"
    path = tmp_path / f"hw{suffix}"
    save(load(HardwareConfig, default), path)
    assert load(HardwareConfig, path) == load(HardwareConfig, default)
    _corrupt_config(path, how, None, "rows")
    _raises_naming(ConfigError, path, lambda: load(HardwareConfig, path))


@pytest.mark.parametrize("how", [*BINARY, "half_lines", "json_list", "yaml_type"])
def test_saved_run_config_in_run_dir(run: Path, how: str) -> None:
    """The run directory's config.yaml, read back by ``train(..., resume=True)``."""
    path = run / "config.yaml"
    _corrupt(path, how)
    _raises_naming(ConfigError, path, lambda: train(None, run, resume=True))


# ------------------------------------------------------------------------------ checkpoints

CKPT_FILES = ["model", "optimizer", "rng", "ranks"]


@pytest.mark.parametrize("how", BINARY)
@pytest.mark.parametrize("kind", CKPT_FILES)
def test_checkpoint_safetensors(run: Path, kind: str, how: str) -> None:
    ck = _latest(run)
    path = ck / f"{kind}.safetensors"
    _corrupt(path, how)
    msg = _raises_naming(CheckpointError, path, lambda: load_checkpoint(run))
    assert "safetensors" in msg or "corrupted" in msg
    _raises_naming(CheckpointError, path, lambda: train(None, run, resume=True))
    if kind == "model":  # evaluation reads only the weights (and config.yaml)
        _raises_naming(CheckpointError, path, lambda: evaluate_checkpoint(run))
        _raises_naming(CheckpointError, path, lambda: load_model_state(path))
    else:
        assert evaluate_checkpoint(run)["samples"] == 200


@pytest.mark.parametrize("kind", CKPT_FILES)
def test_checkpoint_safetensors_missing(run: Path, kind: str) -> None:
    path = _latest(run) / f"{kind}.safetensors"
    path.unlink()
    msg = _raises_naming(CheckpointError, path, lambda: load_checkpoint(run))
    assert "missing" in msg


@pytest.mark.parametrize(
    "how", [*BINARY, "json_list", "no_state", "bad_step", "bad_optimizer", "bad_rng", "unpaired"]
)
def test_checkpoint_state_json(run: Path, how: str) -> None:
    ck = _latest(run)
    path = ck / "state.json"
    meta = json.loads(path.read_text())
    if how == "no_state":
        del meta["state"]
    elif how == "bad_step":
        meta["state"]["global_step"] = "12"
    elif how == "bad_optimizer":  # names a tensor optimizer.safetensors does not hold
        meta["optimizer"]["state"]["0"]["tensors"].append("nope")
    elif how == "bad_rng":
        meta["rng"][0]["numpy"][1] = "pos"
    elif how == "unpaired":  # optimizer.safetensors there, but no layout for it
        del meta["optimizer"]
    else:
        _corrupt(path, how)
    if how in ("no_state", "bad_step", "bad_optimizer", "bad_rng", "unpaired"):
        path.write_text(json.dumps(meta))
    _raises_naming(CheckpointError, path, lambda: load_checkpoint(run))
    _raises_naming(CheckpointError, path, lambda: train(None, run, resume=True))
    if how not in ("bad_optimizer", "bad_rng", "unpaired"):  # training state: not read to eval
        _raises_naming(CheckpointError, path, lambda: evaluate_checkpoint(run))


@pytest.mark.parametrize("how", [*BINARY, "half_lines", "json_list", "yaml_type"])
def test_checkpoint_config_yaml(run: Path, how: str) -> None:
    path = _latest(run) / "config.yaml"
    _corrupt(path, how)
    msg = _raises_naming(CheckpointError, path, lambda: load_checkpoint(run))
    if how == "half_lines":  # valid YAML, but cut short: not filled up with defaults
        assert "lacks section(s)" in msg
    _raises_naming(CheckpointError, path, lambda: evaluate_checkpoint(run))


@pytest.mark.parametrize("how", ["empty", "garbage", "dangling", "missing"])
def test_latest_pointer_falls_back_to_newest_folder(
    run: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``latest`` only saves a scan (folders appear complete): a bad one is not fatal."""
    pointer = run / "checkpoints" / "latest"
    newest = _latest(run)
    if how == "garbage":
        pointer.write_bytes(GARBAGE)
    elif how == "dangling":
        pointer.write_text("step-00000099\n")
    elif how == "missing":
        pointer.unlink()
    else:
        empty(pointer)
    with caplog.at_level(logging.WARNING, logger="dynabit.train.checkpoint"):
        assert load_checkpoint(run).path == newest
    if how != "missing":
        assert str(pointer) in caplog.text
    assert train(None, run, resume=True).global_step == load_checkpoint(run).global_step


def test_latest_pointer_without_folders(run: Path) -> None:
    for ck in (run / "checkpoints").glob("step-*"):
        shutil.rmtree(ck)
    (run / "checkpoints" / "latest").write_bytes(GARBAGE)
    msg = _raises_naming(CheckpointError, run, lambda: load_checkpoint(run))
    assert "no checkpoint" in msg


def _diverged(run: Path, value: float) -> tuple[Path, str]:
    """A checkpoint written after the weights went NaN/Inf (as a diverging run writes it)."""
    ck = load_checkpoint(run)
    model = dict(ck.model)
    name = next(k for k, v in model.items() if k.endswith("weight") and v.is_floating_point())
    model[name] = model[name].clone()
    model[name].view(-1)[3] = value
    new = save_checkpoint(
        run / "checkpoints",
        model_state=model,
        state={**ck.state, "global_step": ck.global_step + 1},
        config=ck.config,
    )
    return new / "model.safetensors", name


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=str)
def test_non_finite_weights(run: Path, value: float) -> None:
    path, name = _diverged(run, value)
    msg = _raises_naming(CheckpointError, path, lambda: load_checkpoint(run))
    assert "not finite" in msg and "diverged" in msg and f"{name} (" in msg
    _raises_naming(CheckpointError, path, lambda: evaluate_checkpoint(run))
    _raises_naming(CheckpointError, path, lambda: load_model_state(run))  # init_from
    _raises_naming(CheckpointError, path, lambda: load_model_state(path))
    _raises_naming(CheckpointError, path, lambda: train(None, run, resume=True))


def test_integer_tensors_are_not_checked(run: Path) -> None:
    ck = load_checkpoint(run)
    ints = [k for k, v in ck.model.items() if not v.is_floating_point()]
    assert ints  # counters and flags of the quantized layers
    assert load_model_state(run).keys() == ck.model.keys()


# ------------------------------------------------------------------------------ run directory


@pytest.mark.parametrize("how", [*BINARY, "json_list", "bad_field"])
def test_summary_json(run: Path, how: str) -> None:
    """``summary.json`` marks a finished stage; the two-stage pipeline reads it back."""
    path = run / "summary.json"
    assert RunDir(run).read_summary()["global_step"] == 12
    if how == "bad_field":
        path.write_text(json.dumps({**json.loads(path.read_text()), "top1": "high"}))
    else:
        _corrupt(path, how)
    msg = _raises_naming(RunDirError, path, lambda: RunDir(run).read_summary())
    assert "delete it" in msg


@pytest.mark.parametrize("how", ["half", "empty", "garbage", "json_list"])
def test_metrics_jsonl(run: Path, how: str, caplog: pytest.LogCaptureFixture) -> None:
    """A log, not state: unreadable lines are dropped (warned about unless a torn last line)."""
    path = run / "metrics.jsonl"
    n = len(RunDir(run).read_metrics())
    _corrupt(path, how)
    with caplog.at_level(logging.WARNING, logger="dynabit.train.rundir"):
        recs = RunDir(run).read_metrics()
    assert all(isinstance(r, dict) for r in recs) and len(recs) < n
    if how in ("garbage", "json_list"):
        assert str(path) in caplog.text
    res = train(None, run, resume=True)  # resume rewrites the log without the bad lines
    assert res.global_step == 12
    assert all(isinstance(r, dict) for r in map(json.loads, path.read_text().splitlines()))


# ------------------------------------------------------------------------------ other files


@pytest.fixture
def program_file(run: Path, tmp_path: Path) -> Path:
    model, _, _ = load_model(run)
    path = tmp_path / "model.dbp"
    lower(convert(model, strict=True), (1, 8, 8)).save(path)
    assert load_program(path).ops
    return path


@pytest.mark.parametrize("how", [*BINARY, "garbage_head"])
def test_integer_program(program_file: Path, how: str) -> None:
    _corrupt(program_file, how)
    _raises_naming(ProgramFormatError, program_file, lambda: load_program(program_file))


@pytest.mark.parametrize("how", [*BINARY, "garbage_head"])
def test_engine_trace(program_file: Path, tmp_path: Path, how: str) -> None:
    path = tmp_path / "trace.safetensors"
    Executor(load_program(program_file))(torch.rand(4, 1, 8, 8)).trace.save(path)
    assert load_trace(path).layers
    _corrupt(path, how)
    _raises_naming(TraceFormatError, path, lambda: load_trace(path))


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.mark.parametrize("how", ["half", "empty", "garbage_head", "garbage", "other_format"])
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("kind", ["images", "labels"])
def test_idx_dataset(tmp_path: Path, kind: str, gz: bool, how: str) -> None:
    if how == "garbage" and not gz:
        # Raw IDX has no checksum: garbage in the pixel data reads as pixels.
        return
    rng = np.random.default_rng(0)
    arrays = {"images": rng.integers(0, 256, (40, 8, 8)), "labels": np.arange(40) % 10}
    ext = ".gz" if gz else ""
    names = {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"}
    for k, a in arrays.items():
        data = _idx(a)
        (tmp_path / (names[k] + ext)).write_bytes(gzip.compress(data) if gz else data)

    def read() -> Any:
        return load_idx_split(tmp_path, "train", what="test set", how_to_get="(test)")

    assert read()[0].shape == (40, 8, 8)
    path = tmp_path / (names[kind] + ext)
    _corrupt(path, how)
    _raises_naming(DatasetError, path, read)
