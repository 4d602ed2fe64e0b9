"""SCALE-Sim topology CSVs (v2/v3, conv and GEMM forms) to and from ``LayerShape`` lists.

Conv form, one layer per row after a header (one line in the file)::

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter,
    Strides,

SCALE-Sim's ifmap sizes already include any padding, so a layer becomes a ``LayerShape`` with
padding 0 and SCALE-Sim's output size ``out = ceil((H - R + stride) / stride)``: when the stride
does not divide ``H - R`` the last output row (column) reads past the map, and those taps are
empty slots, as in SCALE-Sim's operand matrix. ``from_shape`` writes the rows a layer reads,
``(out - 1) * stride + R``, so a PyTorch layer keeps its output size. A ninth field (``N:M``
sparsity) is read and must be ``1:1`` (dense). A layer whose name contains ``DP`` is depthwise:
SCALE-Sim runs it as one single-channel layer per input channel, and so do we
(``<name>Channel_<i>``).

GEMM form (header ``Layer, M, N, K,``): ``Y[M, N] = A[M, K] W[K, N]``, read as a 1 x K filter
sliding over an ``M x K`` single-channel map, which is how SCALE-Sim lowers it.

Every malformed row raises :class:`TopologyError` naming the file, the line and the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dynabit.config.layer import LayerSpec, ceil_div
from dynabit.hardware.shapes import LayerShape, shape_of

Form = Literal["conv", "gemm"]
CONV_HEADER = (
    "Layer name",
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
)
GEMM_HEADER = ("Layer", "M", "N", "K")


class TopologyError(ValueError):
    """A malformed topology file: the message starts with ``file:line:column:``."""


@dataclass(frozen=True)
class TopologyLayer:
    """One row of a topology file, as SCALE-Sim reads it."""

    name: str
    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    filters: int
    stride_h: int
    stride_w: int

    @property
    def ofmap_hw(self) -> tuple[int, int]:
        """Output map as SCALE-Sim sizes it: ``ceil((H - R + stride) / stride)`` (no padding)."""
        return (
            ceil_div(self.ifmap_h - self.filter_h + self.stride_h, self.stride_h),
            ceil_div(self.ifmap_w - self.filter_w + self.stride_w, self.stride_w),
        )

    def spec(self, bits: int = 8) -> LayerSpec:
        """The layer as a static, unpadded conv :class:`~dynabit.config.layer.LayerSpec`
        (decision units: the spec's defaults; a static layer runs every group)."""
        return LayerSpec(
            name=self.name,
            kind="conv",
            in_channels=self.channels,
            out_channels=self.filters,
            in_hw=(self.ifmap_h, self.ifmap_w),
            out_hw=self.ofmap_hw,
            kernel=(self.filter_h, self.filter_w),
            stride=(self.stride_h, self.stride_w),
            dynamic=False,
            bits=bits,
            hi_bits=bits,
        )

    def shape(self, bits: int = 8) -> LayerShape:
        """The layer as the simulator sees it (:func:`~dynabit.hardware.shapes.shape_of` of
        :meth:`spec`)."""
        return shape_of(self.spec(bits))


def _fields(line: str) -> list[str]:
    parts = [p.strip() for p in line.rstrip("\r\n").split(",")]
    while parts and parts[-1] == "":  # SCALE-Sim rows end with a comma
        parts.pop()
    return parts


def detect_form(header: Sequence[str]) -> Form:
    """``gemm`` when the header reads ``<name>, M, N, K``, else ``conv``."""
    keys = [h.strip().upper() for h in header[1:4]]
    return "gemm" if keys == ["M", "N", "K"] else "conv"


def parse_topology(
    text: str, source: str = "<topology>", form: Form | None = None
) -> list[TopologyLayer]:
    """Parse topology CSV text (the first non-blank line is the header)."""
    lines = text.splitlines()
    rows = [(i + 1, _fields(ln)) for i, ln in enumerate(lines) if ln.strip()]
    if not rows:
        raise TopologyError(f"{source}:1:1: empty topology file (expected a header and layer rows)")
    header_line, header = rows[0]
    form = form or detect_form(header)
    if form not in ("conv", "gemm"):
        raise TopologyError(f"{source}: unknown form {form!r}; allowed: 'conv', 'gemm'")
    names = CONV_HEADER if form == "conv" else GEMM_HEADER
    need = len(names)
    layers: list[TopologyLayer] = []
    for lineno, f in rows[1:]:
        if len(f) < need:
            raise TopologyError(
                f"{source}:{lineno}:{len(f) + 1}: {form} row has {len(f)} fields, expected "
                f"{need} ({', '.join(names)})"
            )
        if not f[0]:
            raise TopologyError(f"{source}:{lineno}:1: empty layer name")
        vals = []
        for col in range(1, need):
            try:
                v = int(f[col])
            except ValueError:
                raise TopologyError(
                    f"{source}:{lineno}:{col + 1}: {names[col]} must be a positive integer, "
                    f"got {f[col]!r}"
                ) from None
            if v < 1:
                raise TopologyError(
                    f"{source}:{lineno}:{col + 1}: {names[col]} must be >= 1, got {v}"
                )
            vals.append(v)
        extra = f[need:]
        if extra and extra[0] not in ("1:1", ""):
            raise TopologyError(
                f"{source}:{lineno}:{need + 1}: sparsity {extra[0]!r} is not supported; "
                "allowed: 1:1 (dense)"
            )
        if len(extra) > 1:
            raise TopologyError(
                f"{source}:{lineno}:{need + 2}: unexpected field {extra[1]!r}; a {form} row has "
                f"{need} fields and an optional N:M sparsity"
            )
        if form == "gemm":
            m, n, k = vals
            layers.append(TopologyLayer(f[0], m, k, 1, k, 1, n, 1, 1))
            continue
        ih, iw, fh, fw, ch, nf, st = vals
        for col, (fv, iv, what) in enumerate(((fh, ih, "height"), (fw, iw, "width"))):
            if fv > iv:
                raise TopologyError(
                    f"{source}:{lineno}:{4 + col}: Filter {what} {fv} exceeds IFMAP {what} {iv}"
                )
        if "DP" in f[0]:
            layers += [
                TopologyLayer(f"{f[0]}Channel_{c}", ih, iw, fh, fw, 1, nf, st, st)
                for c in range(ch)
            ]
        else:
            layers.append(TopologyLayer(f[0], ih, iw, fh, fw, ch, nf, st, st))
    if not layers:
        raise TopologyError(f"{source}:{header_line + 1}:1: no layer rows after the header")
    return layers


def read_topology(path: str | Path, form: Form | None = None) -> list[TopologyLayer]:
    """Read a SCALE-Sim topology CSV (form detected from the header unless given)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise TopologyError(f"{p}: cannot read topology file ({e.strerror})") from None
    return parse_topology(text, str(p), form)


def topology_shapes(path: str | Path, form: Form | None = None) -> list[LayerShape]:
    """The layers of a topology file as ``LayerShape`` s (static, 8-bit, unpadded)."""
    return [layer.shape() for layer in read_topology(path, form)]


def format_topology(layers: Sequence[TopologyLayer]) -> str:
    """Conv-form CSV text SCALE-Sim reads (square strides; non-square ones are rejected)."""
    out = [", ".join(CONV_HEADER) + ","]
    for layer in layers:
        if layer.stride_h != layer.stride_w:
            raise ValueError(
                f"layer {layer.name!r}: SCALE-Sim rows have one stride, got "
                f"{layer.stride_h}x{layer.stride_w}"
            )
        vals = (
            layer.ifmap_h,
            layer.ifmap_w,
            layer.filter_h,
            layer.filter_w,
            layer.channels,
            layer.filters,
            layer.stride_h,
        )
        out.append(", ".join([layer.name, *map(str, vals)]) + ",")
    return "\n".join(out) + "\n"


def from_shape(shape: LayerShape) -> TopologyLayer:
    """A ``LayerShape`` as a topology row: padding folded into the ifmap, which is cut to the
    rows and columns the layer reads, so SCALE-Sim's output size equals the layer's."""
    if shape.groups != 1 or shape.dilation != (1, 1):
        raise ValueError(f"layer {shape.name!r}: SCALE-Sim rows cannot express groups or dilation")
    h = (shape.out_hw[0] - 1) * shape.stride[0] + shape.kernel[0]
    w = (shape.out_hw[1] - 1) * shape.stride[1] + shape.kernel[1]
    return TopologyLayer(
        shape.name, h, w, *shape.kernel, shape.in_channels, shape.out_channels, *shape.stride
    )
