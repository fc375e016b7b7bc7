"""Neural style transfer (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using CNNs").

An image x is optimised, not a network: its deep features should match a content image's
(the content loss, Eq. 1) while the correlations between its feature channels, the Gram
matrices, match a style image's at several layers (the style loss, Eqs. 3-5). A total
variation term (Mahendran & Vedaldi 2015) can smooth the result.

What makes it fast here, beside the paper's method:
- coarse to fine: the image is first optimised at half (or quarter) size, where an
  evaluation costs 4x (16x) less, then enlarged and refined; L-BFGS then starts close to
  the answer at full size;
- the targets (content features, style Grams) are computed once per scale, without gradient;
- the network runs only up to the deepest layer used, channels-last on CPU.

Colour preservation (Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style
Transfer", section 5.1, luminance-only transfer): the transfer runs on luminance alone,
the style's luminance matched to the content's mean and spread, and the content's colour
(the YIQ chrominance) is put back at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from genlearn.art.images import resize
from genlearn.backbones.layers import NamedLayers
from genlearn.errors import ConfigError

Preprocess = Callable[[Tensor], Tensor]
OnEvaluation = Callable[[int, dict[str, float]], None]
DEFAULT_STYLE_WEIGHT = 1e6  # the PyTorch tutorial's, for ImageNet-normalised VGG inputs
MIN_SCALE_SIDE = 128  # coarse-to-fine stops halving the longer side below this
MIN_SHORT_SIDE = 32  # nor may the shorter side fall below this


# ---- the losses (Gatys et al., section 2) --------------------------------------------------
def gram_matrix(features: Tensor) -> Tensor:
    """G[c, d] = sum over positions of F[c, p] F[d, p] / (C H W), for [N, C, H, W] features.

    Gatys et al. Eq. 3 sums over positions; dividing by the number of entries makes the
    style weight independent of the layer's size and of the image's (as the PyTorch
    tutorial does), so one weight serves every layer and the coarse-to-fine scales."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Mean squared difference of the features (Eq. 1, up to its constant factor)."""
    return (features - target).pow(2).mean()


def style_loss(features: dict[str, Tensor], target_grams: dict[str, Tensor]) -> Tensor:
    """Sum over the style layers of the mean squared Gram difference (Eqs. 4-5, equal w_l)."""
    return sum(
        (gram_matrix(features[name]) - gram).pow(2).mean() for name, gram in target_grams.items()
    )


def total_variation(image: Tensor) -> Tensor:
    """Mean absolute difference between neighbouring pixels, across and down."""
    across = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    down = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    return across + down


# ---- the recipe ----------------------------------------------------------------------------
@dataclass(frozen=True)
class StyleConfig:
    content_layers: tuple[str, ...] = ("conv4_2",)
    style_layers: tuple[str, ...] = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    content_weight: float = 1.0
    style_weight: float | None = None  # None: the backbone's default (1e6 for ImageNet VGGs)
    tv_weight: float = 0.0
    optimizer: str = "lbfgs"  # or "adam"
    evaluations: int = 300  # objective evaluations in all, across the scales
    scales: int | None = None  # coarse-to-fine scales; None picks by size (see `scale_sizes`)
    adam_lr: float = 0.02
    init: str = "content"  # or "noise"
    preserve_colors: bool = False
    style_blend: tuple[float, ...] = ()  # one weight per style image; empty = equal
    seed: int = 0

    def validate(self) -> StyleConfig:
        checks = [
            (
                self.optimizer in ("lbfgs", "adam"),
                f"--optimizer must be lbfgs or adam, got {self.optimizer!r}",
            ),
            (
                self.init in ("content", "noise"),
                f"--init must be content or noise, got {self.init!r}",
            ),
            (self.evaluations >= 1, f"--steps must be at least 1, got {self.evaluations}"),
            (
                self.scales is None or self.scales >= 1,
                f"--scales must be at least 1, got {self.scales}",
            ),
            (
                all(
                    math.isfinite(w) and w >= 0
                    for w in (self.content_weight, self.style_weight or 0.0, self.tv_weight)
                ),
                "--content-weight, --style-weight and --tv-weight must be numbers, 0 or more",
            ),
            (self.adam_lr > 0, f"--lr must be positive, got {self.adam_lr}"),
            (bool(self.style_layers), "--style-layers needs at least one layer"),
            (bool(self.content_layers), "--content-layers needs at least one layer"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self


@dataclass
class StyleTargets:
    """What the image must match at one scale: content features and blended style Grams."""

    content: dict[str, Tensor]
    grams: dict[str, Tensor]
    layers: list[str] = field(default_factory=list)


def compute_targets(
    network: NamedLayers,
    preprocess: Preprocess,
    content: Tensor,
    styles: Sequence[Tensor],
    config: StyleConfig,
) -> StyleTargets:
    """Content features and the style Grams (blended over several styles), without gradient."""
    weights = blend_weights(config.style_blend, len(styles))
    layers = list(dict.fromkeys([*config.content_layers, *config.style_layers]))
    with torch.no_grad():
        content_features = network.features_at(preprocess(content), config.content_layers)
        grams = {layer: 0.0 for layer in config.style_layers}
        for weight, style in zip(weights, styles, strict=True):
            features = network.features_at(preprocess(style), config.style_layers)
            for layer in config.style_layers:
                grams[layer] = grams[layer] + weight * gram_matrix(features[layer])
    return StyleTargets(content_features, grams, layers)


def blend_weights(weights: Sequence[float], count: int) -> list[float]:
    """Style weights normalised to sum to 1; equal when none are given."""
    if not weights:
        return [1.0 / count] * count
    if len(weights) != count:
        raise ConfigError(
            f"--style-weights has {len(weights)} numbers for {count} style images: give one each"
        )
    if min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError("--style-weights must be 0 or more, and not all 0")
    total = sum(weights)
    return [w / total for w in weights]


def loss_terms(
    network: NamedLayers,
    preprocess: Preprocess,
    image: Tensor,
    targets: StyleTargets,
    config: StyleConfig,
) -> dict[str, Tensor]:
    """The weighted content, style and TV terms of `image` and their total."""
    features = network.features_at(preprocess(image), targets.layers)
    content = sum(content_loss(features[k], v) for k, v in targets.content.items())
    style = style_loss(features, targets.grams)
    terms = {
        "content": config.content_weight * content,
        "style": config.style_weight * style,
    }
    if config.tv_weight > 0:
        terms["tv"] = config.tv_weight * total_variation(image)
    terms["total"] = sum(terms.values())
    return terms


def scale_sizes(size: tuple[int, int], scales: int | None) -> list[tuple[int, int]]:
    """Image sizes from coarse to fine, halving each time; by default as many halvings as keep
    the longer side at least MIN_SCALE_SIDE, at most three scales. No scale's shorter side
    may fall below MIN_SHORT_SIDE (VGG's five poolings need it)."""
    height, width = size
    most = 1
    while min(height, width) / 2**most >= MIN_SHORT_SIDE:
        most += 1
    if scales is None:
        scales = 1
        while scales < min(3, most) and max(height, width) / 2**scales >= MIN_SCALE_SIDE:
            scales += 1
    elif scales > most:
        raise ConfigError(
            f"--scales {scales} would shrink the {height}x{width} image below "
            f"{MIN_SHORT_SIDE} px: use at most {most}"
        )
    return [
        (max(1, round(height / 2**k)), max(1, round(width / 2**k))) for k in reversed(range(scales))
    ]


def evaluation_budget(total: int, scales: int) -> list[int]:
    """Evaluations per scale, coarse to fine: the finest gets a third, the coarser ones share
    the rest equally (an evaluation at half size costs a quarter)."""
    if scales == 1:
        return [total]
    finest = max(1, total // 3)
    coarse = total - finest
    shares = [coarse // (scales - 1)] * (scales - 1)
    shares[-1] += coarse - sum(shares)
    return [*shares, finest]


def stylise(
    network: NamedLayers,
    preprocess: Preprocess,
    content: Tensor,
    styles: Sequence[Tensor],
    config: StyleConfig = StyleConfig(),
    on_evaluation: OnEvaluation | None = None,
) -> Tensor:
    """The stylised [1, 3, H, W] image in [0, 1], at the content image's size.

    `styles` are [1, 3, h, w] images in [0, 1], each rescaled so that its longer side matches
    the output's at every scale. `on_evaluation(count, terms)` reports progress.
    """
    config.validate()
    if config.style_weight is None:
        config = replace(config, style_weight=DEFAULT_STYLE_WEIGHT)
    if not styles:
        raise ConfigError("style transfer needs at least one style image")
    original = content
    if config.preserve_colors:
        content, styles = luminance_only(content, styles)
    sizes = scale_sizes(tuple(content.shape[-2:]), config.scales)
    budget = evaluation_budget(config.evaluations, len(sizes))
    image = initial_image(resize(content, sizes[0]), config.init, config.seed)
    done = 0
    for size, evaluations in zip(sizes, budget, strict=True):
        scaled_content = resize(content, size)
        scaled_styles = [_resize_long_side(style, max(size)) for style in styles]
        targets = compute_targets(network, preprocess, scaled_content, scaled_styles, config)
        image = resize(image, size).clamp(0, 1)
        image = optimise(
            network, preprocess, image, targets, config, evaluations, done, on_evaluation
        )
        done += evaluations
    if config.preserve_colors:
        image = with_colours_of(image, original)
    return image.clamp(0, 1)


class _BudgetSpent(Exception):
    """Raised inside the closure when the evaluations are used up, mid line search or not."""


def optimise(
    network: NamedLayers,
    preprocess: Preprocess,
    image: Tensor,
    targets: StyleTargets,
    config: StyleConfig,
    evaluations: int,
    done: int = 0,
    on_evaluation: OnEvaluation | None = None,
) -> Tensor:
    """Run exactly `evaluations` objective evaluations of L-BFGS or Adam on the pixels of
    `image`; returns the best image evaluated.

    The loss is computed on the image clamped to [0, 1] (out of place, so that L-BFGS's line
    search sees one consistent function); the best image is returned clamped too."""
    x = image.detach().clone().requires_grad_(True)
    count = 0
    best: tuple[float, Tensor] = (math.inf, image.detach().clamp(0, 1))

    def closure() -> Tensor:
        nonlocal count, best
        if count >= evaluations:
            raise _BudgetSpent
        optimizer.zero_grad(set_to_none=True)
        clamped = x.clamp(0, 1)
        terms = loss_terms(network, preprocess, clamped, targets, config)
        terms["total"].backward()
        x.grad = x.grad.contiguous()  # L-BFGS flattens with view(), whatever the layout
        count += 1
        values = {k: v.item() for k, v in terms.items()}
        if values["total"] < best[0]:
            best = (values["total"], clamped.detach().clone())
        if on_evaluation is not None:
            on_evaluation(done + count, values)
        return terms["total"]

    if config.optimizer == "lbfgs":
        # the strong-Wolfe line search costs a few evaluations but never takes the wild steps
        # plain L-BFGS (step length 1) takes on this objective: measured at 128 px, 200
        # evaluations, it halves the final loss of the PyTorch tutorial's settings
        optimizer = torch.optim.LBFGS(
            [x], lr=1.0, max_iter=evaluations, max_eval=evaluations, history_size=50,
            tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe",
        )  # fmt: skip
    else:
        optimizer = torch.optim.Adam([x], lr=config.adam_lr)
    try:
        while count < evaluations:
            before = count
            optimizer.step(closure)
            if count == before:  # L-BFGS found nothing left to do
                break
            if config.optimizer == "adam":
                with torch.no_grad():
                    x.clamp_(0, 1)  # projected gradient: keep the pixels where they count
    except _BudgetSpent:
        pass
    return best[1]


def initial_image(content: Tensor, init: str, seed: int) -> Tensor:
    """The starting point: the content image, or uniform noise."""
    if init == "content":
        return content.clone()
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(content.shape, generator=generator).to(content.device)


# ---- colour preservation (luminance-only transfer) -----------------------------------------
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def to_yiq(image: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", RGB_TO_YIQ.to(image), image)


def from_yiq(image: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(RGB_TO_YIQ).to(image), image)


def luminance_only(content: Tensor, styles: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Grey (luminance) versions of the images, each style's luminance shifted and scaled to
    the content's mean and standard deviation (Gatys et al. 2017, Eq. 8)."""
    content_y = to_yiq(content)[:, :1]
    mean, std = content_y.mean(), content_y.std()
    grey_styles = []
    for style in styles:
        style_y = to_yiq(style)[:, :1]
        matched = (style_y - style_y.mean()) / (style_y.std() + 1e-8) * std + mean
        grey_styles.append(matched.clamp(0, 1).expand(-1, 3, -1, -1))
    return content_y.expand(-1, 3, -1, -1), grey_styles


def with_colours_of(result: Tensor, content: Tensor) -> Tensor:
    """The result's luminance with the content's chrominance."""
    luminance = to_yiq(result)[:, :1]
    chrominance = to_yiq(resize(content, tuple(result.shape[-2:])))[:, 1:]
    return from_yiq(torch.cat([luminance, chrominance], 1)).clamp(0, 1)


def _resize_long_side(image: Tensor, long_side: int) -> Tensor:
    """Scale so the longer side is `long_side`, the shorter side kept at MIN_SHORT_SIDE or
    more (a very wide painting is then a little larger than asked, not too small for VGG)."""
    height, width = image.shape[-2:]
    scale = max(long_side / max(height, width), MIN_SHORT_SIDE / min(height, width))
    return resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))
