"""The tour: the talk's story on the built-in digits, in about three minutes on a CPU.

1. a VAE with a 2-D latent space, so its latent space can be drawn;
2. a plain autoencoder with the same architecture, for comparison;
3. a DCGAN, trained for a fixed minute: the two-player game, its training GIF;
4. a small diffusion model, trained for half a minute: noise turned into digits step by step;
5. a small character-level GPT, trained for half a minute on Shakespeare (the whole tiny
   Shakespeare when its file is here, else the embedded excerpt): text, and where it looks;
6. a report for each, and one that puts the two autoencoders side by side;
7. running a network in reverse: a small DeepDream of a photo, and a small style transfer
   of the photo in the manner of a painting (when VGG weights are here; the tour says how
   to get them otherwise).
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from genlearn.art.pipelines import bundled_picture, dream_pipeline, style_pipeline
from genlearn.art.style_transfer import StyleConfig
from genlearn.data.text import local_shakespeare
from genlearn.errors import WeightsError
from genlearn.language import train_gpt
from genlearn.models import get_family
from genlearn.report.html import write_comparison_report
from genlearn.train.engine import TrainConfig
from genlearn.train.runs import Run
from genlearn.workflows import train

console = Console(stderr=True)

# digits has ~1,500 training images of 8x8 pixels: at 16 px (no detail is lost) many short
# epochs fit in a minute; at 28 px the same time buys 3x fewer and blurrier samples
TOUR_IMAGE_SIZE = 16
# wider than the default 16/32 filters: a 2-D VAE this small otherwise depends on its seed
# (measured over 3 seeds: 68-73% of samples read as digits, against 49-69% with 16/32)
TOUR_CHANNELS = [32, 64]
# the same training for both models, so the comparison is only about the KL term; 170 epochs
# (about 55 s each here) leave the tour's other steps their time within five minutes
TOUR_TRAINING = TrainConfig(epochs=170, batch_size=64, lr=2e-3, eval_every_epochs=50)
# a DCGAN draws recognisable digits after about a minute here; the time limit keeps the tour
# short on a slower machine, a faster one stops at 120 epochs. Narrower networks (32 channels,
# not 64) and a higher rate take 2.4x the steps in that minute: measured on 1,000 samples, 53%
# of them a digit classifier labels confidently, against 48% with the paper's 64 and 2e-4
TOUR_GAN_SECONDS = 60.0
TOUR_GAN_OPTIONS = dict(generator_width=32, critic_width=32)
# diffusion learns slowly but steadily: half a minute on the 16 px digits (its snapshots and
# figures with DDIM's few steps) shows the denoising at work
TOUR_DIFFUSION_SECONDS = 30.0
# a character model writes word-like, play-shaped text after 400 steps (about 25 s here):
# a step count, not only a time limit, so its learning rate decays to the end as it should
TOUR_GPT_STEPS = 400
TOUR_GPT_SECONDS = 30.0
AUTOENCODER_OPTIONS = dict(latent_dim=2, conv_channels=TOUR_CHANNELS, train_config=TOUR_TRAINING)
STEPS = [
    ("vae", "a variational autoencoder on the built-in digits", AUTOENCODER_OPTIONS),
    (
        "ae",
        "a plain autoencoder, same architecture and training, for comparison",
        AUTOENCODER_OPTIONS,
    ),
    (
        "dcgan",
        f"a DCGAN: generator against discriminator, at most {TOUR_GAN_SECONDS:.0f} s",
        dict(
            train_config=get_family("dcgan").train_config(
                epochs=120, lr=5e-4, eval_every_epochs=10, max_seconds=TOUR_GAN_SECONDS
            ),
            **TOUR_GAN_OPTIONS,
        ),
    ),
    (
        "ddpm",
        f"a diffusion model: noise to digits, step by step, at most {TOUR_DIFFUSION_SECONDS:.0f} s",
        dict(
            train_config=get_family("ddpm").train_config(
                epochs=60,
                lr=2e-3,
                warmup_steps=50,
                eval_every_epochs=20,
                max_seconds=TOUR_DIFFUSION_SECONDS,
            ),
        ),  # fmt: skip
    ),
]


# seconds on this 2-core CPU: the dream about 3, the stylisation about 20
TOUR_DREAM_SIZE = 384
TOUR_STYLE_SIZE = 256
TOUR_STYLE_EVALUATIONS = 75


def run_tour(runs_dir: Path = Path("runs"), seed: int = 0, device: str = "auto") -> dict[str, Path]:
    """Train the tour's models and write their reports; returns the paths a user opens."""
    start = time.perf_counter()
    runs = {}
    for step, (family, what, options) in enumerate(STEPS, start=1):
        console.rule(f"genlearn tour {step}/{len(STEPS) + 2}: {what}")
        runs[family] = train(
            family,
            "digits",
            image_size=TOUR_IMAGE_SIZE,
            seed=seed,
            device=device,
            runs_dir=runs_dir,
            **options,
        )
    total = len(STEPS) + 2
    console.rule(
        f"genlearn tour {len(STEPS) + 1}/{total}: a GPT writes like Shakespeare, at most "
        f"{TOUR_GPT_SECONDS:.0f} s"
    )
    gpt = tour_gpt(runs_dir, seed, device)
    vae, ae, gan, diffusion = runs["vae"], runs["ae"], runs["dcgan"], runs["ddpm"]
    comparison = write_comparison_report(
        [ae.path, vae.path], Path(runs_dir) / "tour-ae-vs-vae.html"
    )
    console.rule(f"genlearn tour {total}/{total}: a network run in reverse")
    art = tour_art(Path(runs_dir) / "tour-art", device)
    seconds = time.perf_counter() - start
    console.rule(f"done in {seconds:.0f} s")
    console.print(f"VAE report:        {vae.path / 'report.html'}")
    console.print(f"AE report:         {ae.path / 'report.html'}")
    console.print(f"AE vs VAE:         {comparison}")
    console.print(f"DCGAN report:      {gan.path / 'report.html'}")
    console.print(f"DCGAN training:    {gan.figures_dir / 'training.gif'}")
    console.print(f"Diffusion report:  {diffusion.path / 'report.html'}")
    console.print(f"Denoising:         {diffusion.figures_dir / 'trajectory.gif'}")
    console.print(f"GPT report:        {gpt.path / 'report.html'}")
    console.print(f"GPT's text:        {gpt.figures_dir / 'samples.txt'}")
    for label, path in art.items():
        console.print(f"{label + ':':<19}{path}")
    console.print(
        f"Next: genlearn sample {vae.path} -n 64   |   genlearn interpolate {vae.path} "
        f"--from 3 --to 17 --gif   |   genlearn neighbours {gan.path}   |   "
        f'genlearn generate {gpt.path} --prompt "ROMEO:" --stream'
    )
    return {
        "vae": vae.path, "ae": ae.path, "dcgan": gan.path, "ddpm": diffusion.path, "gpt": gpt.path,
        "comparison": comparison, **art,
    }  # fmt: skip


def tour_gpt(runs_dir: Path, seed: int, device: str) -> Run:
    """The family's default GPT, TOUR_GPT_STEPS steps on Shakespeare, whole or excerpt."""
    here = local_shakespeare() is not None
    config = get_family("gpt").train_config(
        max_steps=TOUR_GPT_STEPS, eval_every_steps=TOUR_GPT_STEPS // 2, max_seconds=TOUR_GPT_SECONDS
    )
    return train_gpt(
        "shakespeare" if here else "shakespeare-excerpt",
        train_config=config,
        seed=seed,
        device=device,
        runs_dir=runs_dir,
    )


def tour_art(folder: Path, device: str) -> dict[str, Path]:
    """A DeepDream of the bundled cat photo and, with VGG weights here, its stylisation."""
    folder.mkdir(parents=True, exist_ok=True)
    photo, painting = bundled_picture("chelsea.jpg"), bundled_picture("starry_night.jpg")
    dreamed = dream_pipeline(
        photo, folder / "dream.png", size=TOUR_DREAM_SIZE, side_by_side=True, device=device
    )
    made = {"DeepDream": dreamed.figures[0]}
    try:
        styled = style_pipeline(
            photo, [painting], folder / "style.png", size=TOUR_STYLE_SIZE,
            config=StyleConfig(evaluations=TOUR_STYLE_EVALUATIONS), side_by_side=True,
            device=device,
        )  # fmt: skip
        made["style transfer"] = styled.figures[0]
    except WeightsError:
        console.print(
            "style transfer skipped: it needs VGG weights, which are not on this machine. "
            "Run `genlearn weights get vgg16-hed` (59 MB), then `genlearn style PHOTO PAINTING`."
        )
    return made
