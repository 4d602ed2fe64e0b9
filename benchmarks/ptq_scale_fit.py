"""Where a dual-precision model starts: post-training accuracy of each gating method with the
activation scale fitted to the 8-bit codes (``full``) or to the dual-precision error (``dual``),
with and without the mid-point offset, against uniform quantization.

No training: each method is prepared from a trained FP32 model and calibrated on 512 training
images, then evaluated on the first ``--test`` test images. The FP32 models are the frontier
benchmark's (``runs/frontier/<arch>/fp32``; ``python benchmarks/frontier.py`` trains them first),
or any FP32 run directories given with ``--run ARCH=DIR``. Writes
``benchmarks/results/ptq_scale_fit.json``.

    python benchmarks/ptq_scale_fit.py [--test 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from dynabit.data import load_dataset
from dynabit.quant import calibrate, prepare
from dynabit.quant.baselines import method_config
from dynabit.train import evaluate, load_model
from dynabit.utils.files import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "ptq_scale_fit.json"
BUDGETS = (4.5, 5.0)
GATING = ("dynabit", "pg", "drq")
SWITCHES = ("", "-dual", "-midpoint", "-midpoint-dual")
CALIB_IMAGES = 512


def main(argv: list[str] | None = None) -> dict:
    raw = sys.argv[1:] if argv is None else list(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", type=int, default=2000, help="first N test images")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run", action="append", default=[], help="ARCH=FP32_RUN_DIR (repeatable)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(raw)
    torch.set_num_threads(args.threads)
    runs = dict(r.split("=", 1) for r in args.run) or {
        a: f"runs/frontier/{a}/fp32" for a in ("small_cnn", "resnet20")
    }
    t0 = time.time()
    rows = []
    for arch, run_dir in runs.items():
        fp32, cfg, _ = load_model(run_dir)
        if cfg.train.quantize:
            raise SystemExit(f"{run_dir}: not an FP32 run")
        t = cfg.train
        train = load_dataset(t.dataset, "train", t.data_dir)
        test = load_dataset(t.dataset, "test", t.data_dir, args.test)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
        batches = [train.images[i] for i in order[:CALIB_IMAGES].split(128)]
        specs = [("fp32", 32.0), ("uniform", 4.0), ("uniform", 5.0)] + [
            (m + s, b) for b in BUDGETS for m in GATING for s in SWITCHES
        ]
        for method, budget in specs:
            torch.manual_seed(0)  # calibration subsamples what it observes
            model = fp32
            if method != "fp32":
                model = prepare(copy.deepcopy(fp32), method_config(method, budget))
                calibrate(model, batches)
            res = evaluate(model, test, batch_size=500)
            rows.append(
                {
                    "arch": arch,
                    "method": method,
                    "budget": budget,
                    "top1": res.top1,
                    "loss": res.loss,
                    "b_avg": 32.0 if method == "fp32" else res.b_avg_macs,
                }
            )
            r = rows[-1]
            print(
                f"{arch:>9} {method:>20} {budget:4g}  top-1 {r['top1']:6.2f}  "
                f"loss {r['loss']:.3f}  B_avg {r['b_avg']:.3f}",
                flush=True,
            )
    result = {
        "rows": rows,
        "test_images": args.test,
        "calibration_images": CALIB_IMAGES,
        "fp32_runs": runs,
        "seconds": round(time.time() - t0, 1),
        "command": shlex.join(["python", "benchmarks/ptq_scale_fit.py", *raw]),
    }
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
