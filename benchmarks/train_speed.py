"""Training-speed benchmark: one QAT step of each method against one FP32 step.

    python benchmarks/train_speed.py [--threads 1] [--repeats 3] [--steps 1] [--eval]
                                     [--clock wall|cpu]

For the small CNN, ResNet-20 and MobileNetV2 at 28 x 28 with batch 128, it times a training
step (forward, task loss plus the budget penalty, backward, SGD step) of FP32 and of the
methods ``uniform`` (W8A8 fake quantization), ``dynabit``, ``pg`` and ``drq``. Each repeat
runs every (architecture, method) pair in turn, so a change of load on a shared machine falls on
every method alike; a pair's ``step_ms`` is the median over repeats of its mean step time, and
``ratio_vs_fp32`` divides it by the FP32 median of the same architecture. Writes
``benchmarks/results/train_speed.json``; with ``--eval`` it also times evaluation-mode
forward passes (under ``torch.no_grad``), in rows whose method ends in ``/eval``.

``--clock cpu`` times each step by this process's CPU time instead of the wall clock: on a
machine that other jobs share, the wall clock also counts the time the step waited for a core,
the CPU time (with one thread) only the step's own work. The file records the clock used.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dynabit.models import build_model
from dynabit.quant import budget_penalty, calibrate, prepare
from dynabit.quant.baselines import method_config
from dynabit.utils.files import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "train_speed.json"
ARCHS = ("small_cnn", "resnet20", "mobilenet_v2")
METHODS = ("fp32", "uniform", "dynabit", "pg", "drq")
IMAGE_SIZE, CLASSES = 28, 10
CALIB_IMAGES = 16
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def build(arch: str, method: str, images: torch.Tensor) -> nn.Module:
    """The model of ``arch`` in training mode: plain for ``fp32``, else prepared and calibrated."""
    torch.manual_seed(0)
    model = build_model(arch, in_channels=1, num_classes=CLASSES, image_size=IMAGE_SIZE)
    if method == "fp32":
        return model.train()
    budget = 8.0 if method == "uniform" else 5.0
    qmodel = prepare(model, method_config(method, budget))
    # A few images suffice: the thresholds' values do not change the work of a step, and
    # threshold calibration runs the network once per dynamic layer.
    calibrate(qmodel, [images[:CALIB_IMAGES]])
    return qmodel.train()


def train_step(model: nn.Module, quantized: bool) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One SGD step on cross-entropy (plus the budget penalty when quantized)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x), y)
        if quantized:
            loss = loss + budget_penalty(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def eval_step(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One evaluation-mode forward pass without gradients."""

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad():
            model(x)

    return step


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned).")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds (median taken).")
    ap.add_argument("--steps", type=int, default=1, help="timed steps per pair per round.")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--eval", action="store_true", help="also time eval-mode forward passes.")
    ap.add_argument(
        "--clock",
        choices=CLOCKS,
        default="wall",
        help="wall: elapsed time; cpu: this process's CPU time (all its threads).",
    )
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if "fp32" not in args.methods:
        ap.error("--methods must include fp32 (the ratios are against it)")
    torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}", flush=True)

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 1, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    y = torch.randint(0, CLASSES, (args.batch_size,), generator=gen)
    steps: dict[tuple[str, str], Callable[[torch.Tensor, torch.Tensor], None]] = {}
    for arch in args.archs:
        for method in args.methods:
            model = build(arch, method, x)
            print(f"built {arch} {method}", flush=True)
            steps[(arch, method)] = train_step(model, method != "fp32")
            if args.eval:
                steps[(arch, f"{method}/eval")] = eval_step(copy.deepcopy(model).eval())
    for step in steps.values():  # warm-up: allocator, first-call costs
        step(x, y)

    clock = CLOCKS[args.clock]
    times: dict[tuple[str, str], list[float]] = {k: [] for k in steps}
    for r in range(args.repeats):
        for key, step in steps.items():
            t0 = clock()
            for _ in range(args.steps):
                step(x, y)
            times[key].append((clock() - t0) / args.steps * 1e3)
        print(f"round {r + 1}/{args.repeats} done", flush=True)

    rows = []
    for (arch, method), ts in times.items():
        ms = statistics.median(ts)
        base_key = "fp32/eval" if method.endswith("/eval") else "fp32"
        base = statistics.median(times[(arch, base_key)])
        rows.append(
            {
                "arch": arch,
                "method": method,
                "step_ms": round(ms, 2),
                "ratio_vs_fp32": round(ms / base, 3),
            }
        )
        print(f"{arch:14s} {method:14s} {ms:9.2f} ms  {ms / base:5.2f}x", flush=True)
    result = {
        "rows": rows,
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "image_size": IMAGE_SIZE,
        "repeats": args.repeats,
        "steps_per_repeat": args.steps,
        "clock": args.clock,
        "command": shlex.join(["python", "benchmarks/train_speed.py", *sys.argv[1:]])
        if argv is None
        else shlex.join(["python", "benchmarks/train_speed.py", *argv]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
