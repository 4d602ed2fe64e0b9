"""The integer program file: round trip, versioning, truncation and corruption."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save

from dynabit.config import QuantConfig
from dynabit.engine import (
    PROGRAM_FORMAT,
    PROGRAM_VERSION,
    Executor,
    ProgramFormatError,
    load_program,
    lower,
)
from dynabit.models import build_model
from dynabit.quant import calibrate, convert, prepare


@pytest.fixture(scope="module")
def program_and_input():
    torch.manual_seed(0)
    cfg = QuantConfig(hardware={"rows": 4, "cols": 8}, enforce_bounds=True)
    pm = prepare(build_model("resnet20", 1, 10, 8, width=4), cfg)
    x = torch.randn(6, 1, 8, 8)
    calibrate(pm, [x])
    return lower(convert(pm, strict=True), (1, 8, 8)), x


def test_round_trip_is_identical(program_and_input, tmp_path: Path) -> None:
    program, x = program_and_input
    path = tmp_path / "model.dbp"
    program.save(path)
    loaded = load_program(path)
    assert loaded.to_json() == program.to_json()
    for a, b in zip(program.ops, loaded.ops, strict=True):
        assert a.params.keys() == b.params.keys()
        for k in a.params:
            assert a.params[k].dtype == b.params[k].dtype
            assert torch.equal(a.params[k], b.params[k])
    r1, r2 = Executor(program)(x), Executor(loaded)(x)
    assert torch.equal(r1.logits_int, r2.logits_int)
    assert all(
        torch.equal(a.mask, b.mask)
        for a, b in zip(r1.trace.layers, r2.trace.layers, strict=True)
        if a.mask is not None
    )


def test_self_describing_header(program_and_input, tmp_path: Path) -> None:
    program, _ = program_and_input
    path = tmp_path / "p.safetensors"
    program.save(path)
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    assert meta["format"] == PROGRAM_FORMAT and meta["version"] == str(PROGRAM_VERSION)
    desc = json.loads(meta["program"])
    kinds = [op["kind"] for op in desc["ops"]]
    assert kinds[0] == "quantize" and "add" in kinds and "avgpool2d" in kinds
    conv = next(op for op in desc["ops"] if op["kind"] == "conv2d" and op["attrs"]["dynamic"])
    assert conv["params"]["weight"][0] == "int8"
    assert {"threshold", "score_mult", "bias"} <= set(conv["params"])
    assert desc["tensors"]["input"]["shape"] == [1, 8, 8]


def _rewrite(path: Path, **meta_changes: str) -> None:
    tensors = load(path.read_bytes())
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    meta.update(meta_changes)
    path.write_bytes(save(tensors, metadata=meta))


def test_other_version_is_refused(program_and_input, tmp_path: Path) -> None:
    program, _ = program_and_input
    path = tmp_path / "p.safetensors"
    program.save(path)
    _rewrite(path, version=str(PROGRAM_VERSION + 1))
    with pytest.raises(ProgramFormatError, match=rf"version {PROGRAM_VERSION + 1}.*reads"):
        load_program(path)


def test_not_a_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(save({"w": torch.zeros(3)}, metadata={"format": "pt"}))
    with pytest.raises(ProgramFormatError, match="not a dynabit integer program"):
        load_program(path)
    with pytest.raises(ProgramFormatError, match="cannot read"):
        load_program(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_file_is_refused(program_and_input, tmp_path: Path, keep: float) -> None:
    program, _ = program_and_input
    path = tmp_path / "p.safetensors"
    program.save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ProgramFormatError, match="truncated"):
        load_program(path)


def test_corrupt_data_is_refused(program_and_input, tmp_path: Path) -> None:
    program, _ = program_and_input
    path = tmp_path / "p.safetensors"
    program.save(path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF  # flip bits inside the tensor data
    path.write_bytes(bytes(raw))
    with pytest.raises(ProgramFormatError, match="checksum"):
        load_program(path)


def test_layer_specs_read_back_what_lowering_wrote(program_and_input) -> None:
    from dynabit.engine.program import spec_attrs

    program, _ = program_and_input
    dynamic = program.dynamic_ops()
    assert dynamic
    for op in program.layer_ops():
        spec = program.layer_spec(op)
        assert spec.name == op.name and spec.dynamic == op.attrs["dynamic"]
        assert spec.out_channels == program.tensors[op.output].shape[0]
        written = spec_attrs(spec)
        assert {k: op.attrs[k] for k in written} == written
    for op in dynamic:
        spec = program.layer_spec(op)
        assert list(spec.decision_map()[1]) == op.attrs["grid"][1:]
        assert spec.k_bounds is not None  # the fixture enforces bounds
        assert list(spec.k_bounds) == op.attrs["k_bounds"]
