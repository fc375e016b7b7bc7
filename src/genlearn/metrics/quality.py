"""Is it good, and is it new? Every sample-quality and novelty figure of a set of images.

The lecture's two-part test for a generative model, measured in each feature space:

1. *Good*: do the samples look as if drawn from p_data? FID and KID compare the feature
   distributions; precision/recall and density/coverage split that into "samples look real"
   (precision, density) and "all of the data is covered" (recall, coverage); the Inception
   Score applies where the features come from an ImageNet classifier.
2. *New*: each sample's distance to its nearest training image, against the training set's
   own nearest-neighbour distances; samples closer than 99% of real images ever come to a
   *different* real image are near-copies (see `genlearn.metrics.novelty`).

Each figure is also computed for as many held-out real images as there are samples: that
column is the best any model can score at this sample size (FID is biased upwards for small
sets), so a user can read "FID 12 against a floor of 3" instead of a bare number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from genlearn.explore.neighbours import NeighbourSpace
from genlearn.metrics.features import (
    FeatureExtractor,
    get_extractor,
    pixel_preprocess,
)
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

PIXEL_BUDGET = 50_000_000  # floats of pixel-space reference kept in memory (200 MB)
SUBSET_SEED = 0  # fixed, so the reference subset (and its cached features) never changes


@dataclass
class SpaceResult:
    """All figures of one feature space, for the samples and for held-out real images."""

    space: str
    label: str
    standard: bool
    reference_images: int
    samples: dict[str, float] = field(default_factory=dict)
    real: dict[str, float] = field(default_factory=dict)
    novelty: NoveltyReport | None = None  # of the samples
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
            "reference_images": self.reference_images,
            "samples": self.samples,
            "real": self.real,
        }


@dataclass
class QualityReport:
    num_samples: int
    num_real: int
    spaces: list[SpaceResult]

    def as_dict(self) -> dict[str, Any]:
        """The `sample_quality` section of metrics.json."""
        return {
            "num_samples": self.num_samples,
            "num_real": self.num_real,
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
    show_progress: bool = True,
) -> QualityReport:
    """Compare uint8 `samples` with the training images in each feature space.

    `held_out` (real images the model never saw, e.g. the test split) gives the "real" column;
    as many are used as there are samples.
    """
    real = held_out[: len(samples)] if held_out is not None else None
    results = []
    for space in spaces:
        extractor = get_extractor(space, device)
        train_index = _reference_subset(train_images, extractor, reference_size)
        result = evaluate_space(
            extractor,
            samples,
            train_images[train_index],
            real,
            bootstrap=bootstrap,
            seed=seed,
            show_progress=show_progress,
        )
        result.train_index = train_index
        results.append(result)
    return QualityReport(len(samples), 0 if real is None else len(real), results)


def _reference_subset(
    train_images: torch.Tensor, extractor: FeatureExtractor, reference_size: int | None
) -> torch.Tensor:
    """Indices of the training images used as reference: all of them when affordable."""
    count = reference_size or extractor.default_reference_size
    if extractor.name == "pixels":
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
    real: torch.Tensor | None,
    *,
    bootstrap: int = 10,
    seed: int = 0,
    show_progress: bool = True,
) -> SpaceResult:
    """Every figure of one space: distribution metrics (not for pixels) and novelty."""
    train = _embed(extractor, train_images, "training images", show_progress)
    result = SpaceResult(extractor.name, extractor.label, extractor.standard, len(train_images))
    loo = reference_distances(train.features, seed=seed)
    sets = [("samples", samples)] + ([("real", real)] if real is not None else [])
    for which, images in sets:
        description = f"{extractor.label} features of {which}"
        embedded = extractor(images, show_progress=show_progress, description=description)
        figures = (
            {}
            if extractor.name == "pixels"
            else _distribution_metrics(
                train, embedded.features, embedded.logits, bootstrap=bootstrap, seed=seed
            )
        )
        report = novelty(embedded.features, train.features, reference=loo)
        figures.update(report.as_dict())
        setattr(result, which, figures)
        if which == "samples":
            result.novelty, result.sample_features = report, embedded.features
    result.train_features = train.features
    return result


def _embed(
    extractor: FeatureExtractor, images: torch.Tensor, label: str, show_progress: bool
) -> ReferenceSet:
    if extractor.name == "pixels":  # trivial to recompute; not worth hundreds of MB of cache
        embedded = extractor(images, show_progress=False)
        return as_reference(embedded, "computed", with_stats=False)
    return reference_features(images, extractor, show_progress=show_progress, label=label)


def _distribution_metrics(
    train: ReferenceSet,
    features: torch.Tensor,
    logits: torch.Tensor | None,
    *,
    bootstrap: int,
    seed: int,
) -> dict[str, float]:
    """FID against all reference features; KID, precision/recall, density/coverage against
    an equal-sized random subset (their k-NN radii and kernel means depend on set sizes)."""
    fid, fid_stderr = fid_from_features(
        train.features, features, bootstrap=bootstrap, seed=seed, real_stats=train.stats
    )
    generator = torch.Generator().manual_seed(seed)
    count = min(len(features), len(train.features))
    subset = train.features[torch.randperm(len(train.features), generator=generator)[:count]]
    kid, kid_stderr = kernel_inception_distance(subset, features)
    figures = {"fid": fid, "fid_stderr": fid_stderr, "kid": kid, "kid_stderr": kid_stderr}
    figures.update(precision_recall(subset, features, k=3))
    figures.update(density_coverage(subset, features, k=5))
    if logits is not None:
        score, score_stderr = inception_score(logits)
        figures.update({"inception_score": score, "inception_score_stderr": score_stderr})
    return figures
