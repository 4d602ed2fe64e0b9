"""Real processes: SIGKILL mid-epoch then resume, and 2-process DDP (gloo) under torchrun."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dynabit.config.run import save_run_config
from dynabit.train import RunDir, train

WORKER = Path(__file__).with_name("worker_train.py")
SRC = Path(__file__).resolve().parents[2] / "src"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("quantize", [False, True])
def test_sigkill_mid_epoch_then_resume_reaches_the_same_parameters(tmp_path, tiny_cfg, quantize):
    cfg = tiny_cfg(quantize=quantize, checkpoint_every=4)
    save_run_config(cfg, tmp_path / "cfg.yaml")
    cmd = [sys.executable, str(WORKER), str(tmp_path / "cfg.yaml"), str(tmp_path / "killed")]
    proc = subprocess.run([*cmd, "--kill-at", "10"], env=_env(), capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    rd = RunDir(tmp_path / "killed")
    assert rd.latest().name == "step-00000008" and rd.read_summary() is None

    resumed = train(None, tmp_path / "killed", resume=True)
    full = train(cfg, tmp_path / "full")
    _same(full.model.state_dict(), resumed.model.state_dict())
    _same(load_file(str(rd.latest() / "model.safetensors")), full.model.state_dict())


def test_ddp_two_ranks_identical_parameters_and_global_statistics(tmp_path, tiny_cfg):
    cfg = tiny_cfg(quantize=True, checkpoint_every=4)
    save_run_config(cfg, tmp_path / "cfg.yaml")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(WORKER),
        str(tmp_path / "cfg.yaml"),
        str(tmp_path / "run"),
        "--dump",
        str(tmp_path / "dump"),
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    p0, p1 = (load_file(str(tmp_path / "dump" / f"rank{r}.safetensors")) for r in (0, 1))
    _same(p0, p1)  # parameters and buffers
    _same(p0, load_file(str(RunDir(tmp_path / "run").latest() / "model.safetensors")))
    i0, i1 = (json.loads((tmp_path / "dump" / f"rank{r}.json").read_text()) for r in (0, 1))

    # The evaluation each rank reports is the global one: equal on both ranks and equal to a
    # single process evaluating every test sample.
    r0, r1 = i0["result"], i1["result"]
    assert r0["top1"] == r1["top1"] == pytest.approx(i0["full_top1"])
    assert r0["b_avg_macs"] == r1["b_avg_macs"] == pytest.approx(i0["full_b_avg_macs"])
    assert r0["global_step"] == 12  # 6 steps x 2 epochs of the *global* batch

    # Statistics after a forward on different data per rank: all-reduced = sum of both ranks.
    g0, g1, l0, l1 = i0["global"], i1["global"], i0["local"], i1["local"]
    assert g0 == g1
    assert l0 != l1
    assert g0["layers"].keys() == l0["layers"].keys() and g0["layers"]
    for name, g in g0["layers"].items():
        a, b = l0["layers"][name], l1["layers"][name]
        assert g["macs"] == pytest.approx(a["macs"] + b["macs"])
        mixed = (a["ratio_macs"] * a["macs"] + b["ratio_macs"] * b["macs"]) / (
            a["macs"] + b["macs"]
        )
        assert g["ratio_macs"] == pytest.approx(mixed)
        # Same number of samples per rank, so each block's global ratio is the mean.
        for gb, ab, bb in zip(g["block_ratios"], a["block_ratios"], b["block_ratios"], strict=True):
            assert gb == pytest.approx((ab + bb) / 2)

    # Only rank 0 wrote the log: one record per step.
    steps = [
        r["global_step"] for r in RunDir(tmp_path / "run").read_metrics() if r["event"] == "step"
    ]
    assert steps == list(range(1, 13))


def _torchrun(tmp_path: Path, cfg_path: Path, name: str, nproc: int) -> dict[str, torch.Tensor]:
    """Train ``cfg_path`` with ``nproc`` processes; rank 0's final parameters."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(WORKER),
        str(cfg_path),
        str(tmp_path / name),
        "--dump",
        str(tmp_path / f"{name}-dump"),
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return load_file(str(tmp_path / f"{name}-dump" / "rank0.safetensors"))


def test_one_and_two_processes_agree_where_the_math_allows(tmp_path, tiny_cfg):
    """QAT (BatchNorm folded and frozen) with only the cross-entropy: the global batch, the
    data order and the mean gradient are the same for 1 and 2 processes, so only the order of
    float additions differs, and SGD keeps that difference at rounding level. (Adam divides
    near-zero gradients by their own tiny magnitude, so the same rounding noise becomes
    steps of size lr; with the budget penalties on, each rank's penalty sees its half of the
    batch; FP32 BatchNorm uses per-rank batch statistics: docs/errors.md.)"""
    cfg = tiny_cfg(
        quantize=True,
        optimizer="sgd",
        lr=0.05,
        quant={"penalty_block": 0.0, "penalty_budget": 0.0},
    )
    save_run_config(cfg, tmp_path / "cfg.yaml")
    one = _torchrun(tmp_path, tmp_path / "cfg.yaml", "one", 1)
    two = _torchrun(tmp_path, tmp_path / "cfg.yaml", "two", 2)
    assert one.keys() == two.keys()
    for k in one:
        if one[k].is_floating_point():
            torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
        else:
            assert torch.equal(one[k], two[k]), k
