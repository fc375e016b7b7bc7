"""Each sample beside its nearest training images: the check that a model creates, not copies.

Goodfellow et al. (2014, Fig. 2) show every GAN sample next to its nearest training example
to argue that the network did not memorise. This figure does the same in two spaces: raw
pixels (catches exact and near-exact copies) and a network's features (catches copies that
moved a few pixels). The left block holds the samples closest to a training image (the most
suspicious cases), the right block random samples (the typical case); a red frame marks a
near-copy (closer to a training image than 99% of real images come to a different real
image, see `genlearn.metrics.novelty`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from genlearn.report.figures import DPI, auto_scale, figure_style, save_figure, to_uint8_hwc

GROUP_GAP = 3  # tiles of blank space between the sample and each group of neighbours
BLOCK_GAP = 96  # pixels between the two blocks of rows (room for the headers)
LABEL_PX = 16  # room under each row for the distances


@dataclass
class NeighbourSpace:
    """The k nearest training images of each sample in one space."""

    label: str  # "pixels", "MNIST-CNN features"
    indices: torch.Tensor  # [M, k] indices into the training images
    distances: torch.Tensor  # [M, k]
    threshold: float  # the near-copy threshold in this space


def closest_first(spaces: list[NeighbourSpace], n: int) -> torch.Tensor:
    """The n samples nearest to a training image, measured in units of each space's
    threshold (so pixel and feature distances are comparable), closest first."""
    ratios = torch.stack([s.distances[:, 0] / max(s.threshold, 1e-12) for s in spaces]).amin(0)
    return ratios.argsort()[:n]


@dataclass(frozen=True)
class _Layout:
    """Where each tile goes: a sample column, a gap, k neighbours per space with gaps between."""

    tile: int  # tile side in screen pixels
    k: int
    spaces: int

    @property
    def step(self) -> int:  # tile plus a 2 px white separator
        return self.tile + 2

    @property
    def row_height(self) -> int:
        return self.step + LABEL_PX

    def column_left(self, column: int) -> int:
        """Left edge of column 0 (the sample) or 1.. (neighbour j of space g, in order)."""
        if column == 0:
            return 0
        group, j = divmod(column - 1, self.k)
        return (1 + GROUP_GAP // 2 + group * (self.k + 1) + j) * self.step

    @property
    def width(self) -> int:
        return self.column_left(self.spaces * self.k) + self.step


def pick_rows(spaces: list[NeighbourSpace], n: int, seed: int = 0) -> list[tuple[str, list[int]]]:
    """Half the rows for the most copy-like samples, half for random others (typical ones)."""
    count = spaces[0].indices.shape[0]
    closest = closest_first(spaces, (n + 1) // 2).tolist()
    chosen = set(closest)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    rest = [i for i in order if i not in chosen]
    blocks = [("the most copy-like samples", closest)]
    if n - len(closest) > 0 and rest:
        blocks.append(("random samples", rest[: n - len(closest)]))
    return blocks


def neighbours_figure(
    samples: torch.Tensor,
    train_images: torch.Tensor,
    spaces: list[NeighbourSpace],
    path: str | os.PathLike[str],
    *,
    n: int = 16,
    seed: int = 0,
    caption: str | None = None,
) -> Path:
    """Write the figure: two blocks side by side (the most copy-like samples, random ones);
    one row per sample, then its k nearest training images in each space."""
    blocks = pick_rows(spaces, n, seed)
    size = samples.shape[-1]
    scale = auto_scale(size)
    layout = _Layout(size * scale, spaces[0].indices.shape[1], len(spaces))
    block_width = layout.width + BLOCK_GAP
    height = max(len(rows) for _, rows in blocks) * layout.row_height
    width = len(blocks) * block_width - BLOCK_GAP
    canvas = np.full((height, width, samples.shape[1]), 255, dtype=np.uint8)
    labels: list[tuple[float, float, str]] = []
    frames: list[tuple[float, float]] = []
    headers: list[tuple[str, float, int]] = []
    for b, (title, rows) in enumerate(blocks):
        x0 = b * block_width
        headers.append((title, x0 + layout.width / 2, 1))
        headers += [(text, x0 + x, 0) for text, x in _column_headers(layout, spaces)]
        for r, index in enumerate(rows):
            tiles = [(samples[index], "")] + [
                (train_images[space.indices[index, j]], f"{float(space.distances[index, j]):.3g}")
                for space in spaces
                for j in range(layout.k)
            ]
            top = r * layout.row_height
            for column, (image, text) in enumerate(tiles):
                left = x0 + layout.column_left(column)
                canvas[top : top + layout.tile, left : left + layout.tile] = _tile(image, scale)
                labels.append((left + layout.tile / 2, top + layout.tile + 2, text))
            if any(bool(s.distances[index, 0] <= s.threshold) for s in spaces):
                frames.append((x0, top))
    return _draw(canvas, layout, labels, headers, frames, path, caption)


def _column_headers(layout: _Layout, spaces: list[NeighbourSpace]) -> list[tuple[str, float]]:
    centre = layout.tile / 2
    headers = [("sample", centre)]
    for g, space in enumerate(spaces):
        first, last = layout.column_left(1 + g * layout.k), layout.column_left((g + 1) * layout.k)
        headers.append((f"nearest in {space.label}", (first + last) / 2 + centre))
    return headers


def _tile(image: torch.Tensor, scale: int) -> np.ndarray:
    """One uint8 image as an H*scale x W*scale x C array (nearest-neighbour upscaling)."""
    array = to_uint8_hwc(image.float() / 255.0 if image.dtype == torch.uint8 else image)
    return array.repeat(scale, axis=0).repeat(scale, axis=1)


def _draw(
    canvas: np.ndarray,
    layout: _Layout,
    labels: list[tuple[float, float, str]],
    headers: list[tuple[str, float, int]],
    frames: list[tuple[float, float]],
    path: str | os.PathLike[str],
    caption: str | None,
) -> Path:
    """The canvas at one image pixel per screen pixel, with distances, headers and frames."""
    height, width = canvas.shape[:2]
    header_px = 48
    with figure_style():
        fig = Figure(figsize=(width / DPI, (height + header_px) / DPI), dpi=DPI)
        ax = fig.add_axes((0, 0, 1, height / (height + header_px)))
        grey = canvas.shape[2] == 1
        ax.imshow(
            canvas[:, :, 0] if grey else canvas,
            cmap="gray" if grey else None,
            vmin=0,
            vmax=255,
            interpolation="nearest",
        )
        ax.set_axis_off()
        for x, y, text in labels:
            if text:
                ax.text(x, y, text, ha="center", va="top", fontsize=8, color="0.3")
        for left, top in frames:  # a near-copy: frame its sample
            frame = Rectangle(
                (left - 0.5, top - 0.5), layout.tile, layout.tile, fill=False, ec="red", lw=2.5
            )
            ax.add_patch(frame)
        for text, x, level in headers:  # level 1: the block's title, above the column headers
            weight = "bold" if level else "normal"
            ax.text(x, -6 - 20 * level, text, ha="center", va="bottom", fontsize=10, weight=weight)
        ax.set_xlim(-2, width)
        ax.set_ylim(height, -2)
        return save_figure(fig, path, caption)
