"""DeepDream speed: a 512x512 photo, EfficientNet-Lite0, 4 octaves x 10 steps.

Two contestants run the same recipe (same layers, octaves, steps, jitter, normalised step)
one after the other on the same photo:

- `plain`: the textbook loop in plain PyTorch around the same network definition: BatchNorm
  layers as the weights file has them, forward hooks catching the layers, and every layer of
  the network run through to the classifier;
- `genlearn`: `genlearn.art.deepdream.dream` (BatchNorm folded into the convolutions, the
  network stopped after the deepest layer used, channels-last on CPU).

The target: genlearn's dream in at most 10 s on a 2-core CPU. Saves both dreams, prints a
table, then one JSON line.

    GENLEARN_DATA=../shared/data python benchmarks/dream_speed.py
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from genlearn.art.deepdream import DreamConfig, Objective, dream, octave_sizes
from genlearn.art.images import load_image, save_image
from genlearn.art.pipelines import bundled_picture
from genlearn.backbones.efficientnet import efficientnet_lite0, efficientnet_normalise
from genlearn.data.files import data_dir

LAYERS = ("block8", "block10")


def plain_dream(image: torch.Tensor, config: DreamConfig) -> torch.Tensor:
    """The textbook loop: full network with BatchNorm, a forward hook per layer."""
    network = efficientnet_lite0(fold_batchnorm=False)
    captured = {}
    for name in LAYERS:
        block = network._blocks[int(name.removeprefix("block"))]
        block.register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    generator = torch.Generator().manual_seed(config.seed)
    base = image
    sizes = octave_sizes(base.shape[-2:], config.octaves, config.octave_scale)
    detail = torch.zeros(1, 3, *sizes[0])
    for size in sizes:
        octave_base = F.interpolate(base, size=size, mode="bilinear", antialias=True)
        detail = F.interpolate(detail, size=size, mode="bilinear")
        x = (octave_base + detail).clamp(0, 1)
        for _ in range(config.steps):
            shift = [int(v) for v in torch.randint(-32, 33, (2,), generator=generator)]
            rolled = torch.roll(x, shift, (2, 3)).requires_grad_(True)
            network(efficientnet_normalise(rolled))
            objective = sum(captured[name].pow(2).mean() for name in LAYERS)
            (grad,) = torch.autograd.grad(objective, rolled)
            grad = torch.roll(grad, [-s for s in shift], (2, 3))
            x = (x + config.step_size * grad / (grad.abs().mean() + 1e-8)).clamp(0, 1).detach()
        detail = x - octave_base
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=None)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=Path("benchmark-dream"))
    args = parser.parse_args()
    shared = (
        data_dir() / "images" / "photos" / "astronaut_eileen_collins.png" if data_dir() else None
    )
    path = args.image or (shared if shared and shared.is_file() else bundled_picture("coffee.jpg"))
    photo = load_image(path)
    photo = F.interpolate(photo, size=(args.size, args.size), mode="bilinear", antialias=True)
    config = DreamConfig(octaves=4, steps=10)
    args.out.mkdir(parents=True, exist_ok=True)
    plain_dream(photo, replace(config, octaves=1, steps=1))  # warm-up, untimed, for both

    start = time.perf_counter()
    plain = plain_dream(photo, config)
    plain_seconds = time.perf_counter() - start

    start = time.perf_counter()  # includes loading the weights, as the plain loop's does
    network = efficientnet_lite0()
    ours = dream(network, efficientnet_normalise, photo, Objective(LAYERS, (None, None)), config)
    seconds = time.perf_counter() - start

    save_image(plain, args.out / "plain.png")
    save_image(ours, args.out / "genlearn.png")
    print(f"{'':10} {'seconds':>8}")
    print(f"{'plain':10} {plain_seconds:8.2f}\n{'genlearn':10} {seconds:8.2f}")
    figures = {
        "image": Path(path).name,
        "size": [args.size, args.size],
        "octaves": config.octaves,
        "steps_per_octave": config.steps,
        "layers": list(LAYERS),
        "genlearn_seconds": round(seconds, 2),
        "plain_seconds": round(plain_seconds, 2),
        "speedup": round(plain_seconds / seconds, 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
