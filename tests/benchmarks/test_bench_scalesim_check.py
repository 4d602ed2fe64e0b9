"""The SCALE-Sim cross-check's summary from a cache of SCALE-Sim runs (``--partial``: none run)."""

import json
from pathlib import Path

from bench_scripts import load_benchmark

from dynabit.hardware.scalesim import EXAMPLES, ScaleSimConfig, format_topology, read_topology
from dynabit.hardware.simulator import simulate
from dynabit.utils.ledger import Ledger

ARGS = ["--networks", "alexnet:3", "--dataflows", "os", "--bandwidths", "50"]


def _cache(root: Path, i: int, layer, conf, total: int, stall: int, cpu: float | None) -> None:
    """One cached SCALE-Sim case as the benchmark's driver leaves it."""
    d = root / f"alexnet_os_bw50_a32_kb64_{i:02d}"
    (d / "out").mkdir(parents=True)
    (d / "topo.csv").write_text(format_topology([layer]))
    (d / "scale.cfg").write_text(conf.to_text())
    res = {"compute_report": [i, total, total, stall, 1.0, 1.0, 1.0], "seconds": 30.0}
    if cpu is not None:
        res["cpu_seconds"] = cpu
    (d / "out" / "result.json").write_text(json.dumps(res))


def test_partial_summary_from_the_cache_without_running_scalesim(tmp_path):
    bench = load_benchmark("scalesim_check")
    layers = read_topology(EXAMPLES / "alexnet.csv")[:3]
    conf = ScaleSimConfig("alexnet_os_50", 32, 32, 64, 64, 64, "os", 50, True, 50, 50)
    hw = conf.hardware()
    ours = [simulate([la.shape()], hw=hw, mode="dense", memory="scalesim") for la in layers[:2]]
    comp = [int(r.compute_cycles[0, 0]) for r in ours]
    stall = [int(r.stall_cycles[0, 0]) for r in ours]
    cache = tmp_path / "cache"
    # case 0 agrees; case 1 has 10 % more stall cycles; case 2 was run on another config
    _cache(cache, 0, layers[0], conf, comp[0] + stall[0], stall[0], 20.0)
    ref1 = round(stall[1] * 1.1) if stall[1] else 10
    _cache(cache, 1, layers[1], conf, comp[1] + ref1, ref1, 40.0)
    other = ScaleSimConfig("x", 32, 32, 64, 64, 64, "os", 10, True, 10, 10)
    _cache(cache, 2, layers[2], other, 100, 0, 1.0)
    out = tmp_path / "s.json"
    summary = bench.main([*ARGS, "--partial", "--cache", str(cache), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    assert (summary["layers"], summary["cases_expected"], summary["complete"]) == (2, 3, False)
    assert summary["compute_exact"] == summary["compute_total"] == 2
    assert abs(summary["stall_max_rel_error"] - abs(stall[1] - ref1) / max(ref1, 1)) < 1e-12
    assert summary["speedup_basis"] == "cpu"
    assert summary["speedup_vs_scalesim"] == 60.0 / summary["cpu_seconds_ours"]
    # the stale case is skipped, not rerun or rewritten (--partial only reads the cache)
    assert (cache / "alexnet_os_bw50_a32_kb64_02" / "scale.cfg").read_text() == other.to_text()
    # a cached run without CPU time makes the speedup a wall-time ratio
    (cache / "alexnet_os_bw50_a32_kb64_02").rename(tmp_path / "stale")
    _cache(cache, 2, layers[2], conf, 100, 0, None)
    summary = bench.main([*ARGS, "--partial", "--cache", str(cache), "--out", str(out)])
    assert summary["complete"] and summary["layers"] == 3
    assert summary["speedup_basis"] == "wall"
    assert summary["speedup_vs_scalesim"] == 90.0 / summary["seconds_ours"]


def test_ledger_keeps_finished_cases_for_a_fresh_checkout(tmp_path):
    bench = load_benchmark("scalesim_check")
    layer = read_topology(EXAMPLES / "alexnet.csv")[0]
    conf = ScaleSimConfig("alexnet_os_50", 32, 32, 64, 64, 64, "os", 50, True, 50, 50)
    cache, path = tmp_path / "cache", tmp_path / "ledger.jsonl"
    _cache(cache, 0, layer, conf, 1000, 10, 2.0)
    key = "alexnet_os_bw50_a32_kb64_00"
    hit = bench.cached_layer(cache, key, layer, conf, Ledger(path))
    assert hit["compute_report"][3] == 10 and len(path.read_text().splitlines()) == 1
    # the cache folder is gone (a fresh checkout): the ledger answers, for these inputs only
    fresh = Ledger(path)
    assert bench.cached_layer(tmp_path / "empty", key, layer, conf, fresh) == hit
    other = ScaleSimConfig("alexnet_os_10", 32, 32, 64, 64, 64, "os", 10, True, 10, 10)
    assert bench.cached_layer(tmp_path / "empty", key, layer, other, fresh) is None
    # a case is recorded once
    bench.cached_layer(cache, key, layer, conf, fresh)
    assert len(path.read_text().splitlines()) == 1
