"""DeepDream: the objective rises, tiling is exact, octaves and zooms have the right sizes,
and a class dream makes a real ImageNet network see the class."""

from __future__ import annotations

import pytest
import torch

from genlearn.art.deepdream import (
    DreamConfig,
    Objective,
    _layer_grids,
    dream,
    dream_step,
    objective_gradient,
    objective_value,
    octave_sizes,
    parse_layers,
    zoom_centre,
    zoom_frames,
)
from genlearn.backbones.catalog import BACKBONES
from genlearn.backbones.efficientnet import efficientnet_normalise
from genlearn.backbones.imagenet import imagenet_class
from genlearn.backbones.inception import InceptionV3
from genlearn.backbones.vgg import VGG
from genlearn.errors import ConfigError


@pytest.fixture(scope="module")
def lite0():
    return BACKBONES["efficientnet-lite0"].load()


@pytest.fixture(scope="module")
def random_vgg():
    torch.manual_seed(0)
    return VGG("vgg16", classifier=False).eval().requires_grad_(False)


def smooth_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8, width // 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")


def test_one_dream_step_increases_the_objective(lite0):
    image = smooth_image(96, 128)
    objective = Objective(("block8",), (None,))
    config = DreamConfig(jitter=0, step_size=0.005)
    before = objective_value(lite0, efficientnet_normalise, image, objective).item()
    after_image, _ = dream_step(
        lite0, efficientnet_normalise, image, objective, config, torch.Generator()
    )
    after = objective_value(lite0, efficientnet_normalise, after_image, objective).item()
    assert after > before * 1.01


@pytest.mark.parametrize(("layers", "margin"), [(("relu2_2",), 32), (("relu3_3", "conv2_1"), 64)])
def test_tiled_gradient_equals_the_whole_images(random_vgg, layers, margin):
    # VGG's receptive field is 14 px at relu2_2 and 40 px at relu3_3: margins that cover them
    # make every tile's core activations exact, so the tiled gradient is the whole one
    image = smooth_image(160, 224)
    objective = Objective(layers, (None,) * len(layers))
    whole, value = objective_gradient(random_vgg, lambda x: x, image, objective)
    tiled, tiled_value = objective_gradient(
        random_vgg, lambda x: x, image, objective, tile=64, margin=margin
    )
    assert tiled_value == pytest.approx(value, rel=1e-5)
    torch.testing.assert_close(tiled, whole, rtol=1e-4, atol=1e-4 * whole.abs().max().item())


def test_tiles_without_enough_margin_are_only_close(random_vgg):
    image = smooth_image(160, 224)
    objective = Objective(("relu3_3",), (None,))
    whole, _ = objective_gradient(random_vgg, lambda x: x, image, objective)
    tiled, _ = objective_gradient(random_vgg, lambda x: x, image, objective, tile=64, margin=0)
    scale = whole.abs().max().item()  # random weights: tiny activations, tiny gradients
    assert not torch.allclose(tiled, whole, rtol=1e-4, atol=1e-4 * scale)  # the test above can fail
    cosine = torch.nn.functional.cosine_similarity(tiled.flatten(), whole.flatten(), dim=0)
    assert cosine > 0.5


def test_shape_only_grids_match_real_activations(lite0):
    image = smooth_image(100, 140)
    grids = _layer_grids(lite0, efficientnet_normalise, image.shape, ("block3", "block10"))
    features = lite0.features_at(efficientnet_normalise(image), ["block3", "block10"])
    assert [(g.rows, g.cols) for g in grids] == [f.shape[-2:] for f in features.values()]
    assert [g.stride for g in grids] == [8, 16]


def test_tiling_is_exact_on_an_unpadded_stem_and_odd_sizes():
    # InceptionV3's stem convolutions are unpadded (its grids are not image size / stride),
    # and 200 x 230 leaves short last tiles: with margins covering the receptive field of
    # mixed0 the tiled gradient is still the whole image's
    torch.manual_seed(0)
    network = InceptionV3(num_classes=1000, fid_variant=False).eval().requires_grad_(False)
    image = smooth_image(200, 232)[..., :230]
    objective = Objective(("mixed0",), (None,))
    whole, value = objective_gradient(network, lambda x: 2 * x - 1, image, objective)
    tiled, tiled_value = objective_gradient(
        network, lambda x: 2 * x - 1, image, objective, tile=96, margin=96
    )
    assert tiled_value == pytest.approx(value, rel=1e-5)
    torch.testing.assert_close(tiled, whole, rtol=1e-4, atol=1e-4 * whole.abs().max().item())


def test_octaves_grow_to_the_full_size():
    assert octave_sizes((300, 400), 3, 2.0) == [(75, 100), (150, 200), (300, 400)]
    assert octave_sizes((40, 40), 4, 2.0)[0] == (32, 32)  # never below the smallest side


def test_dream_keeps_size_and_stays_in_range(lite0):
    image = smooth_image(72, 104)
    out = dream(
        lite0, efficientnet_normalise, image, Objective(("block5",), (None,)),
        DreamConfig(octaves=2, steps=2),
    )  # fmt: skip
    assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
    assert (out - image).abs().mean() > 0.005  # it changed the picture


def test_zoom_frames_and_centre_crop(lite0):
    image = smooth_image(64, 64)
    zoomed = zoom_centre(image, 2.0)
    expected = torch.nn.functional.interpolate(
        image[..., 16:48, 16:48], size=(64, 64), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(zoomed, expected)
    frames = zoom_frames(
        lite0, efficientnet_normalise, image, Objective(("block3",), (None,)), 3,
        DreamConfig(octaves=1, steps=1),
    )  # fmt: skip
    assert len(frames) == 3 and all(f.shape == image.shape for f in frames)


def test_a_class_dream_makes_the_network_see_the_class(lite0):
    banana = imagenet_class("banana")
    image = 0.5 + 0.05 * torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    objective = Objective(class_index=banana)
    config = DreamConfig(octaves=2, steps=12, step_size=0.03, jitter=8)

    def banana_probability_and_rank(x):
        with torch.no_grad():
            probabilities = lite0(efficientnet_normalise(x)).softmax(-1)[0]
        return probabilities[banana].item(), int((probabilities > probabilities[banana]).sum())

    before, _ = banana_probability_and_rank(image.clamp(0, 1))
    dreamt = dream(lite0, efficientnet_normalise, image.clamp(0, 1), objective, config)
    after, rank = banana_probability_and_rank(dreamt)
    # ascent from noise is sensitive to rounding (thread counts, kernels), so the bounds are
    # loose: in 24 steps banana goes from one class among 1000 to one of the network's top 3
    assert before < 0.01 and after > 30 * before and rank < 3


def test_guide_objective_rewards_the_guides_features(random_vgg):
    from genlearn.art.deepdream import guide_features

    guide = smooth_image(64, 64, seed=1)
    maps = guide_features(random_vgg, lambda x: x, guide, ("relu2_2",))
    objective = Objective(("relu2_2",), (None,), guide=maps)
    image = smooth_image(64, 64, seed=2)
    step, _ = dream_step(
        random_vgg, lambda x: x, image, objective, DreamConfig(jitter=0, step_size=0.01),
        torch.Generator(),
    )  # fmt: skip
    assert objective_value(random_vgg, lambda x: x, step, objective) > objective_value(
        random_vgg, lambda x: x, image, objective
    )


def test_layer_specs_are_checked(lite0):
    assert parse_layers("block3, block8:7", lite0) == (("block3", "block8"), (None, 7))
    with pytest.raises(ConfigError, match="has no layer 'block99'.*block0"):
        parse_layers("block99", lite0)
    with pytest.raises(ConfigError, match="--class"):
        parse_layers("logits", lite0)
    with pytest.raises(ConfigError, match="must be a number"):
        parse_layers("block3:x", lite0)
    with pytest.raises(ConfigError, match="channels 0 to 39"):
        objective_value(
            lite0, efficientnet_normalise, smooth_image(64, 64), Objective(("block3",), (40,))
        )
    with pytest.raises(ConfigError, match="--tile must be a multiple of 32"):
        DreamConfig(tile=100).validate()
