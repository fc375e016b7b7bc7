"""The containers every loader returns, so models and reports see one shape of data.

Images are kept as uint8 tensors (not floats) on purpose: a 60,000-image dataset costs 47 MB
instead of 188 MB, and each model decides its own scaling ([0, 1], [-1, 1], logits...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


class DataWarning(UserWarning):
    """A data problem genlearn worked around (a skipped file, a converted colour mode...)."""


@dataclass(repr=False)
class ImageDataset:
    """Square images with an optional label per image.

    `train_labels`/`test_labels` are either int64 class indices ([N], with `class_names`)
    or float32 attributes ([N, K], with `attribute_names`), never both. A captioned dataset
    also carries one English caption per image (`train_captions`/`test_captions`).
    """

    name: str
    train_images: torch.Tensor
    test_images: torch.Tensor
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    class_names: list[str] | None
    attribute_names: list[str] | None
    source: str
    train_captions: list[str] | None = None
    test_captions: list[str] | None = None

    def __post_init__(self) -> None:
        # Loaders are written by several people; checking the contract here turns a subtle
        # shape bug in a new loader into an immediate, obvious failure.
        for split in ("train", "test"):
            images = getattr(self, f"{split}_images")
            labels = getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
                raise ValueError(
                    f"{split}_images must be uint8 [N, 1|3, H, W], got "
                    f"{images.dtype} {tuple(images.shape)}"
                )
            if images.shape[2] != images.shape[3]:
                raise ValueError(f"{split}_images must be square, got {tuple(images.shape)}")
            if labels is not None and labels.shape[0] != images.shape[0]:
                raise ValueError(
                    f"{split}_labels has {labels.shape[0]} rows for {images.shape[0]} images"
                )
            captions = getattr(self, f"{split}_captions")
            if captions is not None and len(captions) != images.shape[0]:
                raise ValueError(
                    f"{split}_captions has {len(captions)} captions for {images.shape[0]} images"
                )
        if self.train_images.shape[1:] != self.test_images.shape[1:]:
            raise ValueError("train and test images must have the same [C, H, W]")

    @property
    def channels(self) -> int:
        """1 for grey, 3 for RGB."""
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> int:
        """Height (= width) of every image in pixels."""
        return int(self.train_images.shape[2])

    @property
    def num_classes(self) -> int | None:
        """Number of classes when labels are class indices, else None."""
        return len(self.class_names) if self.class_names is not None else None

    def __repr__(self) -> str:
        # The default dataclass repr would print whole tensors.
        labels = (
            f"{self.num_classes} classes"
            if self.class_names is not None
            else f"{len(self.attribute_names)} attributes"
            if self.attribute_names
            else "unlabelled"
        )
        return (
            f"ImageDataset({self.name!r}, train={len(self.train_images)}, "
            f"test={len(self.test_images)}, {self.channels}x{self.image_size}x"
            f"{self.image_size}, {labels})"
        )


@dataclass(repr=False)
class PointDataset:
    """2-D points for density-fitting demos; labels (when present) are int64 component ids."""

    name: str
    train_points: torch.Tensor
    test_points: torch.Tensor
    train_labels: torch.Tensor | None
    test_labels: torch.Tensor | None
    source: str
    train_captions: list[str] | None = None
    test_captions: list[str] | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            points = getattr(self, f"{split}_points")
            if points.dtype != torch.float32 or points.ndim != 2 or points.shape[1] != 2:
                raise ValueError(
                    f"{split}_points must be float32 [N, 2], got "
                    f"{points.dtype} {tuple(points.shape)}"
                )

    def __repr__(self) -> str:
        return (
            f"PointDataset({self.name!r}, train={len(self.train_points)}, "
            f"test={len(self.test_points)})"
        )


@dataclass(frozen=True)
class DatasetEntry:
    """One row of `genlearn datasets`: what a dataset is and whether it can be loaded now."""

    name: str
    kind: str
    description: str
    status: str
