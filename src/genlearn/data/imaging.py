"""Shared image helpers: read one file safely, square-crop, resize, split deterministically.

Every image loader goes through these, so all datasets are cropped, resized and split the same
way and a corrupt file is handled the same way everywhere (warn, name it, skip it).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genlearn.data.containers import DataWarning
from genlearn.data.progress import progress_bar

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
RESAMPLE = Image.Resampling.BICUBIC
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"}
_BACKGROUND = (255, 255, 255)  # transparent pixels become white, like on a web page
PROGRESS_MIN = 500  # fewer images load in about a second: no bar needed


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension genlearn reads."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def center_square(image: Image.Image) -> Image.Image:
    """Crop the largest centred square (for CelebA's 178x218 this is the usual 178x178)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Centre-crop to a square and resize to `size` x `size`."""
    square = center_square(image)
    return square if square.size == (size, size) else square.resize((size, size), RESAMPLE)


def read_image(path: Path, size: int) -> tuple[np.ndarray, bool] | None:
    """Read `path` as an RGB [size, size, 3] uint8 array plus "is it colour?".

    Grey images come back as RGB with equal channels so a folder can be stacked in one pass
    and reduced to one channel at the end if nothing was colour. Returns None (with a
    warning naming the file) when the file cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft(None, (size, size))  # decode at reduced scale: much faster
            image.load()
            colour = _is_colour(image)
            rgb = square_resize(_to_rgb(image), size)
            return np.asarray(rgb, dtype=np.uint8), colour
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        # PIL reports unreadable files as OSError (incl. UnidentifiedImageError),
        # truncated data as OSError/SyntaxError and odd headers as ValueError.
        warnings.warn(f"skipping unreadable image {path}: {error}", DataWarning, stacklevel=2)
        return None


def read_images(
    paths: Sequence[Path], size: int, label: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read many files as RGB [K, size, size, 3], skipping unreadable ones (with a warning).

    Returns the images, the indices into `paths` of the K files kept, and their colour flags.
    """
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    kept: list[int] = []
    colour: list[bool] = []
    show = len(paths) >= PROGRESS_MIN
    with progress_bar(f"resizing {label} to {size}px", len(paths), show=show) as advance:
        for i, path in enumerate(paths):
            result = read_image(path, size)
            advance(1)
            if result is not None:
                images[len(kept)], is_colour = result
                kept.append(i)
                colour.append(is_colour)
    return images[: len(kept)], np.array(kept, dtype=np.int64), np.array(colour, dtype=bool)


def _is_colour(image: Image.Image) -> bool:
    """Whether the image holds colour; palette images are judged by their actual colours."""
    if image.mode in _GREY_MODES:
        return False
    if image.mode in ("P", "PA"):
        rgb = np.asarray(image.convert("RGB"))
        return not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
        )
    return True


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any mode to RGB, compositing transparency onto a white background."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit/float grey: scale to 8 bits instead of letting PIL clip at 255.
        values = np.asarray(image, dtype=np.float64)
        span = max(float(values.max()), 1.0)
        image = Image.fromarray(np.round(values / span * 255).astype(np.uint8), "L")
    has_alpha = image.mode in ("RGBA", "LA", "La", "PA") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def resize_stack(images: np.ndarray, size: int) -> np.ndarray:
    """Square-crop and resize a uint8 stack [N, H, W] (grey) or [N, H, W, 3] to `size`."""
    if images.shape[1] == images.shape[2] == size:
        return images
    mode = "L" if images.ndim == 3 else "RGB"
    out_shape = (len(images), size, size, *images.shape[3:])
    out = np.empty(out_shape, dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = np.asarray(square_resize(Image.fromarray(image, mode), size))
    return out


def to_nchw(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W] or [N, H, W, C] numpy -> contiguous uint8 torch [N, C, H, W]."""
    images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(images))


def split_indices(
    count: int, test_fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/test index split, stratified by `groups` when given.

    Each group sends round(n * test_fraction) of its members to the test set; if that leaves
    the test set empty (tiny datasets) one item goes there anyway, so evaluation code always
    has something to work with when there are at least two items.
    """
    rng = np.random.default_rng(seed)
    groups = np.zeros(count, dtype=np.int64) if groups is None else np.asarray(groups)
    test: list[np.ndarray] = []
    for group in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == group))
        test.append(members[: int(round(len(members) * test_fraction))])
    test_idx = np.sort(np.concatenate(test)) if test else np.empty(0, dtype=np.int64)
    if len(test_idx) == 0 and count >= 2:
        test_idx = np.array([rng.integers(count)])
    is_test = np.zeros(count, dtype=bool)
    is_test[test_idx] = True
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)
