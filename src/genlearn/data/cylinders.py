"""`cylinders`: procedural images of a shaded can whose only factors are height and width.

Because the true generative factors are known exactly, this is the dataset for checking
disentanglement (does one latent move height and another width?) and for conditional models
with continuous labels. Rendering is vectorised numpy with analytic anti-aliasing (signed
distances turned into pixel coverage), so 7,000 images take a fraction of a second and
sub-pixel changes of a factor still change the image.
"""

from __future__ import annotations

import numpy as np
import torch

from genlearn.data.containers import ImageDataset
from genlearn.errors import ConfigError

DEFAULT_SIZE = 32
MIN_SIZE = 16
TRAIN_COUNT, TEST_COUNT = 6000, 1000
SEED = 1234
# Factor ranges as fractions of the image side. The ground line and the ellipse ratio are
# chosen so the largest can still fits inside the frame with a margin.
HEIGHT_RANGE = (0.25, 0.70)
WIDTH_RANGE = (0.20, 0.60)
GROUND = 0.86  # y of the bottom cap's centre
CAP_RATIO = 0.25  # ellipse half-height / half-width: a can seen slightly from above
LIGHT = np.array([-0.6, 0.8])  # from the upper left, in the (x, z) plane of the side
TOP_BRIGHTNESS, SIDE_MIN, SIDE_MAX = 0.92, 0.18, 0.85
CHUNK = 1000


def load_cylinders(image_size: int | None = None) -> ImageDataset:
    """6,000 train + 1,000 test grey cans; labels float32 [N, 2] = (height, width) in [0, 1]."""
    size = DEFAULT_SIZE if image_size is None else image_size
    if size < MIN_SIZE:
        raise ConfigError(f"cylinders needs image_size >= {MIN_SIZE}; got {size}")
    rng = np.random.default_rng(SEED)
    factors = rng.random((TRAIN_COUNT + TEST_COUNT, 2), dtype=np.float64).astype(np.float32)
    images = render_cylinders(factors[:, 0], factors[:, 1], size)
    labels = torch.from_numpy(factors)
    images_t = torch.from_numpy(images[:, None])
    return ImageDataset(
        name="cylinders",
        train_images=images_t[:TRAIN_COUNT],
        test_images=images_t[TRAIN_COUNT:],
        train_labels=labels[:TRAIN_COUNT],
        test_labels=labels[TRAIN_COUNT:],
        class_names=None,
        attribute_names=["height", "width"],
        source="embedded: procedural shaded cylinders (genlearn; public domain)",
    )


def render_cylinders(height: np.ndarray, width: np.ndarray, size: int) -> np.ndarray:
    """Render uint8 [N, size, size] cans; `height` and `width` are factors in [0, 1]."""
    height = np.asarray(height, dtype=np.float32)
    width = np.asarray(width, dtype=np.float32)
    out = np.empty((len(height), size, size), dtype=np.uint8)
    for start in range(0, len(height), CHUNK):  # chunks bound the float32 temporaries
        part = slice(start, start + CHUNK)
        out[part] = _render_chunk(height[part], width[part], size)
    return out


def _render_chunk(height: np.ndarray, width: np.ndarray, size: int) -> np.ndarray:
    # Pixel-centre coordinates, in pixels, broadcast as [N, H, W].
    coords = np.arange(size, dtype=np.float32) + 0.5
    x = coords[None, None, :] - size / 2
    y = coords[None, :, None]
    half_w = (_lerp(WIDTH_RANGE, width) * size / 2)[:, None, None]
    cap = half_w * CAP_RATIO
    bottom = np.float32(GROUND * size)
    top = bottom - (_lerp(HEIGHT_RANGE, height) * size)[:, None, None]

    top_cap = _ellipse_distance(x, y - top, half_w, cap)
    body = np.maximum(np.abs(x) - half_w, np.maximum(top - y, y - bottom))
    bottom_cap = _ellipse_distance(x, y - bottom, half_w, cap)
    coverage = _coverage(np.minimum(np.minimum(top_cap, body), bottom_cap))
    top_weight = _coverage(top_cap)

    # Lambert shading of the curved side: its normal turns from -x to +x across the width.
    nx = np.clip(x / half_w, -1.0, 1.0)
    nz = np.sqrt(1.0 - nx * nx)
    light = LIGHT / np.linalg.norm(LIGHT)
    lambert = np.clip(nx * light[0] + nz * light[1], 0.0, 1.0)
    side = SIDE_MIN + (SIDE_MAX - SIDE_MIN) * lambert
    shade = top_weight * TOP_BRIGHTNESS + (1.0 - top_weight) * side
    return np.round(coverage * shade * 255).astype(np.uint8)


def _lerp(bounds: tuple[float, float], t: np.ndarray) -> np.ndarray:
    return (bounds[0] + (bounds[1] - bounds[0]) * t).astype(np.float32)


def _ellipse_distance(dx: np.ndarray, dy: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Approximate signed distance (pixels) to an ellipse: implicit value / gradient length."""
    u, v = dx / a, dy / b
    value = u * u + v * v - 1.0
    gradient = 2.0 * np.sqrt((u / a) ** 2 + (v / b) ** 2) + 1e-6
    return value / gradient


def _coverage(distance: np.ndarray) -> np.ndarray:
    """Fraction of a pixel inside a shape, from the signed distance of its centre."""
    return np.clip(0.5 - distance, 0.0, 1.0)
