"""Likelihood figures of latent-variable models: test ELBO, reconstruction error, IWAE NLL.

The IWAE estimate follows Burda et al. (2016, Sec. 5.1): with k importance samples
from q(z|x), -log (1/k) sum_i p(x, z_i)/q(z_i|x) is an upper bound on -log p(x) that
tightens as k grows; k = 5000 (or 1000) is the usual "test NLL" of VAE papers on
binarised MNIST. Every figure comes with its standard error over the images, so a
reader knows how far to trust it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from rich.progress import Progress

from genlearn.models.autoencoder import Autoencoder
from genlearn.train.engine import as_float_images


@dataclass
class LikelihoodReport:
    images: int
    reconstruction_nats: float  # mean -log p(x|z) at z = mu
    elbo_nats: float | None = None  # mean ELBO per image, VAEs only (higher is better)
    elbo_stderr: float | None = None
    reconstruction_mse: float = 0.0  # mean squared error per pixel of the reconstructions
    iwae_nll_nats: float | None = None  # mean -IWAE bound (lower is better)
    iwae_stderr: float | None = None
    iwae_k: int | None = None
    binarized: bool = False
    # IWAE NLL (or -ELBO) in bits per pixel: only where the likelihood is a normalised
    # distribution over the pixel values (binarised Bernoulli, discretised logistic)
    bits_per_dim: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    values = values.detach().cpu().double()  # on the CPU: MPS has no float64
    stderr = values.std(unbiased=True).item() / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return values.mean().item(), stderr


def binarize_fixed(images: torch.Tensor, seed: int) -> torch.Tensor:
    """One fixed Bernoulli draw of grey-level images: the evaluation protocol of
    'dynamically binarised MNIST' (the test set is binarised once, reproducibly)."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    return torch.bernoulli(images, generator=generator)


@torch.no_grad()
def evaluate_likelihood(
    model: Autoencoder,
    images_uint8: torch.Tensor,
    *,
    iwae_k: int = 1000,
    seed: int = 0,
    batch_size: int = 500,
    device: torch.device | str = "cpu",
    show_progress: bool = True,
) -> LikelihoodReport:
    """ELBO, reconstruction error and (VAE only, k > 0) the IWAE NLL over `images_uint8`."""
    model.eval()
    device = torch.device(device)
    binarized = model.config.likelihood == "bernoulli" and model.config.binarize
    generator = torch.Generator(device=device).manual_seed(seed)
    elbos, recons, squared_errors, iwaes = [], [], [], []
    use_iwae = model.variational and iwae_k > 0
    # IWAE decodes k copies of each image: keep a batch's decoder input near 10k images
    iwae_batch = max(1, 10_000 // max(1, min(iwae_k, 500)))
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("evaluating", total=len(images_uint8))
        for start in range(0, len(images_uint8), batch_size):
            x = as_float_images(images_uint8[start : start + batch_size].to(device))
            if binarized:
                x = binarize_fixed(x, seed + start)
            mu, _ = model.posterior(x)
            output = model.decoder_output(mu)
            recons.append(-model.log_likelihood(x, output))
            squared_errors.append((model.mean_image(output) - x).pow(2).flatten(1).mean(1))
            if model.variational:
                elbos.append(model.elbo(x, generator))
            if use_iwae:
                for sub in range(0, len(x), iwae_batch):
                    iwaes.append(model.iwae_bound(x[sub : sub + iwae_batch], iwae_k, generator))
            progress.update(task, advance=len(x))
    report = LikelihoodReport(
        images=len(images_uint8),
        reconstruction_nats=torch.cat(recons).mean().item(),
        reconstruction_mse=torch.cat(squared_errors).mean().item(),
        binarized=binarized,
    )
    if not model.variational:  # a plain AE has a reconstruction loss, not a likelihood
        return report
    report.elbo_nats, report.elbo_stderr = _mean_and_stderr(torch.cat(elbos))
    nll = -report.elbo_nats
    if use_iwae:
        bound, report.iwae_stderr = _mean_and_stderr(torch.cat(iwaes))
        report.iwae_nll_nats, report.iwae_k = -bound, iwae_k
        nll = -bound
    if binarized or model.config.likelihood == "logistic":
        report.bits_per_dim = nll / (math.prod(model.image_shape) * math.log(2))
    return report
