"""`genlearn fid A B`: FID (and KID) between any two image sets, like the well-known FID tools."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genlearn.errors import ConfigError
from genlearn.metrics.features import (
    FeatureExtractor,
    default_spaces,
    get_extractor,
    imagenet_space,
    parse_spaces,
)
from genlearn.metrics.frechet import GaussianStats, fid_from_features, frechet_distance
from genlearn.metrics.image_sets import ImageSet
from genlearn.metrics.kid import kernel_inception_distance
from genlearn.metrics.reference import reference_features


def compare_image_sets(
    first: ImageSet,
    second: ImageSet,
    space: str,
    *,
    device: str = "cpu",
    bootstrap: int = 10,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, float]:
    """FID (and KID when both sides are images) between two sets, in one feature space."""
    extractor = get_extractor(space, device)
    if extractor.name == "pixels":
        raise ConfigError("FID needs a network's features: pick a space other than pixels")
    sides = [_side(s, extractor, show_progress) for s in (first, second)]
    for side, image_set in zip(sides, (first, second), strict=True):
        if side.stats is not None and side.stats.mean.shape[0] != sides[0].stats.mean.shape[0]:
            raise ConfigError(
                f"{image_set.name} holds {side.stats.mean.shape[0]}-d statistics, which do not "
                f"match the other side: compute both in the same feature space"
            )
    (a, b) = sides
    if a.features is None and b.features is None:
        return {"fid": frechet_distance(a.stats, b.stats), "fid_stderr": float("nan")}
    if b.features is None:  # bootstrap over the side that has features
        a, b = b, a
    fid, fid_stderr = fid_from_features(
        a.features, b.features, bootstrap=bootstrap, seed=seed, real_stats=a.stats
    )
    figures = {"fid": fid, "fid_stderr": fid_stderr}
    if a.features is not None:
        kid, kid_stderr = kernel_inception_distance(a.features, b.features)
        figures.update({"kid": kid, "kid_stderr": kid_stderr})
    return figures


@dataclass
class _Side:
    features: torch.Tensor | None
    stats: GaussianStats


def _side(image_set: ImageSet, extractor: FeatureExtractor, show_progress: bool) -> _Side:
    if image_set.images is None:
        assert image_set.stats is not None
        return _Side(None, image_set.stats)
    embedded = reference_features(
        image_set.images, extractor, show_progress=show_progress, label=image_set.name
    )
    assert embedded.stats is not None
    return _Side(embedded.features, embedded.stats)


def fid_space(features: str, sets: list[ImageSet]) -> str:
    """The feature space for `genlearn fid`: the user's, or chosen from the sets.

    With "auto", statistics files decide by their dimension; small grey images use the MNIST
    network; anything else the standard Inception (else the offline EfficientNet-Lite0).
    """
    if features != "auto":
        return parse_spaces(features, "", 3)[0]
    for image_set in sets:
        if image_set.stats is not None:
            by_dim = {2048: "inception", 1280: "efficientnet-lite0"}
            return by_dim.get(image_set.stats.mean.shape[0], "mnist-cnn")
    images = [s.images for s in sets if s.images is not None]
    if all(x.shape[1] == 1 and x.shape[-1] <= 32 for x in images):
        return default_spaces("mnist", 1)[0]
    return imagenet_space()
