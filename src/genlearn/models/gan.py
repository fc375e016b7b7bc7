"""Generative adversarial networks: DCGAN, WGAN and WGAN-GP.

A generator G maps noise z ~ N(0, I) to an image; a discriminator D is trained to tell
G's images from the data, and G is trained to fool it (Goodfellow et al. 2014, Eq. 1):

    min_G max_D  E_x[log D(x)] + E_z[log(1 - D(G(z)))].

The two networks take turns (Algorithm 1): a step on D with G fixed, then a step on G
through a frozen D. Early in training D wins easily and log(1 - D(G(z))) saturates, so G
instead maximises log D(G(z)), the "non-saturating" loss of Sec. 3. DCGAN (Radford et al.
2016, Sec. 3) is the convolutional architecture that made this train reliably.

WGAN (Arjovsky et al. 2017) replaces the classifier by a critic whose score difference
E[D(x)] - E[D(G(z))] estimates the Wasserstein-1 distance (Eq. 3) provided D is
1-Lipschitz, enforced crudely by clipping every weight to [-c, c] (Algorithm 1). WGAN-GP
(Gulrajani et al. 2017, Eq. 3) enforces it instead with a penalty on the critic's input
gradient at random points between real and generated images. Both train the critic
n_critic times per generator step.

Images are floats in [0, 1] outside this module and in [-1, 1] inside (G ends in tanh).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from genlearn.errors import ConfigError
from genlearn.nn.ema import STATISTICS_BATCH, ExponentialMovingAverage

if TYPE_CHECKING:
    from genlearn.train.engine import TrainConfig

Variant = Literal["dcgan", "wgan", "wgan-gp"]
LossName = Literal["bce", "hinge", "wasserstein"]
Conditioning = Literal["none", "concat", "projection"]
CriticNorm = Literal["batch", "layer", "none"]
MAX_IMAGE_SIZE = 1024


class Recipe(NamedTuple):
    """What each paper trained with; a GANConfig field left at None takes the value here."""

    loss: str
    n_critic: int
    optimizer: str
    lr: float
    betas: tuple[float, float] | None
    critic_norm: str


RECIPES: dict[str, Recipe] = {
    # Radford et al. Sec. 4: Adam, lr 2e-4, beta1 0.5 ("0.9 oscillated and was unstable")
    "dcgan": Recipe("bce", 1, "adam", 2e-4, (0.5, 0.999), "batch"),
    # Arjovsky et al. Algorithm 1: RMSProp, lr 5e-5 (momentum made the critic unstable)
    "wgan": Recipe("wasserstein", 5, "rmsprop", 5e-5, None, "batch"),
    # Gulrajani et al. Algorithm 1: Adam, lr 1e-4, betas (0, 0.9); layer norm, never batch norm
    "wgan-gp": Recipe("wasserstein", 5, "adam", 1e-4, (0.0, 0.9), "layer"),
}


@dataclass
class GANConfig:
    variant: Variant = "dcgan"
    loss: LossName | None = None  # None: the variant's (bce for dcgan, wasserstein otherwise)
    image_size: int = 28  # 28, or a power of two from 16 (16, 32, 64, 128, ...)
    image_channels: int = 1
    latent_dim: int = 100
    generator_width: int = 64  # channels of G's last hidden layer; they double per stage inwards
    critic_width: int = 64  # channels of D's first layer; they double per stage
    critic_norm: CriticNorm | None = None  # None: the variant's (batch, or layer for wgan-gp)
    conditional: Conditioning = "none"
    num_classes: int = 0
    n_critic: int | None = None  # critic steps per generator step; None: 1 (dcgan) or 5
    gp_weight: float = 10.0  # lambda of WGAN-GP's penalty (Gulrajani et al. use 10)
    clip_value: float = 0.01  # c of WGAN's weight clipping
    ema_decay: float = 0.999  # 0: no moving average of G
    ema_warmup: bool = True  # average over at most ~t/10 updates at update t (short runs)
    betas: tuple[float, float] | None = None  # Adam's; None: the recipe's
    # the learning rate is the training's (TrainConfig.lr): each family's training defaults
    # carry its recipe's rate, and --lr replaces it

    # ---- the recipe, with this config's choices applied ----
    @property
    def recipe(self) -> Recipe:
        if self.variant not in RECIPES:
            raise ConfigError(f"variant must be dcgan, wgan or wgan-gp, got {self.variant!r}")
        base = RECIPES[self.variant]
        return Recipe(
            loss=self.loss or base.loss,
            n_critic=self.n_critic if self.n_critic is not None else base.n_critic,
            optimizer=base.optimizer,
            lr=base.lr,
            betas=tuple(self.betas) if self.betas is not None else base.betas,
            critic_norm=self.critic_norm or base.critic_norm,
        )

    def resolved(self) -> GANConfig:
        """This config with the recipe's choices written in, so config.json says what ran."""
        recipe = self.recipe
        return replace(
            self,
            loss=recipe.loss,
            n_critic=recipe.n_critic,
            critic_norm=recipe.critic_norm,
            betas=recipe.betas,
        )

    def validate(self) -> None:
        recipe = self.recipe  # checks the variant
        if recipe.loss not in ("bce", "hinge", "wasserstein"):
            raise ConfigError(f"loss must be bce, hinge or wasserstein, got {self.loss!r}")
        if self.variant == "dcgan" and recipe.loss == "wasserstein":
            raise ConfigError(
                "the wasserstein loss needs a Lipschitz critic: use variant wgan (weight "
                "clipping) or wgan-gp (gradient penalty), not dcgan"
            )
        if self.variant == "wgan" and recipe.loss != "wasserstein":
            raise ConfigError(
                f"weight clipping (variant wgan) belongs to the wasserstein loss, not "
                f"{recipe.loss!r}: use variant dcgan or wgan-gp for {recipe.loss}"
            )
        if recipe.critic_norm not in ("batch", "layer", "none"):
            raise ConfigError(f"critic_norm must be batch, layer or none, got {self.critic_norm!r}")
        if self.variant == "wgan-gp" and recipe.critic_norm == "batch":
            raise ConfigError(
                "wgan-gp cannot use batch norm in the critic: the gradient penalty is per image "
                "and batch norm mixes the images of a batch (use layer or none)"
            )
        if self.image_size != 28 and not (
            16 <= self.image_size <= MAX_IMAGE_SIZE and _is_power_of_two(self.image_size)
        ):
            raise ConfigError(
                f"a GAN's image size must be 28 or a power of two from 16 to {MAX_IMAGE_SIZE}, "
                f"got {self.image_size}"
            )
        if self.image_channels not in (1, 3):
            raise ConfigError(f"image_channels must be 1 or 3, got {self.image_channels}")
        for name in ("latent_dim", "generator_width", "critic_width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.conditional not in ("none", "concat", "projection"):
            raise ConfigError(
                f"conditioning must be projection or concat (or none), got {self.conditional!r}"
            )
        if self.conditional != "none" and self.num_classes < 2:
            raise ConfigError(
                f"a conditional GAN needs num_classes >= 2 (a labelled dataset), "
                f"got {self.num_classes}"
            )
        if recipe.n_critic < 1:
            raise ConfigError(f"n_critic must be at least 1, got {recipe.n_critic}")
        if self.variant == "wgan-gp" and not self.gp_weight > 0:
            raise ConfigError(f"wgan-gp needs gp_weight > 0, got {self.gp_weight}")
        if self.variant == "wgan" and not self.clip_value > 0:
            raise ConfigError(f"wgan needs clip_value > 0, got {self.clip_value}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"ema_decay must be in [0, 1) (0 disables), got {self.ema_decay}")
        if self.betas is not None:
            if recipe.optimizer != "adam":
                raise ConfigError(
                    f"betas are Adam's, but {self.variant} trains with {recipe.optimizer}"
                )
            if len(recipe.betas) != 2 or not all(0 <= b < 1 for b in recipe.betas):
                raise ConfigError(f"betas must be two numbers in [0, 1), got {self.betas}")


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def stage_plan(image_size: int) -> tuple[int, int]:
    """(first feature-map size, number of stride-2 stages): 28 = 7 * 2^2, 2^k = 4 * 2^(k-2).

    G starts from a 7x7 (28 px) or 4x4 map and doubles it once per stage; D mirrors it, so
    the architecture follows the image size with no padding or cropping."""
    start = 7 if image_size % 7 == 0 else 4
    return start, round(math.log2(image_size // start))


def stage_widths(base: int, stages: int) -> list[int]:
    """Channels from the smallest map outwards: base * 2^(stages-1), ..., base (capped at 8x).

    With base 64 at 64 px this is DCGAN's 512-256-128-64 (Radford et al. Fig. 1, halved)."""
    return [base * 2 ** min(stages - 1 - i, 3) for i in range(stages)]


# ---- the networks (Radford et al. Sec. 3) ------------------------------------------------
class Generator(nn.Module):
    """z -> image in [-1, 1]: project and reshape, then one fractionally-strided convolution
    per doubling, with batch norm and ReLU, and tanh at the output (no norm there)."""

    def __init__(
        self,
        latent_dim: int,
        image_channels: int,
        image_size: int,
        width: int,
        num_classes: int = 0,
    ):
        super().__init__()
        self.num_classes = num_classes  # > 0: a one-hot label is concatenated to z
        self.start, stages = stage_plan(image_size)
        widths = stage_widths(width, stages)
        self.start_channels = widths[0]
        # "project and reshape" is a matrix multiplication; the norm that follows makes bias moot
        self.project = nn.Linear(latent_dim + num_classes, widths[0] * self.start**2, bias=False)
        self.project_norm = nn.BatchNorm2d(widths[0])
        layers: list[nn.Module] = []
        for a, b in zip(widths, widths[1:], strict=False):
            layers += [
                nn.ConvTranspose2d(a, b, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(b),
                nn.ReLU(),
            ]
        layers += [
            nn.ConvTranspose2d(widths[-1], image_channels, 4, stride=2, padding=1),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.num_classes:
            z = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1)
        h = self.project(z).view(-1, self.start_channels, self.start, self.start)
        h = F.relu(self.project_norm(h))
        # channels-last is the fast layout for CPU convolutions
        return self.net(h.contiguous(memory_format=torch.channels_last))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # one group: normalises each image over (C, H, W), i.e. layer norm
        return nn.GroupNorm(1, channels)
    return nn.Identity()


class Discriminator(nn.Module):
    """Image -> one real-valued score per image (a logit, or a critic's value).

    One strided convolution per halving with LeakyReLU(0.2); no norm on the input layer
    (Radford et al. Sec. 3). Conditioning: "concat" feeds the one-hot label as extra input
    channels (Mirza & Osindero 2014); "projection" adds <embed(y), phi(x)> to the output,
    Miyato & Koyama (2018, Eq. 3), where phi(x) are the last features.
    """

    def __init__(
        self,
        image_channels: int,
        image_size: int,
        width: int,
        norm: str = "batch",
        conditional: str = "none",
        num_classes: int = 0,
    ):
        super().__init__()
        self.conditional, self.num_classes = conditional, num_classes
        start, stages = stage_plan(image_size)
        widths = list(reversed(stage_widths(width, stages)))
        previous = image_channels + (num_classes if conditional == "concat" else 0)
        layers: list[nn.Module] = []
        for i, channels in enumerate(widths):
            with_norm = i > 0 and norm != "none"
            layers.append(nn.Conv2d(previous, channels, 4, stride=2, padding=1, bias=not with_norm))
            if with_norm:
                layers.append(_norm(norm, channels))
            layers.append(nn.LeakyReLU(0.2))
            previous = channels
        self.features = nn.Sequential(*layers, nn.Flatten())
        feature_dim = previous * start**2
        # a linear map of the flattened last map = DCGAN's final start x start convolution
        self.head = nn.Linear(feature_dim, 1)
        if conditional == "projection":
            self.embed = nn.Embedding(num_classes, feature_dim)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.conditional == "concat":
            one_hot = F.one_hot(labels, self.num_classes).to(x.dtype)[:, :, None, None]
            x = torch.cat([x, one_hot.expand(-1, -1, *x.shape[2:])], dim=1)
        phi = self.features(x)
        score = self.head(phi).squeeze(1)
        if self.conditional == "projection":
            score = score + (self.embed(labels) * phi).sum(dim=1)
        return score


@torch.no_grad()
def dcgan_init_(module: nn.Module) -> None:
    """Weights from N(0, 0.02) (Radford et al. Sec. 4); norm scales from N(1, 0.02) and biases
    0 (the PyTorch examples' convention; the paper does not say)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# ---- losses: D's (or the critic's) and G's, on raw scores --------------------------------
def bce_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """-E[log sigmoid(D(x))] - E[log(1 - sigmoid(D(G(z))))]: Goodfellow et al. Eq. 1, negated.

    softplus(-s) = -log sigmoid(s) and softplus(s) = -log(1 - sigmoid(s)), stable for any s."""
    return F.softplus(-real_scores.float()).mean() + F.softplus(fake_scores.float()).mean()


def bce_generator_loss(fake_scores: Tensor) -> Tensor:
    """Non-saturating: -E[log sigmoid(D(G(z)))] (Goodfellow et al. Sec. 3), which keeps a
    strong gradient exactly when D rejects G's images, unlike E[log(1 - D(G(z)))]."""
    return F.softplus(-fake_scores.float()).mean()


def hinge_discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[relu(1 - D(x))] + E[relu(1 + D(G(z)))] (Lim & Ye 2017; Miyato et al. 2018, Eq. 16)."""
    return F.relu(1 - real_scores.float()).mean() + F.relu(1 + fake_scores.float()).mean()


def hinge_generator_loss(fake_scores: Tensor) -> Tensor:
    """-E[D(G(z))]."""
    return -fake_scores.float().mean()


def wasserstein_critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[D(G(z))] - E[D(x)]: minus the critic's estimate of W1 (Arjovsky et al. Eq. 3)."""
    return fake_scores.float().mean() - real_scores.float().mean()


def wasserstein_generator_loss(fake_scores: Tensor) -> Tensor:
    """-E[D(G(z))]."""
    return -fake_scores.float().mean()


LOSSES: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "bce": (bce_discriminator_loss, bce_generator_loss),
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
    "wasserstein": (wasserstein_critic_loss, wasserstein_generator_loss),
}


# ---- keeping the critic Lipschitz ----------------------------------------------------------
def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x_hat = eps * x + (1 - eps) * x_tilde with eps ~ U[0, 1] per image (Gulrajani et al.
    Algorithm 1, line 6); eps is drawn on the generator's device."""
    device = generator.device if generator is not None else real.device
    eps = torch.rand(real.shape[0], generator=generator, device=device, dtype=torch.float32)
    eps = eps.to(real.device, real.dtype).view(-1, *([1] * (real.dim() - 1)))
    return eps * real.detach() + (1 - eps) * fake.detach()


def gradient_penalty(
    critic: Callable[[Tensor, Tensor | None], Tensor],
    real: Tensor,
    fake: Tensor,
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    weight: float = 10.0,
    create_graph: bool = True,
) -> Tensor:
    """lambda * E[(||grad D(x_hat)||_2 - 1)^2] at random interpolates (Gulrajani et al. Eq. 3).

    An optimal 1-Lipschitz critic has gradient norm 1 almost everywhere on the lines between
    the two distributions (their Prop. 1), so that is where it is asked for. `create_graph`
    keeps the gradient differentiable: the penalty must be minimised with respect to D's
    weights, a second-order term. The norm is taken in float32 even under autocast.
    """
    with torch.enable_grad():  # works inside no_grad too (evaluation)
        x_hat = interpolate(real, fake, generator).requires_grad_(True)
        scores = critic(x_hat, labels)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=create_graph)
        norms = grad.float().flatten(1).norm(dim=1)
        return weight * (norms - 1).pow(2).mean()


@torch.no_grad()
def clip_weights_(module: nn.Module, clip_value: float) -> None:
    """WGAN's clipping (Arjovsky et al. Algorithm 1, line 7): every parameter into [-c, c],
    norm scales and biases included, which bounds the critic's Lipschitz constant."""
    for p in module.parameters():
        p.clamp_(-clip_value, clip_value)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Within the block no gradient reaches `module`'s parameters: G's loss is back-propagated
    through D without filling D's .grad (or spending time on it). Restores each flag after."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def grad_norm(parameters: Iterable[nn.Parameter]) -> Tensor:
    """Global L2 norm of the gradients (of the loss as scaled for backward, under fp16)."""
    parameters = list(parameters)
    norms = [p.grad.detach().float().norm() for p in parameters if p.grad is not None]
    if not norms:
        return torch.zeros((), device=parameters[0].device if parameters else None)
    return torch.linalg.vector_norm(torch.stack(norms))


# ---- the model the engine trains ---------------------------------------------------------
class GAN(nn.Module):
    """Generator + discriminator (or critic), trained by `training_step` with two optimisers."""

    def __init__(self, config: GANConfig):
        super().__init__()
        config.validate()
        self.config = config
        recipe = config.recipe
        self.loss_name, self.n_critic = recipe.loss, recipe.n_critic
        self.discriminator_loss, self.generator_loss = LOSSES[recipe.loss]
        c, s = config.image_channels, config.image_size
        self.image_shape = (c, s, s)
        classes = config.num_classes if config.conditional != "none" else 0
        self.num_classes = classes
        # G always conditions by concatenation; "projection" is about how D uses the label
        self.generator = Generator(config.latent_dim, c, s, config.generator_width, classes)
        self.discriminator = Discriminator(
            c, s, config.critic_width, recipe.critic_norm, config.conditional, classes
        )
        dcgan_init_(self.generator)
        dcgan_init_(self.discriminator)
        # a registered submodule, so state_dict (weights files, checkpoints) carries it
        self.ema = (
            ExponentialMovingAverage(self.generator, config.ema_decay, config.ema_warmup)
            if config.ema_decay > 0
            else None
        )
        # the norm of G's last update, reported on the steps where G does not move
        self.register_buffer("last_grad_norm_g", torch.zeros(()))  # saved: a resumed run logs it

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def _device(self) -> torch.device:
        return self.generator.project.weight.device

    def _noise(self, n: int, generator: torch.Generator | None) -> Tensor:
        device = self._device()
        noise_device = generator.device if generator is not None else device
        return torch.randn(n, self.latent_dim, generator=generator, device=noise_device).to(device)

    def _training_labels(self, labels: Tensor | None) -> Tensor | None:
        """Data labels: ignored by an unconditional GAN, required by a conditional one."""
        if not self.conditional:
            return None
        if labels is None:
            raise ConfigError(
                "a conditional GAN needs labels: train it on a labelled dataset "
                "(or use conditional='none')"
            )
        return labels

    # ---- optimisers ------------------------------------------------------------------------
    def make_optimizers(self, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        """One optimiser per network, with the variant's recipe (RECIPES).

        `config` is the engine's TrainConfig, whose lr the family sets to the recipe's unless
        the user gives --lr. Every group records it as "base_lr", which the engine's schedule
        scales."""
        recipe = self.config.recipe
        lr = config.lr
        weight_decay = getattr(config, "weight_decay", 0.0)
        optimizers = {
            "discriminator": self._optimizer(self.discriminator, recipe, lr, weight_decay),
            "generator": self._optimizer(self.generator, recipe, lr, weight_decay),
        }
        for optimizer in optimizers.values():
            for group in optimizer.param_groups:
                group["base_lr"] = lr
        return optimizers

    @staticmethod
    def _optimizer(
        network: nn.Module, recipe: Recipe, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        parameters = list(network.parameters())
        if recipe.optimizer == "rmsprop":
            return torch.optim.RMSprop(parameters, lr=lr, weight_decay=weight_decay)
        try:  # the fused kernel updates every parameter in one pass (fast for small models)
            return torch.optim.Adam(
                parameters, lr=lr, betas=recipe.betas, weight_decay=weight_decay, fused=True
            )
        except (RuntimeError, TypeError):
            return torch.optim.Adam(
                parameters, lr=lr, betas=recipe.betas, weight_decay=weight_decay
            )

    # ---- one round of the game ---------------------------------------------------------------
    def discriminator_step(
        self,
        real: Tensor,
        labels: Tensor | None,
        optimizer: torch.optim.Optimizer,
        *,
        generator: torch.Generator,
        backward: Callable[[Tensor], None],
    ) -> dict[str, Tensor]:
        """One update of D (or the critic) on real images in [-1, 1] and a batch from G.

        Real and generated images go through D as separate batches, so batch norm never
        mixes them (DCGAN practice). The generated batch is drawn without a graph: this
        step does not train G."""
        with torch.no_grad():
            fake = self.generator(self._noise(len(real), generator), labels)
        real_scores = self.discriminator(real, labels)
        fake_scores = self.discriminator(fake, labels)
        loss = self.discriminator_loss(real_scores, fake_scores)
        out = self._score_summary(real_scores, fake_scores)
        total = loss
        if self.config.variant == "wgan-gp":
            gp = gradient_penalty(
                self.discriminator, real, fake, labels, generator, weight=self.config.gp_weight
            )
            total = loss + gp
            out["gp"] = gp.detach()
        optimizer.zero_grad(set_to_none=True)
        backward(total)
        out["grad_norm_d"] = grad_norm(self.discriminator.parameters())
        optimizer.step()
        if self.config.variant == "wgan":
            clip_weights_(self.discriminator, self.config.clip_value)
        out["loss_d"] = total.detach()
        # G's loss on this batch, for the steps where G does not move (n_critic > 1)
        out["loss_g"] = self.generator_loss(fake_scores.detach())
        return out

    def generator_step(
        self,
        n: int,
        labels: Tensor | None,
        optimizer: torch.optim.Optimizer,
        *,
        generator: torch.Generator,
        backward: Callable[[Tensor], None],
    ) -> dict[str, Tensor]:
        """One update of G through the frozen D on a fresh noise batch (Goodfellow et al.
        Algorithm 1 samples new z for it), then the moving average of G."""
        with frozen(self.discriminator):
            fake = self.generator(self._noise(n, generator), labels)
            loss = self.generator_loss(self.discriminator(fake, labels))
            optimizer.zero_grad(set_to_none=True)
            backward(loss)
            norm = grad_norm(self.generator.parameters())
            optimizer.step()
        if self.ema is not None:
            self.ema.update(self.generator)
        self.last_grad_norm_g.copy_(norm)
        return {"loss_g": loss.detach(), "grad_norm_g": norm}

    def training_step(
        self,
        batch: Tensor,
        labels: Tensor | None,
        optimizers: dict[str, torch.optim.Optimizer],
        *,
        generator: torch.Generator,
        backward: Callable[[Tensor], None],
        step: int,
    ) -> dict[str, Tensor]:
        """A critic step on every call; a generator step on calls with (step + 1) % n_critic
        == 0, i.e. after every n_critic critic steps (Arjovsky et al. Algorithm 1). Deciding
        by the global `step`, not a counter, makes a resumed run take the same turns.

        Returns the same keys on every call: loss_d (wgan-gp's penalty included, and also
        reported alone as gp), loss_g, d_real, d_fake, grad_norm_d, grad_norm_g, and
        wasserstein for that loss. No "loss": no single number is minimised, so the engine
        shows loss_d and loss_g. On a critic-only call loss_g is G's loss on that call's
        generated batch and grad_norm_g the norm of G's last update."""
        real = batch * 2 - 1
        labels = self._training_labels(labels)
        out = self.discriminator_step(
            real, labels, optimizers["discriminator"], generator=generator, backward=backward
        )
        if (step + 1) % self.n_critic == 0:
            out.update(
                self.generator_step(
                    len(real),
                    labels,
                    optimizers["generator"],
                    generator=generator,
                    backward=backward,
                )
            )
        else:
            out["grad_norm_g"] = self.last_grad_norm_g.clone()
        return out

    def _score_summary(self, real_scores: Tensor, fake_scores: Tensor) -> dict[str, Tensor]:
        """Mean D(x), D(G(z)): probabilities for bce, raw scores otherwise; and W1's estimate."""
        real_scores, fake_scores = real_scores.detach().float(), fake_scores.detach().float()
        if self.loss_name == "bce":
            real_scores, fake_scores = torch.sigmoid(real_scores), torch.sigmoid(fake_scores)
        out = {"d_real": real_scores.mean(), "d_fake": fake_scores.mean()}
        if self.loss_name == "wasserstein":
            out["wasserstein"] = out["d_real"] - out["d_fake"]
        return out

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, labels: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Both losses on a batch of images in [0, 1], updating nothing (evaluation).

        D scores real and generated images as it does in training, each batch normalised by
        its own statistics: its running statistics mix real and generated batches, so eval
        mode would score with a D that never existed. `loss` is loss_d + loss_g: a number to
        log, not an objective (each network minimises its own). The penalty of wgan-gp is
        included in loss_d, as in training."""
        with torch.no_grad():
            real = x * 2 - 1
            labels = self._training_labels(labels)
            if labels is not None:
                self._check_labels(labels, len(x))
            fake = self.generator(self._noise(len(x), generator), labels)
            real_scores = self._scores_as_in_training(real, labels)
            fake_scores = self._scores_as_in_training(fake, labels)
            out = self._score_summary(real_scores, fake_scores)
            loss_d = self.discriminator_loss(real_scores, fake_scores)
        if self.config.variant == "wgan-gp":
            gp = gradient_penalty(
                self.discriminator,
                real,
                fake,
                labels,
                generator,
                weight=self.config.gp_weight,
                create_graph=False,
            ).detach()
            out["gp"], loss_d = gp, loss_d + gp
        out["loss_d"] = loss_d
        out["loss_g"] = self.generator_loss(fake_scores)
        out["loss"] = out["loss_d"] + out["loss_g"]
        return out

    def _scores_as_in_training(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """D in training mode on copies of its buffers: batch statistics, nothing written."""
        buffers = {name: b.clone() for name, b in self.discriminator.named_buffers()}
        was_training = self.discriminator.training
        self.discriminator.train()
        try:
            return functional_call(self.discriminator, buffers, (images, labels))
        finally:
            self.discriminator.train(was_training)

    # ---- sampling ----------------------------------------------------------------------------
    def _check_labels(self, labels: Tensor, n: int) -> None:
        if labels.shape != (n,):
            raise ConfigError(
                f"labels must be a vector of {n} class indices, got {tuple(labels.shape)}"
            )
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ConfigError(f"labels must be class indices 0..{self.num_classes - 1}")

    def _sampling_labels(self, labels: Tensor | None, n: int) -> Tensor | None:
        if not self.conditional:
            if labels is not None:
                raise ConfigError("this GAN is unconditional: it cannot be given labels")
            return None
        if labels is None:  # a grid shows every class in turn
            return torch.arange(n, device=self._device()) % self.num_classes
        labels = torch.as_tensor(labels, dtype=torch.long).to(self._device())
        self._check_labels(labels, n)
        return labels

    @torch.no_grad()
    def generate(self, z: Tensor, labels: Tensor | None = None, *, use_ema: bool = True) -> Tensor:
        """Images in [0, 1] for given latent codes z [n, latent_dim] (latent walks).

        Uses the moving average of G by default, in eval mode (batch-norm running
        statistics, so an image does not depend on the rest of the batch)."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ConfigError(f"z must be [n, {self.latent_dim}], got {tuple(z.shape)}")
        labels = self._sampling_labels(labels, len(z))
        network = self.generator
        if use_ema and self.ema is not None:
            if self.ema.batch_norm_stale:
                # the same z's at every refresh: the same weights get the same statistics,
                # and the training's random stream is not touched
                noise = torch.Generator().manual_seed(0)
                self.ema.refresh_batch_norm(lambda: self._statistics_inputs(noise))
            network = self.ema.average
        was_training = network.training
        network.eval()
        try:
            images = network(z.to(self._device()), labels)
        finally:
            network.train(was_training)
        return ((images.float() + 1) / 2).clamp(0.0, 1.0)

    def _statistics_inputs(self, noise: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """A batch of z (and of every class in turn) for recomputing batch-norm statistics."""
        z = torch.randn(STATISTICS_BATCH, self.latent_dim, generator=noise)
        labels = torch.arange(STATISTICS_BATCH) % self.num_classes if self.conditional else None
        device = self._device()
        return z.to(device), None if labels is None else labels.to(device)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        labels: Tensor | None = None,
        *,
        use_ema: bool = True,
    ) -> Tensor:
        """n images [n, C, H, W] in [0, 1] from z ~ N(0, I), drawn on the generator's device.
        A conditional GAN given no labels cycles through the classes 0..K-1."""
        return self.generate(self._noise(n, generator), labels, use_ema=use_ema)
