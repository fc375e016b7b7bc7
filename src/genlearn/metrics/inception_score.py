"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs", Sec. 4):

    IS = exp(E_x KL(p(y|x) || p(y))),   p(y) = E_x p(y|x),

from classifier logits. As in the paper, the N samples are cut into `splits` parts, the
score is computed on each and averaged; the spread across the parts gives the standard error.
It ranges from 1 (every prediction the same) to C (confident predictions spread evenly over
C classes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from genlearn.metrics.novelty import as_features


def _split_score(log_p: Tensor) -> float:
    """exp(mean KL(p(y|x) || p(y))) of one split of log-probabilities [n, C]."""
    log_marginal = torch.logsumexp(log_p, dim=0) - math.log(len(log_p))
    p = log_p.exp()
    # 0 * log 0 = 0: classes a sample gives probability 0 (exactly, or by underflow)
    # contribute nothing, instead of 0 * (-inf) = NaN.
    terms = torch.where(p > 0, p * (log_p - log_marginal), torch.zeros_like(p))
    return math.exp(float(terms.sum(1).mean()))


def inception_score(logits: Tensor | np.ndarray, *, splits: int = 10) -> tuple[float, float]:
    """(mean over splits of the Inception Score, standard error = std (ddof=1) / sqrt(splits)).

    `logits` [N, C] are pre-softmax class scores (any float dtype); the log-softmax is taken
    in float64 so no probability is rounded to 0 before its logarithm is used. The error is
    NaN for splits == 1.
    """
    log_p = torch.log_softmax(as_features(logits, "logits").to(torch.float64), dim=1)
    if not 1 <= splits <= len(log_p):
        raise ValueError(f"splits must be in 1..{len(log_p)} (the number of samples)")
    scores = np.array([_split_score(part) for part in torch.tensor_split(log_p, splits)])
    stderr = float(scores.std(ddof=1) / math.sqrt(splits)) if splits > 1 else math.nan
    return float(scores.mean()), stderr
