"""The training loop: FP32 or quantization-aware, single process or DDP, resumable mid-epoch.

A run is a pure function of its config: the data order of an epoch depends only on
``(seed, epoch)``, the LR only on the step, and a checkpoint stores everything else that
evolves (weights, buffers, optimizer and scheduler state, every rank's RNG states, the epoch
and the step within it). So a run killed at any point and resumed with ``resume=True`` ends
with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from dynabit.config.io import ConfigError
from dynabit.config.run import RunConfig
from dynabit.train.checkpoint import (
    Checkpoint,
    capture_rng,
    load_checkpoint,
    load_model_state,
    restore_rng,
    save_checkpoint,
    seed_everything,
)
from dynabit.train.distributed import (
    DistEnv,
    ShardedSampler,
    all_gather_object,
    all_reduce_max,
    all_reduce_sum,
    barrier,
    epoch_permutation,
    init_distributed,
    shutdown,
)
from dynabit.train.evaluate import (
    EvalResult,
    build_for_config,
    evaluate,
    inputs_at,
    iterate_batches,
    load_weights,
)
from dynabit.train.interrupt import StopRequest, TrainingInterrupted, stop_on_signals
from dynabit.train.lock import main_rank_lock
from dynabit.train.optim import build_optimizer, build_scheduler
from dynabit.train.rundir import RunDir
from dynabit.utils.progress import progress_bar
from dynabit.utils.threads import refresh_threads

log = logging.getLogger("dynabit.train")

StepHook = Callable[[int], None]


class TrainingDivergedError(ValueError):
    """The training loss (or a weight) stopped being finite; nothing was checkpointed with
    it, and the message names the position and the last good checkpoint."""


@dataclass
class TrainResult:
    """What a finished run reports (also written to ``summary.json``)."""

    run_dir: Path
    top1: float
    loss: float
    b_avg_macs: float | None
    b_avg_elements: float | None
    epochs: int
    global_step: int
    checkpoint: Path | None
    quantized: bool
    stats: dict[str, Any] | None = None
    model: nn.Module | None = field(default=None, repr=False)  # the trained model (unwrapped)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (without the model)."""
        return {
            "run_dir": str(self.run_dir),
            "top1": self.top1,
            "loss": self.loss,
            "b_avg_macs": self.b_avg_macs,
            "b_avg_elements": self.b_avg_elements,
            "epochs": self.epochs,
            "global_step": self.global_step,
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "quantized": self.quantized,
            "stats": self.stats,
        }


def _decision_counters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Decision counters saved per rank, so epoch statistics survive a mid-epoch resume."""
    from dynabit.quant.budget import stats_state

    return {f"counters.{k}": v for k, v in stats_state(model).items()}


def _restore_counters(model: nn.Module, saved: dict[str, Any]) -> None:
    from dynabit.quant.budget import load_stats_state

    prefix = "counters."
    load_stats_state(model, {k[len(prefix) :]: v for k, v in saved.items() if k.startswith(prefix)})


def _derived_seed(seed: int, rank: int) -> int:
    """Seed of the training RNG streams (dropout and the like), distinct per rank."""
    return (seed * 7919 + 104_729 * (rank + 1)) % (2**31)


class Trainer:
    """Builds data, model and optimizer from a :class:`RunConfig` and runs (or resumes) a run.

    ``step_hook(global_step)`` is called after every optimizer step (and after any checkpoint
    due at that step); tests use it to interrupt a run. SIGINT and SIGTERM stop a run at the
    next step boundary with a checkpoint there (:mod:`dynabit.train.interrupt`).
    """

    def __init__(
        self,
        cfg: RunConfig | None,
        run_dir: str | Path,
        *,
        resume: bool = False,
        env: DistEnv | None = None,
        step_hook: StepHook | None = None,
        label: str = "",
    ) -> None:
        self.label = f"{label}, " if label else ""  # e.g. "FP32 pretraining" in the bars
        self.rd = RunDir(run_dir)
        self.env = env or DistEnv()
        self.step_hook = step_hook
        self.cfg = self.rd.resolve_config(cfg, resume)
        self.tc = self.cfg.train
        if self.tc.batch_size % self.env.world_size:
            raise ConfigError(
                f"train.batch_size ({self.tc.batch_size}) must be divisible by the number of "
                f"processes ({self.env.world_size}): it is the global batch"
            )
        latest = self.rd.latest() if resume else None
        self.ckpt: Checkpoint | None = load_checkpoint(latest) if latest else None
        if self.ckpt is not None and self.ckpt.config is not None:
            self.rd.check_checkpoint_config(self.cfg, self.ckpt.config, self.ckpt.path)
        self.stop = StopRequest()  # replaced by a live one while run() runs

    # --------------------------------------------------------------------------- set-up

    def _load_data(self) -> None:
        """Both splits (an empty split is refused by the loader); refuse what cannot train.

        A train set smaller than one global batch is fine: each epoch is one step over all
        samples, repeated to fill the batch (``ShardedSampler``). One sample is refused (every
        batch would be copies of it: zero BatchNorm variance), and so is a batch of one sample
        per process while BatchNorm runs in training mode (FP32, or QAT without ``fold_bn``).
        """
        from dynabit.data import DatasetError, load_dataset

        t = self.tc
        per_rank = t.batch_size // self.env.world_size
        bn_trains = not t.quantize or not self.cfg.quant.fold_bn
        if bn_trains and per_rank < 2:
            raise ConfigError(
                f"train.batch_size is {t.batch_size} with {self.env.world_size} process(es): "
                f"{per_rank} sample per process and step, but BatchNorm in training mode needs "
                "at least 2; use batch_size >= 2 per process"
            )
        self.train_ds = load_dataset(t.dataset, "train", t.data_dir, t.train_subset)
        if len(self.train_ds) < 2:
            raise DatasetError(
                f"dataset {self.train_ds.describe()}: training needs at least 2 samples "
                f"(train.train_subset is {t.train_subset})"
            )
        if len(self.train_ds) < t.batch_size:
            log.info(
                "train set %s is smaller than one batch (%d): one step per epoch, samples "
                "repeated to fill the batch",
                self.train_ds.describe(),
                t.batch_size,
            )
        self.test_ds = load_dataset(t.dataset, "test", t.data_dir, t.test_subset)
        train_shape, test_shape = (tuple(d.images.shape[1:]) for d in (self.train_ds, self.test_ds))
        if train_shape != test_shape:
            shown = ["x".join(map(str, s)) for s in (train_shape, test_shape)]
            raise DatasetError(
                f"the splits of dataset {t.dataset!r} do not fit together: train images are "
                f"{shown[0]}, test images {shown[1]} (CxHxW); both splits must have one shape"
            )

    def _calibration_batches(self) -> list[torch.Tensor]:
        """The same fixed batches on every rank, so calibration agrees without communication."""
        perm = epoch_permutation(len(self.train_ds), self.tc.seed, -1)
        idx = perm[: self.tc.calib_batches * self.tc.batch_size]
        return [inputs_at(self.train_ds, i) for i in idx.split(self.tc.batch_size)]

    def _build_model(self) -> nn.Module:
        ds = self.train_ds
        model = build_for_config(self.cfg, ds.in_channels, ds.num_classes, ds.image_size)
        if self.ckpt is None and self.tc.init_from:
            load_weights(model, load_model_state(self.tc.init_from), self.tc.init_from)
        if not self.tc.quantize:
            # oneDNN's convolutions, batch norm and pooling ran the small CNN's training step
            # about a quarter faster on channels-last maps, and its evaluation a third (one CPU
            # thread); the trained model is handed back contiguous (_run). Quantized layers
            # keep the layout they expect.
            model = model.to(memory_format=torch.channels_last)
        else:
            from dynabit.quant import calibrate, prepare

            model = prepare(model, self.cfg.quant)
            if self.ckpt is None:  # a resumed run loads scales and thresholds instead
                show = self.tc.progress and self.env.is_main
                calibrate(model, self._calibration_batches(), progress=show)
        if self.ckpt is not None:
            load_weights(model, self.ckpt.model, str(self.ckpt.path))
        return model

    def _setup(self) -> None:
        env, t = self.env, self.tc
        if env.is_main:
            if self.ckpt is None or not self.rd.config_path.is_file():
                self.rd.write_config(self.cfg)
            # Records after the checkpoint we start from will be written again.
            self.rd.truncate_metrics(self.ckpt.global_step if self.ckpt else 0)
        seed_everything(t.seed)  # model init: the same on every rank
        self._load_data()
        self.model = self._build_model()
        self.sampler = ShardedSampler(
            len(self.train_ds),
            env,
            per_rank_batch=t.batch_size // env.world_size,
            seed=t.seed,
            max_steps=t.max_steps_per_epoch,
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch()
        self.optimizer = build_optimizer(self.model, t)
        self.scheduler = build_scheduler(self.optimizer, t, self.steps_per_epoch)
        self.epoch = self.step = self.global_step = 0
        self.sums = torch.zeros(3, dtype=torch.float64)  # this rank's loss * n, correct, n
        self._resume_rank: dict[str, Any] | None = None
        seed_everything(_derived_seed(t.seed, env.rank))
        if self.ckpt is not None:
            ck = self.ckpt
            self.optimizer.load_state_dict(ck.optimizer)
            self.scheduler.load_state_dict(ck.scheduler)
            if ck.rng:
                restore_rng(ck.rng[env.rank % len(ck.rng)])
            self.epoch, self.step, self.global_step = ck.epoch, ck.step, ck.global_step
            if ck.step > 0 and len(ck.ranks) == env.world_size:
                self._resume_rank = ck.ranks[env.rank]  # the interrupted epoch's running sums
            if env.is_main:
                log.info("resuming %s at epoch %d step %d", ck.path, self.epoch, self.step)
        self.net: nn.Module = self.model
        if env.distributed:
            # Buffers (BN statistics) follow rank 0 each forward; parameters stay equal because
            # gradients are averaged and every rank takes the same optimizer step.
            self.net = DistributedDataParallel(self.model)
        barrier(env)

    # ----------------------------------------------------------------------- the loop

    def _save(self, epoch: int, step: int, metrics: dict[str, Any] | None = None) -> Path | None:
        """Checkpoint on rank 0 (every rank takes part: per-rank states are gathered)."""
        self._check_finite_weights(epoch, step)
        mine: dict[str, Any] = {"sums": self.sums.clone()}
        if self.tc.quantize:
            mine.update(_decision_counters(self.model))
        gathered = all_gather_object({"rng": capture_rng(), "extra": mine}, self.env)
        path = None
        if self.env.is_main:
            path = save_checkpoint(
                self.rd.checkpoints,
                model_state=self.model.state_dict(),
                state={
                    "epoch": epoch,
                    "step": step,
                    "global_step": self.global_step,
                    "steps_per_epoch": self.steps_per_epoch,
                    "world_size": self.env.world_size,
                    "metrics": metrics or {},
                },
                config=self.cfg,
                optimizer_state=self.optimizer.state_dict(),
                scheduler_state=self.scheduler.state_dict(),
                rng=[g["rng"] for g in gathered],
                ranks=[g["extra"] for g in gathered],
                keep=self.tc.keep_checkpoints,
            )
        barrier(self.env)
        return path

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.net(x)
        ce = F.cross_entropy(logits, y)
        penalty = torch.zeros(())
        if self.tc.quantize:
            from dynabit.quant import budget_penalty

            penalty = budget_penalty(self.model)
        loss = ce + penalty
        self._check_finite_loss(loss, ce, penalty)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        correct = (logits.argmax(1) == y).sum()
        return loss.detach(), ce.detach(), penalty.detach(), correct

    def _diverged(self, what: str, epoch: int, step: int, global_step: int) -> Exception:
        """The error (logged in ``metrics.jsonl``) for a run that stopped being finite at
        ``step`` (1-based) of ``epoch`` (0-based)."""
        latest = self.rd.latest()
        last = f"the last good checkpoint is {str(latest)!r}" if latest else "no checkpoint yet"
        if self.env.is_main:
            self.rd.log(
                {
                    "event": "diverged",
                    "epoch": epoch,
                    "step": step,
                    "global_step": global_step,
                    "what": what,
                    "time": time.time(),
                }
            )
        return TrainingDivergedError(
            f"training diverged in {str(self.rd.path)!r} at epoch {epoch + 1}, step {step} "
            f"(global step {global_step}): {what}; nothing was saved with it, {last} "
            "(check the config for extreme values, lower train.lr, or --resume from there)"
        )

    def _check_finite_loss(self, loss: torch.Tensor, ce: torch.Tensor, pen: torch.Tensor) -> None:
        """Stop before a non-finite loss reaches the weights (every rank takes the same turn)."""
        bad = torch.tensor([0.0 if bool(torch.isfinite(loss)) else 1.0])
        if self.env.distributed:
            bad = all_reduce_max(bad, self.env)
        if bad.item():
            raise self._diverged(
                f"the loss is {loss.item()} (cross-entropy {ce.item()}, budget penalty "
                f"{pen.item()}){' on some rank' if self.env.distributed else ''}",
                self.epoch,
                self.step + 1,
                self.global_step + 1,
            )

    def _check_finite_weights(self, epoch: int, step: int) -> None:
        """Never checkpoint NaN/Inf weights (a finite loss can still end in them); ``epoch``
        and ``step`` are the position the checkpoint would have (0: an epoch's end)."""
        bad = [
            k
            for k, v in self.model.state_dict().items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())
        ]
        if bad:
            if step == 0 and epoch > 0:  # the last step of the epoch before produced them
                epoch, step = epoch - 1, self.steps_per_epoch
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise self._diverged(f"weights are not finite ({shown})", epoch, step, self.global_step)

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        env, t = self.env, self.tc
        refresh_threads(f"{self.label}epoch {epoch + 1}")  # the machine's load may have moved
        self.model.train()
        if t.quantize:
            from dynabit.quant import reset_stats

            reset_stats(self.model)
        self.sums = torch.zeros(3, dtype=torch.float64)
        if self._resume_rank is not None:  # continue the interrupted epoch's figures
            self.sums = self._resume_rank["sums"].clone()
            if t.quantize:
                _restore_counters(self.model, self._resume_rank)
            self._resume_rank = None
        self.sampler.set_position(epoch, self.step)
        bar = progress_bar(
            total=self.steps_per_epoch,
            initial=self.step,
            desc=f"{self.label}epoch {epoch + 1}/{t.epochs}",
            leave=False,
            disable=not (t.progress and env.is_main),
        )
        per_rank = t.batch_size // env.world_size
        with bar:
            for x, y in iterate_batches(self.train_ds, self.sampler, per_rank, t.workers):
                loss, ce, pen, correct = self._train_step(x, y)
                self.step += 1
                self.global_step += 1
                self.sums += torch.tensor([loss.item() * y.numel(), correct.item(), y.numel()])
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)  # redraws stay throttled
                if env.is_main and self.global_step % t.log_every == 0:
                    self.rd.log(
                        {
                            "event": "step",
                            "epoch": epoch,
                            "step": self.step,
                            "global_step": self.global_step,
                            "loss": loss.item(),
                            "ce": ce.item(),
                            "penalty": pen.item(),
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "time": time.time(),
                            **self._threshold_record(),
                        }
                    )
                due = t.checkpoint_every and self.global_step % t.checkpoint_every == 0
                if due and self.step < self.steps_per_epoch:  # the epoch-end save follows anyway
                    self._save(epoch, self.step)
                if self.step_hook is not None:
                    self.step_hook(self.global_step)
                self._stop_if_requested(epoch, self.step)
        loss_sum, correct, n = all_reduce_sum(self.sums, env).tolist()
        out: dict[str, Any] = {
            "train_loss": loss_sum / max(n, 1),
            "train_top1": 100.0 * correct / max(n, 1),
        }
        if t.quantize:
            from dynabit.quant import model_stats

            s = model_stats(self.model, all_reduce=True)
            out.update(train_b_avg_macs=s.b_avg_macs, train_b_avg_elements=s.b_avg_elements)
        return out

    def _evaluate(self) -> EvalResult:
        return evaluate(
            self.model,
            self.test_ds,
            batch_size=self.tc.eval_batch_size,
            env=self.env,
            progress=self.tc.progress,
        )

    def _stop_if_requested(self, epoch: int, step: int, saved: bool = False) -> None:
        """Checkpoint here (unless just ``saved``) and stop, if any rank got a signal.

        Every rank takes the same decision at the same step (a max over ranks), so the
        collective checkpoint and the exit stay in step under DDP.
        """
        signum = int(all_reduce_max(torch.tensor([self.stop.signum or 0]), self.env).item())
        if not signum:
            return
        path = self.rd.latest() if saved else self._save(epoch, step)
        where = f"epoch {epoch + 1}, step {step}"
        if not self.env.is_main:
            raise TrainingInterrupted(signum, f"rank {self.env.rank} at {where}")
        self.rd.log(
            {
                "event": "interrupted",
                "signal": signum,
                "epoch": epoch,
                "step": step,
                "global_step": self.global_step,
                "time": time.time(),
            }
        )
        err = TrainingInterrupted(signum, f"checkpoint {path} ({where})", path)
        log.warning("%s; continue with --resume", err)
        raise err

    def run(self) -> TrainResult:
        """Train from the current position to ``epochs``; evaluate and checkpoint each epoch.

        Raises :class:`TrainingInterrupted` after checkpointing when SIGINT/SIGTERM arrive, and
        :class:`~dynabit.train.lock.RunDirLockedError` when another process writes the run
        directory.
        """
        with main_rank_lock(self.rd.path, self.env), stop_on_signals() as self.stop:
            return self._run()

    def _threshold_record(self) -> dict[str, Any]:
        """``{"thresholds": {layer: [per block]}}`` of a QAT run (a few floats: cheap to log,
        and what the report draws the threshold trajectories from); ``{}`` for FP32."""
        if not self.tc.quantize:
            return {}
        from dynabit.quant.budget import dynamic_layers

        return {
            "thresholds": {
                n: m.threshold.detach().flatten().tolist() for n, m in dynamic_layers(self.model)
            }
        }

    def _run(self) -> TrainResult:
        self._setup()
        env, t = self.env, self.tc
        result: EvalResult | None = None
        if env.is_main and t.quantize and self.ckpt is None:  # the calibrated starting point
            self.rd.log({"event": "thresholds", "global_step": 0, **self._threshold_record()})
        while self.epoch < t.epochs:
            epoch = self.epoch
            train_metrics = self._run_epoch(epoch)
            result = self._evaluate()
            record = {
                "event": "epoch",
                "epoch": epoch,
                "global_step": self.global_step,
                **train_metrics,
                "test_top1": result.top1,
                "test_loss": result.loss,
                "b_avg_macs": result.b_avg_macs,
                "b_avg_elements": result.b_avg_elements,
                "time": time.time(),
            }
            if env.is_main:
                self.rd.log(record)
                log.info(
                    "epoch %d/%d: train loss %.4f, test top-1 %.2f%%%s",
                    epoch + 1,
                    t.epochs,
                    train_metrics["train_loss"],
                    result.top1,
                    "" if result.b_avg_macs is None else f", B_avg {result.b_avg_macs:.3f}",
                )
            self.epoch, self.step = epoch + 1, 0
            self._save(self.epoch, 0, {"test_top1": result.top1})
            self._stop_if_requested(self.epoch, 0, saved=True)
        if result is None:  # resumed a finished run: just report it
            result = self._evaluate()
        # The usual layout again, as load_model() rebuilds it: the same weights then compute
        # bit for bit the same outputs in the returned model and in a reloaded one.
        self.model.to(memory_format=torch.contiguous_format)
        out = TrainResult(
            run_dir=self.rd.path,
            top1=result.top1,
            loss=result.loss,
            b_avg_macs=result.b_avg_macs,
            b_avg_elements=result.b_avg_elements,
            epochs=t.epochs,
            global_step=self.global_step,
            checkpoint=self.rd.latest(),
            quantized=t.quantize,
            stats=result.stats,
            model=self.model,
        )
        if env.is_main:
            self.rd.write_summary(out.to_dict())
        barrier(env)
        return out


def train(
    cfg: RunConfig | None,
    run_dir: str | Path,
    resume: bool = False,
    *,
    step_hook: StepHook | None = None,
) -> TrainResult:
    """Run (or, with ``resume``, continue) one training run in ``run_dir``.

    ``cfg=None`` with ``resume`` reuses the run directory's ``config.yaml``. Under ``torchrun``
    the process group (gloo) is created here and destroyed at the end. Only one process at a
    time may write ``run_dir`` (:mod:`dynabit.train.lock`).
    """
    env = init_distributed()
    try:
        with main_rank_lock(run_dir, env):
            return Trainer(cfg, run_dir, resume=resume, env=env, step_hook=step_hook).run()
    finally:
        shutdown(env)
