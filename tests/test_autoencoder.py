"""The autoencoder family: shapes, the KL term, the reparameterisation gradient, bounds."""

from __future__ import annotations

import math

import pytest
import torch

from genlearn.errors import ConfigError
from genlearn.models.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    discretised_logistic_log_prob,
    gaussian_kl,
    gaussian_log_density,
    reparameterise,
)


@pytest.mark.parametrize("arch", ["conv", "mlp"])
@pytest.mark.parametrize(("size", "channels"), [(8, 1), (16, 1), (28, 1), (32, 3), (64, 3)])
def test_shapes_follow_the_data(arch, size, channels):
    model = Autoencoder(
        AutoencoderConfig(latent_dim=5, arch=arch, image_size=size, image_channels=channels)
    )
    x = torch.rand(3, channels, size, size)
    assert model.encode(x).shape == (3, 5)
    assert model.decode(torch.randn(4, 5)).shape == (4, channels, size, size)
    assert model.sample(2).shape == (2, channels, size, size)
    losses = model(x)
    assert set(losses) == {"loss", "recon", "kl"} and losses["loss"].dim() == 0


def test_bad_configs_are_user_errors():
    with pytest.raises(ConfigError):
        Autoencoder(AutoencoderConfig(latent_dim=0))
    with pytest.raises(ConfigError):
        Autoencoder(AutoencoderConfig(image_size=7))
    with pytest.raises(ConfigError):
        Autoencoder(AutoencoderConfig(likelihood="poisson"))


def test_kl_matches_closed_form_and_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3) * 0.5
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)
    # Monte Carlo: E_q[log q(z) - log p(z)] with 200k samples per row
    z = q.sample((200_000,))
    estimate = (q.log_prob(z) - p.log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(estimate, expected, atol=0.02, rtol=0.02)


def test_gaussian_log_density_matches_torch():
    z, mu, logvar = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 4)
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_density(z, mu, logvar), expected)


def test_reparameterisation_gradient_is_the_true_gradient():
    # d/dmu E[z^2] = 2 mu and d/dlogvar E[z^2] = sigma^2 for z ~ N(mu, sigma^2)
    mu = torch.tensor([0.7, -1.3], requires_grad=True)
    logvar = torch.tensor([0.2, -0.6], requires_grad=True)
    generator = torch.Generator().manual_seed(0)
    z = reparameterise(mu.expand(400_000, 2), logvar.expand(400_000, 2), generator)
    z.pow(2).mean(0).sum().backward()
    torch.testing.assert_close(mu.grad, 2 * mu.detach(), atol=0.02, rtol=0.0)
    torch.testing.assert_close(logvar.grad, logvar.detach().exp(), atol=0.02, rtol=0.0)


def linear_gaussian_vae(d: int = 3, side: int = 8, sigma: float = 0.3) -> tuple[Autoencoder, dict]:
    """A VAE whose decoder is x = W z + b + sigma * noise, with the encoder set to the exact
    posterior (W has orthogonal columns, so the posterior covariance is diagonal)."""
    torch.manual_seed(1)
    pixels = side * side
    config = AutoencoderConfig(
        latent_dim=d, arch="mlp", mlp_hidden=[], image_size=side, likelihood="gaussian"
    )
    model = Autoencoder(config).double()
    q, _ = torch.linalg.qr(torch.randn(pixels, d, dtype=torch.float64))
    weight = q * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)  # orthogonal columns
    bias = torch.rand(pixels, dtype=torch.float64)
    posterior_var = 1.0 / (1.0 + (weight**2).sum(0) / sigma**2)  # diag of (I + W^T W / s^2)^-1
    encoder_weight = posterior_var[:, None] * weight.T / sigma**2
    with torch.no_grad():
        linear_dec = model.decoder[0][0]
        linear_dec.weight.copy_(weight)
        linear_dec.bias.copy_(bias)
        linear_enc = model.encoder[1][0]
        linear_enc.weight.zero_()
        linear_enc.weight[:d] = encoder_weight
        linear_enc.bias.zero_()
        linear_enc.bias[:d] = -encoder_weight @ bias
        linear_enc.bias[d:] = posterior_var.log()
        model.log_scale.fill_(math.log(sigma))
    marginal = torch.distributions.MultivariateNormal(
        bias, weight @ weight.T + sigma**2 * torch.eye(pixels, dtype=torch.float64)
    )
    return model, {"marginal": marginal, "side": side}


def test_iwae_equals_exact_log_likelihood_when_the_posterior_is_exact():
    model, truth = linear_gaussian_vae()
    x = truth["marginal"].sample((6,)).view(6, 1, truth["side"], truth["side"])
    exact = truth["marginal"].log_prob(x.flatten(1))
    generator = torch.Generator().manual_seed(0)
    for k in (1, 7, 100):
        torch.testing.assert_close(model.iwae_bound(x, k, generator), exact)
    # the ELBO is exact only in expectation: average many single-sample estimates
    elbos = torch.stack([model.elbo(x, generator) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(elbos, exact, atol=0.05, rtol=0.0)


def test_iwae_bound_rises_with_k_above_the_elbo():
    torch.manual_seed(0)
    model = Autoencoder(AutoencoderConfig(latent_dim=4, image_size=8, arch="mlp", mlp_hidden=[32]))
    x = torch.bernoulli(torch.rand(64, 1, 8, 8))
    generator = torch.Generator().manual_seed(0)
    elbo = torch.stack([model.elbo(x, generator) for _ in range(20)]).mean()
    iwae_5 = model.iwae_bound(x, 5, generator).mean()
    iwae_500 = model.iwae_bound(x, 500, generator).mean()
    assert elbo < iwae_5 < iwae_500


def test_iwae_needs_a_variational_model():
    model = Autoencoder(AutoencoderConfig(variational=False, image_size=8))
    with pytest.raises(ConfigError):
        model.iwae_bound(torch.rand(2, 1, 8, 8), 10)


def test_discretised_logistic_sums_to_one_over_the_bins():
    levels = torch.arange(256, dtype=torch.float64) / 255
    mean = torch.full_like(levels, 0.3)
    log_prob = discretised_logistic_log_prob(levels, mean, torch.tensor(-2.0, dtype=torch.float64))
    torch.testing.assert_close(log_prob.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_plain_autoencoder_has_no_kl():
    model = Autoencoder(AutoencoderConfig(variational=False, latent_dim=2, image_size=8))
    out = model(torch.rand(4, 1, 8, 8))
    assert out["kl"].item() == 0.0
    torch.testing.assert_close(out["loss"], out["recon"])


def test_vae_learns_digits():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    images = torch.tensor(load_digits().images[:512], dtype=torch.float32).unsqueeze(1) / 16
    model = Autoencoder(AutoencoderConfig(latent_dim=4, image_size=8, arch="mlp", mlp_hidden=[128]))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    first = model(images, generator)["loss"].item()
    for _ in range(150):
        loss = model(images, generator)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert model(images, generator)["loss"].item() < 0.6 * first


def test_discretised_logistic_keeps_a_gradient_far_from_the_pixel():
    mean = torch.zeros(1, requires_grad=True)
    log_prob = discretised_logistic_log_prob(torch.tensor([0.5]), mean, torch.tensor(-5.0))
    log_prob.backward()
    assert math.isfinite(log_prob.item()) and log_prob.item() < -50
    assert mean.grad.item() > 100  # the sharp logistic is pulled towards the pixel


def test_kl_is_summed_in_float32_under_autocast():
    mu, logvar = torch.randn(2, 128), torch.randn(2, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gaussian_kl(mu.bfloat16(), logvar.bfloat16()).dtype == torch.float32


def test_conv_stages_must_divide_the_image_size():
    with pytest.raises(ConfigError, match="divisible"):
        Autoencoder(AutoencoderConfig(image_size=28, conv_channels=[16, 32, 64]))
