"""Two-stage training: FP32 first, then quantization-aware fine-tuning warm-started from it.

A run config with a ``pretrain`` section trains in two sub-directories of the run directory::

    <run>/config.yaml     # the whole config (train / quant / pretrain)
    <run>/fp32/           # stage 1: a normal run dir (train + pretrain overrides, FP32)
    <run>/qat/            # stage 2: a normal run dir (train, init_from = <run>/fp32)

Each stage resumes on its own; a finished stage (it has ``summary.json``) is not redone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dynabit.config.run import RunConfig
from dynabit.train.distributed import DistEnv, barrier, init_distributed, shutdown
from dynabit.train.lock import main_rank_lock
from dynabit.train.loop import StepHook, Trainer, TrainResult
from dynabit.train.rundir import FP32_STAGE, QAT_STAGE, RunDir

log = logging.getLogger("dynabit.train")


def stage_configs(cfg: RunConfig, run_dir: str | Path) -> dict[str, RunConfig]:
    """The effective config of each stage (``fp32`` and ``qat``) of a two-stage run."""
    fp32_dir = Path(run_dir).resolve() / FP32_STAGE
    fp32 = RunConfig(train=cfg.pretrain_config(), quant=cfg.quant)
    qat = RunConfig(
        train=cfg.train.model_copy(update={"init_from": str(fp32_dir)}), quant=cfg.quant
    )
    return {FP32_STAGE: fp32, QAT_STAGE: qat}


def stage_label(stage: str, cfg: RunConfig) -> str:
    """What a stage is called in logs and bars: ``FP32 pretraining``, ``QAT at budget 5``."""
    if stage == FP32_STAGE or not cfg.train.quantize:
        return "FP32 pretraining"
    return f"QAT at budget {cfg.quant.budget:g}"


def _finished(stage_dir: Path) -> TrainResult | None:
    """The result of a stage that already completed, from its ``summary.json``."""
    s = RunDir(stage_dir).read_summary()
    if s is None:
        return None
    ck = s.get("checkpoint")
    return TrainResult(
        run_dir=stage_dir,
        top1=s["top1"],
        loss=s["loss"],
        b_avg_macs=s.get("b_avg_macs"),
        b_avg_elements=s.get("b_avg_elements"),
        epochs=s["epochs"],
        global_step=s["global_step"],
        checkpoint=Path(ck) if ck else None,
        quantized=s["quantized"],
        stats=s.get("stats"),
    )


def train_two_stage(
    cfg: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    *,
    env: DistEnv | None = None,
    step_hook: StepHook | None = None,
) -> dict[str, TrainResult]:
    """FP32 training then QAT fine-tuning; returns ``{"fp32": ..., "qat": ...}``."""
    if cfg.pretrain is None:
        raise ValueError("train_two_stage needs a config with a `pretrain` section")
    env = env or DistEnv()
    with main_rank_lock(run_dir, env):
        return _two_stages(cfg, run_dir, resume, env, step_hook)


def _two_stages(
    cfg: RunConfig, run_dir: str | Path, resume: bool, env: DistEnv, step_hook: StepHook | None
) -> dict[str, TrainResult]:
    rd = RunDir(run_dir)
    cfg = rd.resolve_config(cfg, resume)
    if env.is_main:
        rd.write_config(cfg)
    barrier(env)
    results: dict[str, TrainResult] = {}
    for stage, stage_cfg in stage_configs(cfg, run_dir).items():
        stage_dir = rd.path / stage
        done = _finished(stage_dir) if resume else None
        label = stage_label(stage, stage_cfg)
        if done is None:
            if env.is_main:
                log.info("%s: %d epochs in %s", label, stage_cfg.train.epochs, stage_dir)
            trainer = Trainer(
                stage_cfg, stage_dir, resume=resume, env=env, step_hook=step_hook, label=label
            )
            done = trainer.run()
        elif env.is_main:
            log.info("%s: already done, reusing %s (top-1 %.2f %%)", label, stage_dir, done.top1)
        results[stage] = done
    return results


def run_training(
    cfg: RunConfig | None,
    run_dir: str | Path,
    resume: bool = False,
    *,
    step_hook: StepHook | None = None,
) -> dict[str, TrainResult]:
    """What ``dynabit train`` does: one stage, or two when the config has ``pretrain``.

    ``cfg=None`` with ``resume`` continues the run described by ``run_dir/config.yaml``.
    Returns the result of each stage (``{"train": ...}`` or ``{"fp32": ..., "qat": ...}``).
    Only one process at a time may write ``run_dir`` (:mod:`dynabit.train.lock`).
    """
    env = init_distributed()
    try:
        with main_rank_lock(run_dir, env):
            if cfg is None:
                cfg = RunDir(run_dir).resolve_config(None, resume)
            if cfg.two_stage:
                return train_two_stage(cfg, run_dir, resume, env=env, step_hook=step_hook)
            trainer = Trainer(cfg, run_dir, resume=resume, env=env, step_hook=step_hook)
            return {"train": trainer.run()}
    finally:
        shutdown(env)
