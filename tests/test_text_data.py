"""Text data: corpora, the two tokenizers, token files and the windows training reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genlearn.data.text import (
    CharTokenizer,
    TokenArrays,
    TokenWindows,
    corpus_files,
    read_chunks,
    tokenizer_from_json,
    train_tokenizer,
    write_tokens,
)
from genlearn.errors import ConfigError, DataError

CORPUS = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40
)
UNICODE = [
    "naïve café — déjà vu",
    "日本語のテキスト、漢字とかな",
    "emoji 🤖🧪👩🏽‍🔬 and flags 🇫🇷",
    "combining e\u0301 and zero\u200bwidth",
    "tabs\tand\r\nwindows line ends\x00nul",
    "",
    " leading and trailing spaces  ",
]


def test_byte_level_bpe_round_trips_any_unicode():
    tokenizer = train_tokenizer("bpe", iter([CORPUS]), vocab_size=300)
    assert 256 < tokenizer.vocab_size <= 300
    for text in UNICODE:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    again = tokenizer_from_json(tokenizer.to_json())
    assert again.encode(CORPUS[:200]) == tokenizer.encode(CORPUS[:200])


def test_bpe_merges_frequent_words():
    tokenizer = train_tokenizer("bpe", iter([CORPUS]), vocab_size=400)
    assert len(tokenizer.encode("Speak, speak.")) < len("Speak, speak.") / 2


def test_char_tokenizer_round_trips_and_names_unknown_characters():
    tokenizer = CharTokenizer.train(iter([CORPUS]))
    assert tokenizer.vocab_size == len(set(CORPUS))
    assert tokenizer.decode(tokenizer.encode("hear me")) == "hear me"
    with pytest.raises(ConfigError, match="'Z' is not in this model's vocabulary"):
        tokenizer.encode("Zounds")
    assert tokenizer_from_json(tokenizer.to_json()).symbols == tokenizer.symbols


def test_a_saved_tokenizer_is_json_not_code(tmp_path):
    with pytest.raises(DataError, match="not a genlearn tokenizer"):
        tokenizer_from_json("{'kind': 'char'}")
    with pytest.raises(DataError):
        tokenizer_from_json('{"kind": "pickle"}')


def test_folders_are_read_in_name_order_and_chunks_end_at_line_ends(tmp_path, monkeypatch):
    (tmp_path / "b.txt").write_text("second file\n")
    (tmp_path / "a.txt").write_text("first file\nline two")
    (tmp_path / "skip.bin").write_bytes(b"\x00")
    files = corpus_files(f"text:{tmp_path}")
    assert [f.name for f in files] == ["a.txt", "b.txt"]
    assert "".join(read_chunks(files)) == "first file\nline two\n\nsecond file\n"
    monkeypatch.setattr("genlearn.data.text.CHUNK_CHARS", 8)
    chunks = list(read_chunks(files))
    assert "".join(chunks) == "first file\nline two\n\nsecond file\n"
    assert all(c.endswith("\n") for c in chunks[:-1])


def test_bad_corpora_get_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        corpus_files(f"text:{tmp_path / 'nope.txt'}")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        list(read_chunks([tmp_path / "latin1.txt"]))
    with pytest.raises(ConfigError, match="text:PATH"):
        corpus_files("wikipedia")


def test_token_files_split_90_10_and_memory_map(tmp_path):
    tokenizer = CharTokenizer.train(iter([CORPUS]))
    counts = write_tokens(tokenizer, iter([CORPUS]), tmp_path)
    assert counts == {
        "train": int(len(CORPUS) * 0.9),
        "validation": len(CORPUS) - int(len(CORPUS) * 0.9),
    }
    arrays = TokenArrays.open(tmp_path, tokenizer.vocab_size)
    assert isinstance(arrays.train, np.memmap) and arrays.train.dtype == np.uint16
    whole = np.concatenate([arrays.train, arrays.validation])
    assert tokenizer.decode(whole.tolist()) == CORPUS
    assert not list(tmp_path.glob("*.part"))


def test_windows_are_a_function_of_the_step():
    tokens = np.arange(1000, dtype=np.uint16)
    windows = TokenWindows(tokens, batch_size=4, context=8, seed=3)
    first, _ = windows(5)
    assert first.shape == (4, 9) and first.dtype == torch.int64
    assert torch.equal((first[:, 1:] - first[:, :-1]), torch.ones(4, 8, dtype=torch.long))
    assert torch.equal(windows(5)[0], first)
    assert not torch.equal(windows(6)[0], first)
    with pytest.raises(DataError, match="fewer than one window"):
        TokenWindows(tokens[:5], 2, 8, 0)(0)


def test_text_corpora_are_listed_and_image_verbs_point_to_gpt(monkeypatch, tmp_path):
    from genlearn.data import get_dataset
    from genlearn.data.text import text_corpora

    monkeypatch.setenv("GENLEARN_DATA", str(tmp_path))
    monkeypatch.setenv("GENLEARN_CACHE", str(tmp_path / "cache"))
    names = {name: status for name, status, _ in text_corpora()}
    assert names["shakespeare"].startswith("downloadable") and "text:PATH" in names
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "tinyshakespeare.txt").write_text("First Citizen:\n")
    assert text_corpora()[0][1].startswith("found")
    with pytest.raises(DataError, match="genlearn train gpt --data shakespeare"):
        get_dataset("shakespeare")


def test_an_empty_corpus_and_a_damaged_token_file_are_refused(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="has no text"):
        train_tokenizer("char", read_chunks([empty]))
    tokenizer = CharTokenizer.train(iter(["abcdefgh" * 50]))
    counts = write_tokens(tokenizer, iter(["abcdefgh" * 50]), tmp_path / "tokens")
    assert len(TokenArrays.open(tmp_path / "tokens", 8, counts).validation) == 40
    (tmp_path / "tokens" / "validation.bin").write_bytes(b"\x00" * 10)  # 5 two-byte tokens
    with pytest.raises(DataError, match=r"holds 5 tokens, not the 40 written"):
        TokenArrays.open(tmp_path / "tokens", 8, counts)
    with pytest.raises(DataError, match="saved.json is not a genlearn tokenizer"):
        tokenizer_from_json("{", "saved.json")
