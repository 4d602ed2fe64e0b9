"""Dataflows as objects: the registry matches the config's literal, and every registered
dataflow answers every question the model asks of it."""

from __future__ import annotations

from typing import get_args

import pytest

from dynabit.config.dataflow import DATAFLOWS, dataflow_for
from dynabit.config.hardware import Dataflow, HardwareConfig


def test_literal_and_registry_name_the_same_dataflows() -> None:
    assert set(get_args(Dataflow)) == set(DATAFLOWS)
    assert all(DATAFLOWS[n].name == n for n in DATAFLOWS)
    with pytest.raises(ValueError, match="unknown dataflow 'rs'; allowed: os, ws, is"):
        dataflow_for("rs")


@pytest.mark.parametrize("name", sorted(DATAFLOWS))
def test_scalesim_report_columns_of_each_dataflow(name: str) -> None:
    from dynabit.hardware.mapping import fold_plan
    from dynabit.hardware.shapes import LayerShape

    shape = LayerShape("c", "conv", 3, 10, (6, 6), (6, 6), kernel=(3, 3), padding=(1, 1))
    hw = HardwareConfig(rows=4, cols=4, dataflow=name)
    plan = fold_plan(shape, hw)
    flow = hw.flow
    ifmap, filt = flow.sram_reads(plan)
    used = float((plan.rows_used * plan.cols_used).sum())
    streamed = float((plan.rows_used * plan.t).sum())
    # the operand held in the array is read once per PE; the streamed one once per step
    expected = {"os": (streamed, float((plan.cols_used * plan.t).sum())), "ws": (streamed, used)}
    assert (ifmap, filt) == expected.get(name, (used, streamed))
    span = flow.report_span(plan, hw.cols)
    assert span == plan.fill + plan.t + (0 if name == "os" else hw.cols - 1)
