"""Language models through the verbs a user types: train on a text file, generate (streamed,
batched, stopped, with and without the cache), attention, evaluate; the engine's resume and
gradient accumulation on token windows; and the one-line errors."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_cli

from genlearn.data.text import TokenWindows
from genlearn.language import train_gpt
from genlearn.models.gpt import GPT, GPTConfig
from genlearn.train.engine import TrainConfig, Trainer
from genlearn.train.runs import Run, read_jsonl

VERSES = [
    "Shall I compare thee to a summer's day?",
    "Thou art more lovely and more temperate:",
    "Rough winds do shake the darling buds of May,",
    "And summer's lease hath all too short a date:",
]
TEXT = "\n".join(VERSES[i % 4] for i in range(400)) + "\n"
SMALL = ["--context", "32", "--layers", "2", "--heads", "2", "--width", "32", "--device", "cpu"]


def unigram_entropy(text: str) -> float:
    counts = Counter(text)
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "sonnet.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_path(corpus, tmp_path_factory) -> Path:
    config = TrainConfig(
        lr=3e-3,
        eval_every_epochs=0,
        batch_size=16,
        warmup_steps=20,
        max_steps=300,
        eval_every_steps=100,
        grad_clip=1.0,
        weight_decay=0.1,
        lr_final_fraction=0.1,
    )
    return train_gpt(
        f"text:{corpus}",
        train_config=config,
        runs_dir=tmp_path_factory.mktemp("runs"),
        device="cpu",
        show_progress=False,
        context=32,
        layers=2,
        heads=2,
        width=32,
    ).path


def test_a_gpt_run_is_complete_and_learns_below_the_unigram_entropy(run_path):
    for name in (
        "config.json",
        "metrics.jsonl",
        "checkpoint.safetensors",
        "model.safetensors",
        "best.safetensors",
        "tokenizer.json",
        "tokens/train.bin",
        "report.html",
    ):
        assert (run_path / name).exists(), name
    figures = {p.name for p in (run_path / "figures").iterdir()}
    assert {"samples.txt", "attention.png", "loss_curves.png"} <= figures
    validation = [
        r["loss"] for r in read_jsonl(run_path / "metrics.jsonl") if r["split"] == "validation"
    ]
    assert len(validation) == 3
    assert validation[-1] < 0.5 * unigram_entropy(TEXT)
    report = (run_path / "report.html").read_text()
    assert "GPT language model" in report and "<pre>" in report


def test_generate_continues_a_prompt_the_way_the_text_goes(run_path, monkeypatch, capsys):
    code, out, _ = run_cli(
        monkeypatch,
        capsys,
        "generate",
        str(run_path),
        "--prompt",
        "Rough winds",
        "--max-tokens",
        "40",
        "--temperature",
        "0",
        "--device",
        "cpu",
    )
    assert code == 0
    assert out.startswith("Rough winds do shake the d")


def test_stream_batch_stop_and_cache_agree(run_path, monkeypatch, capsys):
    greedy = ["--temperature", "0", "--max-tokens", "60", "--device", "cpu"]
    _, streamed, _ = run_cli(
        monkeypatch, capsys, "generate", str(run_path), "-p", "Thou", "--stream", *greedy
    )
    _, uncached, _ = run_cli(
        monkeypatch, capsys, "generate", str(run_path), "-p", "Thou", "--no-cache", *greedy
    )
    assert streamed.strip() == uncached.strip()
    _, stopped, _ = run_cli(
        monkeypatch, capsys, "generate", str(run_path), "-p", "Thou", "--stop", "\n", *greedy
    )
    assert stopped.strip() == "Thou art more lovely and more temperate:"
    _, typed, _ = run_cli(  # a shell passes "\n" as backslash and n: read as a new line
        monkeypatch, capsys, "generate", str(run_path), "-p", "Thou", "--stop", "\\n", *greedy
    )
    assert typed == stopped
    code, batch, _ = run_cli(
        monkeypatch, capsys, "generate", str(run_path), "-p", "Thou", "-p", "And", *greedy
    )
    assert code == 0 and "prompt 2" in batch and uncached.strip() in batch


def test_attention_and_evaluate(run_path, monkeypatch, capsys):
    code, out, _ = run_cli(
        monkeypatch, capsys, "attention", str(run_path), "--prompt", "Shall I compare"
    )
    assert code == 0 and Path(out.strip()).is_file()
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", str(run_path), "--device", "cpu")
    assert code == 0
    results = json.loads(out.strip().splitlines()[-1])
    assert results["perplexity"] == pytest.approx(math.exp(results["validation_loss"]))
    # characters: one token each, so bits per character is the loss in bits
    assert results["bits_per_character"] == pytest.approx(results["validation_loss"] / math.log(2))


def test_bpe_training_through_the_cli(corpus, tmp_path, monkeypatch, capsys):
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "train",
        "gpt",
        "--data",
        f"text:{corpus}",
        "--tokenizer",
        "bpe",
        "--vocab-size",
        "300",
        "--steps",
        "20",
        "--batch-size",
        "8",
        *SMALL,
        "--runs-dir",
        str(tmp_path),
    )
    assert code == 0, err
    run = Path(out.strip().removeprefix("run: "))
    assert json.loads((run / "config.json").read_text())["model"]["vocab_size"] == 300


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "RUN", "--prompt", "Zounds"], "'Z' is not in this model's vocabulary"),
        (["generate", "RUN", "--prompt", ""], "must not be empty"),
        (["generate", "RUN", "--top-p", "0"], "top-p"),
        (["generate", "RUN", "-p", "a", "-p", "b", "--stream"], "--stream prints one text"),
        (["sample", "RUN"], "genlearn generate"),
        (["train", "gpt", "--data", "text:/nope.txt"], "does not exist"),
        (["train", "gpt", "--tokenizer", "words"], "tokenizer must be"),
        (["train", "gpt", "--heads", "3", "--width", "32"], "multiple of the number of heads"),
        (["train", "gpt", "--batch-size", "16", "--grad-accumulation", "3"], "must divide"),
    ],
)
def test_bad_input_gets_one_line(run_path, corpus, tmp_path, monkeypatch, capsys, args, message):
    args = [str(run_path) if a == "RUN" else a for a in args]
    if args[0] == "train" and "--data" not in args:
        args += ["--data", f"text:{corpus}"]
    code, _, err = (
        run_cli(monkeypatch, capsys, *args, "--runs-dir", str(tmp_path))
        if args[0] == "train"
        else run_cli(monkeypatch, capsys, *args)
    )
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # a refused run leaves nothing behind


# ---- the engine on token windows ----------------------------------------------------------------
def tiny_trainer(run: Run, **config) -> Trainer:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, context=8, layers=1, heads=2, width=16))
    settings = dict(
        lr=1e-2, batch_size=8, max_steps=12, log_every_steps=4, checkpoint_every_steps=6
    )
    config = TrainConfig(**{**settings, **config})
    return Trainer(model, run, config, device="cpu", show_progress=False)


def toy_windows() -> TokenWindows:
    tokens = (np.arange(2000) * 7 % 20).astype(np.uint16)
    return TokenWindows(tokens, batch_size=8, context=8, seed=0)


class Killed(Exception):
    pass


def test_a_killed_language_run_resumes_to_the_same_weights(tmp_path):
    whole = tiny_trainer(Run.create(tmp_path / "whole", "gpt", "toy"))
    whole.train_on(toy_windows())

    def kill(step):
        if step == 6:
            raise Killed

    run = Run.create(tmp_path / "killed", "gpt", "toy")
    with pytest.raises(Killed):
        tiny_trainer(run).train_on(toy_windows(), on_step=kill)
    resumed = tiny_trainer(run)
    resumed.train_on(toy_windows(), resume=True)
    for (name, a), b in zip(
        whole.unwrapped_model.state_dict().items(),
        resumed.unwrapped_model.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name


def test_gradient_accumulation_takes_the_same_steps(tmp_path):
    one = tiny_trainer(Run.create(tmp_path / "one", "gpt", "toy"), max_steps=3)
    one.train_on(toy_windows())
    four = tiny_trainer(
        Run.create(tmp_path / "four", "gpt", "toy"), max_steps=3, grad_accumulation=4
    )
    four.train_on(toy_windows())
    for a, b in zip(
        one.unwrapped_model.parameters(), four.unwrapped_model.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_runs_counted_in_steps_log_whole_windows_across_nominal_epochs(tmp_path):
    """A short corpus makes many nominal epochs; logging windows still span log_every steps,
    and each evaluation leaves a checkpoint to resume from."""
    tokens = (np.arange(200) * 7 % 20).astype(np.uint16)
    batches = TokenWindows(tokens, batch_size=8, context=8, seed=0)
    assert batches.steps_per_epoch < 4
    run = Run.create(tmp_path, "gpt", "toy")
    trainer = tiny_trainer(run, checkpoint_every_steps=0, eval_every_steps=6, eval_every_epochs=0)
    trainer.train_on(batches, evaluate=lambda: {"loss": 1.0}, split="validation")
    log = run.read_log()
    assert [r["step"] for r in log if r["split"] == "train"] == [4, 6, 8, 12]
    assert [r["step"] for r in log if r["split"] == "validation"] == [6, 12]
    assert run.checkpoint_path.is_file() and run.best_weights_path.is_file()
