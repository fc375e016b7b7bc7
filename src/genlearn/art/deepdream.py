"""DeepDream (Mordvintsev, Olah & Tyka 2015, "Inceptionism: Going Deeper into Neural Networks").

Train nothing: take a trained classifier and change the *image* by gradient ascent so that
chosen layers respond more strongly. What a layer detects (eyes, fur, arches, dog faces)
appears where the image already hints at it. The recipe, step by step:

1. Objective: the mean squared activation of the chosen layers (the energy the original
   notebook maximises), or of single channels, or one class's logit (class visualisation,
   Simonyan et al. 2014), or the match to a guide image's features.
2. Gradient ascent with the step normalised by the gradient's mean magnitude, so one step
   size suits every layer and image.
3. Random jitter: the image is rolled by a random offset before each step and back after,
   which stops the pixel grid of strided convolutions from printing itself on the image.
4. Octaves: the image is processed from coarse (scaled down by 1.4 per octave) to fine, and
   the detail dreamt at one scale is carried to the next, so patterns appear at several sizes.
5. Tiles: a large image is processed in tiles with overlapping margins; activations are
   assigned to the tile whose core they sit in, so with margins that cover the layers'
   receptive fields the tiled gradient equals the whole image's.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import Tensor

from genlearn.art.images import resize
from genlearn.backbones.layers import NamedLayers
from genlearn.errors import ConfigError

Preprocess = Callable[[Tensor], Tensor]
GRID = 32  # tiles start on multiples of the networks' largest stride, so grids line up


@dataclass(frozen=True)
class Objective:
    """What the dream maximises: layer energies, single channels, a class, or a guide's look."""

    layers: tuple[str, ...] = ()
    channels: tuple[int | None, ...] = ()  # one per layer; None = every channel
    class_index: int | None = None
    guide: dict[str, Tensor] | None = None  # per layer: guide features [C, positions]

    @property
    def names(self) -> list[str]:
        return [*self.layers, *(["logits"] if self.class_index is not None else [])]


@dataclass(frozen=True)
class DreamConfig:
    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 10  # gradient steps per octave
    step_size: float = 0.01  # per step, in units of the [0, 1] image, after normalising
    jitter: int = 32  # largest random roll in pixels
    tile: int | None = None  # tile side in pixels; None processes the image whole
    margin: int = 64  # tile overlap on each side; a multiple of 32
    blur: float = 0.0  # Gaussian blur (sigma, px) after each step: smoother class pictures
    min_side: int = 32  # no octave smaller: the network's smallest input (75 for InceptionV3)
    seed: int = 0

    def validate(self) -> DreamConfig:
        checks = [
            (self.octaves >= 1, f"--octaves must be at least 1, got {self.octaves}"),
            (
                1 < self.octave_scale <= 4,
                f"--octave-scale must be above 1 and at most 4, got {self.octave_scale}",
            ),
            (self.steps >= 1, f"--steps must be at least 1, got {self.steps}"),
            (self.step_size > 0, f"--step-size must be positive, got {self.step_size}"),
            (self.jitter >= 0, f"--jitter must be 0 or more, got {self.jitter}"),
            (self.blur >= 0, f"--blur must be 0 or more, got {self.blur}"),
            (
                self.tile is None or (self.tile >= 64 and self.tile % GRID == 0),
                f"--tile must be a multiple of {GRID} from 64 up, got {self.tile}",
            ),
            (
                self.margin >= 0 and self.margin % GRID == 0,
                f"--tile-margin must be a multiple of {GRID}, got {self.margin}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self


def parse_layers(spec: str, network: NamedLayers) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    """'mixed3,mixed5:97' -> (("mixed3", "mixed5"), (None, 97)); checks every layer name."""
    layers, channels = [], []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, channel = part.partition(":")
        layer = network.canonical_layer(name.strip())
        if layer == "logits":
            raise ConfigError("to dream a class, use --class NAME rather than the logits layer")
        if channel and not channel.strip().isdigit():
            raise ConfigError(f"channel in {part!r} must be a number, as in mixed4:97")
        layers.append(name.strip())
        channels.append(int(channel) if channel else None)
    if not layers:
        raise ConfigError(f"--layers needs at least one layer name, got {spec!r}")
    return tuple(layers), tuple(channels)


# ---- the objective, position by position ---------------------------------------------------
def objective_terms(objective: Objective, features: dict[str, Tensor]) -> list[Tensor]:
    """One map of per-position values for each term; the objective is the sum of their means.

    Keeping positions apart lets a tile add up only the positions in its core (see `_tiles`).
    """
    terms = []
    for layer, channel in zip(objective.layers, objective.channels, strict=True):
        act = features[layer][0]  # [C, h, w]
        if channel is not None:
            if channel >= act.shape[0]:
                raise ConfigError(
                    f"layer {layer} has channels 0 to {act.shape[0] - 1}, not {channel}"
                )
            act = act[channel : channel + 1]
        if objective.guide is not None:
            # Google's guided dream: each position moves toward the guide feature it already
            # resembles most (largest dot product), so the guide's textures take over.
            flat = act.reshape(act.shape[0], -1)
            guide = objective.guide[layer]
            if channel is not None:
                guide = guide[channel : channel + 1]
            terms.append((flat.T @ guide).amax(dim=1).reshape(act.shape[1:]))
        else:
            terms.append(act.pow(2).mean(dim=0))  # energy per position
    if objective.class_index is not None:
        terms.append(features["logits"][0, objective.class_index].reshape(1, 1))
    return terms


def objective_value(
    network: NamedLayers, preprocess: Preprocess, image: Tensor, objective: Objective
) -> Tensor:
    """The objective of a [1, 3, H, W] image in [0, 1] (sum over terms of the mean value)."""
    features = network.features_at(preprocess(image), objective.names)
    return sum(term.mean() for term in objective_terms(objective, features))


def objective_gradient(
    network: NamedLayers,
    preprocess: Preprocess,
    image: Tensor,
    objective: Objective,
    tile: int | None = None,
    margin: int = 64,
) -> tuple[Tensor, float]:
    """(d objective / d image, objective) for a [1, 3, H, W] image, whole or in tiles.

    A class objective reads the whole image (its logit pools over every position), so it is
    never tiled."""
    height, width = image.shape[-2:]
    if tile is None or (height <= tile and width <= tile) or objective.class_index is not None:
        x = image.detach().requires_grad_(True)
        value = objective_value(network, preprocess, x, objective)
        (grad,) = torch.autograd.grad(value, x)
        return grad, value.item()
    grids = _layer_grids(network, preprocess, image.shape, objective.layers)
    grad = torch.zeros_like(image)
    total = 0.0
    for core, crop in _tiles(height, width, tile, margin):
        x = image[..., crop[0] : crop[1], crop[2] : crop[3]].detach().requires_grad_(True)
        features = network.features_at(preprocess(x), objective.names)
        value = x.new_zeros(())
        for term, grid in zip(objective_terms(objective, features), grids, strict=True):
            owned = _owned_positions(term.shape, grid, core, crop, (height, width))
            value = value + (term * owned.to(term.device)).sum() / (grid.rows * grid.cols)
        (tile_grad,) = torch.autograd.grad(value, x)
        # the whole crop's gradient counts, margins included: the positions this tile owns
        # depend on pixels there too, and no other tile adds those positions' share
        grad[..., crop[0] : crop[1], crop[2] : crop[3]] += tile_grad
        total += value.item()
    return grad, total


def _tiles(height: int, width: int, tile: int, margin: int) -> Iterator[tuple[tuple, tuple]]:
    """(core, crop) boxes as (top, bottom, left, right): cores partition the image, starting on
    multiples of `tile` (a short last one is merged into the one before, so that no crop is
    too small for the network); each crop is its core plus `margin` per side, clipped."""
    rows, cols = _cuts(height, tile), _cuts(width, tile)
    for top, bottom in pairwise(rows):
        for left, right in pairwise(cols):
            crop = (
                max(top - margin, 0),
                min(bottom + margin, height),
                max(left - margin, 0),
                min(right + margin, width),
            )
            yield (top, bottom, left, right), crop


def _cuts(length: int, tile: int) -> list[int]:
    cuts = list(range(0, length, tile))
    if len(cuts) > 1 and length - cuts[-1] < tile // 2:
        cuts.pop()
    return [*cuts, length]


@dataclass(frozen=True)
class _Grid:
    """One layer's activation grid on the whole image: its size and its stride in pixels."""

    rows: int
    cols: int
    stride: int


def _owned_positions(
    shape: torch.Size, grid: _Grid, core: tuple, crop: tuple, image_size: tuple[int, int]
) -> Tensor:
    """1 at the activation positions of a crop that its tile owns, 0 elsewhere.

    Crops start on multiples of 32, hence of every layer's stride, so a crop's grid is the
    whole image's shifted by a whole number of positions: crop position i is whole-image
    position i + crop start / stride. A core starting at pixel t owns the whole-image
    positions from t / stride up to the next core's; the last core owns the rest."""
    masks = []
    for axis, count, full in ((0, shape[-2], grid.rows), (1, shape[-1], grid.cols)):
        start, end, crop_start = core[2 * axis], core[2 * axis + 1], crop[2 * axis]
        position = crop_start // grid.stride + torch.arange(count)
        first = start // grid.stride
        last = full if end == image_size[axis] else end // grid.stride
        masks.append((position >= first) & (position < last))
    return (masks[0][:, None] & masks[1][None, :]).to(torch.float32)


# per network: its shape-only copy on the meta device, and the grids already worked out
_SHAPE_ONLY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _layer_grids(
    network: NamedLayers, preprocess: Preprocess, shape: torch.Size, layers: tuple[str, ...]
) -> list[_Grid]:
    """Each layer's grid on the whole image, without computing it: a copy of the network on
    PyTorch's 'meta' device propagates shapes only. Its stride is read off the growth of the
    grid when the image grows by GRID pixels. Remembered per image size, as every step of an
    octave asks again."""
    if network not in _SHAPE_ONLY:
        _SHAPE_ONLY[network] = (copy.deepcopy(network).to("meta"), {})
    meta, known = _SHAPE_ONLY[network]
    height, width = shape[-2:]
    key = (height, width, layers, preprocess)
    if key not in known:
        with torch.no_grad():
            image = torch.zeros(1, 3, height, width, device="meta")
            larger = torch.zeros(1, 3, height + GRID, width + GRID, device="meta")
            base = meta.features_at(preprocess(image), layers)
            grown = meta.features_at(preprocess(larger), layers)
        grids = []
        for layer in layers:
            rows, cols = base[layer].shape[-2:]
            stride = GRID // max(1, grown[layer].shape[-2] - rows)
            grids.append(_Grid(int(rows), int(cols), stride))
        known[key] = grids
    return known[key]


# ---- the dream -----------------------------------------------------------------------------
def dream(
    network: NamedLayers,
    preprocess: Preprocess,
    image: Tensor,
    objective: Objective,
    config: DreamConfig = DreamConfig(),
    on_step: Callable[[int, float], None] | None = None,
) -> Tensor:
    """DeepDream a [1, 3, H, W] image in [0, 1] over `config.octaves` scales; returns the dream.

    Octaves follow the original notebook: the image is shrunk to each octave's size, and what
    dreaming added at a coarser octave (the detail) is enlarged and added back at the next.
    `on_step(step, objective)` is called after every gradient step, for a progress bar.
    """
    config.validate()
    generator = torch.Generator().manual_seed(config.seed)
    base = image.detach().float().clamp(0, 1)
    sizes = octave_sizes(base.shape[-2:], config.octaves, config.octave_scale, config.min_side)
    detail = torch.zeros(1, 3, *sizes[0], device=base.device)
    step = 0
    for size in sizes:
        octave_base = resize(base, size)
        detail = resize(detail, size)
        dreamed = (octave_base + detail).clamp(0, 1)
        for _ in range(config.steps):
            dreamed, value = dream_step(network, preprocess, dreamed, objective, config, generator)
            step += 1
            if on_step is not None:
                on_step(step, value)
        detail = dreamed - octave_base
    return dreamed


def dream_step(
    network: NamedLayers,
    preprocess: Preprocess,
    image: Tensor,
    objective: Objective,
    config: DreamConfig,
    generator: torch.Generator,
) -> tuple[Tensor, float]:
    """One normalised gradient-ascent step on a randomly rolled image; returns (image, value)."""
    shift = [
        int(v) for v in torch.randint(-config.jitter, config.jitter + 1, (2,), generator=generator)
    ]
    rolled = torch.roll(image, shifts=shift, dims=(2, 3))
    grad, value = objective_gradient(
        network, preprocess, rolled, objective, config.tile, config.margin
    )
    grad = torch.roll(grad, shifts=[-s for s in shift], dims=(2, 3))
    # dividing by the mean magnitude makes the step size mean the same for any layer
    image = image + config.step_size * grad / (grad.abs().mean() + 1e-8)
    if config.blur > 0:
        image = gaussian_blur(image, config.blur)
    return image.clamp(0, 1), value


def octave_sizes(
    size: tuple[int, int], octaves: int, scale: float, min_side: int = 32
) -> list[tuple[int, int]]:
    """Image sizes from the coarsest octave to the full size; no side below `min_side`."""
    height, width = size
    sizes = []
    for k in reversed(range(octaves)):
        factor = scale**k
        sizes.append((max(min_side, round(height / factor)), max(min_side, round(width / factor))))
    return sizes


def zoom_frames(
    network: NamedLayers,
    preprocess: Preprocess,
    image: Tensor,
    objective: Objective,
    frames: int,
    config: DreamConfig = DreamConfig(),
    zoom: float = 1.05,
    on_frame: Callable[[int], None] | None = None,
) -> list[Tensor]:
    """The endless zoom: dream, enlarge the centre by `zoom`, dream again on the result, ...

    The first frame is a full dream; each later one dreams one octave on the zoomed previous
    frame, so new patterns keep growing out of the old ones.
    """
    current = dream(network, preprocess, image, objective, config)
    sequence = [current]
    per_frame = replace(config, octaves=1)
    for index in range(1, frames):
        per_frame = replace(per_frame, seed=config.seed + index)
        current = dream(network, preprocess, zoom_centre(current, zoom), objective, per_frame)
        sequence.append(current)
        if on_frame is not None:
            on_frame(index)
    return sequence


def zoom_centre(image: Tensor, zoom: float) -> Tensor:
    """Crop the centre 1/zoom of the image and enlarge it back to the full size."""
    height, width = image.shape[-2:]
    crop_h, crop_w = max(1, round(height / zoom)), max(1, round(width / zoom))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return resize(image[..., top : top + crop_h, left : left + crop_w], (height, width))


def noise_image(height: int, width: int, seed: int = 0) -> Tensor:
    """A start for dreaming from nothing: mid-grey with faint, slightly smooth colour noise."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, max(1, height // 4), max(1, width // 4), generator=generator)
    return (0.5 + 0.2 * (resize(noise, (height, width)) - 0.5)).clamp(0, 1)


def guide_features(
    network: NamedLayers, preprocess: Preprocess, guide: Tensor, layers: tuple[str, ...]
) -> dict[str, Tensor]:
    """A guide image's features per layer as [C, positions] matrices (no gradient)."""
    with torch.no_grad():
        features = network.features_at(preprocess(guide), layers)
    return {layer: features[layer][0].reshape(features[layer].shape[1], -1) for layer in layers}


def gaussian_blur(image: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect padding."""
    radius = max(1, math.ceil(2.5 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(image.device)
    channels = image.shape[1]
    padded = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    return F.conv2d(F.conv2d(padded, horizontal, groups=channels), vertical, groups=channels)
