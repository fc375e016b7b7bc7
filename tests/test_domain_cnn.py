"""The domain feature network: preprocessing, the shipped MNIST weights, training, loading."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from genlearn.backbones.domain_cnn import (
    DomainCNN,
    DomainNetInfo,
    domain_preprocess,
    load_domain_network,
    random_shift,
    shipped_path,
    train_domain_network,
)
from genlearn.errors import ConfigError, WeightsError
from genlearn.train.runs import save_tensors_atomic


# ---- preprocessing and architecture -------------------------------------------------------------
@pytest.mark.parametrize(
    "shape", [(5, 1, 28, 28), (5, 1, 16, 16), (5, 3, 32, 32)], ids=["grey28", "grey16", "rgb32"]
)
def test_preprocess_gives_grey_28px_floats_in_minus_one_one(shape):
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    x = domain_preprocess(images)
    assert x.shape == (5, 1, 28, 28)
    assert x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0


def test_preprocess_values_luma_and_float_input():
    white = torch.full((2, 1, 16, 16), 255, dtype=torch.uint8)
    assert torch.allclose(domain_preprocess(white), torch.ones(2, 1, 28, 28))
    red = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    red[:, 0] = 255
    assert torch.allclose(domain_preprocess(red), torch.full((1, 1, 28, 28), 2 * 0.299 - 1))
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.allclose(domain_preprocess(images), domain_preprocess(images.float() / 255))
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        domain_preprocess(images.float() / 127.5 - 1 - 1)  # a [-2, 0] mistake


def test_network_is_small_and_gives_features_and_logits():
    model = DomainCNN().eval()
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters * 4 < 600_000  # fp32 bytes: well under 1 MB
    features, logits = model.forward_features(torch.zeros(4, 1, 28, 28))
    assert features.shape == (4, 128) and logits.shape == (4, 10)
    assert torch.equal(model(torch.zeros(4, 1, 28, 28)), logits)


def test_random_shift_moves_each_image_by_at_most_max_shift():
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    shifted = random_shift(x, torch.Generator().manual_seed(0), max_shift=2)
    rows, cols = torch.nonzero(shifted[:, 0] == 1.0, as_tuple=True)[1:]
    assert len(rows) == 64  # the dot survives in every image
    assert (rows - 14).abs().max() == 2 and (cols - 14).abs().max() == 2
    assert (
        len({(int(r), int(c)) for r, c in zip(rows, cols, strict=True)}) > 10
    )  # shifts differ by image


# ---- the shipped network --------------------------------------------------------------------------
def test_shipped_info_records_mnist_and_its_accuracy():
    path = shipped_path()
    assert path.is_file() and path.stat().st_size < 1_000_000
    recorded = json.loads(path.with_suffix(".json").read_text())
    assert recorded["data"] == "mnist" and recorded["name"] == "mnist-cnn"
    assert recorded["test_accuracy"] >= 0.99 and recorded["test_images"] == 10_000
    _, info = load_domain_network()
    assert asdict(info) == recorded  # the JSON and the weights' metadata agree


def test_shipped_network_classifies_mnist(shared_data):
    from genlearn.data import get_dataset

    model, info = load_domain_network()
    assert not model.training
    mnist = get_dataset("mnist")
    with torch.inference_mode():
        predicted = model(domain_preprocess(mnist.test_images[:2000])).argmax(1)
    accuracy = (predicted == mnist.test_labels[:2000]).float().mean().item()
    assert accuracy >= 0.985, f"{accuracy:.4f}"


# ---- training -------------------------------------------------------------------------------------
def _train_digits(out_dir: Path, seed: int = 0) -> DomainNetInfo:
    return train_domain_network(
        "digits", out_dir=out_dir, epochs=1, batch_size=64, seed=seed, show_progress=False
    )


def test_training_learns_is_reproducible_and_round_trips(tmp_path):
    first = _train_digits(tmp_path / "a")
    second = _train_digits(tmp_path / "b")
    _train_digits(tmp_path / "c", seed=1)
    assert first.test_accuracy >= 0.75, first  # chance is 0.1; seeds 0-2 give 0.90-0.95
    assert second.test_accuracy == first.test_accuracy
    assert (first.data, first.name, first.epochs, first.test_images) == (
        "digits",
        "digits-cnn",
        1,
        269,
    )
    a = load_file(tmp_path / "a" / "digits-cnn.safetensors")
    b = load_file(tmp_path / "b" / "digits-cnn.safetensors")
    c = load_file(tmp_path / "c" / "digits-cnn.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the seed is what made them equal
    assert json.loads((tmp_path / "a" / "digits-cnn.json").read_text()) == asdict(first)
    model, info = load_domain_network(tmp_path / "a" / "digits-cnn.safetensors", name="digits-cnn")
    assert info == first
    from genlearn.data import get_dataset

    digits = get_dataset("digits")
    with torch.inference_mode():
        predicted = model(domain_preprocess(digits.test_images)).argmax(1)
    accuracy = (predicted == digits.test_labels).float().mean().item()
    assert accuracy == pytest.approx(first.test_accuracy, abs=1e-6)


def test_training_needs_labelled_images(tmp_path):
    with pytest.raises(ConfigError, match="no class labels"):
        train_domain_network("cylinders", out_dir=tmp_path, show_progress=False)
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(folder / f"{i}.png")
    with pytest.raises(ConfigError, match="no class labels") as caught:
        train_domain_network(f"folder:{folder}", out_dir=tmp_path, show_progress=False)
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match="not an image dataset"):
        train_domain_network("toy2d", out_dir=tmp_path, show_progress=False)
    assert not list(tmp_path.glob("*.safetensors"))


def test_training_needs_a_test_split(tmp_path, monkeypatch):
    from genlearn.data import REGISTRY, DatasetSpec, ImageDataset

    def no_test_split() -> ImageDataset:
        images = torch.zeros(256, 1, 28, 28, dtype=torch.uint8)
        return ImageDataset(
            "no-test",
            images,
            images[:0],
            torch.zeros(256, dtype=torch.long),
            torch.zeros(0, dtype=torch.long),
            ["a", "b"],
            None,
            "test",
        )

    spec = DatasetSpec("no-test", "embedded", "no test split", no_test_split, lambda: "embedded")
    monkeypatch.setitem(REGISTRY, "no-test", spec)
    with pytest.raises(ConfigError, match="no labelled test split"):
        train_domain_network("no-test", out_dir=tmp_path, show_progress=False)


# ---- loading errors -------------------------------------------------------------------------------
def _valid_info(**changes) -> dict:
    info = DomainNetInfo("mnist-cnn", "mnist", 0.99, 10_000, 4, 0, 128, 10, None, 1.0, "0.1.0")
    return {**asdict(info), **changes}


def _assert_weights_error(path: Path, **options) -> None:
    with pytest.raises(
        WeightsError, match="genlearn metrics train-features --data mnist"
    ) as caught:
        load_domain_network(path, **options)
    assert "\n" not in str(caught.value)


def test_missing_or_corrupt_weights_raise_weights_error(tmp_path):
    _assert_weights_error(tmp_path / "absent.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00not a safetensors file at all")
    _assert_weights_error(garbage)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(shipped_path().read_bytes()[:5000])
    _assert_weights_error(truncated)


def test_mismatched_weights_raise_weights_error(tmp_path):
    good = load_file(shipped_path())
    wrong_tensors = tmp_path / "wrong-tensors.safetensors"
    save_tensors_atomic(wrong_tensors, {"weight": torch.zeros(3, 3)}, _valid_info())
    _assert_weights_error(wrong_tensors)
    wrong_size = tmp_path / "wrong-size.safetensors"
    save_tensors_atomic(wrong_size, good, _valid_info(feature_dim=64))
    _assert_weights_error(wrong_size)
    no_info = tmp_path / "no-info.safetensors"
    save_tensors_atomic(no_info, good, {"something": "else"})
    _assert_weights_error(no_info)
    not_finite = tmp_path / "not-finite.safetensors"
    save_tensors_atomic(
        not_finite, {**good, "classifier.bias": torch.full((10,), np.nan)}, _valid_info()
    )
    _assert_weights_error(not_finite)
    save_tensors_atomic(tmp_path / "ok.safetensors", good, _valid_info())
    load_domain_network(tmp_path / "ok.safetensors")  # the same tensors with valid info load
