"""Is it new? Nearest-training-neighbour distances and a near-copy detector.

A generative model that reproduces its training images scores well on FID, precision and
density, so sample quality needs a memorisation check beside it. We measure how far each
sample lies from its nearest training example, and calibrate that distance against the
training set itself (the leave-one-out nearest-neighbour test of Meehan et al. 2020,
"A non-parametric test to detect data-copying in generative models", simplified here to a
per-sample threshold):

    A sample is a **near-copy** when it lies closer to its nearest training example than all
    but `quantile` (default 1%) of training examples lie to their own nearest *other*
    training example: threshold = quantile_q { min_{j != i} ||t_i - t_j|| : t_i in train },
    near-copy <=> min_j ||s - t_j|| <= threshold. It is closer to a training example than
    real data ever comes to a *different* real example, so a perfect model that never
    copies (its samples are fresh draws of the data distribution) gets about `quantile`
    (1%) near-copies by construction, and a model that copies or lightly perturbs its
    training images gets far more.

`novelty_ratio` = median sample distance / median training leave-one-out distance is the
companion summary: about 1 when samples are as new as fresh data, well below 1 when copying.

The module also holds the chunked, float64 pairwise-distance primitives that the other
metric modules reuse (`as_features`, `squared_distances`, `nearest_neighbours`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Pairwise blocks are capped at this many float64 entries (128 MiB), whatever the chunk.
_BLOCK_ENTRIES = 1 << 24


def as_features(features: Tensor | np.ndarray, name: str = "features") -> Tensor:
    """A [N, D] tensor view of `features` in its own dtype (blocks are cast to float64 later).

    Not converting the whole matrix at once keeps 50,000 x 2048 float32 features at their
    400 MB instead of adding an 800 MB float64 copy. MPS tensors go to the CPU: no float64.
    """
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(np.ascontiguousarray(features))
    if not isinstance(features, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(features)}")
    if features.ndim != 2:
        raise ValueError(f"{name} must be a [N, D] matrix, got shape {tuple(features.shape)}")
    if features.device.type not in ("cpu", "cuda"):
        features = features.cpu()
    return features.detach()


def float64_rows(features: Tensor, start: int, stop: int) -> Tensor:
    """Rows [start, stop) in float64: the precision every metric here accumulates in."""
    return features[start:stop].to(torch.float64)


def row_blocks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) pairs covering range(n) in steps of `size`."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield start, min(start + size, n)


def squared_norms(features: Tensor, chunk: int = 8192) -> Tensor:
    """||x_i||^2 in float64, computed once so every distance block reuses it."""
    return torch.cat(
        [float64_rows(features, a, b).square().sum(1) for a, b in row_blocks(len(features), chunk)]
    )


def squared_distances(x: Tensor, y: Tensor, x_sq: Tensor, y_sq: Tensor) -> Tensor:
    """||x_i - y_j||^2 for float64 blocks via one matmul.

    The expansion ||x||^2 + ||y||^2 - 2 x.y is what makes this fast; in float64 its
    cancellation error (~1e-16 (||x||^2 + ||y||^2)) is far below any distance that matters.
    It can leave tiny negatives for (near-)identical rows: callers clamp what they keep.
    """
    return torch.addmm(x_sq[:, None] + y_sq[None, :], x, y.T, alpha=-2.0)


def reference_chunk(query_chunk: int) -> int:
    """Reference block size keeping a query x reference block within _BLOCK_ENTRIES."""
    return max(256, _BLOCK_ENTRIES // max(1, query_chunk))


def _check_pair(queries: Tensor, references: Tensor) -> None:
    if queries.shape[1] != references.shape[1]:
        raise ValueError(
            f"feature sizes differ: {queries.shape[1]} (queries) vs {references.shape[1]}"
        )


def _nearest(
    queries: Tensor, references: Tensor, k: int, skip: Tensor | None, chunk: int
) -> tuple[Tensor, Tensor]:
    """k nearest references of every query; `skip[i]` is a reference index query i may not use."""
    _check_pair(queries, references)
    available = len(references) - (1 if skip is not None else 0)
    if not 1 <= k <= available:
        raise ValueError(f"k must be in 1..{available} here, got {k}")
    ref_sq = squared_norms(references)
    ref_chunk = reference_chunk(chunk)
    all_d2, all_idx = [], []
    for qa, qb in row_blocks(len(queries), chunk):
        q = float64_rows(queries, qa, qb)
        q_sq = q.square().sum(1)
        best_d2 = torch.full((qb - qa, k), math.inf, dtype=torch.float64, device=q.device)
        best_idx = torch.zeros((qb - qa, k), dtype=torch.long, device=q.device)
        for ra, rb in row_blocks(len(references), ref_chunk):
            r = float64_rows(references, ra, rb).to(q.device)
            d2 = squared_distances(q, r, q_sq, ref_sq[ra:rb].to(q.device))
            if skip is not None:
                own = skip[qa:qb].to(q.device) - ra
                rows = torch.nonzero((own >= 0) & (own < rb - ra)).squeeze(1)
                d2[rows, own[rows]] = math.inf
            idx = torch.arange(ra, rb, device=q.device).expand(qb - qa, -1)
            # Merging the running best with this block keeps memory at one block.
            merged_d2 = torch.cat([best_d2, d2], 1)
            merged_idx = torch.cat([best_idx, idx], 1)
            best_d2, pos = merged_d2.topk(k, dim=1, largest=False, sorted=True)
            best_idx = merged_idx.gather(1, pos)
        all_d2.append(best_d2)
        all_idx.append(best_idx)
    return torch.cat(all_d2).clamp_min(0.0).sqrt(), torch.cat(all_idx)


def nearest_neighbours(
    queries: Tensor | np.ndarray,
    references: Tensor | np.ndarray,
    k: int = 1,
    *,
    exclude_self: bool = False,
    chunk: int = 2048,
) -> tuple[Tensor, Tensor]:
    """Euclidean distances [N, k] (ascending, float64) and indices [N, k] of the k nearest
    references of every query, in blocks of `chunk` queries.

    `exclude_self=True` means the queries ARE the references (same rows, same order): query i
    may not pick reference i, which gives leave-one-out neighbour distances.
    """
    q = as_features(queries, "queries")
    r = as_features(references, "references")
    skip = None
    if exclude_self:
        if q.shape != r.shape:
            raise ValueError("exclude_self needs queries and references to be the same rows")
        skip = torch.arange(len(q))
    return _nearest(q, r, k, skip, chunk)


def reference_distances(
    train: Tensor | np.ndarray, *, max_points: int = 5000, seed: int = 0
) -> Tensor:
    """Leave-one-out nearest-neighbour distances [min(R, max_points)] of a random subset of
    training points to the rest of the training set (the whole set, not just the subset).

    The subset only bounds the cost; its quantiles estimate those of all R points.
    """
    t = as_features(train, "train")
    if len(t) < 2:
        raise ValueError("the training set needs at least 2 points")
    generator = np.random.default_rng(seed)
    count = min(len(t), max_points)
    picked = torch.from_numpy(np.sort(generator.choice(len(t), size=count, replace=False)))
    return _nearest(t[picked], t, 1, picked, 2048)[0][:, 0]


def _median(values: Tensor) -> float:
    # numpy's median averages the two middle values; torch.median returns the lower one.
    return float(np.median(values.double().cpu().numpy()))


def _median_stderr(values: Tensor) -> float:
    """Standard error of a median, distribution-free: half the width of the order-statistic
    interval at ranks n/2 -/+ sqrt(n)/2, which holds the median with the binomial ~68%
    probability of a +-1 standard error interval (e.g. Conover 1999, Sec. 3.2)."""
    ordered = np.sort(values.double().cpu().numpy())
    n, half = len(ordered), 0.5 * math.sqrt(len(ordered))
    low = ordered[max(int(math.floor(n / 2 - half)), 0)]
    high = ordered[min(int(math.ceil(n / 2 + half)) - 1, n - 1)]
    return float(high - low) / 2


@dataclass(frozen=True)
class NoveltyReport:
    """Nearest-training-neighbour figures of a set of samples; see the module docstring."""

    sample_distances: Tensor  # [M] each sample's distance to its nearest training example
    nearest_index: Tensor  # [M] index of that training example
    reference_distances: Tensor  # [R] the training set's own leave-one-out NN distances
    threshold: float  # near-copy threshold
    quantile: float  # the quantile of reference_distances that defines it
    near_copy_share: float
    near_copy_stderr: float
    novelty_ratio: float  # median(sample) / median(reference): ~1 new as fresh data, <<1 copying

    @property
    def novelty_ratio_stderr(self) -> float:
        """Delta-method error of top / bottom: sqrt((se_top / bottom)^2 + (ratio se_bottom /
        bottom)^2), from the errors of the two medians (written so top = 0 is allowed)."""
        bottom = _median(self.reference_distances)
        if bottom <= 0:
            return math.nan
        return math.hypot(
            _median_stderr(self.sample_distances) / bottom,
            self.novelty_ratio * _median_stderr(self.reference_distances) / bottom,
        )

    def near_copies(self) -> Tensor:
        """Boolean mask [M] of the samples that are near-copies of a training example."""
        return self.sample_distances <= self.threshold

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Plain floats for metrics.json."""
        values = {
            "near_copy_share": self.near_copy_share,
            "near_copy_stderr": self.near_copy_stderr,
            "novelty_ratio": self.novelty_ratio,
            "novelty_ratio_stderr": self.novelty_ratio_stderr,
            "near_copy_threshold": self.threshold,
            "near_copy_quantile": self.quantile,
            "median_sample_distance": _median(self.sample_distances),
            "median_reference_distance": _median(self.reference_distances),
        }
        return {prefix + key: float(value) for key, value in values.items()}


def novelty(
    samples: Tensor | np.ndarray,
    train: Tensor | np.ndarray,
    *,
    reference: Tensor | None = None,
    quantile: float = 0.01,
) -> NoveltyReport:
    """Nearest-training-neighbour distances of `samples` and their near-copy share.

    `reference` (from `reference_distances(train)`) can be passed to reuse it across models.
    The stderr is binomial over the samples, with the threshold taken as fixed.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    s, t = as_features(samples, "samples"), as_features(train, "train")
    if reference is None:
        reference = reference_distances(t)
    reference = torch.as_tensor(reference, dtype=torch.float64).cpu().flatten()
    distances, index = nearest_neighbours(s, t, 1)
    distances, index = distances[:, 0].cpu(), index[:, 0].cpu()
    # numpy's quantile: torch.quantile refuses inputs above 16M entries.
    threshold = float(np.quantile(reference.numpy(), quantile))
    share = float((distances <= threshold).double().mean())
    # A training set whose points mostly duplicate each other has no scale to compare with.
    ref_median = _median(reference)
    ratio = _median(distances) / ref_median if ref_median > 0 else math.inf
    return NoveltyReport(
        sample_distances=distances,
        nearest_index=index,
        reference_distances=reference,
        threshold=threshold,
        quantile=quantile,
        near_copy_share=share,
        near_copy_stderr=math.sqrt(share * (1.0 - share) / len(distances)),
        novelty_ratio=ratio,
    )
