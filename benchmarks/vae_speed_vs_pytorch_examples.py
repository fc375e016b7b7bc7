"""Speed against the classic baseline: the PyTorch examples' MLP VAE on MNIST.

Runs, one after the other in this script on the same machine:
1. the reference: a faithful plain-PyTorch transcription of that recipe
   (benchmarks/reference/pytorch_examples_vae.py: 784-400-20, batch 128, Adam 1e-3,
   10 epochs, a per-item DataLoader pipeline), start to finish as a subprocess;
2. genlearn's `vae` with the same MLP architecture and the same loss (summed BCE on grey
   levels + KL, per test image), through the CLI, start to finish (data, training,
   per-epoch test loss, checkpoints, figures and report included).
The figure: genlearn's wall time over the reference's, once genlearn's test loss is at or
below the reference's final one. The issue's target is a ratio <= 0.33.

    python benchmarks/vae_speed_vs_pytorch_examples.py [--genlearn-epochs 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def mnist_dir() -> Path:
    root = os.environ.get("GENLEARN_DATA")
    candidates = [Path(root) / "mnist"] if root else []
    candidates.append(HERE.parent.parent / "shared" / "data" / "mnist")
    for candidate in candidates:
        if (candidate / "train-images-idx3-ubyte.gz").is_file():
            return candidate
    sys.exit("MNIST not found: set GENLEARN_DATA to a folder holding mnist/*.gz")


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{command[:3]} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genlearn-epochs", type=int, default=8)
    parser.add_argument("--genlearn-lr", type=float, default=3e-3)
    parser.add_argument("--reference-epochs", type=int, default=10)
    args = parser.parse_args()
    data = mnist_dir()
    env = {**os.environ, "GENLEARN_DATA": str(data.parent)}
    work = Path(tempfile.mkdtemp(prefix="genlearn-bench-"))

    ref_seconds, ref_out = timed(
        [
            sys.executable,
            str(HERE / "reference" / "pytorch_examples_vae.py"),
            str(data),
            str(work / "reference"),
            "--epochs",
            str(args.reference_epochs),
        ],
        env,
    )
    reference = json.loads(ref_out.strip().splitlines()[-1])
    target = reference["test_loss_per_epoch"][-1]

    gl_seconds, _ = timed(
        [
            sys.executable,
            "-m",
            "genlearn",
            "train",
            "vae",
            "--data",
            "mnist",
            "--arch",
            "mlp",
            "--hidden",
            "400",
            "--latent-dim",
            "20",
            "--likelihood",
            "bernoulli",
            "--no-binarize",
            "--batch-size",
            "128",
            "--lr",
            str(args.genlearn_lr),
            "--epochs",
            str(args.genlearn_epochs),
            "--device",
            "cpu",
            "--runs-dir",
            str(work / "runs"),
        ],
        env,
    )
    (run,) = (work / "runs").iterdir()
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    genlearn_losses = [r["loss"] for r in log if r["split"] == "test"]
    print(
        json.dumps(
            {
                "benchmark": "vae_speed_vs_pytorch_examples",
                "reference_seconds": round(ref_seconds, 1),
                "reference_test_loss": round(target, 3),
                "reference_test_loss_per_epoch": [
                    round(x, 2) for x in reference["test_loss_per_epoch"]
                ],
                "genlearn_seconds": round(gl_seconds, 1),
                "genlearn_test_loss": round(genlearn_losses[-1], 3),
                "genlearn_test_loss_per_epoch": [round(x, 2) for x in genlearn_losses],
                "genlearn_epochs": args.genlearn_epochs,
                "genlearn_reaches_reference_loss": genlearn_losses[-1] <= target,
                "time_ratio": round(gl_seconds / ref_seconds, 3),
                "genlearn_run": str(run),
            }
        )
    )


if __name__ == "__main__":
    main()
