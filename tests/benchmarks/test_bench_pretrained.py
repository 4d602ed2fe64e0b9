"""benchmarks/pretrained.py: the row schema on a tiny subset, resuming, the missing-data error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scripts import load_benchmark

ROW_KEYS = {
    "net",
    "method",
    "budget",
    "b_avg",
    "top1_agree_mean",
    "top1_agree_std",
    "top5_agree_mean",
    "kl_mean",
    "kl_std",
    "seeds",
    "eval_photos",
    "eval_crops",
    "calibration",
}


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("pretrained")


@pytest.mark.slow
def test_tiny_run_rows_and_resume(bench, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "pretrained.json"
    args = ["--nets", "efficientnet-lite0", "--uniform-bits", "8", "--methods", "dynabit"]
    args += ["--budgets", "5", "--seeds", "2", "--calib-photos", "1", "--eval-photos", "1"]
    args += ["--image-size", "64", "--threads", "1", "--out", str(out)]
    result = bench.main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["complete"] and len(result["runs"]) == 4
    rows = {(r["method"], r["budget"]): r for r in result["rows"]}
    assert set(rows) == {("uniform", 8.0), ("dynabit", 5.0)}
    for r in rows.values():
        assert set(r) == ROW_KEYS and r["seeds"] == 2 and r["net"] == "efficientnet-lite0"
        assert (r["eval_photos"], r["eval_crops"]) == (1, 10)
        assert 0 <= r["top1_agree_mean"] <= r["top5_agree_mean"] <= 1 and r["kl_mean"] >= 0
    assert rows[("uniform", 8.0)]["b_avg"] == 8.0
    assert 4.0 < rows[("dynabit", 5.0)]["b_avg"] < 5.5
    # the two seeds calibrate on different photos, so at least one figure differs
    runs = result["runs"]
    seed0, seed1 = runs["efficientnet-lite0|dynabit|5|0"], runs["efficientnet-lite0|dynabit|5|1"]
    assert seed0 != seed1
    # the same command again finds every run done and recomputes nothing
    monkeypatch.setattr(bench, "quantize_training_free", lambda *a, **k: 1 / 0)
    again = bench.main(args)
    assert again["runs"] == result["runs"]


def test_missing_photo_packages_are_one_error_line(bench, tmp_path: Path, capsys) -> None:
    code = bench.cli(["--stamps-dir", str(tmp_path / "none"), "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: photos: Tux Paint stamps")
    assert "apt-get install tuxpaint-stamps-default mate-backgrounds" in err[0]
    assert not (tmp_path / "x.json").exists()


def test_bad_options_are_refused(bench) -> None:
    with pytest.raises(SystemExit) as e:
        bench.parse(["--nets", "resnet50"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        bench.parse(["--uniform-bits", "4.5"])
