"""Sample-quality evaluation end to end: image sets, cached reference features, the near-copy
check on real digits, the report's quality table and the evaluate / fid / neighbours verbs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli, train_tiny_vae
from PIL import Image

from genlearn.data import get_dataset
from genlearn.errors import ConfigError, DataError
from genlearn.explore.neighbours import NeighbourSpace, closest_first, pick_rows
from genlearn.metrics.features import get_extractor
from genlearn.metrics.image_sets import as_uint8_nchw, load_image_set
from genlearn.metrics.quality import evaluate_samples
from genlearn.metrics.reference import reference_features
from genlearn.report.html import format_metric, write_report
from genlearn.train.engine import TrainConfig


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits")  # embedded, 28 px


# ---- image sets ------------------------------------------------------------------------------
def test_npz_layouts_and_ranges(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (5, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "hw.npz", images=grey)
    assert load_image_set(str(tmp_path / "hw.npz")).images.shape == (5, 1, 12, 12)
    colour = np.random.default_rng(1).random((4, 10, 10, 3), dtype=np.float32)
    np.savez(tmp_path / "hwc.npz", colour)  # the only array, unnamed
    loaded = load_image_set(str(tmp_path / "hwc.npz")).images
    assert loaded.shape == (4, 3, 10, 10) and loaded.dtype == torch.uint8
    assert torch.equal(
        loaded, torch.from_numpy(np.round(colour * 255).astype(np.uint8)).permute(0, 3, 1, 2)
    )
    nchw = np.zeros((3, 3, 8, 8), dtype=np.uint8)
    assert as_uint8_nchw(nchw, "x").shape == (3, 3, 8, 8)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((2, 8, 8), -0.5, dtype=np.float32), "must lie in [0, 1]"),
        (np.zeros((2, 5, 8, 8), dtype=np.uint8), "C = 1 or 3"),
        (np.zeros((2, 8, 8), dtype=np.int32), "uint8 or float"),
    ],
)
def test_npz_bad_images_say_what_to_do(tmp_path, array, message):
    np.savez(tmp_path / "bad.npz", images=array)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_image_set(str(tmp_path / "bad.npz"))


def test_folder_and_dataset_sets(tmp_path, digits):
    for i in range(3):
        Image.fromarray(np.full((20, 30), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    folder = load_image_set(str(tmp_path)).images
    assert folder.shape == (3, 1, 20, 20)  # centre-cropped squares, grey kept grey
    test = load_image_set("dataset:digits:test").images
    assert torch.equal(test, digits.test_images)
    assert len(load_image_set("dataset:digits", limit=50).images) == 50
    with pytest.raises(DataError, match="does not exist"):
        load_image_set(str(tmp_path / "missing"))


# ---- reference features are cached ------------------------------------------------------------
def test_reference_features_come_from_the_cache_the_second_time(digits):
    extractor = get_extractor("mnist-cnn", "cpu")
    images = digits.train_images[:300]
    first = reference_features(images, extractor, show_progress=False)
    second = reference_features(images, extractor, show_progress=False)
    assert first.source == "computed" and second.source == "cache"
    assert torch.equal(first.features, second.features)
    np.testing.assert_allclose(first.stats.cov, second.stats.cov)
    other = reference_features(images[:299], extractor, show_progress=False)
    assert other.source == "computed"  # other images, other key


# ---- the near-copy check on real digits --------------------------------------------------------
def test_copies_of_training_digits_are_flagged_and_fresh_digits_are_not(digits):
    train = digits.train_images
    copies = train[:200]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(copies.shape, generator=generator) * 6  # light noise, in grey levels
    noisy = (copies.float() + noise).clamp(0, 255).round().to(torch.uint8)
    fresh = digits.test_images[:200]
    spaces = ["pixels", "mnist-cnn"]
    for samples, low, high in ((copies, 0.99, 1.0), (noisy, 0.9, 1.0), (fresh, 0.0, 0.08)):
        report = evaluate_samples(samples, train, None, spaces, bootstrap=0, show_progress=False)
        for result in report.spaces:
            share = result.samples["near_copy_share"]
            assert low <= share <= high, (result.space, share)


def test_real_column_scores_like_real_data(digits):
    samples = digits.train_images[:200]  # copies: great FID, but all near-copies
    report = evaluate_samples(
        samples,
        digits.train_images,
        digits.test_images,
        ["mnist-cnn"],
        bootstrap=3,
        show_progress=False,
    )
    (result,) = report.spaces
    assert report.num_held_out == 200
    assert result.held_out["near_copy_share"] < 0.1 < result.samples["near_copy_share"]
    assert result.held_out["fid"] > 0 and result.samples["fid_stderr"] > 0
    assert 0.5 < result.held_out["precision"] <= 1.0


def test_held_out_column_is_a_random_subset_of_the_same_size(digits):
    report = evaluate_samples(
        digits.train_images[:100],
        digits.train_images,
        digits.test_images,
        ["pixels"],
        show_progress=False,
    )
    assert report.num_held_out == 100
    assert report.spaces[0].training_images == len(digits.train_images)
    from genlearn.metrics.quality import _held_out_subset

    subset = _held_out_subset(digits.test_images, 100, seed=0)
    assert not torch.equal(subset, digits.test_images[:100])  # not the (ordered) first ones
    assert _held_out_subset(digits.test_images[:9], 100, seed=0) is None  # too few: no column


def test_too_few_samples_is_a_clear_error(digits):
    with pytest.raises(ConfigError, match="at least 10 samples"):
        evaluate_samples(digits.train_images[:5], digits.train_images, None, ["pixels"])


def test_the_most_copy_like_samples_come_first_then_random_others():
    distances = torch.tensor([[5.0], [4.0], [0.0], [6.0], [3.0]])
    space = NeighbourSpace("pixels", torch.zeros(5, 1, dtype=torch.long), distances, 1.0)
    (title, closest), (_, random_rows) = pick_rows([space], 4)
    assert closest == [2, 4] and "copy-like" in title
    assert len(random_rows) == 2 and not set(random_rows) & {2, 4}


def test_closest_first_uses_each_space_threshold():
    pixels = NeighbourSpace(
        "pixels", torch.zeros(3, 1, dtype=torch.long), torch.tensor([[5.0], [1.0], [9.0]]), 2.0
    )
    features = NeighbourSpace(
        "f", torch.zeros(3, 1, dtype=torch.long), torch.tensor([[0.1], [4.0], [4.0]]), 1.0
    )
    # in threshold units: sample 0 -> min(2.5, 0.1), sample 1 -> min(0.5, 4), sample 2 -> 4
    assert closest_first([pixels, features], 3).tolist() == [0, 1, 2]


# ---- report -------------------------------------------------------------------------------------
def test_quality_figures_format_with_errors():
    side = {"fid": 12.345, "fid_stderr": 0.27, "near_copy_share": 0.012, "near_copy_stderr": 0.003}
    assert format_metric(side, "fid") == "12.35 ± 0.27"
    assert format_metric(side, "near_copy_share") == "1.20 ± 0.30"  # in percent
    assert format_metric(side, "kid") == "—"


# ---- the verbs ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vae_run(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    return train_tiny_vae(runs, TrainConfig(epochs=3, batch_size=64), figures=False).path


def test_evaluate_fills_metrics_and_report(vae_run, monkeypatch, capsys):
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "evaluate",
        str(vae_run),
        "--k",
        "0",
        "--num-images",
        "50",
        "--num-samples",
        "300",
        "--bootstrap",
        "0",
    )
    assert code == 0, out
    assert "NaN" not in out  # no bootstrap: FID's standard error is null, not NaN
    results = json.loads(out.strip().splitlines()[-1])
    spaces = results["sample_quality"]["spaces"]
    assert set(spaces) == {"mnist-cnn", "pixels"}
    assert {"fid", "kid", "precision", "recall", "near_copy_share"} <= set(
        spaces["mnist-cnn"]["samples"]
    )
    assert "fid" not in spaces["pixels"]["samples"]  # pixels only for novelty
    assert "FID" in out and "near-copies (%)" in out
    assert (vae_run / "figures" / "neighbours.png").is_file()
    stored = json.loads((vae_run / "metrics.json").read_text())
    assert stored["sample_quality"]["num_samples"] == 300
    assert len(stored["sample_quality"]["spaces"]["mnist-cnn"]["weights"]) == 16  # its hash
    html = write_report(vae_run).read_text()
    assert "Sample quality and novelty" in html and ">Neighbours<" in html


def test_neighbours_verb(vae_run, monkeypatch, capsys):
    code, out, _ = run_cli(
        monkeypatch, capsys, "neighbours", str(vae_run), "-n", "6", "--num-samples", "100"
    )
    assert code == 0 and "near-copies in pixels" in out and "searched against" in out
    with Image.open(vae_run / "figures" / "neighbours.png") as figure:
        # two blocks of 3 rows side by side, each row a sample and 2 x 3 neighbours
        assert figure.width > 2.5 * figure.height


def test_fid_verb_between_two_sets(tmp_path, monkeypatch, capsys, digits):
    code, out, _ = run_cli(
        monkeypatch, capsys, "fid", "dataset:digits", "dataset:digits:test", "--bootstrap", "2"
    )
    assert code == 0, out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["features"] == "mnist-cnn" and figures["fid"] > 0 and "kid" in figures
    # statistics files in the common mu/sigma format work on either side
    extractor = get_extractor("mnist-cnn", "cpu")
    stats = reference_features(digits.test_images, extractor, show_progress=False).stats
    np.savez(tmp_path / "stats.npz", mu=stats.mean, sigma=stats.cov)
    code, out, _ = run_cli(
        monkeypatch, capsys, "fid", "dataset:digits", str(tmp_path / "stats.npz")
    )
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["fid"] == pytest.approx(
        figures["fid"], rel=1e-6
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fid", "/no/such/folder", "dataset:digits"], "does not exist"),
        (["fid", "dataset:digits", "dataset:digits", "--features", "vgg"], "unknown feature space"),
        (["fid", "dataset:digits", "dataset:digits", "--features", "pixels"], "network's features"),
    ],
)
def test_fid_bad_input_is_one_line(monkeypatch, capsys, args, message):
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err
