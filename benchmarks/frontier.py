"""Frontier benchmark: accuracy against measured ``B_avg`` for dynabit and the baselines.

One FP32 model per architecture, then QAT fine-tuning of every method from it with the same
recipe (data, loop, optimizer, schedule, calibration): dynabit, PG-style and DRQ-style gating
and per-layer static mixed precision at budgets 4.5, 5 and 6 bits, uniform static quantization
at 4, 5, 6 and 8 bits, over 3 seeds, on Fashion-MNIST, for a small CNN, ResNet-20 and a
MobileNetV2-style depthwise-separable network. 8-bit weights, 8-bit activations split 4 + 4.

    python benchmarks/frontier.py --dry-run          # the plan and a timed estimate
    python benchmarks/frontier.py --background --workers 2
    python benchmarks/frontier.py --quick            # smoke run on digits (runs/frontier-quick)
    python benchmarks/frontier.py --report           # rebuild the table and plots only

Every point is its own resumable run directory under ``--run-root`` (``runs/frontier``):
``<arch>/fp32`` and ``<arch>/<method>-b<budget>/seed<k>``. The grid runs through
:func:`dynabit.sweep.run_tasks` (``--workers`` processes, each point after its
architecture's FP32 model, one run per run root at a time). A finished point has
``result.json`` and is skipped, an interrupted one resumes from its last checkpoint, so the
same command continues a stopped run. Rows of the report already in ``--out-dir`` (same
dataset and recipe, every seed) are carried over and their points not trained again; an FP32
model is trained again only as the parent of new points (``fp32_retrained`` in the report
compares both top-1 figures). Architectures without carried rows run first. As points
finish (at most every 2 minutes) and at the end, the results are rewritten:
``frontier.json`` (the rows: top-1 mean and std over seeds, measured MAC-weighted ``B_avg``,
refine ratio, BOPs; ``default_method``: every dynabit row's gap to W8A4 and W8A8),
``frontier.md`` (the tables and the checks of the issue's targets) and
``frontier_<arch>.png`` (top-1 against ``B_avg``, and a panel zoomed on the best rows), in
``--out-dir`` (``benchmarks/results``; ``runs/frontier-quick`` with ``--quick``).

Run directories need not outlive a session: every finished point is also appended to the
ledger (``--ledger``, default ``frontier_ledger.jsonl`` in ``--out-dir``), one JSON line with
its key, a digest of its inputs (dataset, recipe, point and quantization config) and its
``result.json``. A later run takes a point from the ledger when its run directory has no
result and the digest matches, so a fresh checkout continues from the committed lines; an
FP32 model is trained again (deterministic from its seed) only when a point still to run
needs it as its parent.

DRQ's thresholds stay fixed during QAT (at their calibration on the FP32 network) and are set
again on the fine-tuned network before the evaluation, as DRQ sets them offline on the network
it runs (``--no-recalibrate`` keeps them; ``result.json`` keeps both figures).

The default run adds, at the 5-bit budget, every gating method with the mid-point offset and
the dual-precision scale fit (``dynabit-midpoint-dual``, ``pg-midpoint-dual``,
``drq-midpoint-dual``): with plain truncation and a scale fitted to the 8-bit codes, an
unrefined group computes with 4 bits at a scale chosen for 8 and a downward bias, which the
residual adds of ResNet-20 accumulate (see ``docs/baselines.md``). Each dynabit variant is
checked against the baselines with the same switches (the longest suffix they have). dynabit
also runs input-directed at the 5-bit budget (``dynabit-input``, ``dynabit-midpoint-dual-input``).

Per-layer static mixed precision (``mixed``) runs at the same budgets
(:mod:`dynabit.quant.mixed`: each budgeted layer A4 or A8, the most sensitive at 8 bits while
``B_avg <= budget``), measured on the FP32 model with the point's own calibration batches,
kept as ``mixed.json`` in its run directory, then QAT with the same recipe; it is checked
against dynabit like the other baselines. It is not in the default plan.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from dynabit.config.run import RunConfig, validate_run
from dynabit.quant.baselines import describe, method_config, split_method
from dynabit.quant.bops import count_macs, fp32_bops, model_bops
from dynabit.quant.mixed import MIXED, MixedAssignment, check_budget, is_mixed
from dynabit.sweep import Task, run_tasks
from dynabit.train.interrupt import TrainingInterrupted
from dynabit.utils.files import atomic_write_text
from dynabit.utils.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
SCRIPT = "benchmarks/frontier.py"
FP32_BITS = 32.0
HEADLINE_BUDGET = 5.0  # the budget the issue's targets are stated at
BUDGET_TOLERANCE = 0.1  # measured B_avg within +-0.1 of the budget counts as "at" it
W8A8_GAP = 0.3  # dynabit within 0.3 points of uniform W8A8
DEFAULT_METHOD = "dynabit"  # the method with its default switches (what QuantConfig() runs)
ZOOM_POINTS = 3.0  # the zoomed panel shows rows within this many points of the best
REPORT_EVERY_S = 120.0  # rewrite the results at most this often while points finish
LEDGER_NAME = "frontier_ledger.jsonl"  # finished points, one JSON line each (in --out-dir)

log = logging.getLogger("frontier")


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Point:
    """One training run of the frontier."""

    arch: str
    method: str  # fp32, uniform, mixed, pg, drq, dynabit or dynabit-<variant>
    budget: float  # activation bits (uniform), B_target (dynamic), 32 (fp32)
    seed: int

    @property
    def is_fp32(self) -> bool:
        return self.method == "fp32"

    @property
    def key(self) -> str:
        if self.is_fp32:
            return f"{self.arch}/fp32"
        return f"{self.arch}/{self.method}-b{self.budget:g}/seed{self.seed}"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Reduced smoke run on digits.")
    ap.add_argument("--dry-run", action="store_true", help="Print the plan and an estimate.")
    ap.add_argument("--report", action="store_true", help="Only rebuild table and plots.")
    ap.add_argument("--background", action="store_true", help="Run detached; log to run root.")
    ap.add_argument("--workers", type=int, default=1, help="Worker processes (--background).")
    ap.add_argument("--archs", nargs="+", default=None)
    ap.add_argument("--methods", nargs="*", default=None, help="Budgeted dynamic methods.")
    ap.add_argument("--budgets", nargs="+", type=float, default=None)
    ap.add_argument("--uniform-bits", nargs="+", type=int, default=None)
    ap.add_argument(
        "--variants",
        nargs="*",
        default=None,
        help="Variants run at --variant-budgets: a dynamic method and switches, e.g. "
        "dynabit-midpoint dynabit-mean dynabit-input dynabit-enforce dynabit-hw8x8 pg-midpoint.",
    )
    ap.add_argument("--variant-budgets", nargs="+", type=float, default=None)
    ap.add_argument("--seeds", nargs="+", type=int, default=None)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--subset", type=int, default=None, help="First N train/test samples.")
    ap.add_argument("--width", type=int, default=None, help="Model width (default per model).")
    ap.add_argument("--fp32-epochs", type=int, default=None)
    ap.add_argument("--qat-epochs", type=int, default=None)
    ap.add_argument("--max-steps", type=int, default=None, help="Cap QAT steps per epoch.")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--fp32-lr", type=float, default=0.05)
    ap.add_argument("--qat-lr", type=float, default=0.005)
    ap.add_argument("--threshold-lr", type=float, default=0.01)
    ap.add_argument("--calib-batches", type=int, default=None)
    ap.add_argument("--fp32-seed", type=int, default=0)
    ap.add_argument("--run-root", default=None)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument(
        "--ledger",
        default=None,
        help="Append-only record of finished points (default: frontier_ledger.jsonl in "
        "--out-dir); points found there are not trained again.",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker.")
    ap.add_argument(
        "--no-recalibrate",
        action="store_true",
        help="Keep DRQ's thresholds as calibrated before QAT (default: set them again after).",
    )
    return ap


# Full run and --quick defaults (explicit flags win).
FULL = {
    "archs": ["small_cnn", "resnet20", "mobilenet_v2"],
    # The dynamic methods, and per-layer static mixed precision at the same budgets: what an
    # engineer would build on the 4-bit array instead (dynabit.quant.mixed).
    "methods": ["dynabit", "pg", "drq", "mixed"],
    "budgets": [4.5, 5.0, 6.0],
    "uniform_bits": [4, 5, 6, 8],
    # Every gating method again with the mid-point offset and the dual-precision scale fit
    # (docs/baselines.md), at the headline budget: the same quantizer for all three; and
    # dynabit with input-directed decisions (DRQ's way), next to the output-directed ones.
    "variants": [
        "dynabit-midpoint-dual",
        "pg-midpoint-dual",
        "drq-midpoint-dual",
        "dynabit-input",
        "dynabit-midpoint-dual-input",
    ],
    "variant_budgets": [5.0],
    "seeds": [0, 1, 2],
    "dataset": "fashion-mnist",
    # A recipe that fits a working session on two CPU cores (about 1.5 h with two workers):
    # short FP32 training, then 200 QAT steps (about half an epoch) for every method alike.
    "fp32_epochs": 6,
    "qat_epochs": 1,
    "max_steps": 200,
    "batch_size": 128,
    "calib_batches": 8,
    "run_root": "runs/frontier",
    "out_dir": str(RESULTS_DIR),
}
QUICK = {
    **FULL,
    "budgets": [5.0],
    "uniform_bits": [4, 8],
    "seeds": [0],
    "dataset": "digits",
    "fp32_epochs": 3,
    "max_steps": 4,
    "batch_size": 64,
    "calib_batches": 2,
    "run_root": "runs/frontier-quick",
    "out_dir": "runs/frontier-quick",
}


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset options from the full-run or ``--quick`` defaults."""
    defaults = QUICK if args.quick else FULL
    for k, v in defaults.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.variant_budgets is None:
        args.variant_budgets = list(args.budgets)
    if args.ledger is None:
        args.ledger = str(Path(args.out_dir) / LEDGER_NAME)
    for name in [*args.methods, *args.variants]:
        if is_mixed(name) and name in args.methods:
            for b in args.budgets:
                try:
                    check_budget(b)
                except ValueError as e:
                    raise SystemExit(str(e)) from None
            continue
        try:
            base, _ = split_method(name)
        except ValueError as e:
            raise SystemExit(str(e)) from None
        if base in ("fp32", "uniform"):
            raise SystemExit(f"{name}: --methods/--variants take dynamic methods (--uniform-bits)")
    return args


def plan(args: argparse.Namespace) -> list[Point]:
    """Every point, FP32 models first."""
    points: list[Point] = []
    for arch in args.archs:
        points.append(Point(arch, "fp32", FP32_BITS, args.fp32_seed))
    # Seeds outermost: a stopped run has whole seeds of every architecture to report.
    for seed in args.seeds:
        for arch in args.archs:
            for bits in args.uniform_bits:
                points.append(Point(arch, "uniform", float(bits), seed))
            for method in args.methods:
                for budget in args.budgets:
                    points.append(Point(arch, method, float(budget), seed))
            for variant in args.variants:
                for budget in args.variant_budgets:
                    points.append(Point(arch, variant, float(budget), seed))
    return points


def run_dir(args: argparse.Namespace, p: Point) -> Path:
    return Path(args.run_root) / p.key


def train_section(args: argparse.Namespace, p: Point) -> dict[str, Any]:
    """The shared recipe (``core.py``'s): SGD, momentum 0.9, wd 5e-4, cosine, batch 128."""
    return {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "model": p.arch,
        "width": args.width,
        "epochs": args.fp32_epochs if p.is_fp32 else args.qat_epochs,
        "batch_size": args.batch_size,
        "optimizer": "sgd",
        "lr": args.fp32_lr if p.is_fp32 else args.qat_lr,
        "threshold_lr": args.threshold_lr,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "cosine",
        "quantize": not p.is_fp32,
        "init_from": None if p.is_fp32 else str(run_dir(args, fp32_point(args, p)).resolve()),
        "calib_batches": args.calib_batches,
        "seed": p.seed,
        "train_subset": args.subset,
        "test_subset": args.subset,
        "max_steps_per_epoch": None if p.is_fp32 else args.max_steps,
        "checkpoint_every": 200,
        "keep_checkpoints": 1,
        "progress": False,
    }


def fp32_point(args: argparse.Namespace, p: Point) -> Point:
    return Point(p.arch, "fp32", FP32_BITS, args.fp32_seed)


def run_config(args: argparse.Namespace, p: Point) -> RunConfig:
    if is_mixed(p.method):
        cfg = mixed_assignment(args, p).config()
        return validate_run(
            {"train": train_section(args, p), "quant": cfg.model_dump(mode="json")}, p.key
        )
    quant = {} if p.is_fp32 else method_config(p.method, p.budget).model_dump(mode="json")
    return validate_run({"train": train_section(args, p), "quant": quant}, p.key)


def calibration_inputs(t: Any, train_ds: Any) -> list[torch.Tensor]:
    """The run's own calibration batches (those its QAT calibrates on)."""
    from dynabit.train.distributed import epoch_permutation
    from dynabit.train.evaluate import inputs_at

    idx = epoch_permutation(len(train_ds), t.seed, -1)[: t.calib_batches * t.batch_size]
    return [inputs_at(train_ds, i) for i in idx.split(t.batch_size)]


def mixed_assignment(args: argparse.Namespace, p: Point) -> MixedAssignment:
    """A ``mixed`` point's per-layer A4/A8 assignment at ``B_avg <= budget``: layer
    sensitivities measured on its FP32 parent with the point's calibration batches. Kept as
    ``mixed.json`` in the point's run directory, so a resumed run trains the same config."""
    from dynabit.data import load_dataset
    from dynabit.models import build_model
    from dynabit.quant.mixed import mixed_precision
    from dynabit.train.checkpoint import load_model_state
    from dynabit.train.evaluate import load_weights

    path = run_dir(args, p) / "mixed.json"
    saved = _read(path)
    if saved is not None:
        keep = ("bits", "macs", "sensitivity", "budget", "low_bits", "high_bits")
        return MixedAssignment(**{k: saved[k] for k in keep})
    t = validate_run({"train": train_section(args, p), "quant": {}}, p.key).train
    train_ds = load_dataset(t.dataset, "train", t.data_dir, t.train_subset)
    parent = run_dir(args, fp32_point(args, p))
    model = build_model(
        p.arch, train_ds.in_channels, train_ds.num_classes, train_ds.image_size, args.width
    )
    load_weights(model, load_model_state(parent), str(parent))
    assignment = mixed_precision(model, calibration_inputs(t, train_ds), p.budget)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(assignment.to_dict(), indent=2) + "\n")
    return assignment


def describe_mixed(a: MixedAssignment) -> str:
    """One line saying what a ``mixed`` point computes (the report's ``config``)."""
    return (
        f"mixed: W8 A{a.low_bits}/A{a.high_bits} per layer, {len(a.high_layers)} of "
        f"{len(a.bits)} budgeted layers at {a.high_bits} bits by sensitivity "
        f"(planned B_avg {a.b_avg:.3f} <= {a.budget:g})"
    )


# ----------------------------------------------------------------------------- running


def result_path(args: argparse.Namespace, p: Point) -> Path:
    return run_dir(args, p) / "result.json"


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def read_result(args: argparse.Namespace, p: Point) -> dict[str, Any] | None:
    """The point's result: its run directory's ``result.json``, else its ledger line."""
    r = _read(result_path(args, p))
    if r is not None:
        return r
    return ledger(args).get(p.key, inputs_digest(args, p))


def inputs_digest(args: argparse.Namespace, p: Point) -> str:
    """Fingerprint of what a point's result depends on: dataset, recipe, the point and (but
    for ``mixed``, whose config is measured on the FP32 parent) its quantization config."""
    what: dict[str, Any] = {"dataset": args.dataset, "recipe": recipe(args), "point": asdict(p)}
    if not p.is_fp32 and not is_mixed(p.method):
        what["quant"] = method_config(p.method, p.budget).model_dump(mode="json")
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


_LEDGERS: dict[str, Ledger] = {}


def ledger_recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The dataset and recipe a ledger line was trained with (for a reader of the line)."""
    return {"dataset": args.dataset, **recipe(args)}


def ledger(args: argparse.Namespace) -> Ledger:
    """The run's ledger (read once per process)."""
    if args.ledger not in _LEDGERS:
        _LEDGERS[args.ledger] = Ledger(Path(args.ledger))
    return _LEDGERS[args.ledger]


def record_finished(args: argparse.Namespace, points: list[Point]) -> int:
    """Append every point finished in its run directory but missing from the ledger (runs
    finished by an earlier process); returns how many were added."""
    added = 0
    for p in points:
        r = _read(result_path(args, p))
        if r is not None:
            added += ledger(args).put(p.key, inputs_digest(args, p), r, ledger_recipe(args))
    return added


def _group(p: Point) -> tuple[str, str, float]:
    return (p.arch, p.method, p.budget)


def recipe(args: argparse.Namespace) -> dict[str, Any]:
    """What a row's figures depend on beyond its point (a row is carried over only between
    reports of the same recipe)."""
    return {
        "fp32_epochs": args.fp32_epochs,
        "qat_epochs": args.qat_epochs,
        "batch_size": args.batch_size,
        "fp32_lr": args.fp32_lr,
        "qat_lr": args.qat_lr,
        "threshold_lr": args.threshold_lr,
        "calib_batches": args.calib_batches,
        "max_steps_per_epoch": args.max_steps,
        "subset": args.subset,
        "width": args.width,
        "fp32_seed": args.fp32_seed,
        "drq_recalibrated": not args.no_recalibrate,
    }


# Recipe keys an older report may lack, with the value it was produced with.
RECIPE_DEFAULTS = {"width": None, "fp32_seed": 0, "drq_recalibrated": True}


def carried_rows(args: argparse.Namespace, points: list[Point]) -> dict[tuple, dict[str, Any]]:
    """Rows of the report already in ``--out-dir`` that this plan reuses instead of training
    again: same dataset and recipe, every planned seed present. Their points are not run
    (their run directories need not exist); an FP32 model is trained again only when a new
    point needs it as its parent, and its row stays the carried one."""
    old = _read(Path(args.out_dir) / "frontier.json")
    if old is None or old.get("dataset") != args.dataset:
        return {}
    theirs = {**RECIPE_DEFAULTS, **old.get("recipe", {})}
    if any(theirs.get(k) != v for k, v in recipe(args).items()):
        return {}
    seeds: dict[tuple, set[int]] = {}
    for p in points:
        seeds.setdefault(_group(p), set()).add(p.seed)
    out = {}
    for row in old.get("rows", []):
        g = (row["arch"], row["method"], float(row["budget"]))
        if g in seeds and row["seeds"] == len(seeds[g]):
            out[g] = row
    return out


_MACS: dict[tuple[str, str, int | None], dict[str, int]] = {}


def arch_macs(args: argparse.Namespace, arch: str) -> dict[str, int]:
    """MACs per sample of each layer of ``arch`` on the dataset, from the FLOP counter."""
    key = (arch, args.dataset, args.width)
    if key not in _MACS:
        from dynabit.data import dataset_info
        from dynabit.models import build_model

        info = dataset_info(args.dataset, args.data_dir)
        model = build_model(arch, info.in_channels, info.num_classes, info.image_size, args.width)
        example = torch.zeros(1, info.in_channels, info.image_size, info.image_size)
        _MACS[key] = count_macs(model, example)
    return _MACS[key]


def run_point(args: argparse.Namespace, p: Point) -> dict[str, Any]:
    """Train (or resume) one point and write its ``result.json``."""
    from dynabit.train import run_training

    cfg = run_config(args, p)
    rd = run_dir(args, p)
    start = time.time()
    res = run_training(cfg, rd, resume=True)["train"]
    macs = arch_macs(args, p.arch)
    top1, loss, as_trained = res.top1, res.loss, None
    if p.is_fp32:
        bops = fp32_bops(macs)
        b_avg = b_avg_e = FP32_BITS
        refine = None
        what = "fp32: no quantization"
    else:
        stats = res.stats or {}
        if fixed_thresholds(cfg) and not args.no_recalibrate:
            as_trained = {"top1": top1, "b_avg": res.b_avg_macs}
            top1, loss, stats = recalibrated(cfg, res.model, rd)
        bops = model_bops(macs, res.model, stats)
        b_avg, b_avg_e = stats["b_avg_macs"], stats["b_avg_elements"]
        refine = stats.get("refine_ratio")
        what = describe(cfg.quant)
        if is_mixed(p.method):
            what = describe_mixed(mixed_assignment(args, p))
    result = {
        "arch": p.arch,
        "method": p.method,
        "budget": p.budget,
        "seed": p.seed,
        "top1": top1,
        "loss": loss,
        "b_avg": b_avg,
        "b_avg_elements": b_avg_e,
        "refine_ratio": _finite(refine),
        "macs": bops.macs,
        "bops": bops.bops,
        "layer_bits": {n: s.act_bits for n, s in bops.layers.items()},
        "config": what,
        "epochs": res.epochs,
        "global_step": res.global_step,
        "wall_seconds": round(time.time() - start, 1),
        "run_dir": str(rd),
    }
    if as_trained is not None:
        result["as_trained"] = as_trained  # before the thresholds were set again
    atomic_write_text(result_path(args, p), json.dumps(result, indent=2) + "\n")
    ledger(args).put(p.key, inputs_digest(args, p), result, ledger_recipe(args))
    return result


def fixed_thresholds(cfg: RunConfig) -> bool:
    """True when the thresholds are not trained (DRQ): they are set again after QAT."""
    q = cfg.quant
    return q.method != "uniform" and q.dynamic and not q.train_thresholds


def recalibrated(cfg: RunConfig, model: torch.nn.Module, rd: Path) -> tuple[float, float, dict]:
    """DRQ's protocol: thresholds set offline on the fine-tuned network (frozen during QAT),
    on the run's own calibration batches; evaluates on the test set and saves the model."""
    from safetensors.torch import save_file

    from dynabit.data import load_dataset
    from dynabit.quant.baselines import recalibrate_thresholds
    from dynabit.train.evaluate import evaluate

    t = cfg.train
    train_ds = load_dataset(t.dataset, "train", t.data_dir, t.train_subset)
    test_ds = load_dataset(t.dataset, "test", t.data_dir, t.test_subset)
    recalibrate_thresholds(model, calibration_inputs(t, train_ds))
    ev = evaluate(model, test_ds, batch_size=t.eval_batch_size)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(rd / "recalibrated.safetensors"))
    return ev.top1, ev.loss, ev.stats or {}


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def run_task(payload: dict[str, Any], _run_dir: str) -> dict[str, Any]:
    """Sweep runner: one point from plain data (it crosses to a worker process)."""
    if not logging.getLogger().handlers:  # a spawned worker: log like the parent does
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = argparse.Namespace(**payload["args"])
    torch.set_num_threads(args.threads)
    p = Point(**payload["point"])
    log.info("[%s] %s", time.strftime("%H:%M:%S"), p.key)
    r = run_point(args, p)
    log.info(
        "[%s] %s: top-1 %.2f%%, B_avg %.3f (%.0f s)",
        time.strftime("%H:%M:%S"),
        p.key,
        r["top1"],
        r["b_avg"],
        r["wall_seconds"],
    )
    return r


def tasks(args: argparse.Namespace, points: list[Point], carried: dict) -> list[Task]:
    """The sweep's tasks: every point whose row is not carried over and that has no result
    (run directory or ledger), each after its FP32 model; points of architectures without
    carried rows first (a new network before the new rows of the old ones), seeds outermost."""
    old_archs = {g[0] for g in carried}
    needed = [
        p
        for p in points
        if not p.is_fp32 and _group(p) not in carried and read_result(args, p) is None
    ]
    parents = {fp32_point(args, p) for p in needed}
    todo = [p for p in points if (p.is_fp32 and p in parents) or p in needed]
    order = {p: i for i, p in enumerate(points)}
    todo.sort(key=lambda p: (p.arch in old_archs, -1 if p.is_fp32 else p.seed, order[p]))
    plain = {k: v for k, v in vars(args).items() if k != "func"}
    return [
        Task(
            p.key,
            {"args": plain, "point": asdict(p)},
            () if p.is_fp32 else (fp32_point(args, p).key,),
        )
        for p in todo
    ]


def work(
    args: argparse.Namespace, points: list[Point], command: str, carried: dict[tuple, dict]
) -> int:
    """Run every unfinished point through :func:`dynabit.sweep.run_tasks`; returns the number
    that failed. The report follows the run (rewritten at most every 2 minutes)."""
    last_report = time.time()
    added = record_finished(args, points)
    if added:
        log.info("%d finished point(s) added to the ledger %s", added, args.ledger)

    def done(_name: str, _row: dict[str, Any]) -> None:
        nonlocal last_report
        if time.time() - last_report > REPORT_EVERY_S:
            write_report(args, points, command, carried)
            last_report = time.time()

    res = run_tasks(
        tasks(args, points, carried),
        args.run_root,
        workers=args.workers,
        runner=run_task,
        on_done=done,
        finished=lambda rd: _read(rd / "result.json"),
        in_process=args.workers == 1,
    )
    write_report(args, points, command, carried)
    for name, err in res.failed.items():
        log.error("%s failed:\n%s", name, err)
    if res.failed:
        log.error("%d point(s) failed: %s", len(res.failed), ", ".join(sorted(res.failed)))
    return len(res.failed)


# ----------------------------------------------------------------------------- estimate


def _step_seconds(args: argparse.Namespace, arch: str, method: str | None, steps: int = 2) -> float:
    """Seconds per training step of ``arch`` (``method=None``: FP32) on random data."""
    import torch.nn.functional as F

    from dynabit.data import dataset_info
    from dynabit.models import build_model
    from dynabit.quant import budget_penalty, calibrate, prepare

    info = dataset_info(args.dataset, args.data_dir)
    torch.manual_seed(0)
    model = build_model(arch, info.in_channels, info.num_classes, info.image_size, args.width)
    x = torch.randn(args.batch_size, info.in_channels, info.image_size, info.image_size)
    y = torch.randint(0, info.num_classes, (args.batch_size,))
    if method is not None:
        model = prepare(model, method_config(method, 5.0 if method != "uniform" else 8))
        calibrate(model, [x])
    opt = torch.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=1e-3)
    model.train()
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        if method is not None:
            loss = loss + budget_penalty(model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return min(times[1:])


def estimate(args: argparse.Namespace, points: list[Point]) -> float:
    """Seconds ``points`` take on this machine (timed steps, one worker)."""
    from dynabit.data import load_dataset

    n_train = len(load_dataset(args.dataset, "train", args.data_dir, args.subset))
    n_test = len(load_dataset(args.dataset, "test", args.data_dir, args.subset))
    steps = math.ceil(n_train / args.batch_size)
    if args.max_steps:
        steps = min(steps, args.max_steps)
    cost: dict[tuple[str, str], float] = {}
    total = 0.0
    for p in points:
        base = "fp32" if p.is_fp32 else p.method.split("-", 1)[0]
        base = "uniform" if is_mixed(base) else base  # static layers: a uniform step's cost
        if (p.arch, base) not in cost:
            cost[(p.arch, base)] = _step_seconds(args, p.arch, None if p.is_fp32 else base)
            log.info("  %s %s: %.3f s per step", p.arch, base, cost[(p.arch, base)])
        t = cost[(p.arch, base)]
        epochs = args.fp32_epochs if p.is_fp32 else args.qat_epochs
        eval_s = n_test / args.batch_size * t / 3  # a forward is about a third of a step
        total += epochs * (steps * t + eval_s)
    return total


# ----------------------------------------------------------------------------- report


def aggregate(
    args: argparse.Namespace, points: list[Point], carried: dict[tuple, dict] | None = None
) -> list[dict[str, Any]]:
    """One row per (arch, method, budget): means and stds over the finished seeds, or the
    carried-over row of an earlier report (:func:`carried_rows`), which wins."""
    carried = {} if carried is None else carried
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    order: list[tuple[str, str, float]] = []
    for p in points:
        g = _group(p)
        if g not in groups:
            groups[g] = []
            order.append(g)
        r = None if g in carried else read_result(args, p)
        if r is not None:
            groups[g].append(r)
    rows = []
    for arch, method, budget in order:
        if (arch, method, budget) in carried:
            rows.append(carried[(arch, method, budget)])
            continue
        rs = groups[(arch, method, budget)]
        if not rs:
            continue
        top1 = [r["top1"] for r in rs]
        b = [r["b_avg"] for r in rs]
        refine = [r["refine_ratio"] for r in rs if r.get("refine_ratio") is not None]
        rows.append(
            {
                "arch": arch,
                "method": method,
                "budget": budget,
                "top1_mean": statistics.fmean(top1),
                "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
                "b_avg": statistics.fmean(b),
                "b_avg_std": statistics.stdev(b) if len(b) > 1 else 0.0,
                "b_avg_elements": statistics.fmean(r["b_avg_elements"] for r in rs),
                "refine_ratio": statistics.fmean(refine) if refine else None,
                "bops": statistics.fmean(r["bops"] for r in rs),
                "macs": rs[0]["macs"],
                "seeds": len(rs),
                "top1_per_seed": top1,
                "config": rs[0]["config"],
            }
        )
        if all("as_trained" in r for r in rs):  # DRQ before its thresholds were set again
            rows[-1]["as_trained"] = {
                "top1_mean": statistics.fmean(r["as_trained"]["top1"] for r in rs),
                "b_avg": statistics.fmean(r["as_trained"]["b_avg"] for r in rs),
            }
    return rows


def _row(rows: list[dict[str, Any]], arch: str, method: str, budget: float) -> dict | None:
    for r in rows:
        if r["arch"] == arch and r["method"] == method and r["budget"] == budget:
            return r
    return None


def like_for_like(rows: list[dict[str, Any]], arch: str, base: str, name: str, b: float) -> str:
    """The longest switch suffix of ``name`` that ``base`` has a row with (switches dropped
    from the end: ``dynabit-midpoint-dual-input`` -> ``pg-midpoint-dual``, else ``pg``)."""
    switches = name.split("-")[1:]
    while switches:
        suffix = "-" + "-".join(switches)
        if _row(rows, arch, base + suffix, b) is not None:
            return suffix
        switches.pop()
    return ""


def default_table(rows: list[dict[str, Any]], archs: list[str]) -> list[dict[str, Any]]:
    """Per architecture and budget: every dynabit row's top-1 and its gap to W8A4 and W8A8
    (``default`` marks the method's default variant, :data:`DEFAULT_METHOD`)."""
    out = []
    for arch in archs:
        w8a4, w8a8 = _row(rows, arch, "uniform", 4.0), _row(rows, arch, "uniform", 8.0)
        mine = [r for r in rows if r["arch"] == arch and r["method"].split("-")[0] == "dynabit"]
        for r in sorted(mine, key=lambda r: (r["method"] != DEFAULT_METHOD, r["budget"])):
            out.append(
                {
                    "arch": arch,
                    "method": r["method"],
                    "default": r["method"] == DEFAULT_METHOD,
                    "budget": r["budget"],
                    "top1_mean": r["top1_mean"],
                    "top1_std": r["top1_std"],
                    "b_avg": r["b_avg"],
                    "gap_w8a4": None if w8a4 is None else r["top1_mean"] - w8a4["top1_mean"],
                    "gap_w8a8": None if w8a8 is None else r["top1_mean"] - w8a8["top1_mean"],
                }
            )
    return out


def checks(rows: list[dict[str, Any]], archs: list[str]) -> list[dict[str, Any]]:
    """The issue's targets at the 5-bit budget, per architecture and dynabit variant."""
    out = []
    b = HEADLINE_BUDGET
    for arch in archs:
        mine = [
            r
            for r in rows
            if r["arch"] == arch and r["budget"] == b and r["method"].split("-")[0] == "dynabit"
        ]
        for dyn in mine:
            name = dyn["method"]
            out.append(
                {
                    "arch": arch,
                    "method": name,
                    "claim": f"{name} measured B_avg within +-{BUDGET_TOLERANCE} of {b:g}",
                    "value": dyn["b_avg"],
                    "pass": abs(dyn["b_avg"] - b) <= BUDGET_TOLERANCE,
                }
            )
            w8a8 = _row(rows, arch, "uniform", 8.0)
            if w8a8 is not None:
                gap = dyn["top1_mean"] - w8a8["top1_mean"]
                out.append(
                    {
                        "arch": arch,
                        "method": name,
                        "claim": f"{name} top-1 within {W8A8_GAP} points of uniform W8A8",
                        "value": gap,
                        "pass": gap >= -W8A8_GAP,
                    }
                )
            against = (
                ("uniform", "uniform W8A5"),
                ("pg", "PG-style"),
                ("drq", "DRQ"),
                (MIXED, "per-layer mixed precision"),
            )
            for method, label in against:
                if method not in ("uniform", MIXED):
                    suffix = like_for_like(rows, arch, method, name, b)
                    method, label = method + suffix, label + suffix
                other = _row(rows, arch, method, b)
                if other is None:
                    continue
                margin = dyn["top1_mean"] - other["top1_mean"]
                std = max(dyn["top1_std"], other["top1_std"])
                out.append(
                    {
                        "arch": arch,
                        "method": name,
                        "claim": f"{name} beats {label} by more than the seeds' std",
                        "value": margin,
                        "std": std,
                        "other_b_avg": other["b_avg"],
                        "other_at_budget": abs(other["b_avg"] - b) <= BUDGET_TOLERANCE,
                        "pass": margin > std,
                    }
                )
    return out


def _fmt(x: float | None, spec: str) -> str:
    return "–" if x is None else format(x, spec)


def markdown(
    args: argparse.Namespace, rows: list[dict], chk: list[dict], meta: dict, table: list[dict]
) -> str:
    lines = [
        "# Accuracy/bit-width frontier",
        "",
        f"Dataset `{args.dataset}`; W8, activations 8 = 4 + 4 bits for the dynamic methods; "
        f"FP32 {args.fp32_epochs} epochs, QAT {args.qat_epochs} epoch(s)"
        f"{f' of at most {args.max_steps} steps' if args.max_steps else ''} from it; "
        f"{meta['points_done']}/{meta['points_total']} runs finished.",
        "",
        f"Command: `{meta['command']}`",
        "",
        "`B_avg` is measured on the test set, MAC-weighted over the budgeted layers (first layer "
        "and classifier at 8 bits, outside it). BOPs per sample = sum of MACs x weight bits x "
        "measured activation bits over all layers.",
        "",
        "| arch | method | budget | top-1 % (mean ± std) | B_avg | refine | MBOPs | seeds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['method']} | {r['budget']:g} | "
            f"{r['top1_mean']:.2f} ± {r['top1_std']:.2f} | {r['b_avg']:.3f} | "
            f"{_fmt(r['refine_ratio'], '.3f')} | {r['bops'] / 1e6:.1f} | {r['seeds']} |"
        )
    for arch in args.archs:
        mine = [t for t in table if t["arch"] == arch]
        if not mine:
            continue
        lines += [
            "",
            f"## {arch}: dynabit against uniform W8A4 and W8A8",
            "",
            f"`{DEFAULT_METHOD}` is the method with its default switches; gaps in top-1 points.",
            "",
            "| method | budget | top-1 % (mean ± std) | B_avg | vs W8A4 | vs W8A8 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for t in mine:
            name = f"**{t['method']}** (default)" if t["default"] else t["method"]
            lines.append(
                f"| {name} | {t['budget']:g} | {t['top1_mean']:.2f} ± {t['top1_std']:.2f} | "
                f"{t['b_avg']:.3f} | {_fmt(t['gap_w8a4'], '+.2f')} | "
                f"{_fmt(t['gap_w8a8'], '+.2f')} |"
            )
    if chk:
        lines += ["", f"## Targets at B_target = {HEADLINE_BUDGET:g}", ""]
        lines += ["| arch | target | measured | met |", "|---|---|---:|---|"]
        for c in chk:
            value = f"{c['value']:+.2f}" if "B_avg" not in c["claim"] else f"{c['value']:.3f}"
            if "std" in c:
                value += f" (std {c['std']:.2f}; their B_avg {c['other_b_avg']:.3f})"
            lines.append(
                f"| {c['arch']} | {c['claim']} | {value} | {'yes' if c['pass'] else 'NO'} |"
            )
    return "\n".join(lines) + "\n"


def zoom_limits(rows: list[dict]) -> tuple[float, float] | None:
    """The top-1 range of the zoomed panel: the rows within :data:`ZOOM_POINTS` of the best
    quantized row, with a margin (diverged runs fall outside it); None without such rows."""
    quantized = [r for r in rows if r["method"] != "fp32"]
    if not quantized:
        return None
    best = max(r["top1_mean"] for r in quantized)
    near = [r for r in quantized if r["top1_mean"] >= best - ZOOM_POINTS]
    lo = min(r["top1_mean"] - r["top1_std"] for r in near)
    hi = max([r["top1_mean"] + r["top1_std"] for r in near] + [best])
    fp32 = [r["top1_mean"] for r in rows if r["method"] == "fp32"]
    if fp32 and fp32[0] <= best + ZOOM_POINTS:
        hi = max(hi, fp32[0])
    margin = max(0.1, 0.08 * (hi - lo))
    return lo - margin, hi + margin


def plot(args: argparse.Namespace, rows: list[dict], arch: str, path: Path) -> None:
    """Top-1 against measured ``B_avg``: every row (left) and zoomed on the best (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.4))
    mine = [r for r in rows if r["arch"] == arch]
    methods: list[str] = []
    for r in mine:
        if r["method"] not in methods:
            methods.append(r["method"])
    for ax in axes:
        for method in methods:
            rs = sorted((r for r in mine if r["method"] == method), key=lambda r: r["b_avg"])
            if method == "fp32":
                ax.axhline(rs[0]["top1_mean"], color="grey", ls="--", lw=1, label="fp32")
                continue
            ax.errorbar(
                [r["b_avg"] for r in rs],
                [r["top1_mean"] for r in rs],
                yerr=[r["top1_std"] for r in rs],
                marker="o" if method.startswith("dynabit") else "s",
                ms=4,
                capsize=3,
                lw=1.8 if method.startswith("dynabit") else 1,
                label=method,
            )
        ax.set_xlabel("measured B_avg (activation bits, MAC-weighted)")
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{arch} on {args.dataset}: accuracy vs bit width")
    limits = zoom_limits(mine)
    if limits is not None:
        axes[1].set_ylim(*limits)
    axes[1].set_title(f"zoomed: within {ZOOM_POINTS:g} points of the best")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def retrained_parents(
    args: argparse.Namespace, points: list[Point], carried: dict[tuple, dict]
) -> dict[str, dict[str, float]]:
    """FP32 models trained again for new points while their row is carried over, or whose
    ledger line records another top-1: both top-1 figures, so a reader sees whether the new
    points start from the same model."""
    out: dict[str, dict[str, float]] = {}
    for p in points:
        r = _read(result_path(args, p)) if p.is_fp32 else None
        if r is None:
            continue
        if _group(p) in carried:
            out[p.arch] = {"carried_top1": carried[_group(p)]["top1_mean"], "top1": r["top1"]}
            continue
        kept = ledger(args).get(p.key, inputs_digest(args, p))
        if kept is not None and kept["top1"] != r["top1"]:
            out[p.arch] = {"ledger_top1": kept["top1"], "top1": r["top1"]}
    return out


def write_report(
    args: argparse.Namespace,
    points: list[Point],
    command: str,
    carried: dict[tuple, dict] | None = None,
) -> dict[str, Any]:
    """Rewrite ``frontier.json``, ``frontier.md`` and one plot per architecture.

    ``carried``: rows reused from the earlier report (default: read from ``--out-dir`` now)."""
    out = Path(args.out_dir)
    if carried is None:
        carried = carried_rows(args, points)
    rows = aggregate(args, points, carried)
    done = sum(_group(p) in carried or read_result(args, p) is not None for p in points)
    chk = checks(rows, args.archs)
    table = default_table(rows, args.archs)
    meta = {"command": command, "points_done": done, "points_total": len(points)}
    report = {
        "rows": rows,
        "command": command,
        "checks": chk,
        "default_method": table,
        "complete": done == len(points),
        "points_done": done,
        "points_total": len(points),
        "dataset": args.dataset,
        "recipe": recipe(args),
        "run_root": str(args.run_root),
    }
    refit = retrained_parents(args, points, carried)
    if refit:
        report["fp32_retrained"] = refit
    atomic_write_text(out / "frontier.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(out / "frontier.md", markdown(args, rows, chk, meta, table))
    for arch in args.archs:
        if any(r["arch"] == arch for r in rows):
            plot(args, rows, arch, out / f"frontier_{arch}.png")
    return report


# ----------------------------------------------------------------------------- main


def _without(argv: list[str], flags: dict[str, int]) -> list[str]:
    """``argv`` minus the given flags (``flag -> number of values it takes``)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        if name in flags:
            i += 1 + (flags[name] if "=" not in a else 0)
            continue
        out.append(a)
        i += 1
    return out


def launch_background(args: argparse.Namespace, argv: list[str]) -> None:
    """Start the same command detached (its ``--workers`` processes share the grid through
    :mod:`dynabit.sweep`); print where it logs."""
    root = Path(args.run_root)
    root.mkdir(parents=True, exist_ok=True)
    child = _without(argv, {"--background": 0})
    log_path = root / "frontier.log"
    with open(log_path, "a") as f:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *child],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=os.getcwd(),
        )
    print(f"frontier: pid {proc.pid}, {args.workers} worker(s), log {log_path}")
    print(
        f"re-run `{shlex.join(['python', SCRIPT, *argv])}` to resume after a stop; "
        f"results in {args.out_dir}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    raw = sys.argv[1:] if argv is None else list(argv)
    args = resolve(build_parser().parse_args(raw))
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    torch.set_num_threads(args.threads)
    rerun = {"--background": 0, "--workers": 1, "--report": 0, "--dry-run": 0}
    command = shlex.join(["python", SCRIPT, *_without(raw, rerun)])
    points = plan(args)
    if args.background:
        launch_background(args, raw)
        return None
    n_qat = sum(not p.is_fp32 for p in points)
    carried = carried_rows(args, points)
    by_key = {p.key: p for p in points}
    todo = [by_key[t.name] for t in tasks(args, points, carried)]
    todo = [p for p in todo if _read(result_path(args, p)) is None]
    log.info(
        "%d runs (%d FP32 + %d QAT: %d archs x %d seeds x %d points), %d rows carried over "
        "from %s, %d runs left; run root %s",
        len(points),
        len(points) - n_qat,
        n_qat,
        len(args.archs),
        len(args.seeds),
        n_qat // max(1, len(args.archs) * len(args.seeds)),
        len(carried),
        Path(args.out_dir) / "frontier.json",
        len(todo),
        args.run_root,
    )
    if args.report:
        record_finished(args, points)
        return write_report(args, points, command, carried)
    if args.dry_run:
        for p in points:
            state = "carried" if _group(p) in carried else "done" if read_result(args, p) else ""
            log.info("  %-40s %s", p.key, "to run" if p in todo else state)
        seconds = estimate(args, todo)
        log.info(
            "estimated %.1f h of training for the %d runs left (one worker, %d thread(s); "
            "measured steps under the current load)",
            seconds / 3600,
            len(todo),
            args.threads,
        )
        return {"points": [p.key for p in points], "estimate_seconds": seconds}
    try:
        failed = work(args, points, command, carried)
    except TrainingInterrupted as e:  # the point stopped with a checkpoint; the rest wait
        log.warning("%s; run the same command again to continue", e)
        raise SystemExit(e.exit_code) from None
    report = json.loads((Path(args.out_dir) / "frontier.json").read_text())
    for r in report["rows"]:
        log.info(
            "%-10s %-18s %4g  top-1 %6.2f ± %.2f  B_avg %.3f  %5.1f MBOPs  (%d seeds)",
            r["arch"],
            r["method"],
            r["budget"],
            r["top1_mean"],
            r["top1_std"],
            r["b_avg"],
            r["bops"] / 1e6,
            r["seeds"],
        )
    log.info("-> %s", Path(args.out_dir) / "frontier.json")
    if failed:
        raise SystemExit(1)
    return report


if __name__ == "__main__":
    main()
