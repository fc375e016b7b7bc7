"""The CLI end to end on the built-in digits, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import run_cli, train_tiny_vae

from genlearn.cli import main
from genlearn.train.engine import TrainConfig


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """A tiny VAE and AE on digits (8 px, a few epochs): enough to exercise every verb."""
    runs = tmp_path_factory.mktemp("runs")
    paths = {}
    for family in ("vae", "ae"):
        argv = ["genlearn", "train", family, "--data", "digits", "--image-size", "8"]
        argv += ["--epochs", "3", "--batch-size", "64", "--runs-dir", str(runs), "--device", "cpu"]
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(sys, "argv", argv)
            with pytest.raises(SystemExit) as done:
                main()
        assert done.value.code == 0
        (path,) = [p for p in runs.iterdir() if p.name.startswith(f"{family}-")]
        paths[family] = path
    return paths


def test_training_leaves_a_complete_run(trained_runs):
    run = trained_runs["vae"]
    for name in (
        "config.json",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "model.safetensors",
        "report.html",
    ):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["family"] == "vae" and config["model"]["image_size"] == 8
    figures = {p.name for p in (run / "figures").iterdir()}
    assert {
        "prior_samples.png",
        "latent_scatter.png",
        "latent_grid.png",
        "interpolation.gif",
    } <= figures
    assert "data:image/png;base64" in (run / "report.html").read_text()


def test_every_verb_on_a_trained_run(trained_runs, monkeypatch, capsys, tmp_path):
    run = str(trained_runs["vae"])
    out_png = tmp_path / "s.png"
    assert run_cli(monkeypatch, capsys, "sample", run, "-n", "9", "-o", str(out_png))[0] == 0
    assert out_png.is_file()
    assert run_cli(monkeypatch, capsys, "latent-map", run, "--grid", "5")[0] == 0
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "interpolate",
        run,
        "--from",
        "3",
        "--to",
        "17",
        "--steps",
        "4",
        "--gif",
    )
    assert code == 0 and (Path(run) / "figures" / "interpolation-3-17.gif").is_file()
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "attribute",
        run,
        "--attribute",
        "7",
        "--images",
        "0,5",
        "--strengths",
        "-1,0,1",
    )
    assert code == 0 and "attribute" in out
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "evaluate",
        run,
        "--k",
        "5",
        "--num-images",
        "20",
        "--num-samples",
        "200",
    )
    assert code == 0
    results = json.loads(out.strip().splitlines()[-1])
    assert results["test_iwae_k"] == 5 and results["test_images"] == 20
    # the IWAE bound is tighter than the ELBO (up to the ELBO's Monte-Carlo noise)
    slack = 3 * results["test_elbo_stderr"]
    assert results["test_iwae_nll_nats"] <= -results["test_elbo_nats"] + slack
    assert "test_iwae_nll_nats" in json.loads((Path(run) / "metrics.json").read_text())
    assert run_cli(monkeypatch, capsys, "report", run, "-o", str(tmp_path / "one.html"))[0] == 0
    assert (tmp_path / "one.html").is_file()
    ae_results = json.loads(
        run_cli(
            monkeypatch,
            capsys,
            "evaluate",
            str(trained_runs["ae"]),
            "--num-images",
            "20",
            "-s",
            "0",
        )[1]
        .strip()
        .splitlines()[-1]
    )
    assert "test_elbo_nats" not in ae_results  # a plain AE has no likelihood to report
    assert "test_reconstruction_nats" in ae_results
    comparison = tmp_path / "cmp.html"
    code, _, _ = run_cli(
        monkeypatch, capsys, "report", str(trained_runs["ae"]), run, "-o", str(comparison)
    )
    assert code == 0 and comparison.is_file()


def test_datasets_lists_embedded_and_real(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "datasets")
    assert code == 0
    for name in ("digits", "cylinders", "toy2d", "mnist", "fashion-mnist", "olivetti", "celeba"):
        assert name in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "/no/such/run"], "does not exist"),
        (["train", "gan"], "unknown model"),
        (["train", "vae", "--data", "imagenet-42"], "imagenet-42"),
        (["train", "vae", "--data", "/tmp/photos"], "folder:/tmp/photos"),
        (["train", "vae", "--epochs", "0"], "epochs"),
        (["train", "vae", "--data", "toy2d"], "points"),
        (["train", "vae", "--device", "cuda:7"], "cuda"),
        (["train", "vae", "--latent-dim", "0"], "latent_dim"),
        (["train", "vae", "--channels", "16,32,64"], "divisible"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(monkeypatch, capsys, args, message):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_verb_arguments_on_a_run(trained_runs, monkeypatch, capsys):
    run = str(trained_runs["vae"])
    for args, message in [
        (["interpolate", run, "--from", "99999"], "out of range"),
        (["attribute", run, "--attribute", "Smiling"], "Smiling"),
        (["attribute", run, "--attribute", "7", "--images", "a,b"], "--images"),
        (["sample", run, "-n", "0"], "-n"),
        (["attribute", run, "--attribute", "7", "--images", ""], "--images"),
        (["attribute", run, "--attribute", "7", "--strengths", ","], "--strengths"),
        (["train", "ae", "--resume", run], "is a vae run"),
        (["evaluate", run, "--num-samples", "5"], "at least 10"),
        (["neighbours", run, "-n", "2", "--num-samples", "3"], "at least 10"),
        (["evaluate", run, "--features", "vgg"], "unknown feature space"),
    ]:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == 2 and message in err, (args, err)


def test_usage_errors_exit_2(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "train", "vae", "--no-such-option")
    assert code == 2 and "no-such-option" in err


def test_real_entry_point_and_debug_traceback(tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    plain = subprocess.run(
        [sys.executable, "-m", "genlearn", "sample", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().startswith("error:")
    debug = subprocess.run(
        [sys.executable, "-m", "genlearn", "--debug", "sample", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "Traceback" in debug.stderr and "RunError" in debug.stderr


def test_help_everywhere(monkeypatch, capsys):
    for verb in (
        "train",
        "sample",
        "latent-map",
        "interpolate",
        "attribute",
        "evaluate",
        "report",
        "datasets",
        "tour",
        "fid",
        "neighbours",
        "metrics",
    ):
        code, out, _ = run_cli(monkeypatch, capsys, verb, "--help")
        assert code == 0 and "Usage" in out, verb


def test_resume_continues_a_killed_run(tmp_path, monkeypatch, capsys):
    config = TrainConfig(epochs=2, batch_size=64, checkpoint_every_steps=5)
    run = train_tiny_vae(tmp_path, config, stop_after_steps=12)
    assert not (run.path / "model.safetensors").exists()  # killed before the end
    code, _, _ = run_cli(monkeypatch, capsys, "train", "vae", "--resume", str(run.path))
    assert code == 0 and (run.path / "model.safetensors").is_file()
    steps = [r["step"] for r in run.read_log() if r["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 2 * (1528 // 64)


def test_distributed_training_with_two_processes(tmp_path):
    """torchrun (as `accelerate launch` does) with 2 CPU processes: one run, sharded epochs."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    command = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "-m",
        "genlearn",
        "train",
        "vae",
        "--data",
        "digits",
        "--image-size",
        "8",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--runs-dir",
        str(tmp_path),
        "--device",
        "cpu",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = tmp_path.iterdir()  # one run directory, written by the main process
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # each process takes half of every epoch: 1528 train images / 2 / 64 = 11 steps
    assert [r["step"] for r in log if r["split"] == "test"] == [11]
    assert (run / "model.safetensors").is_file() and (run / "report.html").is_file()


def test_seed_fixes_the_initial_weights(tmp_path):
    from genlearn.train.runs import load_tensors

    config = TrainConfig(epochs=1, batch_size=64)
    weights = []
    for _ in range(2):  # one process, so the global RNG has moved between the runs
        torch.rand(7)
        run = train_tiny_vae(tmp_path, config, figures=False, seed=3)
        weights.append(load_tensors(run.weights_path)[0])
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name


def test_a_bad_option_leaves_no_run_directory(tmp_path, monkeypatch, capsys):
    code, _, _ = run_cli(
        monkeypatch,
        capsys,
        "train",
        "vae",
        "--channels",
        "16,32,64",
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    assert code == 2 and not list((tmp_path / "runs").glob("*"))
