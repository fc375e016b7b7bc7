"""`genlearn fid A B`: FID (and KID) between any two image sets, like the well-known FID tools.

Two statistics files are compared directly, with no network at all. Otherwise each side of
images is embedded by `features_of`: folders chunk by chunk (bounded memory), arrays in one
go, and `dataset:` sets through the feature cache (the only sets worth caching: user folders
and .npz files change from call to call and would fill the cache with hundreds of MB each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from genlearn.data.progress import progress_bar
from genlearn.errors import ConfigError, DataError
from genlearn.metrics.features import (
    FeatureExtractor,
    default_spaces,
    get_extractor,
    imagenet_space,
    parse_spaces,
    space_label,
)
from genlearn.metrics.frechet import GaussianStats, fid_from_features, frechet_distance
from genlearn.metrics.image_sets import ImageSet
from genlearn.metrics.kid import kernel_inception_distance
from genlearn.metrics.reference import reference_features

# The feature spaces statistics files can come from, by their dimension.
SPACE_BY_DIM = {2048: "inception", 1280: "efficientnet-lite0", 128: "mnist-cnn"}
DIM_BY_SPACE = {space: dim for dim, space in SPACE_BY_DIM.items()}
MIN_IMAGES = 2  # FID's covariance (and KID's U-statistic) need two images per side
DIGIT_SIZE = 32  # grey images at most this big are digit-like: the MNIST network sees them


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
    """FID (and KID when both sides are images) between two sets, in one feature space.

    Standard errors are NaN where unknown (both sides statistics, or bootstrap < 2).
    """
    if space == "pixels":
        raise ConfigError("FID needs a network's features: pick a space other than pixels")
    for image_set in (first, second):
        _check_size(image_set)
        if image_set.stats is not None:
            _check_dim(image_set, space, DIM_BY_SPACE.get(space))
    if first.stats is not None and second.stats is not None:
        if first.stats.mean.shape != second.stats.mean.shape:
            raise DataError(
                f"{first.name} holds {first.stats.mean.shape[0]}-d statistics and "
                f"{second.name} {second.stats.mean.shape[0]}-d ones: compute both in the same "
                "feature space"
            )
        return {"fid": frechet_distance(first.stats, second.stats), "fid_stderr": math.nan}
    extractor = get_extractor(space, device)
    sides = [_side(s, extractor, show_progress) for s in (first, second)]
    dim = next(side.features.shape[1] for side in sides if side.features is not None)
    for side, image_set in zip(sides, (first, second), strict=True):
        if side.features is None:
            _check_dim(image_set, space, dim)
        elif len(side.features) < MIN_IMAGES:  # a folder whose files were mostly unreadable
            raise DataError(
                f"only {len(side.features)} image of {image_set.name} could be read: FID needs "
                f"at least {MIN_IMAGES} images per side"
            )
    (a, b) = sides
    if b.features is None:  # bootstrap over the side that has features
        a, b = b, a
    assert b.features is not None
    fid, fid_stderr = fid_from_features(
        a.features, b.features, bootstrap=bootstrap, seed=seed, real_stats=a.stats
    )
    figures = {"fid": fid, "fid_stderr": fid_stderr}
    if a.features is not None:
        kid, kid_stderr = kernel_inception_distance(a.features, b.features)
        figures.update({"kid": kid, "kid_stderr": kid_stderr})
    return figures


def features_of(
    image_set: ImageSet, extractor: FeatureExtractor, *, show_progress: bool = True
) -> torch.Tensor:
    """Features [N, D] of a set of images: a folder streamed chunk by chunk, an array embedded
    directly, a `dataset:` set from (or into) the feature cache."""
    features, _ = _embed(image_set, extractor, show_progress)
    return features


@dataclass
class _Side:
    features: torch.Tensor | None
    stats: GaussianStats | None  # given (statistics file) or cached (dataset); else fitted


def _side(image_set: ImageSet, extractor: FeatureExtractor, show_progress: bool) -> _Side:
    if image_set.stats is not None:
        return _Side(None, image_set.stats)
    return _Side(*_embed(image_set, extractor, show_progress))


def _embed(
    image_set: ImageSet, extractor: FeatureExtractor, show_progress: bool
) -> tuple[torch.Tensor, GaussianStats | None]:
    if image_set.stats is not None:
        raise ValueError(f"{image_set.name} holds statistics, not images")
    description = f"{extractor.label} features of {image_set.name}"
    if image_set.dataset:
        assert image_set.array is not None
        cached = reference_features(
            image_set.array, extractor, show_progress=show_progress, label=image_set.name
        )
        return cached.features, cached.stats
    if image_set.files is None:
        assert image_set.array is not None
        embedded = extractor(image_set.array, show_progress=show_progress, description=description)
        return embedded.features, None
    parts = []
    total = len(image_set.files)
    skipped = len(image_set.unreadable)
    with progress_bar(description, total, show=show_progress, unit="images") as advance:
        for chunk in image_set.chunks():
            if len(chunk):
                parts.append(extractor(chunk, show_progress=False).features)
            advance(len(chunk) + len(image_set.unreadable) - skipped)  # files done
            skipped = len(image_set.unreadable)
    if not parts:
        raise DataError(f"no image in {image_set.name} could be read")
    return torch.cat(parts), None


def _check_size(image_set: ImageSet) -> None:
    """Each side needs two images; statistics without a `count` are taken on trust."""
    if image_set.stats is not None:
        return
    if image_set.count < MIN_IMAGES:
        raise DataError(
            f"{image_set.name} holds {image_set.count} image{'' if image_set.count == 1 else 's'}"
            f": FID (and KID) need at least "
            f"{MIN_IMAGES} images per side"
        )


def _check_dim(image_set: ImageSet, space: str, dim: int | None) -> None:
    """A statistics file must come from `space`, whose features are `dim`-d (None: unknown)."""
    assert image_set.stats is not None
    own = image_set.stats.mean.shape[0]
    if dim is not None and own != dim:
        raise DataError(
            f"{image_set.name} holds {own}-d statistics, but {space_label(space)} features are "
            f"{dim}-d: compute the statistics in that space, or pick the space they came from "
            "with --features"
        )


def fid_space(features: str, sets: list[ImageSet]) -> str:
    """The feature space for `genlearn fid`: the user's, or chosen from the sets.

    With "auto", statistics files decide by their dimension (2048: inception, 1280:
    efficientnet-lite0, 128: mnist-cnn; any other is a DataError); small grey images (at
    most 32 px, every image grey) use the MNIST network; anything else the standard Inception
    (else the offline EfficientNet-Lite0).
    """
    if features != "auto":
        return parse_spaces(features, "", 3)[0]
    for image_set in sets:
        if image_set.stats is not None:
            dim = image_set.stats.mean.shape[0]
            if dim not in SPACE_BY_DIM:
                known = ", ".join(f"{d} ({space_label(s)})" for d, s in SPACE_BY_DIM.items())
                raise DataError(
                    f"{image_set.name} holds {dim}-d statistics, which match no known feature "
                    f"space ({known}): name the network that made them with --features"
                )
            return SPACE_BY_DIM[dim]
    if all(s.image_size <= DIGIT_SIZE and s.is_grey() for s in sets):
        return default_spaces("mnist", 1)[0]
    return imagenet_space()
