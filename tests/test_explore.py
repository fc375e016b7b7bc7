"""Latent-space exploration: the codes each figure decodes, and the files it writes."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from torch import nn

from genlearn.errors import ConfigError
from genlearn.explore.latent import (
    attribute_figure,
    attribute_mask,
    attribute_vector,
    decode_all,
    encode_all,
    gaussian_quantiles,
    interpolate,
    interpolation_codes,
    interpolation_frames,
    latent_grid,
    latent_grid_codes,
    latent_scatter,
    prior_gap_stats,
    prior_samples,
)
from genlearn.explore.suite import standard_figures
from genlearn.models.autoencoder import Autoencoder, AutoencoderConfig

torch.set_num_threads(1)


SPAN = 40.0  # PixelCodes maps pixel values 0..1 to codes -20..20


class PixelCodes(nn.Module):
    """A model with a known encoder: the code of an image is its first d pixels, rescaled
    from 0..1 to -20..20 (so codes can be negative and large, as an AE's are).

    The decoder paints z[0] into the left half and z[1] into the right half (through a
    sigmoid), so different codes give visibly different images.
    """

    def __init__(self, latent_dim: int = 2, variational: bool = True, size: int = 4):
        super().__init__()
        self.latent_dim, self.variational = latent_dim, variational
        self.image_shape = (1, size, size)
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.encode_batches: list[int] = []

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        self.encode_batches.append(len(x))
        return (x.flatten(1)[:, : self.latent_dim] - 0.5) * SPAN * self.scale

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        image = torch.zeros(len(z), c, h, w)
        image[..., : w // 2] = z[:, 0, None, None, None]
        image[..., w // 2 :] = z[:, 1 % self.latent_dim, None, None, None]
        return torch.sigmoid(image)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(torch.randn(n, self.latent_dim, generator=generator))


def tiny_autoencoder(variational: bool, latent_dim: int = 2) -> Autoencoder:
    torch.manual_seed(0)
    config = AutoencoderConfig(
        variational=variational, latent_dim=latent_dim, arch="mlp", image_size=8, mlp_hidden=[16]
    )
    return Autoencoder(config)


def images_from_codes(codes: torch.Tensor, size: int = 4) -> torch.Tensor:
    """Float images whose PixelCodes codes are `codes` (the other pixels 0.5)."""
    images = torch.full((len(codes), 1, size, size), 0.5)
    flat = images.view(len(codes), -1)
    flat[:, : codes.shape[1]] = codes / SPAN + 0.5
    return images


def record_decodes(model: nn.Module, monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Make `model.decode` remember every batch of codes it is given."""
    seen: list[torch.Tensor] = []
    original = model.decode

    def decode(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.detach().clone())
        return original(z)

    monkeypatch.setattr(model, "decode", decode)
    return seen


# ---- running the model -----------------------------------------------------------------------
def test_encode_all_batches_without_gradients_and_restores_training_mode():
    model = PixelCodes()
    model.train()
    images = torch.rand(1200, 1, 4, 4)
    codes = encode_all(model, images, batch_size=512)
    assert model.encode_batches == [512, 512, 176]
    assert torch.allclose(codes, (images.flatten(1)[:, :2] - 0.5) * SPAN)
    assert not codes.requires_grad and model.training


def test_encode_all_scales_uint8_images():
    images = torch.tensor([[[[255, 0], [0, 0]]]], dtype=torch.uint8)
    assert torch.allclose(encode_all(PixelCodes(), images), torch.tensor([[0.5, -0.5]]) * SPAN)


# ---- attribute vectors and masks -------------------------------------------------------------
def test_attribute_vector_is_the_difference_of_mean_codes():
    codes = torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.2, 0.2], [0.0, 0.6], [0.1, 0.4]])
    has = torch.tensor([True, True, False, False, False])
    vector = attribute_vector(PixelCodes(), images_from_codes(codes), has)
    # by hand: with = mean of (0.9, 0.1), (0.7, 0.3) = (0.8, 0.2);
    # without = mean of (0.2, 0.2), (0, 0.6), (0.1, 0.4) = (0.1, 0.4)
    assert torch.allclose(vector, torch.tensor([0.7, -0.2]), atol=1e-5)


@pytest.mark.parametrize("has", [[True, True, True], [False, False, False]])
def test_attribute_vector_needs_both_groups(has):
    with pytest.raises(ConfigError, match="with and without"):
        attribute_vector(PixelCodes(), torch.rand(3, 1, 4, 4), torch.tensor(has))


def test_attribute_mask_for_class_labels_by_name_or_index():
    labels = torch.tensor([7, 1, 7, 0])
    digits = [str(i) for i in range(10)]
    assert attribute_mask(labels, digits, None, "7").tolist() == [True, False, True, False]
    names = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker"]
    assert attribute_mask(labels, names, None, "sneaker").tolist() == [True, False, True, False]
    assert attribute_mask(labels, names, None, "1").tolist() == [False, True, False, False]
    with pytest.raises(ConfigError, match="Trouser"):
        attribute_mask(labels, names, None, "boot")


def test_attribute_mask_for_binary_attributes_matches_names_case_insensitively():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    names = ["Smiling", "Wearing_Hat"]
    assert attribute_mask(labels, None, names, "smiling").tolist() == [True, False, True]
    assert attribute_mask(labels, None, names, "wearing hat").tolist() == [False, True, True]


def test_attribute_mask_for_continuous_attributes_splits_at_the_median():
    labels = torch.tensor([[0.1, 0.5], [0.9, 0.5], [0.4, 0.5], [0.6, 0.5], [0.3, 0.5]])
    mask = attribute_mask(labels, None, ["height", "width"], "Height")
    assert mask.tolist() == [False, True, False, True, False]


def test_attribute_mask_errors_list_the_valid_names():
    labels = torch.zeros(3, 2)
    with pytest.raises(ConfigError, match="valid attributes: height, width"):
        attribute_mask(labels, None, ["height", "width"], "depth")
    with pytest.raises(ConfigError, match="no labels"):
        attribute_mask(None, None, None, "height")


def test_attribute_figure_decodes_code_plus_strength_times_vector(tmp_path, monkeypatch):
    model = PixelCodes()
    seen = record_decodes(model, monkeypatch)
    codes = torch.tensor([[0.2, 0.4], [0.6, 0.8]])
    vector = torch.tensor([1.0, -1.0])
    path = attribute_figure(
        model,
        images_from_codes(codes),
        vector,
        [-1, 0, 2],
        tmp_path / "attribute_x.png",
        row_labels=["a", "b"],
    )
    decoded = torch.cat(seen)
    expected = torch.stack([c + s * vector for c in codes for s in (-1.0, 0.0, 2.0)])
    assert torch.allclose(decoded, expected, atol=1e-5)
    assert path.is_file()


# ---- interpolation ---------------------------------------------------------------------------
@pytest.mark.parametrize("spherical", [False, True])
def test_interpolation_starts_and_ends_at_the_decodes_of_the_two_codes(spherical):
    model = tiny_autoencoder(variational=True)
    a, b = torch.rand(1, 8, 8), torch.rand(1, 8, 8)
    frames = interpolation_frames(model, a, b, steps=7, spherical=spherical)
    with torch.no_grad():
        end_a = model.decode(model.encode(a[None]))[0]
        end_b = model.decode(model.encode(b[None]))[0]
    assert frames.shape == (7, 1, 8, 8)
    assert torch.allclose(frames[0], end_a, atol=1e-5)
    assert torch.allclose(frames[-1], end_b, atol=1e-5)


def test_interpolation_codes_linear_and_spherical():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    linear = interpolation_codes(a, b, 3)
    assert torch.allclose(linear[1], torch.tensor([0.5, 0.5]))
    slerp = interpolation_codes(a, b, 3, spherical=True)
    assert torch.allclose(slerp[1], torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]))
    assert torch.allclose(slerp.norm(dim=1), torch.ones(3))


def test_interpolate_writes_a_strip_and_a_bouncing_gif(tmp_path):
    model = PixelCodes()
    a = images_from_codes(torch.tensor([[-0.9, 0.9]]))[0]
    b = images_from_codes(torch.tensor([[0.9, -0.9]]))[0]
    png = interpolate(
        model,
        a,
        b,
        tmp_path / "interpolation.png",
        steps=5,
        gif_path=tmp_path / "interpolation.gif",
        gif_steps=6,
    )
    assert png == tmp_path / "interpolation.png" and png.is_file()
    with Image.open(tmp_path / "interpolation.gif") as gif:
        assert gif.n_frames == 2 * 6 - 2  # a -> b -> a without repeating the ends
    captions = json.loads((tmp_path / "captions.json").read_text())
    assert set(captions) == {"interpolation.png", "interpolation.gif"}


# ---- latent grid -----------------------------------------------------------------------------
def test_latent_grid_of_a_2d_vae_decodes_gaussian_quantiles(tmp_path, monkeypatch):
    model = PixelCodes(variational=True)
    seen = record_decodes(model, monkeypatch)
    latent_grid(model, tmp_path / "latent_grid.png", n=5)
    z = torch.cat(seen).view(5, 5, 2)
    quantiles = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, 5))
    assert torch.allclose(z[0, :, 0], quantiles, atol=1e-5)  # columns: z1 left to right
    assert torch.allclose(z[:, 0, 1], quantiles.flip(0), atol=1e-5)  # rows: z2 top down
    assert z[0, 0, 0] == pytest.approx(-1.6448536, abs=1e-5)
    assert (tmp_path / "latent_grid.png").is_file()


def test_gaussian_quantiles_are_symmetric():
    q = gaussian_quantiles(3)
    assert torch.allclose(q, torch.tensor([-1.6448536, 0.0, 1.6448536]), atol=1e-5)


def test_latent_grid_of_an_autoencoder_spans_the_codes_percentiles(tmp_path, monkeypatch):
    model = PixelCodes(variational=False)
    with pytest.raises(ConfigError, match="pass images"):
        latent_grid(model, tmp_path / "grid.png", n=4)
    codes = torch.stack([torch.linspace(-3.0, 5.0, 101), torch.linspace(10.0, 20.0, 101)], 1)
    seen = record_decodes(model, monkeypatch)
    latent_grid(model, tmp_path / "grid.png", n=4, images=images_from_codes(codes))
    z = torch.cat(seen)
    assert z[:, 0].min().item() == pytest.approx(-3.0 + 0.01 * 8.0, abs=1e-4)  # 1st percentile
    assert z[:, 0].max().item() == pytest.approx(5.0 - 0.01 * 8.0, abs=1e-4)  # 99th
    assert z[:, 1].max().item() == pytest.approx(20.0 - 0.01 * 10.0, abs=1e-4)


def test_latent_grid_above_2d_lies_in_the_principal_plane_through_the_mean():
    torch.manual_seed(0)
    model = PixelCodes(latent_dim=4, variational=True)
    basis = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]]) / math.sqrt(2)
    codes = torch.randn(200, 2) * torch.tensor([3.0, 1.0]) @ basis + torch.tensor([1, 2, 3, 4.0])
    grid = latent_grid_codes(model, n=6, images=images_from_codes(codes))
    offsets = grid.codes.reshape(-1, 4) - codes.mean(0)
    residual = offsets - offsets @ basis.T @ basis  # what lies outside the data's plane
    assert grid.codes.shape == (6, 6, 4)
    assert residual.abs().max() < 1e-4
    assert grid.xlabel.startswith("PC1")


# ---- figures that write files ----------------------------------------------------------------
def test_standard_figures_write_pngs_with_default_captions(tmp_path):
    model = tiny_autoencoder(variational=False, latent_dim=2)
    images = (torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 255).to(
        torch.uint8
    )
    labels = torch.arange(40) % 4
    figures = tmp_path / "figures"
    paths = standard_figures(
        model, images, labels, figures, class_names=["a", "b", "c", "d"], attribute="b", grid_size=4
    )
    assert [p.name for p in paths] == [
        "prior_samples.png",
        "reconstructions.png",
        "latent_scatter.png",
        "latent_grid.png",
        "prior_gap.png",
        "interpolation.png",
        "interpolation.gif",
        "attribute_b.png",
    ]
    assert all(p.parent == figures for p in paths)
    assert {p.name for p in figures.iterdir()} == {p.name for p in paths} | {"captions.json"}
    for path in paths:
        with Image.open(path) as image:
            assert image.format == path.suffix[1:].upper() and min(image.size) > 100
    with Image.open(figures / "interpolation.gif") as gif:
        assert gif.n_frames > 2
    captions = json.loads((figures / "captions.json").read_text())
    assert set(captions) == {p.name for p in paths}
    assert all(isinstance(c, str) and len(c) > 40 for c in captions.values())
    assert "N(0, I)" in captions["prior_samples.png"]
    assert "plain autoencoder" in captions["prior_samples.png"]  # the model is an AE
    assert "coloured by class" in captions["latent_scatter.png"]
    assert "'b' vector" in captions["attribute_b.png"]
    assert captions["prior_gap.png"].startswith("The prior gap")


def test_prior_gap_stats_counts_samples_like_the_codes_at_the_nominal_rate():
    # Samples drawn like the codes are "in empty space" as often as codes are from each other:
    # 5% for the 95th-percentile threshold, also with more codes than the 2,000 compared.
    generator = torch.Generator().manual_seed(0)
    for count in (1500, 5000):
        codes = torch.randn(count, 8, generator=generator)
        samples = torch.randn(2000, 8, generator=generator)
        empty, threshold = prior_gap_stats(codes, samples)
        assert threshold > 0
        assert 0.035 < empty / len(samples) < 0.07, (count, empty)
    far = torch.randn(10, 8, generator=generator) + 50.0
    assert prior_gap_stats(codes, far)[0] == 10


def test_prior_samples_upscales_small_images(tmp_path):
    path = prior_samples(PixelCodes(size=4), tmp_path / "s.png", n=4, caption="")
    with Image.open(path) as image:
        assert image.size == (2 * 56 + 3 * 2, 2 * 56 + 3 * 2)  # 4 px tiles shown at 56 px
    assert not (tmp_path / "captions.json").exists()  # caption="" records none


def test_latent_scatter_projects_with_pca_and_colours_by_attribute(tmp_path):
    model = tiny_autoencoder(variational=True, latent_dim=4)
    images = torch.rand(30, 1, 8, 8)
    attributes = torch.rand(30, 2)
    path = latent_scatter(
        model,
        images,
        attributes,
        tmp_path / "scatter.png",
        attribute_names=["height", "width"],
        attribute="width",
    )
    assert path.is_file()
    assert (
        "principal components"
        in json.loads((tmp_path / "captions.json").read_text())["scatter.png"]
    )
    with pytest.raises(ConfigError, match="valid attributes"):
        latent_scatter(
            model,
            images,
            attributes,
            tmp_path / "bad.png",
            attribute_names=["height", "width"],
            attribute="depth",
        )


def test_decode_all_returns_images_in_unit_range():
    out = decode_all(PixelCodes(), torch.tensor([[-50.0, 50.0]]))
    assert out.shape == (1, 1, 4, 4) and out.min() >= 0 and out.max() <= 1
