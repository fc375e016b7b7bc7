"""Diffusion through the verbs a user types: train (pixel, class, text, latent), sample with
either sampler and a trajectory, evaluate's bound, and the one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from PIL import Image

from genlearn.train.engine import TrainConfig
from genlearn.train.runs import read_jsonl
from genlearn.workflows import load_model, train

FAST = dict(device="cpu", show_progress=False, base_channels=8, timesteps=50)


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory) -> Path:
    config = TrainConfig(epochs=4, batch_size=64, lr=2e-3, warmup_steps=10)
    runs = tmp_path_factory.mktemp("runs")
    return train("ddpm", "digits", image_size=8, train_config=config, runs_dir=runs, **FAST).path


def test_a_diffusion_run_is_complete_and_its_loss_falls(pixel_run):
    for name in ("config.json", "metrics.jsonl", "checkpoint.safetensors", "report.html"):
        assert (pixel_run / name).exists(), name
    figures = {p.name for p in (pixel_run / "figures").iterdir()}
    expected = {"samples.png", "trajectory.png", "trajectory.gif", "sampler_comparison.png"}
    assert expected <= figures
    test_losses = [
        r["loss"] for r in read_jsonl(pixel_run / "metrics.jsonl") if r.get("split") == "test"
    ]
    assert len(test_losses) == 4 and test_losses[-1] < 0.8 * test_losses[0]
    model, _ = load_model(pixel_run)
    assert int(model.ema.updates) == json.loads((pixel_run / "config.json").read_text())["train"][
        "epochs"
    ] * (1528 // 64)


def test_sample_with_either_sampler_and_a_trajectory(pixel_run, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "sample",
        str(pixel_run),
        "-n",
        "4",
        "--sampler",
        "ddim",
        "--steps",
        "5",
        "-o",
        "ddim.png",
    )
    assert code == 0, err
    assert Image.open(tmp_path / "ddim.png").size[0] > 0
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "sample",
        str(pixel_run),
        "-n",
        "2",
        "--sampler",
        "ddpm",
        "-o",
        "ddpm.png",
    )
    assert code == 0, err
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "sample",
        str(pixel_run),
        "-n",
        "3",
        "--steps",
        "10",
        "--trajectory",
        "-o",
        "walk",
    )
    assert code == 0, err
    assert (tmp_path / "walk.png").exists() and (tmp_path / "walk.gif").exists()
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames >= 10


def test_evaluate_reports_a_bits_per_dimension_bound(pixel_run, monkeypatch, capsys):
    code, out, err = run_cli(
        monkeypatch, capsys, "evaluate", str(pixel_run), "--num-images", "40", "--num-samples", "0"
    )
    assert code == 0, err
    metrics = json.loads((pixel_run / "metrics.json").read_text())
    bits = metrics["test_bits_per_dim"]
    # a barely trained model: worse than a good one (~1 bit), better than nothing can be
    # (8 bits is a uniform distribution over the 256 levels)
    assert 0.5 < bits < 8 and metrics["test_bits_per_dim_stderr"] > 0


def test_diffusion_errors_are_one_line(pixel_run, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    cases = [
        (["sample", str(pixel_run), "--prompt", "a small red circle"], "--text"),
        (["sample", str(pixel_run), "--class", "3"], "--conditional"),
        (["sample", str(pixel_run), "--sampler", "ddpm", "--steps", "5"], "DDPM always takes"),
        (["sample", str(pixel_run), "--sampler", "euler"], "--sampler must be"),
        (["train", "ddpm", "--data", "shapes-captions", "--conditional"], "no class labels"),
        (["train", "ddpm", "--data", "digits", "--text"], "no captions"),
        (["train", "ldm", "--data", "digits"], "--autoencoder"),
        (["train", "vae", "--text"], "--text applies to ddpm"),
        (["train", "ddpm", "--schedule", "quadratic"], "--schedule must be"),
        (["reconstruct", str(pixel_run)], "needs an encoder"),
        (["latent-map", str(pixel_run)], "needs an encoder"),
    ]
    for args, expected in cases:
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2, (args, err)
        assert expected in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()  # a bad option leaves no run behind


def test_a_class_conditional_run_draws_the_asked_class(tmp_path, monkeypatch, capsys):
    config = TrainConfig(epochs=1, batch_size=64, lr=2e-3)
    run = train(
        "ddpm",
        "digits",
        image_size=8,
        train_config=config,
        runs_dir=tmp_path,
        conditional="class",
        **FAST,
    )
    model, _ = load_model(run.path)
    assert model.config.num_classes == 10 and model.conditional
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "sample",
        str(run.path),
        "-n",
        "2",
        "--class",
        "7",
        "--guidance",
        "2",
        "--steps",
        "4",
    )
    assert code == 0, err
    assert "class7" in out and "w2" in out
    code, out, err = run_cli(monkeypatch, capsys, "sample", str(run.path), "--class", "10")
    assert code == 2 and "0 to 9" in err


def test_a_text_run_reads_prompts(tmp_path, monkeypatch, capsys):
    config = TrainConfig(epochs=1, batch_size=100, lr=2e-3)
    run = train(
        "ddpm", "shapes-captions", image_size=16, train_config=config, runs_dir=tmp_path,
        conditional="text", figures=False, **FAST,
    )  # fmt: skip
    model, _ = load_model(run.path)
    assert "triangle" in model.config.vocabulary and model.config.max_tokens == 10
    prompt = "a small red triangle above a large blue circle"
    code, out, err = run_cli(
        monkeypatch, capsys, "sample", str(run.path), "-n", "2", "--prompt", prompt, "--steps", "3"
    )
    assert code == 0, err
    images = model.sample(2, torch.Generator().manual_seed(0), prompts=[prompt], steps=3)
    assert images.shape == (2, 3, 16, 16)
    code, out, err = run_cli(
        monkeypatch, capsys, "sample", str(run.path), "--prompt", "a purple cow"
    )
    assert code == 2 and "'purple'" in err and "it knows" in err


def test_latent_diffusion_learns_an_autoencoders_codes(tmp_path, monkeypatch, capsys):
    ae_config = TrainConfig(epochs=2, batch_size=64)
    autoencoder = train(
        "ae", "digits", image_size=8, train_config=ae_config, runs_dir=tmp_path, latent_dim=4,
        device="cpu", show_progress=False, figures=False,
    )  # fmt: skip
    code, out, err = run_cli(
        monkeypatch, capsys, "train", "ldm", "--autoencoder", str(autoencoder.path),
        "--epochs", "2", "--runs-dir", str(tmp_path), "--timesteps", "50", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    run_path = Path(out.strip().splitlines()[-1].removeprefix("run: "))
    config = json.loads((run_path / "config.json").read_text())
    assert config["data"]["name"] == "digits" and config["model"]["autoencoder"]["latent_dim"] == 4
    # the family's training defaults hold when the command line leaves them alone
    assert config["train"]["grad_clip"] == 1.0 and config["train"]["warmup_steps"] == 200
    model, _ = load_model(run_path)
    ae, _ = load_model(autoencoder.path)
    for key, value in ae.state_dict().items():  # the frozen autoencoder travels with the run
        torch.testing.assert_close(model.autoencoder.state_dict()[key], value)
    from genlearn.data import get_dataset

    codes = model.to_diffusion_space(get_dataset("digits", image_size=8).train_images.float() / 255)
    assert codes.mean(0).abs().max() < 1e-3 and (codes.std(0) - 1).abs().max() < 1e-3
    images = model.sample(5, torch.Generator().manual_seed(0), steps=5)
    assert images.shape == (5, 1, 8, 8)
    code, out, err = run_cli(monkeypatch, capsys, "train", "ldm", "--autoencoder", str(run_path))
    assert code == 2 and "needs a vae or ae run" in err
