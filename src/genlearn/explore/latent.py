"""Looking inside an autoencoder's latent space: the figures that make an AE and a VAE differ.

A plain autoencoder only learns to reconstruct, so its codes sit wherever the encoder put
them, with gaps in between; a VAE's KL term pulls them onto the prior N(0, I), so decoding a
point drawn from that prior gives a plausible image. Each function below makes one aspect of
this visible and writes a PNG (returning its path):

- `reconstructions`, `prior_samples`: what goes in and comes out, and what the prior decodes to;
- `latent_scatter`: where the data's codes lie (PCA/t-SNE when d > 2), with the prior's circles;
- `latent_grid`: decode a regular grid of codes ("moving a finger around the latent space",
  Kingma & Welling 2014, Fig. 4);
- `interpolate`: decode the straight (or spherical) path between two images' codes;
- `attribute_vector`/`attribute_figure`: latent arithmetic ("add a smile");
- `prior_gap_figure`: where N(0, I) samples land among the data's codes, and what they decode to.

The model contract is the autoencoder's: `encode(x) -> [B, d]` (mu for a VAE), `decode(z)`
-> images in [0, 1], `sample(n, generator)`, `latent_dim`, `variational`. Everything runs
under `torch.no_grad()` in eval mode, in batches, so encoding 10,000 test images is quick.

Captions: with `caption=None` each function records a descriptive default caption in the
folder's captions.json (the report shows it); pass `caption=""` to record none.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from torch import nn

from genlearn.errors import ConfigError
from genlearn.report.figures import (
    auto_scale,
    figure_style,
    make_grid,
    save_figure,
    save_gif,
    save_image_grid,
    save_labelled_grid,
    to_display_images,
    to_uint8_hwc,
)

BATCH_SIZE = 512
GIF_MIN_PX = 160  # one image per frame: show it large
PathLike = str | os.PathLike[str]


# ---- running the model -----------------------------------------------------------------------
@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no gradients inside the block; the model's train/eval flag is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless model)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _batch_of_images(images: torch.Tensor) -> torch.Tensor:
    return images.unsqueeze(0) if images.ndim == 3 else images


def _model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 or float images -> float in [0, 1] on `device`, converted where they already are
    (no round trip through the CPU for images already on the GPU)."""
    images = images.to(device)
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float().clamp(0, 1)


def encode_all(
    model: nn.Module, images: torch.Tensor, batch_size: int = BATCH_SIZE
) -> torch.Tensor:
    """Codes [N, d] (on the CPU) of uint8 or [0, 1] float images, `batch_size` at a time.

    Images are converted to float one batch at a time, so a large uint8 test set is never
    copied whole as floats.
    """
    images = _batch_of_images(images)
    device = model_device(model)
    codes = []
    with evaluating(model):
        for start in range(0, len(images), batch_size):
            batch = _model_input(images[start : start + batch_size], device)
            codes.append(model.encode(batch).float().cpu())
    if not codes:
        raise ConfigError("no images to encode")
    return torch.cat(codes)


def posterior_codes(
    model: nn.Module, images: torch.Tensor, seed: int = 0, batch_size: int = BATCH_SIZE
) -> torch.Tensor:
    """One draw z ~ q(z|x) per image for a VAE (the codes its decoder sees in training);
    the codes themselves for a plain autoencoder or a model without `posterior`."""
    if not getattr(model, "variational", False) or not hasattr(model, "posterior"):
        return encode_all(model, images, batch_size)
    images = _batch_of_images(images)
    device, generator = model_device(model), torch.Generator().manual_seed(seed)
    codes = []
    with evaluating(model):
        for start in range(0, len(images), batch_size):
            batch = _model_input(images[start : start + batch_size], device)
            mu, logvar = (t.float().cpu() for t in model.posterior(batch))
            codes.append(mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator))
    return torch.cat(codes)


def decode_all(model: nn.Module, codes: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Images [N, C, H, W] in [0, 1] (on the CPU) decoded from codes [N, d] in batches."""
    device = model_device(model)
    out = []
    with evaluating(model):
        for start in range(0, len(codes), batch_size):
            out.append(model.decode(codes[start : start + batch_size].to(device)).float().cpu())
    return torch.cat(out).clamp(0.0, 1.0)


def _kind(model: nn.Module) -> str:
    return "VAE" if getattr(model, "variational", False) else "autoencoder"


def _title_kind(model: nn.Module) -> str:
    kind = _kind(model)
    return kind[:1].upper() + kind[1:]


def _ordinal(value: float) -> str:
    """1 -> "1st", 99 -> "99th", 2.5 -> "2.5th": for percentile labels."""
    if value != int(value):
        return f"{value:g}th"
    n = int(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _caption(caption: str | None, default: str) -> str:
    """The caption a figure records: `default` unless one was given ("" records none)."""
    return default if caption is None else caption


# ---- 2-D views of the codes ------------------------------------------------------------------
@dataclass
class Plane:
    """An affine map between d-dim codes and 2-D plot coordinates: z = origin + xy @ axes.T.

    For d == 2 it is the identity; for d > 2 the plane of the first two principal components
    through the mean of the codes. `explained` is each axis's fraction of the total variance.
    """

    origin: torch.Tensor  # [d]
    axes: torch.Tensor  # [d, 2], orthonormal columns
    explained: torch.Tensor | None  # [2] or None for the identity
    labels: tuple[str, str]

    def project(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes - self.origin) @ self.axes

    def lift(self, coords: torch.Tensor) -> torch.Tensor:
        return self.origin + coords @ self.axes.T


def pca_plane(codes: torch.Tensor) -> Plane:
    """The plane of the first two principal components through the codes' mean.

    Signs are fixed (largest loading positive) so the same model gives the same picture.
    """
    codes = codes.double()
    mean = codes.mean(0)
    _, s, vh = torch.linalg.svd(codes - mean, full_matrices=False)
    axes = vh[:2].T.clone()
    flip = axes.gather(0, axes.abs().argmax(0, keepdim=True)).sign()
    axes = axes * torch.where(flip == 0, torch.ones_like(flip), flip)
    variance = s.pow(2)
    explained = variance[:2] / variance.sum().clamp(min=1e-12)
    labels = tuple(
        f"PC{i + 1} ({100 * float(e):.0f}% of variance)" for i, e in enumerate(explained)
    )
    return Plane(mean.float(), axes.float(), explained.float(), labels)  # type: ignore[arg-type]


def view_plane(codes: torch.Tensor) -> Plane:
    """Identity for d == 2 (plot the codes directly), PCA for d > 2, z1 vs 0 for d == 1."""
    d = codes.shape[1]
    if d == 2:
        return Plane(torch.zeros(2), torch.eye(2), None, ("z1", "z2"))
    if d == 1:
        jitter = "random jitter (d = 1)"
        return Plane(torch.zeros(1), torch.tensor([[1.0, 0.0]]), None, ("z1", jitter))
    return pca_plane(codes)


def _subsample(n: int, max_points: int, seed: int = 0) -> torch.Tensor:
    if n <= max_points:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:max_points].sort()[0]


def _prior_circles(ax, centre: Sequence[float] = (0.0, 0.0)) -> None:
    """Dashed 1- and 2-sigma circles of N(0, I), labelled where they cross the upper right."""
    for r in (1, 2):
        ax.add_patch(
            Circle(
                tuple(centre), r, fill=False, ls="--", lw=1.3, color="0.15", alpha=0.85, zorder=3
            )
        )
        ax.annotate(
            f"{r}σ",
            (centre[0] + r * 0.7071, centre[1] + r * 0.7071),
            fontsize=10,
            color="0.1",
            xytext=(3, 3),
            textcoords="offset points",
            zorder=4,
        )


def _fit_limits(
    ax,
    xy: np.ndarray,
    include: float | None,
    centre: Sequence[float],
    extra: np.ndarray | None = None,
) -> None:
    """Limits from the 0.5-99.5th percentiles (outliers would squash the cloud), widened to
    show the prior's 2-sigma circle when `include` is set and every `extra` point. Equal
    aspect keeps the circles round; the shorter side is widened to at least 60% of the
    longer so the plot stays legible.
    """
    lo = np.percentile(xy, 0.5, axis=0)
    hi = np.percentile(xy, 99.5, axis=0)
    if extra is not None and len(extra):
        lo, hi = np.minimum(lo, extra.min(0)), np.maximum(hi, extra.max(0))
    if include is not None:
        lo = np.minimum(lo, np.asarray(centre) - include)
        hi = np.maximum(hi, np.asarray(centre) + include)
    span = (hi - lo) * 1.12 + 1e-6
    span = np.maximum(span, 0.6 * span.max())
    mid = (hi + lo) / 2
    ax.set_xlim(mid[0] - span[0] / 2, mid[0] + span[0] / 2)
    ax.set_ylim(mid[1] - span[1] / 2, mid[1] + span[1] / 2)
    ax.set_aspect("equal", adjustable="box")


def _jitter_if_1d(xy: torch.Tensor, d: int, seed: int = 0) -> torch.Tensor:
    if d != 1:
        return xy
    noise = torch.rand(len(xy), generator=torch.Generator().manual_seed(seed)) - 0.5
    return torch.stack([xy[:, 0], noise], dim=1)


# ---- labels ----------------------------------------------------------------------------------
def normalise_name(name: str) -> str:
    """How label names are compared: "Wearing hat" and "wearing_hat" are the same name."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def index_of_name(names: Sequence[str], name: str) -> int | None:
    """Where `name` is in `names`, compared by `normalise_name`; None if it is not there."""
    wanted = normalise_name(name)
    return next((i for i, known in enumerate(names) if normalise_name(known) == wanted), None)


def _attribute_index(attribute_names: Sequence[str], attribute: str) -> int:
    index = index_of_name(attribute_names, attribute)
    if index is None:
        raise ConfigError(
            f"unknown attribute {attribute!r}; valid attributes: {', '.join(attribute_names)}"
        )
    return index


def _is_binary(column: torch.Tensor) -> bool:
    return bool(((column == 0) | (column == 1)).all())


def attribute_mask(
    labels: torch.Tensor | None,
    class_names: Sequence[str] | None,
    attribute_names: Sequence[str] | None,
    attribute: str,
) -> torch.Tensor:
    """Which images "have" `attribute`, as a BoolTensor [N].

    Class labels ([N] ints): a class name ("7", "sneaker") or index means "is that class".
    Attribute labels ([N, K] floats), matched case-insensitively ("smiling" -> "Smiling"):
    binary 0/1 columns mean value > 0.5; continuous ones (cylinders' height) above the median.
    """
    if labels is None:
        raise ConfigError("this dataset has no labels, so there are no attributes to select")
    if labels.ndim == 1:
        return labels == _class_index(attribute, class_names)
    if attribute_names is None:
        raise ConfigError("attribute labels need attribute_names to be selected by name")
    column = labels[:, _attribute_index(attribute_names, attribute)].float()
    if _is_binary(column):
        return column > 0.5
    return column > column.median()


def _class_index(attribute: str, class_names: Sequence[str] | None) -> int:
    index = index_of_name(class_names, attribute) if class_names is not None else None
    if index is not None:
        return index
    count = len(class_names) if class_names is not None else None
    if attribute.strip().isdigit() and (count is None or int(attribute) < count):
        return int(attribute)
    valid = ", ".join(class_names) if class_names is not None else "class indices"
    raise ConfigError(f"unknown class {attribute!r}; valid classes: {valid}")


@dataclass
class _Colouring:
    kind: str  # "classes", "binary", "continuous" or "none"
    values: np.ndarray | None
    names: list[str]
    title: str


def _colouring(
    labels: torch.Tensor | None,
    class_names: Sequence[str] | None,
    attribute_names: Sequence[str] | None,
    attribute: str | None,
) -> _Colouring:
    if labels is None:
        return _Colouring("none", None, [], "")
    if labels.ndim == 1:
        values = labels.long().numpy()
        count = int(values.max()) + 1 if len(values) else 0
        names = list(class_names) if class_names is not None else [str(i) for i in range(count)]
        return _Colouring("classes", values, names, "class")
    names = (
        list(attribute_names)
        if attribute_names
        else [f"attribute {j}" for j in range(labels.shape[1])]
    )
    j = _attribute_index(names, attribute) if attribute is not None else 0
    column = labels[:, j].float()
    if _is_binary(column):
        return _Colouring("binary", (column > 0.5).numpy(), [f"not {names[j]}", names[j]], names[j])
    return _Colouring("continuous", column.numpy(), [names[j]], names[j])


def _scatter_coloured(ax, fig, xy: np.ndarray, colouring: _Colouring, size: float) -> None:
    """Scatter with colours from the labels; drawn in a shuffled order so no class hides
    another, with a legend (classes/binary) or a colour bar (continuous) outside the axes."""
    order = np.random.default_rng(0).permutation(len(xy))
    xy = xy[order]
    common = {"s": size, "alpha": 0.6, "linewidths": 0, "rasterized": True}
    if colouring.kind == "none":
        ax.scatter(xy[:, 0], xy[:, 1], color="#3b6ea8", **common)
        return
    values = colouring.values[order]
    many_classes = colouring.kind == "classes" and len(colouring.names) > 20
    if colouring.kind == "continuous" or many_classes:
        points = ax.scatter(xy[:, 0], xy[:, 1], c=values, cmap="viridis", **common)
        bar = fig.colorbar(points, ax=ax, fraction=0.046, pad=0.03)
        bar.set_label(colouring.title if colouring.kind == "continuous" else "class index")
        bar.solids.set_alpha(1.0)
        return
    if colouring.kind == "binary":
        palette = ["#9aa5b1", "#d1495b"]
        values = values.astype(int)
    else:
        palette = _palette("tab10" if len(colouring.names) <= 10 else "tab20", len(colouring.names))
    ax.scatter(xy[:, 0], xy[:, 1], color=[palette[v] for v in values], **common)
    handles = [
        Line2D([], [], ls="", marker="o", ms=7, color=palette[i], label=name)
        for i, name in enumerate(colouring.names)
    ]
    ax.legend(
        handles=handles,
        title=colouring.title if colouring.kind == "classes" else None,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        borderaxespad=0.0,
        handletextpad=0.3,
    )


def _palette(name: str, count: int) -> list:
    cmap = matplotlib.colormaps[name]
    return [cmap(i % cmap.N) for i in range(count)]


# ---- reconstructions and samples -------------------------------------------------------------
def reconstructions(
    model: nn.Module,
    images: torch.Tensor,
    path: PathLike,
    n: int = 16,
    per_row: int = 16,
    caption: str | None = None,
) -> Path:
    """The first `n` images (row "input") above their reconstructions (row "output").

    More than `per_row` images wrap into further input/output row pairs.
    """
    originals = to_display_images(_batch_of_images(images)[:n])
    recon = decode_all(model, encode_all(model, originals))
    n, per_row = len(originals), min(per_row, len(originals))
    pairs = math.ceil(n / per_row)
    blank = torch.ones_like(originals[:1])
    rows, labels = [], []
    for p in range(pairs):
        chunk = slice(p * per_row, (p + 1) * per_row)
        for label, source in (("input", originals), ("output", recon)):
            row = source[chunk]
            rows.append(torch.cat([row, blank.expand(per_row - len(row), *row.shape[1:])]))
            labels.append(label)
    return save_labelled_grid(
        torch.stack(rows),
        path,
        row_labels=labels,
        title=f"{_title_kind(model)} reconstructions",
        caption=_caption(
            caption,
            f"Reconstructions: {n} test images (input rows) and the decodes of "
            f"their codes (output rows). Blur here is what the {_kind(model)} cannot encode "
            f"in {model.latent_dim} dimensions.",
        ),
    )


def prior_samples(
    model: nn.Module,
    path: PathLike,
    n: int = 64,
    generator: torch.Generator | None = None,
    caption: str | None = None,
) -> Path:
    """Decode n codes z ~ N(0, I): the model's samples (and, for an AE, its gaps)."""
    with evaluating(model):
        images = model.sample(n, generator=generator).float().cpu()
    note = (
        "a VAE is trained so that these look like the data"
        if _kind(model) == "VAE"
        else "a plain autoencoder never sees these codes in training, so expect smudges"
    )
    default = f"Prior samples: {n} decodes of z ~ N(0, I) ({note})."
    return save_image_grid(images, path, caption=_caption(caption, default))


# ---- latent scatter --------------------------------------------------------------------------
def latent_scatter(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    path: PathLike,
    class_names: Sequence[str] | None = None,
    attribute_names: Sequence[str] | None = None,
    attribute: str | None = None,
    projection: str = "pca",
    max_points: int = 10_000,
    caption: str | None = None,
) -> Path:
    """Encode the images and plot their codes in 2-D, coloured by class or attribute.

    d == 2 is plotted directly; d > 2 is projected with PCA (`projection="tsne"` for t-SNE on
    at most 2,000 points: slower, and its distances mean little). The N(0, I) 1- and 2-sigma
    circles are drawn (for PCA: the prior's projection, a unit circle around the projected
    origin): a VAE's codes fill them, an AE's codes need not.
    """
    if projection not in ("pca", "tsne"):
        raise ConfigError(f"projection must be 'pca' or 'tsne', got {projection!r}")
    images = _batch_of_images(images)
    keep = _subsample(len(images), 2000 if projection == "tsne" else max_points)
    codes = encode_all(model, images[keep])
    labels = labels[keep] if labels is not None else None
    colouring = _colouring(labels, class_names, attribute_names, attribute)
    d = codes.shape[1]
    if projection == "tsne" and d > 2:
        xy, axis_labels, centre = _tsne(codes), ("t-SNE 1", "t-SNE 2"), None
        how = "t-SNE of the codes (distances are not to scale)"
    else:
        plane = view_plane(codes)
        xy = _jitter_if_1d(plane.project(codes), d).numpy()
        axis_labels = plane.labels
        centre = plane.project(torch.zeros(1, d))[0].tolist() if d > 1 else None
        how = "codes" if d <= 2 else "codes projected on their first two principal components"
    with figure_style():
        fig = Figure(figsize=(7.4, 6.0), dpi=120)
        ax = fig.add_subplot()
        _scatter_coloured(ax, fig, xy, colouring, size=5 if len(xy) > 3000 else 9)
        if centre is not None:
            _prior_circles(ax, centre)
        _fit_limits(ax, xy, 2.3 if centre is not None else None, centre or (0, 0))
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
        code = "mu" if _kind(model) == "VAE" else "z"
        ax.set_title(
            f"{_title_kind(model)} latent space (d = {d}): {code} of {len(xy):,} images"
            + ("\ndashed: N(0, I) at 1σ and 2σ" if centre is not None else "")
        )
        ax.grid(True, alpha=0.25)
        what = f" coloured by {colouring.title}" if colouring.kind != "none" else ""
        default = f"Latent scatter: {how} of {len(xy):,} test images{what}." + (
            " Dashed circles: where 39% and 86% of N(0, I) samples fall."
            if centre is not None
            else ""
        )
        return save_figure(fig, path, _caption(caption, default))


def _tsne(codes: torch.Tensor) -> np.ndarray:
    from sklearn.manifold import TSNE  # slow import: only when asked for

    perplexity = float(min(30, max(2, (len(codes) - 1) // 3)))
    return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=0).fit_transform(
        codes.numpy()
    )


# ---- latent grid -----------------------------------------------------------------------------
@dataclass
class LatentGrid:
    """The codes decoded by `latent_grid`: codes[i, j] is row i (top = largest y), column j."""

    codes: torch.Tensor  # [rows, n, d]
    xs: torch.Tensor  # [n] coordinate along the horizontal axis
    ys: torch.Tensor  # [rows] coordinate along the vertical axis, top row first
    xlabel: str
    ylabel: str
    description: str  # what was decoded, e.g. "decodes of z at N(0, 1) quantiles 0.05..0.95"


def gaussian_quantiles(n: int, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """n values of the N(0, 1) inverse CDF at evenly spaced probabilities in [low, high]."""
    return torch.special.ndtri(torch.linspace(low, high, n, dtype=torch.float64)).float()


def latent_grid_codes(
    model: nn.Module,
    n: int = 20,
    images: torch.Tensor | None = None,
    quantiles: tuple[float, float] = (0.05, 0.95),
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> LatentGrid:
    """Choose the grid of codes to decode (see `latent_grid`)."""
    d, vae = model.latent_dim, bool(getattr(model, "variational", False))
    codes = encode_all(model, images) if images is not None else None
    if codes is None and not vae:
        raise ConfigError(
            "a plain autoencoder has no prior to span: pass images so the grid can "
            "cover the range of their codes"
        )
    if codes is None or (vae and d <= 2):
        steps = gaussian_quantiles(n, *quantiles)
        axes = torch.eye(d, 2) if d > 1 else torch.tensor([[1.0, 0.0]])
        plane = Plane(torch.zeros(d), axes, None, ("z1", "z2"))
        rest = " (other dimensions 0)" if d > 2 else ""
        title = f"decodes of z at N(0, 1) quantiles {quantiles[0]:g}..{quantiles[1]:g}{rest}"
        xs, ys = steps, steps
    else:
        plane = view_plane(codes)
        coords = plane.project(codes)
        lo = torch.quantile(coords, percentiles[0] / 100, dim=0)
        hi = torch.quantile(coords, percentiles[1] / 100, dim=0)
        xs = torch.linspace(float(lo[0]), float(hi[0]), n)
        ys = torch.linspace(float(lo[1]), float(hi[1]), n)
        span = (
            f"{_ordinal(percentiles[0])} to {_ordinal(percentiles[1])} percentile of the "
            "data's codes"
        )
        where = "z" if d <= 2 else "the PC1-PC2 plane through the codes' mean"
        title = f"decodes of {where}, spanning the {span}"
    ys = torch.zeros(1) if d == 1 else ys.flip(0)  # rows top to bottom: largest y first
    grid_xy = torch.stack([xs[None, :].expand(len(ys), -1), ys[:, None].expand(-1, len(xs))], -1)
    lifted = plane.lift(grid_xy.reshape(-1, 2)).reshape(len(ys), len(xs), d)
    return LatentGrid(lifted, xs, ys, plane.labels[0], plane.labels[1], title)


def latent_grid(
    model: nn.Module,
    path: PathLike,
    n: int = 20,
    images: torch.Tensor | None = None,
    caption: str | None = None,
) -> Path:
    """Decode an n x n grid of codes: "moving a finger around the latent space".

    A 2-D VAE uses N(0, 1) quantiles on 0.05..0.95 (Kingma & Welling 2014, Fig. 4), so each
    row and column covers equal prior probability. An AE has no prior, so the grid spans the
    1st..99th percentile of the codes of `images`. For d > 2 the grid lies in the plane of the
    first two principal components of the codes, through their mean.
    """
    grid = latent_grid_codes(model, n, images)
    rows, cols, d = grid.codes.shape
    decoded = decode_all(model, grid.codes.reshape(-1, d)).reshape(rows, cols, *model.image_shape)
    every = max(1, round(cols / 5))
    return save_labelled_grid(
        decoded,
        path,
        col_labels=[f"{v:.2g}" for v in grid.xs.tolist()],
        row_labels=[f"{v:.2g}" for v in grid.ys.tolist()] if rows > 1 else None,
        title=f"{_title_kind(model)}: {grid.description}",
        xlabel=grid.xlabel,
        ylabel=grid.ylabel if rows > 1 else None,
        padding=1,
        col_label_every=every,
        row_label_every=every,
        caption=_caption(
            caption,
            f"Latent grid: {grid.description}. Smooth change from tile to tile "
            "means nearby codes decode to similar images; blank or smudged regions are gaps "
            "the decoder never learned.",
        ),
    )


# ---- interpolation ---------------------------------------------------------------------------
def interpolation_codes(
    z_a: torch.Tensor, z_b: torch.Tensor, steps: int, spherical: bool = False
) -> torch.Tensor:
    """`steps` codes from z_a to z_b (both included), linear or spherical (slerp).

    Slerp (White 2016) keeps the norm typical of Gaussian samples, where a straight line
    passes near the origin, a point of unusually low norm in high dimensions.
    """
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64).unsqueeze(1)
    a, b = z_a.double().flatten(), z_b.double().flatten()
    if spherical:
        cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp(min=1e-12)
        omega = torch.arccos(cos.clamp(-1.0, 1.0))
        if float(omega.sin().abs()) > 1e-6:
            path = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / omega.sin()
            path[0], path[-1] = a, b
            return path.to(z_a.dtype)
    return ((1 - t) * a + t * b).to(z_a.dtype)


def interpolation_frames(
    model: nn.Module,
    image_a: torch.Tensor,
    image_b: torch.Tensor,
    steps: int = 10,
    spherical: bool = False,
) -> torch.Tensor:
    """Decodes [steps, C, H, W] of the path between the codes of two images."""
    codes = encode_all(
        model, torch.cat([_batch_of_images(image_a)[:1], _batch_of_images(image_b)[:1]])
    )
    return decode_all(model, interpolation_codes(codes[0], codes[1], steps, spherical))


def interpolate(
    model: nn.Module,
    image_a: torch.Tensor,
    image_b: torch.Tensor,
    path: PathLike,
    steps: int = 10,
    gif_path: PathLike | None = None,
    spherical: bool = False,
    gif_steps: int = 30,
    caption: str | None = None,
) -> Path:
    """A strip: original A, decodes along the path from A's code to B's, original B.

    With `gif_path`, also an animation A -> B -> A with `gif_steps` frames each way (written
    to `gif_path`; the PNG's path is returned).
    """
    frames = interpolation_frames(model, image_a, image_b, steps, spherical)
    a = to_display_images(_batch_of_images(image_a)[:1])
    b = to_display_images(_batch_of_images(image_b)[:1])
    strip = torch.cat([a, frames, b]).unsqueeze(0)
    t_labels = [f"{t:.2f}".rstrip("0").rstrip(".") for t in torch.linspace(0, 1, steps).tolist()]
    how = "spherical (slerp)" if spherical else "linear"
    formula = "slerp(z_A, z_B; t)" if spherical else "(1 - t) z_A + t z_B"
    path = save_labelled_grid(
        strip,
        path,
        col_labels=["A", *t_labels, "B"],
        title=f"{_title_kind(model)}: {how} interpolation between A and B",
        note=f"A, B: the original images; between them, decodes of z(t) = {formula}, t = 0 to 1",
        col_label_every=max(1, round((steps + 2) / 12)),
        caption=_caption(
            caption,
            f"Interpolation: originals A and B at the ends; between them, "
            f"{steps} decodes along the {how} path from A's code to B's.",
        ),
    )
    if gif_path is not None:
        gif_frames = interpolation_frames(model, image_a, image_b, gif_steps, spherical)
        save_gif(
            list(gif_frames),
            gif_path,
            duration_ms=80,
            bounce=True,
            scale=auto_scale(max(gif_frames.shape[-2:]), GIF_MIN_PX),
            caption=_caption(
                caption,
                f"Interpolation as an animation: A -> B -> A along the {how} path in latent space.",
            ),
        )
    return path


# ---- attribute vectors -----------------------------------------------------------------------
def attribute_vector(
    model: nn.Module, images: torch.Tensor, has_attribute: torch.Tensor
) -> torch.Tensor:
    """Mean code of the images with the attribute minus the mean code of those without.

    Adding it to a code moves that image "towards the attribute" (White 2016; Larsen et al.
    2016), to the extent the latent space encodes the attribute linearly.
    """
    has_attribute = torch.as_tensor(has_attribute).bool().flatten().cpu()
    images = _batch_of_images(images)
    if len(has_attribute) != len(images):
        raise ConfigError(
            f"has_attribute has {len(has_attribute)} entries for {len(images)} images"
        )
    with_count, without_count = int(has_attribute.sum()), int((~has_attribute).sum())
    if with_count == 0 or without_count == 0:
        raise ConfigError(
            f"an attribute vector needs images with and without the attribute; "
            f"got {with_count} with and {without_count} without"
        )
    codes = encode_all(model, images)
    return codes[has_attribute].mean(0) - codes[~has_attribute].mean(0)


def _strength_label(s: float) -> str:
    return "0" if s == 0 else f"{s:+g}"


def attribute_figure(
    model: nn.Module,
    images: torch.Tensor,
    vector: torch.Tensor,
    strengths: Sequence[float],
    path: PathLike,
    row_labels: Sequence[str] | None = None,
    attribute_name: str | None = None,
    caption: str | None = None,
) -> Path:
    """Rows: images; columns: the input, then decodes of z + s * vector for each strength s.

    s = 0 is the plain reconstruction, so each row reads as "less <-> more of the attribute".
    """
    images = to_display_images(_batch_of_images(images))
    codes = encode_all(model, images)
    strengths = [float(s) for s in strengths]
    shifted = codes[:, None, :] + torch.tensor(strengths)[None, :, None] * vector.cpu().float()
    decoded = decode_all(model, shifted.reshape(-1, codes.shape[1])).reshape(
        len(images), len(strengths), *images.shape[1:]
    )
    grid = torch.cat([images[:, None], decoded], dim=1)
    name = f"'{attribute_name}'" if attribute_name else "the attribute"
    return save_labelled_grid(
        grid,
        path,
        row_labels=row_labels,
        col_labels=["input", *map(_strength_label, strengths)],
        title=f"{_title_kind(model)}: adding s × the {name} vector",
        xlabel="strength s",
        caption=_caption(
            caption,
            f"Latent arithmetic: each row is an input image, then the decodes of "
            f"its code plus s times the {name} vector (mean code with it minus mean code "
            "without it); s = 0 is the reconstruction.",
        ),
    )


# ---- the prior gap ---------------------------------------------------------------------------
def prior_gap_stats(
    codes: torch.Tensor, samples: torch.Tensor, max_points: int = 2000
) -> tuple[int, float]:
    """(how many samples land in empty space, the threshold distance used).

    A sample is "in empty space" when its nearest data code is farther away than 95% of data
    codes are from their own nearest neighbour: the decoder has seen nothing near it. Both
    distances are measured within the same set of codes (a fixed subsample of `max_points`
    when there are more), so a sample drawn like the codes themselves counts as "empty" 5% of
    the time; against all codes its nearest neighbour would be closer and the share too low.
    """
    sub = codes[_subsample(len(codes), max_points)]
    between = torch.cdist(sub, sub)
    between.fill_diagonal_(math.inf)
    threshold = float(torch.quantile(between.min(1).values, 0.95))
    nearest = torch.cdist(samples, sub).min(1).values
    return int((nearest > threshold).sum()), threshold


def prior_gap_figure(
    model: nn.Module,
    images: torch.Tensor,
    path: PathLike,
    n_samples: int = 25,
    generator: torch.Generator | None = None,
    max_points: int = 5000,
    caption: str | None = None,
) -> Path:
    """Left: the data's codes (dots) and n z ~ N(0, I) (crosses); right: what those z decode to.

    This is the AE/VAE difference on one model: an AE's codes do not cover the prior, so its
    samples land in empty space and decode to smudges; a VAE's do, and decode to data.
    For a VAE the dots are draws z ~ q(z|x), the codes its decoder is trained on: the means
    alone would leave unused latent dimensions at 0 and make every prior sample look far away.
    The plane (d > 2) is that of the means' principal components, as in `latent_scatter`.
    """
    images = _batch_of_images(images)[_subsample(len(images), max_points)]
    codes = posterior_codes(model, images)
    d = codes.shape[1]
    device = generator.device if generator is not None else torch.device("cpu")
    z = torch.randn(n_samples, d, generator=generator, device=device).cpu()
    decoded = decode_all(model, z)
    empty, _ = prior_gap_stats(codes, z)
    plane = view_plane(encode_all(model, images)) if _kind(model) == "VAE" else view_plane(codes)
    xy = _jitter_if_1d(plane.project(codes), d).numpy()
    zxy = _jitter_if_1d(plane.project(z), d, seed=1).numpy()
    grid = to_uint8_hwc(make_grid(decoded, nrow=math.ceil(math.sqrt(n_samples))))
    with figure_style():
        # constrained layout keeps the two-line panel title clear of the figure title
        fig = Figure(figsize=(12.4, 5.8), dpi=120, layout="constrained")
        left, right = fig.subplots(1, 2, width_ratios=[1.1, 1.0])
        dots = "codes of the data, z ~ q(z|x)" if _kind(model) == "VAE" else "codes of the data"
        left.scatter(
            xy[:, 0],
            xy[:, 1],
            s=5 if len(xy) > 3000 else 9,
            alpha=0.45,
            color="#3b6ea8",
            linewidths=0,
            rasterized=True,
            label=dots,
        )
        left.scatter(
            zxy[:, 0],
            zxy[:, 1],
            s=55,
            marker="x",
            color="#d1495b",
            linewidths=2,
            zorder=5,
            label="z ~ N(0, I)",
        )
        centre = plane.project(torch.zeros(1, d))[0].tolist() if d > 1 else None
        if centre is not None:
            _prior_circles(left, centre)
        _fit_limits(left, xy, 2.3 if centre else None, centre or (0, 0), extra=zxy)
        left.set_xlabel(plane.labels[0])
        left.set_ylabel(plane.labels[1])
        left.legend(
            loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False, markerscale=1.5
        )
        left.grid(True, alpha=0.25)
        spread = float(codes.var(0, unbiased=False).mean().sqrt())
        offset = float(codes.mean(0).norm())
        left.set_title(
            f"Where prior samples land: {empty} of {n_samples} in empty space\n"
            f"codes: centre {offset:.1f} from 0, spread σ = {spread:.1f} "
            "(prior: 0 and 1)",
            fontsize=11,
        )
        cmap = "gray" if grid.shape[2] == 1 else None
        right.imshow(
            grid[:, :, 0] if cmap else grid, cmap=cmap, vmin=0, vmax=255, interpolation="nearest"
        )
        right.set_axis_off()
        right.set_title(f"What they decode to ({n_samples} samples)")
        fig.suptitle(f"{_title_kind(model)} (d = {d}): the data's codes vs the prior N(0, I)")
        what = (
            "draws z ~ q(z|x) for the test images"
            if _kind(model) == "VAE"
            else "the codes of the test images"
        )
        default = (
            f"The prior gap: left, {what} (dots) and "
            f"{n_samples} draws z ~ N(0, I) (crosses), {empty} of which land in empty space "
            "(farther from the data codes, or a sample of up to 2,000 of them, than 95% of "
            "those codes are from their nearest neighbour); right, what those draws decode to. A VAE's codes cover the prior, "
            "so its samples look like data; a plain autoencoder's need not."
        )
        return save_figure(fig, path, _caption(caption, default))
