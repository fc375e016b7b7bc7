"""Conv VAE on MNIST, latent 32: IWAE NLL (k=1000, full test set, dynamically binarised).

The issue's figure: <= 92 nats after at most 10 minutes of training on a 2-core CPU.
The literature's reference points for this protocol (Burda et al. 2016, Table 1): a
VAE with one stochastic layer, 86.76 nats (k=5000, 3,280 passes over the data).

    python benchmarks/vae_mnist_iwae.py [--epochs 55] [--k 1000] [--num-images 10000]

Needs MNIST: $GENLEARN_DATA/mnist/ (../shared/data works) or a download.
Ends with one JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import time

from genlearn.train.engine import TrainConfig
from genlearn.train.runs import Run
from genlearn.workflows import evaluate_run, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=55)  # ~500 s on a 2-core CPU
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--num-images", type=int, default=None, help="default: all 10,000")
    parser.add_argument("--runs-dir", default="runs/benchmarks")
    args = parser.parse_args()

    start = time.perf_counter()
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, eval_every_epochs=10
    )
    run = train(
        "vae",
        "mnist",
        latent_dim=32,
        train_config=config,
        runs_dir=args.runs_dir,
        binarize=True,
        figures=False,
    )
    # wall time from the start (data loading and the per-epoch test passes included), and
    # the engine's own count of seconds spent in training steps
    train_seconds = time.perf_counter() - start
    last_train_record = [r for r in Run(run.path).read_log() if r["split"] == "train"][-1]
    images_seen = args.epochs * (60_000 // args.batch_size) * args.batch_size
    results = evaluate_run(run.path, iwae_k=args.k, num_images=args.num_images)
    print(
        json.dumps(
            {
                "benchmark": "vae_mnist_iwae",
                "run": str(run.path),
                "iwae_k": args.k,
                "test_images": results["test_images"],
                "iwae_nll_nats": round(results["test_iwae_nll_nats"], 3),
                "iwae_nll_stderr": round(results["test_iwae_stderr"], 3),
                "test_elbo_nats": round(results["test_elbo_nats"], 3),
                "train_seconds": round(train_seconds, 1),
                "train_images_per_s": round(images_seen / train_seconds, 1),
                "engine_step_seconds": last_train_record["train_seconds"],
                "epochs": args.epochs,
                "eval_seconds": round(time.perf_counter() - start - train_seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
