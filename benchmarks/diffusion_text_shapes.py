"""Does a text-conditioned diffusion model draw what its caption says, also for combinations it
never saw? Measured on `shapes-captions` with a trained judge.

1. The judge: a small CNN trained on 20,000 fresh procedural pictures of every combination
   (held-out colour-shape pairs included: it is the measuring instrument, not the model) to
   read each picture's order-free description (`canonical_factors`: which two objects, their
   sizes, colours and shapes, side by side or one above the other, and which leads). Its
   accuracy on the real test and held-out pictures is the ceiling of what it can confirm.
2. The model: `genlearn train ddpm --data shapes-captions --text` with the family's defaults,
   for at most `--minutes` of training.
3. For `--captions` test captions (combinations seen in training) and as many held-out ones
   (each with a colour-shape pair never seen in training), one DDIM-50 sample per caption at
   guidance 0 (unconditional: the chance level), 1 (the plain conditional model) and 3;
   the share of samples whose description matches the caption exactly, and per part
   (both colours, both shapes, the arrangement).

    python benchmarks/diffusion_text_shapes.py [--minutes 12]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlearn.data.shapes_captions import (
    CANONICAL_CLASSES,
    canonical_factors,
    load_shapes_captions,
    random_pictures,
)
from genlearn.models import get_family
from genlearn.workflows import load_model, train

GUIDANCE_SCALES = (0.0, 1.0, 3.0)
PARTS = {"colours": [2, 5], "shapes": [3, 6], "arrangement": [0], "sizes": [1, 4]}


class Judge(nn.Module):
    """Three conv stages (pooled before normalising: a quarter of the work) and one linear
    head per canonical factor."""

    def __init__(self):
        super().__init__()
        layers, previous = [], 3
        for width in (24, 48, 96):
            layers += [
                nn.Conv2d(previous, width, 3, padding=1),
                nn.MaxPool2d(2),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            previous = width
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.heads = nn.ModuleList(nn.Linear(previous * 16, k) for k in CANONICAL_CLASSES)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        h = self.features(
            images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images * 2 - 1
        )
        return [head(h) for head in self.heads]

    @torch.no_grad()
    def read(self, images: torch.Tensor) -> torch.Tensor:
        self.eval()
        rows = [torch.stack([h.argmax(1) for h in self(batch)], 1) for batch in images.split(500)]
        return torch.cat(rows)


def train_judge(count: int = 20_000, epochs: int = 5, seed: int = 0) -> Judge:
    torch.manual_seed(seed)
    pictures = random_pictures(count, seed=987)
    targets = canonical_factors(pictures.factors)
    judge = Judge()
    optimizer = torch.optim.Adam(judge.parameters(), lr=2e-3)
    steps = epochs * (count // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps)
    judge.train()
    for _ in range(epochs):
        order = torch.randperm(count)
        for start in range(0, count - 127, 128):
            rows = order[start : start + 128]
            outputs = judge(pictures.images[rows])
            loss = sum(F.cross_entropy(o, targets[rows, i]) for i, o in enumerate(outputs))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return judge


def agreement(read: torch.Tensor, wanted: torch.Tensor) -> dict[str, float]:
    """Exact-match share, and per part of the description."""
    shares = {"exact": float((read == wanted).all(1).float().mean())}
    for part, columns in PARTS.items():
        shares[part] = float((read[:, columns] == wanted[:, columns]).all(1).float().mean())
    return {k: round(v, 4) for k, v in shares.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--captions", type=int, default=200, help="per caption set")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-diffusion-text"))
    parser.add_argument("--run", type=Path, default=None, help="judge an existing run instead")
    args = parser.parse_args()
    splits = load_shapes_captions()
    start = time.perf_counter()
    judge = train_judge()
    judge_seconds = time.perf_counter() - start
    results: dict[str, object] = {
        "judge_seconds": round(judge_seconds, 1),
        "judge_on_real_pictures": {
            name: agreement(
                judge.read(splits[name].images), canonical_factors(splits[name].factors)
            )
            for name in ("test", "held_out")
        },
    }
    print(json.dumps(results), flush=True)
    run_path = args.run
    if run_path is None:
        config = get_family("ddpm").train_config(max_seconds=args.minutes * 60)
        run_path = train(
            "ddpm", "shapes-captions", conditional="text", train_config=config, runs_dir=args.out
        ).path
    model, _ = load_model(run_path)
    results["run"] = str(run_path)
    for name in ("test", "held_out"):
        captions = splits[name].captions[: args.captions]
        wanted = canonical_factors(splits[name].factors[: args.captions])
        for scale in GUIDANCE_SCALES:
            generator = torch.Generator().manual_seed(1)
            started = time.perf_counter()
            samples = torch.cat(
                [
                    model.sample(len(chunk), generator, prompts=chunk, guidance=scale)
                    for chunk in (captions[i : i + 100] for i in range(0, len(captions), 100))
                ]
            )
            images = (samples * 255).round().to(torch.uint8)
            results[f"{name}_guidance_{scale:g}"] = {
                **agreement(judge.read(images), wanted),
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(f"{name} guidance {scale:g}: {results[f'{name}_guidance_{scale:g}']}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
