"""Core benchmark: FP32 training, then QAT fine-tuning of a dynamic small CNN on Fashion-MNIST.

8-bit weights, 8-bit activations split 4 + 4, bit budget ``B_target = 5`` (``r* = 0.25``),
decision units from the default 16 x 16 PE array (blocks of 16 output channels, 4 x 4 pixel
groups). Prints the QAT model's top-1 and measured ``B_avg`` on the test split and writes
``benchmarks/results/core.json``.

    python benchmarks/core.py [--fp32-epochs 12] [--qat-epochs 5] [--threads 1] [--resume]

The run directory (default ``runs/bench-core``) is an ordinary two-stage dynabit run, so
``dynabit eval runs/bench-core`` reports the same figures and ``--resume`` continues a run
that was interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import torch

from dynabit.config.run import RunConfig, validate_run
from dynabit.train import evaluate_checkpoint, run_training
from dynabit.utils.files import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "core.json"
TARGET_TOP1 = 90.0


def benchmark_config(args: argparse.Namespace) -> RunConfig:
    """The two-stage run: ``pretrain`` (FP32) then ``train`` (QAT from it)."""
    return validate_run(
        {
            "train": {
                "dataset": "fashion-mnist",
                "data_dir": args.data_dir,
                "model": "small_cnn",
                "width": args.width,
                "epochs": args.qat_epochs,
                "batch_size": args.batch_size,
                "optimizer": "sgd",
                "lr": args.qat_lr,
                "threshold_lr": args.threshold_lr,
                "momentum": 0.9,
                "weight_decay": 5e-4,
                "schedule": "cosine",
                "quantize": True,
                "calib_batches": 8,
                "seed": args.seed,
                "train_subset": args.subset,
                "test_subset": args.subset,
                "checkpoint_every": 200,
                "progress": not args.no_progress,
            },
            "pretrain": {"epochs": args.fp32_epochs, "lr": args.fp32_lr},
            "quant": {
                "bits": 8,
                "hi_bits": 4,
                "weight_bits": 8,
                "budget": 5.0,
                "score": "max",
                "decision": "output",
            },
        },
        "benchmark config",
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32-epochs", type=int, default=12)
    ap.add_argument("--qat-epochs", type=int, default=5)
    ap.add_argument("--fp32-lr", type=float, default=0.05)
    ap.add_argument("--qat-lr", type=float, default=0.005)
    ap.add_argument("--threshold-lr", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subset", type=int, default=None, help="First N samples (smoke runs).")
    ap.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX directory.")
    ap.add_argument("--run-dir", default="runs/bench-core")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's).")
    ap.add_argument("--resume", action="store_true", help="Continue an interrupted run.")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # one line per epoch
    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join(
        ["python", "benchmarks/core.py", *(sys.argv[1:] if argv is None else argv)]
    )

    start = time.time()
    stages = run_training(benchmark_config(args), args.run_dir, resume=args.resume)
    final = evaluate_checkpoint(args.run_dir)  # reload from disk: what a user gets
    result = {
        "top1": final["top1"],
        "b_avg": final["b_avg_macs"],
        "b_avg_elements": final["b_avg_elements"],
        "refine_ratio": final["refine_ratio"],
        "b_target": 5.0,
        "fp32_top1": stages["fp32"].top1,
        "target_top1": TARGET_TOP1,
        "meets_target": final["top1"] >= TARGET_TOP1 and final["b_avg_macs"] <= 5.0 + 1e-6,
        "test_samples": final["samples"],
        "layers": {
            name: {"ratio_macs": s["ratio_macs"], "b_avg": s["b_avg"], "bounds": s["bounds"]}
            for name, s in final["layers"].items()
        },
        "fp32_epochs": args.fp32_epochs,
        "qat_epochs": args.qat_epochs,
        "threads": torch.get_num_threads(),
        "wall_seconds": round(time.time() - start, 1),
        "run_dir": args.run_dir,
        "command": command,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(
        f"FP32 top-1 {result['fp32_top1']:.2f} %  |  dynamic (W8, A8 = 4+4, B_target 5): "
        f"top-1 {result['top1']:.2f} %, B_avg {result['b_avg']:.3f} bits (MAC-weighted), "
        f"{result['b_avg_elements']:.3f} (element-weighted)  ->  {args.out}"
    )
    return result


if __name__ == "__main__":
    main()
