"""The denoising U-Net: shape-correct at 28, 32 and 64 px, conditioned on time and labels."""

from __future__ import annotations

import pytest
import torch

from genlearn.diffusion.unet import UNet, default_multipliers, timestep_embedding
from genlearn.errors import ConfigError


@pytest.mark.parametrize(("size", "channels", "levels"), [(28, 1, 3), (32, 3, 3), (64, 3, 4)])
def test_unet_keeps_the_shape(size, channels, levels):
    model = UNet(in_channels=channels, image_size=size, base_channels=16)
    assert len(default_multipliers(size)) == levels
    x = torch.randn(2, channels, size, size)
    out = model(x, torch.tensor([0, 999]))
    assert out.shape == x.shape


def test_the_output_depends_on_time_and_label():
    torch.manual_seed(0)
    model = UNet(image_size=28, base_channels=16, num_classes=10)
    for block in [*model.down_blocks, *model.up_blocks]:  # undo the identity start
        torch.nn.init.normal_(block.conv2.weight, std=0.05)
    x = torch.randn(1, 1, 28, 28)
    with torch.no_grad():
        base = model(x, torch.tensor([10]), torch.tensor([3]))
        later = model(x, torch.tensor([500]), torch.tensor([3]))
        other = model(x, torch.tensor([10]), torch.tensor([4]))
        unlabelled = model(x, torch.tensor([10]))
    assert not torch.allclose(base, later) and not torch.allclose(base, other)
    assert not torch.allclose(base, unlabelled)


def test_timestep_embedding_is_sinusoidal():
    embedding = timestep_embedding(torch.tensor([0, 7]), 8)
    assert embedding.shape == (2, 8)
    torch.testing.assert_close(embedding[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    torch.testing.assert_close(embedding[1, 0], torch.cos(torch.tensor(7.0)))
    torch.testing.assert_close(embedding.pow(2)[:, :4] + embedding.pow(2)[:, 4:], torch.ones(2, 4))


def test_sizes_that_cannot_be_halved_are_refused():
    with pytest.raises(ConfigError, match="cannot be halved"):
        UNet(image_size=30, channel_multipliers=(1, 2, 2, 2))


def test_a_tiny_denoiser_learns_the_noise():
    from genlearn.diffusion.schedules import NoiseSchedule

    torch.manual_seed(0)
    schedule = NoiseSchedule.cosine(100)
    data = (torch.rand(32, 1, 8, 8) > 0.5).float() * 2 - 1  # a fixed set of binary patterns
    model = UNet(image_size=8, base_channels=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    probe = torch.Generator().manual_seed(1)
    t_probe = torch.randint(0, 100, (32,), generator=probe)
    noise_probe = torch.randn(data.shape, generator=probe)
    x_probe = schedule.q_sample(data, t_probe, noise_probe)

    def probe_loss():
        with torch.no_grad():
            return (model(x_probe, t_probe) - noise_probe).pow(2).mean().item()

    before = probe_loss()
    for _ in range(150):  # Ho et al. Algorithm 1: random t, random noise, regress the noise
        t = torch.randint(0, 100, (32,))
        noise = torch.randn_like(data)
        loss = (model(schedule.q_sample(data, t, noise), t) - noise).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert probe_loss() < 0.6 * before
