"""The art verbs end to end: choose a backbone, read the pictures, optimise, write the results.

`dream_pipeline` and `style_pipeline` are what `genlearn dream` and `genlearn style` call; the
algorithms themselves live in `deepdream.py` and `style_transfer.py`, which know nothing of
files, progress bars or backbone choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.console import Console

from genlearn import __version__
from genlearn.art.deepdream import (
    DreamConfig,
    Objective,
    dream,
    guide_features,
    noise_image,
    parse_layers,
    zoom_frames,
)
from genlearn.art.images import load_image, output_format, save_animation, save_image
from genlearn.art.style_transfer import StyleConfig, stylise
from genlearn.backbones.catalog import Backbone, choose_backbone
from genlearn.backbones.imagenet import imagenet_class, imagenet_classes
from genlearn.data.progress import progress_bar
from genlearn.errors import ConfigError
from genlearn.report.figures import save_side_by_side
from genlearn.train.engine import pick_device

console = Console(stderr=True)
NOISE_SIZE = 320  # class pictures from noise: big enough for a few objects, fast on a CPU
# Dreaming from noise needs more of everything than dreaming on a photo: more octaves to grow
# shapes from nothing, more and larger steps, and a slight blur after each step so the class
# appears as shapes, not as high-frequency adversarial texture.
FROM_NOISE = dict(octaves=5, steps=40, step_size=0.03, blur=0.5, jitter=16)


def bundled_picture(name: str) -> Path:
    """A picture that ships with genlearn (see genlearn/art/data/README.md)."""
    return Path(str(files("genlearn.art").joinpath("data", name)))


@dataclass
class ArtResult:
    outputs: list[Path]
    backbone_note: str
    figures: list[Path] = field(default_factory=list)


# ---- DeepDream -----------------------------------------------------------------------------
def dream_pipeline(
    image: Path | None,
    output: Path,
    *,
    layers: str | None = None,
    class_name: str | None = None,
    from_noise: bool = False,
    size: int | None = None,
    settings: dict[str, Any] | None = None,
    guide: Path | None = None,
    frames: int = 0,
    zoom: float = 1.05,
    backbone: str | None = None,
    weights: Path | None = None,
    side_by_side: bool = False,
    device: str = "auto",
    show_progress: bool = True,
) -> ArtResult:
    """Dream on `image` (or on noise) and write `output`: a picture, or a GIF with `frames`.

    `settings` are `DreamConfig` fields the user chose; the rest are the defaults for a photo
    or, with `from_noise`, those for growing a picture out of noise."""
    if (image is None) == (not from_noise):
        raise ConfigError("give an image to dream on, or --from-noise (not both)")
    if frames < 0 or frames == 1:
        raise ConfigError(f"--zoom-frames must be 2 or more, got {frames}")
    if frames and not 1 < zoom <= 2:
        raise ConfigError(f"--zoom must be above 1 and at most 2 (1.05: 5% per frame), got {zoom}")
    if frames and Path(output).suffix.lower() != ".gif":
        raise ConfigError(f"--zoom-frames makes an animation: write it to a .gif, not {output}")
    if not frames:
        output_format(Path(output))
    if size is not None and size < 32:
        raise ConfigError(f"--size must be at least 32 pixels, got {size}")
    chosen, note = choose_backbone("dream", backbone, weights)
    config = DreamConfig(
        **{**(FROM_NOISE if from_noise else {}), "min_side": chosen.min_side, **(settings or {})}
    ).validate()
    if config.tile is not None and config.tile // 2 + config.margin < chosen.min_side:
        raise ConfigError(
            f"tiles of {config.tile} px with {config.margin} px margins can be too small for "
            f"{chosen.name} (it needs {chosen.min_side} px): use a larger --tile or --tile-margin"
        )
    class_index = _dream_class(class_name, chosen)
    if guide is not None and class_index is not None:
        raise ConfigError("--guide steers layers, --class a class: use one of them")
    console.print(note, style="dim", highlight=False)
    torch_device = pick_device(device)
    network = chosen.load(weights).to(torch_device)
    preprocess = chosen.preprocess
    if layers is None and class_index is None:
        layers = ",".join(chosen.dream_layers)
    names, channels = parse_layers(layers, network) if layers else ((), ())
    if from_noise:
        side = NOISE_SIZE if size is None else size
        start = noise_image(side, side, config.seed)
    else:
        start = load_image(image, size)
    if min(start.shape[-2:]) < chosen.min_side:
        height, width = start.shape[-2:]
        raise ConfigError(
            f"the picture is {height}x{width} px; {chosen.name} needs at least "
            f"{chosen.min_side} px on each side: use a larger --size"
        )
    start = start.to(torch_device)
    guide_maps = None
    if guide is not None:
        guide_image = load_image(guide, max(start.shape[-2:])).to(torch_device)
        guide_maps = guide_features(network, preprocess, guide_image, names)
    objective = Objective(names, channels, class_index, guide_maps)

    parameters = {
        "verb": "dream",
        "genlearn": __version__,
        "backbone": chosen.name,
        "image": None if image is None else Path(image).name,
        "layers": list(names),
        "channels": list(channels),
        "class": None if class_index is None else imagenet_classes()[class_index],
        "guide": None if guide is None else Path(guide).name,
        "weights": None if weights is None else Path(weights).name,
        "size": list(start.shape[-2:]),
        **asdict(config),
    }
    output = Path(output)
    steps = config.octaves * config.steps
    if frames:
        parameters.update(zoom_frames=frames, zoom=zoom)
        with progress_bar(
            f"dreaming {frames} frames", frames, show=show_progress, unit="frames"
        ) as advance:
            sequence = zoom_frames(
                network, preprocess, start, objective, frames, config, zoom,
                on_frame=lambda _: advance(),
            )  # fmt: skip
            advance()
        outputs = [save_animation([f.cpu() for f in sequence], output, parameters)]
        result = sequence[-1]
    else:
        with progress_bar(
            "dreaming", steps, show=show_progress, unit="steps", with_info=True
        ) as advance:
            result = dream(
                network, preprocess, start, objective, config,
                on_step=lambda _, value: advance(info=f"objective {value:.3g}"),
            )  # fmt: skip
        outputs = [save_image(result.cpu(), output, parameters)]
    figures = []
    if side_by_side:
        first = "noise" if from_noise else "photo"
        figure = output.with_name(output.stem + "-side-by-side.png")
        what = parameters["class"] or ", ".join(names)
        figures.append(
            save_side_by_side([start.cpu(), result.cpu()], [first, f"dream: {what}"], figure)
        )
    return ArtResult(outputs, note, figures)


def _dream_class(class_name: str | None, backbone: Backbone) -> int | None:
    if class_name is None:
        return None
    if not backbone.has_classifier:
        raise ConfigError(
            f"{backbone.name} has no ImageNet classifier to dream a class with: "
            f"use --backbone efficientnet-lite0 (or inception-v3, googlenet)"
        )
    return imagenet_class(class_name)


# ---- style transfer ------------------------------------------------------------------------
def style_pipeline(
    content: Path,
    styles: Sequence[Path],
    output: Path,
    *,
    size: int = 512,
    config: StyleConfig | None = None,
    backbone: str | None = None,
    weights: Path | None = None,
    side_by_side: bool = False,
    device: str = "auto",
    show_progress: bool = True,
) -> ArtResult:
    """Stylise `content` with `styles` and write `output` (and a side-by-side figure)."""
    output = Path(output)
    output_format(output)
    config = (config or StyleConfig()).validate()
    chosen, note = choose_backbone("style", backbone, weights)
    console.print(note, style="dim", highlight=False)
    if config.style_weight is None:
        config = replace(config, style_weight=chosen.style_weight)
    torch_device = pick_device(device)
    network = chosen.load(weights).to(torch_device)
    content_image = load_image(content, size).to(torch_device)
    style_images = [load_image(path, size).to(torch_device) for path in styles]

    terms_line = {"text": ""}

    def report(count: int, terms: dict[str, float]) -> None:
        terms_line["text"] = "  ".join(f"{k} {v:.3g}" for k, v in terms.items())
        advance(info=terms_line["text"])

    with progress_bar(
        "stylising", config.evaluations, show=show_progress, unit="evals", with_info=True
    ) as advance:
        result = stylise(network, chosen.preprocess, content_image, style_images, config, report)
    parameters = {
        "verb": "style",
        "genlearn": __version__,
        "backbone": chosen.name,
        "content": Path(content).name,
        "styles": [Path(p).name for p in styles],
        "weights": None if weights is None else Path(weights).name,
        "size": list(result.shape[-2:]),
        "final_loss": terms_line["text"],
        **asdict(config),
    }
    outputs = [save_image(result.cpu(), output, parameters)]
    figures = []
    if side_by_side:
        figure = output.with_name(output.stem + "-side-by-side.png")
        images = [content_image.cpu(), *[s.cpu() for s in style_images], result.cpu()]
        titles = ["content", *[f"style: {Path(p).stem}" for p in styles], "result"]
        figures.append(save_side_by_side(images, titles, figure))
    return ArtResult(outputs, note, figures)
