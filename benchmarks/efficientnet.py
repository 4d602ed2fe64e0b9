"""Training-free dynabit vs uniform PTQ on pretrained EfficientNet-Lite0 (ImageNet weights).

    python benchmarks/efficientnet.py [--images DIR] [--threads 2]

Calibrates on the centre crops of the photos (no training), evaluates on their ten-crops
(centre, four corners, and the horizontal flips) against the FP32 model, and simulates the
dynamic models at 224x224 on a 16x16 output-stationary array. Writes
``benchmarks/results/efficientnet.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from dynabit.config import HardwareConfig
from dynabit.hardware import compare, trace_model
from dynabit.models.efficientnet_lite import INPUT_MEAN, INPUT_STD
from dynabit.models.efficientnet_lite import load_efficientnet_lite0_pretrained as load_lite0
from dynabit.ptq import (
    evaluate_ptq,
    image_folder,
    predict,
    quantize_training_free,
    skimage_photos,
    views,
)
from dynabit.quant.baselines import method_config
from dynabit.utils.files import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "efficientnet.json"
UNIFORM_BITS = (4, 5, 6, 8)
BUDGETS = (4.5, 5.0, 6.0)
DYNAMIC = ("dynabit", "dynabit-midpoint", "dynabit-dual", "dynabit-midpoint-dual")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", default=None, help="image folder (default: scikit-image photos)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    raw = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(raw)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # calibration subsamples the activations it observes
    t0 = time.time()
    photos = image_folder(args.images) if args.images else skimage_photos()
    norm = {"mean": INPUT_MEAN, "std": INPUT_STD}
    calib = torch.cat([views(p, ten_crop=False, **norm) for p in photos])
    images = torch.cat([views(p, **norm) for p in photos])
    model = load_lite0()
    ref = predict(model, images)
    hw = HardwareConfig(rows=16, cols=16, dataflow="os")
    rows, hardware = [], {}
    runs = [("uniform", float(b)) for b in UNIFORM_BITS] + [
        (m, b) for m in DYNAMIC for b in BUDGETS
    ]
    for method, budget in runs:
        cfg = method_config(method, budget, hardware=hw.model_dump())
        qmodel = quantize_training_free(model, cfg, calib)
        res = evaluate_ptq(qmodel, images, ref)
        rows.append({"method": method, "budget": budget, **res})
        print(json.dumps(rows[-1]), f"{time.time() - t0:.0f}s", flush=True)
        if method != "uniform":
            shapes, masks = trace_model(qmodel, calib, hw)
            cmp = compare(shapes, masks, hw)
            hardware[f"{method}@{budget:g}"] = {
                "speedup_vs_uniform8": cmp.speedup("uniform"),
                "ideal_speedup": cmp.ideal(),
                "energy_saving_vs_uniform8": cmp.energy_saving("uniform"),
            }
    result = {
        "rows": rows,
        "images": int(images.shape[0]),
        "photos": len(photos),
        "calibration_images": int(calib.shape[0]),
        "source": args.images or "skimage.data",
        "hardware": hardware,
        "array": "16x16 os, 224x224 input, masks of the calibration images",
        "seconds": round(time.time() - t0, 1),
        "command": shlex.join(["python", "benchmarks/efficientnet.py", *raw]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(
            f"{r['method']:>17} {r['budget']:4g}  top1 {r['top1_agreement']:.3f}  "
            f"top5 {r['top5_agreement']:.3f}  KL {r['kl']:.4f}  B_avg {r['b_avg']:.3f}"
        )
    print(json.dumps(hardware, indent=1))
    return result


if __name__ == "__main__":
    main()
