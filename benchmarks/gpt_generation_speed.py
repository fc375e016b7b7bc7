"""Generation speed: genlearn's GPT with and without its key/value cache, and Hugging Face
transformers' GPT-2 (with its cache) on the very same weights.

For each model shape, a GPT-2 with random weights is built by `transformers` and saved as a
Hugging Face folder; `genlearn.models.gpt.load_gpt2` loads that folder, so both libraries run
one model. Each generates 500 new tokens greedily from a 6-token prompt, one sequence:

- genlearn, cached: each new token runs the network on that token alone, reading earlier keys
  and values from the cache, so n tokens cost O(n) forward work;
- genlearn, uncached: each new token re-runs the whole sequence so far (O(n^2));
- transformers `generate(use_cache=True)`: the peer.

Before timing, the script checks that the two libraries agree: the largest difference of the
prompt's logits, and whether the 500 greedy tokens are the same. Each timing is the median of
`--repeats` runs, alternating between the contenders. Needs `pip install transformers`.

    python benchmarks/gpt_generation_speed.py [--repeats 3] [--skip-gpt2-small]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from genlearn.models.gpt import Sampler, load_gpt2

NEW_TOKENS = 500
PROMPT = [464, 3290, 286, 262, 1110, 318]  # six token ids (GPT-2 BPE: "The end of the day is")

# (name, layers, heads, width, context, vocabulary)
SHAPES = [
    ("char-small", 3, 4, 128, 1024, 65),  # genlearn's default width and depth, a longer context
    ("char-baby", 6, 6, 384, 1024, 65),  # nanoGPT's Shakespeare-character GPU model
    ("gpt2-small", 12, 12, 768, 1024, 50257),  # GPT-2's 124M shape
]


def hf_gpt2_folder(layers: int, heads: int, width: int, context: int, vocab: int, out: Path):
    """A transformers GPT-2 with random weights, and the folder it is saved in."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=layers, n_head=heads, n_embd=width, n_positions=context, vocab_size=vocab,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(out, safe_serialization=True)
    return model


def genlearn_tokens(model, prompt: list[int], use_cache: bool) -> list[int]:
    steps = model.stream([prompt], NEW_TOKENS, Sampler(temperature=0), use_cache=use_cache)
    return [int(token[0]) for token in steps]


@torch.no_grad()
def hf_tokens(model, prompt: list[int]) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS, do_sample=False, use_cache=True, pad_token_id=0,
    )  # fmt: skip
    return out[0, len(prompt) :].tolist()


def timed(work) -> tuple[float, list[int]]:
    start = time.perf_counter()
    tokens = work()
    return NEW_TOKENS / (time.perf_counter() - start), tokens


def measure(shape: tuple, repeats: int, uncached: bool) -> dict:
    name, layers, heads, width, context, vocab = shape
    prompt = [token % vocab for token in PROMPT]
    with tempfile.TemporaryDirectory() as folder:
        hf_model = hf_gpt2_folder(layers, heads, width, context, vocab, Path(folder))
        model = load_gpt2(folder).eval()
    with torch.no_grad():
        ids = torch.tensor([prompt])
        logits_gap = float((model.logits(ids) - hf_model(ids).logits).abs().max())
    contenders = {
        "genlearn_cached": lambda: genlearn_tokens(model, prompt, True),
        "transformers_cached": lambda: hf_tokens(hf_model, prompt),
    }
    if uncached:
        contenders["genlearn_uncached"] = lambda: genlearn_tokens(model, prompt, False)
    for key in ("genlearn_cached", "transformers_cached"):  # first calls allocate; not timed
        contenders[key]()
    rates: dict[str, list[float]] = {key: [] for key in contenders}
    outputs: dict[str, list[int]] = {}
    for _ in range(repeats):
        for key, work in contenders.items():
            rate, tokens = timed(work)
            rates[key].append(rate)
            outputs[key] = tokens
    same = outputs["genlearn_cached"] == outputs["transformers_cached"]
    result = {
        "parameters": model.parameter_count(),
        "logits_max_abs_difference": logits_gap,
        "same_greedy_tokens_as_transformers": same,
        **{f"{key}_tokens_per_s": round(statistics.median(r), 1) for key, r in rates.items()},
    }
    if uncached:
        result["cached_tokens_same_as_uncached"] = (
            outputs["genlearn_cached"] == outputs["genlearn_uncached"]
        )
        result["cache_speedup"] = round(
            result["genlearn_cached_tokens_per_s"] / result["genlearn_uncached_tokens_per_s"], 2
        )
    result["vs_transformers"] = round(
        result["genlearn_cached_tokens_per_s"] / result["transformers_cached_tokens_per_s"], 2
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-gpt2-small", action="store_true", help="the two small shapes only")
    args = parser.parse_args()
    try:
        import transformers
    except ImportError:
        sys.exit("this benchmark compares against transformers: pip install transformers")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    summary: dict = {"new_tokens": NEW_TOKENS, "threads": torch.get_num_threads()}
    summary["transformers_version"] = transformers.__version__
    for shape in SHAPES:
        if shape[0] == "gpt2-small" and args.skip_gpt2_small:
            continue
        # re-running 500 growing sequences through GPT-2 small would take many minutes here
        summary[shape[0]] = measure(shape, args.repeats, uncached=shape[0] != "gpt2-small")
        print(shape[0], json.dumps(summary[shape[0]]), flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
