"""`shapes-captions`: captions match the pictures' factors, held-out pairs stay out of training."""

from __future__ import annotations

import numpy as np
import pytest

from genlearn.data.shapes_captions import (
    COLOURS,
    RGB,
    SHAPES,
    caption,
    load_shapes_captions,
    parse_caption,
    render,
    uses_held_out_pair,
)
from genlearn.errors import ConfigError


@pytest.fixture(scope="module")
def splits():
    return load_shapes_captions(32)


def test_splits_sizes_and_held_out_pairs(splits):
    assert [len(splits[k].captions) for k in ("train", "test", "held_out")] == [8000, 1000, 1000]
    assert splits["train"].images.shape == (8000, 3, 32, 32)
    assert not uses_held_out_pair(splits["train"].factors.numpy()).any()
    assert uses_held_out_pair(splits["held_out"].factors.numpy()).all()
    assert "a red triangle" not in " ".join(splits["train"].captions).replace("small ", "").replace(
        "large ", ""
    )
    # yet every colour and every shape appears in training
    train = splits["train"].factors.numpy()
    assert set(train[:, 1]) == set(range(len(COLOURS))) and set(train[:, 2]) == set(
        range(len(SHAPES))
    )


def test_captions_round_trip_and_bad_captions_are_explained(splits):
    for factors, text in zip(
        splits["test"].factors[:50].numpy(), splits["test"].captions[:50], strict=True
    ):
        assert caption(factors) == text
        assert np.array_equal(parse_caption(text), factors)
    with pytest.raises(ConfigError, match="no arrangement"):
        parse_caption("a small red circle near a large blue square")
    with pytest.raises(ConfigError, match="'purple' is not one of"):
        parse_caption("a small purple circle above a large blue square")


def test_the_picture_shows_the_caption():
    # a large red circle left of a small blue square: red on the left, blue on the right
    factors = np.array([[1, COLOURS.index("red"), 0, 0, 0, COLOURS.index("blue"), 1]])
    image = render(factors, 32, np.random.default_rng(0))[0].astype(float)
    red = np.all(np.abs(image - RGB["red"]) < 30, axis=-1)
    blue = np.all(np.abs(image - RGB["blue"]) < 30, axis=-1)
    assert red.sum() > blue.sum() > 10  # the large one covers more
    assert np.nonzero(red)[1].mean() < np.nonzero(blue)[1].mean()  # and sits to the left
