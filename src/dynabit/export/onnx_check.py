"""Run an exported ONNX model with onnxruntime and compare it with the integer engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dynabit.engine.execute import Executor
from dynabit.engine.program import IntegerProgram
from dynabit.export.onnx_export import OnnxExportError
from dynabit.utils.progress import progress_bar


@dataclass
class OnnxCheck:
    """onnxruntime against the engine on the same inputs."""

    samples: int
    onnx_top1: float | None  # percent (None without labels)
    engine_top1: float | None
    same_predictions: int  # samples whose argmax agrees
    logits_int_mismatches: int  # integer logits that differ (0 = bit-exact)
    mask_mismatches: int  # group decisions that differ, all dynamic layers
    max_abs_diff: float  # largest |onnx logits - engine logits|
    max_diff_steps: float  # largest |onnx - engine| / the logit's dequantization step

    @property
    def ok(self) -> bool:
        """Same predictions everywhere and logits within one dequantization step."""
        return self.same_predictions == self.samples and self.max_diff_steps <= 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON, with ``ok``."""
        return {**asdict(self), "ok": self.ok}


def _session(model: str | Path | bytes):  # noqa: ANN202 - onnxruntime.InferenceSession
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - depends on the environment
        raise OnnxExportError(
            "the ONNX check needs 'onnxruntime': pip install 'dynabit[onnx]'"
        ) from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    src = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def check_onnx(
    onnx_model: str | Path | bytes,
    program: IntegerProgram,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> OnnxCheck:
    """Run ``onnx_model`` (a path or serialized bytes) and the engine on ``images``
    (``progress``: a bar over the batches)."""
    sess = _session(onnx_model)
    names = [o.name for o in sess.get_outputs()]
    ex = Executor(program)
    n = images.shape[0]
    same = int_bad = mask_bad = 0
    max_diff = max_steps = 0.0
    onnx_pred, eng_pred = [], []
    step = program.tensors[program.output].scale.double().reshape(1, -1)
    starts = range(0, n, batch_size)
    bar = progress_bar(starts, desc="ONNX check", unit="batch", disable=not progress, leave=False)
    for start in bar:
        x = images[start : start + batch_size]
        outs = dict(zip(names, sess.run(None, {"input": x.float().numpy()}), strict=True))
        res = ex(x)
        o_logits = torch.from_numpy(outs["logits"]).double()
        int_bad += int((torch.from_numpy(outs["logits_int"]) != res.logits_int).sum())
        diff = (o_logits - res.logits).abs()
        max_diff = max(max_diff, float(diff.max()))
        max_steps = max(max_steps, float((diff / step).max()))
        po, pe = o_logits.argmax(1), res.logits.argmax(1)
        same += int((po == pe).sum())
        onnx_pred.append(po)
        eng_pred.append(pe)
        for lt in res.trace.layers:
            key = f"mask:{lt.name}"
            if lt.mask is not None and key in outs:
                mask_bad += int((torch.from_numpy(outs[key]) != lt.mask).sum())
    top = (None, None)
    if labels is not None:
        lab = labels[:n]
        top = tuple(
            100.0 * float((torch.cat(p) == lab).sum()) / max(n, 1) for p in (onnx_pred, eng_pred)
        )
    return OnnxCheck(
        samples=n,
        onnx_top1=top[0],
        engine_top1=top[1],
        same_predictions=same,
        logits_int_mismatches=int_bad,
        mask_mismatches=mask_bad,
        max_abs_diff=max_diff,
        max_diff_steps=max_steps,
    )
