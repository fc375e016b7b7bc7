"""What a user does with a run, as plain functions: train, load, draw figures, evaluate.

The CLI is a thin layer over these; notebooks and scripts call them directly:

    from genlearn.train.engine import TrainConfig
    from genlearn.workflows import train, load_model
    run = train("vae", data="digits", latent_dim=2, train_config=TrainConfig(epochs=30))
    model, run = load_model(run.path)
"""

from __future__ import annotations

import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from rich.console import Console

from genlearn import __version__
from genlearn.data import ImageDataset, get_dataset
from genlearn.data.progress import progress_bar
from genlearn.errors import ConfigError, RunError
from genlearn.explore import latent
from genlearn.explore.diffusion import diffusion_figures, trajectory
from genlearn.explore.generator import (
    SNAPSHOTS_PER_RUN,
    TrainingSnapshots,
    generator_figures,
    sample_grid,
    walk_between,
)
from genlearn.explore.neighbours import neighbours_figure
from genlearn.explore.suite import standard_figures
from genlearn.metrics.features import parse_spaces
from genlearn.metrics.likelihood import evaluate_likelihood
from genlearn.metrics.quality import QualityReport, evaluate_samples
from genlearn.models import build_model, get_family
from genlearn.models.autoencoder import Autoencoder, AutoencoderConfig
from genlearn.models.diffusion import DiffusionConfig, build_vocabulary, tokenize
from genlearn.report.figures import save_image_grid
from genlearn.report.html import write_report
from genlearn.train.engine import TrainConfig, Trainer, pick_device
from genlearn.train.runs import Run, load_tensors, model_state_from_checkpoint

console = Console(stderr=True)

GREY_DIGIT_DATASETS = ("digits", "mnist", "fashion-mnist", "cylinders")


def load_data(name: str, image_size: int | None = None) -> ImageDataset:
    data = get_dataset(name) if image_size is None else get_dataset(name, image_size=image_size)
    if not isinstance(data, ImageDataset):
        raise ConfigError(f"dataset {name!r} holds 2-D points, not images: pick an image dataset")
    return data


def default_likelihood(data: ImageDataset) -> str:
    """Bernoulli for grey digit-like data, a discretised logistic for photos."""
    grey_digits = data.channels == 1 and data.name.split(":")[0] in GREY_DIGIT_DATASETS
    return "bernoulli" if grey_digits else "logistic"


def model_config_for(family: str, data: ImageDataset, **options: Any) -> dict[str, Any]:
    """The `model` section of config.json: the family's defaults, the data's shape, options.

    Options left as None take the family's default for this data (e.g. a VAE's likelihood).
    """
    spec = get_family(family)
    known = {f.name for f in fields(spec.config_class)} - set(spec.defaults)
    options = {k: v for k, v in options.items() if v is not None}
    unknown = set(options) - known
    if unknown:
        raise ConfigError(
            f"option(s) {', '.join(sorted(unknown))} do not apply to {family}: see "
            f"genlearn train --help"
        )
    options = {**data_defaults(spec.config_class, data, options), **options}
    config = spec.config_class(
        **{**options, **spec.defaults},
        image_channels=data.channels,
        image_size=data.image_size,
    )
    config.validate()
    if hasattr(config, "resolved"):  # defaults that depend on other choices, written in
        config = config.resolved()
    return asdict(config)


def data_defaults(config_class: type, data: ImageDataset, options: dict[str, Any]) -> dict:
    """Defaults that depend on the data: a VAE's likelihood, a conditional GAN's classes."""
    if config_class is AutoencoderConfig:
        # dynamic binarisation is the literature's protocol for MNIST likelihoods; on the
        # blurry, upscaled digits or on clothes it only adds noise, so elsewhere pixels keep
        # their grey levels
        return {
            "likelihood": default_likelihood(data),
            "binarize": data.name.split(":")[0] == "mnist",
        }
    if config_class is DiffusionConfig:
        return diffusion_data_defaults(data, options.get("conditional", "none"))
    if options.get("conditional", "none") != "none":
        if not data.class_names:
            raise ConfigError(
                f"{data.name} has no class labels, so a conditional model has nothing to "
                "condition on: drop --conditional or use a labelled dataset"
            )
        return {"num_classes": len(data.class_names)}
    return {}


def diffusion_data_defaults(data: ImageDataset, conditional: str) -> dict[str, Any]:
    """A class-conditional diffusion model's classes, a text one's vocabulary."""
    if conditional == "class":
        if not data.class_names:
            raise ConfigError(
                f"{data.name} has no class labels to condition on: drop --conditional, or "
                "use mnist, fashion-mnist or digits"
            )
        return {"num_classes": len(data.class_names)}
    if conditional == "text":
        if not data.train_captions:
            raise ConfigError(
                f"{data.name} has no captions to condition on: use --data shapes-captions"
            )
        longest = max(len(text.split()) for text in data.train_captions)
        return {"vocabulary": build_vocabulary(data.train_captions), "max_tokens": longest}
    return {}


def training_labels(model: torch.nn.Module, data: ImageDataset, split: str) -> torch.Tensor | None:
    """What the model is conditioned on while training: caption tokens for a text model,
    class indices otherwise (None when there are none)."""
    if getattr(model, "text_conditional", False):
        captions = getattr(data, f"{split}_captions")
        return tokenize(captions, model.config.vocabulary, model.config.max_tokens)
    return class_labels(getattr(data, f"{split}_labels"))


def autoencoder_for_latent_diffusion(
    path: str | Path, data: str | None, image_size: int | None, options: dict[str, Any]
) -> tuple[Autoencoder, str, int | None]:
    """The trained autoencoder a latent diffusion model works on, and the dataset and image
    size to use (its own unless given: another dataset must have the same image shape).
    Fills `options`' autoencoder entries."""
    autoencoder, run = load_model(path, device="cpu")
    if not isinstance(autoencoder, Autoencoder):
        raise ConfigError(
            f"{run.path} is a {run_config(run)['family']} run: --autoencoder needs a vae or ae run"
        )
    options["autoencoder"] = asdict(autoencoder.config)
    options["autoencoder_run"] = str(run.path.resolve())
    trained_on = run_config(run)["data"]
    if data is None:
        data, image_size = trained_on["name"], image_size or trained_on.get("image_size")
    return autoencoder, data, image_size or autoencoder.config.image_size


def _check_same_images(autoencoder: Autoencoder, data: ImageDataset) -> None:
    expected = autoencoder.image_shape
    got = (data.channels, data.image_size, data.image_size)
    if tuple(expected) != got:
        raise ConfigError(
            f"the autoencoder was trained on {'x'.join(map(str, expected))} images, {data.name} "
            f"has {'x'.join(map(str, got))}: use the autoencoder's dataset (or --image-size)"
        )


def train(
    family: str,
    data: str | None = "digits",
    *,
    image_size: int | None = None,
    train_config: TrainConfig | None = None,
    seed: int = 0,
    device: str = "auto",
    runs_dir: str | Path = "runs",
    resume: str | Path | None = None,
    figures: bool = True,
    show_progress: bool = True,
    stop_after_steps: int | None = None,
    **model_options: Any,
) -> Run:
    """Train a model and leave a complete run directory: config, metrics, weights, figures, report.

    `resume` continues a run from its checkpoint, with the configuration it was started with.
    """
    if family == "gpt" or (resume is not None and family_of(resume) == "gpt"):
        from genlearn.language import train_gpt  # imports this module: import it late

        return train_gpt(
            data or "shakespeare",
            train_config=train_config,
            seed=seed,
            device=device,
            runs_dir=runs_dir,
            resume=resume,
            figures=figures,
            show_progress=show_progress,
            **model_options,
        )
    if resume is not None:
        run, config = _resumed_config(resume, family)
        family, seed, device = config["family"], config["seed"], config.get("device", device)
        train_config = TrainConfig(**config["train"])
        dataset = load_data(config["data"]["name"], config["data"].get("image_size"))
    else:
        train_config = train_config or get_family(family).train_config()
        autoencoder = None
        if family == "ldm":
            path = model_options.pop("autoencoder_path", None)
            if path is None:
                raise ConfigError(
                    "latent diffusion needs a trained autoencoder: genlearn train ldm "
                    "--autoencoder runs/<vae-run>"
                )
            autoencoder, data, image_size = autoencoder_for_latent_diffusion(
                path, data, image_size, model_options
            )
        dataset = load_data(data or "digits", image_size)
        if autoencoder is not None:
            _check_same_images(autoencoder, dataset)
        config = new_run_config(family, dataset, train_config, seed, device, model_options)
    torch.manual_seed(seed)  # the initial weights follow --seed
    # the model is built before the run directory exists, so a bad option leaves nothing behind
    model = build_model(family, config["model"])
    if resume is None and family == "ldm":
        model.autoencoder.load_state_dict(autoencoder.state_dict())
        model.fit_latent_statistics(dataset.train_images)
    if resume is None:
        run = create_shared_run(runs_dir, family, dataset.name.split(":")[0], device)
        if PartialState().is_main_process:  # the state made in create_shared_run
            run.write_config(config)
    trainer = Trainer(
        model, run, train_config, seed=seed, device=device, show_progress=show_progress
    )
    if show_progress and trainer.accelerator.is_main_process:
        console.print(
            f"[bold]{family}[/] on {dataset.name} ({len(dataset.train_images)} images) "
            f"on {trainer.device} -> {run.path}"
        )
    snapshots = None
    if not hasattr(model, "encode") and trainer.accelerator.is_main_process:
        steps = len(dataset.train_images) // train_config.batch_size * train_config.epochs
        every = max(1, steps // SNAPSHOTS_PER_RUN)
        # a time-limited run ends before its epochs do: space the snapshots in time instead
        every_seconds = (
            train_config.max_seconds / SNAPSHOTS_PER_RUN if train_config.max_seconds else None
        )
        snapshots = TrainingSnapshots(
            run.figures_dir, dataset.train_images, every, seed, every_seconds=every_seconds
        )

    def warn(message: str) -> None:
        console.print(f"[yellow]warning:[/] {message}", highlight=False)

    def on_step(step: int) -> None:
        if snapshots is not None:
            snapshots(trainer.unwrapped_model, step, warn)
        if stop_after_steps is not None and step >= stop_after_steps:
            raise _Stop  # used to simulate a killed run

    try:
        trainer.fit(
            dataset.train_images,
            dataset.test_images,
            train_labels=training_labels(model, dataset, "train"),
            test_labels=training_labels(model, dataset, "test"),
            resume=resume is not None,
            on_step=on_step,
        )
    except _Stop:
        return run
    trainer.save_weights(run.weights_path)
    if snapshots is not None:
        snapshots.assemble(run.figures_dir / "training.gif")
    if figures and trainer.accelerator.is_main_process:
        model = trainer.unwrapped_model.eval()
        make_figures(run, model, dataset, seed=seed)
        path = write_report(run.path)
        if show_progress:
            console.print(f"report: {path}")
    return run


def class_labels(labels: torch.Tensor | None) -> torch.Tensor | None:
    """Class indices (for conditional models); attribute tables are not classes."""
    return labels if labels is not None and labels.ndim == 1 else None


def _resumed_config(path: str | Path, family: str | None) -> tuple[Run, dict[str, Any]]:
    """The run to resume and its config; the family named on the command line must match."""
    run = Run.open(path)
    config = run_config(run)
    if family and family != config["family"]:
        raise ConfigError(
            f"{run.path} is a {config['family']} run, not {family}: "
            f"resume it with genlearn train {config['family']} --resume {run.path}"
        )
    return run, config


def new_run_config(
    family: str,
    dataset: ImageDataset,
    train_config: TrainConfig,
    seed: int,
    device: str,
    model_options: dict[str, Any],
) -> dict[str, Any]:
    """config.json of a new run: what is trained, on what, how."""
    get_family(family)
    train_config.validate()
    return {
        "family": family,
        "genlearn_version": __version__,
        "seed": seed,
        "device": device,
        # the dataset's own name: folder paths are absolute, so the run works from anywhere
        "data": {"name": dataset.name, "image_size": dataset.image_size},
        "model": model_config_for(family, dataset, **model_options),
        "train": asdict(train_config),
    }


def create_shared_run(runs_dir: str | Path, family: str, data_name: str, device: str) -> Run:
    """A new run directory, made once by the main process and shared with every process
    of a distributed launch (`accelerate launch`, `torchrun`)."""
    # Accelerate's process state is initialised once per process: with the same device
    # choice the Trainer's Accelerator will make, so both see the same distributed setup
    state = PartialState(cpu=pick_device(device).type == "cpu")
    path = [str(Run.create(runs_dir, family, data_name).path) if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(path)
    return Run(path[0])


class _Stop(Exception):
    """Raised by the stop_after_steps hook: leaves the run as a kill would."""


REQUIRED_CONFIG_KEYS = ("family", "seed", "data", "model", "train")


def run_config(run: Run) -> dict[str, Any]:
    """A run's config.json, checked for the sections genlearn needs."""
    config = run.read_config()
    missing = [key for key in REQUIRED_CONFIG_KEYS if key not in config]
    if missing:
        raise RunError(
            f"{run.config_path} lacks {', '.join(missing)}: it was not written by "
            "genlearn train, or was edited"
        )
    return config


def load_model(path: str | Path, device: str = "cpu") -> tuple[Autoencoder, Run]:
    """Rebuild a run's model with its final weights (or, for an unfinished run, the latest
    checkpoint's). Needs only the run directory, not the data."""
    run = Run.open(path)
    config = run_config(run)
    model = build_model(config["family"], config["model"])
    if run.weights_path.exists():
        state, _ = load_tensors(run.weights_path)
    elif run.checkpoint_path.exists():
        state = model_state_from_checkpoint(load_tensors(run.checkpoint_path)[0])
    else:
        raise RunError(f"{run.path} has no weights yet: train it, or --resume it to finish")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise RunError(
            f"the weights in {run.path} do not fit its config.json: {str(error).splitlines()[0]}"
        ) from None
    return model.to(pick_device(device)).eval(), run


def family_of(path: str | Path) -> str:
    """The model family of a run directory."""
    return run_config(Run.open(path))["family"]


def run_dataset(run: Run) -> ImageDataset:
    """The dataset a run was trained on, as it was configured."""
    config = run_config(run)
    if config["family"] == "gpt":
        raise ConfigError(
            f"{run.path} is a language model (gpt): use genlearn generate, attention or evaluate"
        )
    data = config["data"]
    return load_data(data["name"], data.get("image_size"))


def load_run(path: str | Path, device: str = "cpu") -> tuple[Autoencoder, ImageDataset, Run]:
    """A run's model and its dataset."""
    model, run = load_model(path, device)
    return model, run_dataset(run), run


@torch.no_grad()
def make_figures(run: Run, model: torch.nn.Module, data: ImageDataset, seed: int = 0) -> list[Path]:
    """Every figure of a run, into run/figures/ (names the report knows): the latent tools
    for an autoencoder, samples and latent walks for a generator without an encoder."""
    if hasattr(model, "sample_shape"):  # a diffusion model
        paths = diffusion_figures(model, run.figures_dir, seed=seed, prompts=figure_prompts(data))
        console.print(f"{len(paths)} figures written to {run.figures_dir}")
        return paths
    if not hasattr(model, "encode"):
        paths = generator_figures(model, run.figures_dir, seed=seed)
        console.print(f"{len(paths)} figures written to {run.figures_dir}")
        return paths
    paths = standard_figures(
        model,
        data.test_images,  # uint8: the figure functions convert batch by batch
        data.test_labels,
        run.figures_dir,
        class_names=data.class_names,
        attribute_names=data.attribute_names,
        seed=seed,
    )
    console.print(f"{len(paths)} figures written to {run.figures_dir}")
    return paths


def figure_prompts(data: ImageDataset, count: int = 8) -> list[tuple[str, bool]] | None:
    """Prompts for a text model's figures, each with whether it combines a colour and a
    shape never seen together in training: half from the test split, half held out."""
    if not data.test_captions:
        return None
    if data.name == "shapes-captions":
        from genlearn.data.shapes_captions import load_shapes_captions

        held_out = load_shapes_captions(data.image_size)["held_out"].captions
        half = count // 2
        return [(c, False) for c in data.test_captions[:half]] + [
            (c, True) for c in held_out[: count - half]
        ]
    return [(c, False) for c in data.test_captions[:count]]


def evaluate_run(
    path: str | Path,
    *,
    iwae_k: int = 1000,
    num_images: int | None = None,
    num_samples: int = 5000,
    features: str = "auto",
    reference_size: int | None = None,
    bootstrap: int = 10,
    seed: int = 0,
    device: str = "auto",
    show_progress: bool = True,
) -> dict[str, Any]:
    """Every metric that applies to the run, written into metrics.json and the report.

    The likelihood (test ELBO, reconstruction, IWAE NLL) for models that have one, then sample
    quality and novelty (FID, KID, precision/recall, density/coverage, near-copies) from
    `num_samples` samples in each feature space, and the neighbours figure.
    """
    model, data, run = load_run(path, device=device)
    # a bad --features fails now, not after minutes of likelihood evaluation
    spaces = parse_spaces(features, data.name, data.channels) if num_samples > 0 else []
    results: dict[str, Any] = {}
    if hasattr(model, "iwae_bound"):
        images = data.test_images[:num_images] if num_images else data.test_images
        report = evaluate_likelihood(
            model,
            images,
            iwae_k=iwae_k,
            seed=seed,
            device=next(model.parameters()).device,
            show_progress=show_progress,
        )
        results.update({f"test_{k}": v for k, v in report.as_dict().items()})
    if hasattr(model, "bits_per_dim") and model.config.space == "pixels":
        images = data.test_images[: num_images or BOUND_IMAGES]
        results.update(diffusion_bound(model, images, seed=seed, show_progress=show_progress))
    if num_samples > 0:
        quality = _sample_quality(
            model,
            data,
            run,
            num_samples=num_samples,
            spaces=spaces,
            reference_size=reference_size,
            bootstrap=bootstrap,
            seed=seed,
            device=device,
            show_progress=show_progress,
        )
        results["sample_quality"] = quality.as_dict()
    run.write_evaluation(results)
    write_report(run.path)
    return results


BOUND_IMAGES = 1000  # test images for a diffusion model's bound (each costs 20 network calls)


@torch.no_grad()
def diffusion_bound(
    model: torch.nn.Module,
    images: torch.Tensor,
    *,
    timesteps_per_image: int = 20,
    seed: int = 0,
    batch_size: int = 250,
    show_progress: bool = True,
) -> dict[str, float]:
    """The variational bound in bits per dimension on uint8 `images`, with its standard error
    over images (the estimate of each image's bound is unbiased; see negative_elbo)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    values = []
    with progress_bar("bits/dim bound", len(images), show=show_progress, unit="images") as advance:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device).float() / 255
            bits = model.bits_per_dim(batch, generator, timesteps_per_image=timesteps_per_image)
            values.append(bits.double().cpu())
            advance(len(batch))
    bits = torch.cat(values)
    return {
        "test_bits_per_dim": round(float(bits.mean()), 4),
        "test_bits_per_dim_stderr": round(float(bits.std() / len(bits) ** 0.5), 4),
        "test_bits_per_dim_images": len(bits),
    }


def _sample_quality(
    model: torch.nn.Module,
    data: ImageDataset,
    run: Run,
    *,
    num_samples: int,
    spaces: list[str],
    reference_size: int | None,
    bootstrap: int,
    seed: int,
    device: str,
    show_progress: bool,
) -> QualityReport:
    """Samples against the training set in each space; the neighbours figure."""
    samples = generate_samples(model, num_samples, seed=seed, show_progress=show_progress)
    quality = evaluate_samples(
        samples,
        data.train_images,
        data.test_images,
        spaces,
        device=device,
        reference_size=reference_size,
        bootstrap=bootstrap,
        seed=seed,
        show_progress=show_progress,
    )
    _neighbours_figure(quality, samples, data, run.figures_dir / "neighbours.png")
    return quality


@torch.no_grad()
def generate_samples(
    model: torch.nn.Module,
    n: int,
    *,
    seed: int = 0,
    batch_size: int = 500,
    show_progress: bool = True,
) -> torch.Tensor:
    """n samples as uint8 [n, C, H, W], quantised like saved PNGs (as evaluation tools expect).

    The noise comes from one seeded CPU generator, so a seed gives the same samples on any
    device. Every model family provides `sample(n, generator)` -> images in [0, 1].
    """
    generator = torch.Generator().manual_seed(seed)
    batches = []
    with progress_bar("sampling", n, show=show_progress, unit="images") as advance:
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            images = model.sample(count, generator=generator)
            batches.append((images.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu())
            advance(count)
    return torch.cat(batches)


def _neighbours_figure(
    quality: QualityReport, samples: torch.Tensor, data: ImageDataset, target: Path, n: int = 16
) -> Path:
    """Samples beside their 3 nearest training images, in pixels and the first network space."""
    by_space = {result.space: result for result in quality.spaces}
    shown = [by_space[s] for s in ("pixels",) if s in by_space]
    shown += [r for r in quality.spaces if r.space != "pixels"][:1]
    spaces = [result.neighbours(k=3) for result in shown]
    copies = ", ".join(f"{r.samples['near_copy_share'] * 100:.1f}% in {r.label}" for r in shown)
    closest = (min(n, len(samples)) + 1) // 2
    caption = (
        f"Left: the {closest} of {len(samples):,} samples closest to a training image; right: "
        f"random samples. Each is shown beside its 3 nearest training images (the numbers are "
        f"distances). A red frame marks a near-copy: closer to a training image than 99% of "
        f"training images are to their own nearest neighbour. Near-copies among all samples: "
        f"{copies}."
    )
    return neighbours_figure(samples, data.train_images, spaces, target, n=n, caption=caption)


def neighbours_run(
    path: str | Path,
    n: int = 16,
    *,
    num_samples: int = 1000,
    features: str = "auto",
    seed: int = 0,
    device: str = "auto",
    show_progress: bool = True,
) -> tuple[Path, QualityReport]:
    """Each of the n most copy-like of `num_samples` samples beside its nearest training images."""
    model, data, run = load_run(path, device=device)
    spaces = parse_spaces(features, data.name, data.channels)
    if "pixels" not in spaces:
        spaces = ["pixels", *spaces]
    samples = generate_samples(model, num_samples, seed=seed, show_progress=show_progress)
    quality = evaluate_samples(
        samples,
        data.train_images,
        None,
        spaces,
        device=device,
        seed=seed,
        distribution=False,
        show_progress=show_progress,
    )
    target = run.figures_dir / "neighbours.png"
    return _neighbours_figure(quality, samples, data, target, n=n), quality


# ---- the exploring verbs, one function each (the CLI calls these) ----------------------------
def _check_index(index: int, count: int, option: str) -> None:
    if not 0 <= index < count:
        raise ConfigError(f"{option} {index} is out of range: the test set has {count} images")


def sample_run(
    path: str | Path,
    n: int = 64,
    *,
    seed: int = 0,
    output: Path | None = None,
    label: int | None = None,
    device: str = "auto",
    **diffusion_options: Any,
) -> list[Path]:
    """A grid of n images from z ~ N(0, I) (of class `label`, for a conditional model).

    A diffusion model also takes `prompt`, `sampler`, `steps`, `eta`, `guidance` and
    `trajectory` (see `diffusion_sample_run`)."""
    model, run = load_model(path, device)
    if run_config(run)["family"] == "gpt":
        raise ConfigError(f"{run.path} is a language model: genlearn generate writes its text")
    if hasattr(model, "sample_shape"):
        return diffusion_sample_run(model, run, n, seed, output, label, **diffusion_options)
    given = [k for k, v in diffusion_options.items() if v not in (None, False)]
    if given:
        options = ", ".join("--" + k.removesuffix("_figure") for k in given)
        raise ConfigError(f"{options} apply to diffusion models (ddpm, ldm), not to this run")
    return [_sample_plain(model, run, n, seed, output, label)]


def diffusion_sample_run(
    model: torch.nn.Module,
    run: Run,
    n: int,
    seed: int,
    output: Path | None,
    label: int | None,
    *,
    prompt: str | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    eta: float | None = None,
    guidance: float | None = None,
    trajectory_figure: bool = False,
) -> list[Path]:
    """n samples of a diffusion model as a grid, or with `trajectory_figure` the reverse
    process of n samples as a strip and a GIF. The sampler is chosen here, not in training."""
    if sampler == "ddpm" and steps is not None and steps != model.schedule.steps:
        raise ConfigError(
            f"DDPM always takes all {model.schedule.steps} steps: drop --steps, or use "
            "--sampler ddim for fewer"
        )
    labels = None if label is None else torch.tensor([label])
    prompts = None if prompt is None else [prompt]
    model.conditions(1, labels, prompts)  # a bad class or prompt fails before any sampling
    name = sampler or model.config.sampler
    parts = [name] + ([f"{steps}steps"] if steps else [])
    parts += [f"class{label}"] if label is not None else []
    parts += [re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:60]] if prompt else []
    if guidance is not None:
        parts.append(f"w{guidance:g}")
    stem = "-".join([f"samples-seed{seed}-n{n}", *parts])
    total = len(model.make_sampler(sampler, steps).timesteps())  # DDPM: 1000 network calls
    with progress_bar("denoising", total, unit="steps") as advance:
        if trajectory_figure:
            target = output or run.figures_dir / stem.replace("samples", "trajectory", 1)
            return trajectory(
                model, Path(target), n=n, seed=seed, sampler=sampler, steps=steps,
                labels=labels, prompts=prompts, guidance=guidance, on_step=advance,
            )  # fmt: skip
        target = output or run.figures_dir / f"{stem}.png"
        generator = torch.Generator().manual_seed(seed)
        images = model.sample(
            n, generator, labels, prompts, sampler=sampler, steps=steps, eta=eta or 0.0,
            guidance=guidance, on_step=lambda *_: advance(),
        )  # fmt: skip
    what = f' for "{prompt}"' if prompt else f" of class {label}" if label is not None else ""
    how = f"{name.upper()}" + (f", {steps} steps" if steps and name == "ddim" else "")
    conditioned = model.config.conditional != "none" and (prompt or label is not None)
    scale = model.config.guidance if guidance is None else guidance
    guided = f", classifier-free guidance {scale:g}" if conditioned else ""
    caption = f"{n} samples{what} ({how}{guided}; seed {seed})."
    return [save_image_grid(images.cpu(), Path(target), caption=caption)]


def _sample_plain(
    model: torch.nn.Module, run: Run, n: int, seed: int, output: Path | None, label: int | None
) -> Path:
    suffix = "" if label is None else f"-class{label}"
    target = output or run.figures_dir / f"samples-seed{seed}-n{n}{suffix}.png"
    if not hasattr(model, "encode"):  # a generator: conditional models take a class
        _check_class(model, label)
        return sample_grid(model, target, n=n, seed=seed, label=label)
    if label is not None:
        raise ConfigError("--class applies to conditional generators (e.g. dcgan --conditional)")
    generator = torch.Generator(device=latent.model_device(model)).manual_seed(seed)
    return latent.prior_samples(model, target, n=n, generator=generator)


def _check_class(model: torch.nn.Module, label: int | None) -> None:
    """`--class` must name one of a conditional generator's classes."""
    if label is None:
        return
    if not getattr(model, "conditional", False):
        raise ConfigError(
            "--class needs a conditional model, and this one is unconditional: train one "
            "with --conditional"
        )
    classes = int(model.num_classes)
    if not 0 <= label < classes:
        raise ConfigError(f"--class {label} is not a class of this model: use 0 to {classes - 1}")


def _autoencoder_run(
    path: str | Path, device: str, verb: str
) -> tuple[Autoencoder, ImageDataset, Run]:
    """load_run for the verbs that need an encoder; any other model is a one-line error."""
    model, data, run = load_run(path, device)
    if not isinstance(model, Autoencoder):
        family = run_config(run)["family"]
        raise ConfigError(
            f"{verb} needs an encoder (a vae or ae run); {run.path} is a {family} run: try "
            f"genlearn sample or genlearn interpolate"
        )
    return model, data, run


def reconstruct_run(path: str | Path, n: int = 16, *, device: str = "auto") -> Path:
    """The first n test images over their reconstructions."""
    model, data, run = _autoencoder_run(path, device, "reconstruct")
    return latent.reconstructions(
        model, data.test_images[:n], run.figures_dir / "reconstructions.png", n=n
    )


def latent_map_run(path: str | Path, *, grid: int = 20, device: str = "auto") -> list[Path]:
    """The test set in latent space coloured by label, and the decoded latent grid."""
    model, data, run = _autoencoder_run(path, device, "latent-map")
    scatter = latent.latent_scatter(
        model,
        data.test_images,
        data.test_labels,
        run.figures_dir / "latent_scatter.png",
        class_names=data.class_names,
        attribute_names=data.attribute_names,
    )
    grid_path = latent.latent_grid(
        model, run.figures_dir / "latent_grid.png", n=grid, images=data.test_images
    )
    return [scatter, grid_path]


def interpolate_run(
    path: str | Path,
    start: int,
    end: int,
    *,
    steps: int = 10,
    gif: bool = False,
    spherical: bool | None = None,
    label: int | None = None,
    device: str = "auto",
) -> list[Path]:
    """Morph test image `start` into test image `end` through the latent space; for a
    generator without an encoder, walk from the z of seed `start` to that of seed `end`
    (of class `label`, for a conditional one).

    `spherical` None: slerp for a generator (a straight line between Gaussian z's passes
    through atypically short vectors, which it has rarely seen), a straight line between
    an encoder's codes."""
    model, run = load_model(path, device)
    if not hasattr(model, "encode"):
        _check_class(model, label)
        suffix = "" if label is None else f"-class{label}"
        target = run.figures_dir / f"interpolation-z{start}-z{end}{suffix}"
        slerp = True if spherical is None else spherical
        return walk_between(
            model, (start, end), target, steps=steps, gif=gif, spherical=slerp, label=label
        )
    if label is not None:
        raise ConfigError("--class applies to conditional generators (e.g. dcgan --conditional)")
    spherical = bool(spherical)
    data = run_dataset(run)
    images = data.test_images
    _check_index(start, len(images), "--from")
    _check_index(end, len(images), "--to")
    stem = run.figures_dir / f"interpolation-{start}-{end}"
    gif_path = stem.with_suffix(".gif") if gif else None
    strip = latent.interpolate(
        model,
        images[start],
        images[end],
        stem.with_suffix(".png"),
        steps=steps,
        gif_path=gif_path,
        spherical=spherical,
    )
    return [strip] + ([gif_path] if gif_path else [])


def attribute_run(
    path: str | Path,
    attribute: str,
    indices: list[int],
    strengths: list[float],
    *,
    device: str = "auto",
    max_images: int = 20_000,
) -> Path:
    """Add s * (mean z with the attribute - mean z without it) to chosen test images.

    The vector is measured on (up to `max_images`) training images and their labels.
    """
    if not indices or not strengths:
        raise ConfigError("give at least one test image (--images) and one strength (--strengths)")
    model, data, run = _autoencoder_run(path, device, "attribute")
    if data.train_labels is None:
        raise ConfigError(f"dataset {data.name} has no labels, so it has no attributes to add")
    for index in indices:
        _check_index(index, len(data.test_images), "--images")
    labels = data.train_labels[:max_images]
    mask = latent.attribute_mask(labels, data.class_names, data.attribute_names, attribute)
    vector = latent.attribute_vector(model, data.train_images[:max_images], mask)
    slug = re.sub(r"[^a-z0-9]+", "_", attribute.lower()).strip("_") or "attribute"
    return latent.attribute_figure(
        model,
        data.test_images[torch.tensor(indices)],
        vector,
        strengths,
        run.figures_dir / f"attribute_{slug}.png",
        row_labels=[f"test #{i}" for i in indices],
        attribute_name=attribute,
    )
