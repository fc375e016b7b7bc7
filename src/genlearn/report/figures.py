"""Figure helpers shared by every model family: image grids, GIFs, captions, loss curves.

Everything here takes images as float tensors in [0, 1] (or uint8) shaped [N, C, H, W] with
C = 1 or 3, so autoencoders, GANs and diffusion models all produce the same kind of figure.
Small images are upscaled with nearest-neighbour (never smoothed): a 28 px digit shown at
28 px is too small to judge, and smoothing would hide exactly the blur we want to see.

Files are written to a temporary name and renamed into place, so a report being built while
training still runs never embeds a half-written PNG. Matplotlib is used through its
object-oriented API (no pyplot), so no global backend is switched and nothing opens a window.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import rc_context
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from genlearn.atomic import atomic_path, write_json_atomic
from genlearn.train.runs import read_jsonl

CAPTIONS_FILE = "captions.json"
MIN_TILE_PX = 56  # small images are upscaled until each tile is at least this many pixels
DPI = 120
PAD_VALUE = 1.0  # white separators: tiles stay distinct on dark backgrounds (digits)
STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "figure.titlesize": 13,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.facecolor": "white",
}


# ---- captions --------------------------------------------------------------------------------
def read_captions(figures_dir: str | os.PathLike[str]) -> dict[str, str]:
    """The filename -> caption map of a figures folder ({} if absent or unreadable)."""
    path = Path(figures_dir) / CAPTIONS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def record_caption(figures_dir: str | os.PathLike[str], filename: str, caption: str) -> Path:
    """Remember `caption` for `filename` in `figures_dir/captions.json` (used as figure text)."""
    captions = read_captions(figures_dir)
    captions[filename] = caption
    path = Path(figures_dir) / CAPTIONS_FILE
    return write_json_atomic(path, captions, sort_keys=True, ensure_ascii=False)


def _maybe_caption(path: Path, caption: str | None) -> None:
    if caption:
        record_caption(path.parent, path.name, caption)


# ---- image tensors ---------------------------------------------------------------------------
def to_display_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 or float images -> float32 in [0, 1] on the CPU, detached: ready to draw.

    (Training converts batches with `genlearn.train.engine.as_float_images`, which stays on
    the device.)
    """
    images = images.detach().cpu()
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float().clamp(0.0, 1.0)


def auto_scale(tile_size: int, min_tile_px: int = MIN_TILE_PX) -> int:
    """Integer nearest-neighbour upscaling factor that makes a tile at least `min_tile_px`."""
    return max(1, math.ceil(min_tile_px / max(1, tile_size)))


def make_grid(
    images: torch.Tensor,
    nrow: int | None = None,
    padding: int = 2,
    scale: int | None = None,
    pad_value: float = PAD_VALUE,
) -> torch.Tensor:
    """Tile [N, C, H, W] images into one [C, H', W'] image, `nrow` tiles per row.

    Tiles are upscaled by `scale` first (default: `auto_scale`), then separated by `padding`
    pixels, including a border; so the width is ncol * W * scale + (ncol + 1) * padding.
    `nrow` defaults to a near-square layout.
    """
    images = to_display_images(images)
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1|3, H, W], got {tuple(images.shape)}")
    n, c, h, w = images.shape
    scale = auto_scale(max(h, w)) if scale is None else scale
    if scale > 1:
        images = images.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
        h, w = h * scale, w * scale
    ncol = min(n, nrow or math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncol)
    grid = torch.full(
        (c, nrows * h + (nrows + 1) * padding, ncol * w + (ncol + 1) * padding), pad_value
    )
    for i in range(n):
        r, q = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def to_pil(image: torch.Tensor) -> Image.Image:
    """A [C, H, W] image in [0, 1] (or uint8) -> PIL image, mode L for grey, RGB for colour."""
    array = to_uint8_hwc(image)
    # uint8 [H, W] is read as mode L and uint8 [H, W, 3] as RGB
    return Image.fromarray(np.ascontiguousarray(array[:, :, 0] if array.shape[2] == 1 else array))


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """A [C, H, W] tensor -> uint8 [H, W, C] numpy array (rounded, not truncated)."""
    image = to_display_images(image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"an image must be [1|3, H, W], got {tuple(image.shape)}")
    return (image * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


def save_image_grid(
    images: torch.Tensor,
    path: str | os.PathLike[str],
    nrow: int | None = None,
    padding: int = 2,
    scale: int | None = None,
    caption: str | None = None,
    pad_value: float = PAD_VALUE,
) -> Path:
    """Save [N, C, H, W] images as one PNG grid (see `make_grid` for the layout and size)."""
    path = Path(path)
    grid = make_grid(images, nrow=nrow, padding=padding, scale=scale, pad_value=pad_value)
    with atomic_path(path) as tmp:
        to_pil(grid).save(tmp, format="PNG", optimize=True)
    _maybe_caption(path, caption)
    return path


def _with_label(image: Image.Image, text: str | None) -> Image.Image:
    """The image under a black band holding `text` in white."""
    band = max(14, image.height // 24)
    labelled = Image.new("RGB", (image.width, image.height + band), "black")
    labelled.paste(image.convert("RGB"), (0, band))
    if text:
        font = ImageFont.load_default(size=band - 3)
        ImageDraw.Draw(labelled).text((4, 1), text, fill="white", font=font)
    return labelled


def save_gif(
    frames: Sequence[torch.Tensor] | torch.Tensor,
    path: str | os.PathLike[str],
    duration_ms: int = 100,
    loop: int = 0,
    bounce: bool = True,
    scale: int | None = None,
    caption: str | None = None,
    labels: Sequence[str] | None = None,
    hold_last_ms: int | None = None,
) -> Path:
    """Save [C, H, W] frames (single images or grids from `make_grid`) as an animated GIF.

    `bounce` plays the frames forwards then backwards without repeating the end frames
    (n frames -> 2n - 2), so a -> b -> a loops smoothly. `loop=0` repeats forever.
    `labels` writes one line above each frame (e.g. its training step); `hold_last_ms` shows
    the last frame longer, so the end result can be looked at before the loop restarts.
    Note: GIF writers merge identical consecutive frames, adding their durations.
    """
    frames = list(frames)
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    texts = list(labels) if labels is not None else [None] * len(frames)
    if bounce and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
        texts = texts + texts[-2:0:-1]
    size = max(frames[0].shape[-2:])
    scale = auto_scale(int(size)) if scale is None else scale
    pil_frames = []
    for frame in frames:
        frame = to_display_images(frame)
        if scale > 1:
            frame = frame.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
        pil_frames.append(to_pil(frame))
    if labels is not None:
        pil_frames = [
            _with_label(image, text) for image, text in zip(pil_frames, texts, strict=True)
        ]
    durations: int | list[int] = duration_ms
    if hold_last_ms is not None and len(pil_frames) > 1:
        durations = [duration_ms] * (len(pil_frames) - 1) + [hold_last_ms]
    path = Path(path)
    with atomic_path(path) as tmp:
        pil_frames[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=pil_frames[1:],
            duration=durations,
            loop=loop,
            disposal=1,
        )
    _maybe_caption(path, caption)
    return path


# ---- matplotlib ------------------------------------------------------------------------------
@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """genlearn's readable defaults, applied only inside the block (no global rcParams change)."""
    with rc_context(STYLE):
        yield


def save_figure(
    fig: Figure,
    path: str | os.PathLike[str],
    caption: str | None = None,
    dpi: int = DPI,
    tight: bool = True,
) -> Path:
    """Save a matplotlib figure as PNG atomically (tight bounding box, white background)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(
            tmp, format="png", dpi=dpi, bbox_inches="tight" if tight else None, pad_inches=0.12
        )
    _maybe_caption(path, caption)
    return path


def save_side_by_side(
    images: Sequence[torch.Tensor],
    titles: Sequence[str],
    path: str | os.PathLike[str],
    height_inches: float = 3.2,
) -> Path:
    """Images ([1, 3, H, W] or [3, H, W] in [0, 1], any sizes) in one row, each under its
    title, at their own aspect ratios: e.g. content | style | result."""
    if len(images) != len(titles):
        raise ValueError(f"{len(titles)} titles for {len(images)} images")
    arrays = [to_uint8_hwc(image[0] if image.ndim == 4 else image) for image in images]
    widths = [a.shape[1] / a.shape[0] for a in arrays]
    with figure_style():
        width_inches = height_inches * sum(widths) + 0.3 * len(arrays)
        fig = Figure(figsize=(width_inches, height_inches + 0.4), dpi=DPI)
        axes = fig.subplots(1, len(arrays), gridspec_kw={"width_ratios": widths}, squeeze=False)
        for ax, array, title in zip(axes[0], arrays, titles, strict=True):
            ax.imshow(array)
            ax.set_title(title)
            ax.axis("off")
        return save_figure(fig, path)


def save_labelled_grid(
    images: torch.Tensor,
    path: str | os.PathLike[str],
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    padding: int = 2,
    scale: int | None = None,
    caption: str | None = None,
    col_label_every: int = 1,
    row_label_every: int = 1,
    note: str | None = None,
) -> Path:
    """Save images [R, K, C, H, W] as an R x K grid with row/column labels and a title.

    The grid is drawn at one image pixel per screen pixel (no resampling), with the text
    placed around it, so tiles stay crisp and labels readable at any tile size.
    `col_label_every`/`row_label_every` thin the labels of dense grids; `note` is a line of
    small grey text under the grid.
    """
    images = to_display_images(images)
    rows, cols = images.shape[:2]
    _, h, w = images.shape[2:]
    scale = auto_scale(max(h, w)) if scale is None else scale
    grid = make_grid(images.flatten(0, 1), nrow=cols, padding=padding, scale=scale)
    array = to_uint8_hwc(grid)
    step_y, step_x = h * scale + padding, w * scale + padding
    centres_x = [padding + j * step_x + (w * scale) / 2 - 0.5 for j in range(cols)]
    centres_y = [padding + i * step_y + (h * scale) / 2 - 0.5 for i in range(rows)]
    with figure_style():
        fig = Figure(figsize=(array.shape[1] / DPI, array.shape[0] / DPI), dpi=DPI)
        ax = fig.add_axes((0, 0, 1, 1))
        cmap = "gray" if array.shape[2] == 1 else None
        ax.imshow(
            array[:, :, 0] if cmap else array,
            cmap=cmap,
            vmin=0,
            vmax=255,
            interpolation="nearest",
            aspect="equal",
        )
        _label_axis(ax.set_xticks, ax.set_xticklabels, centres_x, col_labels, col_label_every)
        _label_axis(ax.set_yticks, ax.set_yticklabels, centres_y, row_labels, row_label_every)
        ax.xaxis.tick_top()
        ax.xaxis.set_label_position("top")
        ax.tick_params(length=0, pad=3)
        for spine in ax.spines.values():
            spine.set_visible(False)
        if xlabel:
            ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title, pad=8 + (18 if col_labels else 0) + (18 if xlabel else 0))
        if note:
            ax.text(
                0.5,
                -8 / array.shape[0],
                note,
                transform=ax.transAxes,
                ha="center",
                va="top",
                fontsize=10,
                color="0.35",
            )
        return save_figure(fig, path, caption)


def _label_axis(
    set_ticks, set_labels, centres: list[float], labels: Sequence[str] | None, every: int
) -> None:
    if not labels:
        set_ticks([])
        return
    keep = [i for i in range(len(centres)) if i % every == 0 or i == len(centres) - 1]
    set_ticks([centres[i] for i in keep])
    set_labels([str(labels[i]) for i in keep])


# ---- loss curves -----------------------------------------------------------------------------
def smooth(values: Sequence[float], window: int | None = None) -> np.ndarray:
    """Centred moving average: a trend that does not lag behind the data (an EMA would).

    The default window follows the number of points (about 1/40 of them), so 20 logged
    steps are left alone and 5,000 noisy ones become a readable line; the window shrinks
    near the ends instead of padding.
    """
    x = np.asarray(values, dtype=np.float64)
    window = max(1, len(x) // 40) if window is None else max(1, window)
    half = window // 2
    if half == 0 or len(x) < 3:
        return x
    cumsum = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(len(x))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(x))
    return (cumsum[hi] - cumsum[lo]) / (hi - lo)


def _series(
    rows: list[dict], split: str, key: str, by_step: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of `key` for rows of `split`; x is the epoch when logged (unless `by_step`),
    else the step."""
    use_epoch = not by_step and all(
        "epoch" in r for r in rows if r.get("split") == split and key in r
    )
    xs, ys = [], []
    for r in rows:
        value = r.get(key)
        if (
            r.get("split") != split
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            continue
        xs.append(r["epoch"] if use_epoch else r.get("step", len(xs)))
        ys.append(float(value))
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def plot_loss_curves(
    metrics_jsonl_path: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    caption: str | None = None,
    units: str | None = None,
    keys: Sequence[str] = ("loss", "recon", "kl"),
    by_step: bool = False,
) -> Path:
    """Plot train (raw, faint; smoothed, bold) and held-out (test or validation) curves of
    each logged key against the epoch, or the step when `by_step` (runs counted in steps).

    One panel per key that has data ("recon"/"kl" are skipped when they are all zero, as
    for a plain autoencoder). The y range ignores the first few percent of training, whose
    huge initial losses would otherwise flatten everything that matters.
    """
    rows = read_jsonl(metrics_jsonl_path)
    panels = [k for k in keys if _has_signal(rows, k, required=(k == keys[0]))]
    panels = [k for i, k in enumerate(panels) if i == 0 or not _same_as(rows, k, panels[0])]
    if not panels:
        panels = [keys[0]]
    use_epoch = not by_step and any("epoch" in r for r in rows)
    columns = min(3, len(panels))  # GANs log many curves: wrap them onto rows of three
    grid_rows = math.ceil(len(panels) / columns)
    with figure_style():
        fig = Figure(figsize=(4.6 * columns + 0.4, 3.8 * grid_rows), dpi=DPI)
        axes = fig.subplots(grid_rows, columns, squeeze=False).flatten()
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        axes = axes[: len(panels)]
        for i, (ax, key) in enumerate(zip(axes, panels, strict=True)):
            _plot_panel(ax, rows, key, units, legend=(i == 0), by_step=by_step)
            ax.set_xlabel("epoch" if use_epoch else "step")
        if not rows:
            axes[0].text(
                0.5,
                0.5,
                "no metrics logged yet",
                ha="center",
                va="center",
                transform=axes[0].transAxes,
                color="0.4",
            )
        fig.tight_layout()
        return save_figure(fig, out_png, caption)


_PANEL_TITLES = {
    "loss": "Loss",
    "recon": "Reconstruction term",
    "kl": "KL term",
    "loss_d": "Discriminator (critic) loss",
    "loss_g": "Generator loss",
    "d_real": "D(x) on real images",
    "d_fake": "D(G(z)) on generated images",
    "wasserstein": "Wasserstein estimate E[D(x)] - E[D(G(z))]",
    "gp": "Gradient penalty",
    "grad_norm_d": "Gradient norm of D",
    "grad_norm_g": "Gradient norm of G",
}


def _has_signal(rows: list[dict], key: str, required: bool) -> bool:
    values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    return bool(values) and (required or any(v != 0 for v in values))


def _same_as(rows: list[dict], key: str, other: str) -> bool:
    """True when `key` repeats `other` on every row (an AE's "recon" is its whole loss)."""
    pairs = [(r.get(key), r.get(other)) for r in rows if key in r]
    return bool(pairs) and all(a == b for a, b in pairs)


def _plot_panel(
    ax, rows: list[dict], key: str, units: str | None, legend: bool, by_step: bool = False
) -> None:
    x_tr, y_tr = _series(rows, "train", key, by_step)
    held_out = "validation" if any(r.get("split") == "validation" for r in rows) else "test"
    x_te, y_te = _series(rows, held_out, key, by_step)
    visible = []
    if len(y_tr):
        trend = smooth(y_tr)
        ax.plot(x_tr, y_tr, color="#1f77b4", alpha=0.22, lw=0.8)
        ax.plot(x_tr, trend, color="#1f77b4", lw=2.0, label="train (smoothed)")
        visible.append(trend[len(trend) // 20 :])
    if len(y_te):
        ax.plot(x_te, y_te, color="#d62728", lw=1.8, marker="o", ms=4, label=held_out)
        visible.append(y_te)
    if visible:
        _robust_ylim(ax, np.concatenate(visible), y_tr)
        if legend:
            ax.legend(framealpha=0.9, edgecolor="none", loc="best")
    ax.set_title(_PANEL_TITLES.get(key, key.replace("_", " ").capitalize()))
    ax.set_ylabel(units or key)
    ax.grid(True, alpha=0.3)


def _robust_ylim(ax, visible: np.ndarray, raw: np.ndarray) -> None:
    """Fit the y range to what matters: the smoothed trend after warm-up and the test curve."""
    lo, hi = float(np.min(visible)), float(np.max(visible))
    if len(raw):
        tail = raw[len(raw) // 20 :]
        lo = min(lo, float(np.percentile(tail, 1)))
    span = hi - lo if hi > lo else max(abs(hi), 1.0) * 0.1
    ax.set_ylim(lo - 0.08 * span, hi + 0.08 * span)
