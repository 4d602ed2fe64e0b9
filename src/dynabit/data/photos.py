"""``photos``: real photographs that installed packages ship, cut into ImageNet evaluation crops.

Nothing is downloaded: every image comes from a Debian or Python package (see
``docs/data.md`` for the full table of sources, licences and kinds of images).

================  ==========================  ==========  =======================================
source            package                     licence     what the images are
================  ==========================  ==========  =======================================
tuxpaint          tuxpaint-stamps-default     GPL-2       photographic cut-outs (animals, plants,
                  (apt)                                   food, tools, vehicles, ...) on white
mate-backgrounds  mate-backgrounds (apt)      GPL-2+      ``nature/``: close-ups of flowers,
                                                          grass, water drops, a dune, a storm
skimage           scikit-image (pip)          CC0 / PD    astronaut, cat, coffee, rocket, coins,
                                                          retina, textures, ... (16)
sklearn           scikit-learn (pip)          CC-BY 2.0   a Chinese temple, a flower
matplotlib        matplotlib (pip)            PD          portrait of Grace Hopper
================  ==========================  ==========  =======================================

Tux Paint also ships drawings; a stamp counts as a photo when it is not under a folder of
drawings (:data:`STAMP_EXCLUDED_DIRS`), is not a pre-mirrored copy, is at least
:data:`STAMP_MIN_SIDE` pixels on its shorter side and shows at least :data:`STAMP_MIN_COLOURS`
distinct 15-bit colours on its opaque pixels (drawings use few). Identical stamps under two
names count once. Stamps are composited onto white and centred on a white square
:data:`STAMP_MARGIN` times their longer side, so the crops keep the whole object.

Split **by photo**: a photo is in ``calibration`` when the first 4 bytes of the SHA-256 of its id
(``source:relative/path``), read as a big-endian integer, are divisible by 4, else in
``evaluation``; the rule depends on nothing but the id, so no photo is in both and adding a
source never moves the others. Each photo gives the ten ImageNet crops of
:mod:`dynabit.data.imagenet_crops` (or its centre crop only).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from dynabit.data.base import DatasetError
from dynabit.data.imagenet_crops import Views, imagenet_crops, views_per_photo

PhotoSplit = Literal["calibration", "evaluation"]
PHOTO_SPLITS: tuple[PhotoSplit, ...] = ("calibration", "evaluation")
SOURCE_NAMES: tuple[str, ...] = ("tuxpaint", "mate-backgrounds", "skimage", "sklearn", "matplotlib")
APT_PACKAGES: tuple[str, ...] = ("tuxpaint-stamps-default", "mate-backgrounds")
APT_INSTALL = f"apt-get install {' '.join(APT_PACKAGES)}"
PIP_INSTALL = 'pip install -e ".[photos]"'
STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")
BACKGROUNDS_DIR = Path("/usr/share/backgrounds/mate/nature")
CALIBRATION_MODULUS = 4  # one photo in four calibrates

STAMP_EXCLUDED_DIRS: frozenset[str] = frozenset(
    {"cartoon", "symbols", "seasonal", "roadsigns", "flags"}
)
STAMP_MIN_SIDE = 64
STAMP_MIN_COLOURS = 200
STAMP_MARGIN = 1.15
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

SKIMAGE_NAMES: tuple[str, ...] = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
    "stereo_motorcycle",  # the left view only (the right one is the same scene)
)
SKLEARN_NAMES: tuple[str, ...] = ("china.jpg", "flower.jpg")
MATPLOTLIB_NAMES: tuple[str, ...] = ("grace_hopper.jpg",)


@dataclass(frozen=True)
class Photo:
    """One source photo: a stable id (``source:name``) and how to read it as ``uint8 [H, W, 3]``."""

    id: str
    source: str
    load: Callable[[], np.ndarray] = field(compare=False, repr=False)


@dataclass(eq=False)
class PhotoCrops:
    """The crops of a split: ``raw`` ``uint8 [N, 3, 224, 224]``; crop ``i`` is view ``view[i]``
    of photo ``ids[photo[i]]``."""

    raw: Tensor = field(repr=False)
    photo: Tensor = field(repr=False)
    view: Tensor = field(repr=False)
    ids: tuple[str, ...]
    split: str

    def __len__(self) -> int:
        return self.raw.shape[0]

    @property
    def num_photos(self) -> int:
        return len(self.ids)

    def normalized(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        start: int = 0,
        stop: int | None = None,
    ) -> Tensor:
        """Crops ``start:stop`` as float32 ``(x / 255 - mean) / std`` per channel."""
        x = self.raw[start:stop].float() / 255.0
        m = torch.tensor(tuple(mean), dtype=x.dtype).view(1, -1, 1, 1)
        s = torch.tensor(tuple(std), dtype=x.dtype).view(1, -1, 1, 1)
        return (x - m) / s

    def select_photos(self, photos: Sequence[int]) -> PhotoCrops:
        """Only the crops of the photos at indices ``photos`` (into :attr:`ids`), renumbered."""
        keep = sorted(set(int(p) for p in photos))
        if not keep or keep[0] < 0 or keep[-1] >= self.num_photos:
            raise ValueError(f"photo indices must be in 0..{self.num_photos - 1}, got {photos!r}")
        new = torch.full((self.num_photos,), -1, dtype=torch.int64)
        new[keep] = torch.arange(len(keep))
        mask = new[self.photo] >= 0
        return PhotoCrops(
            raw=self.raw[mask].clone(),
            photo=new[self.photo[mask]],
            view=self.view[mask].clone(),
            ids=tuple(self.ids[p] for p in keep),
            split=self.split,
        )

    def sample_photos(self, k: int, seed: int) -> PhotoCrops:
        """The crops of ``k`` photos drawn without replacement with ``seed`` (all if ``k`` >= N)."""
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.num_photos, generator=g)[: max(1, k)]
        return self.select_photos(order.tolist())


def photo_split(photo_id: str) -> PhotoSplit:
    """``calibration`` or ``evaluation`` from the photo's id alone (see the module docstring)."""
    digest = hashlib.sha256(photo_id.encode("utf-8")).digest()
    calib = int.from_bytes(digest[:4], "big") % CALIBRATION_MODULUS == 0
    return "calibration" if calib else "evaluation"


def _as_rgb(arr: np.ndarray) -> np.ndarray:
    """``uint8 [H, W, 3]`` from grey, RGB or RGBA (alpha dropped: these photos are opaque)."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr.astype(np.float64), 0, 1) * 255).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def _read_file(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except OSError as e:
        raise DatasetError(f"photos: cannot read image '{path}': {e}") from None


def _read_rgba(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGBA"), dtype=np.uint8).copy()
    except OSError as e:
        raise DatasetError(f"photos: cannot read image '{path}': {e}") from None


def stamp_on_white(rgba: np.ndarray, margin: float = STAMP_MARGIN) -> np.ndarray:
    """Composite an RGBA stamp onto white and centre it on a white square (``uint8 [S, S, 3]``)."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    h, w = rgb.shape[:2]
    side = math.ceil(margin * max(h, w))
    out = np.full((side, side, 3), 255.0, dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    out[top : top + h, left : left + w] = rgb
    return out.round().clip(0, 255).astype(np.uint8)


def stamp_colours(rgba: np.ndarray) -> int:
    """Distinct 15-bit colours among the opaque pixels (alpha > 127) of a stamp."""
    opaque = rgba[rgba[..., 3] > 127][:, :3].astype(np.int32) >> 3
    if opaque.size == 0:
        return 0
    return int(np.unique(opaque[:, 0] * 1024 + opaque[:, 1] * 32 + opaque[:, 2]).size)


def stamp_path_ok(relative: Path) -> bool:
    """The path half of the stamp rule: not under a folder of drawings, not a mirrored copy."""
    if STAMP_EXCLUDED_DIRS.intersection(relative.parts[:-1]):
        return False
    return not relative.stem.endswith(("_mirror", "_flip"))


def stamp_pixels_ok(rgba: np.ndarray) -> bool:
    """The pixel half of the stamp rule: large enough and rich enough in colours."""
    return min(rgba.shape[:2]) >= STAMP_MIN_SIDE and stamp_colours(rgba) >= STAMP_MIN_COLOURS


def _require_dir(d: Path, what: str, package: str, option: str) -> None:
    if not d.is_dir():
        raise DatasetError(
            f"photos: {what} not found at '{d}' (Debian package {package}); install them with "
            f"`{APT_INSTALL}` (as root), or pass {option}=<a folder of such images>"
        )


@functools.lru_cache(maxsize=8)
def _stamp_photos(stamps_dir: Path) -> tuple[Photo, ...]:
    _require_dir(stamps_dir, "Tux Paint stamps", APT_PACKAGES[0], "stamps_dir")
    photos: list[Photo] = []
    seen: set[bytes] = set()
    for path in sorted(stamps_dir.rglob("*.png")):
        rel = path.relative_to(stamps_dir)
        if not stamp_path_ok(rel):
            continue
        rgba = _read_rgba(path)
        if not stamp_pixels_ok(rgba):
            continue
        digest = hashlib.sha256(rgba.tobytes() + str(rgba.shape).encode()).digest()
        if digest in seen:  # the same stamp filed under two folders
            continue
        seen.add(digest)
        photos.append(
            Photo(f"tuxpaint:{rel.as_posix()}", "tuxpaint", functools.partial(_load_stamp, path))
        )
    return tuple(photos)


def _load_stamp(path: Path) -> np.ndarray:
    return stamp_on_white(_read_rgba(path))


def _background_photos(backgrounds_dir: Path) -> tuple[Photo, ...]:
    _require_dir(backgrounds_dir, "MATE nature backgrounds", APT_PACKAGES[1], "backgrounds_dir")
    files = sorted(
        p for p in backgrounds_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    return tuple(
        Photo(
            f"mate-backgrounds:{p.relative_to(backgrounds_dir).as_posix()}",
            "mate-backgrounds",
            functools.partial(_read_file, p),
        )
        for p in files
    )


def _need(module: str, package: str) -> object:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DatasetError(
            f"photos: the {package} sample images need the Python package {package}: "
            f"{PIP_INSTALL} (or pip install {package})"
        ) from None


def _load_skimage(name: str) -> np.ndarray:
    data = _need("skimage.data", "scikit-image")
    image = getattr(data, name)()
    return _as_rgb(image[0] if name == "stereo_motorcycle" else image)


def _load_sklearn(name: str) -> np.ndarray:
    datasets = _need("sklearn.datasets", "scikit-learn")
    return _as_rgb(datasets.load_sample_image(name))  # type: ignore[attr-defined]


def _load_matplotlib(name: str) -> np.ndarray:
    cbook = _need("matplotlib.cbook", "matplotlib")
    return _read_file(Path(cbook.get_sample_data(name, asfileobj=False)))  # type: ignore[attr-defined]


def _package_photos(source: str) -> tuple[Photo, ...]:
    names, loader, module, package = {
        "skimage": (SKIMAGE_NAMES, _load_skimage, "skimage.data", "scikit-image"),
        "sklearn": (SKLEARN_NAMES, _load_sklearn, "sklearn.datasets", "scikit-learn"),
        "matplotlib": (MATPLOTLIB_NAMES, _load_matplotlib, "matplotlib.cbook", "matplotlib"),
    }[source]
    _need(module, package)  # fail at listing time, not half-way through loading
    return tuple(Photo(f"{source}:{n}", source, functools.partial(loader, n)) for n in names)


def list_photos(
    sources: Sequence[str] = SOURCE_NAMES,
    stamps_dir: str | Path = STAMPS_DIR,
    backgrounds_dir: str | Path = BACKGROUNDS_DIR,
) -> list[Photo]:
    """Every source photo of ``sources``, sorted by id.

    Raises:
        ValueError: an unknown source name.
        DatasetError: a source's package is missing (the message names the install command).
    """
    unknown = [s for s in sources if s not in SOURCE_NAMES]
    if unknown or not sources:
        raise ValueError(f"unknown photo sources {unknown!r}; allowed: {', '.join(SOURCE_NAMES)}")
    photos: list[Photo] = []
    for source in dict.fromkeys(sources):
        if source == "tuxpaint":
            photos += _stamp_photos(Path(stamps_dir))
        elif source == "mate-backgrounds":
            photos += _background_photos(Path(backgrounds_dir))
        else:
            photos += _package_photos(source)
    return sorted(photos, key=lambda p: p.id)


def _canonical_split(split: str) -> PhotoSplit:
    aliases = {"train": "calibration", "test": "evaluation"}
    key = aliases.get(split, split)
    if key not in PHOTO_SPLITS:
        raise ValueError(
            f"unknown photos split {split!r}; allowed: calibration (or train), evaluation (or test)"
        )
    return key  # type: ignore[return-value]


def load_photos(
    split: str,
    views: Views = "ten",
    max_photos: int | None = None,
    sources: Sequence[str] = SOURCE_NAMES,
    stamps_dir: str | Path = STAMPS_DIR,
    backgrounds_dir: str | Path = BACKGROUNDS_DIR,
) -> PhotoCrops:
    """The crops of one split (``calibration``/``train`` or ``evaluation``/``test``).

    Args:
        split: which photos (the split rule is in the module docstring).
        views: ``"ten"`` (the ten ImageNet crops of each photo) or ``"centre"``.
        max_photos: keep only the first ``max_photos`` photos of the split (>= 1), by id.
        sources: which of :data:`SOURCE_NAMES` to use (default all).
        stamps_dir, backgrounds_dir: where the Tux Paint stamps and the MATE nature
            backgrounds are (defaults: where the Debian packages install them).

    Raises:
        ValueError: unknown split, views or source, or ``max_photos < 1``.
        DatasetError: missing packages (naming the install command) or no photo in the split.
    """
    key = _canonical_split(split)
    per_photo = views_per_photo(views)
    if max_photos is not None and max_photos < 1:
        raise ValueError(f"max_photos must be >= 1, got {max_photos}")
    chosen = [
        p for p in list_photos(sources, stamps_dir, backgrounds_dir) if photo_split(p.id) == key
    ]
    chosen = chosen[:max_photos]
    if not chosen:
        raise DatasetError(
            f"photos: the {key} split of sources {', '.join(sources)} holds no photo"
        )
    raw = torch.cat([imagenet_crops(p.load(), views) for p in chosen])
    index = torch.arange(len(chosen), dtype=torch.int64)
    return PhotoCrops(
        raw=raw,
        photo=index.repeat_interleave(per_photo),
        view=torch.arange(per_photo, dtype=torch.int64).repeat(len(chosen)),
        ids=tuple(p.id for p in chosen),
        split=key,
    )
