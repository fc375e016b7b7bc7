"""`digits`: scikit-learn's 1,797 real 8x8 handwritten digits, shipped inside scikit-learn.

It is the dataset that always works (no download, no files), so every image model can be
tried in seconds. The default size is 28 px so a model configured for MNIST runs unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from genlearn.data.containers import ImageDataset
from genlearn.data.imaging import resize_stack, split_indices, to_nchw
from genlearn.errors import ConfigError

SIZES = (8, 16, 28)
DEFAULT_SIZE = 28
TEST_FRACTION = 0.15
SEED = 0
SOURCE = (
    "embedded: scikit-learn digits (UCI Optical Recognition of Handwritten Digits, "
    "Alpaydin & Kaynak; CC BY 4.0)"
)


def load_digits(image_size: int | None = None) -> ImageDataset:
    """Digits as uint8 [N, 1, S, S] (S = 8, 16 or 28), with a fixed stratified 85/15 split."""
    from sklearn.datasets import load_digits as sklearn_digits  # slow import: only when used

    size = DEFAULT_SIZE if image_size is None else image_size
    if size not in SIZES:
        raise ConfigError(f"digits comes in image_size {', '.join(map(str, SIZES))}; got {size}")
    bunch = sklearn_digits()
    # Pixel values are counts 0..16 of "on" cells in a 4x4 block; map them onto 0..255.
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    images = resize_stack(images, size)
    labels = bunch.target.astype(np.int64)
    train, test = split_indices(len(labels), TEST_FRACTION, SEED, groups=labels)
    return ImageDataset(
        name="digits",
        train_images=to_nchw(images[train]),
        test_images=to_nchw(images[test]),
        train_labels=torch.from_numpy(labels[train]),
        test_labels=torch.from_numpy(labels[test]),
        class_names=[str(d) for d in range(10)],
        attribute_names=None,
        source=SOURCE,
    )
