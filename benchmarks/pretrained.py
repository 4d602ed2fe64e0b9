"""Pretrained ImageNet networks on real photos: uniform PTQ vs dynabit, against FP32's outputs.

    python benchmarks/pretrained.py [--nets efficientnet-lite0,efficientnet-lite1]
        [--uniform-bits 4,5,6,8] [--methods dynabit,mixed,...] [--budgets 4.5,5,6] [--seeds 3]
        [--calib-photos 32] [--calib-views centre] [--threshold-passes 3] [--reconstruct-steps 0]
        [--eval-photos N] [--threads 2] [--out benchmarks/results/pretrained.json]

Data: the ``photos`` dataset (``docs/data.md``), evaluated on the ten ImageNet crops of every
evaluation photo (``--eval-photos N``: N of them, drawn with a fixed seed). Reference: each
net's own FP32 outputs; metrics (``dynabit.ptq.agreement``): top-1 agreement, top-5 agreement
(FP32 top-1 within the quantized top 5) and mean KL(FP32 || quantized) in nats.

Calibration: training-free (``dynabit.ptq.quantize_training_free``: activation scales and, for
the gating methods, per-block thresholds at the target ratio; for ``mixed``, the per-layer
A4/A8 assignment of ``dynabit.quant.mixed`` measured on the same crops first) on the crops of
``--calib-photos`` calibration photos, the thresholds in ``--threshold-passes`` joint passes
(0: one pass per dynamic layer, the sequential way), then, with ``--reconstruct-steps N``,
``dynabit.ptq.reconstruct`` (N steps per block, the same for every method). Seed ``s`` draws
the photos with ``s``; every net and method sees the same photos for a given seed, and no
calibration photo is ever evaluated. Rows average over the seeds (``*_std``: sample standard
deviation across seeds).

Each finished (net, method, budget, seed) run is kept in the output file, so the same command
run again continues where it stopped. ``--image-size`` (default 224) resizes the crops, for
quick checks only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynabit.data import DatasetError
from dynabit.data.imagenet_crops import VIEWS
from dynabit.data.photos import BACKGROUNDS_DIR, STAMPS_DIR, PhotoCrops, load_photos
from dynabit.models.efficientnet_lite import (
    INPUT_MEAN,
    INPUT_STD,
    load_efficientnet_lite_pretrained,
)
from dynabit.ptq import (
    THRESHOLD_PASSES,
    agreement,
    method_quant_config,
    quantize_training_free,
    reconstruct,
)
from dynabit.quant import model_stats, reset_stats
from dynabit.quant.baselines import method_config
from dynabit.quant.mixed import MIXED, check_budget, is_mixed
from dynabit.utils.files import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "pretrained.json"
NETS: dict[str, str] = {"efficientnet-lite0": "lite0", "efficientnet-lite1": "lite1"}
EVAL_SEED = 1234  # which evaluation photos --eval-photos keeps
HW = {"rows": 16, "cols": 16, "dataflow": "os"}


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", type=_names, default=list(NETS))
    ap.add_argument("--uniform-bits", type=_floats, default=[4.0, 5.0, 6.0, 8.0])
    ap.add_argument("--methods", type=_names, default=["dynabit", MIXED])
    ap.add_argument("--budgets", type=_floats, default=[4.5, 5.0, 6.0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--calib-photos", type=int, default=32)
    ap.add_argument("--calib-views", choices=VIEWS, default="centre")
    ap.add_argument("--threshold-passes", type=int, default=THRESHOLD_PASSES)
    ap.add_argument("--reconstruct-steps", type=int, default=0)
    ap.add_argument("--eval-photos", type=int, default=None)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stamps-dir", default=str(STAMPS_DIR))
    ap.add_argument("--backgrounds-dir", default=str(BACKGROUNDS_DIR))
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    unknown = [n for n in args.nets if n not in NETS]
    if unknown:
        ap.error(f"unknown nets {unknown}; allowed: {', '.join(NETS)}")
    if args.reconstruct_steps < 0:
        ap.error(f"--reconstruct-steps must be >= 0 (0: none), got {args.reconstruct_steps}")
    if args.threshold_passes < 0:
        ap.error(f"--threshold-passes must be >= 0 (0: sequential), got {args.threshold_passes}")
    for name, value in (("--seeds", args.seeds), ("--calib-photos", args.calib_photos)):
        if value < 1:
            ap.error(f"{name} must be >= 1, got {value}")
    if args.eval_photos is not None and args.eval_photos < 1:
        ap.error(f"--eval-photos must be >= 1, got {args.eval_photos}")
    try:
        for m in args.methods:
            if is_mixed(m):
                for b in args.budgets:
                    check_budget(b)
            else:
                method_config(m, args.budgets[0] if args.budgets else 5.0)
        for b in args.uniform_bits:
            method_config("uniform", b)
    except ValueError as e:
        ap.error(str(e).splitlines()[0])
    return args


def batches(crops: PhotoCrops, size: int, batch_size: int) -> list[Tensor]:
    """The crops normalized for EfficientNet-Lite, resized to ``size`` if needed, in batches."""
    out = []
    for i in range(0, len(crops), batch_size):
        x = crops.normalized(INPUT_MEAN, INPUT_STD, i, i + batch_size)
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        out.append(x)
    return out


@torch.no_grad()
def logits(model: nn.Module, xs: list[Tensor]) -> Tensor:
    model.eval()
    return torch.cat([model(x) for x in xs])


def run_key(net: str, method: str, budget: float, seed: int) -> str:
    return f"{net}|{method}|{budget:g}|{seed}"


def summarize(runs: dict[str, dict[str, float]], setup: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (net, method, budget): means and sample std over the seeds that finished."""
    groups: dict[tuple[str, str, float], list[dict[str, float]]] = {}
    for key, res in runs.items():
        net, method, budget, _ = key.split("|")
        groups.setdefault((net, method, float(budget)), []).append(res)

    def std(values: list[float]) -> float:
        return statistics.stdev(values) if len(values) > 1 else 0.0

    rows = []
    for (net, method, budget), res in groups.items():
        col = {k: [r[k] for r in res] for k in ("top1_agreement", "top5_agreement", "kl", "b_avg")}
        rows.append(
            {
                "net": net,
                "method": method,
                "budget": budget,
                "b_avg": statistics.fmean(col["b_avg"]),
                "top1_agree_mean": statistics.fmean(col["top1_agreement"]),
                "top1_agree_std": std(col["top1_agreement"]),
                "top5_agree_mean": statistics.fmean(col["top5_agreement"]),
                "kl_mean": statistics.fmean(col["kl"]),
                "kl_std": std(col["kl"]),
                "seeds": len(res),
                "eval_photos": setup["eval_photos"],
                "eval_crops": setup["eval_crops"],
                "calibration": setup["calibration"],
            }
        )
    return rows


def plan(args: argparse.Namespace) -> list[tuple[str, str, float, int]]:
    runs = []
    for net in args.nets:
        for seed in range(args.seeds):
            runs += [(net, "uniform", float(b), seed) for b in args.uniform_bits]
            runs += [(net, m, float(b), seed) for m in args.methods for b in args.budgets]
    return runs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    raw = sys.argv[1:] if argv is None else list(argv)
    args = parse(raw)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    dirs = {"stamps_dir": args.stamps_dir, "backgrounds_dir": args.backgrounds_dir}
    evaluation = load_photos("evaluation", **dirs)
    if args.eval_photos is not None:
        evaluation = evaluation.sample_photos(args.eval_photos, seed=EVAL_SEED)
    calibration = load_photos("calibration", views=args.calib_views, **dirs)
    k = min(args.calib_photos, calibration.num_photos)
    calibration_text = (
        f"training-free on the {args.calib_views} crops of {k} of {calibration.num_photos} "
        f"calibration photos, drawn per seed (seeds 0..{args.seeds - 1}), the same for every "
        "net and method; block thresholds "
        + (
            f"in {args.threshold_passes} joint pass(es)"
            if args.threshold_passes
            else "one dynamic layer at a time"
        )
        + (
            f"; then label-free block reconstruction, {args.reconstruct_steps} steps per block"
            if args.reconstruct_steps
            else ""
        )
    )
    setup = {
        "eval_photos": evaluation.num_photos,
        "eval_crops": len(evaluation),
        "calibration": calibration_text,
        "image_size": args.image_size,
        "eval_ids": list(evaluation.ids),
    }
    out = Path(args.out)
    runs: dict[str, dict[str, float]] = {}
    if out.is_file():  # continue a stopped run of the same setup
        old = json.loads(out.read_text())
        if old.get("setup") == setup:
            runs = dict(old.get("runs", {}))
    eval_x = batches(evaluation, args.image_size, args.batch_size)
    calib_x = {
        s: torch.cat(batches(calibration.sample_photos(k, seed=s), args.image_size, 256))
        for s in range(args.seeds)
    }
    todo = [r for r in plan(args) if run_key(*r) not in runs]
    models: dict[str, nn.Module] = {}
    refs: dict[str, Tensor] = {}

    def write() -> dict[str, Any]:
        result = {
            "rows": summarize(runs, setup),
            "setup": setup,
            "runs": runs,
            "complete": not [r for r in plan(args) if run_key(*r) not in runs],
            "seconds": round(time.time() - t0, 1),
            "command": shlex.join(["python", "benchmarks/pretrained.py", *raw]),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
        return result

    for i, (net, method, budget, seed) in enumerate(todo, 1):
        if net not in models:
            models[net] = load_efficientnet_lite_pretrained(NETS[net])
            refs[net] = logits(models[net], eval_x)
        cfg = method_quant_config(models[net], method, budget, calib_x[seed], hardware=HW)
        passes = args.threshold_passes or None
        qmodel = quantize_training_free(models[net], cfg, calib_x[seed], threshold_passes=passes)
        if args.reconstruct_steps:
            reconstruct(qmodel, models[net], calib_x[seed], steps=args.reconstruct_steps)
        reset_stats(qmodel)
        res = agreement(refs[net], logits(qmodel, eval_x))
        res["b_avg"] = float(model_stats(qmodel).b_avg_macs)
        runs[run_key(net, method, budget, seed)] = res
        write()
        print(
            f"[{i}/{len(todo)}] {net} {method}@{budget:g} seed {seed}: top-1 "
            f"{res['top1_agreement']:.3f} top-5 {res['top5_agreement']:.3f} KL {res['kl']:.4f} "
            f"B_avg {res['b_avg']:.3f} ({time.time() - t0:.0f} s)",
            flush=True,
        )
    result = write()
    for r in result["rows"]:
        print(
            f"{r['net']:>18} {r['method']:>10} {r['budget']:4g}  top-1 {r['top1_agree_mean']:.3f}"
            f" ± {r['top1_agree_std']:.3f}  top-5 {r['top5_agree_mean']:.3f}  KL "
            f"{r['kl_mean']:.4f} ± {r['kl_std']:.4f}  B_avg {r['b_avg']:.3f}  ({r['seeds']} seeds)"
        )
    return result


def cli(argv: list[str] | None = None) -> int:
    """:func:`main` with missing packages or data as one ``error:`` line and exit status 2."""
    try:
        main(argv)
    except (DatasetError, ModuleNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
