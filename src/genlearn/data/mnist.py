"""`mnist` and `fashion-mnist`: the four IDX files of each, found locally or downloaded.

Parsed arrays are not cached: decompressing and checking all four MNIST files takes about
0.4 s, and a .npy copy would save only ~0.2 s while adding a second copy to keep in sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlearn.data.containers import ImageDataset
from genlearn.data.files import downloads_disabled, find_local, resolve_file, where_to_put
from genlearn.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from genlearn.data.imaging import resize_stack, to_nchw
from genlearn.errors import DataError

SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxSet:
    """Where one MNIST-format dataset lives online and what it is."""

    name: str
    base_url: str
    sha256: dict[str, str]  # of the official .gz files, keyed by file stem
    download_mb: int
    class_names: list[str]
    credit: str


MNIST = IdxSet(
    name="mnist",
    base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",  # the mirror torchvision uses
    sha256={
        "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    download_mb=11,
    class_names=[str(d) for d in range(10)],
    credit="MNIST, Y. LeCun, C. Cortes & C. Burges; CC BY-SA 3.0",
)

FASHION_MNIST = IdxSet(
    name="fashion-mnist",
    base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    # SHA-256 of the official files as listed, identically, by two independent public
    # projects that download them (a dataset-loader library and a checksum manifest which
    # also lists the official MNIST sums above); Zalando's README publishes only MD5s.
    sha256={
        "train-images-idx3-ubyte": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
    download_mb=30,
    class_names=[
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    credit="Fashion-MNIST, Zalando Research (Xiao, Rasul & Vollgraf 2017); MIT licence",
)


def load_idx_set(spec: IdxSet, image_size: int | None = None) -> ImageDataset:
    """Load a 28x28 MNIST-format dataset, optionally resized to `image_size`."""
    arrays = {split: _load_split(spec, *stems) for split, stems in SPLITS.items()}
    (train_x, train_y, where), (test_x, test_y, _) = arrays["train"], arrays["test"]
    if image_size is not None:
        train_x, test_x = resize_stack(train_x, image_size), resize_stack(test_x, image_size)
    return ImageDataset(
        name=spec.name,
        train_images=to_nchw(train_x),
        test_images=to_nchw(test_x),
        train_labels=torch.from_numpy(train_y.astype(np.int64)),
        test_labels=torch.from_numpy(test_y.astype(np.int64)),
        class_names=list(spec.class_names),
        attribute_names=None,
        source=f"{where} ({spec.credit})",
    )


def idx_status(spec: IdxSet) -> str:
    """Availability without network access: found locally, or how to get it."""
    stems = [stem for pair in SPLITS.values() for stem in pair]
    found = [find_local(spec.name, [f"{stem}.gz", stem]) for stem in stems]
    if all(found):
        return f"found: {found[0].parent}"
    if downloads_disabled():
        return f"missing: put its files in {where_to_put(spec.name)}"
    return f"downloadable ({spec.download_mb} MB)"


def _load_split(
    spec: IdxSet, image_stem: str, label_stem: str
) -> tuple[np.ndarray, np.ndarray, Path]:
    image_path = _resolve(spec, image_stem)
    label_path = _resolve(spec, label_stem)
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC)
    if images.shape[1] != images.shape[2]:
        raise DataError(
            f"{image_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected square ones: wrong file"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{image_path} holds {len(images)} images but {label_path} holds "
            f"{len(labels)} labels: the files do not belong together"
        )
    if labels.size and labels.max() >= len(spec.class_names):
        raise DataError(
            f"{label_path}: label {labels.max()} is out of range for "
            f"{len(spec.class_names)} classes: wrong or corrupt file"
        )
    return images, labels, image_path.parent


def _resolve(spec: IdxSet, stem: str) -> Path:
    filename = f"{stem}.gz"
    return resolve_file(
        spec.name, filename, spec.base_url + filename, spec.sha256[stem], alternatives=[stem]
    )
