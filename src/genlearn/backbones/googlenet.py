"""GoogLeNet (Szegedy et al. 2015, "Going Deeper with Convolutions"), the network of DeepDream.

The paper's Table 1 top to bottom: a convolutional stem, nine Inception modules (figure 2b:
1x1, 1x1->3x3, 1x1->"5x5" and pool->1x1 branches concatenated) on three grids, global average
pooling, dropout and a linear classifier. Two auxiliary classifiers (section 5) hang off
inception4a and inception4d in training only.

Module names and shapes follow torchvision's `googlenet`, including its two departures from
the paper: BatchNorm after every convolution, and a 3x3 (not 5x5) kernel in the third branch,
which is what its ImageNet weights were trained with. Those weights expect images scaled to
[-1, 1] (torchvision's `transform_input=True` does that from ImageNet-normalised input), so
`googlenet_preprocess` is simply 2x - 1.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlearn.backbones.layers import NamedLayers, Stage
from genlearn.backbones.weights import (
    fold_batchnorm_pairs,
    load_state_dict_file,
    load_weights,
    resolve_weights,
    torchvision_weights,
)

GOOGLENET = torchvision_weights(
    "googlenet",
    "googlenet-1378be20.pth",
    "torchvision's ImageNet GoogLeNet (Inception v1), 69.8% top-1, 50 MB",
)

# Table 1, one row per Inception module:
# (in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection)
MODULES = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **options) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False, **options)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Figure 2b: four parallel branches, concatenated along channels."""

    def __init__(
        self, in_ch: int, ch1: int, ch3_red: int, ch3: int, ch5_red: int, ch5: int, pool: int
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_ch, ch1, 1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_ch, ch3_red, 1), BasicConv2d(ch3_red, ch3, 3, padding=1)
        )
        self.branch3 = nn.Sequential(  # torchvision's weights use 3x3 here, not the paper's 5x5
            BasicConv2d(in_ch, ch5_red, 1), BasicConv2d(ch5_red, ch5, 3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True), BasicConv2d(in_ch, pool, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (section 5): only its keys matter here, to load the weights file."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, 1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, 4))
        x = F.dropout(F.relu(self.fc1(torch.flatten(x, 1))), 0.7, self.training)
        return self.fc2(x)


class GoogLeNet(NamedLayers, nn.Module):
    """GoogLeNet on images scaled to [-1, 1]; `features_at` reads its layers by name.

    Layers: conv1, pool1, conv2, conv3, pool2, inception3a, inception3b, pool3,
    inception4a..inception4e, pool4, inception5a, inception5b, logits.
    """

    display_name = "GoogLeNet"

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, widths in MODULES.items():
            setattr(self, name, Inception(*widths))
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(1024, num_classes)

    def stages(self) -> list[Stage]:
        return [
            ("conv1", self.conv1),
            ("pool1", self.maxpool1),
            ("conv2", self.conv2),
            ("conv3", self.conv3),
            ("pool2", self.maxpool2),
            ("inception3a", self.inception3a),
            ("inception3b", self.inception3b),
            ("pool3", self.maxpool3),
            *[(f"inception4{k}", getattr(self, f"inception4{k}")) for k in "abcde"],
            ("pool4", self.maxpool4),
            ("inception5a", self.inception5a),
            ("inception5b", self.inception5b),
            ("logits", self.classify),
        ]

    def classify(self, x: Tensor) -> Tensor:
        """Global average pool, dropout, linear: inception5b's map -> class logits."""
        return self.fc(self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.features_at(x, ["logits"])["logits"]

    def fold_batchnorm(self) -> GoogLeNet:
        """Merge every BatchNorm into its convolution for faster inference; returns self."""
        units = [m for m in self.modules() if isinstance(m, BasicConv2d)]
        fold_batchnorm_pairs((unit, "conv", "bn") for unit in units)
        return self.eval()


def googlenet(path: Path | None = None, *, fold_batchnorm: bool = True) -> GoogLeNet:
    """GoogLeNet with torchvision's ImageNet weights, eval mode, frozen parameters.

    torchvision's file includes the auxiliary classifiers; they are loaded, then dropped.
    """
    path = resolve_weights(GOOGLENET) if path is None else Path(path)
    model = GoogLeNet(aux_logits=True)
    load_weights(model, load_state_dict_file(path), str(path), "torchvision's GoogLeNet weights")
    model.aux1 = model.aux2 = None
    model.eval().requires_grad_(False)
    return model.fold_batchnorm() if fold_batchnorm else model


def googlenet_preprocess(images: Tensor) -> Tensor:
    """RGB images in [0, 1] -> [-1, 1], what torchvision's GoogLeNet weights expect."""
    return 2 * images - 1
