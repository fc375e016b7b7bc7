"""Figures of a model that maps noise to images and has no encoder (a GAN's generator).

- `sample_grid`: a grid of samples; for a conditional model, one row per class;
- `latent_walk`: images along spherical paths between random points of z-space, as a strip
  and an animated GIF. Smooth change along the path means the generator learned a continuous
  map, not a lookup of memorised images (Radford et al. 2016, Sec. 6.1 "walking in the
  latent space").

The model contract: `sample(n, generator, labels=None)` and `generate(z, labels=None)`
returning images in [0, 1], `latent_dim`, and `conditional` / `config.num_classes` for
conditional models.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from genlearn.explore.latent import interpolation_codes
from genlearn.report.figures import make_grid, save_gif, save_image_grid


def _class_count(model: nn.Module) -> int:
    return int(model.num_classes) if getattr(model, "conditional", False) else 0


@torch.no_grad()
def sample_grid(
    model: nn.Module, path: Path, *, n: int = 64, seed: int = 0, label: int | None = None
) -> Path:
    """n samples (one class's when `label` is given); a conditional model without a label
    gets one row per class, the same noise down each column."""
    generator = torch.Generator().manual_seed(seed)
    classes = _class_count(model)
    if classes and label is None:
        per_class = max(1, n // classes)
        z = torch.randn(per_class, model.latent_dim, generator=generator)
        labels = torch.arange(classes).repeat_interleave(per_class)
        images = model.generate(z.repeat(classes, 1), labels)
        caption = f"One row per class ({classes}); each column shares its noise z."
        return save_image_grid(images.cpu(), path, nrow=per_class, caption=caption)
    labels = None if label is None else torch.full((n,), label, dtype=torch.long)
    images = model.sample(n, generator=generator, labels=labels)
    what = f" of class {label}" if label is not None else ""
    caption = f"{n} samples{what}, z ~ N(0, I) through the generator (its moving average)."
    return save_image_grid(images.cpu(), path, caption=caption)


@torch.no_grad()
def latent_walk(
    model: nn.Module, path: Path, *, paths: int = 6, steps: int = 10, seed: int = 0
) -> list[Path]:
    """Rows of images along slerp paths between random z's: a PNG strip and a GIF."""
    generator = torch.Generator().manual_seed(seed)
    ends = torch.randn(paths, 2, model.latent_dim, generator=generator)
    codes = torch.cat([interpolation_codes(a, b, steps, spherical=True) for a, b in ends])
    classes = _class_count(model)
    labels = (torch.arange(paths) % classes).repeat_interleave(steps) if classes else None
    images = model.generate(codes, labels).cpu()
    caption = (
        f"{paths} walks through z-space, {steps} steps each (spherical interpolation): "
        "smooth changes mean a continuous map, not memorised images."
    )
    strip = save_image_grid(images, path.with_suffix(".png"), nrow=steps, caption=caption)
    frames = [make_grid(images[i::steps], nrow=paths) for i in range(steps)]
    gif = save_gif(frames, path.with_suffix(".gif"), duration_ms=120, caption=caption)
    return [strip, gif]


def generator_figures(model: nn.Module, figures_dir: Path, seed: int = 0) -> list[Path]:
    """The figures every GAN run gets at the end of training."""
    model.eval()
    paths = [sample_grid(model, figures_dir / "samples.png", seed=seed)]
    paths += latent_walk(model, figures_dir / "interpolation_z", seed=seed)
    return paths
