"""The run directory: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/``, ``summary.json``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from dynabit.config.run import RunConfig, save_run_config
from dynabit.train.checkpoint import CKPT_DIR, latest_checkpoint, load_saved_config
from dynabit.utils.files import atomic_write_text, read_json

log = logging.getLogger(__name__)

# What ``summary.json`` must hold (``TrainResult.to_dict``; read back by the two-stage pipeline).
SUMMARY_FIELDS: dict[str, tuple[type, ...]] = {
    "top1": (int, float),
    "loss": (int, float),
    "epochs": (int,),
    "global_step": (int,),
    "quantized": (bool,),
}

# Fields that may differ between the saved config and the one given on resume: they change
# neither the numbers nor the data (only where the data lives and how the run reports).
RESUME_FREE_FIELDS = frozenset({"data_dir", "progress", "workers", "log_every", "eval_batch_size"})


# Sub-directories of a two-stage run (see ``dynabit.train.pipeline``).
FP32_STAGE = "fp32"
QAT_STAGE = "qat"


def final_stage_dir(path: str | Path) -> Path:
    """``path/qat`` for a two-stage run directory, else ``path`` itself."""
    p = Path(path)
    if not (p / CKPT_DIR).is_dir() and (p / QAT_STAGE / CKPT_DIR).is_dir():
        return p / QAT_STAGE
    return p


# Where ``dynabit demo`` puts its two-stage training run inside its own directory.
DEMO_TRAIN = "train"


def resolve_run(path: str | Path) -> tuple[Path, str | None]:
    """The trained run that ``path`` names, and a note when it is not ``path`` itself.

    Accepts a run directory, a two-stage run (its QAT stage is chosen), the directory of
    ``dynabit demo`` (its ``train/qat`` run is chosen) or a checkpoint folder; anything else is
    returned unchanged for the loader to refuse with its own message.
    """
    p = Path(path)
    if (p / CKPT_DIR).is_dir() or (p / "model.safetensors").is_file():
        return p, None
    for sub in (Path(QAT_STAGE), Path(DEMO_TRAIN) / QAT_STAGE):
        if (p / sub / CKPT_DIR).is_dir():
            return p / sub, f"using the QAT model of {str(p)!r}: {str(p / sub)!r}"
    if (p / DEMO_TRAIN / FP32_STAGE / CKPT_DIR).is_dir():
        q = p / DEMO_TRAIN / FP32_STAGE
        return q, f"{str(p)!r} has no QAT run yet; using its FP32 run {str(q)!r}"
    return p, None


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (e.g. not empty without ``--resume``)."""


def _config_diff(a: RunConfig, b: RunConfig) -> list[str]:
    """Dotted names of the fields where ``a`` and ``b`` differ (ignoring resume-free ones)."""
    da, db = a.model_dump(mode="json"), b.model_dump(mode="json")
    out = []
    for section in sorted(set(da) | set(db)):
        sa, sb = da.get(section), db.get(section)
        if isinstance(sa, dict) and isinstance(sb, dict):
            for k in sorted(set(sa) | set(sb)):
                free = section == "train" and k in RESUME_FREE_FIELDS
                if sa.get(k) != sb.get(k) and not free:
                    out.append(f"{section}.{k}: {sa.get(k)!r} -> {sb.get(k)!r}")
        elif sa != sb:
            out.append(f"{section}: {sa!r} -> {sb!r}")
    return out


class RunDir:
    """One training run's folder. Only rank 0 writes; every rank may read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / CKPT_DIR

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    def latest(self) -> Path | None:
        """The newest complete checkpoint, if any."""
        return latest_checkpoint(self.checkpoints)

    def resolve_config(self, cfg: RunConfig | None, resume: bool) -> RunConfig:
        """The config this run uses; refuses to mix a new run into an old directory.

        On resume the saved ``config.yaml`` wins; a given ``cfg`` must match it except for
        :data:`RESUME_FREE_FIELDS` (taken from ``cfg``).
        """
        saved = load_saved_config(self.config_path) if self.config_path.is_file() else None
        has_ckpt = self.latest() is not None
        if not resume:
            if has_ckpt:
                raise RunDirError(
                    f"run directory {str(self.path)!r} already holds checkpoints; pass --resume "
                    "to continue it or choose another --run-dir"
                )
            if cfg is None:
                raise RunDirError("no config given (use --config or --resume an existing run)")
            return cfg
        if saved is None:
            if cfg is None:
                raise RunDirError(
                    f"cannot resume {str(self.path)!r}: it has no config.yaml; give --config"
                )
            return cfg
        if cfg is None:
            return saved
        diff = _config_diff(saved, cfg)
        if diff:
            raise RunDirError(
                f"config differs from the one saved in {str(self.config_path)!r}: "
                + "; ".join(diff)
                + "; a resumed run must keep it (start a new --run-dir instead)"
            )
        return cfg

    def check_checkpoint_config(self, cfg: RunConfig, saved: RunConfig, ckpt: Path) -> None:
        """Refuse to resume ``ckpt`` with a config other than the one it was trained with
        (its own ``config.yaml``, which its checksum covers), e.g. after someone edited the
        run directory's copy."""
        diff = _config_diff(saved, cfg)
        if diff:
            raise RunDirError(
                f"the config of this run ({str(self.config_path)!r} or --config) no longer "
                f"matches the one checkpoint {str(ckpt)!r} was trained with "
                f"({str(ckpt / 'config.yaml')!r}): " + "; ".join(diff) + "; restore it, or "
                "start a new --run-dir"
            )

    def write_config(self, cfg: RunConfig) -> None:
        """Write ``config.yaml`` (rank 0)."""
        self.path.mkdir(parents=True, exist_ok=True)
        save_run_config(cfg, self.config_path)

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (rank 0)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        """All complete records of ``metrics.jsonl``.

        A torn last line (a run killed mid-write) is skipped; other lines that are not a JSON
        object are skipped too, with a warning naming the file and the lines.
        """
        if not self.metrics_path.is_file():
            return []
        lines = self.metrics_path.read_bytes().split(b"\n")
        out, bad = [], []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode())
            except (UnicodeDecodeError, json.JSONDecodeError):
                rec = None
            if isinstance(rec, dict):
                out.append(rec)
            elif i < len(lines) - 1:  # the last line has no newline yet: torn, not corrupt
                bad.append(i + 1)
        if bad:
            log.warning(
                "%s: skipped %d line(s) that are not JSON records (lines %s); corrupted log?",
                self.metrics_path,
                len(bad),
                ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else ""),
            )
        return out

    def truncate_metrics(self, global_step: int) -> None:
        """Drop records written after the checkpoint we resume from (they will be redone)."""
        kept = [
            r
            for r in self.read_metrics()
            if isinstance(g := r.get("global_step", 0), int | float)
            and not isinstance(g, bool)
            and g <= global_step
        ]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept)
        atomic_write_text(self.metrics_path, text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` (final figures of the run), atomically."""
        atomic_write_text(self.summary_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")

    def read_summary(self) -> dict[str, Any] | None:
        """``summary.json`` (``None`` when the run has not finished); checked, since its
        presence marks a finished run."""
        if not self.summary_path.is_file():
            return None
        where = str(self.summary_path)
        fix = "delete it and --resume to finish the run again"
        s = read_json(self.summary_path, RunDirError, "run summary", fix)
        if not isinstance(s, dict):
            raise RunDirError(f"run summary {where!r} is not a JSON object; {fix}")
        for k, kinds in SUMMARY_FIELDS.items():
            v = s.get(k)
            if not isinstance(v, kinds) or (bool not in kinds and isinstance(v, bool)):
                want = " or ".join(t.__name__ for t in kinds)
                raise RunDirError(f"run summary {where!r}: {k!r} must be {want} (got {v!r}); {fix}")
        return s
