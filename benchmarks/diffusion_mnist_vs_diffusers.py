"""Diffusion on MNIST for the same training time: genlearn's DDPM against Hugging Face diffusers.

- `genlearn`: the `ddpm` family's defaults (U-Net 16-32-64 channels, 554,385 parameters,
  cosine schedule, v prediction, scale-shift time conditioning), trained by genlearn's engine.
- `diffusers`: its `UNet2DModel` sized to within 10% of genlearn's parameter count (16-32-56
  channels, one ResNet layer per block, attention at 7x7: 562,729 parameters) with its
  `DDPMScheduler` (1000 steps, its default linear schedule) and its `EMAModel`, in the
  training loop of diffusers' unconditional example (examples/unconditional_image_generation).

Both get the same recipe: batch 64, Adam(W) at 1e-3 without weight decay after 200 linear
warm-up steps, gradient norm clipped at 1, EMA decay 0.999 (each library's own warm-up of
the average). They train in alternating slices of `--slice` seconds until each has had
`--minutes` of training, so whatever else the machine does hits both alike.

Then each draws `--samples` images with DDIM at 50 and 20 steps and `--ddpm-samples` with
ancestral DDPM over all 1000 steps (DDPM costs 1000 network calls per image: 1,000 of them
would take over half an hour per model here; the seconds for 1,000 are extrapolated from the
measured rate). FID and KID in the MNIST-CNN feature space against the training set, and
real test digits at the same count as the floor. The targets: genlearn's FID at most 0.7x
diffusers' at each sampler, and its training steps/s at least diffusers'.

    GENLEARN_DATA=../shared/data python benchmarks/diffusion_mnist_vs_diffusers.py [--minutes 20]

Needs `pip install -e ".[bench]"` (diffusers, a benchmark-only dependency; it imports without
torchvision).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genlearn.data import get_dataset
from genlearn.metrics.quality import evaluate_samples
from genlearn.models import build_model, get_family
from genlearn.report.figures import save_image_grid
from genlearn.train.engine import Trainer
from genlearn.train.runs import Run
from genlearn.workflows import new_run_config

BATCH, LR, WARMUP, EMA_DECAY = 64, 1e-3, 200, 0.999


def diffusers_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(16, 32, 56),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


class DiffusersContestant:
    """diffusers' unconditional training example, reduced to its loop."""

    def __init__(self, images: torch.Tensor, seed: int = 0):
        from diffusers import DDPMScheduler
        from diffusers.training_utils import EMAModel

        torch.manual_seed(seed)
        self.images = images
        self.unet = diffusers_unet()
        self.scheduler = DDPMScheduler(num_train_timesteps=1000)
        self.optimizer = torch.optim.AdamW(self.unet.parameters(), lr=LR, weight_decay=0.0)
        self.ema = EMAModel(
            self.unet.parameters(), decay=EMA_DECAY, use_ema_warmup=True, inv_gamma=1.0, power=0.75
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.steps, self.seconds, self.order, self.position = 0, 0.0, None, 0

    def _batch(self) -> torch.Tensor:
        if self.order is None or self.position + BATCH > len(self.order):
            self.order, self.position = (
                torch.randperm(len(self.images), generator=self.generator),
                0,
            )
        rows = self.order[self.position : self.position + BATCH]
        self.position += BATCH
        return self.images[rows].float() / 127.5 - 1

    def train_until(self, seconds: float) -> None:
        self.unet.train()
        start = time.perf_counter()
        while self.seconds + time.perf_counter() - start < seconds:
            clean = self._batch()
            noise = torch.randn(clean.shape, generator=self.generator)
            t = torch.randint(0, 1000, (len(clean),), generator=self.generator)
            noisy = self.scheduler.add_noise(clean, noise, t)
            loss = F.mse_loss(self.unet(noisy, t).sample, noise)
            for group in self.optimizer.param_groups:
                group["lr"] = LR * min(1.0, (self.steps + 1) / WARMUP)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
            self.optimizer.step()
            self.ema.step(self.unet.parameters())
            self.steps += 1
        self.seconds += time.perf_counter() - start

    @torch.no_grad()
    def sample(self, n: int, sampler: str, steps: int, seed: int) -> torch.Tensor:
        """The pipelines' loop (DDPMPipeline / DDIMPipeline) with the averaged weights."""
        from diffusers import DDIMScheduler

        unet = diffusers_unet()
        unet.load_state_dict(self.unet.state_dict())
        self.ema.copy_to(unet.parameters())
        unet.eval()
        scheduler = (
            self.scheduler
            if sampler == "ddpm"
            else DDIMScheduler.from_config(self.scheduler.config)
        )
        scheduler.set_timesteps(steps)
        generator = torch.Generator().manual_seed(seed)
        batches = []
        for start in range(0, n, 250):
            x = torch.randn(min(250, n - start), 1, 28, 28, generator=generator)
            for t in scheduler.timesteps:
                x = scheduler.step(unet(x, t).sample, t, x, generator=generator).prev_sample
            batches.append(x)
        return ((torch.cat(batches).clamp(-1, 1) + 1) / 2 * 255).round().to(torch.uint8)


class GenlearnContestant:
    """`genlearn train ddpm --data mnist` with a constant rate after the warm-up, in slices."""

    def __init__(self, mnist, folder: Path, seed: int = 0):
        self.images = mnist.train_images
        config = get_family("ddpm").train_config(
            epochs=1000, lr=LR, batch_size=BATCH, warmup_steps=WARMUP, lr_schedule="constant"
        )
        run_config = new_run_config("ddpm", mnist, config, seed, "cpu", {})
        torch.manual_seed(seed)
        self.model = build_model("ddpm", run_config["model"])
        run = Run.create(folder, "ddpm", "mnist")
        # a complete run directory: `genlearn sample/evaluate RUN` work on it afterwards
        run.write_config(run_config)
        self.trainer = Trainer(
            self.model, run, config, seed=seed, device="cpu", show_progress=False
        )

    @property
    def steps(self) -> int:
        return self.trainer.step

    @property
    def seconds(self) -> float:
        return self.trainer.train_seconds

    def train_until(self, seconds: float) -> None:
        self.trainer.config.max_seconds = seconds
        self.trainer.fit(self.images)

    @torch.no_grad()
    def sample(self, n: int, sampler: str, steps: int, seed: int) -> torch.Tensor:
        model = self.trainer.unwrapped_model.eval()
        generator = torch.Generator().manual_seed(seed)
        batches = [
            model.sample(min(250, n - start), generator, sampler=sampler, steps=steps)
            for start in range(0, n, 250)
        ]
        return (torch.cat(batches) * 255).round().to(torch.uint8)


def score(samples: torch.Tensor, mnist) -> dict[str, float]:
    report = evaluate_samples(
        samples, mnist.train_images, mnist.test_images, ["mnist-cnn"], show_progress=False
    )
    space = report.spaces[0]
    return {
        "fid": round(float(space.samples["fid"]), 3),
        "fid_stderr": round(float(space.samples["fid_stderr"]), 3),
        "kid": round(float(space.samples["kid"]), 5),
        "real_test_fid": round(float(space.held_out["fid"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--slice", type=float, default=60.0, help="seconds per training turn")
    parser.add_argument("--samples", type=int, default=1000, help="images per DDIM evaluation")
    parser.add_argument("--ddpm-samples", type=int, default=250)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-diffusion-mnist"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    mnist = get_dataset("mnist")
    contestants = {
        "genlearn": GenlearnContestant(mnist, args.out),
        "diffusers": DiffusersContestant(mnist.train_images),
    }
    total = args.minutes * 60
    done = 0.0
    while done < total:
        done = min(total, done + args.slice)
        for contestant in contestants.values():
            contestant.train_until(done)
        print(
            f"{done:6.0f} s: " + "  ".join(f"{n} {c.steps} steps" for n, c in contestants.items()),
            flush=True,
        )
    results: dict[str, dict] = {}
    for name, contestant in contestants.items():
        results[name] = {
            "train_seconds": round(contestant.seconds, 1),
            "train_steps": contestant.steps,
            "steps_per_s": round(contestant.steps / contestant.seconds, 3),
        }
    evaluations = [("ddim20", "ddim", 20, args.samples), ("ddim50", "ddim", 50, args.samples)]
    evaluations.append(("ddpm1000", "ddpm", 1000, args.ddpm_samples))
    for label, sampler, steps, n in evaluations:
        for name, contestant in contestants.items():
            start = time.perf_counter()
            samples = contestant.sample(n, sampler, steps, seed=1)
            seconds = time.perf_counter() - start
            save_image_grid(samples[:64], args.out / f"{name}-{label}.png", nrow=8)
            results[name][label] = {
                "samples": n,
                "seconds_per_1000": round(seconds * 1000 / n, 1),
                **score(samples, mnist),
            }
            print(f"{name:>9} {label:>8}: {results[name][label]}", flush=True)
    ours, theirs = results["genlearn"], results["diffusers"]
    results["fid_ratio"] = {
        label: round(ours[label]["fid"] / theirs[label]["fid"], 3) for label, *_ in evaluations
    }
    results["steps_per_s_ratio"] = round(ours["steps_per_s"] / theirs["steps_per_s"], 3)
    results["parameters"] = {
        "genlearn": sum(p.numel() for p in contestants["genlearn"].model.network.parameters()),
        "diffusers": sum(p.numel() for p in contestants["diffusers"].unet.parameters()),
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
