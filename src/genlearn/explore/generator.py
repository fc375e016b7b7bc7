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

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
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
    averaged = " (its moving average)" if getattr(model, "ema", None) is not None else ""
    caption = f"{n} samples{what}, z ~ N(0, I) through the generator{averaged}."
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


@torch.no_grad()
def walk_between(
    model: nn.Module,
    seeds: tuple[int, int],
    path: Path,
    *,
    steps: int = 10,
    gif: bool = False,
    spherical: bool = True,
    label: int | None = None,
) -> list[Path]:
    """Images along the path between the z's drawn from two seeds: a strip (and a GIF).
    A conditional generator draws class `label` (default 0) all along."""
    ends = [
        torch.randn(1, model.latent_dim, generator=torch.Generator().manual_seed(s)) for s in seeds
    ]
    codes = interpolation_codes(ends[0], ends[1], steps, spherical=spherical)
    classes = _class_count(model)
    labels = torch.full((steps,), label or 0, dtype=torch.long) if classes else None
    images = model.generate(codes, labels).cpu()
    kind = "spherical" if spherical else "straight"
    of_class = f", class {label or 0}" if classes else ""
    caption = (
        f"From z(seed {seeds[0]}) to z(seed {seeds[1]}) in {steps} steps ({kind} path{of_class})."
    )
    paths = [save_image_grid(images, path.with_suffix(".png"), nrow=steps, caption=caption)]
    if gif:
        paths.append(save_gif(list(images), path.with_suffix(".gif"), caption=caption))
    return paths


def generator_figures(model: nn.Module, figures_dir: Path, seed: int = 0) -> list[Path]:
    """The figures every GAN run gets at the end of training."""
    model.eval()
    paths = [sample_grid(model, figures_dir / "samples.png", seed=seed)]
    paths += latent_walk(model, figures_dir / "interpolation_z", seed=seed)
    return paths


# ---- during training: a fixed batch of z, every N steps ---------------------------------------
PROGRESS_DIR = "progress"
SNAPSHOTS_PER_RUN = 40  # fixed-z grids a generator's training leaves (the training GIF's frames)
SNAPSHOT_SHARE = 5  # a time-limited run's snapshots are spaced at least 5x their cost apart
COLLAPSE_RATIO = 0.25  # a fixed batch this much less diverse than real images has collapsed


def diversity(images: torch.Tensor) -> float:
    """Mean pairwise distance between the images of a batch (in [0, 1] pixels, per pixel):
    a generator that collapses to a few outputs makes it fall towards 0."""
    flat = images.float().flatten(1)
    flat = flat / 255.0 if images.dtype == torch.uint8 else flat
    distances = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
    n = len(flat)
    return float(distances.sum() / max(1, n * (n - 1)))


class TrainingSnapshots:
    """Draws the same 64 z's through the generator every `every` steps into figures/progress/,
    warns when their diversity falls far below real images', and assembles a GIF at the end
    (Radford et al. show such grids to argue the model learns rather than memorises)."""

    def __init__(
        self,
        figures_dir: Path,
        real_images: torch.Tensor,
        every: int,
        seed: int = 0,
        every_seconds: float | None = None,
    ):
        """Snapshot every `every` steps, or, for a run bounded by time rather than by steps
        (--time-limit), every `every_seconds` seconds of wall time from the first step."""
        self.folder = figures_dir / PROGRESS_DIR
        self.every = every
        self.every_seconds = every_seconds
        self.last_time: float | None = None
        self.last_cost = 0.0  # seconds the last snapshot took
        self.seed = seed  # the same z's at every snapshot, also after a resume
        self.real_diversity = diversity(real_images[:64])
        self.snapshots_taken = 0
        self.was_diverse = False
        self.warned = False

    def _due(self, step: int) -> bool:
        if self.every_seconds is None:
            return step % self.every == 0
        now = time.perf_counter()
        # snapshots take at most 1/SNAPSHOT_SHARE of a time-limited run's time: a model whose
        # snapshots are slow (diffusion samples in several passes) gets fewer, not less training
        gap = max(self.every_seconds, SNAPSHOT_SHARE * self.last_cost)
        if self.last_time is not None and now - self.last_time < gap:
            return False
        self.last_time = now
        return True

    def __call__(self, model: nn.Module, step: int, warn) -> None:
        if not self._due(step):
            return
        generator = torch.Generator().manual_seed(self.seed)
        z = torch.randn(64, model.latent_dim, generator=generator)
        classes = _class_count(model)
        labels = torch.arange(64) % classes if classes else None
        was_training = model.training
        # a model may draw its snapshots more cheaply than its final samples (a diffusion
        # model: DDIM with few steps)
        images = getattr(model, "preview", model.generate)(z, labels).cpu()
        model.train(was_training)
        spread = diversity(images)
        caption = f"step {step}: diversity {spread:.3f} (real images {self.real_diversity:.3f})"
        save_image_grid(images, self.folder / f"step-{step:07d}.png", nrow=8, caption=caption)
        if self.every_seconds is not None and self.last_time is not None:
            self.last_cost = time.perf_counter() - self.last_time
        self._check_collapse(step, spread, warn)

    def _check_collapse(self, step: int, spread: float, warn) -> None:
        """Warn once when the batch falls below the threshold after having been above it, or
        stays below it for a quarter of the run (a freshly initialised generator draws
        near-identical grey images, which is not a collapse)."""
        self.snapshots_taken += 1
        collapsed = spread < COLLAPSE_RATIO * self.real_diversity
        self.was_diverse |= not collapsed
        if not collapsed or self.warned:
            return
        if self.was_diverse:
            what = "the samples are collapsing"
        elif self.snapshots_taken > SNAPSHOTS_PER_RUN // 4:
            what = "the samples have not become diverse"
        else:
            return
        warn(
            f"step {step}: {what} (diversity {spread:.3f} against {self.real_diversity:.3f} "
            f"for real images): see {self.folder}"
        )
        self.warned = True

    def assemble(self, path: Path) -> Path | None:
        """All snapshots so far (a resumed run included) as one GIF."""
        files = sorted(self.folder.glob("step-*.png"))
        if len(files) < 2:
            return None
        frames = []
        for file in files:
            with Image.open(file) as image:
                array = torch.from_numpy(np.asarray(image.convert("RGB")).copy())
            frames.append(array.permute(2, 0, 1).float() / 255.0)
        interval = (
            f"{self.every} steps"
            if self.every_seconds is None
            else f"{self.every_seconds:.3g} s of training"
        )
        caption = (
            f"The same 64 z's through the generator every {interval} "
            f"({len(files)} snapshots): the game as it was played."
        )
        steps = [f"step {int(file.stem.split('-')[1]):,}" for file in files]
        return save_gif(
            frames,
            path,
            duration_ms=150,
            bounce=False,
            scale=1,
            caption=caption,
            labels=steps,
            hold_last_ms=2000,
        )
