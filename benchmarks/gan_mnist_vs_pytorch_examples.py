"""GANs on MNIST for the same wall time: the PyTorch examples' DCGAN recipe against genlearn.

Each contestant trains for `--seconds` (default 600) on the 60,000 MNIST training digits, then
draws `--samples` images that are compared with the training set in the MNIST-CNN feature
space: FID (± bootstrap standard error), precision, recall, the share of near-copies, and
the share the MNIST network confidently calls a digit (real test digits: the ceiling).
Contestants, run one after the other in this script so they share the machine's state:

- `reference`: benchmarks/reference/pytorch_examples_dcgan.py (plain PyTorch, 32x32, ngf =
  ndf = 64, batch 64, Adam 2e-4/0.5, BCE);
- `dcgan` and `wgan-gp`: `genlearn train <family> --data mnist --time-limit SECONDS` with the
  family's defaults (28x28, moving-average generator for sampling).

The target: genlearn's best FID is at most half the reference's. Prints a table, then one
JSON line.

    GENLEARN_DATA=../shared/data python benchmarks/gan_mnist_vs_pytorch_examples.py [--seconds 600]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))

import pytorch_examples_dcgan as reference  # noqa: E402

from genlearn.backbones.domain_cnn import domain_preprocess, load_domain_network  # noqa: E402
from genlearn.data import get_dataset  # noqa: E402
from genlearn.metrics.quality import evaluate_samples  # noqa: E402
from genlearn.report.figures import save_image_grid  # noqa: E402
from genlearn.workflows import generate_samples, load_model, train  # noqa: E402


def confident_share(images: torch.Tensor) -> float:
    """The share of images the MNIST network (99.5% on the test set) labels with p >= 0.9:
    a second, plainer reading of "a person would call these digits"."""
    network, _ = load_domain_network()
    with torch.no_grad():
        probabilities = torch.cat(
            [network(domain_preprocess(batch)).softmax(-1) for batch in images.split(1000)]
        )
    return round(float((probabilities.max(-1).values >= 0.9).float().mean()), 4)


def quality(samples: torch.Tensor, mnist, name: str, runs: Path) -> dict[str, float]:
    """Figures of 10,000 samples against the training set; the samples are kept as .npz, so
    `genlearn fid RUNS/NAME-samples.npz dataset:mnist --features ...` reads them in other
    feature spaces."""
    np.savez_compressed(runs / f"{name}-samples.npz", images=samples.numpy())
    report = evaluate_samples(
        samples, mnist.train_images, None, ["mnist-cnn"], bootstrap=10, show_progress=False
    )
    figures = report.spaces[0].samples
    keep = ("fid", "fid_stderr", "precision", "recall", "near_copy_share")
    return {
        **{key: round(float(figures[key]), 4) for key in keep},
        "confident_share": confident_share(samples),
    }


def run_reference(mnist, seconds: float, n: int, runs: Path) -> dict[str, object]:
    result = reference.train_for(mnist.train_images, seconds)
    samples = reference.sample(result["generator"], n)
    grid = save_image_grid(samples[:64], runs / "reference-samples.png", nrow=8)
    return {
        "samples_png": str(grid),
        "images_per_s": round(result["images_seen"] / result["seconds"], 1),
        "iterations": result["iterations"],
        **quality(samples, mnist, "reference", runs),
    }


def run_genlearn(family: str, mnist, seconds: float, n: int, runs: Path) -> dict[str, object]:
    from genlearn.models import get_family

    config = get_family(family).train_config(epochs=1000, max_seconds=seconds)
    start = time.perf_counter()
    # figures (samples, training GIF, report) are drawn after the timed training
    run = train(family, "mnist", train_config=config, runs_dir=runs, device="cpu")
    model, _ = load_model(run.path)
    samples = generate_samples(model, n, seed=0, show_progress=False)
    log = [r for r in run.read_log() if r.get("split") == "train"]
    images = sum(r["images_per_s"] for r in log) / max(1, len(log))
    steps = log[-1]["step"] if log else 0
    return {
        "images_per_s": round(images, 1),
        "iterations": steps,  # D (critic) steps, each on a real batch
        "generator_steps": steps // model.n_critic,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "run": str(run.path),
        **quality(samples, mnist, family, runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--families", default="dcgan,wgan-gp")
    parser.add_argument("--runs-dir", type=Path, default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    mnist = get_dataset("mnist")
    runs = args.runs_dir or Path(tempfile.mkdtemp(prefix="gan-bench-"))
    runs.mkdir(parents=True, exist_ok=True)
    results = {
        "seconds": args.seconds,
        "real_test_images_confident_share": confident_share(mnist.test_images),
        "reference": run_reference(mnist, args.seconds, args.samples, runs),
    }
    for family in args.families.split(","):
        results[family] = run_genlearn(family, mnist, args.seconds, args.samples, runs)
    best = min(results[f]["fid"] for f in args.families.split(","))
    results["best_fid_over_reference"] = round(best / results["reference"]["fid"], 3)
    for name in ["reference", *args.families.split(",")]:
        r = results[name]
        print(
            f"{name:>10}: FID {r['fid']:8.2f} ± {r['fid_stderr']:.2f}  precision {r['precision']:.3f}"
            f"  recall {r['recall']:.3f}  near-copies {r['near_copy_share']:.2%}"
            f"  confidently a digit {r['confident_share']:.1%}"
            f"  {r['images_per_s']:7.1f} img/s  ({r['iterations']} D steps, "
            f"{r.get('generator_steps', r['iterations'])} G steps)"
        )
    print(
        f"real test digits confidently a digit: {results['real_test_images_confident_share']:.1%}"
    )
    print(
        f"best genlearn FID / reference FID: {results['best_fid_over_reference']} (target <= 0.5)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
