"""Manifold-based fidelity and diversity: precision/recall and density/coverage.

Each set's manifold is estimated as the union of balls B(x_i, r_i) around its points, with
r_i the distance from x_i to its k-th nearest other point of the same set.

* Precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric for
  Assessing Generative Models", eq. 1-3): f(phi, Phi) = 1 if phi lies in some ball of Phi;
  precision = mean over fake phi_g of f(phi_g, Phi_real), recall = mean over real phi_r of
  f(phi_r, Phi_fake).
* Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
  Generative Models", eq. 2-3): density = 1/(kM) sum_j sum_i 1[Y_j in B(X_i, r_i)] counts how
  many real balls hold each fake point (about 1 for fake = real distribution, unbounded
  above), coverage = share of real balls holding at least one fake point.

Standard errors: binomial sqrt(p(1-p)/n) for the shares (n = the number of points that are
averaged: fake for precision, real for recall and coverage), sample std / sqrt(M) of the
per-fake-point ball counts / k for density. They treat the balls as fixed, so they show
the sampling noise of the points tested, not of the radii.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from genlearn.metrics.novelty import (
    as_features,
    float64_rows,
    nearest_neighbours,
    reference_chunk,
    row_blocks,
    squared_distances,
    squared_norms,
)

# Relative width of the rounding margin on ball boundaries (~4500 eps of float64).
_ROUNDING = 1e-12


def knn_radii(features: Tensor | np.ndarray, k: int) -> Tensor:
    """Distance [N] from each point to its k-th nearest OTHER point of the same set."""
    distances, _ = nearest_neighbours(features, features, k, exclude_self=True)
    return distances[:, k - 1]


def _radii_squared(radii: Tensor, centres: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
    """(squared norms of the centres, squared radii widened by the distance rounding error).

    A ball's k-th neighbour lies exactly on its boundary, and the same distance recomputed in
    another block (or transposed) can differ in the last bits; the ~eps (||x||^2 + ||y||^2)
    error bound of `squared_distances`, times a generous margin, keeps it inside.
    """
    centre_sq = squared_norms(centres)
    scale = centre_sq + squared_norms(points).max().to(centre_sq.device)
    return centre_sq, radii.to(centre_sq).square() + _ROUNDING * scale


def _ball_counts(points: Tensor, centres: Tensor, radii: Tensor, chunk: int = 2048) -> Tensor:
    """For every point, how many balls B(centres_i, radii_i) contain it (boundary included)."""
    if points.shape[1] != centres.shape[1]:
        raise ValueError(f"feature sizes differ: {points.shape[1]} vs {centres.shape[1]}")
    centre_sq, radii_sq = _radii_squared(radii, centres, points)
    counts = []
    for pa, pb in row_blocks(len(points), chunk):
        p = float64_rows(points, pa, pb)
        p_sq = p.square().sum(1)
        total = torch.zeros(pb - pa, dtype=torch.long, device=p.device)
        for ca, cb in row_blocks(len(centres), reference_chunk(chunk)):
            c = float64_rows(centres, ca, cb).to(p.device)
            d2 = squared_distances(p, c, p_sq, centre_sq[ca:cb].to(p.device))
            total += (d2 <= radii_sq[ca:cb].to(p.device)).sum(1)
        counts.append(total)
    return torch.cat(counts).cpu()


def _share(hits: Tensor) -> tuple[float, float]:
    """A share of hits and its binomial standard error."""
    p = float(hits.double().mean())
    return p, math.sqrt(p * (1.0 - p) / len(hits))


def _pair(real: Tensor | np.ndarray, fake: Tensor | np.ndarray, k: int) -> tuple[Tensor, Tensor]:
    x, y = as_features(real, "real"), as_features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} (real) vs {y.shape[1]} (fake)")
    if min(len(x), len(y)) <= k:
        raise ValueError(f"both sets need more than k={k} points")
    return x, y


def precision_recall(
    real: Tensor | np.ndarray, fake: Tensor | np.ndarray, *, k: int = 3
) -> dict[str, float]:
    """Improved precision (fidelity) and recall (diversity) with k-NN balls."""
    x, y = _pair(real, fake, k)
    precision, precision_se = _share(_ball_counts(y, x, knn_radii(x, k)) > 0)
    recall, recall_se = _share(_ball_counts(x, y, knn_radii(y, k)) > 0)
    return {
        "precision": precision,
        "precision_stderr": precision_se,
        "recall": recall,
        "recall_stderr": recall_se,
    }


def density_coverage(
    real: Tensor | np.ndarray, fake: Tensor | np.ndarray, *, k: int = 5
) -> dict[str, float]:
    """Density (fidelity, ~1 when fake matches real) and coverage (diversity) with real balls."""
    x, y = _pair(real, fake, k)
    radii = knn_radii(x, k)
    per_fake = _ball_counts(y, x, radii).double() / k
    # A real ball is covered when its nearest fake point lies inside it.
    nearest_fake = nearest_neighbours(x, y, 1)[0][:, 0]
    radii_sq = _radii_squared(radii, x, y)[1]
    coverage, coverage_se = _share(nearest_fake.square().cpu() <= radii_sq.cpu())
    return {
        "density": float(per_fake.mean()),
        "density_stderr": float(per_fake.std() / math.sqrt(len(per_fake))),
        "coverage": coverage,
        "coverage_stderr": coverage_se,
    }
