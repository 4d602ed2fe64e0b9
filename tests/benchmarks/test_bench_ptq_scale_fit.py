"""The post-training scale-fit benchmark end to end on a tiny digits FP32 run."""

import json

from bench_scripts import load_benchmark
from tiny_runs import tiny_cfg

from dynabit.data import load_dataset
from dynabit.train import evaluate, train


def test_every_method_and_switch_is_calibrated_and_measured(tmp_path) -> None:
    bench = load_benchmark("ptq_scale_fit")
    fp32 = train(tiny_cfg(epochs=1), tmp_path / "fp32")
    out = tmp_path / "ptq.json"
    run = f"small_cnn={tmp_path / 'fp32'}"
    result = bench.main(["--run", run, "--test", "100", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {(r["method"], r["budget"]): r for r in result["rows"]}
    assert len(rows) == 3 + len(bench.BUDGETS) * len(bench.GATING) * len(bench.SWITCHES)
    first_100 = load_dataset("digits", "test", subset=100)
    assert rows[("fp32", 32.0)]["top1"] == evaluate(fp32.model, first_100).top1
    assert rows[("uniform", 4.0)]["b_avg"] == 4.0 and rows[("uniform", 5.0)]["b_avg"] == 5.0
    for (method, budget), r in rows.items():
        if method.split("-")[0] in bench.GATING:
            assert abs(r["b_avg"] - budget) < 0.5, (method, budget, r["b_avg"])
        assert 0.0 <= r["top1"] <= 100.0
