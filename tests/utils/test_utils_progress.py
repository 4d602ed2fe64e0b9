"""Progress off a terminal: plain, throttled lines; the elapsed-time ticker; calibration's bar."""

from __future__ import annotations

import re
import time

import torch

from dynabit.config import QuantConfig
from dynabit.models import build_model
from dynabit.quant import calibrate, dynamic_layers, prepare
from dynabit.utils import progress


def test_bar_in_a_log_is_a_few_plain_lines(capsys) -> None:
    for _ in progress.progress_bar(range(5000), desc="work"):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b[" not in err
    lines = err.splitlines()
    assert 1 <= len(lines) <= 3, lines  # throttled: not one line per item
    assert re.search(r"work: 100%.*5000/5000", lines[-1]), lines


def test_busy_ticks_in_plain_lines_and_ends_with_one(capsys, monkeypatch) -> None:
    monkeypatch.setattr(progress, "LOG_INTERVAL_S", 0.2)
    with progress.busy("synthesis"):
        time.sleep(0.7)
    lines = capsys.readouterr().err.splitlines()
    assert all(re.fullmatch(r"synthesis: 00:0\d elapsed", line) for line in lines), lines
    assert 1 <= len(lines) <= 2  # repeats of the same second are dropped
    with progress.busy("quiet", disable=True):
        pass
    assert capsys.readouterr().err == ""


def test_calibration_counts_its_forward_passes(capsys) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=1, num_classes=10, image_size=8, width=8)
    qmodel = prepare(model, QuantConfig(hardware={"rows": 4, "cols": 4}))
    batches = [torch.rand(16, 1, 8, 8) for _ in range(3)]
    calibrate(qmodel, batches, progress=True)
    passes = 3 * (1 + len(dynamic_layers(qmodel)))
    err = capsys.readouterr().err
    assert re.search(rf"calibration: 100%.*{passes}/{passes}", err), err
    calibrate(qmodel, batches)  # quiet by default (the Python API)
    assert capsys.readouterr().err == ""
