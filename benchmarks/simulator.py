"""Simulator benchmark: dense formulas, realized vs ideal speedup, per-element gating, speed.

    python benchmarks/simulator.py [--quick] [--samples 16] [--run runs/bench-core]

1. Dense mode against SCALE-Sim's closed form for every ResNet-18 (224x224) layer on 16x16,
   32x32 and 64x64 arrays in the OS, WS and IS dataflows.
2. ResNet-18 shapes (groups fitted to each map, blocks = array columns) with synthetic
   per-sample block masks at refine ratios 0.1, 0.25 and 0.5 on the three OS arrays (and the
   other dataflows on 32x32 at 0.25): our speedup over uniform 8-bit on the compute-bound
   layers, the ideal ``B / B_avg`` on the same layers, per-element gating and region gating
   at the same ratio, energy saving.
3. Speed: seconds per sample to simulate the whole ResNet-18 with per-sample masks.
4. The trained Fashion-MNIST model of ``--run`` (the core benchmark's run directory): its
   real masks on test images. A finished QAT stage is used as is; with only the FP32 stage
   the model is prepared and calibrated without training (the training-free path).

Writes ``benchmarks/results/simulator.json`` with the figures of the OS 32x32 array at ratio
0.25 (compute-bound layers).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from dynabit.config.hardware import HardwareConfig
from dynabit.hardware import compare, dense_formula, network_shapes, simulate, synthetic_masks
from dynabit.hardware.masks import mask_ratio
from dynabit.utils.files import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "simulator.json"
ARRAYS = (16, 32, 64)
RATIOS = (0.1, 0.25, 0.5)


def check_dense() -> bool:
    """Dense-mode cycles equal the closed form for every layer, array and dataflow."""
    ok = True
    for size in ARRAYS:
        for df in ("os", "ws", "is"):
            hw = HardwareConfig(rows=size, cols=size, dataflow=df)
            shapes = network_shapes("resnet18", hw=hw)
            got = simulate(shapes, None, hw, "dense").compute_cycles[:, 0]
            want = np.array([dense_formula(s, hw) for s in shapes])
            exact = bool((got == want).all())
            ok &= exact
            print(f"  dense {size}x{size} {df}: {len(shapes)} layers, exact={exact}")
    return ok


def sweep(samples: int) -> tuple[list[dict], dict]:
    """Ratios x arrays on ResNet-18 shapes; returns the rows and the 32x32 OS r=0.25 row."""
    rows, headline = [], {}
    cases = [(s, "os", r) for s in ARRAYS for r in RATIOS] + [(32, "ws", 0.25), (32, "is", 0.25)]
    for size, df, ratio in cases:
        hw = HardwareConfig(rows=size, cols=size, dataflow=df)
        shapes = network_shapes("resnet18", hw=hw, group="fit")
        masks = synthetic_masks(shapes, ratio, samples, seed=1)
        elem = synthetic_masks(shapes, ratio, samples, seed=2, kind="element")
        reg = synthetic_masks(shapes, ratio, samples, seed=3, kind="region")
        cmp = compare(shapes, masks, hw, element_masks=elem, region_masks=reg)
        h = cmp.headline()
        cb = cmp.compute_bound_layers()
        row = {
            "array": f"{size}x{size}",
            "dataflow": df,
            "ratio": ratio,
            "compute_bound": len(cb),
            "ideal": h.get("ideal_compute_bound", float("nan")),
            "ours": h.get("speedup_uniform_compute_bound", float("nan")),
            "fraction": h.get("realized_fraction_of_ideal", float("nan")),
            "element": h.get("element_speedup_compute_bound", float("nan")),
            "region": h.get("region_speedup_compute_bound", float("nan")),
            "network": h["speedup_vs_uniform"],
            "energy_saving": h["energy_saving_vs_uniform"],
        }
        rows.append(row)
        if (size, df, ratio) == (32, "os", 0.25):
            headline = row
    return rows, headline


def print_table(rows: list[dict], title: str) -> None:
    print(f"\n{title}")
    print(
        "| array | df | r | cb layers | ideal B/B_avg | ours | ours/ideal | per-element |"
        " region | network | energy saving |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['array']} | {r['dataflow']} | {r['ratio']:.2f} | {r['compute_bound']} |"
            f" {r['ideal']:.3f} | {r['ours']:.3f} | {r['fraction']:.3f} | {r['element']:.3f} |"
            f" {r['region']:.3f} | {r['network']:.3f} | {r['energy_saving']:+.1%} |"
        )


def measure_speed(samples: int, repeats: int) -> tuple[float, float]:
    """Seconds per sample: ``simulate`` of our masks, and the whole ``compare``."""
    hw = HardwareConfig(rows=32, cols=32, dataflow="os")
    shapes = network_shapes("resnet18", hw=hw, group="fit")
    masks = synthetic_masks(shapes, 0.25, samples, seed=7)
    elem = synthetic_masks(shapes, 0.25, samples, seed=8, kind="element")
    reg = synthetic_masks(shapes, 0.25, samples, seed=9, kind="region")
    best_sim = best_cmp = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        simulate(shapes, masks, hw, "dynamic")
        t1 = time.perf_counter()
        compare(shapes, masks, hw, element_masks=elem, region_masks=reg)
        t2 = time.perf_counter()
        best_sim, best_cmp = min(best_sim, t1 - t0), min(best_cmp, t2 - t1)
    return best_sim / samples, best_cmp / samples


def fashion_mnist(run: Path, images: int) -> list[dict] | None:
    """Real masks of the trained Fashion-MNIST model in ``run`` (None when unavailable)."""
    try:
        import torch

        from dynabit.data import load_dataset
        from dynabit.hardware.trace import trace_model
        from dynabit.train.evaluate import load_model
    except ImportError as e:
        print(f"  skipped: {e}")
        return None
    qat_done = (run / "qat" / "summary.json").is_file()
    fp32_dir = run / "fp32"
    try:
        if qat_done:
            model, cfg, path = load_model(run)
            how = f"QAT checkpoint {path}"
        elif (fp32_dir / "checkpoints").is_dir():
            from dynabit.quant import calibrate, prepare

            model, fcfg, path = load_model(fp32_dir)
            cfg = fcfg
            model = prepare(model, cfg.quant)
            train = load_dataset(cfg.train.dataset, "train", cfg.train.data_dir, subset=2048)
            calibrate(model, [train.images[i : i + 256] for i in range(0, 2048, 256)])
            how = f"FP32 checkpoint {path}, prepared and calibrated without training"
        else:
            print(f"  skipped: no finished run in {run}")
            return None
        test = load_dataset(cfg.train.dataset, "test", cfg.train.data_dir, subset=images)
        hw = cfg.quant.hardware
        with torch.no_grad():
            shapes, masks = trace_model(model, test.images, hw)
    except Exception as e:  # the training stack is optional here; report why it was skipped
        print(f"  skipped: {type(e).__name__}: {e}")
        return None
    print(f"  model: {how}; {images} test images")
    ratio = mask_ratio(shapes, masks)
    rows = []
    for df in ("os", "ws", "is"):
        hw_df = hw.model_copy(update={"dataflow": df})
        n = next(iter(masks.values())).shape[0]
        elem = synthetic_masks(shapes, ratio, n, seed=2, kind="element")
        reg = synthetic_masks(shapes, ratio, n, seed=3, kind="region")
        cmp = compare(shapes, masks, hw_df, element_masks=elem, region_masks=reg)
        h = cmp.headline()
        rows.append(
            {
                "array": f"{hw.rows}x{hw.cols}",
                "dataflow": df,
                "ratio": float(
                    np.mean([cmp.ours.refined[i].mean() for i, s in enumerate(shapes) if s.dynamic])
                ),
                "compute_bound": int(h["compute_bound_layers"]),
                "ideal": h.get("ideal_compute_bound", float("nan")),
                "ours": h.get("speedup_uniform_compute_bound", float("nan")),
                "fraction": h.get("realized_fraction_of_ideal", float("nan")),
                "element": h.get("element_speedup_compute_bound", float("nan")),
                "region": h.get("region_speedup_compute_bound", float("nan")),
                "network": h["speedup_vs_uniform"],
                "energy_saving": h["energy_saving_vs_uniform"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 samples, one speed repeat")
    ap.add_argument("--samples", type=int, default=16, help="synthetic samples per case")
    ap.add_argument(
        "--run",
        type=Path,
        default=ROOT / "runs" / "bench-core",
        help="run directory of the trained Fashion-MNIST model",
    )
    ap.add_argument("--images", type=int, default=512, help="Fashion-MNIST test images")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    samples = 2 if args.quick else args.samples
    images = 64 if args.quick else args.images

    print("1. dense mode against the closed form (ResNet-18, 224x224)")
    dense_ok = check_dense()

    print(
        "\n2. ResNet-18 shapes, synthetic per-sample masks "
        f"({samples} samples; compute-bound layers; speedups over uniform 8-bit)"
    )
    rows, head = sweep(samples)
    print_table(rows, "ResNet-18 (groups fitted per map, blocks = columns)")

    print("\n3. speed")
    speed_samples = 4 if args.quick else 32
    per_sample, per_sample_cmp = measure_speed(speed_samples, 1 if args.quick else 3)
    print(f"  simulate (ours, {speed_samples} samples at once): {per_sample * 1e3:.2f} ms/sample")
    print(f"  compare (ours + 5 baselines): {per_sample_cmp * 1e3:.2f} ms/sample")

    print(f"\n4. trained Fashion-MNIST model ({args.run})")
    fm = fashion_mnist(args.run, images)
    if fm:
        print_table(fm, "Fashion-MNIST small CNN, real masks (baselines synthetic, same ratio)")

    command = shlex.join(
        [Path(sys.executable).name, "benchmarks/simulator.py", *(argv or sys.argv[1:])]
    )
    result = {
        "dense_formula_exact": dense_ok,
        "realized_fraction_of_ideal": round(head["fraction"], 4),
        "per_element_speedup": round(head["element"], 4),
        "block_aligned_speedup": round(head["ours"], 4),
        "seconds_per_sample_resnet18": round(per_sample, 5),
        "command": command,
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}:\n{json.dumps(result, indent=2)}")
    return 0 if dense_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
