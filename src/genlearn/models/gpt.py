"""A decoder-only transformer that writes text (Radford et al. 2018/2019; Vaswani et al. 2017).

Read top to bottom:

1. Tokens become vectors: a learned token embedding plus a position signal, either a learned
   position embedding (GPT-2) or rotary embeddings that rotate queries and keys by an angle
   proportional to the position (Su et al. 2021, Eq. 34), so attention sees relative offsets.
2. A stack of pre-norm blocks (GPT-2, section 2.3): x + attention(norm(x)), then
   x + MLP(norm(x)). Attention is causal: position t reads positions <= t only, which is what
   lets one forward pass train every next-token prediction of a sequence at once.
   Scaled dot-product attention, softmax(QK^T / sqrt(d)) V (Vaswani et al. Eq. 1), runs in
   PyTorch's fused `scaled_dot_product_attention`.
3. A final norm and a linear read-out to logits over the vocabulary, its weight shared with
   the token embedding (weight tying: Press & Wolf 2017).
4. The loss is the cross-entropy of each next token: -log p(x_{t+1} | x_<=t).

Generation keeps each layer's keys and values (the KV cache): a new token attends to the
stored ones, so n new tokens cost n single-position forward passes instead of n passes over
the whole growing text. Sampling controls (temperature, top-k, top-p, repetition penalty)
are small functions on the logits, below the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlearn.errors import ConfigError


@dataclass
class GPTConfig:
    vocab_size: int = 65
    context: int = 64  # the longest text the model reads at once (tokens)
    layers: int = 3
    heads: int = 4
    width: int = 128  # the embedding size; each head gets width / heads
    dropout: float = 0.0
    # "rotary" (Su et al. 2021) or "learned" (GPT-2); on tiny Shakespeare rotary reaches a
    # validation loss 0.03 lower in the same steps (benchmarks/gpt_shakespeare_vs_nanogpt.py)
    positions: str = "rotary"
    bias: bool = False  # biases in linear layers and norms (GPT-2 had them; they do not help)
    tie_weights: bool = True
    activation: str = "gelu"  # "gelu", or "gelu_tanh": GPT-2's tanh approximation

    def validate(self) -> None:
        if self.width % self.heads:
            raise ConfigError(
                f"the width ({self.width}) must be a multiple of the number of heads ({self.heads})"
            )
        if self.positions not in ("learned", "rotary"):
            raise ConfigError(f"positions must be 'learned' or 'rotary', got {self.positions!r}")
        if self.positions == "rotary" and (self.width // self.heads) % 2:
            raise ConfigError("rotary positions need an even head size (width / heads)")
        for name in ("vocab_size", "context", "layers", "heads", "width"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.activation not in ("gelu", "gelu_tanh"):
            raise ConfigError(f"activation must be gelu or gelu_tanh, got {self.activation!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


# ---- 1. positions ---------------------------------------------------------------------------
Rotary = tuple[Tensor, Tensor]  # cos and sin of each position's angles, (batch, 1, length, d)


def rotary_angles(positions: Tensor, head_size: int, base: float = 10000.0) -> Rotary:
    """cos and sin of theta_{p,i} = p * base^(-2i/d) (Su et al. Eq. 15) for each position p
    (batch, length) and pair i, computed once per forward pass and shared by every layer.
    Pair i is (x_i, x_{i+d/2}): the two halves of a head, as GPT-NeoX and LLaMA pair them."""
    exponents = torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32)
    angles = positions.float()[..., None] * base ** (-exponents / head_size)
    angles = torch.cat((angles, angles), dim=-1)[:, None]  # both halves of a pair, one head axis
    return angles.cos(), angles.sin()


def rotate(x: Tensor, rotary: Rotary) -> Tensor:
    """Rotate each pair (x_i, x_{i+d/2}) of x (batch, heads, length, d) by its angle:
    (a, b) -> (a cos - b sin, a sin + b cos) (Su et al. Eq. 34)."""
    cos, sin = rotary
    first, second = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat((-second, first), dim=-1) * sin.to(x.dtype)


# ---- 2. the blocks --------------------------------------------------------------------------
class KeyValueCache:
    """One layer's keys and values so far, (batch, heads, length, head size), grown in place."""

    def __init__(self, batch: int, heads: int, capacity: int, head_size: int, like: Tensor):
        shape = (batch, heads, capacity, head_size)
        self.keys = like.new_zeros(shape)
        self.values = like.new_zeros(shape)
        self.length = 0

    def append(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        end = self.length + keys.shape[2]
        self.keys[:, :, self.length : end] = keys
        self.values[:, :, self.length : end] = values
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.heads, self.head_size = config.heads, config.width // config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width, bias=config.bias)
        self.out = nn.Linear(config.width, config.width, bias=config.bias)
        self.dropout = config.dropout

    def forward(
        self,
        x: Tensor,
        rotary: Rotary | None = None,
        mask: Tensor | None = None,
        cache: KeyValueCache | None = None,
    ) -> Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        # (batch, length, width) -> (batch, heads, length, head size)
        q, k, v = (
            t.view(batch, length, self.heads, self.head_size).transpose(1, 2) for t in (q, k, v)
        )
        if rotary is not None:  # rotary positions turn queries and keys, not the values
            q, k = rotate(q, rotary), rotate(k, rotary)
        if cache is not None:
            k, v = cache.append(k, v)
        # no mask given means plain causal attention over a fresh sequence
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=mask is None,
        )
        return self.out(y.transpose(1, 2).reshape(batch, length, width))

    @torch.no_grad()
    def weights(self, x: Tensor, rotary: Rotary | None = None) -> Tensor:
        """The attention pattern softmax(QK^T / sqrt(d)) with the causal mask, (batch, heads,
        length, length): what the fused kernel computes but does not return."""
        batch, length, width = x.shape
        q, k, _ = self.qkv(x).split(width, dim=2)
        q, k = (t.view(batch, length, self.heads, self.head_size).transpose(1, 2) for t in (q, k))
        if rotary is not None:
            q, k = rotate(q, rotary), rotate(k, rotary)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        return scores.masked_fill(~causal, float("-inf")).softmax(-1)


class MLP(nn.Module):
    """Position-wise feed-forward: width -> 4 width -> width with GELU (GPT-2)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.up = nn.Linear(config.width, 4 * config.width, bias=config.bias)
        self.down = nn.Linear(4 * config.width, config.width, bias=config.bias)
        self.approximate = "tanh" if config.activation == "gelu_tanh" else "none"

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x), approximate=self.approximate))


class Block(nn.Module):
    """Pre-norm residual block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.norm_attention = nn.LayerNorm(config.width, bias=config.bias)
        self.attention = CausalSelfAttention(config)
        self.norm_mlp = nn.LayerNorm(config.width, bias=config.bias)
        self.mlp = MLP(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, rotary=None, mask=None, cache=None) -> Tensor:
        x = x + self.dropout(self.attention(self.norm_attention(x), rotary, mask, cache))
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


# ---- 3. the model ---------------------------------------------------------------------------
class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = (
            nn.Embedding(config.context, config.width) if config.positions == "learned" else None
        )
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.width, bias=config.bias)
        self.read_out = nn.Linear(config.width, config.vocab_size, bias=False)
        if config.tie_weights:
            self.read_out.weight = self.token_embedding.weight
        self.apply(self._initialise)
        # GPT-2 (section 2.3): residual projections scaled by 1/sqrt(number of residual
        # additions), so the residual stream's variance does not grow with depth
        for name, parameter in self.named_parameters():
            if name.endswith(("attention.out.weight", "mlp.down.weight")):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.layers))

    @staticmethod
    def _initialise(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def parameter_count(self) -> int:
        """Parameters, the tied read-out counted once."""
        return sum(p.numel() for p in self.parameters())

    def logits(
        self,
        tokens: Tensor,
        positions: Tensor | None = None,
        mask: Tensor | None = None,
        caches: list[KeyValueCache] | None = None,
    ) -> Tensor:
        """Next-token logits (batch, length, vocab) for tokens (batch, length).

        `positions` (batch, length) default to 0..length-1; `mask` (batch, 1, length, keys),
        True where attention is allowed, defaults to causal.
        """
        batch, length = tokens.shape
        if positions is None:
            if length > self.config.context:
                raise ConfigError(
                    f"this model reads at most {self.config.context} tokens at once, got {length}"
                )
            positions = torch.arange(length, device=tokens.device).expand(batch, length)
        x, rotary = self._embed(tokens, positions)
        x = self.dropout(x)
        for index, block in enumerate(self.blocks):
            x = block(x, rotary, mask, None if caches is None else caches[index])
        return self.read_out(self.norm(x))

    def _embed(self, tokens: Tensor, positions: Tensor) -> tuple[Tensor, Rotary | None]:
        """Token vectors, with learned position vectors added, or rotary angles for attention."""
        x = self.token_embedding(tokens)
        if self.position_embedding is not None:
            return x + self.position_embedding(positions), None
        return x, rotary_angles(positions, self.config.width // self.config.heads)

    def forward(self, windows: Tensor, **_: object) -> dict[str, Tensor]:
        """The training loss on token windows (batch, context + 1): each position predicts
        the token after it (the engine's contract: a dict with "loss")."""
        inputs, targets = windows[:, :-1], windows[:, 1:]
        logits = self.logits(inputs)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return {"loss": loss}

    @torch.no_grad()
    def attention_maps(self, tokens: Tensor) -> list[Tensor]:
        """Each layer's attention weights (batch, heads, length, length) for `tokens`."""
        positions = torch.arange(tokens.shape[1], device=tokens.device).expand_as(tokens)
        x, rotary = self._embed(tokens, positions)
        maps = []
        for block in self.blocks:
            maps.append(block.attention.weights(block.norm_attention(x), rotary))
            x = block(x, rotary)
        return maps

    def configure_optimizer(self, lr: float, weight_decay: float) -> torch.optim.AdamW:
        """AdamW with decoupled weight decay (Loshchilov & Hutter 2019) on the matrices and
        embeddings only: decaying norms' gains and biases pulls them towards 0 for nothing.
        beta2 = 0.99: small models on small data take large, noisy steps (nanoGPT's choice)."""
        matrices = [p for p in self.parameters() if p.dim() >= 2]
        others = [p for p in self.parameters() if p.dim() < 2]
        groups = [
            {"params": matrices, "weight_decay": weight_decay},
            {"params": others, "weight_decay": 0.0},
        ]
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), fused=True)
        except (RuntimeError, TypeError):
            return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))

    # ---- generation ---------------------------------------------------------------------
    def new_caches(self, batch: int, capacity: int, like: Tensor) -> list[KeyValueCache]:
        head_size = self.config.width // self.config.heads
        return [
            KeyValueCache(batch, self.config.heads, capacity, head_size, like) for _ in self.blocks
        ]

    @torch.no_grad()
    def stream(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        choose: Callable[[Tensor, Tensor], Tensor],
        *,
        use_cache: bool = True,
    ) -> Iterator[Tensor]:
        """Yield each step's new tokens (batch,) for prompts of any lengths.

        `choose(logits, history)` picks the next tokens from the last position's logits
        (batch, vocab), given the tokens so far (batch, length): see `Sampler`.
        Prompts are left-padded to one length; padding is masked out of attention and the
        positions start at each prompt's first real token, so each row is generated as if
        alone. With the cache each step runs the new tokens only; without it, the whole text.
        A prompt longer than the context is cut to its last `context` tokens; when the text
        outgrows the context, the cache is refilled from its last half-context.
        """
        if any(len(p) == 0 for p in prompts):
            raise ConfigError("every prompt needs at least one token")
        device = self.token_embedding.weight.device
        longest = max(map(len, prompts))
        padding = torch.tensor([longest - len(p) for p in prompts], device=device)
        # padding repeats each prompt's first token: masked out of attention anyway, and the
        # set of tokens a row has seen (the repetition penalty's) stays its own
        rows = [[p[0]] * (longest - len(p)) + list(p) for p in prompts]
        history = torch.tensor(rows, device=device)
        context = self.config.context
        caches, fed = None, 0  # fed: how many history tokens the caches hold
        for _ in range(max_new_tokens):
            if history.shape[1] - padding.min() > context:  # keep the last part that fits
                # refilling a cache keeps half a context, so it then grows for a while
                keep = context // 2 if use_cache and caches is not None else context
                history, padding = (
                    history[:, -keep:],
                    (padding - (history.shape[1] - keep)).clamp(min=0),
                )
                caches, fed = None, 0
            if not use_cache or caches is None:
                capacity = context if use_cache else history.shape[1]
                caches = (
                    self.new_caches(len(history), capacity, self.token_embedding.weight)
                    if use_cache
                    else None
                )
                fed = 0
            new = history[:, fed:]
            total = history.shape[1]
            key_index = torch.arange(total, device=device)
            query_index = key_index[fed:]
            positions = (query_index[None, :] - padding[:, None]).clamp(min=0)
            keys, queries = key_index[None, None, :], query_index[None, :, None]
            allowed = (keys <= queries) & (keys >= padding[:, None, None])
            # a padding position attends to itself only: finite values nobody reads (a row
            # with every key masked would give NaN, and 0 * NaN would leak into real rows)
            allowed |= keys == queries
            logits = self.logits(new, positions, allowed[:, None], caches)[:, -1]
            fed = total if use_cache else 0
            next_tokens = choose(logits.float(), history)
            history = torch.cat([history, next_tokens[:, None]], dim=1)
            yield next_tokens


# ---- 4. sampling controls -------------------------------------------------------------------
def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row, the rest -inf (Fan et al. 2018)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus sampling (Holtzman et al. 2020): keep the smallest set of most likely tokens
    whose probabilities sum to at least p."""
    if p >= 1.0:
        return logits
    ordered, order = torch.sort(logits, dim=-1, descending=True)
    cumulative = ordered.softmax(-1).cumsum(-1)
    # drop a token when the ones before it already reach p (the first is always kept)
    drop_sorted = (cumulative - ordered.softmax(-1)) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def repetition_penalty(logits: Tensor, history: Tensor, penalty: float) -> Tensor:
    """Make tokens already in the text less likely (Keskar et al. 2019, section 4.1): their
    logits are divided by `penalty` when positive and multiplied by it when negative."""
    if penalty == 1.0:
        return logits
    seen = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, history, True)
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


@dataclass
class Sampler:
    """How the next token is picked from the logits: greedy at temperature 0."""

    temperature: float = 1.0
    top_k: int = 0  # 0: all tokens
    top_p: float = 1.0  # 1: all tokens
    repetition_penalty: float = 1.0
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"temperature must be 0 (greedy) or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"top-k must be 0 (off) or more, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ConfigError(
                f"the repetition penalty must be positive (1: none), got {self.repetition_penalty}"
            )

    def __call__(self, logits: Tensor, history: Tensor) -> Tensor:
        logits = repetition_penalty(logits, history, self.repetition_penalty)
        if self.temperature == 0:
            return logits.argmax(-1)
        logits = top_p_filter(top_k_filter(logits / self.temperature, self.top_k), self.top_p)
        probabilities = logits.softmax(-1)
        return torch.multinomial(probabilities, 1, generator=self.generator).squeeze(-1)


# ---- 5. GPT-2 weights from a Hugging Face folder --------------------------------------------
# Hugging Face's GPT-2 stores its linear layers as Conv1D, weight (in, out): transposed here.
GPT2_LAYER_KEYS = {
    "ln_1.weight": ("norm_attention.weight", False),
    "ln_1.bias": ("norm_attention.bias", False),
    "attn.c_attn.weight": ("attention.qkv.weight", True),
    "attn.c_attn.bias": ("attention.qkv.bias", False),
    "attn.c_proj.weight": ("attention.out.weight", True),
    "attn.c_proj.bias": ("attention.out.bias", False),
    "ln_2.weight": ("norm_mlp.weight", False),
    "ln_2.bias": ("norm_mlp.bias", False),
    "mlp.c_fc.weight": ("mlp.up.weight", True),
    "mlp.c_fc.bias": ("mlp.up.bias", False),
    "mlp.c_proj.weight": ("mlp.down.weight", True),
    "mlp.c_proj.bias": ("mlp.down.bias", False),
}
GPT2_TOP_KEYS = {
    "wte.weight": "token_embedding.weight",
    "wpe.weight": "position_embedding.weight",
    "ln_f.weight": "norm.weight",
    "ln_f.bias": "norm.bias",
}
GPT2_IGNORED = ("attn.bias", "attn.masked_bias")  # old files' stored causal masks


def gpt2_config(hf_config: dict) -> GPTConfig:
    """GPTConfig of a Hugging Face GPT-2 config.json (biases, tanh GELU, learned positions)."""
    try:
        return GPTConfig(
            vocab_size=int(hf_config["vocab_size"]),
            context=int(hf_config.get("n_positions", hf_config.get("n_ctx", 1024))),
            layers=int(hf_config["n_layer"]),
            heads=int(hf_config["n_head"]),
            width=int(hf_config["n_embd"]),
            positions="learned",
            bias=True,
            activation="gelu_tanh",
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(
            f"not a GPT-2 config.json: {error!s} is missing or not a number (n_layer, n_head, "
            "n_embd, vocab_size and n_positions are needed)"
        ) from None


def gpt2_state_dict(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """genlearn's names (and Linear layouts) for a GPT-2 state dict; every key must map."""
    state, unknown = {}, []
    for name, value in tensors.items():
        key = name.removeprefix("transformer.")
        parts = key.split(".", 2)
        if (len(parts) == 3 and parts[2] in GPT2_IGNORED) or key == "lm_head.weight":
            continue  # stored masks; the read-out tied to the embedding
        if key in GPT2_TOP_KEYS:
            state[GPT2_TOP_KEYS[key]] = value
            continue
        parts = key.split(".", 2)
        if (
            len(parts) == 3
            and parts[0] == "h"
            and parts[1].isdigit()
            and parts[2] in GPT2_LAYER_KEYS
        ):
            target, transpose = GPT2_LAYER_KEYS[parts[2]]
            state[f"blocks.{parts[1]}.{target}"] = value.t().contiguous() if transpose else value
            continue
        unknown.append(name)
    if unknown:
        raise ConfigError(f"unexpected GPT-2 weights: {', '.join(unknown[:5])}")
    return state


def load_gpt2(folder: str | Path) -> GPT:
    """A GPT with the weights of a local Hugging Face GPT-2 folder (config.json and
    model.safetensors; pickled .bin files are not read)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    weights, config_file = folder / "model.safetensors", folder / "config.json"
    for needed in (config_file, weights):
        if not needed.is_file():
            raise ConfigError(
                f"{folder} lacks {needed.name}: give a Hugging Face GPT-2 folder with "
                "config.json and model.safetensors"
            )
    model = GPT(gpt2_config(json.loads(config_file.read_text())))
    state = gpt2_state_dict(load_file(str(weights)))
    state["read_out.weight"] = state["token_embedding.weight"]
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(
            f"the GPT-2 weights do not fit: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model.eval()
