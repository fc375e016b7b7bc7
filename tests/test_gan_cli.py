"""GANs through the same verbs as every model: train, sample (by class), neighbours, evaluate,
resume; and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    # the recipe's choices are written in, so the file says what ran
    assert config["model"]["loss"] == "bce" and config["model"]["betas"] == [0.5, 0.999]
    assert config["model"]["n_critic"] == 1 and config["model"]["critic_norm"] == "batch"


def test_on_digits_both_players_losses_move_and_the_samples_change(conditional_run):
    rows = [json.loads(x) for x in (conditional_run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert len(train_rows) >= 2
    first, last = train_rows[0], train_rows[-1]
    assert abs(first["loss_d"] - last["loss_d"]) > 0.01
    assert abs(first["loss_g"] - last["loss_g"]) > 0.01
    progress = conditional_run / "figures" / "progress"
    snapshots = sorted(progress.glob("step-*.png"))
    with Image.open(snapshots[0]) as a, Image.open(snapshots[-1]) as b:
        start, end = (np.asarray(im.convert("L"), dtype=np.float64) / 255 for im in (a, b))
    assert np.abs(end - start).mean() > 0.01  # the same z's draw other images
    captions = json.loads((progress / "captions.json").read_text())
    spread = [float(captions[p.name].split("diversity ")[1].split()[0]) for p in snapshots]
    assert spread[-1] > 1.15 * spread[0]  # and more varied ones than the grey start


def test_a_gan_report_shows_the_game_not_a_summed_loss(conditional_run):
    page = (conditional_run / "report.html").read_text()
    assert "D(x) on test images" in page and "D(G(z)) on generated images" in page
    assert "Test loss" not in page and "last test loss" not in page
    assert "genlearn evaluate measures that" in page


def test_sample_a_class_neighbours_and_evaluate(conditional_run, monkeypatch, capsys, tmp_path):
    def sample_class(label: int) -> np.ndarray:
        path = tmp_path / f"class{label}.png"
        command = [
            "sample",
            str(conditional_run),
            "-n",
            "8",
            "--class",
            str(label),
            "-o",
            str(path),
        ]
        code, _, err = run_cli(monkeypatch, capsys, *command)
        assert code == 0, err
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))

    sevens, ones = sample_class(7), sample_class(1)
    assert sevens.shape[0] >= 3 * 16 and sevens.shape[1] >= 3 * 16  # a 3 x 3 grid of 16 px
    assert ones.shape == sevens.shape and not np.array_equal(ones, sevens)  # same z, other class
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
        "--class",
        "2",
    )
    assert code == 0
    assert "interpolation-z3-z4-class2.gif" in out
    assert (conditional_run / "figures" / "interpolation-z3-z4-class2.gif").is_file()
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
        (
            ["train", "wgan-gp", "--loss", "nonsense", "--runs-dir", str(tmp_path)],
            "loss must be bce, hinge or wasserstein",
        ),
        (["train", "dcgan", "--data", "cylinders", "--conditioning", "concat"], "no class labels"),
        (["train", "dcgan", "--grad-clip", "1", "--runs-dir", str(tmp_path)], "--grad-clip"),
    ]:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and message in err, (args, err)


def test_diversity_falls_when_samples_collapse():
    from genlearn.explore.generator import diversity

    generator = torch.Generator().manual_seed(0)
    varied = torch.rand(32, 1, 8, 8, generator=generator)
    collapsed = varied[:1].expand(32, 1, 8, 8) + 0.01 * torch.rand(32, 1, 8, 8, generator=generator)
    assert diversity(collapsed) < 0.1 * diversity(varied)


class _ScriptedGenerator(torch.nn.Module):
    """Stands in for a generator: draws a varied batch, or one image 64 times."""

    latent_dim = 4

    def __init__(self):
        super().__init__()
        self.collapsed = True

    def generate(self, z, labels=None):
        generator = torch.Generator().manual_seed(1)
        images = torch.rand(len(z), 1, 8, 8, generator=generator)
        return images[:1].expand_as(images) if self.collapsed else images


def test_collapse_warning_ignores_the_grey_start_and_fires_once_on_a_fall(tmp_path):
    from genlearn.explore.generator import TrainingSnapshots

    real = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    snapshots = TrainingSnapshots(tmp_path, real, every=1)
    model, warnings = _ScriptedGenerator(), []
    for step, collapsed in enumerate([True, True, False, False, True, True], start=1):
        model.collapsed = collapsed
        snapshots(model, step, warnings.append)
        assert len(warnings) == (1 if step >= 5 else 0), (step, warnings)
    assert "collapsing" in warnings[0] and warnings[0].startswith("step 5")
    assert snapshots.assemble(tmp_path / "training.gif").exists()


def test_a_generator_that_never_spreads_out_is_reported(tmp_path):
    from genlearn.explore.generator import SNAPSHOTS_PER_RUN, TrainingSnapshots

    real = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    snapshots, warnings = TrainingSnapshots(tmp_path, real, every=1), []
    for step in range(1, SNAPSHOTS_PER_RUN // 2):
        snapshots(_ScriptedGenerator(), step, warnings.append)
    assert len(warnings) == 1 and "not become diverse" in warnings[0]


def _snapshots_taken(tmp_path, monkeypatch, clock: list[float]) -> list[str]:
    """Five steps of a time-limited run (a snapshot every second at least) on a fake clock."""
    from genlearn.explore import generator as module

    ticks = iter(clock)
    monkeypatch.setattr(module.time, "perf_counter", lambda: next(ticks))
    real = torch.rand(64, 1, 8, 8)
    snapshots = module.TrainingSnapshots(tmp_path, real, every=10**9, every_seconds=1.0)
    for step in range(1, 6):
        snapshots(_ScriptedGenerator(), step, lambda message: None)
    return sorted(path.name for path in (tmp_path / module.PROGRESS_DIR).glob("*.png"))


def test_time_limited_snapshots_are_spaced_in_time(tmp_path, monkeypatch):
    # each step reads the clock once; a snapshot taken reads it again when done (its cost)
    taken = _snapshots_taken(tmp_path, monkeypatch, [0.0, 0.1, 0.4, 1.1, 1.2, 1.5, 2.3, 2.4])
    assert taken == ["step-0000001.png", "step-0000003.png", "step-0000005.png"]


def test_slow_snapshots_are_spaced_to_a_fifth_of_the_time(tmp_path, monkeypatch):
    # the first snapshot takes 0.5 s: the next is due 2.5 s after it started, not 1 s
    taken = _snapshots_taken(tmp_path, monkeypatch, [0.0, 0.5, 1.1, 2.0, 2.6, 3.1, 3.2])
    assert taken == ["step-0000001.png", "step-0000004.png"]


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


def test_wgan_gp_on_a_celeba_folder_at_64_px_in_colour(tmp_path, monkeypatch, capsys):
    """The issue's `genlearn train wgan-gp --data celeba --image-size 64`, on a miniature
    CelebA the test writes (random 178x218 JPEGs and an attribute list)."""
    from test_data import make_celeba

    root = make_celeba(tmp_path / "celeba", count=12)
    monkeypatch.setenv("GENLEARN_CACHE", str(tmp_path / "cache"))
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        "wgan-gp",
        "--data",
        f"celeba:{root}",
        "--image-size",
        "64",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    assert code == 0, err
    run = Path(out.strip().split("run: ")[-1])
    config = json.loads((run / "config.json").read_text())["model"]
    assert (config["image_size"], config["image_channels"]) == (64, 3)
    assert config["critic_norm"] == "layer" and config["n_critic"] == 5
    with Image.open(run / "figures" / "samples.png") as grid:
        assert grid.mode == "RGB" and grid.width >= 8 * 64
