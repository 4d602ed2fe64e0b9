"""Checkpoints: one folder per save, written under a temporary name then renamed.

Layout of ``<run>/checkpoints/``::

    latest                    # name of the newest complete checkpoint (atomically replaced)
    step-00000120/
        model.safetensors     # model state_dict
        optimizer.safetensors # optimizer tensors, flattened as state.<param>.<key>
        rng.safetensors       # torch / numpy / python RNG state of every rank
        ranks.safetensors     # other per-rank tensors (e.g. running counters of the epoch)
        state.json            # epoch, step in epoch, global step, scheduler, optimizer layout
        config.yaml           # the run config (train / quant sections)

A reader never sees a half-written checkpoint: the folder appears by ``os.rename`` once its
files are flushed, and ``latest`` is replaced atomically afterwards.

Loading checks what it reads and raises :class:`CheckpointError` naming the file: every
``.safetensors`` file carries the sha256 of its tensors in its header (files without one, e.g.
weights from elsewhere, are read unchecked), ``state.json`` must have the layout written here,
``config.yaml`` must hold every section, and model weights must be finite (NaN or Inf means a
diverged run or a corrupted file). ``model.safetensors`` is written last and its header also
holds the sha256 of ``state.json`` and ``config.yaml``, so an edited config or state (one
digit of a bit width) is refused like a corrupt file instead of changing results silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from dynabit.config.io import ConfigError, read_mapping
from dynabit.config.run import SECTIONS, RunConfig, save_run_config, validate_run
from dynabit.utils.files import as_os_error, atomic_write_text, read_json

CKPT_DIR = "checkpoints"
LATEST = "latest"
_NAME = re.compile(r"^step-(\d+)$")

log = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint is missing or unreadable; the message says where we looked."""


@dataclass
class Checkpoint:
    """A loaded checkpoint. Tensors are on CPU."""

    path: Path
    model: dict[str, torch.Tensor]
    state: dict[str, Any]
    config: RunConfig | None
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)
    ranks: list[dict[str, Any]] = field(default_factory=list)  # per-rank extras, rank order

    @property
    def epoch(self) -> int:
        """The epoch to run next (``step`` steps of it are already done)."""
        return int(self.state["epoch"])

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def global_step(self) -> int:
        return int(self.state["global_step"])


# ----------------------------------------------------------------------------- RNG state


def capture_rng() -> dict[str, Any]:
    """This process's torch, numpy and python RNG states."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python so that a run is a function of its seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_to_tensors(states: list[dict[str, Any]]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors: dict[str, torch.Tensor] = {}
    meta = []
    for r, s in enumerate(states):
        kind, keys, pos, has_gauss, cached = s["numpy"]
        version, py_state, gauss_next = s["python"]
        tensors[f"rank{r}.torch"] = s["torch"].clone()
        tensors[f"rank{r}.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
        tensors[f"rank{r}.python"] = torch.tensor(py_state, dtype=torch.int64)
        meta.append(
            {
                "numpy": [kind, int(pos), int(has_gauss), float(cached)],
                "python": [int(version), gauss_next],
            }
        )
    return tensors, meta


def _rng_from_tensors(tensors: dict[str, torch.Tensor], meta: list[dict]) -> list[dict[str, Any]]:
    out = []
    for r, m in enumerate(meta):
        kind, pos, has_gauss, cached = m["numpy"]
        version, gauss_next = m["python"]
        keys = tensors[f"rank{r}.numpy"].numpy().astype(np.uint32)
        py_state = tuple(int(v) for v in tensors[f"rank{r}.python"].tolist())
        torch_state = tensors[f"rank{r}.torch"]
        if torch_state.dtype != torch.uint8 or torch_state.dim() != 1:
            raise ValueError(f"rank{r}.torch must be a 1-d uint8 tensor")
        if not isinstance(kind, str) or (gauss_next is not None and not _is_num(gauss_next)):
            raise ValueError(f"rank {r}: bad numpy/python RNG metadata")
        out.append(
            {
                "torch": torch_state,
                "numpy": (kind, keys, int(pos), int(has_gauss), float(cached)),
                "python": (int(version), py_state, gauss_next),
            }
        )
    return out


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# ------------------------------------------------------------------- flattening state dicts


def _split_tensors(d: dict[str, Any], prefix: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors (cloned, contiguous: safetensors refuses shared storage) and the JSON rest."""
    tensors, rest = {}, {}
    for k, v in d.items():
        if isinstance(v, torch.Tensor):
            tensors[f"{prefix}{k}"] = v.detach().cpu().clone().contiguous()
        else:
            rest[k] = v
    return tensors, rest


def flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into safetensors-able tensors and a JSON layout."""
    tensors: dict[str, torch.Tensor] = {}
    state_meta = {}
    for pid, st in sd["state"].items():
        t, rest = _split_tensors(st, f"state.{pid}.")
        tensors.update(t)
        state_meta[str(pid)] = {"tensors": sorted(k.split(".", 2)[2] for k in t), "values": rest}
    return tensors, {"param_groups": sd["param_groups"], "state": state_meta}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], layout: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer`."""
    state = {}
    for pid, meta in layout["state"].items():
        st = dict(meta["values"])
        st.update({k: tensors[f"state.{pid}.{k}"] for k in meta["tensors"]})
        state[int(pid)] = st
    return {"state": state, "param_groups": layout["param_groups"]}


def _json(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, indent=1, sort_keys=True)
    except TypeError as e:
        raise CheckpointError(f"cannot store {what} in a checkpoint: {e}") from None


# ---------------------------------------------------------------------------- save / load


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and bytes of ``tensors`` (in name order)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous()
        h.update(f"{k}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


# Files of a checkpoint folder whose sha256 the header of ``model.safetensors`` records.
COVERED_FILES = ("state.json", "config.yaml")


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save_tensors(
    tensors: dict[str, torch.Tensor], path: Path, files: dict[str, str] | None = None
) -> None:
    """``save_file`` with the tensors' sha256 (and ``files``: name -> sha256) in the header."""
    meta = {"sha256": _digest(tensors)}
    if files:
        meta["files"] = json.dumps(files, sort_keys=True)
    try:
        save_file(tensors, str(path), metadata=meta)
    except SafetensorError as e:  # disk full, read-only, ...: an OSError naming the file
        raise as_os_error(e, path) from None


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file; check its sha256 when its header has one."""
    return _read_tensors(path)[0]


def _read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`_load_tensors`, and the header metadata."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint file {str(path)!r} is missing") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {str(path)!r}: {e}") from None
    try:
        tensors = load(data)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n])
    except Exception as e:  # SafetensorError is not a ValueError subclass
        raise CheckpointError(
            f"{str(path)!r} is not a readable safetensors file (truncated or corrupt): {e}"
        ) from None
    meta = header.get("__metadata__") or {}
    want = meta.get("sha256") if isinstance(meta, dict) else None
    if want is not None and _digest(tensors) != want:
        raise CheckpointError(
            f"{str(path)!r} is corrupted: its tensors do not match the sha256 in its header"
        )
    return tensors, meta if isinstance(meta, dict) else {}


def _check_covered_files(ck: Path, model_meta: dict[str, Any]) -> None:
    """The files whose sha256 ``model.safetensors`` recorded must still have it."""
    model = ck / "model.safetensors"
    try:
        recorded = json.loads(model_meta.get("files") or "{}")
    except json.JSONDecodeError:
        recorded = None
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{str(model)!r}: its header's list of file checksums is corrupt")
    for name, want in sorted(recorded.items()):
        f = ck / name
        if not f.is_file():
            raise CheckpointError(
                f"checkpoint file {str(f)!r} is missing (the checkpoint was written with it)"
            )
        if _file_sha256(f) != want:
            raise CheckpointError(
                f"{str(f)!r} no longer matches the checkpoint it belongs to: its sha256 differs "
                f"from the one recorded in {str(model)!r} when the checkpoint was written "
                "(edited or corrupted; restore it, or resume from another checkpoint)"
            )


def _check_finite(tensors: dict[str, Any], path: Path) -> None:
    """Refuse float tensors holding NaN or Inf, naming them (integer tensors are counters)."""
    bad = []
    for k, v in tensors.items():
        if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex()):
            nan = int(torch.isnan(v).sum())
            inf = int(torch.isinf(v).sum())
            if nan or inf:
                bad.append(f"{k} ({nan} NaN, {inf} Inf of {v.numel()})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(
            f"weights in {str(path)!r} are not finite: {shown}; diverged training or a "
            "corrupted file (resume from an earlier checkpoint, or lower the learning rate)"
        )


def _bad_meta(meta: Any) -> str | None:
    """What is wrong with the layout of a ``state.json`` (``None`` when it is fine)."""
    if not isinstance(meta, dict):
        return f"top level is a {type(meta).__name__}, expected an object"
    state = meta.get("state")
    if not isinstance(state, dict):
        return "'state' must be an object with epoch, step and global_step"
    for k in ("epoch", "step", "global_step"):
        v = state.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            return f"state.{k} must be an integer >= 0 (got {v!r})"
    kinds = {"model_extra": dict, "scheduler": dict, "optimizer": dict, "rng": list, "ranks": list}
    for k, kind in kinds.items():
        if meta.get(k) is not None and not isinstance(meta[k], kind):
            return f"'{k}' must be a{'n object' if kind is dict else ' list'}"
    opt = meta.get("optimizer")
    if opt is not None and not (
        isinstance(opt.get("param_groups"), list)
        and isinstance(opt.get("state"), dict)
        and all(_is_layout(m) for m in opt["state"].values())
    ):
        return "'optimizer' must hold param_groups (a list) and state ({tensors, values} per id)"
    if not all(
        isinstance(m, dict)
        and isinstance(m.get("numpy"), list)
        and len(m["numpy"]) == 4
        and isinstance(m.get("python"), list)
        and len(m["python"]) == 2
        for m in meta.get("rng") or []
    ):
        return "'rng' must be a list of {numpy: [4 values], python: [2 values]} per rank"
    if not all(_is_layout(m) for m in meta.get("ranks") or []):
        return "'ranks' must be a list of {tensors: [names], values: {...}} per rank"
    return None


def _is_layout(m: Any) -> bool:
    return (
        isinstance(m, dict)
        and isinstance(m.get("tensors"), list)
        and all(isinstance(t, str) for t in m["tensors"])
        and isinstance(m.get("values"), dict)
    )


def _read_state(path: Path) -> dict[str, Any]:
    """``state.json``, checked against the layout :func:`save_checkpoint` writes."""
    meta = read_json(path, CheckpointError, "checkpoint file")
    problem = _bad_meta(meta)
    if problem:
        raise CheckpointError(
            f"{str(path)!r} is not a checkpoint state file: {problem} (truncated, corrupt or "
            "written by something else)"
        )
    return meta


def load_saved_config(path: str | Path) -> RunConfig:
    """A run config written by dynabit beside a checkpoint or in a run directory.

    Unlike :func:`dynabit.config.run.load_run_config` every section must be present (they
    are all written): a file cut short is refused instead of filled up with defaults.
    """
    data = read_mapping(path)
    missing = [s for s in SECTIONS if s not in data]
    if missing:
        raise ConfigError(
            f"config file {str(path)!r} lacks section(s) {missing}: truncated or not written "
            f"by dynabit (a saved run config holds all of {list(SECTIONS)})"
        )
    return validate_run(data, str(path))


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def checkpoint_name(global_step: int) -> str:
    """Folder name of the checkpoint taken after ``global_step`` optimizer steps."""
    return f"step-{global_step:08d}"


def save_checkpoint(
    root: str | Path,
    *,
    model_state: dict[str, Any],
    state: dict[str, Any],
    config: RunConfig | None = None,
    optimizer_state: dict[str, Any] | None = None,
    scheduler_state: dict[str, Any] | None = None,
    rng: list[dict[str, Any]] | None = None,
    ranks: list[dict[str, Any]] | None = None,
    keep: int | None = None,
) -> Path:
    """Write a checkpoint folder under ``root`` atomically, point ``latest`` at it, prune.

    ``state`` must hold ``epoch``, ``step`` (steps done in that epoch) and ``global_step``.
    ``rng`` is every rank's :func:`capture_rng`; ``ranks`` every rank's other state (a dict of
    tensors and JSON values). ``keep`` keeps only the newest ``keep`` checkpoints.
    Returns the folder.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(int(state["global_step"]))
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        model_t, model_extra = _split_tensors(model_state)
        meta: dict[str, Any] = {"state": state, "model_extra": model_extra}
        if optimizer_state is not None:
            opt_t, layout = flatten_optimizer(optimizer_state)
            _save_tensors(opt_t, tmp / "optimizer.safetensors")
            meta["optimizer"] = layout
        if scheduler_state is not None:
            meta["scheduler"] = scheduler_state
        if rng is not None:
            rng_t, rng_meta = _rng_to_tensors(rng)
            _save_tensors(rng_t, tmp / "rng.safetensors")
            meta["rng"] = rng_meta
        if ranks is not None:
            rank_t: dict[str, torch.Tensor] = {}
            rank_meta = []
            for r, extra in enumerate(ranks):
                t, rest = _split_tensors(extra, f"rank{r}.")
                rank_t.update(t)
                rank_meta.append({"tensors": sorted(k.split(".", 1)[1] for k in t), "values": rest})
            _save_tensors(rank_t, tmp / "ranks.safetensors")
            meta["ranks"] = rank_meta
        _write_file(tmp / "state.json", _json(meta, "the training state").encode())
        if config is not None:
            save_run_config(config, tmp / "config.yaml")
        covered = {n: _file_sha256(tmp / n) for n in COVERED_FILES if (tmp / n).is_file()}
        _save_tensors(model_t, tmp / "model.safetensors", covered)
        for f in tmp.iterdir():  # save_file doesn't fsync; do it before the folder appears
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if final.exists():  # left by a run killed between rename and pointer update
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except OSError as e:  # disk full, read-only: the checkpoints written before are intact
        shutil.rmtree(tmp, ignore_errors=True)
        raise OSError(
            e.errno,
            f"{e.strerror} (while writing checkpoint {name}; the earlier checkpoints are intact)",
            str(root),
        ) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / LATEST, name + "\n")
    if keep is not None:
        prune_checkpoints(root, keep)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found)]


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (never the one ``latest`` names)."""
    root = Path(root)
    current = latest_checkpoint(root)
    for p in list_checkpoints(root)[:-keep] if keep > 0 else []:
        if p != current:
            shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".tmp-*"):  # leftovers of a killed writer (only rank 0 writes here)
        shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The checkpoint ``latest`` names, else the newest complete folder, else ``None``."""
    root = Path(root)
    pointer = root / LATEST
    found = list_checkpoints(root)
    if pointer.is_file():
        try:
            name = pointer.read_bytes().decode().strip()
        except (OSError, UnicodeDecodeError):
            name = ""
        cand = root / name
        if _NAME.fullmatch(name) and (cand / "state.json").is_file():
            return cand
        if found:  # the folders are complete on their own: the pointer only saves a scan
            log.warning(
                "%s does not name a checkpoint folder (got %r); using the newest folder, %s",
                pointer,
                name[:40],
                found[-1].name,
            )
    return found[-1] if found else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from a run dir, its ``checkpoints/`` folder or the folder itself."""
    p = Path(path)
    if (p / "state.json").is_file() and (p / "model.safetensors").is_file():
        return p
    if _NAME.match(p.name) and (p / "state.json").is_file():  # a checkpoint folder lacking it
        raise CheckpointError(f"checkpoint file {str(p / 'model.safetensors')!r} is missing")
    for root in (p / CKPT_DIR, p):
        ck = latest_checkpoint(root)
        if ck is not None:
            return ck
    if not p.exists():
        raise CheckpointError(f"{str(p)!r} does not exist")
    raise CheckpointError(
        f"no checkpoint in {str(p)!r}: expected a run directory (with {CKPT_DIR}/), "
        "a checkpoints folder or a checkpoint folder (with model.safetensors and state.json)"
    )


def load_checkpoint(path: str | Path, *, training_state: bool = True) -> Checkpoint:
    """Load a checkpoint (any path :func:`resolve_checkpoint` accepts).

    ``training_state=False`` skips the optimizer and RNG (enough for evaluation).
    """
    ck = resolve_checkpoint(path)
    meta = _read_state(ck / "state.json")
    tensors, model_meta = _read_tensors(ck / "model.safetensors")
    model: dict[str, Any] = tensors
    _check_finite(model, ck / "model.safetensors")
    model.update(meta.get("model_extra") or {})
    config = None
    if (ck / "config.yaml").is_file():
        try:
            config = load_saved_config(ck / "config.yaml")
        except ConfigError as e:
            raise CheckpointError(f"checkpoint {str(ck)!r}: bad config.yaml:\n{e}") from None
    _check_covered_files(ck, model_meta)
    out = Checkpoint(path=ck, model=model, state=meta["state"], config=config)
    out.scheduler = meta.get("scheduler")
    if training_state:
        for key in ("optimizer", "rng", "ranks"):
            f = ck / f"{key}.safetensors"
            if key not in meta and f.exists():
                raise CheckpointError(
                    f"{str(ck / 'state.json')!r} does not describe {f.name} (no {key!r} entry): "
                    "the two files do not belong together"
                )
        try:
            part, f = "optimizer", ck / "optimizer.safetensors"
            if "optimizer" in meta:
                out.optimizer = unflatten_optimizer(_load_tensors(f), meta["optimizer"])
            part, f = "rng", ck / "rng.safetensors"
            if "rng" in meta:
                out.rng = _rng_from_tensors(_load_tensors(f), meta["rng"])
            part, f = "ranks", ck / "ranks.safetensors"
            if "ranks" in meta:
                tensors = _load_tensors(f)
                out.ranks = [
                    {**m["values"], **{k: tensors[f"rank{r}.{k}"] for k in m["tensors"]}}
                    for r, m in enumerate(meta["ranks"])
                ]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(
                f"{str(f)!r} does not match the {part!r} layout in "
                f"{str(ck / 'state.json')!r}: {e!r}"
            ) from None
    return out


def load_model_state(path: str | Path) -> dict[str, Any]:
    """Model weights from a ``.safetensors`` file or any checkpoint path (for warm starts).

    Raises :class:`CheckpointError` for unreadable files and for NaN or Inf weights.
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".safetensors":
        model = _load_tensors(p)
        _check_finite(model, p)
        return model
    return load_checkpoint(p, training_state=False).model
