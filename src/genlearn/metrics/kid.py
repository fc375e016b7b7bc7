"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs", Sec. 2.3 and
Appendix): the squared MMD between real and fake features under the cubic polynomial kernel
k(x, y) = (x.y / D + 1)^3, estimated without bias by the U-statistic

    MMD^2_u = 1/(n(n-1)) sum_{i != i'} k(x_i, x_i') + 1/(m(m-1)) sum_{j != j'} k(y_j, y_j')
              - 2/(nm) sum_{i,j} k(x_i, y_j).

Unlike FID it has no bias that depends on the sample size, so it can be 0 or slightly
negative for equal distributions. We use all pairs of the full sets (not the random
subsets of the original code), summed in float64 over kernel blocks.

Standard error: the first-order (Hoeffding) variance of a two-sample U-statistic of
degree (2, 2) (Serfling 1980, Sec. 5.5; applied to MMD by Sutherland et al. 2017, "Generative
Models and Model Criticism via Optimized MMD", Appendix A):
Var ~= 4/n Var_x[g_x(x)] + 4/m Var_y[g_y(y)] with
g_x(x_i) = mean_{i' != i} k(x_i, x_i') - mean_j k(x_i, y_j) and
g_y(y_j) = mean_{j' != j} k(y_j, y_j') - mean_i k(x_i, y_j),
plug-in estimated from the kernel row means accumulated anyway. When both distributions are
equal the U-statistic is degenerate (g is constant) and this error is only a rough scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor

from genlearn.metrics.novelty import as_features, float64_rows, row_blocks

Kernel = Callable[[Tensor, Tensor], Tensor]


def polynomial_kernel(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> Tensor:
    """(gamma x.y + coef0)^degree in float64 for every pair, [N, M]; gamma defaults to 1/D."""
    x = as_features(x, "x").to(torch.float64)
    y = as_features(y, "y").to(torch.float64)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} vs {y.shape[1]}")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (gamma * (x @ y.T) + coef0).pow(degree)


def _within_row_sums(x: Tensor, kernel: Kernel, chunk: int) -> Tensor:
    """sum_{i' != i} k(x_i, x_i') for every i, from the upper block triangle only."""
    rows = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    blocks = list(row_blocks(len(x), chunk))
    for bi, (a, b) in enumerate(blocks):
        xa = float64_rows(x, a, b)
        for c, d in blocks[bi:]:
            block = kernel(xa, float64_rows(x, c, d))
            if a == c:
                block.fill_diagonal_(0.0)  # the U-statistic leaves out i == i'
                rows[a:b] += block.sum(1)
            else:  # symmetry: this block also gives the rows of the lower triangle
                rows[a:b] += block.sum(1)
                rows[c:d] += block.sum(0)
    return rows


def _cross_sums(x: Tensor, y: Tensor, kernel: Kernel, chunk: int) -> tuple[Tensor, Tensor]:
    """Row sums sum_j k(x_i, y_j) [n] and column sums sum_i k(x_i, y_j) [m]."""
    rows = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    cols = torch.zeros(len(y), dtype=torch.float64, device=x.device)
    for a, b in row_blocks(len(x), chunk):
        xa = float64_rows(x, a, b)
        for c, d in row_blocks(len(y), chunk):
            block = kernel(xa, float64_rows(y, c, d).to(x.device))
            rows[a:b] += block.sum(1)
            cols[c:d] += block.sum(0)
    return rows, cols


def kernel_inception_distance(
    real: Tensor | np.ndarray,
    fake: Tensor | np.ndarray,
    *,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    chunk: int = 4096,
) -> tuple[float, float]:
    """(unbiased MMD^2 over all pairs, its first-order standard error); see the module doc."""
    x, y = as_features(real, "real"), as_features(fake, "fake")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sizes differ: {x.shape[1]} (real) vs {y.shape[1]} (fake)")
    n, m = len(x), len(y)
    if min(n, m) < 2:
        raise ValueError("KID needs at least 2 real and 2 fake points")
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    kernel = partial(polynomial_kernel, degree=degree, gamma=gamma, coef0=coef0)
    kxx = _within_row_sums(x, kernel, chunk)
    kyy = _within_row_sums(y, kernel, chunk)
    kxy_rows, kxy_cols = _cross_sums(x, y, kernel, chunk)
    mmd2 = kxx.sum() / (n * (n - 1)) + kyy.sum() / (m * (m - 1)) - 2 * kxy_rows.sum() / (n * m)
    g_x = kxx / (n - 1) - kxy_rows / m
    g_y = kyy / (m - 1) - kxy_cols / n
    variance = 4 * g_x.var() / n + 4 * g_y.var() / m
    return float(mmd2), math.sqrt(max(float(variance), 0.0))
