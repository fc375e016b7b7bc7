"""Tests for genlearn.data: real files written to tmp_path, no network (conftest sets offline)."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import types
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pick_data_dir
from PIL import Image

from genlearn.data import (
    DatasetEntry,
    DataWarning,
    ImageDataset,
    PointDataset,
    get_dataset,
    list_datasets,
    resolve_file,
)
from genlearn.data.cylinders import render_cylinders
from genlearn.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from genlearn.errors import ConfigError, DataError

MNIST_STEMS = {
    "train-images-idx3-ubyte": "train_x",
    "train-labels-idx1-ubyte": "train_y",
    "t10k-images-idx3-ubyte": "test_x",
    "t10k-labels-idx1-ubyte": "test_y",
}


# ---------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX (the format MNIST ships in)."""
    header = bytes([0, 0, 0x08, array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + dims + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_tiny_mnist(folder: Path, train: int = 12, test: int = 5, gz: bool = True) -> dict:
    """Four MNIST-named IDX files with random content; returns the arrays written."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_x": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, key in MNIST_STEMS.items():
        write_idx(folder / (f"{stem}.gz" if gz else stem), arrays[key])
    return arrays


def save_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


@pytest.fixture
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Fresh, empty GENLEARN_DATA and GENLEARN_CACHE folders for one test."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("GENLEARN_DATA", str(data))
    monkeypatch.setenv("GENLEARN_CACHE", str(cache))
    return data, cache


# ---------------------------------------------------------------- IDX reader


@pytest.mark.parametrize("name", ["labels-idx1-ubyte.gz", "labels-idx1-ubyte"])
def test_idx_round_trip_labels(tmp_path: Path, name: str) -> None:
    labels = np.arange(37, dtype=np.uint8) % 10
    path = write_idx(tmp_path / name, labels)
    np.testing.assert_array_equal(read_idx(path, LABELS_MAGIC), labels)


def test_idx_round_trip_images(tmp_path: Path) -> None:
    images = np.random.default_rng(1).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    read = read_idx(write_idx(tmp_path / "x-idx3-ubyte.gz", images), IMAGES_MAGIC)
    assert read.shape == (7, 28, 28) and read.dtype == np.uint8
    np.testing.assert_array_equal(read, images)
    read.setflags(write=True)  # must be a writable copy, ready for torch.from_numpy


def test_idx_wrong_magic(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match=r"labels\.gz.*magic number is 2049, expected 2051"):
        read_idx(path, IMAGES_MAGIC)


def test_idx_truncated_payload(tmp_path: Path) -> None:
    data = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))
    path = tmp_path / "short-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(data[:-100]))
    with pytest.raises(DataError, match=r"short-idx3-ubyte\.gz: truncated"):
        read_idx(path, IMAGES_MAGIC)


def test_idx_trailing_bytes(tmp_path: Path) -> None:
    path = tmp_path / "long-idx1-ubyte"
    path.write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)) + b"xx")
    with pytest.raises(DataError, match=r"long-idx1-ubyte: has trailing bytes"):
        read_idx(path, LABELS_MAGIC)


@pytest.mark.parametrize("corrupt", ["not gzip at all", "cut short"])
def test_idx_corrupt_gzip(tmp_path: Path, corrupt: str) -> None:
    good = gzip.compress(idx_bytes(np.zeros((50, 28, 28), dtype=np.uint8)))
    data = b"plain text, not gzip" if corrupt == "not gzip at all" else good[: len(good) // 2]
    path = tmp_path / "broken.gz"
    path.write_bytes(data)
    with pytest.raises(DataError, match=r"broken\.gz: not a valid gzip file"):
        read_idx(path, IMAGES_MAGIC)


# ---------------------------------------------------------------- MNIST-format datasets


def test_mnist_from_tiny_files_gz_and_raw(data_env: tuple[Path, Path]) -> None:
    data, _ = data_env
    arrays = write_tiny_mnist(data / "mnist", gz=False)  # uncompressed names are accepted
    ds = get_dataset("mnist")
    assert isinstance(ds, ImageDataset)
    assert ds.train_images.shape == (12, 1, 28, 28) and ds.test_images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(ds.train_images[:, 0].numpy(), arrays["train_x"])
    np.testing.assert_array_equal(ds.test_labels.numpy(), arrays["test_y"])
    assert ds.train_labels.dtype == torch.int64 and ds.num_classes == 10


def test_mnist_resized(data_env: tuple[Path, Path]) -> None:
    write_tiny_mnist(data_env[0] / "mnist")
    ds = get_dataset("mnist", image_size=32)
    assert ds.image_size == 32 and ds.channels == 1


def test_mnist_count_mismatch_names_both_files(data_env: tuple[Path, Path]) -> None:
    folder = data_env[0] / "fashion-mnist"
    write_tiny_mnist(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(11, dtype=np.uint8))
    with pytest.raises(
        DataError,
        match=r"train-images-idx3-ubyte\.gz holds 12 images but "
        r".*train-labels-idx1-ubyte\.gz holds 11 labels",
    ):
        get_dataset("fashion-mnist")


def test_fashion_mnist_class_names(data_env: tuple[Path, Path]) -> None:
    write_tiny_mnist(data_env[0] / "fashion-mnist")
    ds = get_dataset("fashion-mnist")
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"


def test_mnist_offline_and_missing_names_the_file(data_env: tuple[Path, Path]) -> None:
    with pytest.raises(DataError) as caught:
        get_dataset("mnist")
    message = str(caught.value)
    assert "train-images-idx3-ubyte.gz not found" in message
    assert str(data_env[0] / "mnist") in message and "GENLEARN_OFFLINE" in message
    assert "\n" not in message


def test_real_mnist_from_shared_data(shared_data: Path) -> None:
    ds = get_dataset("mnist")
    assert ds.train_images.shape == (60000, 1, 28, 28)
    assert ds.test_images.shape == (10000, 1, 28, 28)
    assert ds.train_images.dtype == torch.uint8
    assert set(ds.train_labels.unique().tolist()) == set(range(10))
    assert str(shared_data / "mnist") in ds.source
    mean = ds.train_images.sum(dtype=torch.int64).item() / ds.train_images.numel() / 255
    assert abs(mean - 0.1307) < 1e-3  # the well-known MNIST pixel mean


def test_olivetti_from_shared_data(shared_data: Path) -> None:
    if not (shared_data / "faces" / "orl_faces.npz").is_file():
        pytest.skip("shared/data/faces/orl_faces.npz not found")
    ds = get_dataset("olivetti")
    assert ds.train_images.shape == (320, 1, 64, 64) and ds.test_images.shape == (80, 1, 64, 64)
    assert ds.train_labels.bincount().tolist() == [8] * 40
    assert ds.test_labels.bincount().tolist() == [2] * 40


# ---------------------------------------------------------------- file resolution


def test_resolution_prefers_user_data_over_cache(data_env: tuple[Path, Path]) -> None:
    data, cache = data_env
    cached = cache / "data" / "demo" / "file.bin"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"cache")
    assert resolve_file("demo", "file.bin", None, None) == cached
    (data / "file.bin").write_bytes(b"flat")  # $GENLEARN_DATA/<filename>
    assert resolve_file("demo", "file.bin", None, None) == data / "file.bin"
    (data / "demo").mkdir()
    (data / "demo" / "file.bin").write_bytes(b"user")  # $GENLEARN_DATA/<dataset>/<filename>
    assert resolve_file("demo", "file.bin", None, None) == data / "demo" / "file.bin"


def test_resolution_downloads_and_checks_sha256(
    data_env: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GENLEARN_OFFLINE")
    source = tmp_path / "remote.bin"
    source.write_bytes(b"payload" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    got = resolve_file("demo", "remote.bin", source.as_uri(), digest)  # file:// : no network
    assert got == data_env[1] / "data" / "demo" / "remote.bin"
    assert got.read_bytes() == source.read_bytes()


def test_resolution_hash_mismatch_deletes_download(
    data_env: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GENLEARN_OFFLINE")
    source = tmp_path / "remote.bin"
    source.write_bytes(b"tampered")
    with pytest.raises(DataError, match="SHA-256"):
        resolve_file("demo", "remote.bin", source.as_uri(), "0" * 64)
    folder = data_env[1] / "data" / "demo"
    assert not any(folder.iterdir())  # neither the file nor a temporary part is left


def test_resolution_failed_download_says_where_to_put_file(
    data_env: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GENLEARN_OFFLINE")
    missing_url = (tmp_path / "nowhere.bin").as_uri()
    with pytest.raises(
        DataError,
        match=r"demo file x\.bin not found: put it in .*"
        r"\(download failed: ",
    ):
        resolve_file("demo", "x.bin", missing_url, None)


def test_resolution_dropped_connection_is_a_data_error(
    data_env: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GENLEARN_OFFLINE")

    class Dropped:  # a response whose connection drops after the first chunk
        headers = {"Content-Length": "3000000"}
        chunks = [b"x" * 1000]

        def __enter__(self) -> Dropped:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def read(self, size: int = -1) -> bytes:
            if self.chunks:
                return self.chunks.pop()
            raise http.client.IncompleteRead(b"", 2999000)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Dropped())
    with pytest.raises(DataError, match=r"demo file x\.bin not found: .*download failed: "):
        resolve_file("demo", "x.bin", "https://example.invalid/x.bin", None)
    assert list((data_env[1] / "data" / "demo").iterdir()) == []  # no partial file left


def test_olivetti_download_leaves_no_pickle_in_the_cache(
    data_env: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sklearn.datasets

    monkeypatch.delenv("GENLEARN_OFFLINE")
    homes: list[Path] = []

    def fake_fetch(data_home: str, shuffle: bool) -> types.SimpleNamespace:
        """Like scikit-learn's: leaves its olivetti.pkz pickle in data_home."""
        if homes:
            raise AssertionError("downloaded again although a converted copy exists")
        homes.append(Path(data_home))
        Path(data_home).mkdir(parents=True, exist_ok=True)  # as scikit-learn's get_data_home
        (Path(data_home) / "olivetti.pkz").write_bytes(b"a joblib pickle")
        rng = np.random.default_rng(0)
        return types.SimpleNamespace(
            images=rng.random((40, 64, 64), dtype=np.float32), target=np.arange(40) // 10
        )

    monkeypatch.setattr(sklearn.datasets, "fetch_olivetti_faces", fake_fetch)
    ds = get_dataset("olivetti", image_size=16)
    assert ds.train_images.shape == (32, 1, 16, 16) and ds.test_images.shape == (8, 1, 16, 16)
    assert ds.train_labels.bincount().tolist() == [8] * 4
    cache = data_env[1]
    assert len(homes) == 1 and not homes[0].exists()  # the scratch folder is gone
    assert cache not in homes[0].parents  # and was never in genlearn's cache
    files = [p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()]
    assert files == ["data/olivetti/olivetti_faces_sklearn.npz"]  # no pickle, no temp file
    again = get_dataset("olivetti", image_size=16)  # read from the .npz, no new download
    assert torch.equal(ds.train_images, again.train_images)


# ---------------------------------------------------------------- folder:PATH


def make_class_folder(root: Path) -> Path:
    """cats/ (3 images, assorted sizes) and dogs/ (2 images), all RGB."""
    for i, size in enumerate([(40, 30), (64, 64), (100, 80)]):
        (root / "cats").mkdir(parents=True, exist_ok=True)
        save_image(root / "cats" / f"c{i}.png", size, seed=i)
    for i, size in enumerate([(20, 50), (33, 33)]):
        (root / "dogs").mkdir(parents=True, exist_ok=True)
        save_image(root / "dogs" / f"d{i}.jpg", size, seed=10 + i)
    return root


def test_folder_with_class_subfolders_and_mixed_sizes(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "pets")
    ds = get_dataset(f"folder:{root}", image_size=16)
    assert ds.name == f"folder:{root.resolve()}"
    assert ds.class_names == ["cats", "dogs"] and ds.channels == 3 and ds.image_size == 16
    assert len(ds.train_images) + len(ds.test_images) == 5 and len(ds.test_images) >= 1
    all_labels = torch.cat([ds.train_labels, ds.test_labels])
    assert sorted(all_labels.tolist()) == [0, 0, 0, 1, 1]


def test_folder_unlabelled_grey_stays_one_channel(tmp_path: Path) -> None:
    for i in range(4):
        save_image(tmp_path / f"g{i}.png", (24, 24), mode="L", seed=i)
    ds = get_dataset(f"folder:{tmp_path}", image_size=8)
    assert ds.channels == 1 and ds.train_labels is None and ds.class_names is None
    assert ds.num_classes is None


def test_folder_corrupt_image_is_skipped_with_warning(tmp_path: Path) -> None:
    root = make_class_folder(tmp_path / "pets")
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(DataWarning, match=r"broken\.png"):
        ds = get_dataset(f"folder:{root}", image_size=8)
    assert len(ds.train_images) + len(ds.test_images) == 5


def test_folder_mixed_modes_become_rgb_with_one_warning(tmp_path: Path) -> None:
    save_image(tmp_path / "grey1.png", (16, 16), mode="L")
    save_image(tmp_path / "grey2.png", (16, 16), mode="L", seed=1)
    save_image(tmp_path / "colour.png", (16, 16), mode="RGBA", seed=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = get_dataset(f"folder:{tmp_path}", image_size=8)
    mixed = [w for w in caught if "mixes grey and colour" in str(w.message)]
    assert len(mixed) == 1 and "2 grey images" in str(mixed[0].message)
    assert ds.channels == 3


def test_folder_empty_raises(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"holds no images: genlearn reads \.png"):
        get_dataset(f"folder:{tmp_path}")


def test_folder_missing_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        get_dataset(f"folder:{tmp_path / 'nope'}")


def test_folder_limit_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_class_folder(tmp_path / "pets")
    first = get_dataset(f"folder:{root}", image_size=8, limit=4)
    assert len(first.train_images) + len(first.test_images) == 4
    monkeypatch.setattr("genlearn.data.folder.read_images", _must_not_decode)
    again = get_dataset(f"folder:{root}", image_size=8, limit=4)
    assert torch.equal(first.train_images, again.train_images)


def test_folder_name_reloads_the_same_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_class_folder(tmp_path / "pets")
    monkeypatch.chdir(tmp_path)
    ds = get_dataset("folder:pets", image_size=8)  # a relative path
    assert ds.name == f"folder:{(tmp_path / 'pets').resolve()}"
    monkeypatch.chdir(tmp_path.parent)  # runs reopen datasets from anywhere
    again = get_dataset(ds.name, image_size=8)
    assert again.name == ds.name and torch.equal(ds.train_images, again.train_images)


def _must_not_decode(*args: object, **kwargs: object) -> None:
    raise AssertionError("images were decoded although a cached copy exists")


# ---------------------------------------------------------------- celeba


ATTRS = ["Smiling", "Male", "Young"]


def make_celeba(root: Path, count: int = 6, missing: int = 0, partition: bool = True) -> Path:
    """A miniature CelebA: 178x218 JPEGs, an attribute list and an optional partition file."""
    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"{i:06d}.jpg" for i in range(1, count + missing + 1)]
    for i, name in enumerate(names[:count]):
        save_image(root / "img_align_celeba" / name, (178, 218), seed=i)
    rows = [
        f"{name} " + " ".join("1" if (i + k) % 2 else "-1" for k in range(len(ATTRS)))
        for i, name in enumerate(names)
    ]
    (root / "list_attr_celeba.txt").write_text(
        "\n".join([str(len(names)), " ".join(ATTRS), *rows]) + "\n"
    )
    if partition:
        split = ["0", "0", "1", "0", "2", "2"] * 10
        lines = [f"{name} {split[i]}" for i, name in enumerate(names)]
        (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    return root


def test_celeba_folder_loads_and_second_load_hits_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_celeba(tmp_path / "celeba")
    ds = get_dataset(f"celeba:{root}", image_size=16)
    assert ds.train_images.shape == (4, 3, 16, 16) and ds.test_images.shape == (2, 3, 16, 16)
    assert ds.attribute_names == ATTRS and ds.class_names is None
    assert ds.train_labels.dtype == torch.float32 and ds.train_labels.shape == (4, 3)
    assert set(ds.train_labels.unique().tolist()) == {0.0, 1.0}
    # 000001.jpg has (i=0): Smiling -1, Male 1, Young -1
    assert ds.train_labels[0].tolist() == [0.0, 1.0, 0.0]
    monkeypatch.setattr("genlearn.data.celeba.read_images", _must_not_decode)
    again = get_dataset(f"celeba:{root}", image_size=16)
    assert torch.equal(ds.train_images, again.train_images)
    assert torch.equal(ds.test_labels, again.test_labels)


def test_celeba_from_genlearn_data_with_missing_images_and_limit(
    data_env: tuple[Path, Path],
) -> None:
    make_celeba(data_env[0] / "celeba", count=5, missing=2, partition=False)
    assert list_datasets_status("celeba").startswith("found: ")
    with pytest.warns(DataWarning, match=r"skipping 2 images .*000006\.jpg"):
        ds = get_dataset("celeba", image_size=8)
    assert len(ds.train_images) + len(ds.test_images) == 5
    limited = get_dataset("celeba", image_size=8, limit=3)
    assert len(limited.train_images) + len(limited.test_images) == 3


def test_celeba_name_reloads_the_same_folder(
    data_env: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_celeba(tmp_path / "faces")
    monkeypatch.chdir(tmp_path)
    ds = get_dataset("celeba:faces", image_size=8)  # a relative path, not $GENLEARN_DATA
    assert ds.name == f"celeba:{(tmp_path / 'faces').resolve()}"
    monkeypatch.chdir(tmp_path.parent)
    again = get_dataset(ds.name, image_size=8)  # from the cache
    assert again.name == ds.name and torch.equal(ds.train_images, again.train_images)
    # The cache is keyed by the folder: the default folder's name stays plain "celeba",
    # and the same folder given as a path still gets its path in the name.
    make_celeba(data_env[0] / "celeba")
    assert get_dataset("celeba", image_size=8).name == "celeba"
    named = get_dataset(f"celeba:{data_env[0] / 'celeba'}", image_size=8)
    assert named.name == f"celeba:{(data_env[0] / 'celeba').resolve()}"


def test_celeba_without_attribute_file(tmp_path: Path) -> None:
    root = make_celeba(tmp_path / "celeba")
    (root / "list_attr_celeba.txt").unlink()
    with pytest.raises(DataError, match="has no list_attr_celeba.txt"):
        get_dataset(f"celeba:{root}")


def test_celeba_bad_attribute_line_names_line(tmp_path: Path) -> None:
    root = make_celeba(tmp_path / "celeba")
    attr = root / "list_attr_celeba.txt"
    attr.write_text(attr.read_text() + "000099.jpg 1 -1\n")
    with pytest.raises(
        DataError,
        match=r"list_attr_celeba\.txt line 9: expected a file name "
        r"and 3 values, found 2",
    ):
        get_dataset(f"celeba:{root}")


def list_datasets_status(name: str) -> str:
    return next(entry.status for entry in list_datasets() if entry.name == name)


# ---------------------------------------------------------------- embedded datasets


@pytest.mark.parametrize("size", [8, 16, 28])
def test_digits_sizes_and_values(size: int) -> None:
    ds = get_dataset("digits", image_size=size)
    assert ds.train_images.shape[1:] == (1, size, size)
    assert len(ds.train_images) + len(ds.test_images) == 1797
    assert ds.train_images.dtype == torch.uint8 and int(ds.train_images.max()) == 255
    assert ds.class_names == [str(d) for d in range(10)]
    assert set(ds.test_labels.tolist()) == set(range(10))


def test_digits_default_is_28_and_deterministic() -> None:
    a, b = get_dataset("digits"), get_dataset("digits")
    assert a.image_size == 28 and torch.equal(a.test_labels, b.test_labels)


def test_digits_rejects_other_sizes() -> None:
    with pytest.raises(ConfigError, match="8, 16, 28"):
        get_dataset("digits", image_size=12)


def test_cylinders_labels_and_factors_drive_images() -> None:
    ds = get_dataset("cylinders")
    assert ds.train_images.shape == (6000, 1, 32, 32) and ds.test_images.shape[0] == 1000
    assert ds.attribute_names == ["height", "width"]
    labels = torch.cat([ds.train_labels, ds.test_labels])
    assert labels.dtype == torch.float32 and labels.min() >= 0 and labels.max() <= 1
    images = ds.train_images[:, 0].numpy() > 0
    rows, cols = images.any(axis=2).sum(axis=1), images.any(axis=1).sum(axis=1)
    height, width = ds.train_labels[:, 0].numpy(), ds.train_labels[:, 1].numpy()
    # Rows depend on height (plus a little on width, through the elliptic caps).
    assert np.corrcoef(height, rows)[0, 1] > 0.9
    assert np.corrcoef(width, cols)[0, 1] > 0.95


def test_cylinders_taller_has_more_rows_wider_more_columns() -> None:
    short, tall, wide = render_cylinders(np.array([0.1, 0.9, 0.1]), np.array([0.3, 0.3, 0.9]), 32)
    assert (tall > 0).any(axis=1).sum() > (short > 0).any(axis=1).sum() + 8
    assert (wide > 0).any(axis=0).sum() > (short > 0).any(axis=0).sum() + 5
    assert (tall > 0).any(axis=0).sum() == (short > 0).any(axis=0).sum()


@pytest.mark.parametrize("variant", ["moons", "circles", "spiral", "gaussians8", "checkerboard"])
def test_toy2d_variants(variant: str) -> None:
    ds = get_dataset("toy2d", variant=variant)
    assert isinstance(ds, PointDataset)
    assert ds.train_points.shape == (8000, 2) and ds.test_points.shape == (2000, 2)
    assert ds.train_points.dtype == torch.float32
    assert torch.equal(ds.train_points, get_dataset(f"toy2d:{variant}").train_points)


def test_toy2d_default_and_bad_variant() -> None:
    assert get_dataset("toy2d").name == "toy2d:moons"
    with pytest.raises(ConfigError, match="choose one of moons"):
        get_dataset("toy2d", variant="donut")


# ---------------------------------------------------------------- registry


def test_list_datasets_covers_registry() -> None:
    entries = list_datasets()
    assert all(isinstance(e, DatasetEntry) for e in entries)
    by_name = {e.name: e for e in entries}
    expected = {
        "mnist",
        "fashion-mnist",
        "digits",
        "cylinders",
        "toy2d",
        "olivetti",
        "celeba",
        "folder:PATH",
    }
    assert expected <= set(by_name)
    assert by_name["digits"].status == "embedded" and by_name["folder:PATH"].kind == "folder"


def test_list_datasets_finds_shared_mnist(shared_data: Path) -> None:
    assert list_datasets_status("mnist") == f"found: {shared_data / 'mnist'}"


def test_test_data_folder_follows_the_readme(tmp_path: Path) -> None:
    """../shared/data when it exists, else a $GENLEARN_DATA holding mnist/, else none."""
    shared, user = tmp_path / "shared" / "data", tmp_path / "mine"
    assert pick_data_dir(shared, None) is None
    assert pick_data_dir(shared, str(user)) is None  # the user's folder has no MNIST
    (user / "mnist").mkdir(parents=True)
    assert pick_data_dir(shared, str(user)) == user.resolve()  # kept, not deleted
    shared.mkdir(parents=True)
    assert pick_data_dir(shared, None) == shared
    assert pick_data_dir(shared, str(user)) == user.resolve()  # shared/data lacks MNIST
    (shared / "mnist").mkdir()
    assert pick_data_dir(shared, str(user)) == shared


def test_shared_data_fixture_is_the_folder_in_use(shared_data: Path) -> None:
    assert (shared_data / "mnist").is_dir()
    assert Path(os.environ["GENLEARN_DATA"]) == shared_data


def test_get_dataset_errors() -> None:
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        get_dataset("nope")
    with pytest.raises(ConfigError, match="does not take variant"):
        get_dataset("digits", variant="moons")
    with pytest.raises(ConfigError, match="needs a path"):
        get_dataset("folder")
    with pytest.raises(ConfigError, match="image_size must be"):
        get_dataset("cylinders", image_size=-3)
