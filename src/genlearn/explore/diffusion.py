"""Figures of a diffusion model: what its samples look like, and how the noise becomes them.

- `trajectory`: a few samples at evenly spaced steps of the reverse process (x_t from pure
  noise down to x_0), as a strip and a GIF; with `estimates`, the network's guess of x_0 at
  each step too, which shows that the coarse layout is decided early and the detail late.
- `sampler_comparison`: the same x_T through DDIM with 5 to 50 steps (deterministic, so each
  row differs only in the step count) and through DDIM with eta = 1.
- `prompt_grid`: a text model's samples, one row per prompt, prompts written beside them.
- `diffusion_figures`: what every run gets when training ends.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from genlearn.explore.generator import latent_walk, sample_grid
from genlearn.report.figures import (
    figure_style,
    make_grid,
    save_figure,
    save_gif,
    save_image_grid,
    to_uint8_hwc,
)

TRAJECTORY_COLUMNS = 10
GIF_FRAMES = 100  # at most this many steps in a trajectory GIF


@torch.no_grad()
def trajectory(
    model,
    path: Path,
    *,
    n: int = 8,
    seed: int = 0,
    sampler: str | None = None,
    steps: int | None = None,
    labels: Tensor | None = None,
    prompts: list[str] | None = None,
    guidance: float | None = None,
    on_step: Callable[[], None] | None = None,
) -> list[Path]:
    """x_t along the reverse process for n samples: a PNG (rows: samples; columns: steps,
    then the x_0 estimates at the same steps) and a GIF of at most `GIF_FRAMES` steps.
    `path` names both files (its .png/.gif suffix, if any, is replaced)."""
    times = model.make_sampler(sampler, steps).timesteps()
    columns_at = {times[i] for i in _evenly(len(times), TRAJECTORY_COLUMNS - 1)}
    frames_at = {times[i] for i in _evenly(len(times), GIF_FRAMES)}  # DDPM has 1000 steps
    columns: list[tuple[int, Tensor, Tensor]] = []
    frames: list[tuple[int, Tensor]] = []

    def record(t: int, xt: Tensor, x0_estimate: Tensor) -> None:
        if on_step is not None:  # e.g. a progress bar
            on_step()
        if t in columns_at or t in frames_at:
            noisy = model.to_images(xt).cpu()
            if t in columns_at:
                columns.append((t, noisy, model.to_images(x0_estimate).cpu()))
            if t in frames_at:
                frames.append((t, noisy))

    generator = torch.Generator().manual_seed(seed)
    final = model.sample(
        n, generator, labels, prompts, sampler=sampler, steps=steps, guidance=guidance,
        on_step=record,
    ).cpu()  # fmt: skip
    strip = torch.stack([x for _, x, _ in columns] + [final], 1).flatten(0, 1)
    guesses = torch.stack([g for _, _, g in columns] + [final], 1).flatten(0, 1)
    width = len(columns) + 1
    shown = ", ".join(str(t) for t, _, _ in columns)
    how = _sampler_words(model, sampler, steps)
    caption = (
        f"The reverse process ({how}): each row is one sample, from noise x_T (left) to the "
        f"image (right), at timesteps {shown}, then the result. Below, at the same steps, the "
        "network's estimate of the final image: the layout is settled early, details late."
    )
    both = torch.cat([strip, torch.ones_like(strip[:width]), guesses])
    png = save_image_grid(both, _named(path, ".png"), nrow=width, caption=caption)
    gif_frames = [make_grid(x, nrow=n) for _, x in frames] + [make_grid(final, nrow=n)]
    gif = save_gif(
        gif_frames,
        _named(path, ".gif"),
        duration_ms=max(20, 3000 // len(gif_frames)),
        bounce=False,
        caption=f"Denoising, step by step ({how}).",
        labels=[f"t = {t}" for t, _ in frames] + ["x_0"],
        hold_last_ms=1500,
    )
    return [png, gif]


def _named(path: Path, suffix: str) -> Path:
    """path with `suffix`: a .png/.gif suffix is replaced, anything else (a dot in a stem
    such as "w2.5") kept."""
    if path.suffix.lower() in (".png", ".gif"):
        return path.with_suffix(suffix)
    return path.parent / (path.name + suffix)


@torch.no_grad()
def sampler_comparison(model, path: Path, *, n: int = 8, seed: int = 0) -> Path:
    """The same x_T through DDIM at 5, 10, 20, 50 steps (one row each) and DDIM eta = 1."""
    noise = torch.randn((n, *model.sample_shape), generator=torch.Generator().manual_seed(seed))
    most = model.schedule.steps  # a model with fewer than 50 timesteps has fewer to visit
    counts = list(dict.fromkeys(min(s, most) for s in (5, 10, 20, 50)))
    settings = [(s, 0.0) for s in counts] + [(counts[-1], 1.0)]
    rows = [
        model.sample(
            n,
            torch.Generator().manual_seed(seed),
            sampler="ddim",
            steps=steps,
            eta=eta,
            noise=noise,
        ).cpu()
        for steps, eta in settings
    ]
    caption = (
        f"The same starting noise through DDIM with {', '.join(map(str, counts))} steps (one "
        "row each; eta = 0: deterministic, so the rows converge to one image per column), "
        f"and {counts[-1]} steps with eta = 1 (last row: fresh noise each step, as DDPM)."
    )
    return save_image_grid(torch.cat(rows), path, nrow=n, caption=caption)


@torch.no_grad()
def prompt_grid(
    model,
    prompts: list[str],
    path: Path,
    *,
    per_prompt: int = 8,
    seed: int = 0,
    guidance: float | None = None,
    marks: list[str] | None = None,
    steps: int | None = None,
) -> Path:
    """per_prompt samples of each prompt in a row, the prompt written on the left."""
    rows = []
    for i, prompt in enumerate(prompts):
        generator = torch.Generator().manual_seed(seed + i)
        rows.append(
            model.sample(
                per_prompt, generator, prompts=[prompt], guidance=guidance, steps=steps
            ).cpu()
        )
    scale = model.config.guidance if guidance is None else guidance
    with figure_style():
        fig = Figure(figsize=(1.1 * per_prompt + 3.6, 1.15 * len(prompts)))
        axes = fig.subplots(len(prompts), 1, squeeze=False)[:, 0]
        for ax, prompt, row, mark in zip(
            axes, prompts, rows, marks or [""] * len(prompts), strict=True
        ):
            ax.imshow(
                to_uint8_hwc(make_grid(row, nrow=per_prompt, scale=1)), interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel(f"{prompt}{mark}", rotation=0, ha="right", va="center", fontsize=8)
        fig.subplots_adjust(hspace=0.08)
    held = (
        " Prompts marked * combine a colour and a shape never seen together in training."
        if marks and any(marks)
        else ""
    )
    caption = f"{per_prompt} samples per prompt, classifier-free guidance {scale:g}.{held}"
    return save_figure(fig, path, caption=caption)


def diffusion_figures(
    model, figures_dir: Path, seed: int = 0, prompts: list[tuple[str, bool]] | None = None
) -> list[Path]:
    """Every diffusion run's figures: samples (per class, or per prompt), the trajectory,
    the samplers side by side, walks between x_T's through deterministic DDIM."""
    model.eval()
    paths = []
    if model.text_conditional and prompts:
        texts = [p for p, _ in prompts]
        marks = [" *" if held else "" for _, held in prompts]
        paths.append(
            prompt_grid(model, texts, figures_dir / "samples_prompts.png", seed=seed, marks=marks)
        )
        paths += trajectory(model, figures_dir / "trajectory", seed=seed, prompts=[texts[0]])
    else:
        paths.append(sample_grid(model, figures_dir / "samples.png", seed=seed))
        paths += trajectory(model, figures_dir / "trajectory", seed=seed)
    paths.append(sampler_comparison(model, figures_dir / "sampler_comparison.png", seed=seed))
    paths += latent_walk(model, figures_dir / "interpolation_noise", seed=seed)
    return paths


def _evenly(count: int, k: int) -> list[int]:
    """k indices spread evenly over 0..count-1, first and last included."""
    if count <= k:
        return list(range(count))
    return [round(i * (count - 1) / (k - 1)) for i in range(k)]


def _sampler_words(model, sampler: str | None, steps: int | None) -> str:
    name = sampler or model.config.sampler
    if name == "ddpm":
        return f"DDPM, {model.schedule.steps} steps"
    return f"DDIM, {steps or model.default_steps} steps"
