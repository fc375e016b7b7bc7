"""The GPT itself: causality, the KV cache against the plain forward pass, the sampling
filters against hand-made distributions, and GPT-2 weight loading."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from genlearn.errors import ConfigError
from genlearn.models.gpt import (
    GPT,
    GPTConfig,
    Sampler,
    gpt2_state_dict,
    load_gpt2,
    repetition_penalty,
    rotary_angles,
    rotate,
    top_k_filter,
    top_p_filter,
)

TINY = dict(vocab_size=11, context=16, layers=2, heads=2, width=16)


def tiny_gpt(positions: str = "learned", seed: int = 0, **options) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, "positions": positions, **options})).double().eval()


def test_rotary_attention_scores_depend_on_the_offset_only():
    """<R(m) q, R(n) k> = <R(m - n) q, k> (Su et al. Eq. 16): rotations keep lengths and
    the score of a query and a key reads only how far apart they are."""
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, 8, dtype=torch.float64).unbind(0)

    def turned(x, position):
        cos, sin = rotary_angles(torch.tensor([[position]]), 8)
        return rotate(x, (cos.double(), sin.double()))

    score = (turned(q, 7) * turned(k, 3)).sum()
    assert torch.allclose(score, (turned(q, 4) * k).sum())
    assert torch.allclose(score, (turned(q, 104) * turned(k, 100)).sum())
    assert torch.allclose(turned(q, 5).norm(), q.norm())
    assert not torch.allclose(score, (q * k).sum())  # it does turn


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_changing_a_future_token_never_changes_an_earlier_logit(positions):
    model = tiny_gpt(positions)
    tokens = torch.randint(11, (2, 12), generator=torch.Generator().manual_seed(1))
    changed = tokens.clone()
    changed[:, 7] = (changed[:, 7] + 1) % 11
    before, after = model.logits(tokens), model.logits(changed)
    assert torch.equal(before[:, :7], after[:, :7])
    assert not torch.allclose(before[:, 7:], after[:, 7:])  # the change is seen from 7 on


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_cached_generation_gives_the_logits_of_the_plain_forward_pass(positions):
    model = tiny_gpt(positions)
    prompt = [3, 1, 4, 1, 5]
    seen: list[torch.Tensor] = []

    def greedy(logits, history):
        seen.append(logits)
        return logits.argmax(-1)

    tokens = [int(t) for t in model.stream([prompt], 8, greedy, use_cache=True)]
    text = torch.tensor([prompt + tokens])
    plain = model.logits(text)[0]  # one uncached pass over everything
    for step, logits in enumerate(seen):
        torch.testing.assert_close(
            logits[0], plain[len(prompt) - 1 + step].float(), rtol=0, atol=1e-6
        )


def test_cache_and_no_cache_generate_the_same_text_past_the_context():
    model = tiny_gpt("rotary")  # rotary: positions beyond the context are allowed
    greedy = Sampler(temperature=0)
    with_cache = torch.stack(list(model.stream([[2, 7]], 20, greedy, use_cache=True)))
    without = torch.stack(list(model.stream([[2, 7]], 20, greedy, use_cache=False)))
    # within the context both read the same text; past it, the cache is refilled from the
    # last half-context and the uncached pass reads the last full context: they may differ
    assert torch.equal(with_cache[:14], without[:14])


def test_the_cache_runs_each_new_token_once():
    """n new tokens: n positions through the network with the cache, O(n^2) without."""
    model = tiny_gpt()
    lengths: list[int] = []
    plain_logits = model.logits

    def counting(tokens, *args, **kwargs):
        lengths.append(tokens.shape[1])
        return plain_logits(tokens, *args, **kwargs)

    model.logits = counting
    list(model.stream([[1, 2, 3]], 10, Sampler(temperature=0), use_cache=True))
    assert lengths == [3] + [1] * 9
    lengths.clear()
    list(model.stream([[1, 2, 3]], 10, Sampler(temperature=0), use_cache=False))
    assert lengths == list(range(3, 13))


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_batched_prompts_of_different_lengths_continue_as_each_would_alone(positions):
    model = tiny_gpt(positions)
    prompts = [[1, 2, 3, 4, 5, 6], [7], [8, 9, 10]]
    greedy = Sampler(temperature=0)
    together = torch.stack(list(model.stream(prompts, 6, greedy))).T
    for row, prompt in enumerate(prompts):
        alone = torch.stack(list(model.stream([prompt], 6, greedy))).T[0]
        assert torch.equal(together[row], alone), row


def test_weight_tying_shares_the_embedding_with_the_read_out():
    model = tiny_gpt()
    assert model.read_out.weight is model.token_embedding.weight
    untied = tiny_gpt(tie_weights=False)
    assert model.parameter_count() == untied.parameter_count() - 11 * 16


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert top_k_filter(logits, 2).isinf().tolist() == [[True, False, False, True]]
    assert torch.equal(top_k_filter(logits, 0), logits)


@pytest.mark.parametrize(
    ("p", "kept"),
    [
        (0.5, [True, False, False, False]),
        (0.8, [True, True, False, False]),
        (0.81, [True, True, True, False]),
        (1.0, [True, True, True, True]),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(p, kept):
    probabilities = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    order = [1, 3, 0, 2]  # most likely first
    out = top_p_filter(probabilities.log(), p)
    assert [bool(torch.isfinite(out[0, i])) for i in order] == kept


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    logits = torch.tensor([[2.0, -1.0, 3.0, 0.5]])
    history = torch.tensor([[0, 1, 1]])
    out = repetition_penalty(logits, history, 2.0)
    assert out.tolist() == [[1.0, -2.0, 3.0, 0.5]]


def test_greedy_and_sampled_choices():
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    history = torch.zeros(1, 1, dtype=torch.long)
    assert Sampler(temperature=0)(logits, history).item() == 1
    generator = torch.Generator().manual_seed(0)
    draws = [Sampler(1.0, top_k=1, generator=generator)(logits, history).item() for _ in range(20)]
    assert set(draws) == {1}
    with pytest.raises(ConfigError, match="top-p"):
        Sampler(top_p=0)


def test_the_loss_is_the_next_token_cross_entropy():
    model = tiny_gpt()
    windows = torch.randint(11, (3, 9), generator=torch.Generator().manual_seed(2))
    logits = model.logits(windows[:, :-1])
    expected = -logits.log_softmax(-1).gather(-1, windows[:, 1:, None]).mean()
    torch.testing.assert_close(model(windows)["loss"], expected.float())
    untrained = tiny_gpt()(windows)["loss"].item()
    assert abs(untrained - math.log(11)) < 0.1  # small initial weights: near uniform


# ---- GPT-2 weights ---------------------------------------------------------------------------
def gpt2_folder(tmp_path, layers=2, width=8, heads=2, vocab=13, context=10):
    """A folder in Hugging Face's GPT-2 layout: Conv1D weights (in, out), "transformer."
    prefixes as saved by GPT2LMHeadModel, the stored causal masks and a tied lm_head."""
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.2

    tensors = {
        "transformer.wte.weight": rand(vocab, width),
        "transformer.wpe.weight": rand(context, width),
    }
    for i in range(layers):
        h = f"transformer.h.{i}."
        tensors |= {
            h + "ln_1.weight": 1 + rand(width),
            h + "ln_1.bias": rand(width),
            h + "attn.c_attn.weight": rand(width, 3 * width),
            h + "attn.c_attn.bias": rand(3 * width),
            h + "attn.c_proj.weight": rand(width, width),
            h + "attn.c_proj.bias": rand(width),
            h + "ln_2.weight": 1 + rand(width),
            h + "ln_2.bias": rand(width),
            h + "mlp.c_fc.weight": rand(width, 4 * width),
            h + "mlp.c_fc.bias": rand(4 * width),
            h + "mlp.c_proj.weight": rand(4 * width, width),
            h + "mlp.c_proj.bias": rand(width),
            h + "attn.bias": torch.ones(1, 1, context, context).tril(),
        }
    tensors |= {"transformer.ln_f.weight": 1 + rand(width), "transformer.ln_f.bias": rand(width)}
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    config = {
        "vocab_size": vocab,
        "n_positions": context,
        "n_layer": layers,
        "n_head": heads,
        "n_embd": width,
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tensors


def reference_gpt2_logits(t: dict, tokens: torch.Tensor, layers: int, heads: int) -> torch.Tensor:
    """GPT-2's forward pass written out from its weights, independently of genlearn's model."""
    g = {k.removeprefix("transformer."): v for k, v in t.items()}
    x = g["wte.weight"][tokens] + g["wpe.weight"][: tokens.shape[1]]
    length, width = tokens.shape[1], x.shape[-1]
    mask = torch.ones(length, length).tril().bool()
    for i in range(layers):
        p = f"h.{i}."
        a = torch.nn.functional.layer_norm(x, (width,), g[p + "ln_1.weight"], g[p + "ln_1.bias"])
        q, k, v = (a @ g[p + "attn.c_attn.weight"] + g[p + "attn.c_attn.bias"]).split(width, -1)
        q, k, v = (z.view(1, length, heads, -1).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(width // heads)).masked_fill(~mask, -1e9)
        y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(1, length, width)
        x = x + y @ g[p + "attn.c_proj.weight"] + g[p + "attn.c_proj.bias"]
        m = torch.nn.functional.layer_norm(x, (width,), g[p + "ln_2.weight"], g[p + "ln_2.bias"])
        hidden = torch.nn.functional.gelu(
            m @ g[p + "mlp.c_fc.weight"] + g[p + "mlp.c_fc.bias"], approximate="tanh"
        )
        x = x + hidden @ g[p + "mlp.c_proj.weight"] + g[p + "mlp.c_proj.bias"]
    x = torch.nn.functional.layer_norm(x, (width,), g["ln_f.weight"], g["ln_f.bias"])
    return x @ g["wte.weight"].T


def test_gpt2_weights_map_every_key_and_give_gpt2s_logits(tmp_path):
    tensors = gpt2_folder(tmp_path)
    model = load_gpt2(tmp_path)
    mapped = gpt2_state_dict(tensors)
    own = model.state_dict()
    assert set(mapped) | {"read_out.weight"} == set(own)  # every parameter filled, no extras
    tokens = torch.tensor([[1, 5, 2, 12, 0, 7]])
    torch.testing.assert_close(
        model.logits(tokens), reference_gpt2_logits(tensors, tokens, 2, 2), rtol=1e-4, atol=1e-5
    )


def test_unknown_gpt2_weights_are_refused(tmp_path):
    tensors = gpt2_folder(tmp_path)
    tensors["transformer.h.0.attn.extra.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError, match="unexpected GPT-2 weights"):
        gpt2_state_dict(tensors)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="model.safetensors"):
        load_gpt2(tmp_path)
