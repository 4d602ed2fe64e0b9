"""Training, evaluation, checkpoints and run directories (single process or DDP via torchrun).

Entry points: :func:`train` (one run), :func:`run_training` (one or two stages, what
``dynabit train`` calls), :func:`evaluate` / :func:`evaluate_checkpoint`, :func:`load_model`.
"""

from dynabit.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from dynabit.train.distributed import DistEnv, ShardedSampler, init_distributed
from dynabit.train.evaluate import EvalResult, evaluate, evaluate_checkpoint, load_model
from dynabit.train.interrupt import TrainingInterrupted
from dynabit.train.loop import Trainer, TrainingDivergedError, TrainResult, train
from dynabit.train.optim import build_optimizer, build_scheduler, param_groups
from dynabit.train.pipeline import run_training, stage_configs, train_two_stage
from dynabit.train.rundir import RunDir, RunDirError, resolve_run

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DistEnv",
    "EvalResult",
    "RunDir",
    "RunDirError",
    "ShardedSampler",
    "TrainResult",
    "Trainer",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "evaluate_checkpoint",
    "init_distributed",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model",
    "load_model_state",
    "param_groups",
    "resolve_run",
    "run_training",
    "save_checkpoint",
    "stage_configs",
    "train",
    "train_two_stage",
]
