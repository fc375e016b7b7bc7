"""`toy2d`: classic 2-D densities for normalizing flows, diffusion and GAN demos.

Every variant is centred and scaled to unit standard deviation, so one set of model settings
works for all of them, and a plot of samples shows at a glance whether a model found the modes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from genlearn.data.containers import PointDataset
from genlearn.errors import ConfigError

TRAIN_COUNT, TEST_COUNT = 8000, 2000
SEED = 42
DEFAULT_VARIANT = "moons"

Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray | None]]


def _moons(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, n)
    angle = rng.random(n) * np.pi
    upper = np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lower = np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1)
    points = np.where(labels[:, None] == 0, upper, lower)
    return points + rng.normal(0.0, 0.08, (n, 2)), labels


def _circles(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, n)  # 0 = outer ring, 1 = inner ring
    angle = rng.random(n) * 2 * np.pi
    radius = np.where(labels == 0, 1.0, 0.5)[:, None]
    points = radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return points + rng.normal(0.0, 0.04, (n, 2)), labels


def _spiral(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, n)  # two interleaved arms
    turn = np.sqrt(rng.random(n)) * 3 * np.pi  # sqrt: even density along the arm's length
    angle = turn + labels * np.pi
    points = turn[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return points + rng.normal(0.0, 0.3, (n, 2)), labels


def _gaussians8(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 8, n)
    angle = labels * (2 * np.pi / 8)
    centres = 2.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return centres + rng.normal(0.0, 0.15, (n, 2)), labels


def _checkerboard(rng: np.random.Generator, n: int) -> tuple[np.ndarray, None]:
    # 4x4 board on [-2, 2]^2; points fill the 8 squares where (column + row) is even.
    x = rng.random(n) * 4 - 2
    column = np.floor(x + 2)
    row = rng.integers(0, 2, n) * 2 + (column % 2)
    y = row - 2 + rng.random(n)
    return np.stack([x, y], axis=1), None


VARIANTS: dict[str, Sampler] = {
    "moons": _moons,
    "circles": _circles,
    "spiral": _spiral,
    "gaussians8": _gaussians8,
    "checkerboard": _checkerboard,
}


def load_toy2d(variant: str | None = None) -> PointDataset:
    """8,000 train + 2,000 test float32 points of one variant (labels = mode, where defined)."""
    name = DEFAULT_VARIANT if variant is None else variant
    if name not in VARIANTS:
        raise ConfigError(f"toy2d has no variant {name!r}; choose one of {', '.join(VARIANTS)}")
    rng = np.random.default_rng(SEED)
    points, labels = VARIANTS[name](rng, TRAIN_COUNT + TEST_COUNT)
    points = (points - points.mean(axis=0)) / points.std()
    points_t = torch.from_numpy(points.astype(np.float32))
    labels_t = None if labels is None else torch.from_numpy(labels.astype(np.int64))
    return PointDataset(
        name=f"toy2d:{name}",
        train_points=points_t[:TRAIN_COUNT],
        test_points=points_t[TRAIN_COUNT:],
        train_labels=None if labels_t is None else labels_t[:TRAIN_COUNT],
        test_labels=None if labels_t is None else labels_t[TRAIN_COUNT:],
        source=f"embedded: procedural 2-D '{name}' density (genlearn; public domain)",
    )
