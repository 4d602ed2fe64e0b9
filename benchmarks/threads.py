"""Thread-count benchmark: a QAT step at 1 and 2 torch threads, alone and beside a busy process.

    python benchmarks/threads.py [--repeats 5] [--steps 3]

Times the dynabit training step of ``benchmarks/train_speed.py`` (small CNN, batch 128 at
28 x 28) with 1 and 2 threads, first as it is, then while a ``while True: pass`` process that
this script starts (and stops) competes for the cores. The thread counts alternate inside each
repeat; ``step_ms`` is the median. Writes ``benchmarks/results/threads.json``; the default
thread count (``dynabit.utils.threads``) is chosen from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_speed import CLASSES, IMAGE_SIZE, build, train_step  # noqa: E402

from dynabit.utils.files import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "threads.json"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--arch", default="small_cnn")
    ap.add_argument("--method", default="dynabit")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 1, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    y = torch.randint(0, CLASSES, (128,), generator=gen)
    step = train_step(build(args.arch, args.method, x), args.method != "fp32")
    step(x, y)
    rows = []
    for busy in (False, True):
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        times: dict[int, list[float]] = {1: [], 2: []}
        try:
            for _ in range(args.repeats):
                for threads in times:
                    torch.set_num_threads(threads)
                    t0 = time.perf_counter()
                    for _ in range(args.steps):
                        step(x, y)
                    times[threads].append((time.perf_counter() - t0) / args.steps * 1e3)
        finally:
            if spinner is not None:
                spinner.kill()
                spinner.wait()
        for threads, ts in times.items():
            ms = round(statistics.median(ts), 1)
            rows.append({"threads": threads, "busy_process": busy, "step_ms": ms})
            print(f"busy process {busy!s:5s} threads {threads}: {rows[-1]['step_ms']:8.1f} ms")
    result = {
        "rows": rows,
        "arch": args.arch,
        "method": args.method,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "command": shlex.join(["python", "benchmarks/threads.py", *(argv or sys.argv[1:])]),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
