"""Datasets for genlearn: one call, `get_dataset(name)`, for embedded, file and folder data.

    >>> ds = get_dataset("digits", image_size=16)   # embedded: always available
    >>> ds = get_dataset("mnist")                    # $GENLEARN_DATA/mnist/, cache or download
    >>> ds = get_dataset("folder:/path/to/images", image_size=64)
    >>> pts = get_dataset("toy2d", variant="moons")

`list_datasets()` says what exists and what is available right now (no network needed).
"""

from genlearn.data.containers import DatasetEntry, DataWarning, ImageDataset, PointDataset
from genlearn.data.files import resolve_file
from genlearn.data.registry import REGISTRY, DatasetSpec, get_dataset, list_datasets, register

__all__ = [
    "REGISTRY",
    "DataWarning",
    "DatasetEntry",
    "DatasetSpec",
    "ImageDataset",
    "PointDataset",
    "get_dataset",
    "list_datasets",
    "register",
    "resolve_file",
]
