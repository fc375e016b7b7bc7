"""Is it good, and is it new? Every sample-quality and novelty figure of a set of images.

The lecture's two-part test for a generative model, measured in each feature space:

1. *Good*: do the samples look as if drawn from p_data? FID and KID compare the feature
   distributions; precision/recall and density/coverage split that into "samples look real"
   (precision, density) and "all of the data is covered" (recall, coverage); the Inception
   Score applies where the features come from an ImageNet classifier.
2. *New*: each sample's distance to its nearest training image, against the training set's
   own nearest-neighbour distances; samples closer than 99% of real images ever come to a
   *different* real image are near-copies (see `genlearn.metrics.novelty`).

Each figure is also computed for a seeded random set of held-out real images, as many as
there are samples (or the whole test split when it is smaller): that column is the best any
model can score at this sample size (FID is biased upwards for small sets), so a user reads
"FID 12 against a floor of 3" instead of a bare number. The metrics whose value depends on
set sizes (KID, precision/recall, density/coverage) use the same number of points in both
columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from genlearn.errors import ConfigError
from genlearn.explore.neighbours import NeighbourSpace
from genlearn.metrics.features import FeatureExtractor, get_extractor, pixel_preprocess
from genlearn.metrics.frechet import fid_from_features
from genlearn.metrics.inception_score import inception_score
from genlearn.metrics.kid import kernel_inception_distance
from genlearn.metrics.manifold import density_coverage, precision_recall
from genlearn.metrics.novelty import (
    NoveltyReport,
    nearest_neighbours,
    novelty,
    reference_distances,
)
from genlearn.metrics.reference import ReferenceSet, as_reference, reference_features

MIN_IMAGES = 10  # below this, k-NN radii (k = 3, 5) and IS splits (10) have no meaning
PIXEL_BUDGET = 100_000_000  # floats of pixel-space reference kept in memory (400 MB)
SUBSET_SEED = 0  # fixed, so the reference subset (and its cached features) never changes


@dataclass
class SpaceResult:
    """All figures of one feature space, for the samples and for held-out real images."""

    space: str
    label: str
    standard: bool
    fingerprint: str  # the weights' hash: figures from other weights are not comparable
    reference_images: int  # training images embedded (and searched for copies)
    training_images: int  # in the whole training set
    samples: dict[str, float | None] = field(default_factory=dict)
    held_out: dict[str, float | None] = field(default_factory=dict)
    novelty: NoveltyReport | None = None  # of the samples; nearest_index indexes the reference
    # kept for the neighbours figure, not written to metrics.json:
    sample_features: torch.Tensor | None = None
    train_features: torch.Tensor | None = None
    train_index: torch.Tensor | None = None  # rows of the training set embedded

    def neighbours(self, k: int = 3) -> NeighbourSpace:
        """The k nearest training images of every sample (indices into the training set)."""
        assert self.sample_features is not None and self.train_features is not None
        assert self.train_index is not None and self.novelty is not None
        distances, indices = nearest_neighbours(self.sample_features, self.train_features, k)
        name = "pixels" if self.space == "pixels" else f"{self.label} features"
        return NeighbourSpace(name, self.train_index[indices], distances, self.novelty.threshold)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "standard_fid": self.standard,
            "weights": self.fingerprint,
            "reference_images": self.reference_images,
            "training_images": self.training_images,
            "samples": self.samples,
            "held_out": self.held_out,
        }


@dataclass
class QualityReport:
    num_samples: int
    num_held_out: int
    spaces: list[SpaceResult]

    def as_dict(self) -> dict[str, Any]:
        """The `sample_quality` section of metrics.json."""
        return {
            "num_samples": self.num_samples,
            "num_held_out": self.num_held_out,
            "spaces": {result.space: result.as_dict() for result in self.spaces},
        }


def evaluate_samples(
    samples: torch.Tensor,
    train_images: torch.Tensor,
    held_out: torch.Tensor | None,
    spaces: list[str],
    *,
    device: str = "cpu",
    reference_size: int | None = None,
    bootstrap: int = 10,
    seed: int = 0,
    distribution: bool = True,
    show_progress: bool = True,
) -> QualityReport:
    """Compare uint8 `samples` with the training images in each feature space.

    `held_out` (real images the model never saw, e.g. the test split) gives the second
    column; `distribution=False` computes only the novelty figures (for `neighbours`).
    """
    _check_sizes(samples, train_images)
    real = _held_out_subset(held_out, len(samples), seed)
    results = []
    for space in spaces:
        extractor = get_extractor(space, device)
        train_index = _reference_subset(train_images, extractor, reference_size)
        result = evaluate_space(
            extractor,
            samples,
            train_images,
            train_index,
            real,
            bootstrap=bootstrap,
            seed=seed,
            distribution=distribution,
            show_progress=show_progress,
        )
        results.append(result)
    return QualityReport(len(samples), 0 if real is None else len(real), results)


def _check_sizes(samples: torch.Tensor, train_images: torch.Tensor) -> None:
    if len(samples) < MIN_IMAGES:
        raise ConfigError(f"sample quality needs at least {MIN_IMAGES} samples, got {len(samples)}")
    if len(train_images) < MIN_IMAGES:
        raise ConfigError(
            f"sample quality needs at least {MIN_IMAGES} training images, the dataset has "
            f"{len(train_images)}: use a larger dataset"
        )


def _held_out_subset(held_out: torch.Tensor | None, count: int, seed: int) -> torch.Tensor | None:
    """A seeded random subset (test splits are often ordered, e.g. by writer in MNIST, so
    their first images are not a fair sample); None when there are too few for the metrics."""
    if held_out is None or len(held_out) < MIN_IMAGES:
        return None
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(held_out), generator=generator)[:count]
    return held_out[chosen.sort().values]


def _reference_subset(
    train_images: torch.Tensor, extractor: FeatureExtractor, reference_size: int | None
) -> torch.Tensor:
    """Indices of the training images used as reference: all of them when affordable."""
    count = reference_size or extractor.default_reference_size
    if extractor.name == "pixels" and reference_size is None:
        count = min(count, PIXEL_BUDGET // max(1, _pixel_dim(train_images)))
    if count >= len(train_images):
        return torch.arange(len(train_images))
    generator = torch.Generator().manual_seed(SUBSET_SEED)
    return torch.randperm(len(train_images), generator=generator)[:count].sort().values


def _pixel_dim(images: torch.Tensor) -> int:
    return pixel_preprocess(images[:1]).flatten(1).shape[1]


def evaluate_space(
    extractor: FeatureExtractor,
    samples: torch.Tensor,
    train_images: torch.Tensor,
    train_index: torch.Tensor,
    held_out: torch.Tensor | None,
    *,
    bootstrap: int = 10,
    seed: int = 0,
    distribution: bool = True,
    show_progress: bool = True,
) -> SpaceResult:
    """Every figure of one space: distribution metrics (not for pixels) and novelty."""
    train = _embed(extractor, train_images[train_index], "training images", show_progress)
    loo = reference_distances(train.features, seed=seed)
    description = f"{extractor.label} features of samples"
    embedded = extractor(samples, show_progress=show_progress, description=description)
    result = SpaceResult(
        extractor.name,
        extractor.label,
        extractor.standard,
        extractor.fingerprint,
        len(train_index),
        len(train_images),
        novelty=novelty(embedded.features, train.features, reference=loo),
        sample_features=embedded.features,
        train_features=train.features,
        train_index=train_index,
    )
    # KID, precision/recall and density/coverage depend on set sizes: equal sizes throughout
    size = min(len(samples), len(train.features), len(held_out) if held_out is not None else 10**9)
    measure = distribution and extractor.name != "pixels"
    result.samples = _figures(
        train, embedded.features, embedded.logits, size, measure, bootstrap, seed
    )
    result.samples.update(_finite(result.novelty.as_dict()))
    if held_out is not None:
        real = _embed(extractor, held_out, "held-out images", show_progress)
        result.held_out = _figures(
            train, real.features, real.logits, size, measure, bootstrap, seed
        )
        result.held_out.update(
            _finite(novelty(real.features, train.features, reference=loo).as_dict())
        )
    return result


def _embed(
    extractor: FeatureExtractor, images: torch.Tensor, label: str, show_progress: bool
) -> ReferenceSet:
    """Features of real images: cached per (images, network), except trivial pixel features."""
    if extractor.name == "pixels":  # trivial to recompute; not worth hundreds of MB of cache
        embedded = extractor(images, show_progress=False)
        return as_reference(embedded, "computed", with_stats=False)
    return reference_features(images, extractor, show_progress=show_progress, label=label)


def _figures(
    train: ReferenceSet,
    features: torch.Tensor,
    logits: torch.Tensor | None,
    size: int,
    measure: bool,
    bootstrap: int,
    seed: int,
) -> dict[str, float | None]:
    """FID against all reference features; KID, precision/recall, density/coverage between
    `size` random points of each set; the Inception Score from the network's classes."""
    if not measure:
        return {}
    assert train.stats is not None
    fid, fid_stderr = fid_from_features(
        train.features, features, bootstrap=bootstrap, seed=seed, real_stats=train.stats
    )
    reference, points = _random_rows(train.features, size, seed), _random_rows(features, size, seed)
    kid, kid_stderr = kernel_inception_distance(reference, points)
    figures = {"fid": fid, "fid_stderr": fid_stderr, "kid": kid, "kid_stderr": kid_stderr}
    figures.update(precision_recall(reference, points, k=3))
    figures.update(density_coverage(reference, points, k=5))
    if logits is not None:
        score, score_stderr = inception_score(logits, splits=min(10, len(logits)))
        figures.update({"inception_score": score, "inception_score_stderr": score_stderr})
    return _finite(figures)


def _random_rows(features: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    if count >= len(features):
        return features
    generator = torch.Generator().manual_seed(seed)
    return features[torch.randperm(len(features), generator=generator)[:count]]


def _finite(figures: dict[str, float]) -> dict[str, float | None]:
    """NaN/inf become None (JSON null): strict JSON parsers reject NaN."""
    return {k: (v if math.isfinite(v) else None) for k, v in figures.items()}
