"""The image sets `genlearn fid A B` compares: folders, .npz arrays, statistics, datasets.

- a folder: every image file under it (recursively), centre-cropped to a square;
- an .npz file with an image array (`images`, or its only array): uint8 0..255 or floats in
  [0, 1], shaped [N, H, W], [N, H, W, C] or [N, C, H, W];
- an .npz file with `mu` and `sigma` (the statistics format of the common FID tools): FID only;
- `dataset:NAME` or `dataset:NAME:test` (default split: train), e.g. `dataset:mnist:test`.
Nothing is unpickled: .npz files are read with `allow_pickle=False`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlearn.data.imaging import is_image_file, read_images
from genlearn.errors import ConfigError, DataError
from genlearn.metrics.frechet import GaussianStats

MAX_FOLDER_SIZE = 512  # folders of large photos are read at most this big (networks resize anyway)


@dataclass
class ImageSet:
    """Images (uint8 [N, C, H, W]) or, for a statistics file, only their Gaussian statistics."""

    name: str
    images: torch.Tensor | None = None
    stats: GaussianStats | None = None

    @property
    def count(self) -> int:
        if self.images is not None:
            return len(self.images)
        return self.stats.count if self.stats is not None else 0


def load_image_set(spec: str, *, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Read one side of a comparison; `limit` keeps a seeded random subset of that size."""
    if spec.startswith("dataset:"):
        images = _dataset_images(spec.removeprefix("dataset:"))
        return ImageSet(spec, _subset(images, limit, seed))
    path = Path(spec).expanduser()
    if path.is_dir():
        return ImageSet(spec, _subset(_folder_images(path), limit, seed))
    if path.is_file() and path.suffix.lower() == ".npz":
        return _npz(path, limit, seed)
    if path.exists():
        raise DataError(f"{spec} is neither a folder of images nor an .npz file")
    raise DataError(
        f"{spec} does not exist: give a folder of images, an .npz file, or dataset:NAME[:test]"
    )


def _subset(images: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    if limit is None or limit >= len(images):
        return images
    generator = torch.Generator().manual_seed(seed)
    return images[torch.randperm(len(images), generator=generator)[:limit].sort().values]


def _dataset_images(spec: str) -> torch.Tensor:
    from genlearn.data import ImageDataset, get_dataset

    name, _, split = spec.rpartition(":") if spec.endswith((":train", ":test")) else (spec, "", "")
    data = get_dataset(name)
    if not isinstance(data, ImageDataset):
        raise ConfigError(f"dataset {name!r} holds points, not images")
    return data.test_images if split == "test" else data.train_images


def _folder_images(folder: Path) -> torch.Tensor:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise DataError(f"folder {folder} holds no image files (.png, .jpg, ...)")
    size = _first_size(files[0])
    images, _, colour = read_images(files, size, folder.name)
    if len(images) == 0:
        raise DataError(f"no image in {folder} could be read")
    if not colour.any() or _grey_in_rgb(images):
        images = images[..., :1]
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def _grey_in_rgb(images: np.ndarray) -> bool:
    """RGB files whose channels agree (grey saved as RGB JPEG/PNG) are grey: they must meet
    grey images in the same feature space, and the JPEG codec leaves only ±2 levels of skew."""
    spread = images.max(axis=-1).astype(np.int16) - images.min(axis=-1).astype(np.int16)
    return bool(spread.max() <= 2)


def _first_size(path: Path) -> int:
    """The folder's working size: its first image's shorter side, at most 512 px."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return min(min(image.size), MAX_FOLDER_SIZE)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from None


def _npz(path: Path, limit: int | None, seed: int) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"cannot read {path} as .npz ({error})") from None
    if "mu" in arrays and "sigma" in arrays:
        mean, cov = arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)
        count = int(arrays["count"]) if "count" in arrays else 0
        return ImageSet(str(path), stats=GaussianStats(mean, cov, count))
    array = arrays.get("images")
    if array is None and len(arrays) == 1:
        array = next(iter(arrays.values()))
    if array is None:
        raise DataError(
            f"{path} holds {', '.join(arrays) or 'no arrays'}: save the images as `images` "
            "(or as the only array), or statistics as `mu` and `sigma`"
        )
    return ImageSet(str(path), _subset(as_uint8_nchw(array, path), limit, seed))


def as_uint8_nchw(array: np.ndarray, source: Path | str) -> torch.Tensor:
    """An image array in any common layout and range -> uint8 [N, C, H, W]."""
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3) and array.shape[1] not in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise DataError(
            f"{source}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W] with C = 1 "
            f"or 3; got shape {array.shape}"
        )
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{source}: images must be uint8 or float, not {array.dtype}")
    low, high = float(array.min()), float(array.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise DataError(
            f"{source}: float images must lie in [0, 1], these span [{low:.3g}, {high:.3g}] "
            "(map [-1, 1] data with (x + 1) / 2)"
        )
    scaled = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(scaled))
