"""An exponential moving average of a network's weights, shared by the families that sample
from averaged weights (GANs' generators, diffusion models' denoisers)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

STATISTICS_BATCH = 64  # batch size (the training's) of the passes that recompute G's statistics


class ExponentialMovingAverage(nn.Module):
    """A copy of a network whose weights follow ema <- decay * ema + (1 - decay) * w after
    each update.

    Batch-norm statistics cannot be averaged like weights: the live network's running means
    belong to the live weights, not to an average over the last ~1/(1 - decay) updates. So
    before the average is used, `refresh_batch_norm` recomputes them by running the averaged
    weights on fresh inputs (the "standing statistics" of Brock et al. 2019, Sec. 3.1).

    Averaging the generator's iterates (Yazici et al. 2019; Karras et al. 2018, Sec. 5)
    smooths the oscillation of adversarial training and gives visibly better samples.
    With `warmup`, update t uses min(decay, (1 + t) / (10 + t)), so the average does not
    remember the random initialisation in a short run (0.999^500 is still 0.6).
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        super().__init__()
        self.decay, self.warmup = decay, warmup
        self.average = copy.deepcopy(model).requires_grad_(False).eval()
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))  # saved: resumes exactly
        self.batch_norm_stale = True  # the statistics do not belong to the current weights

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        t = int(self.updates)
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for averaged, current in zip(self.average.parameters(), model.parameters(), strict=True):
            averaged.mul_(decay).add_(current.detach(), alpha=1 - decay)
        for averaged, current in zip(self.average.buffers(), model.buffers(), strict=True):
            averaged.copy_(current)  # a starting point; refresh_batch_norm replaces them
        self.updates += 1
        self.batch_norm_stale = True

    @torch.no_grad()
    def refresh_batch_norm(self, make_inputs: Callable[[], tuple], batches: int = 8) -> None:
        """Recompute every batch-norm layer's running mean and variance as the plain average
        over `batches` forward passes of `make_inputs()` through the averaged weights."""
        norms = [
            m for m in self.average.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        if norms:
            momenta = [m.momentum for m in norms]
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # None: a cumulative average, every batch weighs the same
            self.average.train()
            try:
                for _ in range(batches):
                    self.average(*make_inputs())
            finally:
                self.average.eval()
                for m, momentum in zip(norms, momenta, strict=True):
                    m.momentum = momentum
        self.batch_norm_stale = False

    def forward(self, *args, **kwargs):
        return self.average(*args, **kwargs)
