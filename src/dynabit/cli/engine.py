"""``dynabit export`` and ``dynabit run-int``: the integer program and its ONNX form.

Wire them into the main app with ``register(app)``.

- ``dynabit export RUN`` converts a trained (QAT) run or checkpoint (or the QAT model of a
  ``dynabit demo`` directory), lowers it to an integer program and writes the program and an
  ONNX model into ``RUN`` (``--program``/``--onnx`` choose the files, or only one of them);
  the ONNX model is run by onnxruntime against the engine on the test set (``--no-check``
  skips it). ``RUN`` may also be a program file (to make its ONNX form).
- ``dynabit run-int model.safetensors`` evaluates the program with the integer engine on a
  test set: top-1, measured ``B_avg``; it writes the trace (decisions and MAC counts).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from dynabit.cli.errors import EXIT_FAILED, fail, user_errors

PROGRAM_NAME = "program.safetensors"
ONNX_NAME = "model.onnx"


def _is_program(path: Path) -> bool:
    if not path.is_file():
        return False
    from dynabit.engine.program import PROGRAM_FORMAT

    with open(path, "rb") as f:
        head = f.read(4096)
    return PROGRAM_FORMAT.encode() in head or path.suffix in (".safetensors", ".dbp")


def _test_set(
    dataset: str | None, data_dir: str | None, subset: int | None, program: Any, source: Path
) -> Any:
    """The test split to run ``program`` on, refused unless its images and classes fit."""
    from dynabit.data import load_dataset
    from dynabit.engine.evaluate import check_dataset_for_program

    meta = program.meta
    name = dataset or meta.get("dataset")
    if name is None:
        fail(f"the program {str(source)!r} does not say its dataset: pass --dataset")
    ddir = data_dir if data_dir is not None else (meta.get("data_dir") if dataset is None else None)
    test = load_dataset(name, "test", ddir, subset)
    check_dataset_for_program(test, program, source)
    return test


@contextmanager
def _step(what: str, quiet: bool) -> Iterator[None]:
    """Say on stderr what a step of several seconds does, and how long it took."""
    if quiet:
        yield
        return
    typer.echo(f"{what} ...", err=True)
    start = time.perf_counter()
    yield
    typer.echo(f"  done in {time.perf_counter() - start:.1f} s", err=True)


def default_outputs(path: Path, from_program: bool) -> tuple[Path | None, Path]:
    """Where ``dynabit export PATH`` writes without ``--program``/``--onnx``: both files in the
    run directory given (``program.safetensors``, ``model.onnx``); for a program file, its ONNX
    form beside it."""
    if from_program:
        return None, path.with_suffix(".onnx")
    base = path if path.is_dir() else path.parent
    return base / PROGRAM_NAME, base / ONNX_NAME


def export_command(
    path: Annotated[
        Path, typer.Argument(help="Run directory, checkpoint folder, or an integer program file.")
    ],
    program_out: Annotated[
        Path | None, typer.Option("--program", "-p", help="Write the integer program here.")
    ] = None,
    onnx_out: Annotated[Path | None, typer.Option("--onnx", help="Write an ONNX model here.")] = (
        None
    ),
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Check the ONNX model with onnxruntime.")
    ] = True,
    masks: Annotated[
        bool, typer.Option("--masks/--no-masks", help="ONNX outputs every layer's group masks.")
    ] = True,
    dataset: Annotated[str | None, typer.Option(help="Check on this dataset's test split.")] = (
        None
    ),
    data_dir: Annotated[str | None, typer.Option(help="Dataset directory.")] = None,
    subset: Annotated[int | None, typer.Option(min=1, help="Check on the first N samples.")] = (
        None
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Export a trained quantized model as an integer program and/or ONNX.

    Without --program/--onnx both are written into the run directory given
    (program.safetensors, model.onnx)."""
    from dynabit.engine import load_program, lower_checkpoint
    from dynabit.utils.files import check_writable_file

    result: dict[str, Any] = {}
    with user_errors():
        from_program = _is_program(path)
        if program_out is None and onnx_out is None:
            program_out, onnx_out = default_outputs(path, from_program)
        for out in (program_out, onnx_out):  # an unwritable output fails before any work
            if out is not None:
                check_writable_file(out)
        quiet = from_program or as_json or not path.exists()  # a bad path: just its error
        with _step("lowering the model to an integer program", quiet):
            program = load_program(path) if from_program else lower_checkpoint(path)
        result["layers"] = len(program.layer_ops())
        result["dynamic_layers"] = len(program.dynamic_ops())
        if program_out is not None:
            program.save(program_out)
            result["program"] = str(program_out)
        if onnx_out is not None:
            from dynabit.export import check_onnx, export_onnx

            with _step(f"writing the ONNX model {onnx_out}", as_json):
                export_onnx(program, onnx_out, with_masks=masks)
            result["onnx"] = str(onnx_out)
            if check:
                test = _test_set(dataset, data_dir, subset, program, path)
                if not as_json:
                    typer.echo(
                        f"checking the ONNX model against the engine on {len(test)} test images"
                        f" of {test.name} (--no-check skips it)",
                        err=True,
                    )
                chk = check_onnx(onnx_out, program, test.images, test.labels, progress=not as_json)
                result["check"] = chk.to_dict()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for key in ("program", "onnx"):
        if key in result:
            typer.echo(f"{key:<8} {result[key]}")
    typer.echo(f"layers   {result['layers']} ({result['dynamic_layers']} dynamic)")
    c = result.get("check")
    if c is not None:
        verdict = "OK" if c["ok"] else "MISMATCH"
        typer.echo(
            f"check    {verdict}: onnxruntime top-1 {c['onnx_top1']:.2f} % vs engine "
            f"{c['engine_top1']:.2f} % on {c['samples']} samples; integer logits differing: "
            f"{c['logits_int_mismatches']}, masks differing: {c['mask_mismatches']}, "
            f"max |diff| {c['max_diff_steps']:.3g} dequantization steps"
        )
        if not c["ok"]:
            raise typer.Exit(EXIT_FAILED)


def run_int_command(
    program_path: Annotated[
        Path,
        typer.Argument(help="Integer program (dynabit export), or the run directory holding it."),
    ],
    dataset: Annotated[str | None, typer.Option(help="Dataset (default: the program's).")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Dataset directory.")] = None,
    subset: Annotated[int | None, typer.Option(min=1, help="Only the first N test samples.")] = (
        None
    ),
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per engine batch.")] = 100,
    trace: Annotated[
        Path | None,
        typer.Option(help="Trace file (default: beside the program, .trace.safetensors)."),
    ] = None,
    write_trace: Annotated[
        bool, typer.Option("--write-trace/--no-trace", help="Write the trace file.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate an integer program with the integer engine: top-1, B_avg, trace."""
    from dynabit.engine import evaluate_program, load_program

    if program_path.is_dir() and (program_path / PROGRAM_NAME).is_file():
        program_path = program_path / PROGRAM_NAME  # what `dynabit export RUN` wrote
    with user_errors():
        program = load_program(program_path)
        test = _test_set(dataset, data_dir, subset, program, program_path)
        ev = evaluate_program(
            program, test.images, test.labels, batch_size=batch_size, progress=not as_json
        )
        summary = ev.summary()
        summary.update(program=str(program_path), dataset=test.name)
        if write_trace:
            out = trace or program_path.with_name(program_path.stem + ".trace.safetensors")
            ev.trace.save(out)
            summary["trace"] = str(out)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    done = sum(v["macs_lo_done"] for v in summary["layers"].values())
    dense = sum(v["macs_lo_dense"] for v in summary["layers"].values())
    lines = [
        f"program     {program_path}",
        f"dataset     {test.name} (test, {summary['samples']} samples)",
        f"top-1       {summary['top1']:.2f} %",
        f"B_avg       {summary['b_avg_macs']:.3f} bits (MAC-weighted), "
        f"{summary['b_avg_elements']:.3f} (element-weighted)",
        f"refine      {summary['refine_ratio']:.3f} of low-pass MACs",
        f"low pass    {done:,} of {dense:,} MACs executed",
    ]
    if "trace" in summary:
        lines.append(f"trace       {summary['trace']}")
    for line in lines:
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add the ``export`` and ``run-int`` commands to ``app``."""
    app.command("export")(export_command)
    app.command("run-int")(run_int_command)
