"""Reliability benchmark: bad input of every documented kind, as a user would meet it.

    python benchmarks/reliability.py [--quick] [--workers 2] [--out FILE]

Every case runs one bad input (a wrong config value, a corrupted or edited file, a second
writer, a full or read-only disk, a NaN image, ...) through the Python API or the command line
and checks the outcome ``docs/errors.md`` documents for it: the error type or the one
``error:`` line and exit status 2, the message naming the file or field, and nothing lost.
Each case is classed ``good`` (as documented), ``traceback`` (an exception of another kind, or a
Python traceback on stderr) or ``silent`` (no error, or not the documented one). Writes
``benchmarks/results/reliability.json``: ``{"cases", "good", "tracebacks", "silent",
"command"}``. ``--quick`` runs a representative subset (every class, every group).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# The corruptions and the lock holder are the reliability tests' own, so both check the same cases.
sys.path.insert(0, str(ROOT / "tests"))
from corruptions import CORRUPTIONS, GARBAGE, garbage_head, half, missing  # noqa: E402
from lock_holder import lock_held_elsewhere  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"

TINY_TRAIN: dict[str, Any] = {
    "dataset": "digits",
    "model": "small_cnn",
    "width": 8,
    "epochs": 1,
    "batch_size": 32,
    "eval_batch_size": 256,
    "optimizer": "adam",
    "lr": 0.01,
    "threshold_lr": 0.01,
    "max_steps_per_epoch": 3,
    "train_subset": 200,
    "test_subset": 50,
    "calib_batches": 2,
    "progress": False,
    "log_every": 1,
    "quantize": True,
}
TINY_QUANT: dict[str, Any] = {"budget": 5.0, "hardware": {"rows": 4, "cols": 4}}


def tiny(quant: dict[str, Any] | None = None, **train: Any) -> Any:
    """A seconds-long digits run config."""
    from dynabit.config.run import validate_run

    return validate_run(
        {"train": {**TINY_TRAIN, **train}, "quant": {**TINY_QUANT, **(quant or {})}}
    )


# ----------------------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    verdict: str  # good | traceback | silent
    detail: str = ""


GOOD = Outcome("good")


def expect_raises(call: Callable[[], Any], kinds: Any, *needles: str) -> Outcome:
    """``call()`` raises one of ``kinds`` whose message holds every needle."""
    try:
        call()
    except kinds as e:
        msg = str(e)
        missing = [n for n in needles if n not in msg]
        if missing:
            return Outcome("silent", f"{type(e).__name__} without {missing}: {msg[:300]}")
        return GOOD
    except Exception as e:  # any other exception is what a user would see as a traceback
        return Outcome("traceback", "".join(traceback.format_exception(e))[-800:])
    return Outcome("silent", "no error raised")


def expect_works(call: Callable[[], Any], check: Callable[[Any], bool] = bool) -> Outcome:
    """The documented 'works' behaviour: ``call()`` returns and ``check`` holds."""
    try:
        out = call()
    except Exception as e:
        return Outcome("traceback", "".join(traceback.format_exception(e))[-800:])
    return GOOD if check(out) else Outcome("silent", f"unexpected result {str(out)[:200]}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def dynabit(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dynabit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


def expect_cli(
    args: list[str],
    *needles: str,
    status: int = 2,
    after: Callable[[], bool] | None = None,
) -> Outcome:
    """``dynabit ARGS`` exits with ``status``; for 2, with one ``error:`` line holding every
    needle; ``after()`` (nothing lost) holds."""
    res = dynabit(*args)
    if "Traceback (most recent call last)" in res.stderr:
        return Outcome("traceback", res.stderr[-800:])
    if res.returncode != status:
        return Outcome("silent", f"exit {res.returncode}, expected {status}: {res.stderr[-300:]}")
    if status == 2:
        lines = [ln for ln in res.stderr.splitlines() if ln.strip() and "%|" not in ln]
        errors = [ln for ln in lines if ln.startswith("error: ")]
        if len(errors) != 1:
            return Outcome("silent", f"not one error line: {res.stderr[-300:]}")
        missing = [n for n in needles if n not in errors[0]]
        if missing:
            return Outcome("silent", f"error line without {missing}: {errors[0][:300]}")
    if after is not None and not after():
        return Outcome("silent", "something was lost or written")
    return GOOD


# ------------------------------------------------------------------------------ fixtures


class Env:
    """What the cases share: a trained tiny QAT run, its program and trace (built once)."""

    def __init__(self, root: Path) -> None:
        from dynabit.config.run import save_run_config
        from dynabit.engine import Executor, load_program, lower_checkpoint
        from dynabit.train import train

        self.root = root
        self.run = root / "run"
        train(tiny(epochs=2, checkpoint_every=2), self.run)
        self.program = root / "program.safetensors"
        lower_checkpoint(self.run).save(self.program)
        self.trace = root / "trace.safetensors"
        Executor(load_program(self.program))(torch.rand(4, 1, 8, 8)).trace.save(self.trace)
        self.cfg_file = root / "cfg.yaml"
        save_run_config(tiny(), self.cfg_file)
        self._n = 0

    def fresh(self) -> Path:
        """A new empty folder for one case."""
        self._n += 1
        d = self.root / f"case{self._n:04d}"
        d.mkdir()
        return d

    def run_copy(self) -> Path:
        return Path(shutil.copytree(self.run, self.fresh() / "run"))

    def file_copy(self, src: Path) -> Path:
        dst = self.fresh() / src.name
        shutil.copy(src, dst)
        return dst


# ---------------------------------------------------------------------------- corruptions


CORRUPT = {**CORRUPTIONS, "missing": missing}


def bump_digit(path: Path, pattern: bytes) -> None:
    """Change the last digit of the first match of ``pattern`` (same length)."""
    raw = path.read_bytes()
    m = re.search(pattern, raw)
    assert m is not None, pattern
    s = m.group(0)
    i = max(i for i, c in enumerate(s) if chr(c).isdigit())
    new = s[:i] + str((int(chr(s[i])) + 1) % 10).encode() + s[i + 1 :]
    path.write_bytes(raw[: m.start()] + new + raw[m.end() :])


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    code, data = (0x08, array.astype(np.uint8))
    if array.max(initial=0) >= 256:
        code, data = 0x0C, array.astype(">i4")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + data.tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        raw = gzip.compress(raw)
    path.write_bytes(raw)


def idx_dir(path: Path, n: int = 40, sides: tuple[int, int] = (8, 8), top: int = 9, gz=False):
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, side in zip(("train", "t10k"), sides, strict=True):
        write_idx(path / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, side, side)), gz)
        labels = np.arange(n) % 10
        if n:
            labels[-1] = top
        write_idx(path / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return path


@contextmanager
def tmpfs(path: Path, kib: int):
    """A small tmpfs (as root), else ``None``."""
    path.mkdir(parents=True, exist_ok=True)
    ok = os.geteuid() == 0 and (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield path if ok else None
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


# --------------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    group: str  # the class of docs/errors.md it exercises
    fn: Callable[[Env], Outcome]
    cli: bool = False  # runs subprocesses (may run beside another)


CASES: list[Case] = []


def case(name: str, group: str, cli: bool = False):
    def deco(fn: Callable[[Env], Outcome]) -> Callable[[Env], Outcome]:
        CASES.append(Case(name, group, fn, cli))
        return fn

    return deco


def _config_cases() -> None:
    from dynabit.config import ConfigError
    from dynabit.config.run import validate_run

    bad = {
        "train": [
            ("epochs", 0),
            ("epochs", -1),
            ("epochs", True),
            ("epochs", "two"),
            ("epochs", 20000),
            ("batch_size", 0),
            ("lr", 0.0),
            ("lr", -1.0),
            ("lr", float("nan")),
            ("lr", float("inf")),
            ("momentum", 1.0),
            ("weight_decay", 2.0),
            ("seed", -1),
            ("seed", 2**64),
            ("seed", True),
            ("train_subset", 0),
            ("test_subset", 0),
            ("width", 0),
            ("dataset", "imagenet"),
            ("model", "vgg"),
            ("optimizer", "rmsprop"),
            ("schedule", "linear"),
            ("workers", -1),
            ("keep_checkpoints", 0),
            ("log_every", 0),
            ("calib_batches", 0),
            ("gamma", 0.0),
            ("checkpoint_every", 0),
            ("colour", 1),
            ("quantize", "maybe"),
        ],
        "quant": [
            ("bits", 1),
            ("bits", 17),
            ("hi_bits", 8),
            ("budget", 3.0),
            ("budget", 9.0),
            ("budget", float("nan")),
            ("temperature", 0.0),
            ("temperature", float("inf")),
            ("temperature", float("nan")),
            ("threshold_target", float("nan")),
            ("threshold_target", float("inf")),
            ("threshold_target", 1e300),
            ("bounds", [0.6, 0.2]),
            ("group", [0, 1]),
            ("group", [8, 8]),
            ("group", [True, 2]),
            ("block_size", 0),
            ("method", "magic"),
            ("uniform_bits", 1),
            ("penalty_block", -1.0),
            ("bound_margin", 2.0),
            ("score", "median"),
            ("colour", 1),
            ("bits", True),
            ("overrides", [{"pattern": "(", "settings": {}}]),
            ("overrides", [{"pattern": "x", "settings": {"colour": 1}}]),
            ("overrides", [{"pattern": "x", "settings": {"budget": 2}}]),
        ],
        "quant.hardware": [
            ("rows", 0),
            ("rows", True),
            ("dataflow", "xy"),
            ("colour", 1),
            ("clock_mhz", -1.0),
            ("weight_buffer_kib", float("inf")),
            ("acc_bits", 4),
        ],
    }
    for section, items in bad.items():
        for field, value in items:
            name = f"config {section}.{field}={value!r}"[:80]

            def fn(env: Env, section=section, field=field, value=value) -> Outcome:
                if section == "quant.hardware":
                    data = {"quant": {"hardware": {field: value}}}
                else:
                    data = {section: {field: value}}
                top = section.split(".")[0]
                named = "override" if field == "overrides" else field  # "override 'x': ..."
                return expect_raises(
                    lambda: validate_run(data, "run.yaml"), ConfigError, f"[{top}]", named
                )

            case(name, "config values (quant, train, hardware)")(fn)

    def unknown_section(env: Env) -> Outcome:
        return expect_raises(
            lambda: validate_run({"training": {}}, "run.yaml"), ConfigError, "unknown section"
        )

    case("config unknown section", "config files")(unknown_section)

    def pretrain_quantize(env: Env) -> Outcome:
        return expect_raises(
            lambda: validate_run({"pretrain": {"quantize": True}}, "run.yaml"),
            ConfigError,
            "pretrain may not set",
        )

    case("config pretrain sets quantize", "config files")(pretrain_quantize)


def _config_file_cases() -> None:
    from dynabit.config import ConfigError, HardwareConfig, QuantConfig, load
    from dynabit.config.run import load_run_config

    loaders = {
        "run": lambda p: load_run_config(p),
        "quant": lambda p: load(QuantConfig, p),
        "hardware": lambda p: load(HardwareConfig, p),
    }
    contents: dict[str, bytes | None] = {
        "missing": None,
        "empty": b"",
        "not_utf8": GARBAGE,
        "bad_syntax": b"{not: [valid",
        "top_list": b"[1, 2, 3]\n",
        "wrong_type": b'{"epochs": "lots", "bits": "lots", "rows": "lots"}',
    }
    for kind, load_fn in loaders.items():
        for suffix in (".yaml", ".json"):
            for how, data in contents.items():

                def fn(
                    env: Env, load_fn=load_fn, suffix=suffix, data=data, how=how, kind=kind
                ) -> Outcome:
                    p = env.fresh() / f"cfg{suffix}"
                    if data is not None:
                        if how == "wrong_type" and kind == "run":
                            data = b'{"train": {"epochs": "lots"}}'
                        p.write_bytes(data)
                    return expect_raises(lambda: load_fn(p), ConfigError, str(p))

                case(f"{kind} config file {how} {suffix}", "config files")(fn)

    def unknown_ext(env: Env) -> Outcome:
        p = env.fresh() / "cfg.toml"
        p.write_text("x = 1\n")
        return expect_raises(lambda: load_run_config(p), ConfigError, "unknown extension")

    case("config file unknown extension", "config files")(unknown_ext)


def _checkpoint_cases() -> None:
    from dynabit.train import RunDir, evaluate_checkpoint, train
    from dynabit.train.checkpoint import CheckpointError, load_checkpoint, load_model_state
    from dynabit.train.rundir import RunDirError

    for fname in ("model", "optimizer", "rng", "ranks"):
        for how, corrupt in CORRUPT.items():

            def fn(env: Env, fname=fname, corrupt=corrupt) -> Outcome:
                run = env.run_copy()
                path = RunDir(run).latest() / f"{fname}.safetensors"
                corrupt(path)
                return expect_raises(
                    lambda: train(None, run, resume=True), CheckpointError, str(path)
                )

            case(f"checkpoint {fname}.safetensors {how}", "checkpoints")(fn)

    def state_edit(how: str) -> Callable[[Env], Outcome]:
        def fn(env: Env) -> Outcome:
            run = env.run_copy()
            path = RunDir(run).latest() / "state.json"
            meta = json.loads(path.read_text())
            if how == "invalid":
                half(path)
            elif how == "list":
                path.write_text("[1, 2]")
            elif how == "bad_step":
                meta["state"]["global_step"] = "12"
                path.write_text(json.dumps(meta))
            elif how == "no_state":
                del meta["state"]
                path.write_text(json.dumps(meta))
            elif how == "one_digit":
                meta["state"]["global_step"] += 1
                path.write_text(json.dumps(meta, indent=1, sort_keys=True))
            elif how == "unpaired":
                del meta["optimizer"]
                path.write_text(json.dumps(meta))
            return expect_raises(lambda: load_checkpoint(run), CheckpointError, str(path))

        return fn

    for how in ("invalid", "list", "bad_step", "no_state", "one_digit", "unpaired"):
        case(f"checkpoint state.json {how}", "checkpoints (integrity)")(state_edit(how))

    def config_edit(how: str) -> Callable[[Env], Outcome]:
        def fn(env: Env) -> Outcome:
            run = env.run_copy()
            path = RunDir(run).latest() / "config.yaml"
            if how == "bits_8_4_to_6_3":
                text = re.sub(r"^  bits: 8$", "  bits: 6", path.read_text(), flags=re.M)
                path.write_text(re.sub(r"^  hi_bits: 4$", "  hi_bits: 3", text, flags=re.M))
            elif how == "half_lines":
                lines = path.read_text().splitlines(keepends=True)
                path.write_text("".join(lines[: len(lines) // 2]))
            else:
                CORRUPT[how](path)
            return expect_raises(lambda: evaluate_checkpoint(run), CheckpointError, str(path))

        return fn

    for how in ("bits_8_4_to_6_3", "half_lines", "garbage", "empty", "missing"):
        case(f"checkpoint config.yaml {how}", "checkpoints (integrity)")(config_edit(how))

    def pointer(how: str) -> Callable[[Env], Outcome]:
        def fn(env: Env) -> Outcome:
            run = env.run_copy()
            p = run / "checkpoints" / "latest"
            newest = RunDir(run).latest()
            {
                "garbage": lambda: p.write_bytes(GARBAGE),
                "empty": lambda: p.write_bytes(b""),
                "dangling": lambda: p.write_text("step-00000099\n"),
                "missing": p.unlink,
            }[how]()
            logging.disable(logging.WARNING)  # the warning it gives is expected
            try:
                return expect_works(lambda: load_checkpoint(run).path == newest)
            finally:
                logging.disable(logging.NOTSET)

        return fn

    for how in ("garbage", "empty", "dangling", "missing"):
        case(f"checkpoint latest pointer {how}", "checkpoints")(pointer(how))

    def no_folders(env: Env) -> Outcome:
        run = env.run_copy()
        for ck in (run / "checkpoints").glob("step-*"):
            shutil.rmtree(ck)
        return expect_raises(lambda: load_checkpoint(run), CheckpointError, str(run))

    case("checkpoint folder none left", "checkpoints")(no_folders)

    def nan_weights(env: Env) -> Outcome:
        from safetensors.torch import save_file

        d = env.fresh()
        p = d / "w.safetensors"
        save_file({"w": torch.tensor([1.0, float("nan")])}, str(p))
        return expect_raises(lambda: load_model_state(p), CheckpointError, "not finite", str(p))

    case("checkpoint NaN weights", "checkpoints")(nan_weights)

    def summary(how: str) -> Callable[[Env], Outcome]:
        def fn(env: Env) -> Outcome:
            run = env.run_copy()
            p = run / "summary.json"
            if how == "corrupt":
                half(p)
            else:
                s = json.loads(p.read_text())
                del s["top1"]
                p.write_text(json.dumps(s))
            return expect_raises(lambda: RunDir(run).read_summary(), RunDirError, str(p))

        return fn

    for how in ("corrupt", "missing_field"):
        case(f"run dir summary.json {how}", "run dir")(summary(how))

    def metrics(env: Env) -> Outcome:
        run = env.run_copy()
        with open(run / "metrics.jsonl", "ab") as f:
            f.write(GARBAGE + b"\n" + b'{"event": "x", "global_step": 0}\n')
        logging.disable(logging.WARNING)
        try:
            return expect_works(lambda: RunDir(run).read_metrics()[-1]["event"] == "x")
        finally:
            logging.disable(logging.NOTSET)

    case("run dir metrics.jsonl corrupt line", "run dir")(metrics)

    def not_empty(env: Env) -> Outcome:
        run = env.run_copy()
        return expect_raises(lambda: train(tiny(), run), RunDirError, "already holds checkpoints")

    case("run dir reused without resume", "checkpoints")(not_empty)

    def other_config(env: Env) -> Outcome:
        run = env.run_copy()
        cfg = tiny(epochs=2, checkpoint_every=2, lr=0.5)
        return expect_raises(lambda: train(cfg, run, resume=True), RunDirError, "train.lr")

    case("resume with another config", "checkpoints")(other_config)

    def edited_run_config(env: Env) -> Outcome:
        run = env.run_copy()
        p = run / "config.yaml"
        p.write_text(re.sub(r"^  budget: 5\.0$", "  budget: 6.0", p.read_text(), flags=re.M))
        ck = RunDir(run).latest()
        return expect_raises(
            lambda: train(None, run, resume=True), RunDirError, str(ck / "config.yaml")
        )

    case("resume after editing the run dir config", "checkpoints (integrity)")(edited_run_config)


def _program_cases() -> None:
    from dynabit.data import DatasetError, load_dataset
    from dynabit.engine import ProgramFormatError, TraceFormatError, load_program, load_trace

    for how in ("half", "empty", "garbage", "other_format", "garbage_head", "missing"):

        def fn(env: Env, how=how) -> Outcome:
            p = env.file_copy(env.program)
            (CORRUPT.get(how) or garbage_head)(p)
            return expect_raises(lambda: load_program(p), ProgramFormatError, str(p))

        case(f"program {how}", "integer programs")(fn)

    edits = {
        "input scale digit": rb'\\"scale\\": [0-9.e-]+',
        "stride": rb'\\"stride\\": \[1, 1\]',
        "qmax": rb'\\"qmax\\": [0-9]+',
        "shape": rb'\\"shape\\": \[1, 8, 8\]',
    }
    for what, pattern in edits.items():

        def fn(env: Env, pattern=pattern) -> Outcome:
            p = env.file_copy(env.program)
            bump_digit(p, pattern)
            return expect_raises(lambda: load_program(p), ProgramFormatError, str(p), "checksum")

        case(f"program edited {what}", "integer programs (integrity)")(fn)

    for how in ("half", "empty", "garbage", "other_format", "garbage_head"):

        def fn(env: Env, how=how) -> Outcome:
            p = env.file_copy(env.trace)
            (CORRUPT.get(how) or garbage_head)(p)
            return expect_raises(lambda: load_trace(p), TraceFormatError, str(p))

        case(f"engine trace {how}", "engine traces")(fn)

    def trace_edit(env: Env) -> Outcome:
        p = env.file_copy(env.trace)
        bump_digit(p, rb'\\"macs_dense\\": [0-9]+')
        return expect_raises(lambda: load_trace(p), TraceFormatError, str(p), "checksum")

    case("engine trace edited MAC count", "integer programs (integrity)")(trace_edit)

    for kind in ("images", "labels"):
        for gz in (False, True):
            for how in ("half", "empty", "garbage_head", "other_format"):

                def fn(env: Env, kind=kind, gz=gz, how=how) -> Outcome:
                    d = idx_dir(env.fresh() / "idx", gz=gz)
                    p = next(d.glob(f"train-{kind}-*"))
                    (CORRUPT.get(how) or garbage_head)(p)
                    return expect_raises(
                        lambda: load_dataset("idx", "train", d), DatasetError, str(p.name)
                    )

                case(f"idx {kind} {'gz' if gz else 'raw'} {how}", "IDX datasets")(fn)

    def no_images(env: Env) -> Outcome:
        d = idx_dir(env.fresh() / "idx", n=0)
        return expect_raises(lambda: load_dataset("idx", "train", d), DatasetError, "idx")

    case("idx file with 0 images", "datasets")(no_images)

    def huge_label(env: Env) -> Outcome:
        d = idx_dir(env.fresh() / "idx", top=2_000_000_000)
        return expect_raises(
            lambda: load_dataset("idx", "train", d), DatasetError, "2000000000", "[0, 99999]"
        )

    case("idx label 2e9", "datasets (ranges)")(huge_label)


def _data_and_model_cases() -> None:
    from dynabit.config import ConfigError, QuantConfig
    from dynabit.data import DatasetError, DatasetMismatchError, load_dataset
    from dynabit.engine import Executor, load_program
    from dynabit.quant import convert, prepare
    from dynabit.train import (
        TrainingDivergedError,
        evaluate,
        evaluate_checkpoint,
        load_model,
        train,
    )

    def unknown_name(env: Env) -> Outcome:
        return expect_raises(lambda: load_dataset("imagenet", "train"), ValueError, "digits")

    case("dataset unknown name", "datasets")(unknown_name)

    def unknown_split(env: Env) -> Outcome:
        return expect_raises(lambda: load_dataset("digits", "val"), ValueError, "val")

    case("dataset unknown split", "datasets")(unknown_split)

    def missing_dir(env: Env) -> Outcome:
        d = env.fresh() / "nothing"
        return expect_raises(lambda: load_dataset("mnist", "train", d), DatasetError, str(d))

    case("dataset missing directory", "datasets")(missing_dir)

    def wrong_size(env: Env) -> Outcome:
        d = idx_dir(env.fresh() / "idx", sides=(10, 10))
        return expect_raises(
            lambda: evaluate_checkpoint(env.run, dataset="idx", data_dir=str(d)),
            DatasetMismatchError,
            "1x10x10",
        )

    case("eval on images of another size", "datasets (mismatch)")(wrong_size)

    def too_many_classes(env: Env) -> Outcome:
        d = idx_dir(env.fresh() / "idx", top=11)
        return expect_raises(
            lambda: evaluate_checkpoint(env.run, dataset="idx", data_dir=str(d)),
            DatasetMismatchError,
            "classes",
        )

    case("eval on more classes than the model", "datasets (mismatch)")(too_many_classes)

    def split_shapes(env: Env) -> Outcome:
        d = idx_dir(env.fresh() / "idx", sides=(8, 10))
        cfg = tiny(dataset="idx", data_dir=str(d), train_subset=None, test_subset=None)
        return expect_raises(lambda: train(cfg, env.fresh() / "run"), DatasetError, "1x10x10")

    case("train and test splits of two sizes", "datasets (ranges)")(split_shapes)

    def one_sample(env: Env) -> Outcome:
        cfg = tiny(train_subset=1)
        return expect_raises(lambda: train(cfg, env.fresh() / "run"), DatasetError, "at least 2")

    case("train set of one sample", "training")(one_sample)

    def batch_of_one(env: Env) -> Outcome:
        cfg = tiny(batch_size=1, quantize=False)
        return expect_raises(lambda: train(cfg, env.fresh() / "run"), ConfigError, "batch_size")

    case("batch of one with training BatchNorm", "training")(batch_of_one)

    def small_train_set(env: Env) -> Outcome:
        cfg = tiny(train_subset=10, quantize=False)
        return expect_works(lambda: train(cfg, env.fresh() / "run").global_step == 1)

    case("train set smaller than a batch", "training")(small_train_set)

    def diverged(env: Env) -> Outcome:
        cfg = tiny({"threshold_penalty": 1.0, "threshold_target": 1e30})
        run = env.fresh() / "run"
        out = expect_raises(lambda: train(cfg, run), TrainingDivergedError, "epoch 1, step 1")
        if out.verdict == "good" and (run / "checkpoints").exists():
            return Outcome("silent", "a checkpoint was written with non-finite state")
        return out

    case("training loss becomes infinite", "training (divergence)")(diverged)

    def empty_eval(env: Env) -> Outcome:
        model, _, _ = load_model(env.run)
        empty_set = torch.utils.data.TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0))
        return expect_raises(lambda: evaluate(model, empty_set), ValueError, "nothing to evaluate")

    case("evaluate an empty dataset", "evaluate")(empty_eval)

    def nan_batch() -> torch.Tensor:
        x = load_dataset("digits", "test", subset=4).images.clone()
        x[1, 0, 2, 2] = float("nan")
        x[2, 0, 1, 1] = float("inf")
        return x

    def nan_qat(env: Env) -> Outcome:
        model, _, _ = load_model(env.run)
        return expect_raises(lambda: model(nan_batch()), ValueError, "2 non-finite", "2 sample")

    def nan_frozen(env: Env) -> Outcome:
        model, _, _ = load_model(env.run)
        frozen = convert(model, strict=True)
        return expect_raises(lambda: frozen(nan_batch()), ValueError, "2 non-finite", "2 sample")

    def nan_engine(env: Env) -> Outcome:
        ex = Executor(load_program(env.program))
        return expect_raises(lambda: ex(nan_batch()), ValueError, "2 non-finite", "2 sample")

    def nan_evaluate(env: Env) -> Outcome:
        model, _, _ = load_model(env.run)
        ds = torch.utils.data.TensorDataset(nan_batch(), torch.zeros(4, dtype=torch.long))
        return expect_raises(lambda: evaluate(model, ds), ValueError, "non-finite")

    for name, fn in (
        ("QAT model", nan_qat),
        ("frozen model", nan_frozen),
        ("integer engine", nan_engine),
        ("evaluate", nan_evaluate),
    ):
        case(f"NaN/Inf image into the {name}", "non-finite inputs (class 6)")(fn)

    def override_no_layer(env: Env) -> Outcome:
        model, _, _ = load_model(env.run)
        from dynabit.models import build_model

        fp32 = build_model("small_cnn", 1, 10, 8, width=8)
        cfg = QuantConfig(overrides=[{"pattern": "nope.*", "settings": {"bits": 6}}])
        return expect_raises(lambda: prepare(fp32, cfg), ConfigError, "overrides[0]", "nope")

    case("override pattern matching no layer", "contradictions (class 5)")(override_no_layer)

    def warns(make: Callable[[], Any], *needles: str) -> Outcome:
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
        lg = logging.getLogger("dynabit.quant.prepare")
        level = lg.level
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING)  # as the command line shows them
        try:
            out = expect_works(make, lambda _: True)
        finally:
            lg.removeHandler(handler)
            lg.setLevel(level)
        if out.verdict != "good":
            return out
        text = "\n".join(records)
        return GOOD if all(n in text for n in needles) else Outcome("silent", "no warning")

    def uniform_budget(env: Env) -> Outcome:
        from dynabit.models import build_model

        fp32 = build_model("small_cnn", 1, 10, 8, width=8)
        cfg = QuantConfig(uniform_bits=6, budget=5.0)
        return warns(lambda: prepare(fp32, cfg), "uniform_bits=6", "budget=5 is not used")

    case("uniform_bits with an unused budget", "contradictions (class 5)")(uniform_budget)

    def conv1d(env: Env) -> Outcome:
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(1, 2), torch.nn.Conv1d(4, 4, 3)
        )
        net.add_module("head", torch.nn.Linear(4, 2))
        cfg = QuantConfig(hardware={"rows": 4, "cols": 4})
        return warns(lambda: prepare(net, cfg), "stay in float", "2")

    case("Conv1d left in float", "contradictions (class 5)")(conv1d)

    def bounds_without_r(env: Env) -> Outcome:
        from dynabit.models import build_model

        fp32 = build_model("small_cnn", 1, 10, 8, width=8)
        cfg = QuantConfig(bounds=(0.5, 0.6))
        return warns(lambda: prepare(fp32, cfg), "bounds (0.5, 0.6) do not contain r* = 0.25")

    case("bounds not containing r*", "contradictions (class 5)")(bounds_without_r)


def _lock_and_sweep_cases() -> None:
    from dynabit.config import ConfigError
    from dynabit.demo import DemoOptions, run_demo
    from dynabit.sweep import SweepConfig, SweepPointError, expand, run_sweep
    from dynabit.train import run_training, train
    from dynabit.train.lock import RunDirLockedError

    def locked(call: Callable[[Path], Any], exc: Any = RunDirLockedError, sub: str = "") -> Any:
        def fn(env: Env) -> Outcome:
            d = env.fresh() / "dir"
            with lock_held_elsewhere(d / sub if sub else d, env=_env()) as holder:
                out = expect_raises(lambda: call(d), exc, f"pid {holder.pid}")
            if out.verdict == "good" and (d / "checkpoints").exists():
                return Outcome("silent", "the second writer wrote checkpoints")
            return out

        return fn

    case("lock: train() on a locked run dir", "run-directory lock (class 1)")(
        locked(lambda d: train(tiny(), d))
    )
    case("lock: run_training() resume on a locked run dir", "run-directory lock (class 1)")(
        locked(lambda d: run_training(tiny(), d, resume=True))
    )
    case("lock: demo on a locked directory", "run-directory lock (class 1)")(
        locked(lambda d: run_demo(DemoOptions(run_dir=d, dataset="digits", progress=False)))
    )
    sweep = SweepConfig(
        base={"train": TINY_TRAIN, "quant": TINY_QUANT}, grid={"quant.budget": [5.0]}
    )
    case("lock: sweep point on a locked directory", "run-directory lock (class 1)")(
        locked(lambda d: run_sweep(sweep, d, workers=1), SweepPointError, "budget=5.0")
    )
    case("lock: sweep folder locked", "run-directory lock (class 1)")(
        locked(lambda d: run_sweep(sweep, d, workers=1))
    )

    for grid in ([5.0, 6.0, 5.0], [5, 5.0], [4.5, 4.5]):

        def fn(env: Env, grid=grid) -> Outcome:
            sw = SweepConfig(base={}, grid={"quant.budget": grid})
            return expect_raises(lambda: expand(sw), ConfigError, "repeats a point")

        case(f"sweep grid repeats a point {grid}", "run-directory lock (class 1)")(fn)


def _cli_cases() -> None:
    def cli(
        name: str,
        group: str,
        args: Callable[[Env], list[str]],
        *needles: str,
        status: int = 2,
        after: Callable[[Env, list[str]], bool] | None = None,
    ) -> None:
        def fn(env: Env) -> Outcome:
            a = args(env)
            return expect_cli(
                a, *needles, status=status, after=(lambda: after(env, a)) if after else None
            )

        case(f"cli {name}", group, cli=True)(fn)

    usage = "CLI usage"
    cli("--threads 0", usage, lambda e: ["--threads", "0", "eval", "x"], "--threads")
    cli("export without argument", usage, lambda e: ["export"], "'path'")
    cli("unknown option", usage, lambda e: ["simulate", "--no-such-option"], "--no-such-option")
    cli("train without --run-dir", usage, lambda e: ["train"], "--run-dir")
    cli("unknown command", usage, lambda e: ["trian"], "trian")
    cli("eval --subset 0", usage, lambda e: ["eval", str(e.run), "--subset", "0"], "--subset")
    cli("eval --dataset nope", usage, lambda e: ["eval", str(e.run), "--dataset", "nope"], "nope")
    cli("eval missing path", usage, lambda e: ["eval", str(e.root / "absent")], "absent")

    ranges = "ranges (class 4)"
    for size in ("-4", "0"):
        cli(
            f"eval --batch-size {size}",
            ranges,
            lambda e, s=size: ["eval", str(e.run), "--batch-size", s],
            f"got {size}",
        )
    for size in ("0", "100000"):
        cli(
            f"simulate --image-size {size}",
            ranges,
            lambda e, s=size: ["simulate", "--image-size", s],
            f"got {size}",
        )
    cli(
        "simulate huge masks (memory estimate)",
        ranges,
        lambda e: ["simulate", "--image-size", "16384", "--samples", "64"],
        "GiB",
    )
    cli("simulate --samples 0", ranges, lambda e: ["simulate", "--samples", "0"], "--samples")
    cli("simulate --ratio 1.5", ranges, lambda e: ["simulate", "--ratio", "1.5"], "--ratio")
    cli(
        "simulate --decision sideways",
        usage,
        lambda e: ["simulate", "--decision", "sideways"],
        "sideways",
    )
    cli(
        "simulate both --checkpoint and --program",
        usage,
        lambda e: ["simulate", "--checkpoint", str(e.run), "--program", str(e.program)],
        "both",
    )
    cli(
        "train --seed 2**64",
        ranges,
        lambda e: ["train", "-o", str(e.fresh() / "r"), "--seed", str(2**64)],
        "seed",
        after=lambda e, a: not Path(a[2]).exists(),
    )
    cli(
        "train --epochs 0",
        ranges,
        lambda e: ["train", "-o", str(e.fresh() / "r"), "--epochs", "0"],
        "epochs",
        after=lambda e, a: not Path(a[2]).exists(),
    )
    cli(
        "train --dataset nope",
        ranges,
        lambda e: ["train", "-o", str(e.fresh() / "r"), "--dataset", "nope"],
        "dataset",
    )

    def cfg_with(env: Env, text: str) -> str:
        p = env.fresh() / "cfg.yaml"
        p.write_text(text)
        return str(p)

    cli(
        "train -c epochs: true",
        ranges,
        lambda e: [
            "train",
            "-c",
            cfg_with(e, "train: {epochs: true}\n"),
            "-o",
            str(e.fresh() / "r"),
        ],
        "epochs",
        "boolean",
    )
    cli(
        "train -c temperature: .inf",
        ranges,
        lambda e: [
            "train",
            "-c",
            cfg_with(e, "quant: {temperature: .inf}\n"),
            "-o",
            str(e.fresh() / "r"),
        ],
        "temperature",
        "finite",
    )
    cli(
        "train -c threshold_target: .nan",
        ranges,
        lambda e: [
            "train",
            "-c",
            cfg_with(e, "quant: {threshold_target: .nan}\n"),
            "-o",
            str(e.fresh() / "r"),
        ],
        "threshold_target",
        "finite",
    )
    cli(
        "train -c missing file",
        "config files",
        lambda e: ["train", "-c", str(e.root / "none.yaml"), "-o", str(e.fresh() / "r")],
        "none.yaml",
    )
    cli(
        "train -c invalid YAML",
        "config files",
        lambda e: ["train", "-c", cfg_with(e, "train: [\n"), "-o", str(e.fresh() / "r")],
        "not valid YAML",
    )

    contra = "contradictions (class 5)"
    cli(
        "train --resume on a missing directory",
        contra,
        lambda e: ["train", "-o", str(e.fresh() / "absent"), "--resume"],
        "does not exist",
        after=lambda e, a: not Path(a[2]).exists(),
    )
    cli(
        "train --resume on an empty directory",
        contra,
        lambda e: ["train", "-o", str(e.fresh()), "--resume"],
        "no run to resume",
    )
    cli(
        "train with an override matching no layer",
        contra,
        lambda e: [
            "train",
            "-c",
            cfg_with(
                e,
                json.dumps(
                    {
                        "train": TINY_TRAIN,
                        "quant": {
                            **TINY_QUANT,
                            "overrides": [{"pattern": "nope", "settings": {"bits": 6}}],
                        },
                    }
                ),
            ),
            "-o",
            str(e.fresh() / "r"),
        ],
        "matches no quantizable layer",
    )
    io = "I/O errors (class 3)"

    def taken_file(env: Env) -> str:
        p = env.fresh() / "taken"
        p.write_text("keep me")
        return str(p)

    cli(
        "train -o an existing file",
        io,
        lambda e: ["train", "-c", str(e.cfg_file), "-o", taken_file(e)],
        "is a file",
        after=lambda e, a: Path(a[-1]).read_text() == "keep me",
    )
    cli(
        "simulate --out under a file",
        io,
        lambda e: ["simulate", "--network", "resnet20", "--out", taken_file(e) + "/sub"],
        "taken",
        after=lambda e, a: Path(a[-1]).parent.read_text() == "keep me",
    )
    cli(
        "export --program DIR",
        io,
        lambda e: ["export", str(e.run), "--program", str(e.fresh()), "--no-check"],
        "is a directory",
    )
    cli(
        "export --onnx DIR",
        io,
        lambda e: [
            "export",
            str(e.run),
            "--program",
            str(e.fresh() / "p.safetensors"),
            "--onnx",
            str(e.fresh()),
            "--no-check",
        ],
        "is a directory",
    )
    cli(
        "run-int --trace DIR",
        io,
        lambda e: ["run-int", str(e.program), "--trace", str(e.fresh())],
        "is a directory",
    )
    cli(
        "simulate --hardware missing file",
        "config files",
        lambda e: ["simulate", "--hardware", str(e.root / "hw.yaml")],
        "hw.yaml",
    )
    cli(
        "demo --hardware bad file",
        "config files",
        lambda e: ["demo", "-o", str(e.fresh()), "--hardware", cfg_with(e, "rows: 0\n")],
        "rows",
    )

    def disk_full(env: Env) -> Outcome:
        with tmpfs(env.fresh() / "disk", 300) as disk:
            if disk is None:
                return expect_cli(
                    ["train", "-c", str(env.cfg_file), "-o", "/dev/full/run"], "/dev/full"
                )
            run = disk / "run"
            out = expect_cli(
                ["train", "-c", str(env.cfg_file), "-o", str(run), "--epochs", "3"],
                "No space left on device",
            )
            left = [p for p in run.rglob("*") if ".tmp" in p.name]
            return out if out.verdict != "good" or not left else Outcome("silent", str(left))

    case("cli train on a full disk", io, cli=True)(disk_full)

    def read_only(env: Env) -> Outcome:
        with tmpfs(env.fresh() / "ro", 1024) as ro:
            if ro is None:
                return expect_cli(["train", "-c", str(env.cfg_file), "-o", "/proc/run"], "/proc")
            shutil.copytree(env.run, ro / "run")
            subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
            a = expect_cli(["train", "-o", str(ro / "run"), "--resume"], "Read-only file system")
            b = expect_cli(["export", str(ro / "run"), "--no-check"], "Read-only file system")
            return a if a.verdict != "good" else b

    case("cli resume and export in a read-only folder", io, cli=True)(read_only)

    integ = "integrity (class 2)"

    def edited_ckpt_eval(env: Env) -> Outcome:
        from dynabit.train import RunDir

        run = env.run_copy()
        p = RunDir(run).latest() / "config.yaml"
        p.write_text(re.sub(r"^  bits: 8$", "  bits: 6", p.read_text(), flags=re.M))
        return expect_cli(["eval", str(run)], str(p), "no longer matches")

    case("cli eval after editing a checkpoint config", integ, cli=True)(edited_ckpt_eval)

    def edited_program(env: Env) -> Outcome:
        p = env.file_copy(env.program)
        bump_digit(p, rb'\\"stride\\": \[1, 1\]')
        return expect_cli(["run-int", str(p), "--no-trace"], str(p), "checksum")

    case("cli run-int on an edited stride", integ, cli=True)(edited_program)

    def resume_edited(env: Env) -> Outcome:
        run = env.run_copy()
        p = run / "config.yaml"
        p.write_text(re.sub(r"^  budget: 5\.0$", "  budget: 6.0", p.read_text(), flags=re.M))
        before = (run / "metrics.jsonl").read_bytes()
        return expect_cli(
            ["train", "-o", str(run), "--resume"],
            "quant.budget",
            after=lambda: (run / "metrics.jsonl").read_bytes() == before,
        )

    case("cli resume after editing the run dir config", integ, cli=True)(resume_edited)

    lock = "run-directory lock (class 1)"

    def second_writer(env: Env) -> Outcome:
        run = env.run_copy()
        before = (run / "metrics.jsonl").read_bytes()
        with lock_held_elsewhere(run, env=_env()) as holder:
            return expect_cli(
                ["train", "-o", str(run), "--resume"],
                f"pid {holder.pid}",
                after=lambda: (run / "metrics.jsonl").read_bytes() == before,
            )

    case("cli second train on a run dir", lock, cli=True)(second_writer)

    def killed_holder(env: Env) -> Outcome:
        run = env.run_copy()
        with lock_held_elsewhere(run, env=_env()):
            pass  # killed with SIGKILL on leaving: the kernel drops its lock
        return expect_cli(["train", "-o", str(run), "--resume"], status=0)

    case("cli resume after the holder was SIGKILLed", lock, cli=True)(killed_holder)

    def sweep_repeat(env: Env) -> Outcome:
        p = env.fresh() / "sweep.yaml"
        p.write_text("base: {train: {dataset: digits}}\ngrid: {quant.budget: [5.0, 5.0]}\n")
        out = p.parent / "out"
        return expect_cli(
            ["sweep", str(p), "--out", str(out)], "repeats a point", after=lambda: not out.exists()
        )

    case("cli sweep grid repeats a point", lock, cli=True)(sweep_repeat)

    def diverged(env: Env) -> Outcome:
        p = env.fresh() / "cfg.yaml"
        p.write_text(
            json.dumps(
                {
                    "train": TINY_TRAIN,
                    "quant": {**TINY_QUANT, "threshold_penalty": 1.0, "threshold_target": 1e30},
                }
            )
        )
        run = p.parent / "run"
        return expect_cli(
            ["train", "-c", str(p), "-o", str(run)],
            "diverged",
            "epoch 1, step 1",
            after=lambda: not (run / "checkpoints").exists(),
        )

    case("cli training diverges", "training (divergence)", cli=True)(diverged)

    def split_sizes(env: Env) -> Outcome:
        d = idx_dir(env.fresh() / "idx", sides=(8, 10))
        p = d.parent / "cfg.yaml"
        p.write_text(
            json.dumps(
                {
                    "train": {
                        **TINY_TRAIN,
                        "dataset": "idx",
                        "data_dir": str(d),
                        "train_subset": None,
                        "test_subset": None,
                    },
                    "quant": TINY_QUANT,
                }
            )
        )
        return expect_cli(["train", "-c", str(p), "-o", str(d.parent / "run")], "1x10x10")

    case("cli train on splits of two image sizes", ranges, cli=True)(split_sizes)

    def sigterm(env: Env) -> Outcome:
        import signal

        run = env.fresh() / "run"
        p = run.parent / "cfg.yaml"
        p.write_text(
            json.dumps(
                {
                    "train": {
                        **TINY_TRAIN,
                        "epochs": 50,
                        "max_steps_per_epoch": 20,
                        "checkpoint_every": 5,
                    },
                    "quant": TINY_QUANT,
                }
            )
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "dynabit", "train", "-c", str(p), "-o", str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        deadline = time.time() + 120
        while time.time() < deadline and not (run / "checkpoints" / "latest").exists():
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        if "Traceback" in err:
            return Outcome("traceback", err[-800:])
        if proc.returncode != 143 or "--resume" not in err:
            return Outcome("silent", f"exit {proc.returncode}: {err[-300:]}")
        return GOOD

    case("cli SIGTERM during training", "interruption", cli=True)(sigterm)


def all_cases() -> list[Case]:
    if not CASES:
        for build in (
            _config_cases,
            _config_file_cases,
            _checkpoint_cases,
            _program_cases,
            _data_and_model_cases,
            _lock_and_sweep_cases,
            _cli_cases,
        ):
            build()
    return CASES


def quick_subset(cases: list[Case]) -> list[Case]:
    """The first case of every group, and every tenth case."""
    seen: set[str] = set()
    out = []
    for i, c in enumerate(cases):
        if c.group not in seen or i % 10 == 0:
            seen.add(c.group)
            out.append(c)
    return out


def run_cases(cases: list[Case], env: Env, workers: int = 2) -> list[tuple[Case, Outcome]]:
    """In-process cases one by one, then the command-line ones ``workers`` at a time."""

    def one(c: Case) -> tuple[Case, Outcome]:
        try:
            return c, c.fn(env)
        except Exception as e:  # the harness itself failed: count it against the case
            return c, Outcome("traceback", "".join(traceback.format_exception(e))[-800:])

    results = [one(c) for c in cases if not c.cli]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results += list(pool.map(one, [c for c in cases if c.cli]))
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="A representative subset.")
    ap.add_argument("--workers", type=int, default=2, help="Command-line cases at once.")
    ap.add_argument("--out", default=None, help=f"Results file (default: {RESULTS}).")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    cases = all_cases()
    if args.quick:
        cases = quick_subset(cases)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dynabit-reliability-") as tmp:
        env = Env(Path(tmp))
        results = run_cases(cases, env, args.workers)
    counts = {v: sum(o.verdict == v for _, o in results) for v in ("good", "traceback", "silent")}
    for c, o in results:
        if o.verdict != "good":
            print(f"{o.verdict.upper():9} {c.name} [{c.group}]\n    {o.detail}", flush=True)
    command = "python benchmarks/reliability.py" + (" --quick" if args.quick else "")
    summary = {
        "cases": len(results),
        "good": counts["good"],
        "tracebacks": counts["traceback"],
        "silent": counts["silent"],
        "command": command,
    }
    print(json.dumps(summary), f"({time.perf_counter() - start:.0f} s)")
    out = Path(args.out) if args.out else (None if args.quick else RESULTS)
    if out is not None:
        from dynabit.utils.files import atomic_write_text

        atomic_write_text(out, json.dumps(summary, indent=2) + "\n")
    summary["results"] = [(c.name, c.group, o.verdict, o.detail) for c, o in results]
    return summary


if __name__ == "__main__":
    res = main()
    sys.exit(0 if res["tracebacks"] == 0 and res["silent"] == 0 else 1)
