"""Autoencoders and the variational autoencoder (Kingma & Welling, 2014).

An encoder maps an image x to a point in a small latent space and a decoder maps it
back. The plain autoencoder learns only to reconstruct, so nothing makes the space
between the training codes decode to anything sensible: it cannot be sampled.

The VAE makes the encoder output a distribution q(z|x) = N(mu(x), diag sigma(x)^2),
samples z = mu + sigma * eps with eps ~ N(0, I) (the reparameterisation trick, Sec. 2.4,
so gradients flow through the sampling), and maximises the evidence lower bound (Eq. 3)

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || N(0, I))  <=  log p(x).

The KL term pulls every code towards the standard normal prior, which is what makes
decoding z ~ N(0, I) give new, plausible images. `beta` scales the KL term
(beta-VAE, Higgins et al. 2017). `iwae_bound` is the importance-weighted bound of
Burda et al. (2016, Eq. 8), tighter as k grows, used to estimate log p(x).

Images are floats in [0, 1] throughout this family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlearn.errors import ConfigError
from genlearn.nn.blocks import ConvDecoder, ConvEncoder, downsampling_plan, mlp

Likelihood = Literal["bernoulli", "gaussian", "logistic"]


@dataclass
class AutoencoderConfig:
    variational: bool = True
    latent_dim: int = 2
    arch: Literal["conv", "mlp"] = "conv"
    image_channels: int = 1
    image_size: int = 28
    conv_channels: list[int] = field(default_factory=list)  # empty: follow the image size
    mlp_hidden: list[int] = field(default_factory=lambda: [512, 256])
    # bernoulli: binary pixels (digits); gaussian: photos, learned per-channel scale;
    # logistic: discretised logistic over the 256 pixel levels (a proper likelihood for 8-bit images)
    likelihood: Likelihood = "bernoulli"
    binarize: bool = (
        True  # bernoulli only: resample binary pixels every step ("dynamic binarisation")
    )
    beta: float = 1.0

    def validate(self) -> None:
        if self.latent_dim < 1:
            raise ConfigError(f"latent_dim must be at least 1, got {self.latent_dim}")
        if self.arch not in ("conv", "mlp"):
            raise ConfigError(f"arch must be 'conv' or 'mlp', got {self.arch!r}")
        if self.likelihood not in ("bernoulli", "gaussian", "logistic"):
            raise ConfigError(
                f"likelihood must be bernoulli, gaussian or logistic, got {self.likelihood!r}"
            )
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}")
        stages = len(self.conv_channels)
        if self.arch == "conv" and stages and self.image_size % 2**stages:
            raise ConfigError(
                f"{stages} conv stages halve the image {stages} times, but {self.image_size} px "
                f"is not divisible by {2**stages}: give fewer --channels"
            )


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) in closed form (Kingma & Welling, App. B), summed per row.

    Summed in float32 even under bf16 autocast: a sum of many small terms needs the digits."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)), summed over the last dimension."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


def reparameterise(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = mu + sigma * eps: the noise is an input, so d z / d(mu, sigma) exists (Sec. 2.4)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + (0.5 * logvar).exp() * eps


class Autoencoder(nn.Module):
    """AE (`variational=False`) or VAE, convolutional or MLP, with a choice of likelihood."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        config.validate()
        self.config = config
        c, s, d = config.image_channels, config.image_size, config.latent_dim
        self.image_shape = (c, s, s)
        code_size = 2 * d if config.variational else d  # a VAE's encoder outputs mu and log sigma^2
        if config.arch == "conv":
            channels = config.conv_channels or downsampling_plan(s)
            encoder = ConvEncoder(c, s, channels)
            self.encoder = nn.Sequential(encoder, nn.Linear(encoder.out_features, code_size))
            self.decoder = ConvDecoder(d, c, s, channels)
        else:
            pixels = c * s * s
            self.encoder = nn.Sequential(nn.Flatten(), mlp([pixels, *config.mlp_hidden, code_size]))
            self.decoder = nn.Sequential(
                mlp([d, *reversed(config.mlp_hidden), pixels]), nn.Unflatten(1, self.image_shape)
            )
        if config.likelihood != "bernoulli":
            # one learned log-scale per channel: the model decides how sharp its images must be
            self.log_scale = nn.Parameter(torch.zeros(1, c, 1, 1))

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def variational(self) -> bool:
        return self.config.variational

    # ---- encoder -------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) as (mu, log sigma^2). For a plain AE the 'posterior' is a point: logvar = -inf."""
        code = self.encoder(x)
        if not self.variational:
            return code, torch.full_like(code, -math.inf)
        mu, logvar = code.chunk(2, dim=-1)
        return mu, logvar.clamp(-30.0, 20.0)  # keeps exp() finite early in training

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code used for exploring the latent space: mu for a VAE, z for an AE."""
        return self.posterior(x)[0]

    # ---- decoder -------------------------------------------------------------------------
    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        """Raw decoder output: Bernoulli logits, or the location of a Gaussian/logistic."""
        return self.decoder(z)

    def mean_image(self, output: torch.Tensor) -> torch.Tensor:
        """E[x|z] in [0, 1] from the raw decoder output."""
        if self.config.likelihood == "bernoulli":
            return torch.sigmoid(output)
        return output.clamp(0.0, 1.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent codes -> images in [0, 1] (the mean of p(x|z))."""
        return self.mean_image(self.decoder_output(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def log_likelihood(self, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """log p(x|z) in nats per image, for targets x in [0, 1] and raw decoder output."""
        lik = self.config.likelihood
        if lik == "bernoulli":
            per_pixel = -F.binary_cross_entropy_with_logits(output, x, reduction="none")
        elif lik == "gaussian":
            log_scale = self.log_scale.clamp(min=-7.0)
            per_pixel = (
                -0.5 * math.log(2 * math.pi)
                - log_scale
                - 0.5 * ((x - output) / log_scale.exp()).pow(2)
            )
        else:
            per_pixel = discretised_logistic_log_prob(x, output, self.log_scale.clamp(min=-7.0))
        return per_pixel.flatten(1).sum(dim=1)

    # ---- sampling ------------------------------------------------------------------------
    def sample(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        """Decode n codes drawn from the prior N(0, I). For an AE this shows its gaps."""
        device = device or next(self.parameters()).device
        # the noise is drawn where the generator lives (a CPU generator works for a GPU model)
        noise_device = generator.device if generator is not None else device
        z = torch.randn(n, self.latent_dim, generator=generator, device=noise_device)
        return self.decode(z.to(device))

    # ---- objective -----------------------------------------------------------------------
    def prepare_targets(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Dynamic binarisation: each step sees a fresh Bernoulli draw of the grey levels."""
        if self.config.likelihood == "bernoulli" and self.config.binarize:
            return torch.bernoulli(x, generator=generator)
        return x

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The training objective on a batch: mean negative ELBO per image (or AE loss).

        Returns `loss` (what is minimised), `recon` (-log p(x|z)) and `kl`, all in nats/image.
        """
        x = self.prepare_targets(x, generator)
        mu, logvar = self.posterior(x)
        if self.variational:
            z = reparameterise(mu, logvar, generator)
            kl = gaussian_kl(mu, logvar)
        else:
            z, kl = mu, torch.zeros(x.shape[0], device=x.device)
        recon = -self.log_likelihood(x, self.decoder_output(z))
        loss = recon + self.config.beta * kl
        return {"loss": loss.mean(), "recon": recon.mean().detach(), "kl": kl.mean().detach()}

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """ELBO per image (beta = 1, one z sample), x already in its target form."""
        mu, logvar = self.posterior(x)
        z = reparameterise(mu, logvar, generator)
        return self.log_likelihood(x, self.decoder_output(z)) - gaussian_kl(mu, logvar)

    @torch.no_grad()
    def iwae_bound(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None, chunk: int = 250
    ) -> torch.Tensor:
        """log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x): the IWAE bound (Burda et al. Eq. 8).

        It is <= log p(x), >= the ELBO, and approaches log p(x) as k grows; with k = 1000
        its negative is the usual 'NLL' of VAE papers. Samples are processed `chunk` at a time.
        """
        if not self.variational:
            raise ConfigError("the IWAE bound needs a VAE: a plain autoencoder has no likelihood")
        mu, logvar = self.posterior(x)
        log_weights = []
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            eps = torch.randn((m, *mu.shape), generator=generator, device=x.device)
            z = mu + (0.5 * logvar).exp() * eps  # [m, B, d]
            output = self.decoder_output(z.flatten(0, 1))
            log_px_z = self.log_likelihood(x.repeat(m, 1, 1, 1), output).view(m, -1)
            log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
            log_qz = gaussian_log_density(z, mu, logvar)
            log_weights.append(log_px_z + log_pz - log_qz)
        return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(k)


def discretised_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, levels: int = 256
) -> torch.Tensor:
    """log P(pixel bin of x) under a logistic(mean, s) discretised into `levels` bins on [0, 1].

    The edge bins take the whole tails (as in PixelCNN++, Salimans et al. 2017, Sec. 2.1),
    so the probabilities of all bins sum to one and the figure is a true log-likelihood.
    Computed in log space: sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - e^(b - a)), so a sharp
    logistic far from the pixel keeps a finite log-probability and a useful gradient.
    """
    half_bin = 0.5 / (levels - 1)
    inv_scale = torch.exp(-log_scale)
    upper = (x + half_bin - mean) * inv_scale  # a: the bin's upper edge, standardised
    lower = (x - half_bin - mean) * inv_scale  # b < a
    log_left_tail = F.logsigmoid(upper)  # bin 0: P(X < upper edge)
    log_right_tail = F.logsigmoid(-lower)  # bin 255: P(X > lower edge)
    log_interior = log_left_tail + log_right_tail + torch.log(-torch.expm1(lower - upper))
    return torch.where(
        x > 1 - half_bin, log_right_tail, torch.where(x < half_bin, log_left_tail, log_interior)
    )
