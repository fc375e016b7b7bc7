"""Frechet distance between Gaussian fits of two feature sets: FID when the features are
Inception pool features (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule
Converge to a Local Nash Equilibrium", Sec. 3, the equation defining FID):

    d^2((mu_a, S_a), (mu_b, S_b)) = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^{1/2}).

The trace term is computed as the sum of the singular values of S_a^{1/2} S_b^{1/2}, with
each square root from `eigh`. This is the same quantity as sum_i sqrt(eig_i(S_a^{1/2} S_b
S_a^{1/2})) (S_a S_b is similar to that symmetric positive semi-definite matrix, which is
(S_a^{1/2} S_b^{1/2})(S_a^{1/2} S_b^{1/2})^T), so it is always real and >= 0, where
`scipy.linalg.sqrtm(S_a @ S_b)` returns complex values or NaN for the singular covariances of
fewer samples than dimensions. Taking singular values instead of the square roots of
`eigvalsh` of the product matters for accuracy: eigenvalues carry an absolute error of
~eps ||M|| and their square roots ~1e-8 ||S||, which biased FID(X, X) by ~-5e-8 tr(S) when
N < D and cost 8 digits on covariances with 1e-10 eigenvalues; singular values are accurate
to ~eps ||S||.

Eigenvalues of a covariance below D * eps * (its largest eigenvalue), negatives included, are
set to 0 before the square root: they are rounding noise of a singular matrix.

Every FID comes with a bootstrap standard error (rows of both sets resampled with replacement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from genlearn.metrics.novelty import as_features, float64_rows, row_blocks

_EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class GaussianStats:
    """Mean [D] and unbiased (ddof=1) covariance [D, D], in float64, of `count` features."""

    mean: np.ndarray
    cov: np.ndarray
    count: int

    @classmethod
    def from_features(cls, features: Tensor | np.ndarray) -> GaussianStats:
        """Fit of a [N, D] feature matrix (N >= 2), in float64, chunked over rows."""
        x = as_features(features)
        mean, cov = _moments(x, None)
        return cls(mean=mean, cov=cov, count=len(x))


def _moments(
    x: Tensor, weights: np.ndarray | None, chunk: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and ddof=1 covariance of the rows of x, each row counted `weights[i]` times.

    Integer weights from a bootstrap draw give exactly the moments of the resampled set
    without building it. Two passes (mean, then centred cross-products) avoid the
    cancellation of E[xx^T] - mu mu^T; the cross-products are one float64 matmul per chunk
    of rows, so no float64 copy of all the features is ever made.
    """
    n = len(x)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total < 2:
        raise ValueError(f"a covariance needs at least 2 features, got {total:g}")
    if x.is_cuda:  # the same arithmetic with torch's GPU matmul
        w = torch.from_numpy(w).to(x.device)
    mean = sum(w[a:b] @ _rows(x, a, b) for a, b in row_blocks(n, chunk)) / total
    root_w = w**0.5
    cov = 0.0
    for a, b in row_blocks(n, chunk):
        scaled = (_rows(x, a, b) - mean) * root_w[a:b, None]
        # s.T @ s of one buffer: numpy hands it to BLAS syrk, half the flops of a gemm.
        cov = cov + scaled.T @ scaled
    cov = (cov + cov.T) / (2 * (total - 1))  # symmetrise: matmul leaves ~1 ulp asymmetry
    if x.is_cuda:
        return mean.cpu().numpy(), cov.cpu().numpy()
    return mean, cov


def _rows(x: Tensor, start: int, stop: int) -> np.ndarray | Tensor:
    """float64 rows, as numpy on the CPU: for these tall-skinny products numpy's BLAS is
    faster than torch's, whose OpenMP threads can cost milliseconds per call when busy."""
    rows = float64_rows(x, start, stop)
    return rows if rows.is_cuda else rows.numpy()


def _clip_noise(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues with those indistinguishable from rounding noise set to 0."""
    cutoff = len(eigenvalues) * _EPS * max(float(eigenvalues.max(initial=0.0)), 0.0)
    return np.where(eigenvalues > cutoff, eigenvalues, 0.0)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix through `eigh`."""
    eigenvalues, vectors = np.linalg.eigh(cov)
    return (vectors * np.sqrt(_clip_noise(eigenvalues))) @ vectors.T


def _trace_sqrt_product(sqrt_a: np.ndarray, sqrt_b: np.ndarray) -> float:
    """tr((S_a S_b)^{1/2}) = sum of the singular values of S_a^{1/2} S_b^{1/2}, always real."""
    return float(np.linalg.svd(sqrt_a @ sqrt_b, compute_uv=False).sum())


def _frechet(a: GaussianStats, sqrt_a: np.ndarray, b: GaussianStats, sqrt_b: np.ndarray) -> float:
    if a.mean.shape != b.mean.shape:
        raise ValueError(f"feature sizes differ: {a.mean.shape[0]} vs {b.mean.shape[0]}")
    diff = a.mean - b.mean
    value = (
        float(diff @ diff)
        + float(np.trace(a.cov))
        + float(np.trace(b.cov))
        - 2.0 * _trace_sqrt_product(sqrt_a, sqrt_b)
    )
    # The distance is >= 0 in exact arithmetic; a negative value is rounding noise of the
    # (near-)cancelling traces, of order eps * tr(S), never a real signal.
    return max(value, 0.0)


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Squared Frechet distance between the Gaussians N(a.mean, a.cov) and N(b.mean, b.cov)."""
    return _frechet(a, _psd_sqrt(a.cov), b, _psd_sqrt(b.cov))


def _bootstrap_stats(x: Tensor, generator: np.random.Generator) -> GaussianStats:
    """Moments of one resample of the rows of x with replacement."""
    draw = generator.integers(0, len(x), size=len(x))
    mean, cov = _moments(x, np.bincount(draw, minlength=len(x)))
    return GaussianStats(mean=mean, cov=cov, count=len(x))


def fid_from_features(
    real: Tensor | np.ndarray | None,
    fake: Tensor | np.ndarray,
    *,
    bootstrap: int = 10,
    seed: int = 0,
    real_stats: GaussianStats | None = None,
) -> tuple[float, float]:
    """(FID, bootstrap standard error) of fake features against real ones.

    `real_stats` (precomputed, e.g. cached for a dataset) replaces fitting `real`; with
    `real=None` the bootstrap resamples the fake rows only, so the error then ignores the
    real set's sampling noise. The standard error is the std (ddof=1) of `bootstrap`
    recomputed FIDs, NaN when bootstrap < 2.
    """
    y = as_features(fake, "fake")
    x = None if real is None else as_features(real, "real")
    if x is None and real_stats is None:
        raise ValueError("pass real features, real_stats, or both")
    a = real_stats if real_stats is not None else GaussianStats.from_features(x)
    b = GaussianStats.from_features(y)
    sqrt_a = _psd_sqrt(a.cov)
    fid = _frechet(a, sqrt_a, b, _psd_sqrt(b.cov))
    if bootstrap <= 0:
        return fid, math.nan
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(bootstrap):
        # With real fixed (real=None), its square root is reused instead of recomputed.
        a_star = a if x is None else _bootstrap_stats(x, generator)
        sqrt_star = sqrt_a if x is None else _psd_sqrt(a_star.cov)
        b_star = _bootstrap_stats(y, generator)
        values.append(_frechet(a_star, sqrt_star, b_star, _psd_sqrt(b_star.cov)))
    return fid, (float(np.std(values, ddof=1)) if bootstrap > 1 else math.nan)
