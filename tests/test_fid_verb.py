"""`genlearn fid A B`: statistics files, folders streamed in chunks, too-small sets, strict JSON."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image
from threadpoolctl import threadpool_limits

from genlearn.data import imaging
from genlearn.data.containers import DataWarning
from genlearn.errors import DataError
from genlearn.metrics import compare, image_sets
from genlearn.metrics.compare import fid_space
from genlearn.metrics.features import FeatureExtractor
from genlearn.metrics.frechet import GaussianStats
from genlearn.metrics.image_sets import ImageSet, load_image_set

OTHER = "dataset:digits:test"  # 269 embedded 28-px digits: a fast second side


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _one_line(err: str) -> str:
    """The error as one line of words (Rich may wrap a long line at the console width)."""
    assert err.count("error:") == 1 and "Traceback" not in err, err
    return " ".join(err.split())


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """On a busy shared CPU, OpenBLAS threads spin against each other: the eigh/SVD of FID
    then take ten to a hundred times as long. The figures are the same with one thread."""
    with threadpool_limits(1, "blas"):
        yield


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if a feature network is even looked for."""

    def refuse(*args, **kwargs):
        raise AssertionError("a feature network was requested")

    monkeypatch.setattr(compare, "get_extractor", refuse)
    monkeypatch.setattr(compare, "imagenet_space", refuse)


# ---- statistics files -------------------------------------------------------------------------
def test_two_statistics_files_need_no_weights(tmp_path, monkeypatch, capsys, no_network):
    monkeypatch.delenv("GENLEARN_WEIGHTS", raising=False)  # and GENLEARN_OFFLINE=1 (conftest)
    rng = np.random.default_rng(0)
    dim = 2048
    var_a, var_b = rng.uniform(0.5, 2.0, dim), rng.uniform(0.5, 2.0, dim)
    mu_a, mu_b = np.zeros(dim), rng.normal(0.0, 0.1, dim)
    np.savez(tmp_path / "a.npz", mu=mu_a, sigma=np.diag(var_a), count=np.int64(1000))
    np.savez(tmp_path / "b.npz", mu=mu_b, sigma=np.diag(var_b))
    code, out, err = run_cli(
        monkeypatch, capsys, "fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    )
    assert code == 0 and err == "", err
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    line = out.strip().splitlines()[-1]
    assert "NaN" not in line and '"fid_stderr": null' in line  # strict JSON
    figures = json.loads(line)
    assert figures["features"] == "inception" and "kid" not in figures
    assert figures["fid"] == pytest.approx(expected, rel=1e-9)
    assert "FID: " in out and "±" not in out  # no standard error to show
    assert "statistics of 1,000 images vs statistics" in out


@pytest.mark.parametrize(("dim", "space"), [(2048, "inception"), (1280, "efficientnet-lite0")])
def test_auto_space_of_statistics_by_dimension(dim, space, no_network):
    stats = ImageSet("s.npz", stats=GaussianStats(np.zeros(dim), np.eye(dim), 0))
    assert fid_space("auto", [stats, stats]) == space


def _stats_file(path: Path, dim: int, **overrides) -> None:
    arrays = {"mu": np.zeros(dim), "sigma": np.eye(dim)} | overrides
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("bad", "args", "message"),
    [
        ({"sigma": np.ones(4)}, [], "`sigma` must be the [4, 4] covariance"),
        ({"sigma": np.ones((4, 3))}, [], "got shape [4, 3]"),
        ({"mu": np.ones((2, 2))}, [], "`mu` must be a vector"),
        ({"mu": np.array([0.0, np.nan, 0.0, 0.0])}, [], "`mu` holds NaN or infinite"),
        ({"sigma": np.diag([1.0, np.inf, 1.0, 1.0])}, [], "`sigma` holds NaN or infinite"),
        ({"count": np.array([5, 6])}, [], "`count` must be one whole number"),
        ({"count": np.float64(2.5)}, [], "`count` must be one whole number"),
        ({"count": np.int64(1)}, [], "at least 2 images"),
        ({"mu": np.zeros(64), "sigma": np.eye(64)}, [], "64-d statistics, which match no known"),
        ({}, ["--features", "mnist-cnn"], "4-d statistics, but MNIST-CNN features are 128-d"),
        ({}, ["--features", "inception"], "4-d statistics, but Inception V3 features are 2048-d"),
        ({}, ["--features", "fashion-mnist-cnn"], "4-d statistics and good.npz 128-d ones"),
    ],
)
def test_bad_statistics_name_the_file(
    tmp_path, monkeypatch, capsys, no_network, bad, args, message
):
    monkeypatch.chdir(tmp_path)
    _stats_file(tmp_path / "good.npz", 128)
    _stats_file(tmp_path / "bad.npz", 4, **bad)
    code, _, err = run_cli(monkeypatch, capsys, "fid", "bad.npz", "good.npz", *args)
    assert code == 2
    line = _one_line(err)
    assert line.startswith("error: bad.npz") and message in line, line


def test_statistics_must_match_the_space_of_the_other_side(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _stats_file(tmp_path / "stats.npz", 2048)
    calls = []
    monkeypatch.setattr(FeatureExtractor, "__call__", lambda *a, **k: calls.append(1))
    code, _, err = run_cli(
        monkeypatch, capsys, "fid", "stats.npz", OTHER, "--features", "mnist-cnn"
    )
    assert code == 2 and not calls  # refused before embedding anything
    assert "stats.npz holds 2048-d statistics, but MNIST-CNN features are 128-d" in _one_line(err)


# ---- folders ----------------------------------------------------------------------------------
def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _mixed_folder(folder: Path) -> list[Path]:
    """PNGs of mixed sizes and modes (with two corrupt files, the first one among them);
    returns the readable ones in the order the folder is read."""
    rng = np.random.default_rng(1)

    def colour(h, w):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    def grey(h, w):
        return rng.integers(0, 256, (h, w), dtype=np.uint8)

    folder.mkdir()
    (folder / "000-corrupt.png").write_bytes(b"not an image at all")
    files = {
        "a00.png": colour(30, 24),  # the first readable file: working size 24
        "a01.png": colour(40, 40),
        "a02.png": grey(24, 24),
        "a03.png": np.repeat(grey(30, 30)[..., None], 3, axis=-1),  # grey saved as RGB
        "a04.png": grey(50, 36),
        "a05.png": grey(24, 24),
        "a06.png": colour(24, 61),
        "sub/b00.png": colour(26, 26),
        "sub/b01.png": grey(24, 24),
    }
    for name, array in files.items():
        _png(folder / name, array)
    (folder / "a03b-truncated.png").write_bytes((folder / "a06.png").read_bytes()[:60])
    (folder / "notes.txt").write_text("not an image")
    return [folder / name for name in files]


def _as_read(paths: list[Path], size: int) -> np.ndarray:
    """The documented reading: RGB, centre-cropped square, resized to the working size."""
    stack = []
    for path in paths:
        with Image.open(path) as image:
            stack.append(np.asarray(imaging.square_resize(image.convert("RGB"), size)))
    return np.stack(stack)


def test_a_folder_streams_like_the_same_images_in_memory(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(image_sets, "FOLDER_CHUNK", 3)  # several chunks, some all grey
    readable = _mixed_folder(tmp_path / "folder")
    np.savez(tmp_path / "same.npz", images=_as_read(readable, 24))
    with pytest.warns(DataWarning, match="000-corrupt.png"):
        folder = load_image_set(str(tmp_path / "folder"))
    assert folder.array is None and folder.size == 24 and len(folder.files) == 10
    with pytest.warns(DataWarning, match="a03b-truncated.png"):
        chunks = list(folder.chunks())
    assert [c.shape[1:] for c in chunks] == [(3, 24, 24), (1, 24, 24), (3, 24, 24), (1, 24, 24)]
    assert [len(c) for c in chunks] == [3, 2, 3, 1]
    assert folder.unreadable == {tmp_path / "folder" / "a03b-truncated.png"}
    assert folder.count == len(readable) == 9 and not folder.is_grey()
    results = []
    for side in ("folder", "same.npz"):
        args = ["fid", str(tmp_path / side), OTHER, "--features", "mnist-cnn", "--bootstrap", "3"]
        with pytest.warns(DataWarning) if side == "folder" else nullcontext():
            code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code == 0, err
        assert "(9 images vs 269 images" in out
        results.append(_last_json(out))
    for key in ("fid", "fid_stderr", "kid", "kid_stderr"):
        assert results[0][key] == pytest.approx(results[1][key], rel=1e-6), key


def test_num_samples_reads_only_the_chosen_files(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(2)
    folder = tmp_path / "digits"
    for i in range(40):
        _png(folder / f"{i:02d}.png", rng.integers(0, 256, (20, 20), dtype=np.uint8))
    opened: list[Path] = []
    real_open = Image.open

    def spy(path, *args, **kwargs):
        opened.append(Path(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    code, out, err = run_cli(
        monkeypatch, capsys, "fid", str(folder), OTHER, "-s", "5", "--bootstrap", "0"
    )
    assert code == 0, err
    chosen = load_image_set(str(folder), limit=5, seed=0).files
    assert len(set(opened)) == 5 and set(opened) == set(chosen)
    figures = _last_json(out)
    assert figures["features"] == "mnist-cnn"  # small grey images are digit-like
    assert figures["fid_stderr"] is None and "(5 images vs 5 images" in out  # no bootstrap


def test_grey_folders_small_and_large(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "imagenet_space", lambda: "imagenet")
    rng = np.random.default_rng(3)
    folder = tmp_path / "grey"
    skewed = np.repeat(rng.integers(2, 250, (16, 16, 1), dtype=np.uint8), 3, axis=-1)
    skewed[..., 1] += 2  # JPEG-like skew between channels: still grey
    _png(folder / "a.png", skewed)
    _png(folder / "b.png", rng.integers(0, 256, (16, 16), dtype=np.uint8))
    grey = load_image_set(str(folder))
    assert grey.is_grey() and grey.images.shape == (2, 1, 16, 16)
    assert np.array_equal(grey.images[0, 0].numpy(), skewed[..., 0])
    assert fid_space("auto", [grey, grey]) == "mnist-cnn"
    _png(folder / "c.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    mixed = load_image_set(str(folder))
    assert not mixed.is_grey() and mixed.images.shape == (3, 3, 16, 16)
    assert fid_space("auto", [grey, mixed]) == "imagenet"
    _png(tmp_path / "big" / "a.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    _png(tmp_path / "big" / "b.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    assert fid_space("auto", [load_image_set(str(tmp_path / "big"))] * 2) == "imagenet"


def test_feature_cache_only_for_datasets(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GENLEARN_CACHE", str(cache))
    rng = np.random.default_rng(4)
    for i in range(6):
        _png(tmp_path / "folder" / f"{i}.png", rng.integers(0, 256, (28, 28), dtype=np.uint8))
    np.savez(tmp_path / "set.npz", images=rng.integers(0, 256, (7, 28, 28), dtype=np.uint8))
    embedded = []
    real_call = FeatureExtractor.__call__

    def spy(self, images, **kwargs):
        embedded.append(len(images))
        return real_call(self, images, **kwargs)

    monkeypatch.setattr(FeatureExtractor, "__call__", spy)
    folder, npz = str(tmp_path / "folder"), str(tmp_path / "set.npz")
    code, _, err = run_cli(monkeypatch, capsys, "fid", folder, npz, "--features", "mnist-cnn")
    assert code == 0, err
    assert not list(cache.rglob("*.safetensors"))  # user sets are never cached
    for _ in range(2):
        code, _, err = run_cli(monkeypatch, capsys, "fid", npz, OTHER, "--features", "mnist-cnn")
        assert code == 0, err
    assert len(list((cache / "features").glob("*.safetensors"))) == 1  # the dataset's
    assert embedded == [6, 7, 7, 269, 7]  # the second time the dataset came from the cache


# ---- too-small sets ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        ("one-png", [], "one holds 1 image: FID (and KID) need at least 2"),
        ("corrupt-then-png", [], "one holds 1 image"),
        ("one-npz", [], "one.npz holds 1 image"),
        ("npz", ["--num-samples", "1"], "--num-samples must be at least 2"),
    ],
)
def test_too_small_sets_are_one_line(
    tmp_path, monkeypatch, capsys, no_network, make, extra, message
):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5)
    if make == "one-npz":
        np.savez(tmp_path / "one.npz", images=rng.integers(0, 256, (1, 8, 8), dtype=np.uint8))
        spec = "one.npz"
    elif make == "npz":
        np.savez(tmp_path / "set.npz", images=rng.integers(0, 256, (9, 8, 8), dtype=np.uint8))
        spec = "set.npz"
    else:
        if make == "corrupt-then-png":
            (tmp_path / "one").mkdir()
            (tmp_path / "one" / "0.png").write_bytes(b"junk")
        _png(tmp_path / "one" / "1.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
        spec = "one"
    with pytest.warns(DataWarning) if make == "corrupt-then-png" else nullcontext():
        code, _, err = run_cli(
            monkeypatch, capsys, "fid", spec, spec, "--features", "mnist-cnn", *extra
        )
    assert code == 2 and message in _one_line(err)


def test_a_folder_left_with_one_readable_image_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / "few" / "0.png", np.zeros((8, 8), dtype=np.uint8))
    (tmp_path / "few" / "1.png").write_bytes(b"junk")  # found out only when read
    with pytest.warns(DataWarning, match="1.png"):
        code, _, err = run_cli(monkeypatch, capsys, "fid", "few", OTHER, "--features", "mnist-cnn")
    assert code == 2 and "only 1 image of few could be read" in _one_line(err)


def test_statistics_errors_say_what_is_wrong_in_one_line(tmp_path):
    _stats_file(tmp_path / "s.npz", 3, sigma=np.ones((3, 2)))
    with pytest.raises(DataError) as caught:
        load_image_set(str(tmp_path / "s.npz"))
    assert "\n" not in str(caught.value) and str(tmp_path / "s.npz") in str(caught.value)


@pytest.mark.parametrize("content", [b"not numpy at all", None])
def test_a_file_that_is_not_an_npz_archive_is_one_line(tmp_path, monkeypatch, capsys, content):
    path = tmp_path / "bad.npz"
    if content is None:  # a bare .npy array under an .npz name
        with open(path, "wb") as handle:
            np.save(handle, np.zeros((3, 8, 8), dtype=np.uint8))
    else:
        path.write_bytes(content)
    code, _, err = run_cli(monkeypatch, capsys, "fid", str(path), "dataset:digits")
    assert code == 2 and "not a NumPy .npz archive" in err and "pickle=" not in err
