"""Samplers: ways to run the reverse process, separate from the network that denoises.

A trained network predicts the noise in x_t (or v, or x_0); a sampler decides which timesteps
to visit and how to step between them. So one trained model can be sampled either way:

- `DDPMSampler`: ancestral sampling (Ho et al. 2020, Algorithm 2): T stochastic steps, each
  drawing x_{t-1} from the posterior q(x_{t-1} | x_t, x_0 = the network's estimate).
- `DDIMSampler`: Song, Meng & Ermon 2021 ("Denoising Diffusion Implicit Models"), Eq. 12:
  any subsequence of the timesteps; eta = 0 is deterministic (the same noise, the same
  image), eta = 1 matches DDPM's variance on that subsequence.

A denoiser is any callable `(x_t, t) -> prediction` with t a [N] tensor of 0-based timesteps;
`prediction` says what it returns ("epsilon", "v" or "x0"). Guidance wraps the denoiser
(see `guided`), so the samplers never need to know about conditions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from genlearn.diffusion.schedules import NoiseSchedule
from genlearn.errors import ConfigError

Denoiser = Callable[[Tensor, Tensor], Tensor]
PREDICTIONS = ("epsilon", "v", "x0")


def predicted_x0_and_eps(
    schedule: NoiseSchedule, prediction: str, output: Tensor, xt: Tensor, t: Tensor
) -> tuple[Tensor, Tensor]:
    """The network's output read as (x_0 estimate, noise estimate), whatever it predicts."""
    if prediction == "epsilon":
        eps = output
        return schedule.x0_from_eps(xt, t, eps), eps
    if prediction == "v":
        eps = schedule.eps_from_v(xt, t, output)
        return schedule.x0_from_eps(xt, t, eps), eps
    if prediction == "x0":
        return output, schedule.eps_from_x0(xt, t, output)
    raise ConfigError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")


@dataclass
class Sampler:
    """What both samplers share: the schedule, what the network predicts, x_0 clipping."""

    schedule: NoiseSchedule
    prediction: str = "epsilon"
    clip: float | None = 1.0  # clamp each x_0 estimate to [-clip, clip] (data range)

    def timesteps(self) -> list[int]:
        raise NotImplementedError

    def step(
        self, xt: Tensor, t: int, t_prev: int, output: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        raise NotImplementedError

    def estimate(self, xt: Tensor, t: int, output: Tensor) -> tuple[Tensor, Tensor]:
        steps = torch.full((xt.shape[0],), t, dtype=torch.long)
        x0, eps = predicted_x0_and_eps(self.schedule, self.prediction, output, xt, steps)
        if self.clip is not None:
            x0 = x0.clamp(-self.clip, self.clip)
            eps = self.schedule.eps_from_x0(xt, steps, x0)  # consistent with the clipped x_0
        return x0, eps

    @torch.no_grad()
    def sample(
        self,
        denoiser: Denoiser,
        noise: Tensor,
        generator: torch.Generator | None = None,
        on_step: Callable[[int, Tensor, Tensor], None] | None = None,
    ) -> Tensor:
        """Run the reverse process from `noise` (x_T); returns x_0.

        `on_step(t, x_t, x0_estimate)` sees every step, e.g. to record the trajectory."""
        x = noise
        times = self.timesteps()
        for t, t_prev in zip(times, [*times[1:], -1], strict=True):
            steps = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            output = denoiser(x, steps)
            x_next = self.step(x, t, t_prev, output, generator)
            if on_step is not None:
                on_step(t, x, self.estimate(x, t, output)[0])
            x = x_next
        return x


@dataclass
class DDPMSampler(Sampler):
    """Ancestral sampling over all T steps (Algorithm 2), with the posterior variance
    beta_tilde_t (Ho et al. found it and beta_t give similar samples)."""

    def timesteps(self) -> list[int]:
        return list(range(self.schedule.steps - 1, -1, -1))

    def step(self, xt, t, t_prev, output, generator):
        x0, _ = self.estimate(xt, t, output)
        steps = torch.full((xt.shape[0],), t, dtype=torch.long)
        mean, variance = self.schedule.posterior(x0, xt, steps)
        if t == 0:
            return mean  # the last step adds no noise (beta_tilde_1 = 0)
        noise = fresh_noise(xt, generator)
        return mean + variance.sqrt() * noise


@dataclass
class DDIMSampler(Sampler):
    """DDIM (Song et al. Eq. 12) on `num_steps` evenly spaced timesteps:

    x_{t'} = sqrt(alpha_bar_{t'}) x0_hat + sqrt(1 - alpha_bar_{t'} - sigma^2) eps_hat + sigma z,
    sigma = eta sqrt((1 - alpha_bar_{t'}) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_{t'}).
    """

    num_steps: int = 50
    eta: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.num_steps <= self.schedule.steps:
            raise ConfigError(
                f"--steps must be from 1 to {self.schedule.steps} for DDIM, got {self.num_steps}"
            )
        if self.eta < 0:
            raise ConfigError(f"--eta must be 0 or more, got {self.eta}")

    def timesteps(self) -> list[int]:
        """Evenly spaced from T-1 down to 0, both ends included (the "linspace" spacing of
        Lin et al. 2024, which visits the noisiest step); one step visits T-1 alone."""
        total = self.schedule.steps
        spaced = torch.linspace(total - 1, 0, self.num_steps).round().long().tolist()
        return list(dict.fromkeys(spaced))

    def step(self, xt, t, t_prev, output, generator):
        x0, eps = self.estimate(xt, t, output)
        alpha_bar = float(self.schedule.alpha_bar_at(torch.tensor([t]))[0])
        alpha_bar_prev = float(self.schedule.alpha_bar_at(torch.tensor([t_prev]))[0])
        sigma = ddim_sigma(alpha_bar, alpha_bar_prev, self.eta)
        direction = max(0.0, 1 - alpha_bar_prev - sigma**2) ** 0.5
        x_prev = alpha_bar_prev**0.5 * x0 + direction * eps
        if sigma > 0:
            noise = fresh_noise(xt, generator)
            x_prev = x_prev + sigma * noise
        return x_prev


def fresh_noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
    """N(0, I) shaped like `like`, drawn where the generator lives (a seeded CPU generator
    gives the same samples on any device), then moved to `like`'s device."""
    device = generator.device if generator is not None else like.device
    noise = torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype)
    return noise.to(like.device)


def ddim_sigma(alpha_bar: float, alpha_bar_prev: float, eta: float) -> float:
    """Song et al. Eq. 16: the noise scale of a DDIM step (0 for eta = 0)."""
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)) ** 0.5
