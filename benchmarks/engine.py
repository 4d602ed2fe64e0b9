"""Integer engine benchmark: bit-exact parity on Fashion-MNIST, and the time saved by skipping.

    python benchmarks/engine.py [--run-dir DIR] [--timing-samples 1024] [--no-onnx]

1. The model: the trained dynamic small CNN of ``runs/bench-core`` (``benchmarks/core.py``)
   when that run has finished its QAT stage, else a short two-stage run trained here into
   ``runs/bench-engine`` (``--fp32-epochs``, ``--qat-epochs``). It is converted and lowered to an
   integer program.
2. Parity on the whole test split: every layer's input codes and accumulators, every group
   decision and the integer logits of the engine against the frozen PyTorch model (eval mode);
   ``mismatches`` counts the elements that differ (0 = bit-exact); top-1 of both.
3. ONNX (unless ``--no-onnx``): the exported graph run by onnxruntime on the test split
   against the engine (same top-1, integer logits and masks equal).
4. Timing: the same program with each dynamic layer refining exactly ``r`` of its groups per
   block and sample (``r`` = 0, 0.25, 0.5, 1), on ``--timing-samples`` test images; engine CPU
   time on one thread (best of ``--repeats``), as a ratio to ``r = 1``. The low pass of the
   unrefined groups is not executed, so time falls with ``r``.

Writes ``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from dynabit.config.run import validate_run
from dynabit.data import load_dataset
from dynabit.engine import Executor, check_parity, evaluate_program, lower, with_refine_ratio
from dynabit.quant import convert
from dynabit.train import load_model, run_training
from dynabit.utils.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "engine.json"
CORE_RUN = "runs/bench-core"
RATIOS = (0.0, 0.25, 0.5, 1.0)


def _finished(run_dir: Path) -> bool:
    return (run_dir / "qat" / "summary.json").is_file() or (
        (run_dir / "summary.json").is_file() and (run_dir / "checkpoints").is_dir()
    )


def ensure_model(args: argparse.Namespace) -> Path:
    """A trained quantized small CNN on Fashion-MNIST: the core run, or a short one here."""
    if args.run_dir is not None:
        return Path(args.run_dir)
    core = ROOT / CORE_RUN
    if _finished(core):
        return core
    run = ROOT / "runs" / "bench-engine"
    if not _finished(run):
        cfg = validate_run(
            {
                "train": {
                    "dataset": "fashion-mnist",
                    "model": "small_cnn",
                    "epochs": args.qat_epochs,
                    "lr": 0.005,
                    "threshold_lr": 0.01,
                    "quantize": True,
                    "calib_batches": 8,
                    "progress": False,
                },
                "pretrain": {"epochs": args.fp32_epochs, "lr": 0.05},
                "quant": {"bits": 8, "hi_bits": 4, "budget": 5.0},
            },
            "engine benchmark config",
        )
        print(f"training {run} ({args.fp32_epochs} FP32 + {args.qat_epochs} QAT epochs)")
        run_training(cfg, run, resume=(run / "config.yaml").is_file())
    return run


def timing(program, images: torch.Tensor, repeats: int, batch: int) -> dict[str, float]:
    """Engine CPU seconds (one thread, best of ``repeats``) at each refine ratio."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        execs = {r: Executor(with_refine_ratio(program, r)) for r in RATIOS}
        for ex in execs.values():
            ex(images[:8])  # warm-up
        best = dict.fromkeys(RATIOS, float("inf"))
        for _ in range(repeats):
            for r, ex in execs.items():
                t0 = time.process_time()
                for start in range(0, images.shape[0], batch):
                    ex(images[start : start + batch])
                best[r] = min(best[r], time.process_time() - t0)
    finally:
        torch.set_num_threads(threads)
    return best


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default=None, help="Trained QAT run (default: see above).")
    ap.add_argument("--fp32-epochs", type=int, default=2)
    ap.add_argument("--qat-epochs", type=int, default=1)
    ap.add_argument("--subset", type=int, default=None, help="First N test samples (smoke).")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--timing-samples", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-onnx", action="store_true", help="Skip the onnxruntime check.")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    command = shlex.join(
        ["python", "benchmarks/engine.py", *(sys.argv[1:] if argv is None else argv)]
    )

    run = ensure_model(args)
    model, cfg, ck = load_model(run)
    fm = convert(model, strict=True)
    test = load_dataset(cfg.train.dataset, "test", cfg.train.data_dir, args.subset)
    program = lower(fm, tuple(test.images.shape[1:]))
    print(f"model       {ck} ({len(program.dynamic_ops())} dynamic layers)")

    t0 = time.time()
    rep = check_parity(fm, test.images, test.labels, program, args.batch_size)
    par = {
        "samples": rep.samples,
        "mismatches": rep.mismatches + rep.logits_mismatches,
        "engine_top1": rep.engine_top1,
        "model_top1": rep.model_top1,
    }
    print(
        f"parity      {par['samples']} test images, {par['mismatches']} mismatching elements "
        f"(codes, accumulators, masks of every layer, logits); top-1 engine "
        f"{par['engine_top1']:.2f} % "
        f"model {par['model_top1']:.2f} % ({time.time() - t0:.0f} s)"
    )
    with torch.no_grad():
        float_correct = sum(
            int((model(test.images[i : i + 1000]).argmax(1) == test.labels[i : i + 1000]).sum())
            for i in range(0, test.images.shape[0], 1000)
        )
    print(
        f"float       fake-quantized (QAT eval) model top-1 "
        f"{100.0 * float_correct / test.images.shape[0]:.2f} %"
    )
    ev = evaluate_program(program, test.images, test.labels, args.batch_size)
    print(
        f"budget      B_avg {ev.budget['b_avg_macs']:.3f} bits (MAC-weighted), "
        f"{ev.budget['b_avg_elements']:.3f} (element-weighted), refine ratio "
        f"{ev.budget['refine_ratio']:.3f}"
    )
    if not args.no_onnx:
        from dynabit.export import check_onnx, program_to_onnx

        t0 = time.time()
        chk = check_onnx(
            program_to_onnx(program).SerializeToString(), program, test.images, test.labels
        )
        print(
            f"onnx        onnxruntime top-1 {chk.onnx_top1:.2f} % vs engine "
            f"{chk.engine_top1:.2f} %; integer logits differing {chk.logits_int_mismatches}, "
            f"masks differing {chk.mask_mismatches}, max |diff| {chk.max_diff_steps:.2g} "
            f"steps -> {'OK' if chk.ok else 'MISMATCH'} ({time.time() - t0:.0f} s)"
        )

    seconds = timing(program, test.images[: args.timing_samples], args.repeats, 256)
    ratios = {f"{r:g}": round(seconds[r] / seconds[1.0], 4) for r in RATIOS}
    print(
        "timing      engine CPU seconds on "
        f"{min(args.timing_samples, test.images.shape[0])} images (1 thread): "
        + ", ".join(f"r={r:g}: {seconds[r]:.2f} s ({ratios[f'{r:g}']:.2f})" for r in RATIOS)
    )
    result = {**par, "time_ratio": ratios, "command": command}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"written     {args.out}")
    return result


if __name__ == "__main__":
    main()
