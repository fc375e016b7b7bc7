"""The GAN family: losses, the gradient penalty, the alternation, the moving average, sampling."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from genlearn.errors import ConfigError
from genlearn.models.gan import (
    GAN,
    RECIPES,
    Discriminator,
    ExponentialMovingAverage,  # re-exported from genlearn.nn.ema
    GANConfig,
    bce_discriminator_loss,
    bce_generator_loss,
    gradient_penalty,
    hinge_discriminator_loss,
    hinge_generator_loss,
    interpolate,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from genlearn.train.engine import TrainConfig, match_parameter_layouts, step_generator

VARIANTS = ["dcgan", "wgan", "wgan-gp"]


def tiny(variant: str = "dcgan", size: int = 16, channels: int = 1, **options) -> GAN:
    options = {"latent_dim": 4, "generator_width": 4, "critic_width": 4, **options}
    return GAN(GANConfig(variant=variant, image_size=size, image_channels=channels, **options))


def backward(loss: torch.Tensor) -> None:
    loss.backward()


def train_steps(model: GAN, batch, labels=None, steps=range(1), seed=0, train_config=None):
    optimizers = model.make_optimizers(train_config or TrainConfig())
    outs = []
    for step in steps:
        generator = step_generator(seed, step, torch.device("cpu"))
        outs.append(
            model.training_step(
                batch, labels, optimizers, generator=generator, backward=backward, step=step
            )
        )
    return outs


def clone_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def same_parameters(module: nn.Module, saved: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(p, saved[name]) for name, p in module.named_parameters())


# ---- losses ------------------------------------------------------------------------------
def test_losses_match_hand_computed_values():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])

    def neg_log_sigmoid(s):  # -log(1 / (1 + e^-s))
        return math.log(1 + math.exp(-s))

    expected_d = (neg_log_sigmoid(2.0) + neg_log_sigmoid(-1.0)) / 2 + (
        neg_log_sigmoid(-0.5) + neg_log_sigmoid(3.0)
    ) / 2  # -log(1 - sigmoid(s)) = -log sigmoid(-s)
    expected_g = (neg_log_sigmoid(0.5) + neg_log_sigmoid(-3.0)) / 2
    assert bce_discriminator_loss(real, fake).item() == pytest.approx(expected_d, rel=1e-6)
    assert bce_generator_loss(fake).item() == pytest.approx(expected_g, rel=1e-6)
    # hinge: relu(1 - [2, -1]) = [0, 2], relu(1 + [0.5, -3]) = [1.5, 0]
    assert hinge_discriminator_loss(real, fake).item() == pytest.approx(1.0 + 0.75)
    assert hinge_generator_loss(fake).item() == pytest.approx(1.25)
    # wasserstein: mean fake - mean real = -1.25 - 0.5
    assert wasserstein_critic_loss(real, fake).item() == pytest.approx(-1.75)
    assert wasserstein_generator_loss(fake).item() == pytest.approx(1.25)


def test_bce_losses_stay_finite_for_confident_scores():
    big = torch.tensor([200.0])
    assert bce_discriminator_loss(-big, big).item() == pytest.approx(400.0)
    assert bce_generator_loss(-big).item() == pytest.approx(200.0)


# ---- gradient penalty ----------------------------------------------------------------------
def test_gradient_penalty_matches_finite_differences():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 1)
    ).double()

    def critic(x, labels):
        return net(x).squeeze(1) * 3.0  # norms well away from 1

    real, fake = torch.rand(3, 1, 4, 4, dtype=torch.double), torch.rand(3, 1, 4, 4).double()
    penalty = gradient_penalty(
        critic, real, fake, None, torch.Generator().manual_seed(5), weight=2.5
    )
    x_hat = interpolate(real, fake, torch.Generator().manual_seed(5))
    h, norms = 1e-6, []
    with torch.no_grad():
        for i in range(len(x_hat)):
            grad = torch.zeros(16, dtype=torch.double)
            for j in range(16):
                step = torch.zeros(16, dtype=torch.double)
                step[j] = h
                step = step.view(1, 1, 4, 4)
                up, down = (
                    critic(x_hat[i : i + 1] + step, None),
                    critic(x_hat[i : i + 1] - step, None),
                )
                grad[j] = (up - down).item() / (2 * h)
            norms.append(grad.norm())
    expected = 2.5 * ((torch.stack(norms) - 1) ** 2).mean()
    torch.testing.assert_close(penalty.double(), expected, rtol=1e-6, atol=1e-9)
    # the interpolates lie on the segments between the pairs, at different places per pair
    eps = ((x_hat - fake).flatten(1) / (real - fake).flatten(1)).double()
    assert torch.allclose(eps, eps[:, :1].expand_as(eps)) and ((eps >= 0) & (eps <= 1)).all()
    assert eps[:, 0].unique().numel() == 3


def test_gradient_penalty_of_a_linear_critic_and_its_gradient():
    # D(x) = <w, x>: the input gradient is w everywhere, ||w|| = 5, penalty (5 - 1)^2 = 16,
    # and d penalty / dw = 2 (||w|| - 1) w / ||w||, which needs create_graph
    w = torch.tensor([[[3.0, 0.0], [0.0, 4.0]]], requires_grad=True)

    def critic(x, labels):
        return (x * w).flatten(1).sum(1)

    real, fake = torch.rand(4, 1, 2, 2), torch.rand(4, 1, 2, 2)
    penalty = gradient_penalty(critic, real, fake, None, torch.Generator().manual_seed(0), weight=1)
    assert penalty.item() == pytest.approx(16.0)
    penalty.backward()
    torch.testing.assert_close(w.grad, 2 * 4 * w.detach() / 5)


# ---- the alternation -----------------------------------------------------------------------
def test_generator_step_leaves_the_discriminator_untouched():
    model = tiny("dcgan")
    optimizers = model.make_optimizers(TrainConfig())
    model.discriminator.head.bias.requires_grad_(False)  # a user's own freeze must survive
    d_before, g_before = clone_parameters(model.discriminator), clone_parameters(model.generator)
    seen = []
    hook = model.discriminator.register_forward_pre_hook(
        lambda module, args: seen.append([p.requires_grad for p in module.parameters()])
    )
    model.generator_step(
        8,
        None,
        optimizers["generator"],
        generator=torch.Generator().manual_seed(0),
        backward=backward,
    )
    hook.remove()
    assert len(seen) == 1 and not any(seen[0])  # D was frozen while G's loss went through it
    assert same_parameters(model.discriminator, d_before)
    assert all(p.grad is None for p in model.discriminator.parameters())  # no wasted gradients
    assert not same_parameters(model.generator, g_before)
    flags = {name: p.requires_grad for name, p in model.discriminator.named_parameters()}
    assert flags.pop("head.bias") is False and all(flags.values())


def test_ema_update_is_exact():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
    ema = ExponentialMovingAverage(net, decay=0.75, warmup=False)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(3.0)
    net[1].running_mean.fill_(7.0)
    net[1].num_batches_tracked.fill_(4)
    ema.update(net)
    for p in ema.average.parameters():  # 0.75 * 1 + 0.25 * 3, exact in binary
        assert torch.equal(p, torch.full_like(p, 1.5))
    assert torch.equal(ema.average[1].running_mean, torch.full((2,), 7.0, dtype=torch.double))
    assert int(ema.average[1].num_batches_tracked) == 4  # buffers are copied, not averaged
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(5.0)
    ema.update(net)
    for p in ema.average.parameters():  # 0.75 * 1.5 + 0.25 * 5
        assert torch.equal(p, torch.full_like(p, 2.375))
    assert not any(p.requires_grad for p in ema.average.parameters())
    assert int(ema.updates) == 2


def test_refreshed_batch_norm_statistics_are_the_plain_average_over_the_passes():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    ema = ExponentialMovingAverage(net, decay=0.5, warmup=False)
    ema.update(net)
    assert ema.batch_norm_stale
    batches = iter([torch.randn(16, 3, dtype=torch.double) for _ in range(3)])
    seen = []
    hook = ema.average[1].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    ema.refresh_batch_norm(lambda: (next(batches),), batches=3)
    hook.remove()
    assert not ema.batch_norm_stale and not ema.average.training
    norm = ema.average[1]
    torch.testing.assert_close(norm.running_mean, torch.stack([x.mean(0) for x in seen]).mean(0))
    torch.testing.assert_close(
        norm.running_var, torch.stack([x.var(0, unbiased=True) for x in seen]).mean(0)
    )
    assert norm.momentum == 0.1  # restored


def test_sampling_refreshes_the_average_statistics_once_and_always_alike():
    model = tiny("dcgan")
    train_steps(model, torch.rand(4, 1, 16, 16), steps=range(3))
    live_mean = model.generator.project_norm.running_mean.clone()
    assert model.ema.batch_norm_stale
    state = torch.get_rng_state()
    z = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    first = model.generate(z)
    assert torch.equal(torch.get_rng_state(), state)  # the global random stream is untouched
    assert not model.ema.batch_norm_stale
    refreshed = model.ema.average.project_norm.running_mean.clone()
    assert not torch.allclose(refreshed, live_mean)  # its own statistics, not G's
    model.ema.batch_norm_stale = True  # as after loading the weights elsewhere
    assert torch.equal(model.generate(z), first)
    assert torch.equal(model.ema.average.project_norm.running_mean, refreshed)


def test_evaluation_scores_with_batch_statistics_and_writes_no_buffer():
    model = tiny("dcgan")
    train_steps(model, torch.rand(8, 1, 16, 16), steps=range(2))
    model.eval()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(8, 1, 16, 16)
    out = model(images, torch.Generator().manual_seed(0))
    after = model.state_dict()
    assert all(torch.equal(buffers[k], after[k]) for k in buffers)
    assert not model.discriminator.training
    d = copy.deepcopy(model.discriminator).train()
    with torch.no_grad():
        expected = torch.sigmoid(d(images * 2 - 1, None)).mean()
    torch.testing.assert_close(out["d_real"], expected)


def test_ema_warmup_decay_and_value():
    net = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = ExponentialMovingAverage(net, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        net.weight.fill_(3.0)
    ema.update(net)
    assert ema.average.weight.item() == pytest.approx(0.1 * 1.0 + 0.9 * 3.0, rel=1e-15)
    assert ema.current_decay() == pytest.approx(2 / 11)
    ema.updates.fill_(100_000)
    assert ema.current_decay() == 0.999


def test_the_model_averages_g_after_each_generator_step_and_samples_from_the_average():
    model = tiny("dcgan")
    assert any(k.startswith("ema.average.") for k in model.state_dict())
    assert "ema.updates" in model.state_dict()
    train_steps(model, torch.rand(4, 1, 16, 16), steps=range(3))
    assert int(model.ema.updates) == 3
    z = torch.randn(5, 4)
    averaged, live = model.generate(z), model.generate(z, use_ema=False)
    assert not torch.allclose(averaged, live)
    model.ema.average.eval()
    torch.testing.assert_close(averaged, (model.ema.average(z) + 1) / 2)
    assert model.training and model.generator.training  # sampling restores the mode
    assert "ema.average.project.weight" not in tiny("dcgan", ema_decay=0).state_dict()


def test_n_critic_gives_one_generator_step_in_five_calls():
    model = tiny("wgan-gp")
    assert model.n_critic == 5
    optimizers = model.make_optimizers(TrainConfig())
    batch, keys, g_changes = torch.rand(4, 1, 16, 16), set(), []
    for step in range(3, 8):  # any 5 consecutive steps hold exactly one multiple of 5
        d_before, g_before = (
            clone_parameters(model.discriminator),
            clone_parameters(model.generator),
        )
        out = model.training_step(
            batch,
            None,
            optimizers,
            generator=step_generator(0, step, torch.device("cpu")),
            backward=backward,
            step=step,
        )
        keys.add(tuple(sorted(out)))
        assert not same_parameters(model.discriminator, d_before)  # the critic steps every call
        g_changes.append(not same_parameters(model.generator, g_before))
        assert all(torch.isfinite(v) and v.dim() == 0 for v in out.values())
    assert g_changes == [False, True, False, False, False]  # after the critic's steps 0..4
    assert len(keys) == 1  # fixed keys for the logging windows
    assert set(next(iter(keys))) >= {"loss_d", "loss_g", "wasserstein", "gp", "grad_norm_g"}


def test_wgan_clipping_keeps_the_critic_in_the_box():
    model = tiny("wgan")
    assert max(p.abs().max().item() for p in model.discriminator.parameters()) > 0.01
    train_steps(model, torch.rand(4, 1, 16, 16))
    for p in model.discriminator.parameters():
        assert p.abs().max().item() <= 0.01


def test_wgan_gp_critic_has_no_batch_norm():
    critic = tiny("wgan-gp").discriminator
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in critic.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in tiny("dcgan").discriminator.modules())


@pytest.mark.parametrize("variant", ["dcgan", "wgan-gp"])
def test_training_is_a_pure_function_of_the_seed(variant):
    torch.manual_seed(0)
    first = tiny(variant)
    second = copy.deepcopy(first)
    batch = torch.rand(6, 1, 16, 16)
    train_steps(first, batch, steps=range(2), seed=3)
    torch.rand(100)  # noise drawn from the global generator would now differ
    train_steps(second, batch, steps=range(2), seed=3)
    a, b = first.state_dict(), second.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_resumes_exactly_from_contiguous_optimiser_state():
    """A checkpoint stores tensors contiguous; the engine trains channels-last. The loaded
    moments must still meet their own weights (the fused Adam kernel walks raw memory)."""
    torch.manual_seed(0)
    model = tiny("dcgan", generator_width=8, critic_width=8).to(memory_format=torch.channels_last)
    batch = torch.rand(4, 1, 16, 16)
    optimizers = model.make_optimizers(TrainConfig())

    def step(network, opts, index):
        generator = step_generator(0, index, torch.device("cpu"))
        network.training_step(batch, None, opts, generator=generator, backward=backward, step=index)

    step(model, optimizers, 0)
    saved = {name: copy.deepcopy(o.state_dict()) for name, o in optimizers.items()}
    for state in saved.values():
        for moments in state["state"].values():
            moments.update({k: v.contiguous() for k, v in moments.items()})
    resumed = copy.deepcopy(model)
    resumed_optimizers = resumed.make_optimizers(TrainConfig())
    for name, optimizer in resumed_optimizers.items():
        optimizer.load_state_dict(saved[name])
        match_parameter_layouts(optimizer)  # as the engine does after loading a checkpoint
    step(model, optimizers, 1)
    step(resumed, resumed_optimizers, 1)
    assert same_parameters(resumed, dict(model.named_parameters()))


def test_a_dcgan_learns_two_patterns():
    """Two fixed 16 px patterns with a quarter of their pixels on: 200 steps take samples from
    mid-grey (mean 0.5) to near one of the two patterns (mean 0.25)."""
    torch.manual_seed(0)
    size = 16
    patterns = torch.zeros(2, 1, size, size)
    patterns[0, :, :, : size // 4] = 1
    patterns[1, :, : size // 4, :] = 1
    data = patterns[torch.arange(256) % 2]
    model = tiny("dcgan", latent_dim=8, generator_width=16, critic_width=16)
    optimizers = model.make_optimizers(TrainConfig(lr=5e-4))
    draw = torch.Generator().manual_seed(0)

    def distance_to_data(samples):  # mean squared distance to the nearest pattern
        d = (samples[:, None] - patterns[None]).pow(2).flatten(2).mean(2)
        return d.min(1).values.mean().item()

    before = model.sample(64, torch.Generator().manual_seed(1), use_ema=False)
    losses = []
    for step in range(200):
        batch = data[torch.randint(0, len(data), (32,), generator=draw)]
        out = model.training_step(
            batch, None, optimizers, generator=draw, backward=backward, step=step
        )
        losses.append([out["loss_d"].item(), out["loss_g"].item()])
    first, last = torch.tensor(losses[:20]).mean(0), torch.tensor(losses[-20:]).mean(0)
    assert ((last - first).abs() > 0.2).all()  # both losses moved
    assert distance_to_data(before) > 0.2
    for use_ema in (False, True):
        after = model.sample(64, torch.Generator().manual_seed(1), use_ema=use_ema)
        assert abs(after.mean().item() - 0.25) < 0.05 < abs(before.mean().item() - 0.25)
        assert distance_to_data(after) < 0.08


# ---- shapes, conditioning, evaluation ------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_follow_the_data(variant, size, channels):
    model = tiny(variant, size, channels)
    samples = model.sample(3, torch.Generator().manual_seed(0))
    assert samples.shape == (3, channels, size, size)
    assert samples.min() >= 0 and samples.max() <= 1
    x = torch.rand(2, channels, size, size)
    assert model.discriminator(x * 2 - 1).shape == (2,)
    (out,) = train_steps(model, x)
    expected = {"loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"}
    expected |= {"wasserstein"} if variant != "dcgan" else set()
    expected |= {"gp"} if variant == "wgan-gp" else set()
    assert set(out) == expected


@pytest.mark.parametrize("conditional", ["concat", "projection"])
def test_conditional_sampling_follows_the_labels(conditional):
    torch.manual_seed(0)
    model = tiny("dcgan", conditional=conditional, num_classes=3)
    asked = torch.tensor([2, 0, 2, 1])
    assert model.sample(4, labels=asked).shape == (4, 1, 16, 16)
    z = torch.randn(4, 4)
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    assert (model.generate(z, zeros) - model.generate(z, ones)).abs().max() > 1e-4
    x = torch.rand(4, 1, 16, 16)
    assert not torch.allclose(model.discriminator(x, zeros), model.discriminator(x, ones))
    # no labels: the classes in turn
    cycled = model.sample(5, torch.Generator().manual_seed(2))
    noise = torch.randn(5, 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(cycled, model.generate(noise, torch.tensor([0, 1, 2, 0, 1])))
    (out,) = train_steps(model, torch.rand(4, 1, 16, 16), labels=asked)
    assert torch.isfinite(out["loss_d"]) and torch.isfinite(out["loss_g"])
    with pytest.raises(ConfigError):
        train_steps(model, torch.rand(4, 1, 16, 16), labels=None)
    with pytest.raises(ConfigError):
        model.sample(2, labels=torch.tensor([0, 3]))
    with pytest.raises(ConfigError):
        tiny("dcgan").sample(2, labels=torch.tensor([0, 1]))


def test_unconditional_training_ignores_the_data_labels():
    torch.manual_seed(0)
    first = tiny("dcgan")
    second = copy.deepcopy(first)
    batch = torch.rand(4, 1, 16, 16)
    train_steps(first, batch, labels=torch.tensor([0, 1, 2, 3]))
    train_steps(second, batch, labels=None)
    assert same_parameters(first, dict(second.named_parameters()))


@pytest.mark.parametrize("variant", VARIANTS)
def test_evaluation_losses_update_nothing(variant):
    model = tiny(variant).eval()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # as the engine evaluates
        out = model(torch.rand(4, 1, 16, 16), generator=torch.Generator().manual_seed(0))
    assert {"loss", "loss_d", "loss_g", "d_real", "d_fake"} <= set(out)
    assert ("gp" in out) == (variant == "wgan-gp")
    assert all(torch.isfinite(v) and not v.requires_grad for v in out.values())
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    if variant == "dcgan":
        assert 0 < out["d_real"].item() < 1  # probabilities for the bce loss


# ---- configuration and optimisers ----------------------------------------------------------
@pytest.mark.parametrize(
    ("variant", "kind", "lr", "betas"),
    [
        ("dcgan", torch.optim.Adam, 2e-4, (0.5, 0.999)),
        ("wgan", torch.optim.RMSprop, 5e-5, None),
        ("wgan-gp", torch.optim.Adam, 1e-4, (0.0, 0.9)),
    ],
)
def test_optimisers_follow_the_recipe_unless_the_user_sets_lr(variant, kind, lr, betas):
    from genlearn.models import get_family

    model = tiny(variant)
    # the family's training defaults carry the recipe's rate; --lr replaces it
    optimizers = model.make_optimizers(get_family(variant).train_config())
    assert set(optimizers) == {"discriminator", "generator"}
    for name, optimizer in optimizers.items():
        assert isinstance(optimizer, kind)
        network = getattr(model, name)
        assert [id(p) for g in optimizer.param_groups for p in g["params"]] == [
            id(p) for p in network.parameters()
        ]
        for group in optimizer.param_groups:
            assert group["lr"] == group["base_lr"] == lr
            if betas is not None:
                assert tuple(group["betas"]) == betas
    for optimizer in model.make_optimizers(TrainConfig(lr=3e-3)).values():
        assert optimizer.param_groups[0]["base_lr"] == 3e-3


@pytest.mark.parametrize("variant", ["dcgan", "wgan", "wgan-gp"])
def test_a_resolved_config_writes_the_recipe_in_and_builds_the_same_model(variant):
    config = GANConfig(variant=variant, image_size=16)
    resolved = config.resolved()
    recipe = RECIPES[variant]
    assert (resolved.loss, resolved.n_critic, resolved.critic_norm, resolved.betas) == (
        recipe.loss,
        recipe.n_critic,
        recipe.critic_norm,
        recipe.betas,
    )
    assert resolved.recipe == config.recipe
    torch.manual_seed(0)
    a = GAN(config).state_dict()
    torch.manual_seed(0)
    b = GAN(resolved).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "options",
    [
        {"variant": "biggan"},
        {"variant": "dcgan", "loss": "wasserstein"},
        {"variant": "wgan", "loss": "bce"},
        {"variant": "wgan-gp", "critic_norm": "batch"},
        {"image_size": 48},
        {"image_size": 8},
        {"image_channels": 2},
        {"conditional": "concat"},  # no num_classes
        {"conditional": "embedding", "num_classes": 10},
        {"variant": "wgan", "betas": (0.5, 0.9)},  # RMSProp has no betas
        {"ema_decay": 1.0},
        {"n_critic": 0},
        {"loss": "l2"},
    ],
)
def test_bad_configs_are_one_line_user_errors(options):
    with pytest.raises(ConfigError) as error:
        GAN(GANConfig(**options))
    assert "\n" not in str(error.value)


def test_recipes_and_sizes():
    assert GANConfig().recipe.loss == "bce" and GANConfig(variant="wgan").recipe.n_critic == 5
    assert GANConfig(variant="wgan-gp", loss="hinge").recipe.loss == "hinge"
    GAN(GANConfig(image_size=128, latent_dim=4, generator_width=2, critic_width=2))
    model = GAN(GANConfig(betas=[0.0, 0.99], latent_dim=4, generator_width=2, critic_width=2))
    assert model.make_optimizers(TrainConfig())["generator"].param_groups[0]["betas"] == (
        0.0,
        0.99,
    )


def test_dcgan_follows_radfords_architecture_rules_at_64_px():
    """Radford et al. Sec. 3: no pooling, strided (transposed) convolutions; batch norm in both
    networks except G's output and D's input; ReLU in G with tanh out; LeakyReLU(0.2) in D."""
    model = GAN(GANConfig(variant="dcgan", image_size=64, image_channels=3))
    g, d = model.generator, model.discriminator
    every = list(g.modules()) + list(d.modules())
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.Upsample)) for m in every)
    g_convs = [m for m in g.net if isinstance(m, nn.ConvTranspose2d)]
    assert [c.out_channels for c in g_convs] == [256, 128, 64, 3]  # after 512 at 4x4
    assert g.start == 4 and g.start_channels == 512 and all(c.stride == (2, 2) for c in g_convs)
    assert isinstance(g.net[-1], nn.Tanh) and isinstance(g.net[-2], nn.ConvTranspose2d)
    assert not any(isinstance(m, nn.LeakyReLU) for m in g.modules())
    d_layers = list(d.features)
    d_convs = [m for m in d_layers if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in d_convs] == [64, 128, 256, 512]
    assert all(c.stride == (2, 2) for c in d_convs)
    assert isinstance(d_layers[1], nn.LeakyReLU)  # the input layer: no norm
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d_layers) == 3
    assert all(m.negative_slope == 0.2 for m in d_layers if isinstance(m, nn.LeakyReLU))
    assert not any(isinstance(m, nn.ReLU) for m in d.modules())
    images = model.sample(2)
    assert images.shape == (2, 3, 64, 64)


def test_projection_score_by_hand():
    d = Discriminator(1, 16, 4, conditional="projection", num_classes=3)
    x, labels = torch.randn(5, 1, 16, 16), torch.tensor([0, 1, 2, 1, 0])
    phi = d.features(x)
    expected = phi @ d.head.weight[0] + d.head.bias[0] + (phi * d.embed.weight[labels]).sum(1)
    torch.testing.assert_close(d(x, labels), expected)
    # the label changes the score only through <embed(y), phi(x)>
    other = torch.tensor([1, 2, 0, 0, 2])
    difference = ((d.embed.weight[labels] - d.embed.weight[other]) * phi).sum(1)
    torch.testing.assert_close(d(x, labels) - d(x, other), difference)
