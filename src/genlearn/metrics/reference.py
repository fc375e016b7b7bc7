"""Reference features of real images, computed once per dataset and feature space.

Evaluating a run compares its samples with the training set (and with held-out real images,
which show the best score a model could get at the same sample size). Embedding 60,000
training images takes seconds with the MNIST network but many minutes with an ImageNet
network on a CPU, so the features are cached in `$GENLEARN_CACHE/features/` (default
`~/.cache/genlearn/features/`). The key is a hash of the very images embedded and of the
weights file, so a changed dataset or network never reuses stale features. Each file also
holds the features' mean and covariance (the FID reference statistics).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from genlearn.data.files import cache_dir
from genlearn.metrics.features import FeatureExtractor, Features
from genlearn.metrics.frechet import GaussianStats
from genlearn.train.runs import save_tensors_atomic

log = logging.getLogger(__name__)
FORMAT_VERSION = "1"


@dataclass
class ReferenceSet:
    """Features of a set of real images (and their Gaussian statistics for FID)."""

    features: torch.Tensor  # [N, D] float32
    logits: torch.Tensor | None
    stats: GaussianStats | None  # None where FID does not apply (pixel space)
    source: str  # "cache" or "computed", for the user's information


def image_hash(images: torch.Tensor) -> str:
    """A short hash of uint8 images' bytes and shape (milliseconds for 60,000 digits)."""
    digest = hashlib.sha256(str(tuple(images.shape)).encode())
    digest.update(memoryview(images.contiguous().numpy()).cast("B"))  # no copy of the data
    return digest.hexdigest()[:16]


def reference_path(images: torch.Tensor, extractor: FeatureExtractor) -> Path:
    key = f"{extractor.name}-{extractor.fingerprint}-{image_hash(images)}-v{FORMAT_VERSION}"
    return cache_dir() / "features" / f"{key}.safetensors"


def reference_features(
    images: torch.Tensor,
    extractor: FeatureExtractor,
    *,
    show_progress: bool = True,
    label: str = "",
) -> ReferenceSet:
    """Features of `images` (uint8), from the cache when this exact set was embedded before."""
    path = reference_path(images, extractor)
    cached = _load(path)
    if cached is not None:
        return cached
    description = f"{extractor.label} features of {label or 'real images'}"
    embedded = extractor(images, show_progress=show_progress, description=description)
    reference = as_reference(embedded, "computed")
    _save(path, reference)
    return reference


def as_reference(embedded: Features, source: str, *, with_stats: bool = True) -> ReferenceSet:
    stats = GaussianStats.from_features(embedded.features) if with_stats else None
    return ReferenceSet(embedded.features, embedded.logits, stats, source)


def _save(path: Path, reference: ReferenceSet) -> None:
    assert reference.stats is not None
    tensors = {
        "features": reference.features.contiguous(),
        "mean": torch.from_numpy(reference.stats.mean),
        "cov": torch.from_numpy(reference.stats.cov),
    }
    if reference.logits is not None:
        tensors["logits"] = reference.logits.contiguous()
    try:
        save_tensors_atomic(path, tensors, {"count": str(reference.stats.count)})
    except OSError as error:  # a read-only cache only costs time next run
        log.warning("could not cache reference features at %s: %s", path, error)


def _load(path: Path) -> ReferenceSet | None:
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        features = tensors["features"]
        stats = GaussianStats(
            tensors["mean"].numpy().astype(np.float64),
            tensors["cov"].numpy().astype(np.float64),
            len(features),
        )
        return ReferenceSet(features, tensors.get("logits"), stats, "cache")
    except (OSError, KeyError, SafetensorError) as error:
        log.warning("ignoring unreadable feature cache %s (%s)", path, error)
        return None
