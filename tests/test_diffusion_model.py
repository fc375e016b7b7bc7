"""The diffusion family: guidance, condition dropout, text, the likelihood bound, latent
diffusion, and the moving average the engine keeps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlearn.data.shapes_captions import canonical_factors, caption, parse_caption
from genlearn.diffusion.schedules import NoiseSchedule
from genlearn.errors import ConfigError
from genlearn.models.diffusion import (
    DiffusionConfig,
    DiffusionModel,
    build_vocabulary,
    classifier_free_guidance,
    discretised_gaussian_log_likelihood,
    gaussian_prior_kl,
    tokenize,
)

CAPTIONS = [
    "a small red circle left of a large blue square",
    "a large green triangle above a small yellow circle",
]


def tiny(**options) -> DiffusionModel:
    torch.manual_seed(0)
    config = DiffusionConfig(
        image_channels=1, image_size=8, base_channels=8, timesteps=20, **options
    )
    return DiffusionModel(config).eval()


def text_model() -> DiffusionModel:
    vocabulary = build_vocabulary(CAPTIONS)
    return tiny(
        conditional="text", vocabulary=vocabulary, max_tokens=10, text_width=16, text_layers=1
    )


def _randomise(model: DiffusionModel) -> None:
    """Zero-initialised output layers would make every prediction 0: give them weights."""
    with torch.no_grad():
        for p in model.network.parameters():
            p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize("kind", ["class", "text"])
def test_guidance_at_scale_1_is_the_conditional_model_and_at_0_the_unconditional(kind):
    model = tiny(conditional="class", num_classes=3) if kind == "class" else text_model()
    _randomise(model)
    n = 4
    x, t = torch.randn(n, 1, 8, 8), torch.tensor([0, 5, 12, 19])
    condition = (
        torch.tensor([0, 1, 2, 1])
        if kind == "class"
        else tokenize(CAPTIONS * 2, model.config.vocabulary, 10)
    )
    network = model.sampling_network(use_ema=False)
    conditional = network(x, t, **network.condition(*model._split(condition)))
    null = model.null_condition(n, x.device)
    unconditional = network(x, t, **network.condition(*model._split(null)))
    assert not torch.allclose(conditional, unconditional, atol=1e-4)  # the condition matters
    guided = {w: model.denoiser(n, condition, w, use_ema=False)(x, t) for w in (0.0, 1.0, 3.0)}
    torch.testing.assert_close(guided[1.0], conditional, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(guided[0.0], unconditional, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        guided[3.0], unconditional + 3 * (conditional - unconditional), atol=1e-5, rtol=1e-4
    )


def test_classifier_free_guidance_formula():
    c, u = torch.tensor([2.0]), torch.tensor([1.0])
    assert classifier_free_guidance(c, u, 1.0).item() == 2.0
    assert classifier_free_guidance(c, u, 0.0).item() == 1.0
    assert classifier_free_guidance(c, u, 4.0).item() == 5.0


def test_condition_dropout_replaces_the_given_share_with_no_condition():
    model = tiny(conditional="class", num_classes=10, condition_dropout=0.3)
    labels = torch.zeros(20_000, dtype=torch.long)
    dropped = model._drop_conditions(labels, torch.Generator().manual_seed(0))
    share = float((dropped == 10).float().mean())
    assert abs(share - 0.3) < 0.015
    assert set(dropped.unique().tolist()) == {0, 10}
    text = text_model()
    tokens = tokenize(CAPTIONS * 500, text.config.vocabulary, 10)
    dropped = text._drop_conditions(tokens, torch.Generator().manual_seed(0))
    null_rows = (dropped == text.null_condition(1, tokens.device)).all(1)
    kept_rows = (dropped == tokens).all(1)
    assert bool((null_rows | kept_rows).all()) and 0.05 < float(null_rows.float().mean()) < 0.15


def test_tokenize_pads_and_rejects_unknown_words():
    vocabulary = build_vocabulary(CAPTIONS)
    assert vocabulary[:2] == ["<pad>", "<null>"]
    tokens = tokenize(["A small red circle"], vocabulary, 6)
    assert tokens.shape == (1, 6) and tokens[0, 4:].tolist() == [0, 0]
    assert [vocabulary[i] for i in tokens[0, :4]] == ["a", "small", "red", "circle"]
    with pytest.raises(ConfigError, match="'purple'"):
        tokenize(["a small purple circle"], vocabulary, 10)
    with pytest.raises(ConfigError, match="1 to 3 words"):
        tokenize(["a small red circle"], vocabulary, 3)


def test_canonical_factors_read_both_phrasings_of_a_picture_alike():
    one = parse_caption("a small red circle left of a large blue square")
    other = parse_caption("a large blue square right of a small red circle")
    above = parse_caption("a small red circle above a large blue square")
    below = parse_caption("a large blue square below a small red circle")
    rows = canonical_factors(np.stack([one, other, above, below]))
    assert torch.equal(rows[0], rows[1]) and torch.equal(rows[2], rows[3])
    assert not torch.equal(rows[0], rows[2])  # side by side is not one above the other
    assert caption(one) == "a small red circle left of a large blue square"


def test_the_bound_of_a_perfect_denoiser_is_the_prior_term_plus_the_decoder_term():
    """With draws = T every timestep is visited once, so the estimate is the exact sum; a
    network that always finds the true x_0 makes every KL term vanish."""
    model = tiny(ema_decay=0.0, prediction="epsilon")
    images = torch.randint(0, 256, (3, 1, 8, 8)).float() / 255
    x0 = images * 2 - 1
    schedule = model.schedule

    class Oracle(torch.nn.Module):
        def condition(self, labels, tokens):
            return {}

        def forward(self, xt, t):
            return schedule.eps_from_x0(xt, t, x0)

    model.network = Oracle()
    bound = model.negative_elbo(images, torch.Generator().manual_seed(0), timesteps_per_image=20)
    sd = math.sqrt(float(schedule.betas[0]))
    decoder = -discretised_gaussian_log_likelihood(x0, x0, sd).flatten(1).sum(1)
    expected = gaussian_prior_kl(schedule, x0) + decoder
    torch.testing.assert_close(bound, expected, rtol=1e-4, atol=1e-3)
    bits = model.bits_per_dim(images, torch.Generator().manual_seed(0), timesteps_per_image=20)
    torch.testing.assert_close(bits, expected / (64 * math.log(2)), rtol=1e-4, atol=1e-4)


def test_a_discretised_gaussian_sums_to_one_over_the_256_levels():
    levels = torch.arange(256).float() / 255 * 2 - 1
    for mean in (-1.0, -0.3, 0.0, 0.9):
        p = discretised_gaussian_log_likelihood(levels, torch.full_like(levels, mean), 0.05).exp()
        assert abs(float(p.sum()) - 1) < 1e-5


def test_the_prior_term_matches_a_numerical_kl():
    # two steps that leave alpha_bar_T = 0.45: a KL large enough to check to 1e-6 relative
    schedule = NoiseSchedule(torch.tensor([0.25, 0.4], dtype=torch.float64))
    x0 = torch.tensor([[[[0.7]]]], dtype=torch.float64)
    alpha_bar = float(schedule.alpha_bars[-1])
    mean, var = math.sqrt(alpha_bar) * 0.7, 1 - alpha_bar
    z = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    q = torch.exp(-((z - mean) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
    p = torch.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    numerical = float(torch.trapezoid(q * torch.log(q / p), z))
    assert abs(float(gaussian_prior_kl(schedule, x0)) / numerical - 1) < 1e-6


def test_the_moving_average_follows_each_update():
    model = tiny(ema_decay=0.5)
    model.train()
    optimizer = torch.optim.SGD(model.network.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        loss = model(torch.rand(4, 1, 8, 8), generator)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.after_optimizer_step()
    assert int(model.ema.updates) == 3
    live = dict(model.network.named_parameters())
    averaged = dict(model.ema.average.named_parameters())
    assert any(not torch.equal(live[k], averaged[k]) for k in live)


def test_samples_are_images_in_range_for_both_samplers_and_ddim_is_deterministic():
    model = tiny()
    _randomise(model)
    for sampler in ("ddpm", "ddim"):
        images = model.sample(3, torch.Generator().manual_seed(0), sampler=sampler, steps=5)
        assert images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    z = torch.randn(2, model.latent_dim)
    torch.testing.assert_close(model.generate(z), model.generate(z))


def test_sampling_errors_name_what_to_do():
    model = tiny()
    with pytest.raises(ConfigError, match="--text"):
        model.sample(1, prompts=["a small red circle"])
    with pytest.raises(ConfigError, match="--conditional"):
        model.sample(1, labels=torch.tensor([3]))
    with pytest.raises(ConfigError, match="--steps"):
        model.sample(1, sampler="ddim", steps=50)  # T = 20
    with pytest.raises(ConfigError, match="0 to 2"):
        tiny(conditional="class", num_classes=3).sample(1, labels=torch.tensor([3]))
