"""Main-job benchmark: ``dynabit demo`` with its defaults, timed, in a fresh run directory.

    python benchmarks/demo.py [--run-dir runs/bench-demo]

Writes ``benchmarks/results/demo.json`` with the wall time and the summary figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from dynabit.demo import DemoOptions, run_demo, summary_table
from dynabit.utils.files import atomic_write_text
from dynabit.utils.threads import set_threads

RESULTS = Path(__file__).resolve().parent / "results" / "demo.json"
FIELDS = ("seconds", "dataset", "top1_dynamic", "b_avg", "speedup_vs_uniform8", "parity")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/bench-demo")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    set_threads()  # the default of `dynabit demo` (what `make demo` runs)
    run_dir = Path(args.run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)  # time the whole job, nothing reused
    summary = run_demo(DemoOptions(run_dir=run_dir, progress=False, resume=False))
    print(summary_table(summary))
    result = {k: summary[k] for k in FIELDS}
    result.update(
        top1_fp32=summary["top1_fp32"],
        top1_w8a8=summary["top1_w8a8"],
        energy_saving_vs_uniform8=summary["energy_saving_vs_uniform8"],
        ideal_speedup=summary["ideal_speedup"],
        speedup_per_element_gating=summary["speedup_per_element_gating"],
        parity_samples=summary["parity_samples"],
        stage_seconds=summary["stage_seconds"],
        threads=summary["threads"],
        hardware=summary["hardware"],
        command="python benchmarks/demo.py",
    )
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
