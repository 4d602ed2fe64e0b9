"""The ``simulate`` command, registered on a fresh Typer app."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from dynabit.cli.simulate import register
from dynabit.config.hardware import HardwareConfig
from dynabit.hardware import network_shapes, save_masks, save_shapes, synthetic_masks

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def noop() -> None:  # a second command keeps Typer in multi-command mode
        pass

    return app


def test_named_network_with_synthetic_masks(tmp_path):
    res = runner.invoke(
        _app(),
        [
            "simulate",
            "--network",
            "resnet20",
            "--rows",
            "16",
            "--cols",
            "16",
            "--samples",
            "2",
            "--ratio",
            "0.25",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "speedup" in res.output and "dynamic" in res.output
    data = json.loads((tmp_path / "simulate.json").read_text())
    assert data["hardware"]["rows"] == 16 and "element" in data["runs"] and "region" in data["runs"]
    assert (tmp_path / "simulate.csv").is_file() and (tmp_path / "simulate.md").is_file()


def test_real_masks_and_shapes_from_files(tmp_path):
    hw = HardwareConfig(rows=16, cols=16)
    shapes = network_shapes("resnet20", hw=hw)
    save_shapes(shapes, tmp_path / "s.json")
    save_masks(synthetic_masks(shapes, 0.5, samples=3), tmp_path / "m.npz")
    res = runner.invoke(
        _app(),
        [
            "simulate",
            "--shapes",
            str(tmp_path / "s.json"),
            "--masks",
            str(tmp_path / "m.npz"),
            "--rows",
            "16",
            "--cols",
            "16",
            "--no-region",
            "--out",
            str(tmp_path),
            "--formats",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "simulate.json").read_text())
    assert data["samples"] == 3 and "region" not in data["runs"]


def test_bad_options_fail_clearly():
    res = runner.invoke(_app(), ["simulate", "--rows", "0"])
    assert res.exit_code == 2 and "rows" in res.output
    res = runner.invoke(_app(), ["simulate", "--dataflow", "xs"])
    assert res.exit_code == 2 and "dataflow" in res.output
    res = runner.invoke(_app(), ["simulate", "--network", "vgg99"])
    assert res.exit_code == 2 and "unknown network" in res.output
    res = runner.invoke(_app(), ["simulate", "--ratio", "1.5"])
    assert res.exit_code == 2 and "ratio" in res.output


def test_input_directed_network(tmp_path):
    res = runner.invoke(
        _app(),
        [
            "simulate",
            "--network",
            "resnet20",
            "--rows",
            "16",
            "--cols",
            "16",
            "--samples",
            "1",
            "--decision",
            "input",
            "--no-element",
            "--out",
            str(tmp_path),
            "--formats",
            "json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "simulate.json").read_text())
    assert {row["decision"] for row in data["runs"]["dynamic"]["layers"]} == {"input"}


def test_lanes_add_the_per_area_table(tmp_path):
    args = ["simulate", "--network", "resnet20", "--rows", "8", "--cols", "8", "--samples", "1"]
    res = runner.invoke(_app(), [*args, "--lanes", "8", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "## Per area: designs of the same organisation (8x8, 8 lanes" in res.output
    doc = json.loads((tmp_path / "simulate_per_area.json").read_text())
    assert doc["lanes"] == 8 and set(doc["designs"]) == {"dual", "int8", "int4", "bitserial"}
    assert doc["per_area_vs_int8"]["int8"] == 1.0
    one = runner.invoke(_app(), args)
    assert one.exit_code == 0 and "Per area" not in one.output
    res = runner.invoke(_app(), [*args, "--lanes", "3"])
    assert (
        res.exit_code == 0
        and "per-area table skipped: no area row for dual with 3 lanes" in res.output
    )
    res = runner.invoke(_app(), [*args, "--lanes", "0"])
    assert res.exit_code == 2 and "lanes" in res.output
