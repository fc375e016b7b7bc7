"""Cache of resized image folders (CelebA, `folder:`), so only the first load decodes JPEGs.

Decoding and resizing 200,000 CelebA images takes many minutes; reading the resulting .npz
takes seconds. The cache key covers what the result depends on: the folder, the settings
(image size, limit) and the size + mtime of the source paths. `folder:` passes every image
file, so any edit makes a new key; CelebA passes its listing files and the image folder, whose
mtime changes when images are added or removed, so its key costs no scan of 200,000 files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from genlearn.data.containers import DataWarning, ImageDataset
from genlearn.data.files import dataset_cache_dir

log = logging.getLogger(__name__)
_FORMAT_VERSION = "1"


def cache_key(folder: Path, files: Iterable[Path], **settings: object) -> str:
    """A short hash of the folder, the settings and each path's (name, size, mtime)."""
    digest = hashlib.sha256(f"v{_FORMAT_VERSION}|{folder.resolve()}".encode())
    for name, value in sorted(settings.items()):
        digest.update(f"|{name}={value}".encode())
    for path in files:
        try:
            stat = path.stat()
            digest.update(f"|{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        except OSError:  # vanished since listing: reading it will warn and skip it
            digest.update(f"|{path}:missing".encode())
    return digest.hexdigest()[:20]


def cache_path(dataset: str, key: str) -> Path:
    """Where the converted copy with this key lives."""
    return dataset_cache_dir(dataset) / f"converted-{key}.npz"


def load_dataset(path: Path) -> ImageDataset | None:
    """The cached dataset at `path`, or None if absent or unreadable (it is then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        return _from_arrays(arrays)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        log.warning("ignoring unreadable dataset cache %s (%s); rebuilding it", path, error)
        return None


def save_dataset(path: Path, dataset: ImageDataset) -> None:
    """Write `dataset` to `path` atomically; a failure only costs speed, so it only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as error:
        _warn_not_saved(path, error)
        return
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            np.savez(out, **_to_arrays(dataset))
        os.replace(tmp, path)
    except OSError as error:
        _warn_not_saved(path, error)
    finally:
        tmp.unlink(missing_ok=True)


def _warn_not_saved(path: Path, error: OSError) -> None:
    warnings.warn(
        f"could not write dataset cache {path} ({error}); the next load will decode "
        f"the images again",
        DataWarning,
        stacklevel=3,
    )


def _to_arrays(dataset: ImageDataset) -> dict[str, np.ndarray]:
    """Only plain (non-object) arrays, so the file loads with allow_pickle=False."""
    arrays = {
        "name": np.array(dataset.name),
        "source": np.array(dataset.source),
        "train_images": dataset.train_images.numpy(),
        "test_images": dataset.test_images.numpy(),
    }
    for key in ("train_labels", "test_labels"):
        labels = getattr(dataset, key)
        if labels is not None:
            arrays[key] = labels.numpy()
    for key in ("class_names", "attribute_names"):
        names = getattr(dataset, key)
        if names is not None:
            arrays[key] = np.array(names, dtype=str)
    return arrays


def _from_arrays(arrays: dict[str, np.ndarray]) -> ImageDataset:
    def tensor(key: str) -> torch.Tensor | None:
        return torch.from_numpy(arrays[key]) if key in arrays else None

    def names(key: str) -> list[str] | None:
        return [str(n) for n in arrays[key]] if key in arrays else None

    return ImageDataset(
        name=str(arrays["name"]),
        train_images=torch.from_numpy(arrays["train_images"]),
        test_images=torch.from_numpy(arrays["test_images"]),
        train_labels=tensor("train_labels"),
        test_labels=tensor("test_labels"),
        class_names=names("class_names"),
        attribute_names=names("attribute_names"),
        source=str(arrays["source"]),
    )
