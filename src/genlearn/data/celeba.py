"""`celeba`: aligned CelebA faces with their 40 binary attributes, from a folder you provide.

CelebA cannot be downloaded automatically (it is hosted behind Google Drive quotas), so the
user puts `img_align_celeba/` and `list_attr_celeba.txt` (optionally `list_eval_partition.txt`)
in `$GENLEARN_DATA/celeba/`, the cache folder, or any folder given as `celeba:PATH`. A dataset
loaded from `celeba:PATH` is named `celeba:<absolute folder>`, so a run that stores the name can
load the same folder again with `get_dataset(name)`.

Decoding 200,000 JPEGs is slow, so the resized result is cached as an .npz keyed by the folder,
the size, the limit and the modification times of the listing files and the image folder.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from genlearn.data.cache import cache_key, cache_path, load_dataset, save_dataset
from genlearn.data.containers import DataWarning, ImageDataset
from genlearn.data.files import data_dir, dataset_cache_dir, where_to_put
from genlearn.data.imaging import read_images, split_indices, to_nchw
from genlearn.errors import DataError

log = logging.getLogger(__name__)

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_DIR = "img_align_celeba"
HOME_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
DEFAULT_SIZE = 64
TEST_FRACTION = 0.1
SEED = 0
TEST_PARTITION = 2  # list_eval_partition.txt: 0 train, 1 validation, 2 test
CREDIT = "CelebA, Liu, Luo, Wang & Tang 2015; non-commercial research use only"


def load_celeba(
    path: str | None = None, image_size: int | None = None, limit: int | None = None
) -> ImageDataset:
    """RGB faces [N, 3, S, S] and float32 attributes [N, 40] in {0, 1}.

    `limit` keeps only the first N images of the attribute list (quick experiments).
    """
    folder = _find_folder(path)
    size = DEFAULT_SIZE if image_size is None else image_size
    attr_file, image_dir = folder / ATTR_FILE, _image_dir(folder)
    if not attr_file.is_file():
        raise DataError(
            f"CelebA folder {folder} has no {ATTR_FILE}: get it from {HOME_PAGE} "
            f"(Anno/) and put it next to {IMAGE_DIR}/"
        )
    partition_file = folder / PARTITION_FILE
    listing = [attr_file, image_dir] + ([partition_file] if partition_file.is_file() else [])
    cached_at = cache_path("celeba", cache_key(folder, listing, size=size, limit=limit))
    # The cache key depends on the folder, not on how it was named: set the name every time.
    name = "celeba" if path is None else f"celeba:{folder}"
    dataset = load_dataset(cached_at)
    if dataset is None:
        dataset = _build(folder, attr_file, image_dir, size, limit)
        save_dataset(cached_at, dataset)
    dataset.name = name
    return dataset


def celeba_status() -> str:
    """Availability without network access."""
    for folder in _default_folders():
        if (folder / ATTR_FILE).is_file():
            return f"found: {folder}"
    return (
        f"provide a folder: put {IMAGE_DIR}/ and {ATTR_FILE} in {where_to_put('celeba')} "
        f"or use celeba:PATH"
    )


def parse_attributes(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """File names, attributes as float32 [N, K] in {0, 1}, and the K attribute names.

    Format: line 1 the image count, line 2 the attribute names, then one line per image:
    `000001.jpg  -1  1 ...` with 1 meaning "has the attribute".
    """
    lines = _read_lines(path)
    if len(lines) < 3 or not lines[0].split() or not lines[0].split()[0].isdigit():
        raise DataError(
            f"{path}: expected an image count, a line of attribute names and one "
            f"line per image: is this CelebA's {ATTR_FILE}?"
        )
    names_line = lines[1].split()
    width = len(names_line) + 1
    files: list[str] = []
    rows: list[list[str]] = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != width:
            raise DataError(
                f"{path} line {number}: expected a file name and "
                f"{width - 1} values, found {len(fields) - 1} values: fix or "
                f"replace the file"
            )
        files.append(fields[0])
        rows.append(fields[1:])
    if not files:
        raise DataError(f"{path} lists no images: fix or replace the file")
    try:
        values = np.array(rows, dtype=np.int8)
    except (ValueError, OverflowError):
        values = np.zeros(0, dtype=np.int8)  # reported just below
    if values.shape != (len(rows), width - 1) or not np.isin(values, (-1, 0, 1)).all():
        raise DataError(f"{path}: attribute values must be 1 or -1: fix or replace the file")
    declared = int(lines[0].split()[0])
    if declared != len(files):
        log.info("%s declares %d images but lists %d", path, declared, len(files))
    return files, (values > 0).astype(np.float32), names_line


def _build(
    folder: Path, attr_file: Path, image_dir: Path, size: int, limit: int | None
) -> ImageDataset:
    names, attributes, attribute_names = parse_attributes(attr_file)
    rows = _present_rows(names, image_dir, limit)
    paths = [image_dir / names[i] for i in rows]
    images, kept, _ = read_images(paths, size, "CelebA")
    if len(kept) == 0:
        raise DataError(
            f"CelebA folder {folder}: none of the listed images could be read "
            f"(see the warnings): re-extract {IMAGE_DIR}/"
        )
    rows = rows[kept]
    train, test = _split([names[i] for i in rows], folder / PARTITION_FILE)
    labels = torch.from_numpy(attributes[rows])
    return ImageDataset(
        name="celeba",
        train_images=to_nchw(images[train]),
        test_images=to_nchw(images[test]),
        train_labels=labels[train],
        test_labels=labels[test],
        class_names=None,
        attribute_names=attribute_names,
        source=f"{folder} ({CREDIT})",
    )


def _present_rows(names: list[str], image_dir: Path, limit: int | None) -> np.ndarray:
    """Indices of the listed images that exist (first `limit` of them); warn about the rest."""
    try:
        present = set(os.listdir(image_dir))
    except OSError as error:
        raise DataError(f"CelebA folder {image_dir}: cannot list it ({error})") from error
    rows: list[int] = []
    missing: list[str] = []
    for i, name in enumerate(names):
        if limit is not None and len(rows) >= limit:
            break
        if name in present:
            rows.append(i)
        else:
            missing.append(name)
    if not rows:
        raise DataError(
            f"CelebA folder {image_dir} holds none of the images listed in "
            f"{ATTR_FILE} (e.g. {names[0]}): extract the aligned JPEGs into it"
        )
    if missing:
        warnings.warn(
            f"CelebA: skipping {len(missing)} images listed in {ATTR_FILE} but "
            f"missing from {image_dir} (e.g. {', '.join(missing[:3])})",
            DataWarning,
            stacklevel=4,
        )
    return np.array(rows, dtype=np.int64)


def _split(names: list[str], partition_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Official split when available (train + validation -> train), else a fixed 90/10 split.

    With `limit`, the first images are all in the official training partition; the fixed
    split is then used so the test set is not empty.
    """
    if partition_file.is_file():
        partition = _read_partition(partition_file)
        is_test = np.array([partition.get(name, 0) == TEST_PARTITION for name in names])
        if is_test.any() and not is_test.all():
            return np.flatnonzero(~is_test), np.flatnonzero(is_test)
        log.info(
            "%s leaves one split empty for these images: using a fixed 90/10 split", partition_file
        )
    return split_indices(len(names), TEST_FRACTION, SEED)


def _read_partition(path: Path) -> dict[str, int]:
    partition: dict[str, int] = {}
    for number, line in enumerate(_read_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(
                f"{path} line {number}: expected '<file name> <0|1|2>': fix or "
                f"delete the file (without it a fixed 90/10 split is used)"
            )
        partition[fields[0]] = int(fields[1])
    return partition


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read it as text ({error}): replace the file") from error


def _default_folders() -> list[Path]:
    root = data_dir()
    return ([root / "celeba"] if root is not None else []) + [dataset_cache_dir("celeba")]


def _find_folder(path: str | None) -> Path:
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"CelebA folder {folder} does not exist: give celeba:PATH with "
                f"PATH holding {IMAGE_DIR}/ and {ATTR_FILE}"
            )
        return folder.resolve()
    for folder in _default_folders():
        if folder.is_dir():
            return folder.resolve()
    raise DataError(
        f"CelebA not found: put {IMAGE_DIR}/ and {ATTR_FILE} from {HOME_PAGE} in "
        f"{where_to_put('celeba')}, or use celeba:PATH"
    )


def _image_dir(folder: Path) -> Path:
    """`img_align_celeba/`, or the doubly nested copy some archives unpack to."""
    image_dir = folder / IMAGE_DIR
    nested = image_dir / IMAGE_DIR
    if nested.is_dir():
        return nested
    if not image_dir.is_dir():
        raise DataError(
            f"CelebA folder {folder} has no {IMAGE_DIR}/ folder: extract the aligned JPEGs there"
        )
    return image_dir
