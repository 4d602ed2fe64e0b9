"""``dynabit demo``: the main job with sensible defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dynabit.cli.errors import EXIT_FAILED, stopped_cleanly, user_errors


def demo_command(
    run_dir: Annotated[Path, typer.Option("--run-dir", "-o", help="Run directory.")] = Path(
        "runs/demo"
    ),
    dataset: Annotated[str, typer.Option(help="Dataset (falls back to digits).")] = (
        "fashion-mnist"
    ),
    data_dir: Annotated[str | None, typer.Option(help="Directory of the dataset.")] = None,
    fp32_epochs: Annotated[int, typer.Option(min=1, help="FP32 epochs.")] = 4,
    qat_epochs: Annotated[int, typer.Option(min=1, help="Dynamic QAT epochs.")] = 2,
    budget: Annotated[float, typer.Option(help="Bit budget B_target.")] = 5.0,
    train_subset: Annotated[int | None, typer.Option(min=1, help="First N train images.")] = None,
    test_subset: Annotated[int | None, typer.Option(min=1, help="First N test images.")] = None,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Cap optimizer steps per epoch (smoke runs).")
    ] = None,
    sim_samples: Annotated[
        int, typer.Option(min=1, help="Test images whose decisions the simulation uses.")
    ] = 256,
    hardware: Annotated[
        Path | None, typer.Option(help="Hardware config (YAML/JSON); default 16x16 OS.")
    ] = None,
    fresh: Annotated[bool, typer.Option(help="Refuse to reuse an existing run dir.")] = False,
    progress: Annotated[bool, typer.Option(help="Progress bars.")] = True,
) -> None:
    """Train FP32 then dynamic QAT, check integer parity, simulate, print a summary."""
    from dynabit.config import HardwareConfig, load
    from dynabit.demo import DemoOptions, run_demo, summary_table

    hint = f"continue with: dynabit demo --run-dir {run_dir} (it resumes)"
    with user_errors(), stopped_cleanly(hint):
        opts = DemoOptions(
            run_dir=run_dir,
            dataset=dataset,
            data_dir=data_dir,
            fp32_epochs=fp32_epochs,
            qat_epochs=qat_epochs,
            budget=budget,
            train_subset=train_subset,
            test_subset=test_subset,
            max_steps_per_epoch=max_steps,
            sim_samples=sim_samples,
            hardware=load(HardwareConfig, hardware) if hardware else HardwareConfig(),
            resume=not fresh,
            progress=progress,
        )
        summary = run_demo(opts)
    typer.echo("\n" + summary_table(summary))
    typer.echo("\n" + models_note(summary))
    typer.echo(f"\nrun directory: {run_dir}  (summary.json, simulation.md, parity.json)")
    typer.echo(
        f"next: dynabit eval {run_dir}; dynabit export {run_dir}; dynabit run-int {run_dir}; "
        f"dynabit report {run_dir}  (README, 'Command line')"
    )
    if not summary["parity"]:
        raise typer.Exit(EXIT_FAILED)


def models_note(s: dict) -> str:
    """Which model and which images each accuracy of the table comes from."""
    return (
        f"top-1 FP32, W8A8 and dynamic: the float models on the {s['parity_samples']} test "
        f"images (dynamic = the QAT model, fake-quantized); the frozen integer model in the "
        f"engine gives {s['top1_integer']:.2f} % on the same images (integer rounding of the "
        f"requantisation moves a few predictions); accelerator figures: masks of the first "
        f"{s['sim_samples']} test images."
    )


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command to ``app``."""
    app.command("demo")(demo_command)
