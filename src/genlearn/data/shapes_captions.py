"""`shapes-captions`: procedural pictures of two coloured shapes, each with an English caption.

"a large green triangle left of a small red circle": every picture is drawn from seven
factors (size, colour and shape of each object, and their arrangement), so a caption can be
checked against the picture exactly. Some colour-shape pairs (`HELD_OUT_PAIRS`, e.g. a red
triangle) never appear in the training pictures, though each colour and each shape does:
generating them from their captions measures compositional generalisation.

Rendering is vectorised numpy with analytic anti-aliasing (signed distance -> coverage), on
a black background, deterministic from a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from genlearn.data.containers import ImageDataset
from genlearn.errors import ConfigError

SIZES = ("small", "large")
COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "right of", "above", "below")
RGB = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
}
RADIUS = {"small": 0.11, "large": 0.19}  # fractions of the image side
# colour-shape pairs kept out of training (each colour and each shape still appears there)
HELD_OUT_PAIRS = {("red", "triangle"), ("blue", "circle"), ("green", "square")}
TRAIN_COUNT, TEST_COUNT, HELD_OUT_COUNT = 8000, 1000, 1000
DEFAULT_SIZE, MIN_SIZE = 32, 16
SEED = 4321
JITTER = 0.05
FACTORS = ("size_a", "colour_a", "shape_a", "relation", "size_b", "colour_b", "shape_b")


@dataclass
class CaptionedImages:
    images: torch.Tensor  # uint8 [N, 3, S, S]
    factors: torch.Tensor  # int64 [N, 7], indices into SIZES, COLOURS, SHAPES, RELATIONS
    captions: list[str]


def caption(factors: np.ndarray | torch.Tensor) -> str:
    """'a large green triangle left of a small red circle' for one row of factors."""
    size_a, colour_a, shape_a, relation, size_b, colour_b, shape_b = (int(v) for v in factors)
    first = f"a {SIZES[size_a]} {COLOURS[colour_a]} {SHAPES[shape_a]}"
    second = f"a {SIZES[size_b]} {COLOURS[colour_b]} {SHAPES[shape_b]}"
    return f"{first} {RELATIONS[relation]} {second}"


def parse_caption(text: str) -> np.ndarray:
    """The factors of a caption in the dataset's grammar; ConfigError names what is wrong."""
    words = text.strip().lower().split()
    relation = next((r for r in RELATIONS if f" {r} " in f" {' '.join(words)} "), None)
    if relation is None:
        raise ConfigError(f"caption {text!r} has no arrangement: use one of {', '.join(RELATIONS)}")
    first, second = " ".join(words).split(f" {relation} ", 1)
    return np.array([*_object(first, text), RELATIONS.index(relation), *_object(second, text)])


def _object(phrase: str, text: str) -> tuple[int, int, int]:
    words = phrase.split()
    if len(words) != 4 or words[0] != "a":
        raise ConfigError(
            f"caption {text!r}: each object reads 'a SIZE COLOUR SHAPE', e.g. 'a small red circle'"
        )
    size, colour, shape = words[1:]
    for word, options in ((size, SIZES), (colour, COLOURS), (shape, SHAPES)):
        if word not in options:
            raise ConfigError(f"caption {text!r}: {word!r} is not one of {', '.join(options)}")
    return SIZES.index(size), COLOURS.index(colour), SHAPES.index(shape)


def uses_held_out_pair(factors: np.ndarray) -> np.ndarray:
    """[N] bool: does either object have a held-out colour-shape pair?"""
    factors = np.asarray(factors).reshape(-1, 7)
    held = np.zeros((len(COLOURS), len(SHAPES)), dtype=bool)
    for colour, shape in HELD_OUT_PAIRS:
        held[COLOURS.index(colour), SHAPES.index(shape)] = True
    return held[factors[:, 1], factors[:, 2]] | held[factors[:, 5], factors[:, 6]]


def load_shapes_captions(image_size: int | None = None) -> dict[str, CaptionedImages]:
    """'train' (8,000, no held-out pair), 'test' (1,000, same combinations), 'held_out'
    (1,000, each with at least one held-out colour-shape pair)."""
    size = DEFAULT_SIZE if image_size is None else image_size
    if size < MIN_SIZE:
        raise ConfigError(f"shapes-captions needs image_size >= {MIN_SIZE}; got {size}")
    rng = np.random.default_rng(SEED)
    seen, held = [], []
    while (
        sum(len(f) for f in seen) < TRAIN_COUNT + TEST_COUNT
        or sum(len(f) for f in held) < HELD_OUT_COUNT
    ):
        factors = _random_factors(rng, 4096)
        mask = uses_held_out_pair(factors)
        seen.append(factors[~mask])
        held.append(factors[mask])
    seen_all = np.concatenate(seen)[: TRAIN_COUNT + TEST_COUNT]
    held_all = np.concatenate(held)[:HELD_OUT_COUNT]
    splits = {
        "train": seen_all[:TRAIN_COUNT],
        "test": seen_all[TRAIN_COUNT:],
        "held_out": held_all,
    }
    return {name: _render_split(f, size, rng) for name, f in splits.items()}


def _random_factors(rng: np.random.Generator, count: int) -> np.ndarray:
    limits = (
        len(SIZES),
        len(COLOURS),
        len(SHAPES),
        len(RELATIONS),
        len(SIZES),
        len(COLOURS),
        len(SHAPES),
    )
    factors = np.stack([rng.integers(0, n, count) for n in limits], axis=1)
    # two objects that look the same would make "left of" ambiguous: redraw the second colour
    same = (factors[:, 1] == factors[:, 5]) & (factors[:, 2] == factors[:, 6])
    factors[same, 5] = (factors[same, 5] + 1) % len(COLOURS)
    return factors


def _render_split(factors: np.ndarray, size: int, rng: np.random.Generator) -> CaptionedImages:
    images = render(factors, size, rng)
    return CaptionedImages(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(factors.astype(np.int64)),
        [caption(f) for f in factors],
    )


def object_centres(relation: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Centres (x, y) in [0, 1] of the first and second object for each arrangement."""
    n = len(relation)
    first = np.full((n, 2), 0.5)
    second = np.full((n, 2), 0.5)
    offsets = {0: (-0.23, 0.0), 1: (0.23, 0.0), 2: (0.0, -0.23), 3: (0.0, 0.23)}
    for index, (dx, dy) in offsets.items():
        rows = relation == index
        first[rows] += (dx, dy)
        second[rows] -= (dx, dy)
    first += rng.uniform(-JITTER, JITTER, (n, 2))
    second += rng.uniform(-JITTER, JITTER, (n, 2))
    return first, second


def render(factors: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [N, size, size, 3] pictures of the factors (first object drawn last, on top)."""
    first, second = object_centres(factors[:, 3], rng)
    pixels = (np.arange(size) + 0.5) / size
    ys, xs = np.meshgrid(pixels, pixels, indexing="ij")
    canvas = np.zeros((len(factors), size, size, 3), dtype=np.float32)
    for centres, (s, c, k) in ((second, (4, 5, 6)), (first, (0, 1, 2))):
        radius = np.array([RADIUS[SIZES[i]] for i in factors[:, s]])[:, None, None]
        dx = xs[None] - centres[:, 0, None, None]
        dy = ys[None] - centres[:, 1, None, None]
        distance = np.empty_like(dx)
        for shape_index, shape in enumerate(SHAPES):
            rows = factors[:, k] == shape_index
            distance[rows] = _signed_distance(shape, dx[rows], dy[rows], radius[rows])
        coverage = np.clip(0.5 - distance * size, 0.0, 1.0)[..., None]  # distance in pixels
        colour = np.array([RGB[COLOURS[i]] for i in factors[:, c]], dtype=np.float32)
        canvas = canvas * (1 - coverage) + coverage * colour[:, None, None, :]
    return np.round(canvas).astype(np.uint8)


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Negative inside, in fractions of the image side (approximate outside the corners)."""
    if shape == "circle":
        return np.hypot(dx, dy) - radius
    if shape == "square":
        return np.maximum(np.abs(dx), np.abs(dy)) - radius * 0.85
    # an upward triangle: the largest of three edge distances (base, two slanted sides)
    base = dy - radius * 0.7
    slant = 0.866 * np.abs(dx) - 0.5 * dy - radius * 0.7
    return np.maximum(base, slant)


def load_shapes_captions_dataset(image_size: int | None = None) -> ImageDataset:
    """The registry's view: train and test splits with their captions (the held-out
    combinations stay in `load_shapes_captions()["held_out"]`, for measuring)."""
    splits = load_shapes_captions(image_size)
    return ImageDataset(
        name="shapes-captions",
        train_images=splits["train"].images,
        test_images=splits["test"].images,
        train_labels=None,
        test_labels=None,
        class_names=None,
        attribute_names=None,
        source="embedded: procedural coloured shapes with captions (genlearn; public domain)",
        train_captions=splits["train"].captions,
        test_captions=splits["test"].captions,
    )


def random_pictures(count: int, seed: int, image_size: int | None = None) -> CaptionedImages:
    """`count` fresh pictures of any combination, held-out pairs included: material for a
    judge that checks whether a picture matches its caption (never for the model)."""
    rng = np.random.default_rng(seed)
    return _render_split(_random_factors(rng, count), image_size or DEFAULT_SIZE, rng)


def canonical_factors(factors: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[N, 7] caption factors -> [N, 7] order-free ones: (orientation, then size, colour,
    shape of the left or upper object, then of the other). "a red circle left of a blue
    square" and "a blue square right of a red circle" describe one picture and map to one row.
    Orientation 0 is side by side, 1 is one above the other."""
    f = torch.as_tensor(np.asarray(factors), dtype=torch.long).reshape(-1, 7)
    relation = f[:, 3]
    first_leads = (relation == RELATIONS.index("left of")) | (relation == RELATIONS.index("above"))
    first, second = f[:, 0:3], f[:, 4:7]
    lead = torch.where(first_leads[:, None], first, second)
    other = torch.where(first_leads[:, None], second, first)
    orientation = (relation >= RELATIONS.index("above")).long()
    return torch.cat([orientation[:, None], lead, other], dim=1)


CANONICAL_CLASSES = (
    2,
    len(SIZES),
    len(COLOURS),
    len(SHAPES),
    len(SIZES),
    len(COLOURS),
    len(SHAPES),
)
