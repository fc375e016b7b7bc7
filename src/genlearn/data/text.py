"""Text for language models: corpora, tokenizers and token arrays on disk.

- A corpus is a UTF-8 file, or a folder of `.txt`/`.md` files read in name order; the built-in
  `shakespeare` is tiny Shakespeare (char-rnn's `input.txt`).
- Two tokenizers, both saved with the run as JSON: characters (the corpus's own symbols) and
  byte-level BPE trained on the corpus with Hugging Face `tokenizers` (Sennrich et al. 2016;
  GPT-2's byte-level variant, so any Unicode text round-trips and nothing is "unknown").
- Tokens are written once to `.bin` files (uint16, or uint32 for big vocabularies) and read
  back as `numpy.memmap`, so a corpus larger than memory trains: a batch touches only its
  windows. The split is deterministic: the first 90% of the tokens train, the rest validate
  (nanoGPT's split of tiny Shakespeare).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genlearn.data.files import find_local, resolve_file
from genlearn.errors import ConfigError, DataError

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/"
    "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e/data/tinyshakespeare/input.txt"
)
SHAKESPEARE_FILES = ("tinyshakespeare.txt", "input.txt")  # input.txt: char-rnn's own name
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
EMBEDDED_EXCERPT = Path(__file__).parent / "texts" / "shakespeare_excerpt.txt.gz"
TEXT_SUFFIXES = (".txt", ".md", ".text", ".txt.gz")
CHUNK_CHARS = 1 << 20  # corpora are read and encoded a megabyte at a time
VALIDATION_FRACTION = 0.1


# ---- corpora ----------------------------------------------------------------------------------
def local_shakespeare() -> Path | None:
    """Tiny Shakespeare's file when it is here ($GENLEARN_DATA or the cache), else None."""
    return find_local("shakespeare", SHAKESPEARE_FILES, aliases=("text",))


def text_corpora() -> list[tuple[str, str, str]]:
    """(name, status, description) of each corpus a GPT trains on, for `genlearn datasets`."""
    here = local_shakespeare()
    return [
        (
            "shakespeare",
            f"found: {here}" if here else "downloadable (1.1 MB)",
            "tiny Shakespeare: 1.1 MB of the plays, for gpt (characters)",
        ),
        ("shakespeare-excerpt", "embedded", "its first 100 kB, built in"),
        ("text:PATH", "your file", "any UTF-8 text file or folder of them, for gpt"),
    ]


def corpus_files(name: str) -> list[Path]:
    """The files of a corpus: `shakespeare`, `shakespeare-excerpt` (embedded), or
    `text:PATH` (a file or a folder)."""
    if name == "shakespeare-excerpt":
        return [EMBEDDED_EXCERPT]
    if name == "shakespeare":
        return [
            resolve_file(
                "shakespeare",
                SHAKESPEARE_FILES[0],
                SHAKESPEARE_URL,
                SHAKESPEARE_SHA256,
                alternatives=SHAKESPEARE_FILES[1:],
                aliases=("text",),
            )
        ]
    if not name.startswith("text:"):
        raise ConfigError(
            f"unknown text dataset {name!r}: use shakespeare, shakespeare-excerpt or text:PATH "
            "(a UTF-8 file or a folder of .txt files)"
        )
    path = Path(name.removeprefix("text:")).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.name.lower().endswith(TEXT_SUFFIXES))
        if files:
            return files
        raise DataError(f"{path} holds no {'/'.join(TEXT_SUFFIXES)} files")
    raise DataError(f"{path} does not exist: give a UTF-8 text file or a folder of them")


def read_chunks(files: list[Path]) -> Iterator[str]:
    """The corpus as pieces of about CHUNK_CHARS characters, each ending at a line end (so
    BPE never sees a word cut in two) unless a line is longer than 4 pieces; files are
    joined by a blank line."""
    carry = ""
    for index, path in enumerate(files):
        if index:
            carry += "\n\n"
        opener = gzip.open if path.suffix == ".gz" else open
        try:
            with opener(path, "rt", encoding="utf-8", newline="") as handle:
                while piece := handle.read(CHUNK_CHARS):
                    piece = carry + piece
                    cut = piece.rfind("\n") + 1
                    if cut == 0 and len(piece) < 4 * CHUNK_CHARS:  # no line end yet: read on
                        carry = piece
                        continue
                    cut = cut or len(piece)
                    carry = piece[cut:]
                    yield piece[:cut]
        except UnicodeDecodeError as error:
            raise DataError(
                f"{path} is not UTF-8 text ({error.reason} at byte {error.start})"
            ) from None
    if carry:
        yield carry


# ---- tokenizers -------------------------------------------------------------------------------
class CharTokenizer:
    """One token per character of the training corpus."""

    kind = "char"

    def __init__(self, symbols: list[str]):
        self.symbols = symbols
        self.index = {symbol: i for i, symbol in enumerate(symbols)}

    @classmethod
    def train(cls, chunks: Iterator[str]) -> CharTokenizer:
        seen: set[str] = set()
        for chunk in chunks:
            seen.update(chunk)
        return cls(sorted(seen))

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[c] for c in text]
        except KeyError as error:
            raise ConfigError(
                f"the character {error.args[0]!r} is not in this model's vocabulary "
                f"(it knows {len(self.symbols)} characters, from its training text)"
            ) from None

    def decode(self, tokens: list[int]) -> str:
        return "".join(self.symbols[t] for t in tokens)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "symbols": self.symbols}, ensure_ascii=False)


class BPETokenizer:
    """Byte-level byte-pair encoding (GPT-2's scheme) trained by Hugging Face `tokenizers`."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, chunks: Iterator[str], vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise ConfigError(
                f"a byte-level BPE vocabulary needs more than the 256 bytes, got {vocab_size}"
            )
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is a token
            show_progress=False,
        )
        tokenizer.train_from_iterator(chunks, trainer=trainer)
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokenizer": json.loads(self.tokenizer.to_str())})


Tokenizer = CharTokenizer | BPETokenizer


def train_tokenizer(kind: str, chunks: Iterator[str], vocab_size: int | None = None) -> Tokenizer:
    if kind not in ("char", "bpe"):
        raise ConfigError(f"tokenizer must be 'char' or 'bpe', got {kind!r}")
    if kind == "char":
        tokenizer: Tokenizer = CharTokenizer.train(chunks)
    else:
        tokenizer = BPETokenizer.train(chunks, vocab_size or 4096)
    if tokenizer.vocab_size == 0:
        raise DataError("the corpus has no text: give a file (or folder) with some")
    return tokenizer


def tokenizer_from_json(text: str, source: str = "the text") -> Tokenizer:
    """A tokenizer saved by `to_json` (plain JSON: nothing is executed or unpickled);
    `source` names the file in errors."""
    try:
        saved = json.loads(text)
        if saved["kind"] == "char":
            return CharTokenizer(list(saved["symbols"]))
        if saved["kind"] == "bpe":
            from tokenizers import Tokenizer as HFTokenizer

            return BPETokenizer(HFTokenizer.from_str(json.dumps(saved["tokenizer"])))
    except Exception as error:  # json, a missing key, or the tokenizers library refusing it
        raise DataError(
            f"{source} is not a genlearn tokenizer file ({error}): train the run again"
        ) from None
    raise DataError(f"unknown tokenizer kind {saved['kind']!r}")


# ---- token arrays -----------------------------------------------------------------------------
def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def write_tokens(
    tokenizer: Tokenizer, chunks: Iterator[str], folder: Path, show: bool = False
) -> dict[str, int]:
    """Encode the corpus into `folder/train.bin` and `folder/validation.bin` (first 90% and
    last 10% of the tokens), with a progress bar when `show`. Returns the token counts."""
    from genlearn.data.progress import progress_bar

    folder.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(tokenizer.vocab_size)
    everything = folder / "all.bin.part"
    count = 0
    with (
        everything.open("wb") as out,
        progress_bar("encoding the text", None, show=show, unit="characters") as advance,
    ):
        for chunk in chunks:
            tokens = np.asarray(tokenizer.encode(chunk), dtype=dtype)
            tokens.tofile(out)
            count += len(tokens)
            advance(len(chunk))
    split = int(count * (1 - VALIDATION_FRACTION))
    if split < 2 or count - split < 2:
        everything.unlink()
        raise DataError(f"the corpus is too short to split for training: {count} tokens")
    tokens = np.memmap(everything, dtype=dtype, mode="r")
    for name, part in (("train", tokens[:split]), ("validation", tokens[split:])):
        target = folder / f"{name}.bin"
        partial = folder / f"{name}.bin.part"
        part.tofile(partial)
        partial.replace(target)  # whole files or none: a killed run re-encodes
    del tokens
    everything.unlink()
    return {"train": split, "validation": count - split}


@dataclass
class TokenArrays:
    """The run's train and validation tokens, memory-mapped."""

    train: np.ndarray
    validation: np.ndarray

    @classmethod
    def open(
        cls, folder: Path, vocab_size: int, expected: dict[str, int] | None = None
    ) -> TokenArrays:
        """The token files of `folder`; with `expected` (the counts `write_tokens` returned),
        a truncated or replaced file is refused instead of read."""
        dtype = token_dtype(vocab_size)
        try:
            arrays = {
                n: np.memmap(folder / f"{n}.bin", dtype=dtype, mode="r")
                for n in ("train", "validation")
            }
        except FileNotFoundError as error:
            raise DataError(f"token file missing: {error.filename}") from None
        for name, count in (expected or {}).items():
            if name in arrays and len(arrays[name]) != count:
                raise DataError(
                    f"{folder / name}.bin holds {len(arrays[name])} tokens, not the {count} "
                    f"written: it is damaged; delete {folder} and run genlearn train --resume "
                    "on the run to encode the text again"
                )
        return cls(arrays["train"], arrays["validation"])


def random_windows(
    tokens: np.ndarray, count: int, length: int, generator: torch.Generator
) -> torch.Tensor:
    """`count` windows of `length` consecutive tokens at uniformly random offsets, int64."""
    if len(tokens) < length:
        raise DataError(
            f"the text has {len(tokens)} tokens, fewer than one window of {length}: lower "
            "--context or give more text"
        )
    starts = torch.randint(len(tokens) - length + 1, (count,), generator=generator).tolist()
    return torch.from_numpy(np.stack([tokens[s : s + length] for s in starts]).astype(np.int64))


def consecutive_windows(tokens: np.ndarray, length: int) -> Iterator[torch.Tensor]:
    """The whole array as back-to-back windows of `length` tokens overlapping by one (each
    token after the first is predicted exactly once), the last window shorter."""
    step = length - 1
    for start in range(0, len(tokens) - 1, step):
        yield torch.from_numpy(tokens[start : start + length].astype(np.int64))[None]


class TokenWindows:
    """The engine's batches for a language model: `batch_size` windows of context + 1 tokens
    at random offsets (the inputs and, shifted by one, the targets), drawn from a generator
    seeded by (seed, step, process), so a resumed run draws the same windows. An "epoch" is
    nominal: as many steps as it takes to draw as many tokens as the array holds."""

    unit = "tokens"

    def __init__(self, tokens, batch_size, context, seed, rank=0, world=1, device="cpu"):
        self.tokens, self.batch_size, self.context = tokens, batch_size, context
        self.seed, self.rank, self.device = seed, rank, device
        self.tokens_per_item = context
        self.steps_per_epoch = max(1, len(tokens) // (batch_size * context * world))

    def __call__(self, step: int) -> tuple[torch.Tensor, None]:
        generator = torch.Generator().manual_seed(
            self.seed * 1_000_003 + step + self.rank * 999_983_111
        )
        windows = random_windows(self.tokens, self.batch_size, self.context + 1, generator)
        return windows.to(self.device), None
