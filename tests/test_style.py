"""The style-transfer losses against hand computations."""

from __future__ import annotations

import torch

from genlearn.models.style import content_loss, gram_matrix, style_loss, total_variation


def test_gram_matrix_by_hand():
    # two channels over a 1 x 2 map: F = [[1, 2], [3, 4]]
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    # F F^T = [[1 + 4, 3 + 8], [3 + 8, 9 + 16]], divided by C H W = 4
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(features), expected)


def test_gram_matrix_ignores_where_features_are():
    features = torch.randn(1, 8, 5, 7)
    shuffled = features.flatten(2)[:, :, torch.randperm(35)].reshape(1, 8, 5, 7)
    torch.testing.assert_close(gram_matrix(features), gram_matrix(shuffled))


def test_losses_vanish_at_their_targets_and_grow_away():
    features = {"a": torch.randn(1, 4, 6, 6), "b": torch.randn(1, 8, 3, 3)}
    grams = {name: gram_matrix(f) for name, f in features.items()}
    assert style_loss(features, grams).item() == 0.0
    assert content_loss(features["a"], features["a"]).item() == 0.0
    moved = {name: f + 0.5 for name, f in features.items()}
    assert style_loss(moved, grams).item() > 0
    torch.testing.assert_close(content_loss(features["a"] + 0.5, features["a"]), torch.tensor(0.25))


def test_total_variation_by_hand():
    image = torch.tensor([[[[0.0, 1.0], [1.0, 3.0]]]])
    # across: |1 - 0|, |3 - 1| -> mean 1.5; down: |1 - 0|, |3 - 1| -> mean 1.5
    assert total_variation(image).item() == 3.0
    assert total_variation(torch.ones(1, 3, 4, 4)).item() == 0.0
