"""The one table of datasets: `get_dataset` and `list_datasets` read it, nothing else does.

Adding a dataset is one `register(DatasetSpec(...))` call: a loader function, the options it
takes and a cheap, offline status check for `genlearn datasets`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from genlearn.data.celeba import celeba_status, load_celeba
from genlearn.data.containers import DatasetEntry, ImageDataset, PointDataset
from genlearn.data.cylinders import load_cylinders
from genlearn.data.digits import load_digits
from genlearn.data.folder import load_folder
from genlearn.data.mnist import FASHION_MNIST, MNIST, idx_status, load_idx_set
from genlearn.data.olivetti import load_olivetti, olivetti_status
from genlearn.data.shapes_captions import load_shapes_captions_dataset
from genlearn.data.toy2d import VARIANTS, load_toy2d
from genlearn.errors import ConfigError, DataError

Dataset = ImageDataset | PointDataset
MAX_IMAGE_SIZE = 1024


@dataclass(frozen=True)
class DatasetSpec:
    """How to load one dataset and how to describe it.

    `argument` names the loader option filled from the `NAME:ARG` form (`folder:PATH` fills
    `path`, `toy2d:spiral` fills `variant`); `argument_required` makes bare `NAME` an error.
    """

    name: str
    kind: str  # "embedded" | "file" | "folder"
    description: str
    load: Callable[..., Dataset]
    status: Callable[[], str]
    options: tuple[str, ...] = ()
    argument: str | None = None
    argument_required: bool = False

    @property
    def display_name(self) -> str:
        return f"{self.name}:PATH" if self.argument_required else self.name


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) a dataset in the registry."""
    REGISTRY[spec.name] = spec
    return spec


def _embedded() -> str:
    return "embedded"


IMAGE_OPTIONS = ("image_size",)
FOLDER_OPTIONS = ("path", "image_size", "limit")

register(
    DatasetSpec(
        "mnist",
        "file",
        "MNIST handwritten digits: 60,000 + 10,000 grey 28x28, 10 classes",
        partial(load_idx_set, MNIST),
        partial(idx_status, MNIST),
        IMAGE_OPTIONS,
    )
)
register(
    DatasetSpec(
        "fashion-mnist",
        "file",
        "Zalando clothing: 60,000 + 10,000 grey 28x28, 10 classes",
        partial(load_idx_set, FASHION_MNIST),
        partial(idx_status, FASHION_MNIST),
        IMAGE_OPTIONS,
    )
)
register(
    DatasetSpec(
        "digits",
        "embedded",
        "1,797 real 8x8 handwritten digits (scikit-learn) at 8, 16 or 28 px",
        load_digits,
        _embedded,
        IMAGE_OPTIONS,
    )
)
register(
    DatasetSpec(
        "cylinders",
        "embedded",
        "procedural shaded cans, grey 32 px; labels: height and width",
        load_cylinders,
        _embedded,
        IMAGE_OPTIONS,
    )
)
register(
    DatasetSpec(
        "shapes-captions",
        "embedded",
        "two coloured shapes per RGB 32 px picture, with English captions; 8,000 + 1,000, "
        "and 1,000 of colour-shape pairs never trained on",
        load_shapes_captions_dataset,
        _embedded,
        IMAGE_OPTIONS,
    )
)
register(
    DatasetSpec(
        "toy2d",
        "embedded",
        f"2-D point densities: {', '.join(VARIANTS)} (toy2d:VARIANT)",
        load_toy2d,
        _embedded,
        ("variant",),
        argument="variant",
    )
)
register(
    DatasetSpec(
        "olivetti",
        "file",
        "400 grey faces of 40 people (AT&T/ORL), 64 px, 8 train + 2 test each",
        load_olivetti,
        olivetti_status,
        IMAGE_OPTIONS,
    )
)
register(
    DatasetSpec(
        "celeba",
        "folder",
        "CelebA aligned faces, RGB 64 px, 40 binary attributes (celeba:PATH)",
        load_celeba,
        celeba_status,
        FOLDER_OPTIONS,
        argument="path",
    )
)
register(
    DatasetSpec(
        "folder",
        "folder",
        "your images: one sub-folder per class or none; 64 px",
        load_folder,
        lambda: "provide a folder: folder:PATH",
        FOLDER_OPTIONS,
        argument="path",
        argument_required=True,
    )
)


def get_dataset(name: str, **options: Any) -> Dataset:
    """Load a dataset by name (`mnist`, `folder:/path`, `toy2d:spiral`...).

    Options left at None are ignored, so a caller can pass every option it knows of; options
    a dataset does not take raise `ConfigError`, problems with the data raise `DataError`.
    """
    spec, argument = _lookup(name)
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(spec.options))
    if unknown:
        takes = ", ".join(o for o in spec.options if o != spec.argument) or "no options"
        raise ConfigError(
            f"dataset {spec.name} does not take {', '.join(unknown)} (it takes {takes})"
        )
    if argument:
        if spec.argument is None:
            raise ConfigError(f"dataset {spec.name} takes no ':' argument; use {spec.name}")
        given[spec.argument] = argument
    elif spec.argument_required and spec.argument not in given:
        raise ConfigError(f"dataset {spec.name} needs a {spec.argument}: {spec.name}:PATH")
    _check_sizes(given)
    return spec.load(**given)


def list_datasets() -> list[DatasetEntry]:
    """Every registered dataset with its availability, decided by local checks only."""
    return [
        DatasetEntry(spec.display_name, spec.kind, spec.description, _status(spec))
        for spec in REGISTRY.values()
    ]


def _lookup(name: str) -> tuple[DatasetSpec, str]:
    key, _, argument = name.strip().partition(":")
    key = key.strip().lower().replace("_", "-")
    if key not in REGISTRY:
        known = ", ".join(spec.display_name for spec in REGISTRY.values())
        hint = f"; for a folder of images use --data folder:{name}" if "/" in name else ""
        if key in ("shakespeare", "shakespeare-excerpt", "text"):
            raise DataError(
                f"{name!r} is text: train a GPT on it, genlearn train gpt --data {name}"
            )
        raise DataError(f"unknown dataset {name!r}: choose one of {known}{hint}")
    return REGISTRY[key], argument.strip()


_BOUNDS = {"image_size": (4, MAX_IMAGE_SIZE), "limit": (1, None)}


def _check_sizes(options: dict[str, Any]) -> None:
    """Reject sizes a loader would choke on, with a message naming the option."""
    for key, (low, high) in _BOUNDS.items():
        value = options.get(key)
        if value is None:
            continue
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole or value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise ConfigError(f"{key} must be a whole number {bound}, got {value!r}")


def _status(spec: DatasetSpec) -> str:
    try:
        return spec.status()
    except OSError as error:  # e.g. an unreadable data folder: still list the dataset
        return f"unavailable: {error}"
