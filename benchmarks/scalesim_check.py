"""Cross-check against SCALE-Sim 3.0.0: compute cycles, ``scalesim``-memory stalls and speed.

Installs ``scalesim==3.0.0`` and ``numpy<2.4`` into its own virtual environment
(``.venv-scalesim/``, ignored by git; never a dependency of the package), runs SCALE-Sim layer
by layer on ResNet-18 and AlexNet (the topologies shipped in ``dynabit.hardware.scalesim``) on
a 32x32 array with 64 KB buffers, in OS, WS and IS, at three USER bandwidths (ifmap, filter and
ofmap buffers all at the same words/cycle), and compares per layer:

* compute cycles: SCALE-Sim's ``Total Cycles - Stall Cycles`` against our dense cycles (equal);
* stall cycles: SCALE-Sim's against ``simulate(..., mode="dense", memory="scalesim")``;
* wall time: SCALE-Sim's ``run_scale`` per layer (timed inside its process) against ours on
  the same layer (timed here, one thread); the speedup is the ratio of the sums.

Each SCALE-Sim layer run is cached under ``runs/scalesim_check/`` (its reports and timing), so
an interrupted run resumes where it stopped. Run it niced in the background::

    nice -n 19 python benchmarks/scalesim_check.py > runs/scalesim_check/log.txt 2>&1 &

Writes ``benchmarks/results/scalesim.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-scalesim"
CACHE = ROOT / "runs" / "scalesim_check"
RESULT = ROOT / "benchmarks" / "results" / "scalesim.json"

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


def ensure_venv() -> Path:
    """The benchmark's own environment with SCALE-Sim 3.0.0 (created on first use)."""
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
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


def scalesim_layer(py: Path, key: str, layer, conf) -> dict:
    """SCALE-Sim's compute-report row and run time for one layer (cached)."""
    from dynabit.hardware.scalesim import format_topology

    d = CACHE / key
    res = d / "out" / "result.json"
    if res.exists():
        return json.loads(res.read_text())
    d.mkdir(parents=True, exist_ok=True)
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
    return json.loads(res.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", default="resnet18,alexnet")
    ap.add_argument("--dataflows", default="os,ws,is")
    ap.add_argument("--bandwidths", default="5,10,50", help="words/cycle, comma list")
    ap.add_argument("--size", type=int, default=32, help="array rows = columns")
    ap.add_argument("--sram-kb", type=int, default=64)
    ap.add_argument(
        "--max-layers", type=int, default=0, help="first N layers per network (0 = all)"
    )
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args()

    from dynabit.hardware.scalesim import EXAMPLES, ScaleSimConfig, read_topology
    from dynabit.hardware.simulator import simulate

    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    py = ensure_venv()
    CACHE.mkdir(parents=True, exist_ok=True)
    cases = []
    t_ours = t_ref = 0.0
    for net in args.networks.split(","):
        layers = read_topology(EXAMPLES / f"{net}.csv")
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
                    key = f"{net}_{df}_bw{bw}_a{args.size}_kb{args.sram_kb}_{i:02d}"
                    ref = scalesim_layer(py, key, layer, conf)
                    t0 = time.perf_counter()
                    ours = simulate([layer.shape()], hw=hw, mode="dense", memory="scalesim")
                    dt = time.perf_counter() - t0
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
                    }
                    case["stall_rel_error"] = abs(case["stall_ours"] - stall) / max(stall, 1)
                    cases.append(case)
                    t_ours += dt
                    t_ref += ref["seconds"]
                    print(json.dumps(case), flush=True)
    summary = {
        "layers": len(cases),
        "compute_exact": sum(c["compute_ref"] == c["compute_ours"] for c in cases),
        "compute_total": len(cases),
        "stall_max_rel_error": max(c["stall_rel_error"] for c in cases),
        "speedup_vs_scalesim": t_ref / t_ours,
        "scalesim_version": "3.0.0",
        "command": "python benchmarks/scalesim_check.py " + " ".join(sys.argv[1:]),
        "seconds_scalesim": t_ref,
        "seconds_ours": t_ours,
        "threads": 1,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "cases"}, indent=1))


if __name__ == "__main__":
    main()
