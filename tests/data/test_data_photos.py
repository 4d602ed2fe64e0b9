"""The photos dataset: stamp selection, the split by photo, ImageNet crops, missing packages."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dynabit.data import NORM_STATS, DatasetError, load_dataset
from dynabit.data.imagenet_crops import TEN_CROP, imagenet_crops
from dynabit.data.photos import (
    APT_INSTALL,
    PIP_INSTALL,
    list_photos,
    load_photos,
    photo_split,
    stamp_on_white,
)

LOCAL = ("tuxpaint", "mate-backgrounds")


def _photo_rgba(side: int, seed: int) -> np.ndarray:
    """A noisy opaque square inside a transparent border: many colours, like a photo cut-out."""
    rng = np.random.default_rng(seed)
    rgba = np.zeros((side, side + 10, 4), dtype=np.uint8)
    rgba[5:-5, 5:-5, :3] = rng.integers(0, 256, size=(side - 10, side, 3))
    rgba[5:-5, 5:-5, 3] = 255
    return rgba


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def local_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Stamps: 8 photos, a drawing, a cartoon, a mirror copy, a tiny one, a duplicate; 2 photos."""
    stamps, backgrounds = tmp_path / "stamps", tmp_path / "nature"
    for i in range(8):
        _save(stamps / "animals" / f"beast{i}.png", _photo_rgba(96, seed=i))
    drawing = np.zeros((96, 96, 4), dtype=np.uint8)
    drawing[10:80, 10:80] = (200, 30, 30, 255)  # one flat colour
    _save(stamps / "animals" / "drawn.png", drawing)
    _save(stamps / "animals" / "cartoon" / "toon.png", _photo_rgba(96, seed=20))
    _save(stamps / "animals" / "beast0_mirror.png", _photo_rgba(96, seed=21))
    _save(stamps / "food" / "tiny.png", _photo_rgba(40, seed=22))
    _save(stamps / "zoo" / "beast3.png", _photo_rgba(96, seed=3))  # same pixels as animals/beast3
    rng = np.random.default_rng(9)
    for name in ("Dune.jpg", "Storm.jpg"):
        _save(backgrounds / name, rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8))
    return stamps, backgrounds


def test_stamp_rule_and_sources(local_dirs: tuple[Path, Path]) -> None:
    stamps, backgrounds = local_dirs
    photos = list_photos(LOCAL, stamps_dir=stamps, backgrounds_dir=backgrounds)
    ids = [p.id for p in photos]
    expected = [f"tuxpaint:animals/beast{i}.png" for i in range(8)]
    expected += ["mate-backgrounds:Dune.jpg", "mate-backgrounds:Storm.jpg"]
    assert ids == sorted(expected)
    stamp = next(p for p in photos if p.id == "tuxpaint:animals/beast1.png").load()
    side = math.ceil(1.15 * 106)
    assert stamp.shape == (side, side, 3) and stamp.dtype == np.uint8


def test_split_is_by_photo_and_never_shares_one(local_dirs: tuple[Path, Path]) -> None:
    stamps, backgrounds = local_dirs
    kw = {"sources": LOCAL, "stamps_dir": stamps, "backgrounds_dir": backgrounds}
    ids = {p.id for p in list_photos(**kw)}
    calib_ids = {i for i in ids if photo_split(i) == "calibration"}
    assert calib_ids and calib_ids != ids  # the fixture's ids fall on both sides
    evaluation = load_photos("evaluation", **kw)
    calibration = load_photos("train", views="centre", **kw)
    assert set(evaluation.ids) == ids - calib_ids and set(calibration.ids) == calib_ids
    assert len(evaluation) == 10 * evaluation.num_photos and len(calibration) == len(calib_ids)
    assert evaluation.raw.shape[1:] == (3, 224, 224) and evaluation.raw.dtype == torch.uint8
    # crops are grouped by photo, views in order
    assert evaluation.photo.tolist() == [i for i in range(evaluation.num_photos) for _ in TEN_CROP]
    assert evaluation.view.tolist()[:10] == list(range(10))
    two = load_photos("evaluation", max_photos=2, **kw)
    assert two.ids == evaluation.ids[:2] and torch.equal(two.raw, evaluation.raw[:20])


def test_select_and_sample_photos(local_dirs: tuple[Path, Path]) -> None:
    stamps, backgrounds = local_dirs
    ev = load_photos("evaluation", "ten", None, LOCAL, stamps, backgrounds)
    sub = ev.select_photos([2, 0])
    assert sub.ids == (ev.ids[0], ev.ids[2]) and sub.photo.tolist() == [0] * 10 + [1] * 10
    assert torch.equal(sub.raw[10:], ev.raw[20:30])
    a, b = ev.sample_photos(2, seed=0), ev.sample_photos(2, seed=0)
    assert a.ids == b.ids and len(a.ids) == 2
    seeds = {ev.sample_photos(2, seed=s).ids for s in range(6)}
    assert len(seeds) > 1  # different seeds, different calibration subsets
    with pytest.raises(ValueError, match="photo indices"):
        ev.select_photos([ev.num_photos])
    x = ev.normalized(NORM_STATS["photos"].mean, NORM_STATS["photos"].std, 0, 3)
    torch.testing.assert_close(x, (ev.raw[:3].float() - 127) / 128)


def test_imagenet_crops_geometry() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(256, 320, 3), dtype=np.uint8)  # shorter side already 256
    crops = imagenet_crops(img)
    chw = torch.from_numpy(img).permute(2, 0, 1)
    assert crops.shape == (10, 3, 224, 224) and crops.dtype == torch.uint8
    assert torch.equal(crops[0], chw[:, 16:240, 48:272])  # centre
    assert torch.equal(crops[1], chw[:, :224, :224]) and torch.equal(crops[4], chw[:, 32:, 96:])
    for v in range(5):
        assert torch.equal(crops[5 + v], crops[v].flip(-1))
    yy, xx = np.mgrid[0:256, 0:320]
    smooth = np.stack([yy, xx * 0.8, 255 - yy], axis=2).astype(np.uint8)
    big = imagenet_crops(np.repeat(np.repeat(smooth, 2, axis=0), 2, axis=1), views="centre")
    assert big.shape == (1, 3, 224, 224)  # the shorter side is resized to 256 first
    small = torch.from_numpy(smooth).permute(2, 0, 1)[:, 16:240, 48:272].float()
    assert (big[0].float() - small).abs().max() <= 2
    with pytest.raises(ValueError, match="allowed: ten, centre"):
        imagenet_crops(img, views="five")  # type: ignore[arg-type]


def test_stamp_on_white() -> None:
    rgba = np.zeros((10, 20, 4), dtype=np.uint8)
    rgba[2:4, 2:4] = (10, 20, 30, 255)
    rgba[5, 5] = (0, 0, 0, 128)
    out = stamp_on_white(rgba)
    assert out.shape == (23, 23, 3)
    top, left = (23 - 10) // 2, (23 - 20) // 2
    assert out[top + 2, left + 2].tolist() == [10, 20, 30]
    assert out[0, 0].tolist() == [255, 255, 255] and out[top, left].tolist() == [255, 255, 255]
    assert out[top + 5, left + 5].tolist() == [127, 127, 127]  # half transparent black


def test_missing_packages_name_the_install_command(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DatasetError, match="Tux Paint stamps not found") as e:
        load_photos("evaluation", stamps_dir=tmp_path / "none")
    assert APT_INSTALL in str(e.value) and str(tmp_path / "none") in str(e.value)
    assert APT_INSTALL == "apt-get install tuxpaint-stamps-default mate-backgrounds"
    with pytest.raises(DatasetError, match="mate-backgrounds"):
        list_photos(("mate-backgrounds",), backgrounds_dir=tmp_path / "none")
    monkeypatch.setitem(sys.modules, "skimage.data", None)  # as if scikit-image were missing
    with pytest.raises(DatasetError, match="scikit-image") as e:
        list_photos(("skimage",))
    assert PIP_INSTALL in str(e.value)
    with pytest.raises(ValueError, match="allowed: tuxpaint"):
        list_photos(("flickr",))
    with pytest.raises(ValueError, match="calibration .or train., evaluation"):
        load_photos("validation")


def test_installed_photos_meet_the_sizes() -> None:
    """The installed packages give >= 100 evaluation photos (>= 1,000 crops), none calibrating."""
    photos = list_photos()
    by_split = {
        s: [p for p in photos if photo_split(p.id) == s] for s in ("calibration", "evaluation")
    }
    assert (
        len(by_split["evaluation"]) >= 100 and len(by_split["evaluation"]) * len(TEN_CROP) >= 1000
    )
    assert len(by_split["calibration"]) >= 32
    assert not {p.id for p in by_split["calibration"]} & {p.id for p in by_split["evaluation"]}
    assert {p.source for p in photos} == {
        "tuxpaint",
        "mate-backgrounds",
        "skimage",
        "sklearn",
        "matplotlib",
    }
    ds = load_dataset("photos", "test", subset=12)
    assert ds.images.shape == (12, 3, 224, 224) and ds.info == (3, 224, 1000)
    assert ds.labels.tolist() == [0] * 10 + [1] * 2  # the source photo of each crop
    torch.testing.assert_close(ds.images, (ds.raw.float() - 127) / 128)
