"""`olivetti`: the 400 AT&T/ORL ("Olivetti") faces of 40 people, 10 images each.

Sources, in order: a packed `orl_faces.npz` (originals, 112x92) under `$GENLEARN_DATA/faces/`,
`.../olivetti/` or the cache; then scikit-learn's 64x64 copy, downloaded once.

scikit-learn stores its copy as a joblib pickle (`olivetti.pkz`) in its `data_home` and
unpickles that file on later calls. genlearn therefore never points it at a lasting folder: it
fetches into a fresh temporary folder (where scikit-learn writes the pickle but, the folder
being new, does not read one), converts the faces to a plain `olivetti_faces_sklearn.npz` in
genlearn's cache (written atomically, read with `allow_pickle=False`) and deletes the
temporary folder. No pickle is ever left in, or loaded from, genlearn's cache.
"""

from __future__ import annotations

import http.client
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from genlearn.atomic import atomic_path
from genlearn.data.containers import ImageDataset
from genlearn.data.files import (
    OFFLINE_ENV,
    dataset_cache_dir,
    downloads_disabled,
    find_local,
    where_to_put,
)
from genlearn.data.imaging import resize_stack, split_indices, to_nchw
from genlearn.errors import DataError

PACKED = "orl_faces.npz"
CONVERTED = "olivetti_faces_sklearn.npz"
ALIASES = ("faces",)
DEFAULT_SIZE = 64
TEST_FRACTION = 0.2  # 2 of each person's 10 images
SEED = 0
CREDIT = (
    "AT&T/ORL faces, Olivetti Research Laboratory; please credit Samaria & Harter "
    "1994; no licence stated"
)


def load_olivetti(image_size: int | None = None) -> ImageDataset:
    """Grey faces, centre-cropped and resized; label = person 0..39; 8/2 split per person."""
    path = find_local("olivetti", [PACKED, CONVERTED], ALIASES) or _fetch_with_sklearn()
    images, people = _read_npz(path)
    images = resize_stack(images, DEFAULT_SIZE if image_size is None else image_size)
    train, test = split_indices(len(people), TEST_FRACTION, SEED, groups=people)
    labels = torch.from_numpy(people)
    return ImageDataset(
        name="olivetti",
        train_images=to_nchw(images[train]),
        test_images=to_nchw(images[test]),
        train_labels=labels[train],
        test_labels=labels[test],
        class_names=[f"s{i + 1}" for i in range(int(people.max()) + 1)],
        attribute_names=None,
        source=f"{path} ({CREDIT})",
    )


def olivetti_status() -> str:
    """Availability without network access."""
    path = find_local("olivetti", [PACKED, CONVERTED], ALIASES)
    if path is not None:
        return f"found: {path}"
    if downloads_disabled():
        return f"missing: put {PACKED} in {where_to_put('olivetti')}"
    return "downloadable (1 MB, via scikit-learn)"


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, H, W] sorted by (subject, image_index), and person ids 0..K-1."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, subject = npz["images"], npz["subject"].astype(np.int64)
            index = npz["image_index"].astype(np.int64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(
            f"{path}: not a readable faces file with arrays images, subject and "
            f"image_index ({error}): get a fresh copy"
        ) from error
    counts = {len(images), len(subject), len(index)}
    if images.dtype != np.uint8 or images.ndim != 3 or len(counts) != 1:
        raise DataError(
            f"{path}: expected uint8 images [N, H, W] with N subjects and image "
            f"indices, got {images.dtype} {images.shape}: get a fresh copy"
        )
    order = np.lexsort((index, subject))
    _, people = np.unique(subject[order], return_inverse=True)
    return images[order], people.astype(np.int64)


def _fetch_with_sklearn() -> Path:
    """Download scikit-learn's copy into a throw-away folder; keep only a plain .npz."""
    if downloads_disabled():
        raise DataError(
            f"olivetti file {PACKED} not found: put it in {where_to_put('olivetti')} "
            f"(downloads are off: {OFFLINE_ENV}=1)"
        )
    from sklearn.datasets import fetch_olivetti_faces  # slow import: only when needed

    # A fresh data_home: scikit-learn writes its olivetti.pkz pickle there and, as the folder
    # is new, never reads an old one; the folder and the pickle are deleted on leaving.
    with tempfile.TemporaryDirectory(prefix="genlearn-olivetti-") as scratch:
        try:
            bunch = fetch_olivetti_faces(data_home=scratch, shuffle=False)
        except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
            raise DataError(
                f"olivetti file {PACKED} not found: put it in "
                f"{where_to_put('olivetti')} (download failed: {error})"
            ) from error
    # Faces come ordered by person, 10 each, as floats in [0, 1].
    images = np.round(np.asarray(bunch.images) * 255).astype(np.uint8)
    subject = np.asarray(bunch.target).astype(np.int16) + 1
    index = (np.arange(len(subject)) % 10 + 1).astype(np.int16)
    path = dataset_cache_dir("olivetti") / CONVERTED
    # Through an open file, so np.savez cannot append ".npz" to the temporary name.
    with atomic_path(path) as tmp, tmp.open("wb") as out:
        np.savez(out, images=images, subject=subject, image_index=index)
    return path
