"""I/O errors are one ``error:`` line naming the path and the cause, exit status 2, and lose
nothing: a full disk and a read-only folder for real (a small tmpfs as root; ``/dev/full`` and
``chmod`` otherwise), and output paths that name an existing file or a directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from cli_process import dynabit_process, one_error_line
from fs_fixtures import grow, read_only, small_tmpfs
from tiny_runs import tiny_cfg

from dynabit.config.run import save_run_config
from dynabit.train import RunDir, train

torch.set_num_threads(1)


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name], list(folder.rglob("*"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("io") / "run"
    train(tiny_cfg(quantize=True, epochs=1, max_steps_per_epoch=3), run)
    return run


def _cfg_file(tmp_path: Path) -> tuple[Path, int]:
    """A 3-checkpoint FP32 run config, and the size of one of its checkpoints in KiB."""
    cfg = tiny_cfg(epochs=1, max_steps_per_epoch=6, checkpoint_every=2)
    save_run_config(cfg, tmp_path / "cfg.yaml")
    ref = tmp_path / "ref"
    train(cfg, ref)
    ck = RunDir(ref).latest()
    return tmp_path / "cfg.yaml", sum(f.stat().st_size for f in ck.iterdir()) // 1024 + 8


def test_disk_full_during_training_is_one_line_and_resumes(tmp_path: Path) -> None:
    cfg, ck_kib = _cfg_file(tmp_path)
    with small_tmpfs(tmp_path / "disk", int(1.6 * ck_kib) + 16) as disk:
        if disk is None:  # not root: the log goes to /dev/full
            run = tmp_path / "run"
            run.mkdir()
            (run / "metrics.jsonl").symlink_to("/dev/full")
            res = dynabit_process("train", "-c", str(cfg), "-o", str(run))
            one_error_line(res, "No space left on device", str(run / "metrics.jsonl"))
            return
        run = disk / "run"
        res = dynabit_process("train", "-c", str(cfg), "-o", str(run))
        line = one_error_line(res, "No space left on device", str(run / "checkpoints"))
        assert "earlier checkpoints are intact" in line
        _no_temporaries(run)
        assert RunDir(run).latest().name == "step-00000002"  # the first one fitted: kept
        grow(disk, 8 * ck_kib)
        res = dynabit_process("train", "-o", str(run), "--resume")
        assert res.returncode == 0, res.stderr
        assert RunDir(run).read_summary()["global_step"] == 6


def test_read_only_folder_is_one_line(tmp_path: Path, trained: Path) -> None:
    cfg, _ = _cfg_file(tmp_path)
    with small_tmpfs(tmp_path / "ro", 1024) as ro:
        folder = ro if ro is not None else tmp_path / "ro"
        run = Path(shutil.copytree(trained, folder / "run"))
        if ro is not None:
            read_only(ro)
        else:  # chmod binds only users other than root
            for p in (folder, run):
                p.chmod(0o555)
        cause = "Read-only file system" if ro is not None else "Permission denied"
        try:
            one_error_line(
                dynabit_process("train", "-c", str(cfg), "-o", str(folder / "new")), cause
            )
            one_error_line(dynabit_process("train", "-o", str(run), "--resume"), cause, str(run))
            out = folder / "program.safetensors"
            one_error_line(
                dynabit_process("export", str(run), "--program", str(out), "--no-check"), cause
            )
            assert not out.exists()
        finally:
            if ro is None:
                for p in (folder, run):
                    p.chmod(0o755)


def test_output_paths_that_name_a_file_or_a_directory(tmp_path: Path, trained: Path) -> None:
    cfg, _ = _cfg_file(tmp_path)
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "inside").write_text("keep me too")
    program = tmp_path / "p.safetensors"
    line = one_error_line(dynabit_process("train", "-c", str(cfg), "-o", str(taken)), str(taken))
    assert "is a file, not a directory" in line
    for args in (
        ("export", str(trained), "--program", str(folder), "--no-check"),
        ("export", str(trained), "--program", str(program), "--onnx", str(folder), "--no-check"),
        ("run-int", str(trained / "program.safetensors"), "--trace", str(folder)),
    ):
        if args[0] == "run-int" and not (trained / "program.safetensors").exists():
            assert dynabit_process("export", str(trained), "--no-check").returncode == 0
        one_error_line(dynabit_process(*args), str(folder), "is a directory")
    assert taken.read_text() == "keep me" and (folder / "inside").read_text() == "keep me too"
    assert sorted(os.listdir(folder)) == ["inside"]
