"""`folder:PATH`: any folder of images, with one sub-folder per class or none at all.

The rules aim at "it just works" for a folder a user made by hand: every image is centre-
cropped and resized (so mixed sizes are fine), a mix of grey and colour files becomes RGB,
and a broken file is skipped with a warning instead of ending the run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from genlearn.data.cache import cache_key, cache_path, load_dataset, save_dataset
from genlearn.data.containers import DataWarning, ImageDataset
from genlearn.data.imaging import (
    IMAGE_EXTENSIONS,
    is_image_file,
    read_images,
    split_indices,
    to_nchw,
)
from genlearn.errors import DataError

DEFAULT_SIZE = 64
TEST_FRACTION = 0.1
SEED = 0


def load_folder(path: str, image_size: int | None = None, limit: int | None = None) -> ImageDataset:
    """Load every image under `path` (sub-folders = classes); `limit` keeps a fixed sample."""
    folder = _existing_folder(path)
    size = DEFAULT_SIZE if image_size is None else image_size
    try:
        files, labels, class_names = scan_folder(folder)
    except OSError as error:
        raise DataError(
            f"folder {folder}: cannot list its files ({error}): check its permissions"
        ) from error
    if limit is not None and limit < len(files):
        # A seeded sample rather than the first N files, so every class stays represented.
        chosen = np.sort(np.random.default_rng(SEED).permutation(len(files))[:limit])
        files = [files[i] for i in chosen]
        labels = None if labels is None else labels[chosen]
    cached_at = cache_path("folder", cache_key(folder, files, size=size, limit=limit))
    cached = load_dataset(cached_at)
    if cached is not None:
        return cached
    dataset = _build(folder, files, labels, class_names, size)
    save_dataset(cached_at, dataset)
    return dataset


def scan_folder(folder: Path) -> tuple[list[Path], np.ndarray | None, list[str] | None]:
    """Image files (sorted), their class indices and class names (None when unlabelled)."""
    top = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    classes: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in sub.rglob("*") if p.is_file() and is_image_file(p))
        if images:
            classes[sub.name] = images
    if not classes:
        if not top:
            raise DataError(
                f"folder {folder} holds no images: genlearn reads "
                f"{', '.join(IMAGE_EXTENSIONS)} files, directly in the folder or "
                f"in one sub-folder per class"
            )
        return top, None, None
    if top:
        warnings.warn(
            f"{folder}: ignoring {len(top)} images next to the class sub-folders "
            f"(only images inside a sub-folder have a class)",
            DataWarning,
            stacklevel=3,
        )
    files = [path for images in classes.values() for path in images]
    labels = np.concatenate([np.full(len(v), i) for i, v in enumerate(classes.values())])
    return files, labels.astype(np.int64), list(classes)


def _existing_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        problem = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DataError(f"folder {folder} {problem}: give folder:PATH with PATH a folder of images")
    return folder.resolve()


def _build(
    folder: Path,
    files: list[Path],
    labels: np.ndarray | None,
    class_names: list[str] | None,
    size: int,
) -> ImageDataset:
    images, kept, colour = read_images(files, size, folder.name or str(folder))
    if len(kept) == 0:
        raise DataError(
            f"folder {folder}: none of its {len(files)} image files could be read "
            f"(see the warnings): check that they are valid images"
        )
    if colour.any() and not colour.all():
        warnings.warn(
            f"folder {folder} mixes grey and colour images: converting its "
            f"{int((~colour).sum())} grey images to RGB",
            DataWarning,
            stacklevel=3,
        )
    if not colour.any():
        images = images[..., :1]  # grey images were read as RGB with equal channels
    labels = None if labels is None else labels[kept]
    train, test = split_indices(len(kept), TEST_FRACTION, SEED, groups=labels)
    return ImageDataset(
        name=f"folder:{folder}",
        train_images=to_nchw(images[train]),
        test_images=to_nchw(images[test]),
        train_labels=None if labels is None else torch.from_numpy(labels[train]),
        test_labels=None if labels is None else torch.from_numpy(labels[test]),
        class_names=class_names,
        attribute_names=None,
        source=f"{folder} (user folder; licence: as its owner states)",
    )
