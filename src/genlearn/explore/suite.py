"""The standard set of latent-space figures for an autoencoder run, in one call.

The file names are the ones the HTML report recognises and orders (prior_samples.png,
reconstructions.png, latent_scatter.png, latent_grid.png, prior_gap.png, interpolation.png
and .gif, attribute_<name>.png), and they are the same for every run, so a comparison report
puts an AE's and a VAE's figures side by side.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from genlearn.explore.latent import (
    attribute_figure,
    attribute_mask,
    attribute_vector,
    index_of_name,
    interpolate,
    latent_grid,
    latent_scatter,
    prior_gap_figure,
    prior_samples,
    reconstructions,
)

STRENGTHS = (-2.0, -1.0, 0.0, 1.0, 2.0)


def standard_figures(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    figures_dir: str | os.PathLike[str],
    class_names: Sequence[str] | None = None,
    attribute_names: Sequence[str] | None = None,
    attribute: str | None = None,
    seed: int = 0,
    grid_size: int = 20,
) -> list[Path]:
    """Write every latent-space figure for `model` on test `images`; return the paths.

    An attribute figure is added when `attribute` is given, or for attribute labels
    (CelebA, cylinders) using the first attribute. Randomness (samples) follows `seed`.
    """
    out = Path(figures_dir)
    generator = torch.Generator().manual_seed(seed)
    paths = [
        prior_samples(model, out / "prior_samples.png", generator=generator),
        reconstructions(model, images, out / "reconstructions.png"),
        latent_scatter(
            model,
            images,
            labels,
            out / "latent_scatter.png",
            class_names,
            attribute_names,
            attribute=attribute if _is_2d(labels) else None,
        ),
        latent_grid(model, out / "latent_grid.png", n=grid_size, images=images),
        prior_gap_figure(
            model, images, out / "prior_gap.png", generator=torch.Generator().manual_seed(seed + 1)
        ),
    ]
    a, b = _interpolation_pair(labels, len(images))
    gif = out / "interpolation.gif"
    paths.append(interpolate(model, images[a], images[b], out / "interpolation.png", gif_path=gif))
    paths.append(gif)
    chosen = attribute or (attribute_names[0] if attribute_names and _is_2d(labels) else None)
    if chosen is not None and labels is not None:
        paths.append(_attribute(model, images, labels, class_names, attribute_names, chosen, out))
    return paths


def _is_2d(labels: torch.Tensor | None) -> bool:
    return labels is not None and labels.ndim == 2


def _interpolation_pair(labels: torch.Tensor | None, count: int) -> tuple[int, int]:
    """The first image and the first one of another class (or simply the second image)."""
    if labels is not None and labels.ndim == 1:
        other = (labels != labels[0]).nonzero()
        if len(other):
            return 0, int(other[0])
    return 0, min(1, count - 1)


def _attribute(model, images, labels, class_names, attribute_names, name: str, out: Path) -> Path:
    mask = attribute_mask(labels, class_names, attribute_names, name)
    vector = attribute_vector(model, images, mask)
    rows = (~mask).nonzero().flatten()[:6]  # images without it: adding it should show
    known = [*(class_names or []), *(attribute_names or [])]
    index = index_of_name(known, name)
    name = known[index] if index is not None else name  # as the dataset spells it
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "attribute"
    return attribute_figure(
        model, images[rows], vector, STRENGTHS, out / f"attribute_{slug}.png", attribute_name=name
    )
