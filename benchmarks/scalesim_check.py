"""Cross-check against SCALE-Sim 3.0.0: compute cycles, ``scalesim``-memory stalls and speed.

Installs ``scalesim==3.0.0`` and ``numpy<2.4`` into its own virtual environment
(``.venv-scalesim/``, ignored by git; never a dependency of the package), runs SCALE-Sim layer
by layer on ResNet-18 and AlexNet's five conv layers (the topologies shipped in
``dynabit.hardware.scalesim``) on a 32x32 array with 64 KB buffers, in OS, WS and IS, at three
USER bandwidths (ifmap, filter and ofmap buffers all at the same words/cycle), and compares per
layer:

* compute cycles: SCALE-Sim's ``Total Cycles - Stall Cycles`` against our dense cycles (equal);
* stall cycles: SCALE-Sim's against ``simulate(..., mode="dense", memory="scalesim")``;
* run time: SCALE-Sim's ``run_scale`` per layer (timed inside its process) against ours on
  the same layer (timed here, one thread); the speedup is the ratio of the sums. Both sides
  record CPU time (``time.process_time``) and wall time; the speedup uses CPU seconds when
  every SCALE-Sim run in the cache has them (robust to a shared machine) and wall seconds
  otherwise, and says which in ``"speedup_basis"``.

Each SCALE-Sim layer run is cached under ``runs/scalesim_check/`` (``--cache``: its topology,
config, reports and timing), so an interrupted run resumes where it stopped; a cached run whose
topology or config differs from the case's is run again. With the default cache, every
finished SCALE-Sim case is also appended to ``benchmarks/results/scalesim_reference.jsonl``
(committed, keyed by case and a digest of its inputs), so a fresh checkout resumes from the
cases already run instead of repeating hours of SCALE-Sim. Run it niced in the background::

    nice -n 19 python benchmarks/scalesim_check.py > runs/scalesim_check/log.txt 2>&1 &

AlexNet's FC layers are left out by default (``--networks resnet18,alexnet`` adds them): in WS
their filter orders (up to 37.7M entries) are read row-reversed within each row fold while
SCALE-Sim prefetches them in order, so each time a fold straddles the window edge the window
wraps around the whole order: 6.7M prefetches for ``fc6``, each of which SCALE-Sim 3.0.0
appends to a trace matrix it copies every time (quadratic run time); our replay takes seconds.

``--partial`` runs no SCALE-Sim at all: it compares the cases already cached (reading the
cache, never writing it) and marks the summary ``"complete": false`` while cases are missing.

Writes ``benchmarks/results/scalesim.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dynabit.utils.ledger import Ledger

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-scalesim"
CACHE = ROOT / "runs" / "scalesim_check"
RESULT = ROOT / "benchmarks" / "results" / "scalesim.json"
# SCALE-Sim's results per finished case, committed: its full run takes hours, and a fresh
# checkout has no ``runs/`` cache. Written only by this benchmark, only with the default cache.
LEDGER = ROOT / "benchmarks" / "results" / "scalesim_reference.jsonl"

DRIVER = r"""
import json, os, shutil, sys, time
from scalesim.scale_sim import scalesim
cfg, topo, layout, out = sys.argv[1:5]
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout,
             input_type_gemm=False)
t0, c0 = time.perf_counter(), time.process_time()
s.run_scale(top_path=out)
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
for root, _, files in os.walk(out):
    if "COMPUTE_REPORT.csv" in files:
        rows = [ln for ln in open(os.path.join(root, "COMPUTE_REPORT.csv")) if ln.strip()]
        vals = [float(v) for v in rows[1].split(",") if v.strip()]
        res = {"compute_report": vals, "seconds": dt, "cpu_seconds": cpu}
        json.dump(res, open(os.path.join(out, "result.json"), "w"))
"""


def ensure_venv(venv: Path = VENV) -> Path:
    """The benchmark's own environment with SCALE-Sim 3.0.0 (created on first use)."""
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('scalesim'))"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "3.0.0":
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "scalesim==3.0.0", "numpy<2.4"], check=True
        )
    return py


def layout_text(name: str) -> str:
    """A layout file SCALE-Sim requires even with custom layouts off (its values are unused)."""
    head = "Layer name, " + ", ".join(f"f{i}" for i in range(20)) + ","
    vals = "1, 1, 1, 1, 1, 1, 0, 1, 2, 4, 5, 3, 3, 2, 1, 0, 4, 5, 6, 7"
    return f"{head}\n{name}, {vals},\n"


def inputs_digest(layer, conf) -> str:
    """Fingerprint of one case's SCALE-Sim inputs (topology row and config text)."""
    from dynabit.hardware.scalesim import format_topology

    text = format_topology([layer]) + "\n" + conf.to_text()
    return hashlib.sha256(text.encode()).hexdigest()


def cached_layer(cache: Path, key: str, layer, conf, ledger: Ledger | None = None) -> dict | None:
    """SCALE-Sim's cached result for one case, or None (not run, or run on other inputs)."""
    from dynabit.hardware.scalesim import format_topology

    digest = inputs_digest(layer, conf)
    d = cache / key
    res = d / "out" / "result.json"
    if (
        res.exists()
        and (d / "topo.csv").read_text() == format_topology([layer])
        and (d / "scale.cfg").read_text() == conf.to_text()
    ):
        hit = json.loads(res.read_text())
        if ledger is not None:
            ledger.put(key, digest, hit)
        return hit
    return None if ledger is None else ledger.get(key, digest)


def scalesim_layer(
    py: Path, cache: Path, key: str, layer, conf, ledger: Ledger | None = None
) -> dict:
    """SCALE-Sim's compute-report row and run time for one layer (cached)."""
    from dynabit.hardware.scalesim import format_topology

    hit = cached_layer(cache, key, layer, conf, ledger)
    if hit is not None:
        return hit
    d = cache / key
    d.mkdir(parents=True, exist_ok=True)
    res = d / "out" / "result.json"
    res.unlink(missing_ok=True)
    (d / "topo.csv").write_text(format_topology([layer]))
    (d / "layout.csv").write_text(layout_text(layer.name))
    (d / "scale.cfg").write_text(conf.to_text())
    (d / "driver.py").write_text(DRIVER)
    out = d / "out"
    out.mkdir(exist_ok=True)
    subprocess.run(
        [
            str(py),
            str(d / "driver.py"),
            str(d / "scale.cfg"),
            str(d / "topo.csv"),
            str(d / "layout.csv"),
            str(out),
        ],
        check=True,
        cwd=d,
        stdout=subprocess.DEVNULL,
    )
    result = json.loads(res.read_text())
    if ledger is not None:
        ledger.put(key, inputs_digest(layer, conf), result)
    return result


def summarise(cases: list[dict], expected: int, argv: list[str]) -> dict:
    """The results file: totals over ``cases`` (``expected`` cases make it complete)."""
    cpu = bool(cases) and all(c["cpu_seconds_ref"] is not None for c in cases)
    basis = "cpu" if cpu else "wall"
    ref = sum(c["cpu_seconds_ref" if cpu else "seconds_ref"] for c in cases)
    ours = sum(c["cpu_seconds_ours" if cpu else "seconds_ours"] for c in cases)
    return {
        "layers": len(cases),
        "compute_exact": sum(c["compute_ref"] == c["compute_ours"] for c in cases),
        "compute_total": len(cases),
        "stall_max_rel_error": max((c["stall_rel_error"] for c in cases), default=0.0),
        "speedup_vs_scalesim": ref / ours if ours else 0.0,
        "speedup_basis": basis,
        "scalesim_version": "3.0.0",
        "command": "python benchmarks/scalesim_check.py " + " ".join(argv),
        "complete": len(cases) == expected,
        "cases_expected": expected,
        "seconds_scalesim": sum(c["seconds_ref"] for c in cases),
        "seconds_ours": sum(c["seconds_ours"] for c in cases),
        "cpu_seconds_scalesim": sum(c["cpu_seconds_ref"] or 0.0 for c in cases),
        "cpu_seconds_ours": sum(c["cpu_seconds_ours"] for c in cases),
        "threads": 1,
        "cases": cases,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run (or, with ``--partial``, only read) the cross-check; write and return the summary."""
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--networks",
        default="resnet18,alexnet:5",
        help="shipped topologies, comma list; NAME:N keeps the first N layers (AlexNet's five "
        "convs: SCALE-Sim 3.0.0 cannot finish its FC layers in WS, see the module doc)",
    )
    ap.add_argument("--dataflows", default="os,ws,is")
    ap.add_argument("--bandwidths", default="5,10,50", help="words/cycle, comma list")
    ap.add_argument("--size", type=int, default=32, help="array rows = columns")
    ap.add_argument("--sram-kb", type=int, default=64)
    ap.add_argument(
        "--max-layers", type=int, default=0, help="first N layers per network (0 = all)"
    )
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--cache", type=Path, default=CACHE, help="SCALE-Sim runs, one folder a case")
    ap.add_argument("--venv", type=Path, default=VENV, help="SCALE-Sim's virtual environment")
    ap.add_argument(
        "--partial",
        action="store_true",
        help="run no SCALE-Sim: compare the cached cases only (summary 'complete': false if some "
        "are missing)",
    )
    args = ap.parse_args(argv)

    from dynabit.hardware.scalesim import EXAMPLES, ScaleSimConfig, read_topology
    from dynabit.hardware.simulator import simulate

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    from dynabit.utils.ledger import Ledger

    ledger = Ledger(LEDGER if args.cache == CACHE else None)
    py = None if args.partial else ensure_venv(args.venv)
    if not args.partial:
        args.cache.mkdir(parents=True, exist_ok=True)
    cases, expected = [], 0
    for item in args.networks.split(","):
        net, _, count = item.partition(":")
        layers = read_topology(EXAMPLES / f"{net}.csv")
        if count:
            layers = layers[: int(count)]
        if args.max_layers:
            layers = layers[: args.max_layers]
        for df in args.dataflows.split(","):
            for bw in (int(b) for b in args.bandwidths.split(",")):
                conf = ScaleSimConfig(
                    f"{net}_{df}_{bw}",
                    args.size,
                    args.size,
                    args.sram_kb,
                    args.sram_kb,
                    args.sram_kb,
                    df,
                    bw,
                    True,
                    bw,
                    bw,
                )
                hw = conf.hardware()
                for i, layer in enumerate(layers):
                    expected += 1
                    key = f"{net}_{df}_bw{bw}_a{args.size}_kb{args.sram_kb}_{i:02d}"
                    if args.partial:
                        ref = cached_layer(args.cache, key, layer, conf, ledger)
                        if ref is None:
                            continue
                    else:
                        ref = scalesim_layer(py, args.cache, key, layer, conf, ledger)
                    t0, c0 = time.perf_counter(), time.process_time()
                    ours = simulate([layer.shape()], hw=hw, mode="dense", memory="scalesim")
                    dt, dc = time.perf_counter() - t0, time.process_time() - c0
                    row = ref["compute_report"]
                    total, stall = int(row[2]), int(row[3])
                    case = {
                        "network": net,
                        "dataflow": df,
                        "bandwidth": bw,
                        "layer": layer.name,
                        "compute_ref": total - stall,
                        "compute_ours": int(ours.compute_cycles[0, 0]),
                        "stall_ref": stall,
                        "stall_ours": int(ours.stall_cycles[0, 0]),
                        "seconds_ref": ref["seconds"],
                        "seconds_ours": dt,
                        "cpu_seconds_ref": ref.get("cpu_seconds"),
                        "cpu_seconds_ours": dc,
                    }
                    case["stall_rel_error"] = abs(case["stall_ours"] - stall) / max(stall, 1)
                    cases.append(case)
                    print(json.dumps(case), flush=True)
    summary = summarise(cases, expected, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "cases"}, indent=1))
    return summary


if __name__ == "__main__":
    main()
