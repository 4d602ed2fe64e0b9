"""Helper process for the tests (not a test module): train, optionally die, dump what it has.

    python worker_train.py CONFIG RUN_DIR [--resume] [--kill-at STEP] [--pause-at STEP] [--dump DIR]
    torchrun --nproc_per_node 2 worker_train.py CONFIG RUN_DIR --dump DIR

``--kill-at`` sends SIGKILL to this process right after optimizer step STEP; ``--pause-at``
prints ``paused`` there and sleeps (holding the run directory) until it is killed. ``--dump``
writes, per rank, the final parameters (``rank<r>.safetensors``) and ``rank<r>.json``: the training
result, a single-process evaluation of the whole test split, and the decision statistics of
one forward over rank-specific data, both this rank's own and all-reduced.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from dynabit.config.run import load_run_config
from dynabit.data import load_dataset
from dynabit.train import DistEnv, evaluate, init_distributed, train
from dynabit.train.distributed import shutdown


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("run_dir")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--kill-at", type=int)
    ap.add_argument("--pause-at", type=int)
    ap.add_argument("--dump")
    args = ap.parse_args()

    torch.set_num_threads(1)  # the same arithmetic as the in-process test runs
    env = init_distributed()  # created here, so it outlives train() for the checks below

    def hook(step: int) -> None:
        if step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == args.pause_at:
            print("paused", flush=True)
            time.sleep(300)

    cfg = None if args.resume else load_run_config(args.config)
    res = train(cfg, args.run_dir, resume=args.resume, step_hook=hook)
    if args.dump:
        dump(res, env, Path(args.dump))
    shutdown(env)


def dump(res, env: DistEnv, out: Path) -> None:
    from dynabit.quant import model_stats, reset_stats

    out.mkdir(parents=True, exist_ok=True)
    model = res.model
    test = load_dataset("digits", "test", subset=200)
    full = evaluate(model, test, env=DistEnv())  # every sample on this rank alone
    info = {"result": res.to_dict(), "full_top1": full.top1}
    if res.quantized:
        full_stats = full.stats  # (ratios; counts are doubled by the all-reduce)
        info["full_b_avg_macs"] = full_stats["b_avg_macs"]
        reset_stats(model)
        with torch.no_grad():
            model(test.images[env.rank * 50 : (env.rank + 1) * 50])  # different data per rank
        info["local"] = model_stats(model, all_reduce=False).to_dict()
        info["global"] = model_stats(model, all_reduce=True).to_dict()
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / f"rank{env.rank}.safetensors"))
    (out / f"rank{env.rank}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
