"""The 1000 ImageNet (ILSVRC-2012) class names, in the order classifier outputs use.

`imagenet_classes.txt` holds one name per line: the first WordNet lemma of each class's
synset, as torchvision lists them (BSD-3-Clause), so index 285 is "Egyptian cat" and 954
"banana" for every ImageNet classifier here.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from genlearn.errors import ConfigError

NUM_CLASSES = 1000


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The class names, index i naming logit i."""
    text = files("genlearn.backbones").joinpath("imagenet_classes.txt").read_text("utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == NUM_CLASSES, f"imagenet_classes.txt has {len(names)} names"
    return names


def imagenet_class(query: str | int) -> int:
    """The index of a class given by number ("954"), name ("banana") or unique part of a name.

    Matching ignores case, spaces, hyphens and underscores ("measuring_cup" finds
    "measuring cup"). An unknown or ambiguous name is a ConfigError that suggests names.
    """
    names = imagenet_classes()
    text = str(query).strip()
    if text.isdigit():
        index = int(text)
        if index < NUM_CLASSES:
            return index
        raise ConfigError(f"ImageNet class {index} does not exist: use 0 to {NUM_CLASSES - 1}")
    key = _key(text)
    exact = [i for i, name in enumerate(names) if _key(name) == key]
    if exact:
        return exact[0]
    partial = [i for i, name in enumerate(names) if key and key in _key(name)]
    if len(partial) == 1:
        return partial[0]
    if partial:
        listed = ", ".join(f"{names[i]!r}" for i in partial[:6])
        more = f" and {len(partial) - 6} more" if len(partial) > 6 else ""
        raise ConfigError(f"ImageNet class {text!r} is ambiguous: {listed}{more}; say which")
    raise ConfigError(
        f"no ImageNet class is called {text!r}: give a name such as 'banana', "
        f"'hartebeest' or 'starfish', or a number from 0 to {NUM_CLASSES - 1}"
    )


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())
