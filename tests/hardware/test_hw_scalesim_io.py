"""SCALE-Sim topology and .cfg readers, report writers and the CLI flags (no SCALE-Sim needed)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from dynabit.cli.simulate import register
from dynabit.hardware import dense_formula, network_shapes
from dynabit.hardware.scalesim import (
    EXAMPLES,
    REPORT_FILES,
    ScaleSimConfigError,
    TopologyError,
    format_topology,
    from_shape,
    parse_cfg,
    parse_topology,
    read_cfg,
    read_report,
    read_topology,
    simulate_scalesim,
    topology_shapes,
)
from dynabit.hardware.scalesim.reports import (
    BANDWIDTH_HEADER,
    COMPUTE_HEADER,
    DETAIL_HEADER,
    header_columns,
)

CONV = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
    "Strides,\n"
    "Conv1, 10, 12, 3, 3, 4, 40, 1,\n"
    "Conv2, 9, 9, 3, 3, 40, 8, 2,\n"
)
CFG = """[general]
run_name = t

[architecture_presets]
ArrayHeight:    8
ArrayWidth:     4
IfmapSramSzkB:   2
FilterSramSzkB:  3
OfmapSramSzkB:   1
Bandwidth : 5
Dataflow : {df}

[run_presets]
InterfaceBandwidth: USER
"""


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command()
    def noop() -> None:
        pass

    return app


def test_conv_rows_become_unpadded_shapes():
    layers = parse_topology(CONV, "t.csv")
    assert [la.name for la in layers] == ["Conv1", "Conv2"]
    assert layers[0].ofmap_hw == (8, 10)
    assert layers[1].ofmap_hw == (4, 4)  # ceil((9 - 3 + 2) / 2), SCALE-Sim's convention
    s = layers[1].shape()
    assert (s.in_channels, s.out_channels, s.kernel, s.stride, s.padding) == (
        40,
        8,
        (3, 3),
        (2, 2),
        (0, 0),
    )
    assert s.out_hw == (4, 4) and not s.dynamic


def test_gemm_form_is_a_1xk_filter_over_an_mxk_map():
    layers = parse_topology("Layer, M, N, K,\nfc, 7, 30, 100,\n", "g.csv")
    s = layers[0].shape()
    assert (s.pixels, s.window, s.channels_per_group) == (7, 100, 30)


def test_depthwise_rows_split_per_channel_as_scalesim_does():
    text = CONV.splitlines()[0] + "\nDP1, 6, 6, 3, 3, 3, 1, 1,\n"
    assert [la.name for la in parse_topology(text)] == [f"DP1Channel_{i}" for i in range(3)]


def test_round_trip_through_text_and_from_named_network(tmp_path):
    layers = parse_topology(CONV)
    assert parse_topology(format_topology(layers)) == layers
    shapes = network_shapes("resnet18")
    rows = [from_shape(s) for s in shapes]
    p = tmp_path / "r18.csv"
    p.write_text(format_topology(rows))
    back = topology_shapes(p)
    assert [b.out_hw for b in back] == [s.out_hw for s in shapes]
    assert [b.macs for b in back] == [s.macs for s in shapes]


@pytest.mark.parametrize(
    "row, where, what",
    [
        ("Conv1, 10, 12, x, 3, 4, 40, 1,", ":2:4:", "Filter Height"),
        ("Conv1, 10, 12, 3, 3, 0, 40, 1,", ":2:6:", "Channels must be >= 1"),
        ("Conv1, 10, 12, 3,", ":2:5:", "expected 8"),
        ("Conv1, 2, 12, 3, 3, 4, 40, 1,", ":2:4:", "exceeds IFMAP height"),
        ("Conv1, 10, 12, 3, 3, 4, 40, 1, 2:4,", ":2:9:", "sparsity"),
        (", 10, 12, 3, 3, 4, 40, 1,", ":2:1:", "empty layer name"),
    ],
)
def test_malformed_rows_name_file_line_and_column(row, where, what):
    text = CONV.splitlines()[0] + "\n" + row + "\n"
    with pytest.raises(TopologyError) as e:
        parse_topology(text, "bad.csv")
    assert str(e.value).startswith("bad.csv" + where) and what in str(e.value)


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(TopologyError, match="cannot read"):
        read_topology(tmp_path / "nope.csv")
    (tmp_path / "e.csv").write_text("\n")
    with pytest.raises(TopologyError, match="empty topology"):
        read_topology(tmp_path / "e.csv")


def test_cfg_to_hardware_config():
    conf = parse_cfg(CFG.format(df="ws"), "a.cfg")
    hw = conf.hardware()
    assert (hw.rows, hw.cols, hw.dataflow, hw.word_bits) == (8, 4, "ws", 8)
    assert (hw.input_buffer_kib, hw.weight_buffer_kib, hw.output_buffer_kib) == (2, 3, 1)
    assert hw.dram_words_per_cycle == 5 and conf.user_bandwidth
    assert conf.ifmap_bandwidth == conf.filter_bandwidth == 5  # no [layout]: Bandwidth
    assert parse_cfg(conf.to_text()) == conf


def test_packaged_examples_parse():
    assert len(read_topology(EXAMPLES / "resnet18.csv")) == 21
    assert len(read_topology(EXAMPLES / "alexnet.csv")) == 8
    conf = read_cfg(EXAMPLES / "scale_32x32_ws.cfg")
    assert (conf.rows, conf.ifmap_kb, conf.bandwidth, conf.dataflow) == (32, 64, 10, "ws")


@pytest.mark.parametrize(
    "old, new, where, what",
    [
        ("Dataflow : ws", "Dataflow : xs", ":11:12", "os, ws or is"),
        ("ArrayWidth:     4", "ArrayWidth:     four", ":6:17", "ArrayWidth must be a positive"),
        ("Bandwidth : 5", "Bandwidth : 0", ":10:13", "Bandwidth must be >= 1"),
        ("InterfaceBandwidth: USER", "InterfaceBandwidth: MAX", ":14:21", "USER or CALC"),
        ("OfmapSramSzkB:   1\n", "", ":1:1", "missing [architecture_presets] OfmapSramSzkB"),
    ],
)
def test_cfg_errors_name_line_and_column(old, new, where, what):
    text = CFG.format(df="ws").replace(old, new)
    with pytest.raises(ScaleSimConfigError) as e:
        parse_cfg(text, "bad.cfg")
    assert str(e.value).startswith("bad.cfg" + where) and what in str(e.value)


@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_reports_keep_scalesim_columns_and_dense_cycles(tmp_path, df):
    (tmp_path / "t.csv").write_text(CONV)
    (tmp_path / "a.cfg").write_text(CFG.format(df=df))
    res = simulate_scalesim(tmp_path / "t.csv", tmp_path / "a.cfg", tmp_path / "rep")
    for name, header in zip(
        REPORT_FILES, (COMPUTE_HEADER, BANDWIDTH_HEADER, DETAIL_HEADER), strict=True
    ):
        text = (tmp_path / "rep" / name).read_text()
        assert text.splitlines()[0] == header
        assert all(line.endswith(",") for line in text.splitlines())
    cols, rows = read_report(tmp_path / "rep" / "COMPUTE_REPORT.csv")
    assert cols == header_columns(COMPUTE_HEADER) and len(cols) == 7
    assert cols[:4] == ["LayerID", "Total Cycles (incl. prefetch)", "Total Cycles", "Stall Cycles"]
    hw = read_cfg(tmp_path / "a.cfg").hardware()
    for row, s, stall in zip(
        rows, topology_shapes(tmp_path / "t.csv"), res.stall_cycles[:, 0], strict=True
    ):
        assert row[2] - row[3] == dense_formula(s, hw)  # total - stall = SCALE-Sim's compute
        assert row[3] == stall
    cols_d, rows_d = read_report(tmp_path / "rep" / "DETAILED_ACCESS_REPORT.csv")
    assert len(cols_d) == 19 and len(rows_d[0]) == 19
    assert (tmp_path / "rep" / "DYNABIT_REPORT.csv").read_text().startswith("mode,layer,")


def test_cli_flags_end_to_end(tmp_path):
    res = _run_files(tmp_path, CONV, "--report-dir", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    assert "Conv1" in res.output and "Conv2" in res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [*REPORT_FILES, "DYNABIT_REPORT.csv"]
    )


def test_cli_bad_row_is_one_error_line_exit_2(tmp_path):
    res = _run_files(tmp_path, CONV.replace("Conv2, 9,", "Conv2, nine,"))
    assert res.exit_code == 2
    assert f"error: {tmp_path / 't.csv'}:3:2: IFMAP Height" in res.output
    res = runner_invoke(["simulate", "--topology", str(tmp_path / "t.csv")])
    assert res.exit_code == 2 and "give both" in res.output


def _run_files(tmp_path, topo: str, *extra: str):
    (tmp_path / "t.csv").write_text(topo)
    (tmp_path / "a.cfg").write_text(CFG.format(df="os"))
    args = ["--topology", str(tmp_path / "t.csv"), "--scalesim-config", str(tmp_path / "a.cfg")]
    return runner_invoke(["simulate", *args, *extra])


def runner_invoke(args: list[str]):
    return CliRunner().invoke(_app(), args)
