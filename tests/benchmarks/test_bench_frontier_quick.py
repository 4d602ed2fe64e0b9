"""The frontier benchmark: its full plan, and ``--quick`` end to end on digits."""

import json
import shutil
from pathlib import Path

import pytest
from bench_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
ARCHS = ("small_cnn", "resnet20", "mobilenet_v2")
ROW_TYPES = {
    "arch": str,
    "method": str,
    "budget": float,
    "top1_mean": float,
    "top1_std": float,
    "b_avg": float,
    "seeds": int,
}


@pytest.fixture(scope="module")
def frontier():
    return load_benchmark("frontier")


def test_full_plan_covers_the_issue(frontier) -> None:
    args = frontier.resolve(frontier.build_parser().parse_args([]))
    assert Path(args.out_dir) == ROOT / "benchmarks" / "results"
    points = frontier.plan(args)
    assert {p.arch for p in points} == set(ARCHS)
    fp32 = [p for p in points if p.is_fp32]
    assert len(fp32) == 3  # one FP32 model per architecture
    for arch in ARCHS:
        for seed in (0, 1, 2):
            have = {(p.method, p.budget) for p in points if p.arch == arch and p.seed == seed}
            for m in ("dynabit", "pg", "drq"):
                assert {(m, b) for b in (4.5, 5.0, 6.0)} <= have
                assert (f"{m}-midpoint-dual", 5.0) in have
            assert {("mixed", b) for b in (4.5, 5.0, 6.0)} <= have
            assert {("uniform", float(b)) for b in (4, 5, 6, 8)} <= have
            assert {("dynabit-input", 5.0), ("dynabit-midpoint-dual-input", 5.0)} <= have
    # Every point's config validates: same recipe, QAT warm-started from the arch's FP32 run.
    # (A mixed point's config is measured on its trained FP32 parent: test_bench_frontier_mixed.)
    for p in points:
        if p.method == "mixed":
            continue
        cfg = frontier.run_config(args, p)
        assert cfg.train.dataset == "fashion-mnist" and cfg.train.quantize == (not p.is_fp32)
        if not p.is_fp32:
            assert cfg.train.init_from.endswith(f"{p.arch}/fp32")
            t = cfg.train
            assert (t.lr, t.epochs, t.max_steps_per_epoch, t.batch_size) == (0.005, 1, 200, 128)
            assert cfg.quant.method == p.method.split("-")[0]
    quick = frontier.resolve(frontier.build_parser().parse_args(["--quick"]))
    assert quick.dataset == "digits" and "benchmarks" not in quick.out_dir


def test_quick_runs_end_to_end_and_resumes(frontier, tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    argv = ["--quick", "--run-root", str(tmp_path / "runs"), "--out-dir", str(out)]
    report = frontier.main(argv)
    data = json.loads((out / "frontier.json").read_text())
    assert data == json.loads(json.dumps(report))
    assert data["command"].startswith("python benchmarks/frontier.py --quick")
    assert data["complete"] and data["points_done"] == data["points_total"]
    rows = data["rows"]
    for row in rows:
        for key, typ in ROW_TYPES.items():
            assert isinstance(row[key], typ), (key, row)
        assert row["method"].split("-")[0] in {"fp32", "uniform", "mixed", "pg", "drq", "dynabit"}
        assert 0.0 <= row["top1_mean"] <= 100.0 and row["seeds"] == 1
        assert row["bops"] > 0 and row["macs"] > 0
    for arch in ARCHS:
        methods = {r["method"] for r in rows if r["arch"] == arch}
        assert {"fp32", "uniform", "mixed", "pg", "drq", "dynabit"} <= methods
        for r in rows:
            if r["arch"] == arch and r["method"] == "uniform":
                assert r["b_avg"] == r["budget"]  # uniform W8A<b> measures exactly b bits
            elif r["arch"] == arch and r["method"] == "mixed":  # static A4/A8 per layer
                assert 4.0 <= r["b_avg"] <= r["budget"] + 1e-9 and r["refine_ratio"] is None
            elif r["arch"] == arch and r["method"] != "fp32":
                assert 4.0 <= r["b_avg"] <= 8.0 and r["refine_ratio"] is not None
        png = (out / f"frontier_{arch}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert "dynabit-midpoint-dual-input" in methods and "dynabit-input" in methods
        table = [t for t in data["default_method"] if t["arch"] == arch]
        w8a4, w8a8 = (
            next(r["top1_mean"] for r in rows if r["arch"] == arch and r["method"] == "uniform"
                 and r["budget"] == b)
            for b in (4.0, 8.0)
        )  # fmt: skip
        default = next(t for t in table if t["default"])
        assert default["method"] == "dynabit" and default["budget"] == 5.0
        assert default["gap_w8a4"] == pytest.approx(default["top1_mean"] - w8a4)
        assert default["gap_w8a8"] == pytest.approx(default["top1_mean"] - w8a8)
    run_point = frontier.run_point
    drq = json.loads((tmp_path / "runs/resnet20/drq-b5/seed0/result.json").read_text())
    assert set(drq["as_trained"]) == {"top1", "b_avg"}  # DRQ thresholds set again after QAT
    assert (tmp_path / "runs/resnet20/drq-b5/seed0/recalibrated.safetensors").is_file()
    md = (out / "frontier.md").read_text()
    assert "| arch | method | budget |" in md and "Targets at B_target = 5" in md
    assert "## mobilenet_v2: dynabit against uniform W8A4 and W8A8" in md
    assert any(c["method"] == "dynabit" for c in data["checks"])

    # A second launch finds every point finished and trains nothing.
    def no_training(*_args, **_kw):
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr(frontier, "run_point", no_training)
    again = frontier.main(argv)
    assert again["rows"] == data["rows"]

    # Every finished point is a ledger line: on a fresh machine (no run directories, no
    # report) the same command takes the points from it and trains nothing.
    ledger = out / "frontier_ledger.jsonl"
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    args = frontier.resolve(frontier.build_parser().parse_args(argv))
    points = frontier.plan(args)
    assert sorted(x["key"] for x in lines) == sorted(p.key for p in points)
    assert all(x["recipe"] == {"dataset": "digits", **frontier.recipe(args)} for x in lines)
    shutil.rmtree(tmp_path / "runs")
    (out / "frontier.json").unlink()
    fresh = frontier.main(argv)
    assert fresh["complete"] and fresh["rows"] == data["rows"]

    # A point missing from the ledger (a line cut short by a stop is skipped) is trained
    # again, after its FP32 parent, which is trained again because its run directory is gone.
    shutil.rmtree(tmp_path / "runs")
    (out / "frontier.json").unlink()
    lost = "mobilenet_v2/uniform-b4/seed0"
    kept = [json.dumps(x) for x in lines if x["key"] != lost]
    ledger.write_text("\n".join(kept) + "\n" + '{"key": "' + lost)
    trained: list[str] = []

    def train(args, p):
        trained.append(p.key)
        return run_point(args, p)

    monkeypatch.setattr(frontier, "run_point", train)
    monkeypatch.setattr(frontier, "_LEDGERS", {})  # a new process reads the file again
    resumed = frontier.main(argv)
    assert trained == ["mobilenet_v2/fp32", lost]
    assert resumed["complete"] and "fp32_retrained" not in resumed  # the same FP32 model
    row = next(r for r in resumed["rows"] if r["arch"] == "mobilenet_v2" and r["budget"] == 4.0)
    assert row["top1_mean"] == pytest.approx(
        next(r for r in data["rows"] if r["arch"] == "mobilenet_v2" and r["budget"] == 4.0)[
            "top1_mean"
        ]
    )
    book = frontier.Ledger(ledger)  # read again: the retrained point's line follows the cut one
    lost_point = next(p for p in points if p.key == lost)
    assert book.get(lost, frontier.inputs_digest(args, lost_point))["top1"] == row["top1_mean"]
    assert len(book.rows) == len(points)
    # another recipe has other digests: nothing is taken from the ledger
    other = frontier.resolve(frontier.build_parser().parse_args([*argv, "--qat-lr", "0.01"]))
    assert all(book.get(p.key, frontier.inputs_digest(other, p)) is None for p in points)


def test_checks_compare_each_variant_with_the_baselines_of_the_same_switches(frontier) -> None:
    def row(method: str, budget: float, top1: float, std: float = 0.1) -> dict:
        b_avg = budget if method == "uniform" else budget - 0.05
        return {"arch": "a", "method": method, "budget": budget, "top1_mean": top1,
                "top1_std": std, "b_avg": b_avg}  # fmt: skip

    rows = [
        row("uniform", 8.0, 92.0),
        row("uniform", 5.0, 91.5),
        row("pg", 5.0, 90.0),
        row("drq", 5.0, 89.0),
        row("dynabit", 5.0, 91.8),
        row("dynabit-midpoint-dual", 5.0, 91.9),
        row("pg-midpoint-dual", 5.0, 91.95),
    ]
    by = {(c["method"], c["claim"]): c for c in frontier.checks(rows, ["a"])}
    plain = by[("dynabit", "dynabit beats PG-style by more than the seeds' std")]
    assert plain["value"] == pytest.approx(1.8) and plain["pass"]
    like = by[
        (
            "dynabit-midpoint-dual",
            "dynabit-midpoint-dual beats PG-style-midpoint-dual by more than the seeds' std",
        )
    ]
    assert like["value"] == pytest.approx(-0.05) and not like["pass"]
    # No drq-midpoint-dual row: the variant is checked against plain DRQ.
    name = "dynabit-midpoint-dual"
    assert by[(name, f"{name} beats DRQ by more than the seeds' std")]["pass"]
    w8a8 = by[("dynabit", "dynabit top-1 within 0.3 points of uniform W8A8")]
    assert w8a8["value"] == pytest.approx(-0.2) and w8a8["pass"]
    assert by[("dynabit", "dynabit measured B_avg within +-0.1 of 5")]["pass"]


def _fake_row(arch: str, method: str, budget: float, seeds: int, top1: float = 90.0) -> dict:
    return {"arch": arch, "method": method, "budget": budget, "top1_mean": top1,
            "top1_std": 0.1, "b_avg": budget, "seeds": seeds, "bops": 1.0, "macs": 1,
            "refine_ratio": None, "top1_per_seed": [top1] * seeds}  # fmt: skip


def test_rows_of_an_earlier_report_are_carried_over_not_trained(frontier, tmp_path) -> None:
    argv = ["--run-root", str(tmp_path / "runs"), "--out-dir", str(tmp_path / "out")]
    args = frontier.resolve(frontier.build_parser().parse_args(argv))
    points = frontier.plan(args)
    old_groups = {
        (p.arch, p.method, p.budget)
        for p in points
        if p.arch != "mobilenet_v2" and "input" not in p.method
    }
    rows = [_fake_row(a, m, b, 1 if m == "fp32" else 3) for a, m, b in sorted(old_groups)]
    rows.append(_fake_row("small_cnn", "dynabit-input", 5.0, 2))  # a seed short: not carried
    report = {"rows": rows, "dataset": args.dataset, "recipe": frontier.recipe(args)}
    del report["recipe"]["width"]  # an older report without the key: its default holds
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "frontier.json").write_text(json.dumps(report))
    carried = frontier.carried_rows(args, points)
    assert set(carried) == old_groups
    names = [t.name for t in frontier.tasks(args, points, carried)]
    assert names[0] == "mobilenet_v2/fp32"  # the new network first
    assert all(n.startswith("mobilenet_v2/") for n in names[:55])
    assert {n for n in names if not n.startswith("mobilenet_v2/")} == {
        f"{a}/{m}-b5/seed{s}"
        for a in ("small_cnn", "resnet20")
        for m in ("dynabit-input", "dynabit-midpoint-dual-input")
        for s in (0, 1, 2)
    } | {"small_cnn/fp32", "resnet20/fp32"}  # parents trained again for the new points only
    written = frontier.write_report(args, points, "cmd", carried)
    assert not written["complete"] and written["points_done"] == sum(
        (p.arch, p.method, p.budget) in old_groups for p in points
    )
    by = {(r["arch"], r["method"], r["budget"]): r for r in written["rows"]}
    assert all(by[g] == carried[g] for g in old_groups)  # verbatim, though no run dirs exist
    # another recipe: nothing is carried over
    other = frontier.resolve(frontier.build_parser().parse_args([*argv, "--qat-lr", "0.01"]))
    assert frontier.carried_rows(other, frontier.plan(other)) == {}


def test_zoomed_panel_leaves_diverged_rows_out(frontier) -> None:
    rows = [
        _fake_row("a", "fp32", 32.0, 1, 93.0),
        _fake_row("a", "uniform", 8.0, 3, 92.9),
        _fake_row("a", "uniform", 4.0, 3, 92.6),
        _fake_row("a", "dynabit", 5.0, 3, 10.0),  # diverged
    ]
    lo, hi = frontier.zoom_limits(rows)
    assert 92.0 < lo < 92.5 and 93.0 < hi < 93.5
    assert frontier.zoom_limits([_fake_row("a", "fp32", 32.0, 1)]) is None
