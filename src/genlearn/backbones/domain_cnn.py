"""A small CNN trained on the data's own domain, whose features stand in for Inception's.

FID, KID, precision/recall and nearest-neighbour novelty compare images through a fixed
network's features. InceptionV3 learned its features from ImageNet photographs, so for a
28x28 grey digit upscaled to 299 px they were never trained to tell one stroke from another.
For MNIST-like data, many GAN and VAE papers instead compute "FID" with a small classifier
trained on MNIST itself (often a LeNet-style network). Such figures are comparable only with
figures from the same network, which is why the weights ship with genlearn and every figure
is labelled with the network's name, e.g. "FID (MNIST-CNN)".

The network is a classifier (it needs labels), and its 128-d penultimate layer is the feature
space: training makes it separate the classes, while its width and the absence of tricks that
collapse each class to a point (label smoothing, a tiny bottleneck) keep within-class
variation (slant, thickness, style) visible to precision/recall and nearest neighbours.
Training is light (4 epochs of MNIST take under two minutes on a 2-core CPU), seeded, and
deterministic on a CPU.

    >>> info = train_domain_network("fashion-mnist", out_dir=Path("weights"))
    >>> network, info = load_domain_network()  # the shipped MNIST network
    >>> features, logits = network.forward_features(domain_preprocess(images))
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from rich.console import Console
from torch import Tensor, nn

from genlearn import __version__
from genlearn.atomic import write_json_atomic
from genlearn.data.containers import ImageDataset
from genlearn.errors import ConfigError, RunError, WeightsError
from genlearn.train.runs import load_tensors, save_tensors_atomic

if TYPE_CHECKING:
    from genlearn.train.engine import TrainConfig

INPUT_SIZE = 28
# Inputs are mapped from [0, 1] to [-1, 1]: fixed constants rather than one dataset's mean
# and std, so the same preprocessing serves every domain network.
MEAN, STD = 0.5, 0.5
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's convert("L")
MAX_SHIFT = 2  # pixels of random translation while training
EVAL_BATCH = 1000
TRAIN_COMMAND = "genlearn metrics train-features --data {data}"

console = Console(stderr=True)


# ---- the network ------------------------------------------------------------------------------
def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    # Pooling before BatchNorm and ReLU does their work on a quarter of the pixels (a third
    # of the training time otherwise). BatchNorm lets a few epochs at a high learning rate
    # converge reliably; a conv bias would be cancelled by it, so there is none.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DomainCNN(nn.Module):
    """A small classifier for 28x28 grey images whose penultimate layer serves as features.

    Architecture (131k parameters, 0.5 MB in fp32 for the defaults):
    three blocks of 3x3 conv + 2x2 max-pool + BatchNorm + ReLU, 1->32->64->64 channels,
    28 -> 14 -> 7 -> 3 px; then flatten (576) -> linear -> ReLU = the `feature_dim`
    features; then linear -> `num_classes` logits. Inputs come from `domain_preprocess`.
    """

    def __init__(self, num_classes: int = 10, feature_dim: int = 128):
        super().__init__()
        if num_classes < 1 or feature_dim < 1:
            raise ValueError(
                f"need positive num_classes and feature_dim, got {num_classes}, {feature_dim}"
            )
        self.num_classes, self.feature_dim = num_classes, feature_dim
        self.body = nn.Sequential(_conv_block(1, 32), _conv_block(32, 64), _conv_block(64, 64))
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64 * 3 * 3, feature_dim), nn.ReLU())
        self.classifier = nn.Linear(feature_dim, num_classes)
        # channels-last weights are the fast layout for CPU convolutions (3x the images/s at
        # inference); loading a state dict keeps the layout
        self.to(memory_format=torch.channels_last)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features [N, feature_dim] and logits [N, num_classes] of preprocessed [N, 1, 28, 28]."""
        features = self.features(self.body(x))
        return features, self.classifier(features)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits [N, num_classes]."""
        return self.forward_features(x)[1]


def domain_preprocess(images: Tensor) -> Tensor:
    """uint8 [N, C, H, W] (0..255) or float in [0, 1] -> float [N, 1, 28, 28] for `DomainCNN`.

    Colour becomes grey (luma), other sizes are resized bilinearly (antialiased when shrinking,
    so thin strokes are averaged rather than skipped), and [0, 1] maps to [-1, 1].
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, 1|3, H, W], got {tuple(images.shape)}")
    x = _unit_float(images)
    if x.shape[1] == 3:
        weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        x = (x * weights).sum(dim=1, keepdim=True)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        shrink = x.shape[-1] > INPUT_SIZE or x.shape[-2] > INPUT_SIZE
        x = F.interpolate(
            x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=shrink
        ).clamp_(0.0, 1.0)
    return (x - MEAN) / STD


def _unit_float(images: Tensor) -> Tensor:
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or float images, got {images.dtype}")
    if images.numel() and (images.min() < -0.5 or images.max() > 1.5):
        # the classic mistake: a generator's [-1, 1] (or 0..255 float) output passed as is
        raise ConfigError(
            f"float images must be in [0, 1], got values in [{images.min():.2f}, "
            f"{images.max():.2f}]: map [-1, 1] images with (x + 1) / 2"
        )
    return images.float().clamp(0.0, 1.0)  # small overshoots of a generator are clipped


# ---- what is saved next to the weights ------------------------------------------------------
@dataclass(frozen=True)
class DomainNetInfo:
    """How a domain network was trained and how well it classifies held-out images."""

    name: str
    data: str
    test_accuracy: float  # fraction of the full test split classified correctly
    test_images: int
    epochs: int
    seed: int
    feature_dim: int
    num_classes: int
    class_names: list[str] | None
    train_seconds: float
    genlearn_version: str


# ---- training -------------------------------------------------------------------------------
def train_domain_network(
    data: str = "mnist",
    *,
    out_dir: Path,
    name: str | None = None,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    device: str = "auto",
    show_progress: bool = True,
    limit: int | None = None,
) -> DomainNetInfo:
    """Train a `DomainCNN` on a labelled image dataset; save `<out_dir>/<name>.safetensors`.

    `name` defaults to `<data>-cnn` (see `default_name`); `limit` trains on the first `limit`
    training images only (accuracy is always measured on the full test split). The weights,
    with the info as metadata, and `<name>.json` are written atomically. Same seed, same
    weights on a CPU. Unlabelled data or data without a test split raise `ConfigError`.
    """
    # the engine imports Accelerate (slow); only training needs it, loading does not
    from genlearn.train.engine import TrainConfig, make_adam, pick_device

    name = name or default_name(data)
    _check_options(name, epochs, batch_size, lr, limit)
    dataset = _labelled_dataset(data)
    train_x, train_y = _training_split(dataset, limit, batch_size)
    total_steps = len(train_x) // batch_size * epochs  # partial batches are dropped (BatchNorm)
    config = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, warmup_steps=min(200, total_steps // 10)
    )
    target = pick_device(device)
    model = _seeded_model(len(dataset.class_names), seed).to(target)
    optimizer = make_adam(model.parameters(), config)  # before the clock: it imports dynamo
    started = time.perf_counter()
    _fit(model, optimizer, config, train_x, train_y, seed, show_progress)
    train_seconds = time.perf_counter() - started
    accuracy = _accuracy(model, dataset.test_images, dataset.test_labels, target)
    info = DomainNetInfo(
        name=name,
        data=data,
        test_accuracy=round(accuracy, 6),
        test_images=len(dataset.test_images),
        epochs=epochs,
        seed=seed,
        feature_dim=model.feature_dim,
        num_classes=model.num_classes,
        class_names=list(dataset.class_names),
        train_seconds=round(train_seconds, 1),
        genlearn_version=__version__,
    )
    path = _save(model, info, Path(out_dir))
    if show_progress:
        console.print(
            f"{name}: test accuracy {accuracy:.2%} on {info.test_images:,} {data} test images "
            f"after {epochs} epochs ({train_seconds:.0f} s) -> {path}"
        )
    return info


def default_name(data: str) -> str:
    """`<data>-cnn`; for `folder:PATH` (or any `NAME:ARG`) the folder's (argument's) name."""
    kind, _, argument = data.partition(":")
    base = Path(argument.rstrip("/\\")).name if argument else kind
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base or kind).lstrip(".-") + "-cnn"


def _check_options(name: str, epochs: int, batch_size: int, lr: float, limit: int | None) -> None:
    if not name or Path(name).name != name or name.startswith("."):
        raise ConfigError(f"network name {name!r} must be a plain file name such as mnist-cnn")
    if epochs < 1 or batch_size < 2:
        raise ConfigError(f"need epochs >= 1 and batch size >= 2, got {epochs} and {batch_size}")
    if not lr > 0:
        raise ConfigError(f"learning rate must be positive, got {lr}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of training images, got {limit}")


def _labelled_dataset(data: str) -> ImageDataset:
    from genlearn.data import get_dataset  # the registry imports every loader: only when training

    dataset = get_dataset(data)
    if not isinstance(dataset, ImageDataset):
        raise ConfigError(f"{data} is not an image dataset: a domain network needs images")
    if dataset.class_names is None or dataset.train_labels is None:
        raise ConfigError(
            f"{data} has no class labels, and a domain network is trained as a classifier: "
            f"use a labelled dataset (mnist, fashion-mnist, digits, folder:PATH with class "
            f"sub-folders)"
        )
    if len(dataset.class_names) < 2:
        raise ConfigError(f"{data} has a single class; a classifier needs at least two")
    if len(dataset.test_images) == 0 or dataset.test_labels is None:
        raise ConfigError(
            f"{data} has no labelled test split to measure the network's accuracy on: "
            f"use a dataset with one (mnist, fashion-mnist, digits)"
        )
    return dataset


def _training_split(
    dataset: ImageDataset, limit: int | None, batch_size: int
) -> tuple[Tensor, Tensor]:
    images, labels = dataset.train_images[:limit], dataset.train_labels[:limit]
    if len(images) < batch_size:
        raise ConfigError(
            f"{len(images)} training images are fewer than one batch ({batch_size}): "
            f"lower the batch size"
        )
    return images, labels


def _seeded_model(num_classes: int, seed: int) -> DomainCNN:
    # fork_rng: the initial weights follow `seed` without resetting the caller's global RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DomainCNN(num_classes=num_classes)


def _fit(
    model: DomainCNN,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    images: Tensor,
    labels: Tensor,
    seed: int,
    show_progress: bool,
) -> None:
    """Adam with a short warm-up and cosine decay; batches and shifts drawn from `seed`."""
    from genlearn.train.engine import epoch_order, learning_rate, training_progress

    device = next(model.parameters()).device
    steps_per_epoch = len(images) // config.batch_size
    total = steps_per_epoch * config.epochs
    shifts = torch.Generator().manual_seed(seed * 104_729 + 1)
    images, labels = images.to(device), labels.to(device)
    model.train()
    step = 0
    with training_progress(show_progress) as progress:
        task = progress.add_task("domain network", total=total, info="")
        for epoch in range(config.epochs):
            order = epoch_order(len(images), seed, epoch, 0, 1).to(device)
            losses, started = [], time.perf_counter()
            for index in range(steps_per_epoch):
                chosen = order[index * config.batch_size : (index + 1) * config.batch_size]
                x = random_shift(domain_preprocess(images[chosen]), shifts)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(config, step, total)
                losses.append(_train_step(model, optimizer, x, labels[chosen]))
                step += 1
                if step % 10 == 0 or index == steps_per_epoch - 1:  # .item() syncs a GPU
                    rate = (index + 1) * config.batch_size / (time.perf_counter() - started)
                    info = f"epoch {step / steps_per_epoch:4.2f}  loss {losses[-1].item():.3f}"
                    progress.update(task, info=f"{info}  {rate:6.0f} img/s")
                progress.update(task, completed=step)
            _end_epoch(epoch, config.epochs, torch.stack(losses), show_progress)
    model.eval()


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor) -> Tensor:
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _end_epoch(epoch: int, epochs: int, losses: Tensor, show: bool) -> None:
    if not torch.isfinite(losses).all():
        raise ConfigError("the training loss became non-finite: lower the learning rate")
    if show:
        console.print(f"epoch {epoch + 1}/{epochs}  train loss {losses.mean().item():.4f}")


def random_shift(x: Tensor, generator: torch.Generator, max_shift: int = MAX_SHIFT) -> Tensor:
    """Translate each image by its own random whole-pixel offset in [-max_shift, max_shift].

    Generated digits are rarely centred exactly as MNIST's are; training on shifted copies
    keeps the features from reacting to a one-pixel offset. Edges are replicated (black for
    MNIST-like data, whose borders are empty).
    """
    n, _, height, width = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(x.device)
    rows = offsets[0, :, None] + torch.arange(height, device=x.device)  # [N, H]
    cols = offsets[1, :, None] + torch.arange(width, device=x.device)  # [N, W]
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


@torch.no_grad()
def _accuracy(model: DomainCNN, images: Tensor, labels: Tensor, device: torch.device) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), EVAL_BATCH):
        x = domain_preprocess(images[start : start + EVAL_BATCH].to(device))
        predicted = model(x).argmax(1).cpu()
        correct += int((predicted == labels[start : start + EVAL_BATCH]).sum())
    return correct / len(images)


def _save(model: DomainCNN, info: DomainNetInfo, out_dir: Path) -> Path:
    path = out_dir / f"{info.name}.safetensors"
    state = {key: value.cpu() for key, value in model.state_dict().items()}
    save_tensors_atomic(path, state, asdict(info))
    write_json_atomic(out_dir / f"{info.name}.json", asdict(info))
    return path


# ---- loading --------------------------------------------------------------------------------
def shipped_path(name: str = "mnist-cnn") -> Path:
    """The weights file of a network shipped inside the package (it may not exist)."""
    return Path(__file__).resolve().parent / "pretrained" / f"{name}.safetensors"


def load_domain_network(
    path: Path | None = None, *, name: str = "mnist-cnn"
) -> tuple[DomainCNN, DomainNetInfo]:
    """A trained `DomainCNN` (in eval mode) and its info, from `path` or the shipped `name`.

    A missing, corrupt or mismatched file raises `WeightsError` saying how to recreate it.
    """
    path = Path(path) if path is not None else shipped_path(name)
    data = name.removesuffix("-cnn")
    if not path.is_file():
        raise _weights_error(path, "not found", data)
    try:
        tensors, metadata = load_tensors(path)
    except RunError:
        raise _weights_error(path, "not a readable safetensors file", data) from None
    info = _info_from(metadata)
    if info is None:
        raise _weights_error(path, "no domain-network metadata in it", data)
    model = DomainCNN(num_classes=info.num_classes, feature_dim=info.feature_dim)
    try:
        model.load_state_dict(tensors)
    except RuntimeError:
        raise _weights_error(path, "its tensors do not match the network", info.data) from None
    if not all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()):
        raise _weights_error(path, "it holds non-finite weights", info.data)
    return model.eval(), info


def _info_from(metadata: Any) -> DomainNetInfo | None:
    """The info in a file's metadata, or None when it is not a domain network's."""
    expected = {f.name for f in fields(DomainNetInfo)}
    if not isinstance(metadata, dict) or set(metadata) != expected:
        return None
    info = DomainNetInfo(**metadata)
    sizes = (info.num_classes, info.feature_dim)
    if not all(isinstance(size, int) for size in sizes) or min(sizes) < 1:
        return None
    return info


def _weights_error(path: Path, reason: str, data: str) -> WeightsError:
    command = TRAIN_COMMAND.format(data=data or "mnist")
    return WeightsError(f"domain network {path}: {reason}; (re)create it with `{command}`")
