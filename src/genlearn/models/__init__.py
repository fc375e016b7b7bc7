"""Model families, one file each. `FAMILIES` maps a CLI name to how a model is built."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from genlearn.errors import ConfigError
from genlearn.models.autoencoder import Autoencoder, AutoencoderConfig
from genlearn.models.diffusion import DiffusionConfig, DiffusionModel, LatentDiffusion
from genlearn.models.gan import GAN, RECIPES, GANConfig
from genlearn.models.gpt import GPT, GPTConfig
from genlearn.train.engine import TrainConfig


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    config_class: type
    model_class: type[nn.Module]
    defaults: dict[str, Any]  # config values this family name fixes (vae vs ae)
    # TrainConfig values this family trains with unless the user says otherwise
    train_defaults: dict[str, Any] = field(default_factory=dict)

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The family's training defaults, with `overrides` (those not None) on top."""
        given = {k: v for k, v in overrides.items() if v is not None}
        return TrainConfig(**{**self.train_defaults, **given})


FAMILIES: dict[str, Family] = {
    "vae": Family(
        "vae",
        "variational autoencoder (Kingma & Welling 2014)",
        AutoencoderConfig,
        Autoencoder,
        {"variational": True},
    ),
    "ae": Family(
        "ae",
        "plain autoencoder (its latent space has gaps: compare with vae)",
        AutoencoderConfig,
        Autoencoder,
        {"variational": False},
    ),
}


def _gan_family(variant: str, description: str) -> Family:
    """A GAN variant: the paper's optimiser settings and a constant learning rate; batch 64,
    as WGAN and WGAN-GP use (Radford et al. use 128; 64 gives twice the updates per epoch)."""
    recipe = RECIPES[variant]
    train = {"lr": recipe.lr, "batch_size": 64, "lr_schedule": "constant"}
    return Family(variant, description, GANConfig, GAN, {"variant": variant}, train)


FAMILIES.update(
    {
        "dcgan": _gan_family("dcgan", "deep convolutional GAN (Radford et al. 2016)"),
        "wgan": _gan_family("wgan", "Wasserstein GAN with weight clipping (Arjovsky et al. 2017)"),
        "wgan-gp": _gan_family(
            "wgan-gp", "Wasserstein GAN with gradient penalty (Gulrajani et al. 2017)"
        ),
    }
)


# Diffusion: batch 64 (more updates per CPU minute than 128, for the same images per second
# to within 20%), a short warm-up, gradients clipped at 1 (Ho et al. clip at 1 too)
DIFFUSION_TRAINING = {"lr": 1e-3, "batch_size": 64, "warmup_steps": 200, "grad_clip": 1.0}
FAMILIES.update(
    {
        "ddpm": Family(
            "ddpm",
            "denoising diffusion in pixel space (Ho et al. 2020), DDPM/DDIM sampling",
            DiffusionConfig,
            DiffusionModel,
            {"space": "pixels"},
            DIFFUSION_TRAINING,
        ),
        "ldm": Family(
            "ldm",
            "latent diffusion on a trained autoencoder's codes (Rombach et al. 2022)",
            DiffusionConfig,
            LatentDiffusion,
            {"space": "latent"},
            DIFFUSION_TRAINING,
        ),
    }
)


# Language models: AdamW with decoupled decay on the matrices, warm-up then cosine decay to a
# tenth, gradients clipped at 1; counted in steps (an "epoch" of random windows is nominal)
GPT_TRAINING = {
    "lr": 5e-3,
    "batch_size": 16,
    "warmup_steps": 100,
    "lr_final_fraction": 0.1,
    "weight_decay": 0.1,
    "grad_clip": 1.0,
    "max_steps": 900,
    "eval_every_steps": 250,
    "eval_every_epochs": 0,  # an "epoch" of random windows is nominal: validate by steps
    "log_every_steps": 25,
}
FAMILIES["gpt"] = Family(
    "gpt",
    "decoder-only transformer that writes text (Radford et al. 2018/2019)",
    GPTConfig,
    GPT,
    {},
    GPT_TRAINING,
)


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ConfigError(f"unknown model {name!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def build_model(family: str, config: dict[str, Any]) -> nn.Module:
    """Rebuild a model from its family name and the `model` section of config.json."""
    spec = get_family(family)
    try:
        model_config = spec.config_class(**{**config, **spec.defaults})
    except TypeError as error:
        raise ConfigError(f"config.json does not fit model {family!r}: {error}") from None
    return spec.model_class(model_config)
