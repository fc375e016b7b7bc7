"""Helpers shared by the CLI tests (imported as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import sys
from pathlib import Path

from genlearn.cli import main
from genlearn.train.engine import TrainConfig
from genlearn.workflows import train


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Call the real entry point in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["genlearn", *args])
    monkeypatch.setenv("COLUMNS", "200")
    code = 0
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def train_tiny_vae(runs_dir: Path, config: TrainConfig, **options):
    """A VAE on the built-in digits at 8 px, through the Python API (no progress bar)."""
    return train(
        "vae",
        "digits",
        image_size=8,
        train_config=config,
        runs_dir=runs_dir,
        device="cpu",
        show_progress=False,
        **options,
    )
