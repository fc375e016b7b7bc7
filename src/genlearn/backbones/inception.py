"""Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision").

The network reads top to bottom like the paper's Table 1: a plain convolutional stem (section 6),
three 35x35 blocks with factorised 5x5 convolutions (figure 5, `InceptionA`), a grid reduction
(section 7, `InceptionB`), four 17x17 blocks with asymmetric 1x7/7x1 convolutions (figure 6,
`InceptionC`), another reduction (`InceptionD`), two 8x8 blocks with expanded filter banks
(figure 7, `InceptionE`), then global average pooling and a linear classifier. The optional
auxiliary classifier (section 4) hangs off the last 17x17 block and only runs in training.

Module names follow torchvision's, so its state dicts load key for key. Two variants exist:

- `fid_variant=True` (the default) reproduces the 2015 TensorFlow graph whose pool features
  define the Frechet Inception Distance (Heusel et al. 2017), as ported by pytorch-fid: 1008
  classes, average pools that ignore padding, and a max pool in the last block's pool branch.
- `fid_variant=False` is torchvision's ImageNet model (1000 classes, with `aux_logits=True`).

Both take images scaled to [-1, 1] (`fid_preprocess`); torchvision's `transform_input=True`
performs that same scaling from ImageNet-normalised input, so here it is not needed.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genlearn.backbones.layers import NamedLayers, Stage
from genlearn.backbones.weights import (
    WeightsSpec,
    fold_batchnorm_pairs,
    load_state_dict_file,
    load_weights,
    resolve_weights,
)
from genlearn.errors import DataError

FID_INCEPTION = WeightsSpec(
    name="fid-inception",
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    sha256_prefix="6726825d",
    description="Inception-v3 of the 2015 TensorFlow FID graph, ported by pytorch-fid (95.6 MB)",
)
TORCHVISION_INCEPTION = WeightsSpec(
    name="torchvision-inception",
    filename="inception_v3_google-0cc3c7bd.pth",
    url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    sha256="0cc3c7bd75056d25e46cba549dc184522069b81e9787eff6df84f397bd52a5ef",
    sha256_prefix="0cc3c7bd",
    description="torchvision's ImageNet Inception-v3 with auxiliary classifier (109 MB)",
)
# the eleven concatenation blocks in forward order; Keras (and DeepDream recipes) call them
# mixed0..mixed10
MIXED_BLOCKS = (
    "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
    "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
)  # fmt: skip
FID_IMAGE_SIZE = 299
FEATURE_DIM = 2048


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (TensorFlow's epsilon 0.001), ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        **conv_options: int | tuple[int, int],
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, bias=False, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def cpu_channels_last(x: torch.Tensor) -> torch.Tensor:
    """On CPU, the channels-last layout: oneDNN's convolutions run it markedly faster."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def _avg_pool(x: torch.Tensor, include_pad: bool) -> torch.Tensor:
    """The 3x3 stride-1 average pool of the pool branches.

    TensorFlow's 'SAME' average pool divides by the number of real pixels under the window;
    torchvision's by 9 everywhere. The difference is confined to the border but changes FID.
    """
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=include_pad)


class InceptionA(nn.Module):
    """35x35 block (figure 5): the 5x5 convolution is factorised into two 3x3s on one branch."""

    def __init__(self, in_channels: int, pool_features: int, include_pad: bool) -> None:
        super().__init__()
        self.include_pad = include_pad
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_avg_pool(x, self.include_pad))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 grid reduction (section 7, figure 10): strided convolutions beside a pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = F.max_pool2d(x, 3, stride=2)
        return torch.cat([self.branch3x3(x), branch3x3dbl, branch_pool], 1)


class InceptionC(nn.Module):
    """17x17 block (figure 6): 7x7 convolutions factorised into 1x7 and 7x1 (section 3.2)."""

    def __init__(self, in_channels: int, channels_7x7: int, include_pad: bool) -> None:
        super().__init__()
        self.include_pad = include_pad
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(_avg_pool(x, self.include_pad))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 grid reduction, again strided convolutions beside a max pool."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        branch7x7x3 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(branch7x7x3)))
        branch_pool = F.max_pool2d(x, 3, stride=2)
        return torch.cat([branch3x3, branch7x7x3, branch_pool], 1)


class InceptionE(nn.Module):
    """8x8 block (figure 7): 3x3 convolutions split into parallel 1x3 and 3x1 outputs.

    `pool` picks the pool branch: "avg" (torchvision), "avg_no_pad" (TF, first FID block) or
    "max" (the FID graph's last block, a quirk of the 2015 TensorFlow release).
    """

    def __init__(self, in_channels: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat(
            [self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1
        )
        if self.pool == "max":
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = _avg_pool(x, include_pad=self.pool == "avg")
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)], 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid (section 4); acts as a regulariser in training."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, stride=3)))  # 17x17 -> 5x5 -> 1x1
        return self.fc(_global_pool(x))


class InceptionV3(NamedLayers, nn.Module):
    """Inception-v3 on preprocessed [N, 3, 299, 299] images (see `fid_preprocess`).

    `forward` returns logits; `forward_features` returns (pool features [N, 2048], logits).
    With `aux_logits=True`, training-mode `forward` returns (logits, auxiliary logits).
    On CPU the activations are kept channels-last, which oneDNN convolves faster.

    `features_at` reads layers by name: the stem's convolutions and pools, then the eleven
    concatenation blocks by their Keras names `mixed0` (= torchvision's `Mixed_5b`) to
    `mixed10` (`Mixed_7c`), which is how DeepDream recipes name them, then `logits`.
    """

    display_name = "InceptionV3"
    layer_aliases = dict(zip(MIXED_BLOCKS, [f"mixed{i}" for i in range(11)], strict=True))

    def __init__(
        self, num_classes: int = 1008, fid_variant: bool = True, aux_logits: bool = False
    ) -> None:
        super().__init__()
        count_pad = not fid_variant  # torchvision counts padding in averages; TensorFlow not
        # Stem (Table 1): 299 -> 149 -> 147 -> 147 -> pool 73 -> 73 -> 71 -> pool 35.
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        # 35x35 grid.
        self.Mixed_5b = InceptionA(192, pool_features=32, include_pad=count_pad)
        self.Mixed_5c = InceptionA(256, pool_features=64, include_pad=count_pad)
        self.Mixed_5d = InceptionA(288, pool_features=64, include_pad=count_pad)
        self.Mixed_6a = InceptionB(288)
        # 17x17 grid.
        self.Mixed_6b = InceptionC(768, channels_7x7=128, include_pad=count_pad)
        self.Mixed_6c = InceptionC(768, channels_7x7=160, include_pad=count_pad)
        self.Mixed_6d = InceptionC(768, channels_7x7=160, include_pad=count_pad)
        self.Mixed_6e = InceptionC(768, channels_7x7=192, include_pad=count_pad)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        # 8x8 grid.
        self.Mixed_7b = InceptionE(1280, pool="avg_no_pad" if fid_variant else "avg")
        self.Mixed_7c = InceptionE(2048, pool="max" if fid_variant else "avg")
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(FEATURE_DIM, num_classes)

    def _trunk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Everything up to the last 8x8 block; also the auxiliary logits when training."""
        x = cpu_channels_last(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        x = self.Mixed_6a(self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x))))
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        return x, aux

    def stages(self) -> list[Stage]:
        stem = [
            ("Conv2d_1a_3x3", lambda x: self.Conv2d_1a_3x3(cpu_channels_last(x))),
            ("Conv2d_2a_3x3", self.Conv2d_2a_3x3),
            ("Conv2d_2b_3x3", self.Conv2d_2b_3x3),
            ("maxpool1", lambda x: F.max_pool2d(x, 3, stride=2)),
            ("Conv2d_3b_1x1", self.Conv2d_3b_1x1),
            ("Conv2d_4a_3x3", self.Conv2d_4a_3x3),
            ("maxpool2", lambda x: F.max_pool2d(x, 3, stride=2)),
        ]
        mixed = [(self.layer_aliases[name], getattr(self, name)) for name in MIXED_BLOCKS]
        logits = ("logits", lambda x: self.fc(self.dropout(_global_pool(x))))
        return [*stem, *mixed, logits]

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pool features [N, 2048], logits [N, num_classes]); FID uses the former."""
        features = _global_pool(self._trunk(x)[0])
        return features, self.fc(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x, aux = self._trunk(x)
        logits = self.fc(self.dropout(_global_pool(x)))
        return logits if aux is None else (logits, aux)

    def fold_batchnorm(self) -> InceptionV3:
        """Merge every BatchNorm into its convolution for faster inference; returns self.

        One-way and for eval mode only: the state dict loses its `bn` keys afterwards.
        """
        units = [m for m in self.modules() if isinstance(m, BasicConv2d)]
        fold_batchnorm_pairs((unit, "conv", "bn") for unit in units)
        return self.eval()


def _global_pool(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, C]: the average over all positions."""
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def fid_inception_v3(path: Path | None = None, *, fold_batchnorm: bool = True) -> InceptionV3:
    """The FID Inception-v3 with pytorch-fid's weights, in eval mode with frozen parameters.

    The weights come from `path` or are resolved as `genlearn.backbones.weights` describes.
    BatchNorm is folded into the convolutions unless `fold_batchnorm=False` (e.g. to read the
    model's state dict); the outputs are the same up to float rounding. Gradients still flow
    to the input, e.g. for a feature-matching loss.
    """
    path = resolve_weights(FID_INCEPTION) if path is None else Path(path)
    model = InceptionV3(num_classes=1008, fid_variant=True, aux_logits=False)
    load_weights(model, load_state_dict_file(path), str(path), "the FID Inception weights")
    model.eval().requires_grad_(False)
    return model.fold_batchnorm() if fold_batchnorm else model


def imagenet_inception_v3(path: Path | None = None, *, fold_batchnorm: bool = True) -> InceptionV3:
    """torchvision's ImageNet Inception-v3 (1000 classes), eval mode, frozen parameters.

    Its file includes the auxiliary classifier; it is loaded, then dropped. Inputs are
    images scaled to [-1, 1] (`inception_preprocess`), any size from about 75 px up.
    """
    path = resolve_weights(TORCHVISION_INCEPTION) if path is None else Path(path)
    model = InceptionV3(num_classes=1000, fid_variant=False, aux_logits=True)
    load_weights(model, load_state_dict_file(path), str(path), "torchvision's Inception-v3 weights")
    model.AuxLogits = None
    model.eval().requires_grad_(False)
    return model.fold_batchnorm() if fold_batchnorm else model


def inception_preprocess(images: torch.Tensor) -> torch.Tensor:
    """RGB images in [0, 1] -> [-1, 1], what both Inception-v3 weight files expect."""
    return 2 * images - 1


def fid_preprocess(images: torch.Tensor) -> torch.Tensor:
    """Images -> the FID Inception's input: the standard pytorch-fid preprocessing.

    Accepts uint8 [N, C, H, W] in 0..255 or floats in [0, 1], with C = 1 (grey, repeated to
    three channels) or 3. Resizes to 299x299 with bilinear interpolation (`align_corners=False`,
    no antialiasing, as pytorch-fid does), then scales to [-1, 1].
    """
    x = as_unit_rgb(images, "fid_preprocess")
    if x.shape[-2:] != (FID_IMAGE_SIZE, FID_IMAGE_SIZE):
        size = (FID_IMAGE_SIZE, FID_IMAGE_SIZE)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return 2 * x - 1


def as_unit_rgb(images: torch.Tensor, caller: str) -> torch.Tensor:
    """uint8 or [0, 1] float images, grey or RGB -> float32 RGB in [0, 1]; DataError otherwise."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise DataError(
            f"{caller} needs images shaped [N, C, H, W] with C = 1 or 3, got {list(images.shape)}"
        )
    if images.dtype == torch.uint8:
        x = images.float() / 255
    elif images.is_floating_point():
        x = images.float()
        low, high = (float(v) for v in torch.aminmax(x)) if x.numel() else (0.0, 1.0)
        if low < -1e-3 or high > 1 + 1e-3:  # a common slip: passing tanh outputs in [-1, 1]
            raise DataError(
                f"{caller} needs float images in [0, 1], got values in [{low:.3g}, {high:.3g}]: "
                f"map [-1, 1] images with (x + 1) / 2, or pass uint8"
            )
    else:
        raise DataError(f"{caller} needs uint8 or float images, got {images.dtype}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
