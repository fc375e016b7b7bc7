"""The forward (noising) process of a diffusion model and the algebra around it.

Ho, Jain & Abbeel 2020 ("Denoising Diffusion Probabilistic Models"): a fixed Markov chain adds
Gaussian noise in T small steps, q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
(Eq. 2). With alpha_t = 1 - beta_t and alpha_bar_t = prod_{s <= t} alpha_s, any step has a
closed form (Eq. 4): q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), so training
draws x_t in one go. Reversing one step given x_0 is Gaussian too (Eqs. 6-7), with mean
coef_x0 x_0 + coef_xt x_t and variance beta_tilde_t.

Timesteps are 0-based here: index t = 0..T-1 is the paper's step t + 1, and alpha_bar at
index -1 (before any noise) is 1. Everything is computed in float64 and gathered per
sample, so a batch may mix timesteps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from genlearn.errors import ConfigError

SCHEDULES = ("linear", "cosine")


@dataclass(frozen=True)
class NoiseSchedule:
    """beta_1..beta_T and the quantities derived from them (index t = paper's t + 1)."""

    betas: Tensor  # [T], float64

    @classmethod
    def linear(cls, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        """Ho et al. section 4: betas rising linearly from 1e-4 to 0.02 over T = 1000 steps
        (scaled so other T keep the same total noise, as Nichol & Dhariwal do)."""
        scale = 1000 / steps
        betas = torch.linspace(scale * beta_start, scale * beta_end, steps, dtype=torch.float64)
        return cls(betas.clamp(max=0.999))  # below T = 20 the scaled betas would reach 1

    @classmethod
    def cosine(cls, steps: int = 1000, offset: float = 0.008, max_beta: float = 0.999):
        """Nichol & Dhariwal 2021, Eq. 17: alpha_bar(t) = f(t) / f(0) with
        f(t) = cos^2((t / T + s) / (1 + s) * pi / 2); betas clipped at 0.999 near t = T, where
        the formula would reach 1. Noise is added more evenly than the linear schedule's."""
        t = torch.arange(steps + 1, dtype=torch.float64) / steps
        f = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
        return cls(betas.clamp(max=max_beta))

    @classmethod
    def named(cls, name: str, steps: int = 1000) -> NoiseSchedule:
        if name not in SCHEDULES:
            raise ConfigError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")
        if steps < 2:
            raise ConfigError(f"a diffusion needs at least 2 steps, got {steps}")
        return getattr(cls, name)(steps)

    # ---- derived quantities ----------------------------------------------------------------
    @property
    def steps(self) -> int:
        return self.betas.shape[0]

    @property
    def alphas(self) -> Tensor:
        return 1 - self.betas

    @property
    def alpha_bars(self) -> Tensor:
        return torch.cumprod(self.alphas, 0)

    def alpha_bar_at(self, t: Tensor) -> Tensor:
        """alpha_bar for integer timesteps t in -1..T-1 (-1: no noise yet, alpha_bar = 1)."""
        padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars])
        return padded[t.long().cpu() + 1]

    # ---- the forward process ---------------------------------------------------------------
    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Eq. 4), per sample."""
        alpha_bar = _per_sample(self.alpha_bar_at(t), x0)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of q(x_{t-1} | x_t, x_0) (Eqs. 6-7), per sample.

        mean = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
             + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t,
        variance = beta_tilde_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t.
        """
        alpha_bar = self.alpha_bar_at(t)
        alpha_bar_prev = self.alpha_bar_at(t - 1)
        beta = self.betas[t.long().cpu()]
        coef_x0 = alpha_bar_prev.sqrt() * beta / (1 - alpha_bar)
        coef_xt = (1 - beta).sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar)
        variance = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta
        mean = _per_sample(coef_x0, x0) * x0 + _per_sample(coef_xt, xt) * xt
        return mean, _per_sample(variance, x0).expand_as(x0)

    # ---- what a network may predict, and converting between them ---------------------------
    def x0_from_eps(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """Invert Eq. 4: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
        alpha_bar = _per_sample(self.alpha_bar_at(t), xt)
        return (xt - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()

    def eps_from_x0(self, xt: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        alpha_bar = _per_sample(self.alpha_bar_at(t), xt)
        return (xt - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()

    def v_target(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Salimans & Ho 2022 ("Progressive Distillation", section 4): v = sqrt(alpha_bar) eps
        - sqrt(1 - alpha_bar) x_0, the velocity of x_t on the circle it moves along."""
        alpha_bar = _per_sample(self.alpha_bar_at(t), x0)
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0

    def eps_from_v(self, xt: Tensor, t: Tensor, v: Tensor) -> Tensor:
        """eps = sqrt(alpha_bar) v + sqrt(1 - alpha_bar) x_t (from the definitions of x_t, v)."""
        alpha_bar = _per_sample(self.alpha_bar_at(t), xt)
        return alpha_bar.sqrt() * v + (1 - alpha_bar).sqrt() * xt


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    """[N] float64 -> [N, 1, 1, ...] in `like`'s dtype and device, to broadcast per sample."""
    shape = (values.shape[0],) + (1,) * (like.ndim - 1)
    return values.reshape(shape).to(device=like.device, dtype=like.dtype)
