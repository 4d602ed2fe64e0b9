"""The package's public surface: one entry point per stage, the rest imported on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dynabit
import dynabit.quant


@pytest.mark.parametrize("name", dynabit.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert callable(getattr(dynabit, name))


def test_each_stage_has_its_entry_point() -> None:
    stages = {
        "quantize": ("prepare", "calibrate", "convert"),
        "train": ("run_training",),
        "engine": ("lower", "evaluate_program"),
        "simulate": ("run_simulation", "simulate_run"),
        "export": ("export_onnx",),
    }
    for names in stages.values():
        assert set(names) <= set(dynabit.__all__)
    with pytest.raises(AttributeError, match="no_such_entry"):
        dynabit.no_such_entry  # noqa: B018


def test_later_stages_are_imported_on_first_use() -> None:
    code = (
        "import sys, dynabit; "
        "print(sorted(m for m in ('dynabit.train', 'dynabit.hardware', 'dynabit.engine', "
        "'dynabit.export') if m in sys.modules)); "
        "dynabit.run_simulation; print('dynabit.hardware' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True"


def test_quant_exports_the_method_not_its_internals() -> None:
    internal = {
        "QuantLayerMixin",
        "Grid",
        "ActQuantizer",
        "quantize_weight",
        "split_codes",
        "round_ste",
        "budget_layers",
        "stats_state",
        "load_stats_state",
    }
    assert not internal & set(dynabit.quant.__all__)
    assert all(hasattr(dynabit.quant, n) for n in dynabit.quant.__all__)
