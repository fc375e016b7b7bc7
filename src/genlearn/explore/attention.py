"""Where a language model looks: its attention weights for one prompt, per layer and head.

Row i of a map is the distribution of position i's attention over positions <= i (the
causal mask leaves the upper triangle empty). Heads often specialise visibly: one attends
to the previous token, one to the start of the word or line, one to the same letter before.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from genlearn.errors import ConfigError
from genlearn.report.figures import figure_style, save_figure

MAX_TOKENS = 32  # beyond this the tick labels cannot be read
VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}


def token_labels(tokenizer, tokens: list[int]) -> list[str]:
    """Each token as short, visible text (spaces and line ends shown as symbols)."""
    labels = []
    for token in tokens:
        text = tokenizer.decode([token])
        # control characters and half a multi-byte character have no glyph: show a mark
        shown = (VISIBLE.get(c, c if c.isprintable() else "�") for c in text)
        labels.append("".join(shown) or "·")
    return labels


def attention_figure(
    model, tokenizer, prompt: str, folder: Path, name: str = "attention.png"
) -> Path:
    """A grid of heat maps, layers down and heads across, for the prompt's last MAX_TOKENS
    tokens (the model reads at most its context)."""
    tokens = tokenizer.encode(prompt)
    if not tokens:
        raise ConfigError("the prompt is empty: give some text to look at")
    tokens = tokens[-min(MAX_TOKENS, model.config.context) :]
    device = model.token_embedding.weight.device
    maps = model.attention_maps(torch.tensor([tokens], device=device))
    labels = token_labels(tokenizer, tokens)
    layers, heads = len(maps), maps[0].shape[1]
    size = max(2.4, 0.16 * len(tokens))
    with figure_style():
        # constrained layout keeps the title next to the maps (square axes leave slack)
        fig = Figure(figsize=(size * heads, size * layers), layout="constrained")
        axes = fig.subplots(layers, heads, squeeze=False)
        for layer, weights in enumerate(maps):
            for head in range(heads):
                ax = axes[layer][head]
                ax.imshow(weights[0, head].float().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
                ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=9)
                _tick_labels(ax, labels, show_y=head == 0, show_x=layer == layers - 1)
        fig.suptitle("attention: each row is where that token looks (earlier tokens only)")
        caption = f"prompt: {tokenizer.decode(tokens)!r}"
        return save_figure(fig, folder / name, caption=caption)


def _tick_labels(ax, labels: list[str], show_y: bool, show_x: bool) -> None:
    positions = range(len(labels))
    font = 8 if len(labels) <= 24 else 7
    ax.set_xticks(list(positions), labels if show_x else [], fontsize=font, rotation=90)
    ax.set_yticks(list(positions), labels if show_y else [], fontsize=font)
    ax.tick_params(length=0)
