"""Language-model runs, as plain functions: train a GPT on a text, generate, evaluate, and
look at its attention. The CLI is a thin layer over these.

A GPT run directory holds, besides what every run has (config.json, metrics.jsonl,
checkpoint/weights safetensors, figures/, report.html): `tokenizer.json`, the tokenizer
trained on the corpus, and `tokens/train.bin` and `tokens/validation.bin`, the encoded corpus
that training memory-maps; `best.safetensors` keeps the weights of the lowest validation loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import PartialState
from rich.console import Console

from genlearn import __version__
from genlearn.atomic import write_text_atomic
from genlearn.data.text import (
    TokenArrays,
    Tokenizer,
    TokenWindows,
    corpus_files,
    read_chunks,
    tokenizer_from_json,
    train_tokenizer,
    write_tokens,
)
from genlearn.errors import ConfigError, RunError
from genlearn.models import build_model, get_family
from genlearn.models.gpt import GPT, Sampler, load_gpt2
from genlearn.report.figures import record_caption
from genlearn.report.html import write_report
from genlearn.train.engine import TrainConfig, Trainer
from genlearn.train.runs import Run, save_tensors_atomic
from genlearn.workflows import _resumed_config, create_shared_run, load_model

console = Console(stderr=True)

TOKENIZER_FILE = "tokenizer.json"
TOKENS_DIR = "tokens"
# validation during training reads this many tokens at most (as nanoGPT's 20 batches do);
# `genlearn evaluate` reads the whole validation split
EVALUATION_TOKENS = 1 << 14
FIGURE_PROMPTS = ("\n", "ROMEO:", "The ")


# ---- training ---------------------------------------------------------------------------------
def train_gpt(
    data: str = "shakespeare",
    *,
    tokenizer: str = "char",
    vocab_size: int | None = None,
    train_config: TrainConfig | None = None,
    seed: int = 0,
    device: str = "auto",
    runs_dir: str | Path = "runs",
    resume: str | Path | None = None,
    figures: bool = True,
    show_progress: bool = True,
    **model_options: Any,
) -> Run:
    """Train a GPT on a corpus and leave a complete run directory (see the module doc)."""
    if resume is not None:
        run, config = _resumed_config(resume, "gpt")
        seed, device = config["seed"], config.get("device", device)
        train_config = TrainConfig(**config["train"])
        text_tokenizer = load_tokenizer(run)
        model = build_model("gpt", config["model"])
        if not (run.path / TOKENS_DIR / "validation.bin").exists():
            write_tokens(
                text_tokenizer,
                read_chunks(corpus_files(config["data"]["name"])),
                run.path / TOKENS_DIR,
            )
    else:
        train_config = train_config or get_family("gpt").train_config()
        train_config.validate()
        files = corpus_files(data)
        if show_progress:
            console.print(f"training a {tokenizer} tokenizer on {data}")
        text_tokenizer = train_tokenizer(tokenizer, read_chunks(files), vocab_size)
        options = {k: v for k, v in model_options.items() if v is not None}
        model_config = {**options, "vocab_size": text_tokenizer.vocab_size}
        torch.manual_seed(seed)  # the initial weights follow --seed
        model = build_model("gpt", model_config)  # before the run exists: bad options leave nothing
        config = {
            "family": "gpt",
            "genlearn_version": __version__,
            "seed": seed,
            "device": device,
            "data": {"name": data, "tokenizer": text_tokenizer.kind},
            "model": asdict(model.config),
            "train": asdict(train_config),
        }
        run = create_shared_run(runs_dir, "gpt", data.split(":")[0], device)
        if PartialState().is_main_process:
            write_text_atomic(run.path / TOKENIZER_FILE, text_tokenizer.to_json())
            counts = write_tokens(
                text_tokenizer, read_chunks(files), run.path / TOKENS_DIR, show=show_progress
            )
            config["data"]["tokens"] = counts
            run.write_config(config)
        PartialState().wait_for_everyone()
    arrays = TokenArrays.open(
        run.path / TOKENS_DIR, model.config.vocab_size, config["data"].get("tokens")
    )
    trainer = Trainer(
        model, run, train_config, seed=seed, device=device, show_progress=show_progress
    )
    context = model.config.context
    batches = TokenWindows(
        arrays.train,
        train_config.batch_size,
        context,
        seed,
        trainer.accelerator.process_index,
        trainer.accelerator.num_processes,
        trainer.device,
    )
    if show_progress and trainer.accelerator.is_main_process:
        console.print(
            f"[bold]gpt[/] ({model.parameter_count():,} parameters) on {data if resume is None else config['data']['name']} "
            f"({len(arrays.train):,} training tokens, vocabulary {model.config.vocab_size}) "
            f"on {trainer.device} -> {run.path}"
        )

    def evaluate() -> dict[str, float]:
        return {"loss": validation_loss(trainer.unwrapped_model, arrays.validation, context)}

    trainer.train_on(batches, evaluate, split="validation", resume=resume is not None)
    trainer.save_weights(run.weights_path)
    if figures and trainer.accelerator.is_main_process:
        model = trainer.unwrapped_model.eval()
        language_figures(run, model, text_tokenizer, seed=seed)
        # the whole validation split, so the report shows perplexity and bits per character
        evaluate_language_model(run.path, str(trainer.device))
        if show_progress:
            console.print(f"report: {run.path / 'report.html'}")
    return run


@torch.no_grad()
def validation_loss(
    model: GPT, tokens: np.ndarray, context: int, limit: int = EVALUATION_TOKENS, batch: int = 32
) -> float:
    """Mean next-token cross-entropy (nats) on validation tokens. Up to `limit` tokens: all of
    them, in back-to-back windows, so each token after the first is predicted exactly once;
    beyond that, windows spread evenly through the text. Deterministic either way, so every
    evaluation of a run reads the same text."""
    was_training = model.training
    model.eval()
    length = context + 1
    if len(tokens) <= limit:
        starts = list(range(0, len(tokens) - length + 1, context))
        rest = tokens[len(starts) * context :]  # the tail shorter than a window
    else:
        count = max(1, limit // context)
        starts = np.linspace(0, len(tokens) - length, count).astype(int).tolist()
        rest = tokens[:0]
    total, predicted = 0.0, 0
    for first in range(0, len(starts), batch):
        windows = np.stack([tokens[s : s + length] for s in starts[first : first + batch]])
        total += _summed_loss(model, windows)
        predicted += windows.shape[0] * context
    if len(rest) >= 2:
        total += _summed_loss(model, rest[None])
        predicted += len(rest) - 1
    if was_training:
        model.train()
    return total / predicted


def _summed_loss(model: GPT, windows: np.ndarray) -> float:
    device = model.token_embedding.weight.device
    windows_t = torch.from_numpy(windows.astype(np.int64)).to(device)
    logits = model.logits(windows_t[:, :-1]).float()
    return float(F.cross_entropy(logits.flatten(0, 1), windows_t[:, 1:].flatten(), reduction="sum"))


# ---- a run's pieces ---------------------------------------------------------------------------
def load_tokenizer(run: Run) -> Tokenizer:
    path = run.path / TOKENIZER_FILE
    if not path.is_file():
        raise RunError(f"{run.path} has no {TOKENIZER_FILE}: it is not a gpt run")
    return tokenizer_from_json(path.read_text(encoding="utf-8"), str(path))


def load_language_model(path: str | Path, device: str = "cpu") -> tuple[GPT, Tokenizer, Run]:
    model, run = load_model(path, device)
    if not isinstance(model, GPT):
        raise ConfigError(f"{run.path} is not a gpt run: generate and attention need one")
    return model, load_tokenizer(run), run


def import_gpt2(folder: str | Path, runs_dir: str | Path = "runs") -> Run:
    """A gpt run made from a local Hugging Face GPT-2 folder (config.json, model.safetensors
    and tokenizer.json), so that generate and attention work on it."""
    from tokenizers import Tokenizer as HFTokenizer

    from genlearn.data.text import BPETokenizer

    folder = Path(folder)
    model = load_gpt2(folder)
    tokenizer_file = folder / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ConfigError(f"{folder} lacks tokenizer.json (the fast tokenizer's file)")
    tokenizer = BPETokenizer(HFTokenizer.from_file(str(tokenizer_file)))
    run = Run.create(runs_dir, "gpt", "gpt2")
    run.write_config(
        {
            "family": "gpt",
            "genlearn_version": __version__,
            "seed": 0,
            "device": "auto",
            "data": {"name": f"gpt2:{folder.resolve()}", "tokenizer": "bpe"},
            "model": asdict(model.config),
            "train": asdict(TrainConfig(epochs=1, max_steps=0)),
        }
    )
    write_text_atomic(run.path / TOKENIZER_FILE, tokenizer.to_json())
    save_tensors_atomic(run.weights_path, model.state_dict(), {"imported_from": str(folder)})
    return run


# ---- generation -------------------------------------------------------------------------------
def generate_text(
    model: GPT,
    tokenizer: Tokenizer,
    prompts: list[str],
    max_tokens: int,
    sampler: Sampler,
    *,
    stop: list[str] | None = None,
    use_cache: bool = True,
    on_text: Callable[[int, str], None] | None = None,
) -> list[str]:
    """Continue each prompt by up to `max_tokens` tokens; returns the continuations.

    A continuation ends at the first `stop` string (which is not included). `on_text(row,
    piece)` receives each new piece of text as it is generated (streaming).
    """
    if max_tokens < 1:
        raise ConfigError(f"--max-tokens must be at least 1, got {max_tokens}")
    encoded = [tokenizer.encode(p) for p in prompts]
    if any(not tokens for tokens in encoded):
        raise ConfigError("a prompt must not be empty: give at least one character")
    generated: list[list[int]] = [[] for _ in prompts]
    texts = ["" for _ in prompts]
    done = [False for _ in prompts]
    stops = [s for s in (stop or []) if s]
    for new in model.stream(encoded, max_tokens, sampler, use_cache=use_cache):
        for row, token in enumerate(new.tolist()):
            if done[row]:
                continue
            generated[row].append(token)
            # decode the whole continuation: a BPE token can be part of a character
            text = tokenizer.decode(generated[row])
            cut = _first_stop(text, stops)
            if cut is not None:
                text, done[row] = text[:cut], True
            if on_text is not None and len(text) > len(texts[row]):
                on_text(row, text[len(texts[row]) :])
            texts[row] = text
        if all(done):
            break
    return texts


def _first_stop(text: str, stops: list[str]) -> int | None:
    positions = [text.find(s) for s in stops]
    found = [p for p in positions if p >= 0]
    return min(found) if found else None


def generation_speed(model: GPT, prompt: list[int], tokens: int, use_cache: bool) -> float:
    """Tokens per second for `tokens` new tokens from `prompt`, greedy."""
    start = time.perf_counter()
    for _ in model.stream([prompt], tokens, Sampler(temperature=0), use_cache=use_cache):
        pass
    return tokens / (time.perf_counter() - start)


# ---- evaluation -------------------------------------------------------------------------------
def evaluate_language_model(path: str | Path, device: str = "auto") -> dict[str, float | int]:
    """Validation loss (nats per token) over the whole validation split, perplexity, and bits
    per character (the loss in bits, spread over the characters the tokens spell)."""
    model, tokenizer, run = load_language_model(path, device)
    data = run.config.get("data", {})
    if str(data.get("name", "")).startswith("gpt2:"):
        raise ConfigError("an imported GPT-2 has no validation text here: evaluate trained runs")
    arrays = TokenArrays.open(run.path / TOKENS_DIR, model.config.vocab_size, data.get("tokens"))
    tokens = arrays.validation
    loss = validation_loss(model, tokens, model.config.context, limit=len(tokens))
    characters = len(tokenizer.decode(tokens[1:].astype(np.int64).tolist()))
    predicted = len(tokens) - 1
    results = {
        "validation_loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_token": loss / math.log(2),
        "bits_per_character": loss * predicted / characters / math.log(2),
        "validation_tokens": predicted,
    }
    run.write_evaluation(results)
    write_report(run.path)
    return results


# ---- figures ----------------------------------------------------------------------------------
def language_figures(run: Run, model: GPT, tokenizer: Tokenizer, seed: int = 0) -> list[Path]:
    """samples.txt (a continuation of a few prompts) and the attention maps of a prompt."""
    from genlearn.explore.attention import attention_figure

    prompts = [p for p in FIGURE_PROMPTS if _encodable(tokenizer, p)] or [tokenizer.decode([0])]
    generator = torch.Generator(device=model.token_embedding.weight.device).manual_seed(seed)
    sampler = Sampler(temperature=0.8, top_k=50, generator=generator)
    texts = generate_text(model, tokenizer, prompts, 300, sampler)
    lines = []
    for prompt, text in zip(prompts, texts, strict=True):
        lines += [f"--- prompt: {prompt!r}", prompt + text, ""]
    samples = run.figures_dir / "samples.txt"
    write_text_atomic(samples, "\n".join(lines))
    record_caption(run.figures_dir, samples.name, "temperature 0.8, top-k 50, 300 tokens each")
    attention = attention_figure(model, tokenizer, prompts[-1] + texts[-1][:40], run.figures_dir)
    return [samples, attention]


def _encodable(tokenizer: Tokenizer, text: str) -> bool:
    try:
        return bool(tokenizer.encode(text))
    except ConfigError:
        return False
