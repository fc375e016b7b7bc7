"""FID that tells real from different: MNIST train vs test, and MNIST vs digits made different.

For each feature space (the domain MNIST-CNN and the ImageNet EfficientNet-Lite0) it computes
FID (± bootstrap standard error) between:

- `train vs test`: two sets of real MNIST digits. Small: the same distribution.
- `test vs thick`: test digits vs other test digits whose strokes are thickened (3x3 max filter).
- `test vs rotated`: test digits vs other test digits rotated by 45 degrees.

The different sets should score far higher; `separation` is the ratio of the smaller of the
two "different" FIDs to the "same" FID. It also measures each extractor's throughput
(images/s) on this machine, InceptionV3 included (random weights: its speed does not depend
on them). Prints one JSON line at the end.

    GENLEARN_DATA=../shared/data python benchmarks/fid_mnist.py [--domain-n 10000] [--imagenet-n 2000]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

from genlearn.data import get_dataset
from genlearn.metrics.features import get_extractor
from genlearn.metrics.frechet import fid_from_features


def thicken(images: torch.Tensor) -> torch.Tensor:
    """Strokes one pixel bolder on each side: a 3x3 grey-level dilation."""
    return F.max_pool2d(images.float(), 3, stride=1, padding=1).to(torch.uint8)


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre (bilinear), keeping the 28x28 frame."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]]).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    rotated = F.grid_sample(images.float(), grid, align_corners=False)
    return rotated.round().clamp(0, 255).to(torch.uint8)


def throughput(space: str, images: torch.Tensor) -> float:
    extractor = get_extractor(space, "cpu")
    extractor(images[:8], show_progress=False)  # warm-up
    start = time.perf_counter()
    extractor(images, show_progress=False)
    return len(images) / (time.perf_counter() - start)


def inception_throughput(images: torch.Tensor) -> float:
    from genlearn.backbones.inception import InceptionV3, fid_preprocess

    network = InceptionV3().eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        network.forward_features(fid_preprocess(images[:4]))
        start = time.perf_counter()
        for batch in images.split(32):
            network.forward_features(
                fid_preprocess(batch).contiguous(memory_format=torch.channels_last)
            )
    return len(images) / (time.perf_counter() - start)


def fids(space: str, n: int, mnist) -> dict[str, object]:
    """The three FIDs in one space, with seconds taken (embedding included)."""
    generator = torch.Generator().manual_seed(0)
    train = mnist.train_images[torch.randperm(len(mnist.train_images), generator=generator)[:n]]
    test = mnist.test_images[torch.randperm(len(mnist.test_images), generator=generator)]
    first, second = test[:n], test[n : 2 * n] if 2 * n <= len(test) else test[-n:]
    extractor = get_extractor(space, "cpu")
    start = time.perf_counter()
    embed = {
        name: extractor(images, description=f"{space}: {name}").features
        for name, images in {
            "train": train,
            "test": first,
            "thick": thicken(second),
            "rotated": rotate(second, 45),
        }.items()
    }
    results: dict[str, object] = {"n": n}
    for name, (a, b) in {
        "train_vs_test": ("train", "test"),
        "test_vs_thick": ("test", "thick"),
        "test_vs_rotated": ("test", "rotated"),
    }.items():
        value, stderr = fid_from_features(embed[a], embed[b], bootstrap=10, seed=0)
        results[name] = round(value, 3)
        results[f"{name}_stderr"] = round(stderr, 3)
        print(f"{space:>20}  FID {name:<16} {value:10.3f} ± {stderr:.3f}")
    different = min(results["test_vs_thick"], results["test_vs_rotated"])
    results["separation"] = round(different / max(results["train_vs_test"], 1e-9), 1)
    results["seconds"] = round(time.perf_counter() - start, 1)
    print(f"{space:>20}  separation {results['separation']}x in {results['seconds']} s")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domain-n", type=int, default=10_000)
    parser.add_argument("--imagenet-n", type=int, default=2_000)
    args = parser.parse_args()
    torch.manual_seed(0)
    mnist = get_dataset("mnist")
    figures = {
        "mnist_cnn": fids("mnist-cnn", args.domain_n, mnist),
        "efficientnet_lite0": fids("efficientnet-lite0", args.imagenet_n, mnist),
    }
    sample = mnist.test_images[:512]
    figures["images_per_s"] = {
        "mnist_cnn_28px": round(throughput("mnist-cnn", mnist.test_images[:10_000])),
        "efficientnet_lite0_224px": round(throughput("efficientnet-lite0", sample)),
        "inception_v3_299px": round(inception_throughput(sample[:128])),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
