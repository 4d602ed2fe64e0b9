"""Iso-area benchmark: dual, INT8, INT4 and bit-serial arrays of N-lane dot-product PEs.

    python benchmarks/iso_area.py [--quick] [--lanes 8] [--samples 4] [--images 256] [--out F]

Every design has the same organisation (``R x C`` output-stationary array of ``N``-lane PEs, one
accumulator each) and the same buffers; the bit-serial design runs at the 5-bit budget (A5,
``5/8`` of A8's steps), the dual design at its masks (4 bits + 4 more where refined).

1. RTL: every dynamic layer of a small CNN trained here on scikit-learn's digits, and a random
   3-channel 3x3 first layer (``K = 27``, a partial last step), on 4x4 tiles of each design:
   bit-exact against the golden model (dual: and the integer engine), cycle-exact against
   the closed form and the cycle model with ``lanes = N``.
2. Area from the PE area table (``dynabit/configs/pe_area.json``): per PE, the PE array, the
   core (+ drain capture registers and the dual decision logic) and the tile (+ equal buffers).
3. ResNet-18 at 224x224 on a 32x32 array, synthetic block masks at refine ratio 0.25.
4. The Fashion-MNIST small CNN trained here as ``dynabit train`` does it: FP32 epochs, then QAT
   of the default method at the 5-bit budget on the 32x32 array (a training subset, to stay
   cheap); the real masks its test images produce, and its top-1.
5. Break-even refine ratio against INT8: ResNet-18 masks on a grid of ratios.

Throughput per area is inferences per cycle per transistor, in compute cycles (what the RTL is
verified against) unless ``with_stalls``; ratios are against baselines measured in the same
run. Writes ``benchmarks/results/iso_area.json``.
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

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware import network_shapes, synthetic_masks
from dynabit.hardware.iso_area import (
    GRID,
    LEVELS,
    Design,
    area,
    break_even_grid,
    energy_ratios,
    load_area_table,
    ratios,
    run_design,
)
from dynabit.hardware.masks import mask_ratio
from dynabit.utils.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "iso_area.json"
BUDGET_BITS = 5


def designs(lanes: int) -> list[Design]:
    """The compared designs: dual, INT8, INT4 and bit-serial (1 bit per step) at A5."""
    return [
        Design("dual", lanes),
        Design("int8", lanes),
        Design("int4", lanes),
        Design("bitserial", lanes, 1, BUDGET_BITS),
    ]


# ---------------------------------------------------------------------- 1. RTL
def rtl_checks(lanes: int, quick: bool) -> dict[str, Any]:
    """Every design's lane tile on trained and random layers: bit- and cycle-exact?"""
    from dynabit.rtl import engine_jobs, frozen_reference, verify_lanes
    from dynabit.rtl.params import TileParams
    from dynabit.rtl.testing import random_job, train_small_cnn

    model, test, top1 = train_small_cnn(steps=150, rows=4, cols=4)
    x = test.images[:1]
    jobs = [
        (job, [ref, frozen_reference(model, job.name, x)]) for job, ref in engine_jobs(model, x)
    ]
    if quick:
        jobs = jobs[:1]
    first = random_job(np.random.default_rng(0), TileParams(4, 4), k=27, out_hw=(4, 4), c_out=8)
    first.conv = {"in_channels": 3, "kernel": (3, 3), "in_hw": (4, 4), "padding": (1, 1)}
    first.name = "random_first_layer_3ch"
    jobs.append((first, []))
    rows, bit_exact, cycle_exact = [], True, True
    for job, refs in jobs:
        for d in ("dual", "int8", "int4", "bitserial"):
            t0 = time.perf_counter()
            run = verify_lanes(job, d, lanes, references=refs if d == "dual" else ())
            ok_bits = run.bit_exact and run.decisions_exact
            bit_exact &= ok_bits
            cycle_exact &= run.cycle_exact
            rows.append(
                {
                    "layer": job.name,
                    "K": job.k,
                    "tile": run.tile,
                    "bit_exact": ok_bits,
                    "cycle_exact": run.cycle_exact,
                    "cycles_rtl": run.cycles_rtl,
                    "cycles_model": run.cycles_model,
                    "refined_tiles": f"{run.refined_tiles}/{run.tiles}",
                    "seconds": round(time.perf_counter() - t0, 2),
                }
            )
            print(
                f"  {job.name:26s} K={job.k:3d} {run.tile:28s} bit-exact {ok_bits!s:5s} "
                f"cycle-exact {run.cycle_exact!s:5s} cycles {run.cycles_rtl}"
            )
    refs = "golden model; dual also the integer engine and the frozen layer"
    return {
        "bit_exact": bit_exact,
        "cycle_exact": cycle_exact,
        "small_cnn_top1": round(top1, 2),
        "references": refs,
        "layers": rows,
    }


# ---------------------------------------------------------------------- 3./4. workloads
def compare_workload(shapes: list, masks: dict, hw: HardwareConfig, lanes: int) -> dict[str, Any]:
    """Every design on one workload; ratios against INT8, INT4 and bit-serial of this run."""
    table = load_area_table()
    runs = {d.name: run_design(d, shapes, masks, hw, table) for d in designs(lanes)}
    out: dict[str, Any] = {"designs": {k: r.to_dict() for k, r in runs.items()}}
    for base in ("int8", "int4", "bitserial"):
        for level in LEVELS:
            out[f"per_area_vs_{base}_{level}"] = ratios(runs, base, level)
            out[f"per_area_vs_{base}_{level}_with_stalls"] = ratios(runs, base, level, True)
        out[f"energy_vs_{base}"] = energy_ratios(runs, base)
    out["refine_ratio"] = mask_ratio(shapes, masks)
    return out


def print_workload(name: str, res: dict[str, Any]) -> None:
    """One table: cycles, energy and per-area ratios of every design."""
    print(f"\n  {name} (refine ratio {res['refine_ratio']:.3f})")
    head = "design", "compute cyc", "with stalls", "energy uJ", "core/INT8", "tile/INT8", "E/INT8"
    print("  " + " | ".join(f"{h:>11s}" for h in head))
    for d, r in res["designs"].items():
        vals = [
            f"{r['compute_cycles']:.0f}",
            f"{r['cycles']:.0f}",
            f"{r['energy_uj']:.1f}",
            f"{res['per_area_vs_int8_core'][d]:.3f}",
            f"{res['per_area_vs_int8_tile'][d]:.3f}",
            f"{res['energy_vs_int8'][d]:.3f}",
        ]
        print("  " + " | ".join(f"{v:>11s}" for v in [d, *vals]))


def fashion_mnist(
    hw: HardwareConfig, fp32_epochs: int, qat_epochs: int, subset: int | None, images: int
) -> tuple[list, dict, str] | None:
    """Shapes and real masks of a Fashion-MNIST small CNN trained as ``dynabit train`` does it
    (FP32 pre-training, then QAT of the default method at the 5-bit budget on ``hw``'s array),
    on ``subset`` training images, and its top-1 on the whole test set."""
    import tempfile

    import torch

    from dynabit.config.run import validate_run
    from dynabit.data import DatasetError, dataset_info, load_dataset
    from dynabit.hardware.trace import trace_model
    from dynabit.train import load_model, run_training

    try:
        dataset_info("fashion-mnist", None)
    except DatasetError as e:  # the data set is optional here; say why it was skipped
        print(f"  skipped: {e}")
        return None
    cfg = validate_run(
        {
            "train": {
                "dataset": "fashion-mnist",
                "model": "small_cnn",
                "epochs": qat_epochs,
                "lr": 0.005,
                "threshold_lr": 0.01,
                "schedule": "cosine",
                "quantize": True,
                "calib_batches": 8,
                "seed": 0,
                "train_subset": subset,
                "progress": False,
            },
            "pretrain": {"epochs": fp32_epochs, "lr": 0.05},
            "quant": {
                "bits": 8,
                "hi_bits": 4,
                "budget": float(BUDGET_BITS),
                "hardware": hw.model_dump(),
            },
        },
        "iso-area Fashion-MNIST run",
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as run:
        res = run_training(cfg, Path(run))
        model, _, _ = load_model(res["qat"].run_dir)
    test = load_dataset("fashion-mnist", "test", subset=images)
    with torch.no_grad():
        shapes, masks = trace_model(model, test.images, hw)
    fp32, qat = res["fp32"].top1, res["qat"].top1
    how = (
        f"small_cnn, {fp32_epochs} FP32 epochs then {qat_epochs} QAT epoch(s) of the default "
        f"method at budget {BUDGET_BITS} bits on {subset or 'all'} training images "
        f"({time.perf_counter() - t0:.0f} s); top-1 on the 10000 test images: FP32 {fp32:.2f}%, "
        f"QAT {qat:.2f}%, B_avg {res['qat'].b_avg_macs:.3f}; masks of the first {images} "
        "test images"
    )
    return shapes, masks, how


# ---------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one trained layer, 1 sample, short run")
    ap.add_argument("--lanes", type=int, default=8, help="lanes N per PE (an area-table row)")
    ap.add_argument("--samples", type=int, default=4, help="synthetic ResNet-18 mask samples")
    ap.add_argument("--images", type=int, default=256, help="Fashion-MNIST test images")
    ap.add_argument("--fp32-epochs", type=int, default=2, help="Fashion-MNIST FP32 epochs")
    ap.add_argument("--qat-epochs", type=int, default=1, help="Fashion-MNIST QAT epochs")
    ap.add_argument("--train-subset", type=int, default=16384, help="Fashion-MNIST training images")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    lanes = args.lanes
    samples = 1 if args.quick else args.samples
    hw = HardwareConfig(rows=32, cols=32, dataflow="os", lanes=lanes)
    table = load_area_table()
    t_start = time.perf_counter()

    print(f"1. RTL: lane tiles (4x4, {lanes} lanes) on trained and random layers")
    rtl = rtl_checks(lanes, args.quick)

    print(f"\n2. area ({lanes} lanes, 32x32, transistors; {table['command']})")
    areas = {d.name: area(d, hw, table) for d in designs(lanes)}
    for name, a in areas.items():
        print(
            f"  {name:10s} PE {a['pe']:7d} (cells {a['pe_cells']:5d})  array {a['array']:10d}  "
            f"core {a['core']:10d}  tile {a['tile']:10d}"
        )

    print(f"\n3. ResNet-18 224x224, 32x32 OS, synthetic masks r=0.25, {samples} sample(s)")
    shapes = network_shapes("resnet18", hw=hw, group="fit")
    masks = synthetic_masks(shapes, 0.25, samples=samples, seed=0)
    r18 = compare_workload(shapes, masks, hw, lanes)
    print_workload("resnet18_r0.25", r18)

    print("\n4. Fashion-MNIST small CNN, real masks")
    fm = fashion_mnist(
        hw,
        args.fp32_epochs,
        args.qat_epochs,
        2048 if args.quick else args.train_subset,
        64 if args.quick else args.images,
    )
    workloads = {"resnet18_r0.25": r18}
    fm_how = None
    if fm is not None:
        fm_shapes, fm_masks, fm_how = fm
        print(f"  {fm_how}")
        workloads["fashion_mnist_real_masks"] = compare_workload(fm_shapes, fm_masks, hw, lanes)
        print_workload("fashion_mnist_real_masks", workloads["fashion_mnist_real_masks"])

    print("\n5. break-even refine ratio against INT8 (ResNet-18, dual per area / INT8 per area)")
    grid = break_even_grid(shapes, hw, GRID, table)
    adv, even = grid["dual_per_area_over_int8"], grid["break_even"]
    for i, r in enumerate(GRID):
        print(f"  r={r:.3f}  " + "  ".join(f"{lvl} {adv[lvl][i]:.3f}" for lvl in LEVELS))
    print("  break-even: " + ", ".join(f"{k} {v}" for k, v in even.items()))

    def pick(key: str) -> dict[str, dict[str, float]]:
        return {w: {d: round(v, 4) for d, v in res[key].items()} for w, res in workloads.items()}

    command = shlex.join(
        [Path(sys.executable).name, "benchmarks/iso_area.py", *(argv or sys.argv[1:])]
    )
    pe = {d.name: pe for d, pe in zip(designs(lanes), areas.values(), strict=True)}
    result = {
        "lanes": lanes,
        "array": f"{hw.rows}x{hw.cols}",
        "budget_bits": BUDGET_BITS,
        "transistors": {k: a["pe"] for k, a in pe.items()},
        "cells": {k: a["pe_cells"] for k, a in pe.items()},
        "area_transistors": areas,
        "area_table_command": table["command"],
        "area_levels": "array: R*C PEs; core: + drain capture registers + dual decision logic; "
        "tile: + the buffers (equal across designs, 6T SRAM bits)",
        "throughput_per_area_vs_int8": {
            w: round(res["per_area_vs_int8_core"]["dual"], 4) for w, res in workloads.items()
        },
        "throughput_per_area_vs_int4": {
            w: round(res["per_area_vs_int4_core"]["dual"], 4) for w, res in workloads.items()
        },
        "throughput_per_area_vs_bitserial": {
            w: round(res["per_area_vs_bitserial_core"]["dual"], 4) for w, res in workloads.items()
        },
        "energy_per_inference_vs_int8": {
            w: round(res["energy_vs_int8"]["dual"], 4) for w, res in workloads.items()
        },
        "per_area_vs_int8_core": pick("per_area_vs_int8_core"),
        "per_area_vs_int8_array": pick("per_area_vs_int8_array"),
        "per_area_vs_int8_tile": pick("per_area_vs_int8_tile"),
        "per_area_vs_int8_core_with_stalls": pick("per_area_vs_int8_core_with_stalls"),
        "per_area_vs_int4_core": pick("per_area_vs_int4_core"),
        "energy_vs_int8": pick("energy_vs_int8"),
        "refine_ratio": {w: round(res["refine_ratio"], 4) for w, res in workloads.items()},
        "workloads": workloads,
        "fashion_mnist": fm_how,
        "break_even_ratio_vs_int8": even["core"],
        "break_even_ratio_vs_int8_by_level": even,
        "break_even_grid": {"ratios": list(GRID), "dual_per_area_over_int8": adv},
        "bit_exact": rtl["bit_exact"],
        "cycle_exact": rtl["cycle_exact"],
        "rtl": rtl,
        "seconds": round(time.perf_counter() - t_start, 1),
        "command": command,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    keys = (
        "throughput_per_area_vs_int8",
        "throughput_per_area_vs_int4",
        "energy_per_inference_vs_int8",
    )
    print(f"\nwrote {args.out}")
    for k in (*keys, "break_even_ratio_vs_int8", "bit_exact", "cycle_exact"):
        print(f"  {k}: {result[k]}")
    return 0 if rtl["bit_exact"] and rtl["cycle_exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
