"""Reading the user's pictures and writing results that remember how they were made.

Every image genlearn's art verbs write carries its parameters (verb, backbone, layers,
weights file, seed...) as JSON in the file's metadata: a PNG text chunk, or the comment of a
JPEG or GIF. `read_parameters` gets them back, so a result can be reproduced or explained.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from genlearn.atomic import atomic_path
from genlearn.errors import ConfigError, DataError
from genlearn.report.figures import to_pil

METADATA_KEY = "genlearn"
WRITABLE = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}


def load_image(path: str | Path, long_side: int | None = None) -> torch.Tensor:
    """An image file as a [1, 3, H, W] float tensor in [0, 1], its longer side resized to
    `long_side` (Lanczos) when given; grey and transparent images become RGB."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} not found: check the path")
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")  # phones store rotation
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read {path} as an image ({error}): use a PNG or JPEG") from None
    if long_side is not None:
        if long_side < 16:
            raise ConfigError(f"--size must be at least 16 pixels, got {long_side}")
        scale = long_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if size != image.size:
            image = image.resize(size, Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).contiguous()


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of [N, C, H, W] images, antialiased when shrinking; no-op at `size`."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    shrinking = size[0] < image.shape[-2]
    return F.interpolate(
        image, size=size, mode="bilinear", align_corners=False, antialias=shrinking
    )


def to_pil_image(image: torch.Tensor) -> Image.Image:
    """[1, 3, H, W] or [3, H, W] in [0, 1] -> an RGB PIL image (rounded, clamped)."""
    return to_pil(image[0] if image.ndim == 4 else image)


def output_format(path: Path) -> str:
    """The PIL format for an output path, or a ConfigError naming the ones there are."""
    suffix = path.suffix.lower()
    if suffix not in WRITABLE:
        raise ConfigError(
            f"cannot write {path.name}: use one of {', '.join(sorted(WRITABLE))} as the suffix"
        )
    return WRITABLE[suffix]


def save_image(image: torch.Tensor, path: str | Path, parameters: dict | None = None) -> Path:
    """Write an image atomically, with `parameters` as JSON in its metadata."""
    path = Path(path)
    fmt = output_format(path)
    pil = to_pil_image(image)
    text = json.dumps(parameters or {}, sort_keys=True)
    options: dict = {}
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text(METADATA_KEY, text)
        info.add_text("Software", "genlearn")
        options["pnginfo"] = info
    elif fmt == "JPEG":
        options.update(quality=95, comment=f"{METADATA_KEY}:{text}")
    elif fmt == "GIF":
        options["comment"] = f"{METADATA_KEY}:{text}"
    with _writable(path), atomic_path(path) as tmp:
        pil.save(tmp, format=fmt, **options)
    return path


@contextmanager
def _writable(path: Path) -> Iterator[None]:
    """Create the folder; turn a failed write (no permission, disk full) into one line."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as error:
        raise DataError(f"cannot write {path}: {error.strerror or error}") from None


def save_animation(
    frames: Sequence[torch.Tensor],
    path: str | Path,
    parameters: dict | None = None,
    duration_ms: int = 80,
) -> Path:
    """Frames ([1, 3, H, W] in [0, 1]) as a looping GIF with `parameters` in its comment."""
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ConfigError(f"an animation is written as a .gif, not {path.name}: use -o NAME.gif")
    images = [to_pil_image(frame) for frame in frames]
    text = json.dumps(parameters or {}, sort_keys=True)
    with _writable(path), atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms,
            loop=0, comment=f"{METADATA_KEY}:{text}",
        )  # fmt: skip
    return path


def read_parameters(path: str | Path) -> dict:
    """The parameters an image was made with, as written by `save_image`; {} when none."""
    with Image.open(path) as image:
        text = image.info.get(METADATA_KEY)
        if text is None:
            comment = image.info.get("comment", b"")
            comment = comment.decode(errors="replace") if isinstance(comment, bytes) else comment
            prefix = f"{METADATA_KEY}:"
            text = comment[len(prefix) :] if comment.startswith(prefix) else None
    return json.loads(text) if text else {}
