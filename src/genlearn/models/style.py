"""Neural style transfer (Gatys, Ecker & Bethge 2016, "Image Style Transfer Using CNNs").

An image x is optimised so that its deep features match a content image's (content loss,
Eq. 1) and the correlations between its feature channels, the Gram matrices, match a style
image's at several layers (style loss, Eqs. 3-5); a total-variation term (Mahendran &
Vedaldi 2015) keeps the result smooth. This file holds the losses; the optimisation loop
and the choice of backbone live in the dream/style pipelines.
"""

from __future__ import annotations

from torch import Tensor


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
