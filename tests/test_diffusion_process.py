"""The diffusion process against its closed forms: q(x_t | x_0) against iterating the chain,
the posterior, the DDIM update against the paper's equation, and samplers that recover x_0
exactly from a denoiser that knows the true noise."""

from __future__ import annotations

import math

import pytest
import torch

from genlearn.diffusion.samplers import DDIMSampler, DDPMSampler, ddim_sigma, predicted_x0_and_eps
from genlearn.diffusion.schedules import NoiseSchedule


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_closed_form_q_xt_matches_iterating_the_chain(name):
    schedule = NoiseSchedule.named(name, 100)
    # mean coefficient and variance of x_t given x_0, by iterating
    # x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps_t
    mean, variance = 1.0, 0.0
    for t, beta in enumerate(schedule.betas.tolist()):
        mean, variance = math.sqrt(1 - beta) * mean, (1 - beta) * variance + beta
        alpha_bar = float(schedule.alpha_bar_at(torch.tensor([t]))[0])
        assert mean == pytest.approx(math.sqrt(alpha_bar), rel=1e-9)
        assert variance == pytest.approx(1 - alpha_bar, rel=1e-9, abs=1e-12)
    # and by sampling: 20,000 chains from x_0 = 0.7 to step 60
    generator = torch.Generator().manual_seed(0)
    x = torch.full((20_000,), 0.7, dtype=torch.float64)
    for beta in schedule.betas[:60].tolist():
        x = math.sqrt(1 - beta) * x + math.sqrt(beta) * torch.randn(
            x.shape, generator=generator, dtype=torch.float64
        )
    direct = schedule.q_sample(
        torch.full((20_000, 1), 0.7, dtype=torch.float64),
        torch.full((20_000,), 59),
        torch.randn(20_000, 1, generator=generator, dtype=torch.float64),
    )
    assert x.mean().item() == pytest.approx(direct.mean().item(), abs=0.02)
    assert x.std().item() == pytest.approx(direct.std().item(), abs=0.02)


def test_schedules_end_in_noise_and_start_clean():
    for name in ("linear", "cosine"):
        alpha_bars = NoiseSchedule.named(name).alpha_bars
        assert alpha_bars[0] > 0.99 and alpha_bars[-1] < 1e-4
        assert torch.all(alpha_bars[1:] < alpha_bars[:-1])


def test_posterior_matches_bayes_rule_on_one_pixel():
    # q(x_{t-1} | x_t, x_0) is proportional to q(x_t | x_{t-1}) q(x_{t-1} | x_0): both Gaussian
    schedule = NoiseSchedule.linear(50)
    t = torch.tensor([20])
    x0, xt = torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[-0.4]], dtype=torch.float64)
    beta = float(schedule.betas[20])
    prior_mean = math.sqrt(float(schedule.alpha_bar_at(t - 1)[0])) * 0.3
    prior_var = 1 - float(schedule.alpha_bar_at(t - 1)[0])
    # product of N(x_{t-1}; prior) and N(x_t; sqrt(1 - beta) x_{t-1}, beta) in x_{t-1}
    precision = 1 / prior_var + (1 - beta) / beta
    mean = (prior_mean / prior_var + math.sqrt(1 - beta) * -0.4 / beta) / precision
    got_mean, got_var = schedule.posterior(x0, xt, t)
    assert got_mean.item() == pytest.approx(mean, rel=1e-9)
    assert got_var.item() == pytest.approx(1 / precision, rel=1e-9)


def test_predictions_convert_both_ways():
    schedule = NoiseSchedule.cosine(100)
    generator = torch.Generator().manual_seed(1)
    x0, noise = torch.randn(2, 4, 3, 3, generator=generator, dtype=torch.float64)
    t = torch.tensor([5, 77, 30, 99])
    xt = schedule.q_sample(x0, t, noise)
    for prediction, output in [
        ("epsilon", noise),
        ("v", schedule.v_target(x0, t, noise)),
        ("x0", x0),
    ]:
        got_x0, got_eps = predicted_x0_and_eps(schedule, prediction, output, xt, t)
        torch.testing.assert_close(got_x0, x0)
        torch.testing.assert_close(got_eps, noise)


def test_ddim_update_is_the_papers_equation():
    schedule = NoiseSchedule.linear(100)
    sampler = DDIMSampler(schedule, num_steps=10, eta=0.5, clip=None)
    generator = torch.Generator().manual_seed(2)
    xt, eps = torch.randn(2, 1, 3, 4, 4, generator=generator, dtype=torch.float64)
    t, t_prev = 89, 78
    a, a_prev = (float(schedule.alpha_bar_at(torch.tensor([s]))[0]) for s in (t, t_prev))
    # Song et al. Eq. 12 written out, with sigma from Eq. 16, and the same z
    x0_pred = (xt - math.sqrt(1 - a) * eps) / math.sqrt(a)
    sigma = 0.5 * math.sqrt((1 - a_prev) / (1 - a)) * math.sqrt(1 - a / a_prev)
    z = torch.randn(xt.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = math.sqrt(a_prev) * x0_pred + math.sqrt(1 - a_prev - sigma**2) * eps + sigma * z
    got = sampler.step(xt, t, t_prev, eps, torch.Generator().manual_seed(3))
    torch.testing.assert_close(got, expected)
    assert ddim_sigma(a, a_prev, 0.0) == 0.0


def test_ddim_visits_evenly_spaced_steps_ending_at_zero():
    assert DDIMSampler(NoiseSchedule.linear(1000), num_steps=5).timesteps() == [
        999,
        749,
        500,
        250,
        0,
    ]
    assert DDIMSampler(NoiseSchedule.linear(10), num_steps=10).timesteps() == list(range(9, -1, -1))


@pytest.mark.parametrize(
    "make",
    [
        lambda s: DDPMSampler(s),
        lambda s: DDIMSampler(s, num_steps=20),
        lambda s: DDIMSampler(s, num_steps=7, eta=1.0),
    ],
)
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_an_oracle_denoiser_leads_every_sampler_back_to_x0(make, prediction):
    schedule = NoiseSchedule.cosine(60)
    x0 = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(4)) * 2 - 1

    def oracle(xt, t):  # the true noise in x_t, given that the data is x0
        eps = schedule.eps_from_x0(xt, t, x0)
        return eps if prediction == "epsilon" else schedule.v_target(x0, t, eps)

    sampler = make(schedule)
    sampler.prediction = prediction
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5))
    out = sampler.sample(oracle, noise, torch.Generator().manual_seed(6))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
