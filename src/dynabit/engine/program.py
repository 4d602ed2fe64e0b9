"""The integer program: a flat list of integer operations, and its file format.

A program is what :func:`dynabit.engine.lower` makes of a converted model. Tensors are named;
each has a shape (without the batch dimension), a kind and a scale (float64, per channel of
dim 1 or one value) that says what its integers mean — scales are metadata: execution never
reads them, except the float32 scale of the input quantization at the boundary.

File format (one ``.safetensors`` file): the tensors are the operations' integer parameters
(``ops/<index>/<key>``) and the tensor scales (``scales/<tensor name>``); the safetensors
header metadata holds ``format`` (:data:`PROGRAM_FORMAT`), ``version``
(:data:`PROGRAM_VERSION`), ``program``: a JSON description of the operations, tensors, input
and output, and ``sha256``: of the tensors' bytes in key order and of that description, so an
edited operation (a digit of a scale, a stride) is refused like corrupt tensor data. See
``docs/engine.md``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from dynabit.config.layer import LayerSpec, hardware_split, hardware_units
from dynabit.utils.files import atomic_write_bytes

if TYPE_CHECKING:
    from dynabit.config.hardware import HardwareConfig

PROGRAM_FORMAT = "dynabit-integer-program"
PROGRAM_VERSION = 2  # 2: the checksum covers the description too

OP_KINDS = (
    "quantize",  # float input -> codes: clamp(round_half_even(x / s) in float32)
    "requant",  # int -> codes: clamp((t * mult + 2**(shift-1)) >> shift)
    "conv2d",  # codes -> accumulator (static, or dynamic dual precision)
    "linear",  # codes -> accumulator (static, or dynamic dual precision)
    "clamp",  # int -> int: clamp(t, lo, hi) (ReLU, ReLU6, Hardtanh)
    "maxpool2d",  # int -> int
    "avgpool2d",  # int -> int: exact bin sums, round_half_up(sum / count)
    "add",  # int, int -> int32: clamp32((a * mult_a + b * mult_b + 2**(shift-1)) >> shift)
    "flatten",  # (N, C, H, W) -> (N, C*H*W)
)


def spec_attrs(spec: LayerSpec) -> dict[str, Any]:
    """The attributes a conv2d/linear op stores for its :class:`LayerSpec` (the file's keys).

    Geometry that the tensors already carry (channels, maps, kernel) is not repeated; a static
    layer stores no decision grid. :meth:`IntegerProgram.layer_spec` reads them back.
    """
    attrs: dict[str, Any] = {"dynamic": bool(spec.dynamic), "bits": int(spec.bits)}
    if spec.kind == "conv":
        attrs.update(
            stride=list(spec.stride),
            padding=list(spec.padding),
            dilation=list(spec.dilation),
            groups=int(spec.groups),
        )
    if spec.dynamic:
        c, (h, w) = spec.decision_map()
        attrs.update(
            lo_bits=int(spec.lo_bits),
            decision=spec.decision,
            score=spec.score,
            block_size=int(spec.block_size),
            group=[int(spec.group[0]), int(spec.group[1])],
            grid=[int(c), int(h), int(w)],
            k_bounds=None if spec.k_bounds is None else [int(k) for k in spec.k_bounds],
        )
    return attrs


def _pair_attr(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _map_hw(shape: tuple[int, ...]) -> tuple[int, int]:
    return (int(shape[1]), int(shape[2])) if len(shape) == 3 else (1, 1)


class ProgramFormatError(ValueError):
    """An integer program file is missing, truncated, corrupt or of another version."""


@dataclass
class TensorInfo:
    """A named tensor of the program."""

    shape: tuple[int, ...]  # without the batch dimension
    kind: str  # "float" (model input), "codes" (a layer's input), "acc", "int"
    scale: torch.Tensor  # float64, (C,) along dim 1, or (1,)

    def to_json(self) -> dict[str, Any]:
        """The JSON description (the scale is stored as a tensor)."""
        return {"shape": list(self.shape), "kind": self.kind}


@dataclass
class Op:
    """One operation: ``output = kind(inputs; attrs, params)``."""

    kind: str
    name: str  # the model's module name (or graph node name)
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, torch.Tensor] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON description; parameters as ``[dtype, shape]`` (stored as tensors)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "inputs": list(self.inputs),
            "output": self.output,
            "attrs": self.attrs,
            "params": {
                k: [str(v.dtype).removeprefix("torch."), list(v.shape)]
                for k, v in self.params.items()
            },
        }


@dataclass
class IntegerProgram:
    """A lowered model: integer operations in execution order."""

    input: str
    output: str
    ops: list[Op]
    tensors: dict[str, TensorInfo]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one input sample."""
        return self.tensors[self.input].shape

    def layer_ops(self) -> list[Op]:
        """The conv/linear operations."""
        return [op for op in self.ops if op.kind in ("conv2d", "linear")]

    def dynamic_ops(self) -> list[Op]:
        """The dual-precision conv/linear operations."""
        return [op for op in self.layer_ops() if op.attrs["dynamic"]]

    def layer_spec(self, op: Op, hw: HardwareConfig | None = None) -> LayerSpec:
        """The :class:`LayerSpec` of a conv2d/linear ``op`` (inverse of :func:`spec_attrs`).

        A static layer has no decision units of its own: it takes the array's defaults
        (:func:`~dynabit.config.layer.hardware_units` of ``hw``, the default array when
        ``None``) and its high plane is one activation chunk wide.
        """
        a = op.attrs
        in_shape = self.tensors[op.inputs[0]].shape
        out_shape = self.tensors[op.output].shape
        conv = op.kind == "conv2d"
        dynamic = bool(a["dynamic"])
        bits = int(a["bits"])
        geometry: dict[str, Any] = {}
        if conv:
            w = op.params["weight"].shape
            geometry = {
                "kernel": (int(w[2]), int(w[3])),
                "stride": _pair_attr(a.get("stride", 1)),
                "padding": _pair_attr(a.get("padding", 0)),
                "dilation": _pair_attr(a.get("dilation", 1)),
                "groups": int(a.get("groups", 1)),
            }
        if dynamic:
            kb = a.get("k_bounds")
            units: dict[str, Any] = {
                "group": (int(a["group"][0]), int(a["group"][1])),
                "block_size": int(a["block_size"]),
                "decision": a["decision"],
                "hi_bits": bits - int(a["lo_bits"]),
                "score": a["score"],
                "k_bounds": None if kb is None else (int(kb[0]), int(kb[1])),
            }
        else:
            if hw is None:
                from dynabit.config.hardware import HardwareConfig

                hw = HardwareConfig()
            group, block = hardware_units(hw, aligned=False)
            units = {"group": group, "block_size": block, "hi_bits": hardware_split(hw, bits)}
        return LayerSpec(
            name=op.name,
            kind="conv" if conv else "linear",
            in_channels=int(in_shape[0]),
            out_channels=int(out_shape[0]),
            in_hw=_map_hw(in_shape),
            out_hw=_map_hw(out_shape),
            dynamic=dynamic,
            bits=bits,
            **geometry,
            **units,
        )

    def copy(self) -> IntegerProgram:
        """A deep copy (parameters included)."""
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        """The JSON description written into the file header."""
        return {
            "input": self.input,
            "output": self.output,
            "ops": [op.to_json() for op in self.ops],
            "tensors": {k: t.to_json() for k, t in self.tensors.items()},
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> None:
        """Write the program to one ``.safetensors`` file (atomically)."""
        save_program(self, path)


def _flat_tensors(program: IntegerProgram) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for i, op in enumerate(program.ops):
        for k, v in op.params.items():
            out[f"ops/{i}/{k}"] = v.detach().cpu().contiguous()
    for name, t in program.tensors.items():
        out[f"scales/{name}"] = t.scale.detach().cpu().double().contiguous()
    return out


def _digest(tensors: dict[str, torch.Tensor], description: str) -> str:
    """sha256 of the tensors (names and bytes, in key order), then of the JSON description."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].numpy().tobytes())
    h.update(b"\0program\0")
    h.update(description.encode())
    return h.hexdigest()


def save_program(program: IntegerProgram, path: str | Path) -> None:
    """Write ``program`` to ``path`` (safetensors; description and version in its header)."""
    tensors = _flat_tensors(program)
    description = json.dumps(program.to_json(), sort_keys=True)
    metadata = {
        "format": PROGRAM_FORMAT,
        "version": str(PROGRAM_VERSION),
        "sha256": _digest(tensors, description),
        "program": description,
    }
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def _header(data: bytes, where: str) -> dict[str, str]:
    """The safetensors metadata of ``data`` (read without the tensor library)."""
    if len(data) < 8:
        raise ProgramFormatError(f"{where}: not an integer program file (only {len(data)} bytes)")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ProgramFormatError(
            f"{where}: truncated file: its header claims {n} bytes, {len(data) - 8} remain"
        )
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProgramFormatError(f"{where}: not a safetensors file ({e})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def load_program(path: str | Path) -> IntegerProgram:
    """Read a program written by :func:`save_program`.

    Raises :class:`ProgramFormatError` for a missing or truncated file, a file that is not an
    integer program, one written by another format version, or one whose contents do not match
    their checksum.
    """
    p = Path(path)
    where = str(p)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ProgramFormatError(f"cannot read integer program {where!r}: {e}") from None
    meta = _header(data, where)
    if meta.get("format") != PROGRAM_FORMAT:
        raise ProgramFormatError(
            f"{where}: not a dynabit integer program (format {meta.get('format')!r}, "
            f"expected {PROGRAM_FORMAT!r})"
        )
    if meta.get("version") != str(PROGRAM_VERSION):
        raise ProgramFormatError(
            f"{where}: integer program format version {meta.get('version')}, this dynabit reads "
            f"version {PROGRAM_VERSION}; export the model again with this version"
        )
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise ProgramFormatError(f"{where}: truncated or corrupt tensor data ({e})") from None
    description = meta.get("program")
    if not isinstance(description, str):
        raise ProgramFormatError(f"{where}: the header holds no program description")
    if _digest(tensors, description) != meta.get("sha256"):
        raise ProgramFormatError(
            f"{where}: the tensor data or the operation description no longer matches its "
            "checksum (corrupt or edited file); export the program again"
        )
    try:
        desc = json.loads(description)
        ops = []
        for i, o in enumerate(desc["ops"]):
            params = {k: tensors[f"ops/{i}/{k}"] for k in o["params"]}
            for k, (dtype, shape) in o["params"].items():
                if str(params[k].dtype).removeprefix("torch.") != dtype or list(
                    params[k].shape
                ) != list(shape):
                    raise ProgramFormatError(f"{where}: op {i} parameter {k!r} is inconsistent")
            ops.append(Op(o["kind"], o["name"], o["inputs"], o["output"], o["attrs"], params))
        infos = {
            k: TensorInfo(tuple(t["shape"]), t["kind"], tensors[f"scales/{k}"])
            for k, t in desc["tensors"].items()
        }
        return IntegerProgram(desc["input"], desc["output"], ops, infos, desc.get("meta", {}))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProgramFormatError):
            raise
        raise ProgramFormatError(f"{where}: malformed program description ({e!r})") from None
