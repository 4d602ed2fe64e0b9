"""``dynabit simulate``: cycles, traffic and energy of a network on the accelerator model.

Wire it into the main app with ``register(app)``. Layer shapes come from a named network
(``--network``) or a JSON file written by ``dynabit.hardware.save_shapes`` (``--shapes``);
masks are synthetic at ``--ratio`` or read from an ``.npz`` written by
``dynabit.hardware.save_masks`` (``--masks``). With ``--checkpoint`` (a trained quantized run)
or ``--program`` (an integer program file) the shapes and the masks come from the decisions
that the first ``--images`` test images of the dataset really produced, in the model or in
the integer engine. The work is :func:`dynabit.hardware.run_simulation`'s (and, for
``--topology``, :func:`dynabit.hardware.scalesim.simulate_scalesim`'s); this module parses the
options, calls it and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dynabit.cli.errors import fail, user_errors

if TYPE_CHECKING:
    from dynabit.hardware.compare import Comparison

FORMATS = ("json", "csv", "md")


def _parse_group(text: str | None) -> tuple[int, int] | str | None:
    if text is None or text == "default":
        return None
    if text == "fit":
        return "fit"
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        fail(f"--group must be 'fit', 'default' or HxW, got {text!r}")
    return (h, w)


MAX_IMAGE_SIZE = 16_384  # --image-size range: 1 .. this (a ResNet stem on 16k pixels)
MEMORY_HINT = "lower --image-size or --samples, or pass --no-element / --no-region"


def simulate_command(
    network: Annotated[str, typer.Option(help="Named network shape: resnet18 | resnet20.")] = (
        "resnet18"
    ),
    shapes_file: Annotated[
        Path | None, typer.Option("--shapes", help="JSON layer shapes (instead of --network).")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Input resolution of --network.")] = None,
    ratio: Annotated[float, typer.Option(help="Synthetic refine ratio in [0, 1].")] = 0.25,
    samples: Annotated[int, typer.Option(help="Synthetic samples (per-sample masks).")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic masks.")] = 0,
    masks_file: Annotated[
        Path | None, typer.Option("--masks", help="Real masks (.npz, layer name -> bool array).")
    ] = None,
    decision: Annotated[
        str, typer.Option(help="Decision source of --network's dynamic layers: output | input.")
    ] = "output",
    hardware: Annotated[
        Path | None, typer.Option(help="Hardware config YAML/JSON (default: packaged one).")
    ] = None,
    rows: Annotated[int | None, typer.Option(help="Override the array rows.")] = None,
    cols: Annotated[int | None, typer.Option(help="Override the array columns.")] = None,
    dataflow: Annotated[str | None, typer.Option(help="Override the dataflow: os|ws|is.")] = None,
    lanes: Annotated[
        int | None,
        typer.Option(
            help="Lanes N per PE (dot-product PEs, one accumulator); adds the per-area table "
            "of the dual, INT8, INT4 and bit-serial designs when the area table has N."
        ),
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Group shape for --network: fit | default | HxW.")
    ] = "fit",
    element: Annotated[
        bool, typer.Option(help="Add per-element gating at the same ratio (synthetic).")
    ] = True,
    region: Annotated[
        bool, typer.Option(help="Add DRQ-style region gating at the same ratio (synthetic).")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Folder for the reports.")] = None,
    formats: Annotated[str, typer.Option(help="Comma list of json,csv,md.")] = "json,csv,md",
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Trained quantized run, checkpoint or demo directory: real masks."),
    ] = None,
    program: Annotated[
        Path | None, typer.Option(help="Integer program file: masks from the engine.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset of the images (default: the model's).")
    ] = None,
    data_dir: Annotated[str | None, typer.Option(help="Directory of the dataset.")] = None,
    images: Annotated[int, typer.Option(min=1, help="Test images for real masks.")] = 64,
    topology: Annotated[
        Path | None, typer.Option(help="SCALE-Sim topology CSV (with --scalesim-config).")
    ] = None,
    scalesim_config: Annotated[
        Path | None, typer.Option(help="SCALE-Sim .cfg file (with --topology).")
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option(help="Folder for SCALE-Sim-style CSV reports.")
    ] = None,
) -> None:
    """Simulate a network with real or synthetic masks and compare it with the baselines."""
    if topology is not None or scalesim_config is not None:
        _scalesim(topology, scalesim_config, report_dir)
        return
    from dynabit.hardware import MaskMemoryError, run_simulation, to_csv, to_json, to_markdown

    wanted = [f.strip() for f in formats.split(",") if f.strip()]
    bad = sorted(set(wanted) - set(FORMATS))
    if bad:
        fail(f"unknown format(s) {bad}; allowed: {list(FORMATS)}")
    if decision not in ("output", "input"):
        fail(f"--decision must be output or input, got {decision!r}")
    if checkpoint is not None and program is not None:
        fail("give --checkpoint or --program, not both")
    if image_size is not None and not 1 <= image_size <= MAX_IMAGE_SIZE:
        fail(f"--image-size must lie in [1, {MAX_IMAGE_SIZE}], got {image_size}")
    if samples < 1:
        fail(f"--samples must be >= 1, got {samples}")
    if not 0.0 <= ratio <= 1.0:
        fail(f"--ratio must lie in [0, 1], got {ratio}")
    real = checkpoint or program
    # --group describes a named network's layers only
    parsed_group = _parse_group(group) if real is None and shapes_file is None else None
    with user_errors(ValueError, KeyError):
        try:
            sim = run_simulation(
                real,
                network=network,
                shapes=shapes_file,
                masks=masks_file,
                image_size=image_size,
                group=parsed_group,  # type: ignore[arg-type]
                decision=decision,  # type: ignore[arg-type]
                ratio=ratio,
                samples=samples,
                seed=seed,
                hardware=hardware,
                rows=rows,
                cols=cols,
                dataflow=dataflow,
                lanes=lanes,
                dataset=dataset,
                data_dir=data_dir,
                images=images,
                element=element,
                region=region,
            )
        except MaskMemoryError as e:
            fail(f"{e}; {MEMORY_HINT}")

    if sim.masks_note is not None:
        typer.echo(sim.masks_note)
    typer.echo(to_markdown(sim.result))
    per_area = _per_area(sim.result) if lanes is not None else None
    if out is not None:
        with user_errors():
            out.mkdir(parents=True, exist_ok=True)
            writers = {"json": to_json, "csv": to_csv, "md": to_markdown}
            for fmt in wanted:
                writers[fmt](sim.result, out / f"simulate.{fmt}")
            if per_area is not None:
                (out / "simulate_per_area.json").write_text(json.dumps(per_area, indent=2) + "\n")
        typer.echo(f"wrote {', '.join(f'simulate.{f}' for f in wanted)} to {out}")


def _per_area(result: Comparison) -> dict | None:
    """The comparison's per-area table of the four designs at its lanes (printed), or a note
    why there is none."""
    from dynabit.hardware.iso_area import designs_markdown

    res = result.per_area
    if res is None:
        typer.echo(f"per-area table skipped: {result.per_area_note}")
        return None
    typer.echo(designs_markdown(res))
    return res


def _scalesim(topology: Path | None, cfg: Path | None, report_dir: Path | None) -> None:
    """``--topology`` + ``--scalesim-config``: a SCALE-Sim run in dense mode, its reports."""
    from dynabit.hardware import to_markdown
    from dynabit.hardware.scalesim import simulate_scalesim

    if topology is None or cfg is None:
        fail("--topology and --scalesim-config go together; give both")
    with user_errors(ValueError):
        result = simulate_scalesim(topology, cfg, report_dir)
    typer.echo(to_markdown(result))
    if report_dir is not None:
        typer.echo(f"wrote SCALE-Sim reports to {report_dir}")


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""
    app.command("simulate")(simulate_command)
