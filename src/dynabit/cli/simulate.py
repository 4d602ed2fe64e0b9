"""``dynabit simulate``: cycles, traffic and energy of a network on the accelerator model.

Wire it into the main app with ``register(app)``. Layer shapes come from a named network
(``--network``) or a JSON file written by ``dynabit.hardware.save_shapes`` (``--shapes``);
masks are synthetic at ``--ratio`` or read from an ``.npz`` written by
``dynabit.hardware.save_masks`` (``--masks``). Running a checkpoint or an integer program
directly is not available yet: ``dynabit.hardware.trace_model(model, images, hw)`` gives the
shapes and masks of a prepared model, which those two functions write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

FORMATS = ("json", "csv", "md")


def _parse_group(text: str | None) -> tuple[int, int] | str | None:
    if text is None or text == "default":
        return None
    if text == "fit":
        return "fit"
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise typer.BadParameter(f"--group must be 'fit', 'default' or HxW, got {text!r}") from None
    return (h, w)


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
) -> None:
    """Simulate a network with real or synthetic masks and compare it with the baselines."""
    from dynabit.config.hardware import HardwareConfig
    from dynabit.config.io import ConfigError, load, validate
    from dynabit.hardware import (
        compare,
        load_masks,
        load_shapes,
        network_shapes,
        synthetic_masks,
        to_csv,
        to_json,
        to_markdown,
    )
    from dynabit.hardware.masks import mask_ratio

    wanted = [f.strip() for f in formats.split(",") if f.strip()]
    bad = sorted(set(wanted) - set(FORMATS))
    if bad:
        raise typer.BadParameter(f"unknown format(s) {bad}; allowed: {list(FORMATS)}")
    if decision not in ("output", "input"):
        raise typer.BadParameter(f"--decision must be output or input, got {decision!r}")
    try:
        path = hardware or Path(__file__).resolve().parents[1] / "configs" / "hardware_default.yaml"
        hw = load(HardwareConfig, path)
        over = {
            k: v
            for k, v in {"rows": rows, "cols": cols, "dataflow": dataflow}.items()
            if v is not None
        }
        if over:
            hw = validate(HardwareConfig, {**hw.model_dump(), **over}, "command line")
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None

    try:
        if shapes_file is not None:
            shapes = load_shapes(shapes_file)
        else:
            shapes = network_shapes(
                network,
                image_size=image_size,
                hw=hw,
                group=_parse_group(group),  # type: ignore[arg-type]
                decision=decision,  # type: ignore[arg-type]
            )
        if masks_file is not None:
            masks = load_masks(masks_file)
            ratio = mask_ratio(shapes, masks)  # baselines on the real masks' budget
        else:
            masks = synthetic_masks(shapes, ratio, samples, seed)
        n = next(iter(masks.values())).shape[0] if masks else samples
        elem = synthetic_masks(shapes, ratio, n, seed + 1, kind="element") if element else None
        reg = synthetic_masks(shapes, ratio, n, seed + 2, kind="region") if region else None
        result = compare(shapes, masks, hw, element_masks=elem, region_masks=reg)
    except (ValueError, KeyError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None

    typer.echo(to_markdown(result))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        writers = {"json": to_json, "csv": to_csv, "md": to_markdown}
        for fmt in wanted:
            writers[fmt](result, out / f"simulate.{fmt}")
        typer.echo(f"wrote {', '.join(f'simulate.{f}' for f in wanted)} to {out}")


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""
    app.command("simulate")(simulate_command)
