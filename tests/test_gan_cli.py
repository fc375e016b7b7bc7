"""GANs through the same verbs as every model: train, sample (by class), neighbours, evaluate,
resume; and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import run_cli
from PIL import Image

from genlearn.train.engine import TrainConfig
from genlearn.workflows import train


def tiny_gan(runs: Path, family: str = "dcgan", **options):
    config = TrainConfig(epochs=2, batch_size=64, lr=2e-4, lr_schedule="constant")
    return train(
        family,
        "digits",
        image_size=16,
        train_config=config,
        runs_dir=runs,
        device="cpu",
        show_progress=False,
        generator_width=8,
        critic_width=8,
        **options,
    )


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory) -> Path:
    return tiny_gan(tmp_path_factory.mktemp("runs"), conditional="projection").path


def test_a_gan_run_is_complete_and_logs_both_players(conditional_run):
    for name in ("config.json", "metrics.jsonl", "checkpoint.safetensors", "model.safetensors"):
        assert (conditional_run / name).is_file(), name
    figures = {p.name for p in (conditional_run / "figures").iterdir()}
    assert {"samples.png", "interpolation_z.png", "interpolation_z.gif", "training.gif"} <= figures
    snapshots = sorted((conditional_run / "figures" / "progress").glob("step-*.png"))
    assert len(snapshots) >= 10  # the fixed-z grid every few steps
    rows = [
        json.loads(line) for line in (conditional_run / "metrics.jsonl").read_text().splitlines()
    ]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d"} <= set(train_rows[-1])
    assert any(r["split"] == "test" for r in rows)  # evaluated with the test labels
    config = json.loads((conditional_run / "config.json").read_text())
    assert config["model"]["num_classes"] == 10 and config["train"]["lr"] == 2e-4


def test_sample_a_class_neighbours_and_evaluate(conditional_run, monkeypatch, capsys, tmp_path):
    out_png = tmp_path / "sevens.png"
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "sample",
        str(conditional_run),
        "-n",
        "8",
        "--class",
        "7",
        "-o",
        str(out_png),
    )
    assert code == 0, err
    with Image.open(out_png) as image:
        assert image.width >= 3 * 16 and image.height >= 3 * 16  # a 3 x 3 grid of 16 px
    code, out, _ = run_cli(
        monkeypatch, capsys, "neighbours", str(conditional_run), "-n", "4", "-s", "50"
    )
    assert code == 0 and "near-copies" in out
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "interpolate",
        str(conditional_run),
        "--from",
        "3",
        "--to",
        "4",
        "--steps",
        "5",
        "--gif",
    )
    assert code == 0
    assert (conditional_run / "figures" / "interpolation-z3-z4.gif").is_file()
    code, out, _ = run_cli(
        monkeypatch, capsys, "evaluate", str(conditional_run), "-s", "100", "--bootstrap", "2"
    )
    assert code == 0
    results = json.loads(out.strip().splitlines()[-1])
    assert "fid" in results["sample_quality"]["spaces"]["mnist-cnn"]["samples"]
    assert "test_elbo_nats" not in results  # a GAN has no likelihood


def test_gan_errors_are_one_line(conditional_run, monkeypatch, capsys, tmp_path):
    for args, message in [
        (["sample", str(conditional_run), "--class", "12"], "--class 12"),
        (["train", "dcgan", "--data", "cylinders", "--conditional"], "no class labels"),
        (["train", "dcgan", "--beta", "2"], "do not apply to dcgan"),
        (["train", "wgan-gp", "--loss", "nonsense", "--runs-dir", str(tmp_path)], "loss"),
    ]:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and message in err, (args, err)


def test_diversity_falls_when_samples_collapse():
    from genlearn.explore.generator import diversity

    generator = torch.Generator().manual_seed(0)
    varied = torch.rand(32, 1, 8, 8, generator=generator)
    collapsed = varied[:1].expand(32, 1, 8, 8) + 0.01 * torch.rand(32, 1, 8, 8, generator=generator)
    assert diversity(collapsed) < 0.1 * diversity(varied)


def test_wgan_gp_resumes_exactly(tmp_path):
    straight = tiny_gan(tmp_path / "a", "wgan-gp")
    from genlearn.workflows import load_model

    model_a, _ = load_model(straight.path)
    killed = tiny_gan(tmp_path / "b", "wgan-gp", stop_after_steps=30)
    resumed = train("wgan-gp", resume=killed.path, device="cpu", show_progress=False)
    model_b, _ = load_model(resumed.path)
    for (name, a), (_, b) in zip(
        model_a.state_dict().items(), model_b.state_dict().items(), strict=True
    ):
        assert (a == b).all(), name
