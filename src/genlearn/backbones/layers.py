"""Named layers: read any backbone's activations by name, running only as far as needed.

DeepDream and style transfer ask a network for the activations of a few named layers
("mixed3", "conv4_2", "logits"). Each backbone lists its stages in forward order as
(name, function) pairs; `features_at` runs them one after another, keeps the ones asked
for and stops after the deepest, so the layers past it cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor

from genlearn.errors import ConfigError

Stage = tuple[str, Callable[[Tensor], Tensor]]


class NamedLayers:
    """Mixin for an `nn.Module` whose forward pass is a chain of named stages."""

    display_name = "this network"
    layer_aliases: dict[str, str] = {}  # other spellings, e.g. torchvision's "Mixed_6b"

    def stages(self) -> list[Stage]:
        raise NotImplementedError

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self.stages()]

    def canonical_layer(self, layer: str) -> str:
        """The stage name of `layer`, or a ConfigError listing the names there are."""
        layer = self.layer_aliases.get(layer, layer)
        names = self.layer_names
        if layer not in names:
            raise ConfigError(
                f"{self.display_name} has no layer {layer!r}: its layers are "
                f"{summarise_names(names)} (genlearn backbones NAME lists them)"
            )
        return layer

    def features_at(self, x: Tensor, layers: Iterable[str]) -> dict[str, Tensor]:
        """Activations of the named layers for preprocessed images `x`, keyed as asked."""
        asked = {layer: self.canonical_layer(layer) for layer in layers}
        wanted = set(asked.values())
        found: dict[str, Tensor] = {}
        for name, stage in self.stages():
            x = stage(x)
            if name in wanted:
                found[name] = x
                if len(found) == len(wanted):
                    break  # nothing deeper is needed
        return {layer: found[name] for layer, name in asked.items()}


def summarise_names(names: list[str]) -> str:
    """'a, b, c, ..., y, z' for long lists, so an error stays on one line."""
    return ", ".join(names) if len(names) <= 14 else ", ".join([*names[:6], "...", *names[-6:]])
