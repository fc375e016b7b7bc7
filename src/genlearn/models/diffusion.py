"""Denoising diffusion models: in pixel space (DDPM) and in an autoencoder's latent space (LDM).

Ho, Jain & Abbeel 2020 train a network eps_theta(x_t, t) to find the noise that the forward
process (`genlearn.diffusion.schedules`) mixed into x_0: the "simple" loss of their Eq. 14,

    L = E_{t, x_0, eps} || eps - eps_theta(sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, t) ||^2,

or, with `prediction="v"`, the same with v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 as
target (Salimans & Ho 2022). Samples come from running the reverse process with a sampler
(`genlearn.diffusion.samplers`: ancestral DDPM or DDIM), which is chosen at sampling time.

Conditioning (a class label, or a caption read by a small transformer) is dropped from 10% of
training examples, so the one network is also unconditional; at sampling time classifier-free
guidance (Ho & Salimans 2022, Eq. 6) extrapolates from the unconditional prediction towards
the conditional one: out = out_uncond + w (out_cond - out_uncond), w = 1 being the plain
conditional model.

Latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion
Models", section 3) runs the same process on the codes of a trained, frozen autoencoder,
scaled to unit variance per dimension (their section 4.3.2), and decodes the sample.

The weights used for sampling are an exponential moving average of the trained ones
(Ho et al., Appendix B).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlearn.diffusion.samplers import (
    DDIMSampler,
    DDPMSampler,
    Sampler,
    predicted_x0_and_eps,
)
from genlearn.diffusion.schedules import SCHEDULES, NoiseSchedule
from genlearn.diffusion.unet import UNet, timestep_embedding
from genlearn.errors import ConfigError
from genlearn.models.autoencoder import Autoencoder, AutoencoderConfig
from genlearn.nn.ema import ExponentialMovingAverage

CONDITIONS = ("none", "class", "text")
SAMPLERS = ("ddpm", "ddim")
PREVIEW_STEPS = 10  # DDIM steps of the snapshots drawn during training
PAD, NULL = "<pad>", "<null>"  # token 0 pads a caption; token 1 alone is "no caption"


@dataclass
class DiffusionConfig:
    image_channels: int = 1
    image_size: int = 28
    space: str = "pixels"  # "pixels" (DDPM) or "latent" (LDM, on `autoencoder`'s codes)
    timesteps: int = 1000
    schedule: str = "cosine"  # "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal)
    # v, not epsilon: from an epsilon guess at the noisiest steps, x_0 = (x_t - sqrt(1 - a) eps)
    # / sqrt(a) multiplies the guess's error by up to 1/sqrt(alpha_bar_T) (~600 for cosine), and
    # a barely trained net then draws the noise's own pattern as content. From v, x_0 is read
    # off without that division (Salimans & Ho 2022): on the tour's digits after 30 s, no
    # sample stayed noise with v, against about a quarter with epsilon.
    prediction: str = "v"  # or "epsilon"
    base_channels: int = 16  # U-Net width at full resolution
    channel_multipliers: list[int] | None = None  # None: (1, 2, 4) for 28/32 px, one more per 2x
    dropout: float = 0.0
    conditional: str = "none"  # "none", "class" or "text"
    num_classes: int = 0
    vocabulary: list[str] = field(default_factory=list)  # text: the words the encoder knows
    max_tokens: int = 0  # text: longest caption, in words
    text_width: int = 64
    text_layers: int = 2
    condition_dropout: float = 0.1  # share of training examples seen without their condition
    guidance: float = 3.0  # default guidance scale when sampling a conditional model
    ema_decay: float = 0.999
    sampler: str = "ddim"  # default sampler of `sample`, `evaluate` and the figures
    sample_steps: int = 50  # its number of steps (DDIM, at most T; DDPM always takes all T)
    # latent diffusion: the frozen autoencoder's model config, where it came from, the MLP
    autoencoder: dict[str, Any] | None = None
    autoencoder_run: str = ""
    latent_width: int = 512
    latent_blocks: int = 4

    def validate(self) -> None:
        checks = [
            (
                self.space in ("pixels", "latent"),
                f"space must be pixels or latent, not {self.space!r}",
            ),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
            (self.prediction in ("epsilon", "v"), "--prediction must be epsilon or v"),
            (self.conditional in CONDITIONS, f"conditional must be one of {', '.join(CONDITIONS)}"),
            (self.sampler in SAMPLERS, f"--sampler must be one of {', '.join(SAMPLERS)}"),
            (self.timesteps >= 2, f"--timesteps must be at least 2, got {self.timesteps}"),
            (self.sample_steps >= 1, f"--steps must be at least 1, got {self.sample_steps}"),
            (0 <= self.condition_dropout < 1, "--condition-dropout must be in [0, 1)"),
            (0 <= self.ema_decay < 1, f"--ema-decay must be in [0, 1), got {self.ema_decay}"),
            (
                self.base_channels >= 8,
                f"--base-channels must be at least 8, got {self.base_channels}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.conditional == "class" and self.num_classes < 2:
            raise ConfigError("a class-conditional model needs a dataset with class labels")
        if self.conditional == "text" and not self.vocabulary:
            raise ConfigError("a text-conditional model needs a dataset with captions")
        if self.space == "latent" and not self.autoencoder:
            raise ConfigError("latent diffusion needs a trained autoencoder: --autoencoder RUN")
        if self.space == "latent" and self.conditional == "text":
            raise ConfigError(
                "latent diffusion here conditions on classes (--conditional), not text: "
                "use genlearn train ddpm --text for text"
            )


# ---- text ------------------------------------------------------------------------------------
def build_vocabulary(captions: list[str]) -> list[str]:
    """Every word of the training captions, after the padding and "no caption" tokens."""
    words = sorted({word for text in captions for word in text.lower().split()})
    return [PAD, NULL, *words]


def tokenize(captions: list[str], vocabulary: list[str], length: int) -> Tensor:
    """Captions -> [N, length] word ids, padded with 0; an unknown word is a ConfigError."""
    index = {word: i for i, word in enumerate(vocabulary)}
    rows = []
    for text in captions:
        words = text.lower().split()
        unknown = [w for w in words if w not in index or w in (PAD, NULL)]
        if unknown:
            known = " ".join(vocabulary[2:])
            raise ConfigError(
                f"the prompt {text!r} uses {', '.join(map(repr, unknown))}, which this model "
                f"never read; it knows: {known}"
            )
        if not words or len(words) > length:
            raise ConfigError(f"a prompt must have 1 to {length} words, {text!r} has {len(words)}")
        rows.append([index[w] for w in words] + [0] * (length - len(words)))
    return torch.tensor(rows, dtype=torch.long)


class TextEncoder(nn.Module):
    """Word ids [N, L] -> token features [N, L, D], a mask of real tokens, and their mean.

    A small pre-norm transformer encoder (Vaswani et al. 2017) trained with the diffusion
    model, as Imagen's ablations train none and Stable Diffusion freezes CLIP's: at this scale
    a grammar of 15 words is learned in minutes."""

    def __init__(self, vocabulary_size: int, max_tokens: int, width: int, layers: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocabulary_size, width)
        self.position_embedding = nn.Parameter(torch.randn(max_tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width,
            nhead=4,
            dim_feedforward=4 * width,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mask = tokens != 0
        h = self.token_embedding(tokens) + self.position_embedding[: tokens.shape[1]]
        h = self.norm(self.transformer(h, src_key_padding_mask=~mask))
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return h, mask, pooled


# ---- the networks ----------------------------------------------------------------------------
class PixelDenoiser(nn.Module):
    """The U-Net and, for text, the encoder it reads: what the moving average copies."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        text = config.conditional == "text"
        self.text_encoder = (
            TextEncoder(
                len(config.vocabulary), config.max_tokens, config.text_width, config.text_layers
            )
            if text
            else None
        )
        self.unet = UNet(
            config.image_channels,
            config.image_size,
            config.base_channels,
            tuple(config.channel_multipliers) if config.channel_multipliers else None,
            num_classes=config.num_classes if config.conditional == "class" else None,
            dropout=config.dropout,
            context_dim=config.text_width if text else None,
        )

    def condition(self, labels: Tensor | None, tokens: Tensor | None) -> dict[str, Tensor]:
        """The U-Net's conditioning inputs, computed once per batch (not once per step)."""
        if tokens is not None and self.text_encoder is not None:
            context, mask, pooled = self.text_encoder(tokens)
            return {"context": context, "context_mask": mask, "pooled": pooled}
        return {"labels": labels} if labels is not None else {}

    def forward(self, x: Tensor, t: Tensor, **condition: Tensor) -> Tensor:
        return self.unet(x, t, **condition)


class LatentDenoiser(nn.Module):
    """For flat latent codes: residual MLP blocks (LayerNorm, SiLU, Linear) with the time and
    class embedding added in each, as the U-Net's residual blocks do for images."""

    def __init__(self, latent_dim: int, width: int, blocks: int, num_classes: int | None):
        super().__init__()
        self.width = width
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.label_embedding = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.num_classes = num_classes
        self.project_in = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "norm": nn.LayerNorm(width),
                    "linear1": nn.Linear(width, width),
                    "embed": nn.Linear(width, width),
                    "linear2": nn.Linear(width, width),
                }
            )
            for _ in range(blocks)
        )
        for block in self.blocks:  # each block starts as the identity
            nn.init.zeros_(block["linear2"].weight)
            nn.init.zeros_(block["linear2"].bias)
        self.norm_out = nn.LayerNorm(width)
        self.project_out = nn.Linear(width, latent_dim)

    def condition(self, labels: Tensor | None, tokens: Tensor | None) -> dict[str, Tensor]:
        return {"labels": labels} if labels is not None else {}

    def forward(self, z: Tensor, t: Tensor, labels: Tensor | None = None) -> Tensor:
        embedding = self.time_mlp(timestep_embedding(t, self.width))
        if self.label_embedding is not None:
            if labels is None:
                labels = torch.full_like(t, self.num_classes, dtype=torch.long)
            embedding = embedding + self.label_embedding(labels)
        h = self.project_in(z)
        for block in self.blocks:
            inner = block["linear1"](F.silu(block["norm"](h))) + block["embed"](F.silu(embedding))
            h = h + block["linear2"](F.silu(inner))
        return self.project_out(F.silu(self.norm_out(h)))


# ---- the model -------------------------------------------------------------------------------
class DiffusionModel(nn.Module):
    """A denoising diffusion model in pixel space; `LatentDiffusion` moves it to latents."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.schedule = NoiseSchedule.named(config.schedule, config.timesteps)
        self.network = self._build_network()
        self.ema = (
            ExponentialMovingAverage(self.network, config.ema_decay, warmup=True)
            if config.ema_decay > 0
            else None
        )

    def _build_network(self) -> nn.Module:
        return PixelDenoiser(self.config)

    # ---- what the model works on ------------------------------------------------------------
    @property
    def sample_shape(self) -> tuple[int, ...]:
        c, s = self.config.image_channels, self.config.image_size
        return (c, s, s)

    @property
    def latent_dim(self) -> int:
        """x_T's size: DDIM is deterministic, so x_T is a latent code (walks, interpolation)."""
        return math.prod(self.sample_shape)

    @property
    def default_steps(self) -> int:
        """DDIM's steps unless asked otherwise: the config's, at most T."""
        return min(self.config.sample_steps, self.schedule.steps)

    @property
    def conditional(self) -> bool:
        """Class-conditional (the contract of the generator figures)."""
        return self.config.conditional == "class"

    @property
    def text_conditional(self) -> bool:
        return self.config.conditional == "text"

    @property
    def uses_labels(self) -> bool:
        """Whether the engine should pass the batch's labels (classes or caption tokens)."""
        return self.config.conditional != "none"

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def _device(self) -> torch.device:
        return next(self.network.parameters()).device

    def to_diffusion_space(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Images in [0, 1] -> x_0 of the diffusion: [-1, 1] pixels."""
        return images * 2 - 1

    def to_images(self, x0: Tensor) -> Tensor:
        """x_0 of the diffusion -> images in [0, 1]."""
        return ((x0.float() + 1) / 2).clamp(0.0, 1.0)

    # ---- training ----------------------------------------------------------------------------
    def forward(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The loss on a batch of images in [0, 1] (Ho et al. Algorithm 1): a random timestep
        per image, noise mixed in by Eq. 4, the network asked for the noise (or v).

        `labels` are class indices or caption token ids; each is replaced by "none" with
        probability `condition_dropout` during training."""
        x0 = self.to_diffusion_space(images, generator)
        n, device = x0.shape[0], x0.device
        t = torch.randint(0, self.schedule.steps, (n,), generator=generator, device=device)
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        xt = self.schedule.q_sample(x0, t, noise)
        if self.training and self.config.conditional != "none" and labels is not None:
            labels = self._drop_conditions(labels, generator)
        condition = self.network.condition(*self._split(labels))
        output = self.network(xt, t, **condition)
        target = (
            noise if self.config.prediction == "epsilon" else self.schedule.v_target(x0, t, noise)
        )
        return {"loss": F.mse_loss(output.float(), target.float())}

    def _split(self, labels: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """(class labels, caption tokens) from the one `labels` tensor the engine passes."""
        if labels is None or self.config.conditional == "none":
            return None, None
        return (labels, None) if self.config.conditional == "class" else (None, labels)

    def null_condition(self, n: int, device: torch.device) -> Tensor:
        """n copies of "no condition": the extra class, or a caption of the NULL token alone."""
        if self.config.conditional == "class":
            return torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        tokens = torch.zeros(n, self.config.max_tokens, dtype=torch.long, device=device)
        tokens[:, 0] = 1
        return tokens

    def _drop_conditions(self, labels: Tensor, generator: torch.Generator | None) -> Tensor:
        drop = torch.rand(len(labels), generator=generator, device=labels.device)
        drop = drop < self.config.condition_dropout
        null = self.null_condition(len(labels), labels.device)
        shape = (-1,) + (1,) * (labels.ndim - 1)
        return torch.where(drop.reshape(shape), null, labels)

    def train(self, mode: bool = True) -> DiffusionModel:
        super().train(mode)
        if self.ema is not None:  # the average only ever samples: no dropout in it
            self.ema.average.eval()
        return self

    def after_optimizer_step(self) -> None:
        """The engine calls this after each update: move the moving average."""
        if self.ema is not None:
            self.ema.update(self.network)

    # ---- the denoiser used for sampling -----------------------------------------------------
    def sampling_network(self, use_ema: bool = True) -> nn.Module:
        return self.ema.average if use_ema and self.ema is not None else self.network

    def conditions(
        self, n: int, labels: Tensor | None = None, prompts: list[str] | None = None
    ) -> Tensor | None:
        """What to condition n samples on, as the training's `labels` tensor (or None)."""
        device = self._device()
        if prompts is not None:
            if not self.text_conditional:
                raise ConfigError(
                    "--prompt needs a text-conditioned model: train one with --text on "
                    "shapes-captions"
                )
            if len(prompts) not in (1, n):
                raise ConfigError(f"give 1 or {n} prompts, got {len(prompts)}")
            tokens = tokenize(prompts, self.config.vocabulary, self.config.max_tokens)
            return tokens.expand(n, -1).to(device) if len(prompts) == 1 else tokens.to(device)
        if labels is not None:
            if not self.conditional:
                raise ConfigError(
                    "--class needs a class-conditional model: train one with --conditional"
                )
            labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            if len(labels) == 1:
                labels = labels.expand(n)
            if len(labels) != n or int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
                raise ConfigError(
                    f"labels must be {n} class indices from 0 to {self.num_classes - 1}"
                )
            return labels.to(device)
        if self.conditional:  # a grid of a class-conditional model cycles through the classes
            return torch.arange(n, device=device) % self.num_classes
        return None

    def denoiser(
        self,
        n: int,
        condition: Tensor | None,
        guidance: float | None = None,
        use_ema: bool = True,
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """(x_t, t) -> the network's prediction for n samples, guided when there is a
        condition: out_uncond + w (out_cond - out_uncond), both halves in one batch."""
        network = self.sampling_network(use_ema)
        if condition is None:
            inputs = self.unconditional_inputs(network, n)
            return lambda x, t: network(x, t, **inputs)
        scale = self.config.guidance if guidance is None else guidance
        both = torch.cat([condition, self.null_condition(n, condition.device)])
        inputs = network.condition(*self._split(both))

        def guided(x: Tensor, t: Tensor) -> Tensor:
            conditional, unconditional = network(
                torch.cat([x, x]), torch.cat([t, t]), **inputs
            ).chunk(2)
            return classifier_free_guidance(conditional, unconditional, scale)

        return guided

    def unconditional_inputs(self, network: nn.Module, n: int) -> dict[str, Tensor]:
        """The network's inputs for "no condition": a text model reads its null caption (as
        the dropped captions of training), a class model its "no label" token."""
        if self.text_conditional:
            return network.condition(None, self.null_condition(n, self._device()))
        return network.condition(None, None)

    def make_sampler(
        self, name: str | None = None, steps: int | None = None, eta: float = 0.0
    ) -> Sampler:
        name = name or self.config.sampler
        clip = 1.0 if self.config.space == "pixels" else None  # latents have no fixed range
        if name == "ddpm":
            return DDPMSampler(self.schedule, self.config.prediction, clip)
        if name == "ddim":
            steps = steps or self.default_steps
            return DDIMSampler(self.schedule, self.config.prediction, clip, steps, eta)
        raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")

    # ---- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
        prompts: list[str] | None = None,
        *,
        sampler: str | None = None,
        steps: int | None = None,
        eta: float = 0.0,
        guidance: float | None = None,
        noise: Tensor | None = None,
        use_ema: bool = True,
        on_step: Callable[[int, Tensor, Tensor], None] | None = None,
    ) -> Tensor:
        """n images [n, C, H, W] in [0, 1] by the reverse process from x_T ~ N(0, I).

        `labels` (one class or n) or `prompts` (one caption or n) condition it, with guidance
        scale `guidance` (default: the config's); the sampler and its steps default to the
        config's. `on_step(t, x_t, x0_estimate)` sees each step (the trajectory figures)."""
        device = self._device()
        if noise is None:
            noise_device = generator.device if generator is not None else device
            noise = torch.randn((n, *self.sample_shape), generator=generator, device=noise_device)
        noise = noise.to(device)
        condition = self.conditions(n, labels, prompts)
        chosen = self.make_sampler(sampler, steps, eta)
        x0 = chosen.sample(
            self.denoiser(n, condition, guidance, use_ema), noise, generator, on_step
        )
        return self.to_images(x0)

    @torch.no_grad()
    def generate(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Images for given x_T's [n, latent_dim] by deterministic DDIM: a fixed map from
        noise to images, so walks between x_T's are smooth (Song et al. section 5.3)."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ConfigError(f"z must be [n, {self.latent_dim}], got {tuple(z.shape)}")
        noise = z.reshape(len(z), *self.sample_shape)
        return self.sample(len(z), labels=labels, sampler="ddim", noise=noise)

    @torch.no_grad()
    def preview(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """`generate` with DDIM's 10 steps: the cheap snapshots taken while training."""
        noise = z.reshape(len(z), *self.sample_shape)
        return self.sample(len(z), labels=labels, sampler="ddim", steps=PREVIEW_STEPS, noise=noise)

    # ---- likelihood --------------------------------------------------------------------------
    @torch.no_grad()
    def negative_elbo(
        self,
        images: Tensor,
        generator: torch.Generator | None = None,
        timesteps_per_image: int = 20,
        use_ema: bool = True,
    ) -> Tensor:
        """An unbiased estimate of each image's variational bound -log p(x_0) <= L (nats),
        Ho et al. Eq. 5: L = L_T + sum_{t>1} L_{t-1} + L_0, with

        - L_T = KL(q(x_T | x_0) || N(0, I)) in closed form,
        - L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)): two Gaussians of the same
          variance beta_tilde_t (the DDPM sampler's), so ||mean_q - mean_p||^2 / (2 beta_tilde_t),
        - L_0 = -log p(x_0 | x_1): a Gaussian of variance beta_1 discretised to the 256 pixel
          levels (Ho et al. section 3.3),

        the sum over t estimated from `timesteps_per_image` stratified draws (one per equal
        slice of 0..T-1), times T / draws. `images` are in [0, 1] at the 256 levels."""
        if self.config.space != "pixels":
            raise ConfigError("the bits-per-dimension bound is for pixel-space models")
        network = self.sampling_network(use_ema)
        unconditional = self.unconditional_inputs(network, len(images))
        x0 = images * 2 - 1
        n, total = len(x0), self.schedule.steps
        draws = min(timesteps_per_image, total)
        bound = gaussian_prior_kl(self.schedule, x0)
        for k in range(draws):
            low, high = k * total // draws, (k + 1) * total // draws
            t = torch.randint(low, high, (n,), generator=generator, device=x0.device)
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
            xt = self.schedule.q_sample(x0, t, noise)
            output = network(xt, t, **unconditional)
            x0_hat, _ = predicted_x0_and_eps(self.schedule, self.config.prediction, output, xt, t)
            terms = self._bound_terms(x0, xt, t, x0_hat.clamp(-1, 1))
            bound = bound + terms * (high - low)  # each draw stands for its slice of timesteps
        return bound

    def _bound_terms(self, x0: Tensor, xt: Tensor, t: Tensor, x0_hat: Tensor) -> Tensor:
        """L_{t-1} for t > 0 (0-based t > 0), L_0 for t = 0, per image."""
        mean_q, variance = self.schedule.posterior(x0, xt, t)
        mean_p, _ = self.schedule.posterior(x0_hat, xt, t)
        safe_variance = variance.clamp(min=1e-20)
        kl = ((mean_q - mean_p) ** 2 / (2 * safe_variance)).flatten(1).sum(1)
        beta_1 = float(self.schedule.betas[0])
        decoder_nll = (
            -discretised_gaussian_log_likelihood(x0, mean_p, math.sqrt(beta_1)).flatten(1).sum(1)
        )
        return torch.where(t == 0, decoder_nll, kl)

    def bits_per_dim(
        self, images: Tensor, generator: torch.Generator | None = None, **kwargs
    ) -> Tensor:
        """The bound in bits per dimension (per pixel and channel), per image."""
        dims = math.prod(images.shape[1:])
        return self.negative_elbo(images, generator, **kwargs) / (dims * math.log(2))


def classifier_free_guidance(conditional: Tensor, unconditional: Tensor, scale: float) -> Tensor:
    """Ho & Salimans 2022, Eq. 6 (with w = 1 + their w): w = 0 unconditional, w = 1 conditional."""
    return unconditional + scale * (conditional - unconditional)


def gaussian_prior_kl(schedule: NoiseSchedule, x0: Tensor) -> Tensor:
    """L_T = KL(N(sqrt(alpha_bar_T) x_0, 1 - alpha_bar_T) || N(0, 1)), summed per image."""
    alpha_bar = float(schedule.alpha_bars[-1])
    mean_sq, variance = alpha_bar * x0.double() ** 2, 1 - alpha_bar
    kl = 0.5 * (mean_sq + variance - 1 - math.log(variance))
    return kl.flatten(1).sum(1).to(x0.dtype)


def discretised_gaussian_log_likelihood(x0: Tensor, mean: Tensor, std: float) -> Tensor:
    """log P(x_0) per pixel for x_0 on the 256 levels of [-1, 1] under N(mean, std^2)
    integrated over each level's bin (the end bins reach to -inf and +inf)."""
    half_bin = 1.0 / 255
    upper = torch.where(
        x0 > 1 - 1e-3, torch.ones_like(x0), torch.special.ndtr((x0 + half_bin - mean) / std)
    )
    lower = torch.where(
        x0 < -1 + 1e-3, torch.zeros_like(x0), torch.special.ndtr((x0 - half_bin - mean) / std)
    )
    return torch.log((upper - lower).clamp(min=1e-12))


# ---- latent diffusion ------------------------------------------------------------------------
class LatentDiffusion(DiffusionModel):
    """Diffusion on the codes of a frozen autoencoder (Rombach et al. 2022)."""

    def __init__(self, config: DiffusionConfig):
        ae_config = AutoencoderConfig(**(config.autoencoder or {}))
        self._latent_size = ae_config.latent_dim
        super().__init__(config)
        self.autoencoder = Autoencoder(ae_config).requires_grad_(False).eval()
        # per-dimension statistics of the training codes: the diffusion sees unit variance
        self.register_buffer("latent_mean", torch.zeros(ae_config.latent_dim))
        self.register_buffer("latent_std", torch.ones(ae_config.latent_dim))

    def _build_network(self) -> nn.Module:
        classes = self.config.num_classes if self.config.conditional == "class" else None
        return LatentDenoiser(
            self._latent_size, self.config.latent_width, self.config.latent_blocks, classes
        )

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self._latent_size,)

    def train(self, mode: bool = True) -> LatentDiffusion:
        super().train(mode)
        self.autoencoder.eval()  # frozen: its layers never switch to training behaviour
        return self

    @torch.no_grad()
    def fit_latent_statistics(self, images: Tensor, batch_size: int = 1000) -> None:
        """Mean and spread of the codes of `images` (uint8), so the codes are scaled to unit
        variance (Rombach et al. section 4.3.2 use one scale; per dimension suits small codes)."""
        device = self._device()
        codes = torch.cat(
            [
                self.autoencoder.encode(images[i : i + batch_size].to(device).float() / 255)
                for i in range(0, len(images), batch_size)
            ]
        )
        self.latent_mean.copy_(codes.mean(0))
        self.latent_std.copy_(codes.std(0).clamp(min=1e-4))

    def to_diffusion_space(
        self, images: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        with torch.no_grad():
            codes = self.autoencoder.encode(images)
        return (codes.float() - self.latent_mean) / self.latent_std

    def to_images(self, x0: Tensor) -> Tensor:
        return self.autoencoder.decode(x0 * self.latent_std + self.latent_mean).clamp(0.0, 1.0)
