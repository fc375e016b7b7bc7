"""The image sets `genlearn fid A B` compares: folders, .npz arrays, statistics, datasets.

- a folder: every image file under it (recursively, in sorted order). A folder is never read
  into memory at once: the set holds its file list, and `chunks()` reads `FOLDER_CHUNK` files
  at a time. Every image is centre-cropped to a square and resized to the set's working size:
  the shorter side of its first readable image, at most `MAX_FOLDER_SIZE` (512) px, since the
  networks resize to 299 px or less anyway. Unreadable files are skipped with a warning.
- an .npz file with an image array (`images`, or its only array): uint8 0..255 or floats in
  [0, 1], shaped [N, H, W], [N, H, W, C] or [N, C, H, W];
- an .npz file with `mu` and `sigma` (the statistics format of the common FID tools, with an
  optional integer `count`): FID only;
- `dataset:NAME` or `dataset:NAME:test` (default split: train), e.g. `dataset:mnist:test`.
Nothing is unpickled: .npz files are read with `allow_pickle=False`.

`limit` keeps a seeded random subset; for a folder it picks from the file list, so only the
chosen files are ever opened.

Grey folders: an image is grey when its mode is grey or its RGB channels agree within ±2
levels (grey saved as RGB; the JPEG codec leaves that much skew). A grey image is always
represented by its first channel, so its features do not depend on its neighbours: a chunk of
grey images is embedded with one channel, any other chunk with three, grey images' channel
repeated (the networks repeat a grey channel themselves, so both give the same features). The
set as a whole is grey when every image is; `is_grey()` decides that with a streaming scan that
opens only the headers of grey-mode files and stops at the first colour image.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from genlearn.data import imaging
from genlearn.data.containers import DataWarning
from genlearn.errors import ConfigError, DataError
from genlearn.metrics.frechet import GaussianStats

MAX_FOLDER_SIZE = 512  # folders of large photos are read at most this big (networks resize anyway)
FOLDER_CHUNK = 256  # files read (and embedded) at a time: 256 x 512 x 512 x 3 bytes = 200 MB
GREY_SKEW = 2  # RGB channels within ±2 levels: a grey image saved as RGB (JPEG noise)


@dataclass
class ImageSet:
    """One side of a comparison: images in memory, a folder's files, or only statistics.

    Exactly one of `array` (uint8 [N, C, H, W]), `files` (a folder, read by `chunks()` at
    `size` x `size` px) and `stats` (Gaussian statistics of features) is set. `dataset` marks
    images of a named dataset: only their features are cached between calls.
    """

    name: str
    array: torch.Tensor | None = None
    stats: GaussianStats | None = None
    files: tuple[Path, ...] | None = None
    size: int = 0
    dataset: bool = False
    unreadable: set[Path] = field(default_factory=set)  # folder files found unreadable so far

    @property
    def count(self) -> int:
        """Images in the set: for a folder, its files less those found unreadable so far; for
        statistics, their `count` (0 when the file does not say)."""
        if self.array is not None:
            return len(self.array)
        if self.files is not None:
            return len(self.files) - len(self.unreadable)
        return self.stats.count if self.stats is not None else 0

    @property
    def images(self) -> torch.Tensor | None:
        """All images in memory, uint8 [N, C, H, W] (None for statistics).

        A folder is read whole here, so use this for small folders only; `chunks()` streams.
        """
        if self.files is None:
            return self.array
        chunks = [chunk for chunk in self.chunks() if len(chunk)]
        if not chunks:
            raise DataError(f"no image in {self.name} could be read")
        if any(chunk.shape[1] == 3 for chunk in chunks):
            chunks = [chunk.expand(-1, 3, -1, -1) for chunk in chunks]
        return torch.cat(chunks)

    def chunks(self, chunk_size: int | None = None) -> Iterator[torch.Tensor]:
        """A folder's images, uint8 [K, 1 or 3, size, size], `chunk_size` files at a time
        (K < chunk_size where files are unreadable; those are skipped with a warning)."""
        if self.files is None:
            raise ValueError(f"{self.name} is not a folder")
        step = chunk_size or FOLDER_CHUNK
        for start in range(0, len(self.files), step):
            yield self._read_chunk(self.files[start : start + step])

    def _read_chunk(self, paths: tuple[Path, ...]) -> torch.Tensor:
        images = np.empty((len(paths), self.size, self.size, 3), dtype=np.uint8)
        grey: list[bool] = []
        for path in paths:
            result = imaging.read_image(path, self.size)
            if result is None:
                self.unreadable.add(path)
                continue
            rgb, colour = result
            is_grey = not colour or _channels_agree(rgb)
            images[len(grey)] = rgb[..., :1] if is_grey else rgb
            grey.append(is_grey)
        images = images[: len(grey)]
        if all(grey):
            images = images[..., :1]
        return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))

    def is_grey(self) -> bool:
        """Whether every image is grey (statistics: False). A folder is scanned file by file,
        stopping at the first colour image; grey-mode files are judged by their header, others
        decoded (`fid_space` asks only about sets of at most 32 px, where that is cheap)."""
        if self.stats is not None:
            return False
        if self.files is None:
            assert self.array is not None
            return self.array.shape[1] == 1
        return all(_file_is_grey(path, self.size) for path in self.files)

    @property
    def image_size(self) -> int:
        """The images' (longer) side in pixels (0 for statistics)."""
        if self.files is not None:
            return self.size
        return max(self.array.shape[-2:]) if self.array is not None else 0

    def describe(self) -> str:
        """What the set is, for the summary line: "1,528 images", "statistics of 10,000
        images", or "statistics" when the file holds no `count`."""
        if self.stats is None:
            return f"{self.count:,} images"
        return f"statistics of {self.count:,} images" if self.count else "statistics"


def load_image_set(spec: str, *, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Read one side of a comparison; `limit` keeps a seeded random subset of that size
    (for a folder, of its file list, before anything is read)."""
    if spec.startswith("dataset:"):
        images = _dataset_images(spec.removeprefix("dataset:"))
        return ImageSet(spec, _subset(images, limit, seed), dataset=True)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder(spec, path, limit, seed)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _npz(path, limit, seed)
    if path.exists():
        raise DataError(f"{spec} is neither a folder of images nor an .npz file")
    raise DataError(
        f"{spec} does not exist: give a folder of images, an .npz file, or dataset:NAME[:test]"
    )


def _subset_indices(count: int, limit: int | None, seed: int) -> torch.Tensor | None:
    """Sorted indices of a seeded random subset of `limit` items, None to keep them all."""
    if limit is None or limit >= count:
        return None
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:limit].sort().values


def _subset(images: torch.Tensor, limit: int | None, seed: int) -> torch.Tensor:
    chosen = _subset_indices(len(images), limit, seed)
    return images if chosen is None else images[chosen]


def _dataset_images(spec: str) -> torch.Tensor:
    from genlearn.data import ImageDataset, get_dataset

    name, _, split = spec.rpartition(":") if spec.endswith((":train", ":test")) else (spec, "", "")
    data = get_dataset(name)
    if not isinstance(data, ImageDataset):
        raise ConfigError(f"dataset {name!r} holds points, not images")
    return data.test_images if split == "test" else data.train_images


def _folder(spec: str, folder: Path, limit: int | None, seed: int) -> ImageSet:
    """A folder's (subset of) files and working size; no pixel is read beyond one image."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and imaging.is_image_file(p))
    if not files:
        raise DataError(f"folder {folder} holds no image files (.png, .jpg, ...)")
    chosen = _subset_indices(len(files), limit, seed)
    if chosen is not None:
        files = [files[i] for i in chosen.tolist()]
    # the working size: the first readable image's (unreadable ones before it are dropped)
    sizes = ((i, _readable_size(path)) for i, path in enumerate(files))
    first, size = next(((i, size) for i, size in sizes if size is not None), (0, None))
    if size is None:
        raise DataError(f"no image in {folder} could be read")
    return ImageSet(spec, files=tuple(files[first:]), size=min(size, MAX_FOLDER_SIZE))


def _readable_size(path: Path) -> int | None:
    """The shorter side of a decodable image; None (with a warning) when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()  # the whole file decodes, not just its header
            return min(image.size)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        warnings.warn(f"skipping unreadable image {path}: {error}", DataWarning, stacklevel=2)
        return None


def _channels_agree(rgb: np.ndarray) -> bool:
    """RGB pixels [..., 3] whose channels agree within ±GREY_SKEW levels: a grey image."""
    spread = rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1).astype(np.int16)
    return bool(spread.max(initial=0) <= GREY_SKEW)


def _file_is_grey(path: Path, size: int) -> bool:
    """A file's grey-ness: from its header for grey modes, else from its decoded pixels
    (unreadable files count as grey: they are skipped when the set is read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if Image.getmodebase(image.mode) == "L":
                return True
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return True
    with warnings.catch_warnings():  # an unreadable file is reported when the set is read
        warnings.simplefilter("ignore", DataWarning)
        result = imaging.read_image(path, size)
    return result is None or not result[1] or _channels_agree(result[0])


def _npz(path: Path, limit: int | None, seed: int) -> ImageSet:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array
            raise ValueError("not an archive of arrays")
        with loaded as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        # numpy reports any non-archive as "pickled data": never suggest loading that
        raise DataError(
            f"cannot read {path}: it is not a NumPy .npz archive of arrays (save one with "
            "numpy.savez; pickled objects are never loaded)"
        ) from None
    if "mu" in arrays and "sigma" in arrays:
        return ImageSet(str(path), stats=_statistics(path, arrays))
    array = arrays.get("images")
    if array is None and len(arrays) == 1:
        array = next(iter(arrays.values()))
    if array is None:
        raise DataError(
            f"{path} holds {', '.join(arrays) or 'no arrays'}: save the images as `images` "
            "(or as the only array), or statistics as `mu` and `sigma`"
        )
    return ImageSet(str(path), _subset(as_uint8_nchw(array, path), limit, seed))


def _statistics(path: Path, arrays: dict[str, np.ndarray]) -> GaussianStats:
    """`mu` [D], `sigma` [D, D] and an optional integer `count`, checked; DataError naming
    the file and the problem otherwise."""
    mu, sigma = arrays["mu"], arrays["sigma"]
    for name, array in (("mu", mu), ("sigma", sigma)):
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise DataError(f"{path}: `{name}` must hold numbers, not {array.dtype}")
    if mu.ndim != 1 or len(mu) == 0:
        raise DataError(
            f"{path}: `mu` must be a vector [D] (the feature mean), got shape {list(mu.shape)}"
        )
    dim = len(mu)
    if sigma.shape != (dim, dim):
        raise DataError(
            f"{path}: `sigma` must be the [{dim}, {dim}] covariance matching `mu`, got shape "
            f"{list(sigma.shape)}"
        )
    for name, array in (("mu", mu), ("sigma", sigma)):
        if not np.isfinite(array).all():
            raise DataError(f"{path}: `{name}` holds NaN or infinite values: recompute it")
    return GaussianStats(mu.astype(np.float64), sigma.astype(np.float64), _count(path, arrays))


def _count(path: Path, arrays: dict[str, np.ndarray]) -> int:
    """The optional `count` of a statistics file: a whole number >= 2 (0 when absent)."""
    if "count" not in arrays:
        return 0
    count = arrays["count"]
    numeric = np.issubdtype(count.dtype, np.integer) or np.issubdtype(count.dtype, np.floating)
    value = float(count) if numeric and count.ndim == 0 else math.nan
    if not (math.isfinite(value) and value.is_integer()):
        raise DataError(
            f"{path}: `count` must be one whole number (the images behind the statistics), "
            f"got {count.dtype} of shape {list(count.shape)}"
        )
    if value < 2:
        raise DataError(
            f"{path}: `count` is {value:g}, but statistics need at least 2 images: recompute "
            "them from more images"
        )
    return int(value)


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
