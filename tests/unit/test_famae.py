"""FAMAE in plain torch: field codes, masking, examples, determinism, learning, and the vectors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from genrec_core.config import FAMAEConfig  # noqa: E402
from genrec_core.embed import famae as M  # noqa: E402

SMALL = FAMAEConfig(d_model=16, num_layers=1, num_heads=2, max_history=4, batch_size=32, steps=5,
                    learning_rate=3e-3)


def _toy(n_cats: int = 4, per_cat: int = 6, users_per_cat: int = 6, length: int = 6):
    """Items of category c all have brand c; every user stays inside one category, so a target's
    brand and category are predictable from its history."""
    rng = np.random.default_rng(0)
    cats = [f"Top{c % 2} > Cat{c}" for c in range(n_cats) for _ in range(per_cat)]
    brands = [f"Brand{c}" for c in range(n_cats) for _ in range(per_cat)]
    histories = [rng.integers(c * per_cat, (c + 1) * per_cat, length)
                 for c in range(n_cats) for _ in range(users_per_cat)]
    return M.item_fields(brands, cats), histories, cats


def test_item_fields_codes_and_missing_values():
    f = M.item_fields(["b", None, "a", " "], ["X > Y", "X", None, "Z > Y"])
    assert f.names == ("item_id", "brand", "category_1", "category_2")
    assert f.codes[:, 0].tolist() == [0, 1, 2, 3]
    # Vocabularies are sorted with the missing value at 0; blank brands count as missing.
    assert f.codes[:, 1].tolist() == [2, 0, 1, 0]
    assert f.codes[:, 2].tolist() == [1, 1, 0, 2]
    # Level 2 is the path down to it, so "X > Y" and "Z > Y" differ.
    assert f.codes[:, 3].tolist() == [1, 0, 0, 2]
    assert f.vocab_sizes == (4, 3, 3, 3)


@pytest.mark.parametrize("n_fields", [1, 2, 5])
def test_mask_hides_between_one_and_all_fields(n_fields):
    mask = M.sample_field_mask(4000, n_fields, torch.Generator().manual_seed(0))
    k = mask.sum(1)
    assert mask.shape == (4000, n_fields) and k.min() >= 1 and k.max() <= n_fields
    # Every K in 1..J occurs, and every field gets masked.
    assert set(k.tolist()) == set(range(1, n_fields + 1))
    assert (mask.sum(0) > 0).all()


def test_examples_predict_each_next_item_from_its_history():
    histories = [[5, 6, 7], [1], [2, 3]]
    ex = M.make_examples(histories)
    history, target = ex.batch(torch.arange(len(ex)), max_history=2)
    got = [(h.tolist(), t) for h, t in zip(history, target.tolist())]
    assert got == [([-1, 5], 6), ([5, 6], 7), ([-1, 2], 3)]


def test_forward_shapes_and_masked_fields_do_not_leak():
    fields, histories, _ = _toy()
    torch.manual_seed(0)
    model = M.FAMAE(fields, SMALL).eval()
    ex = M.make_examples(histories)
    history, target = ex.batch(torch.arange(8), SMALL.max_history)
    mask = torch.zeros(8, len(fields.vocab_sizes), dtype=torch.bool)
    mask[:, 0] = True
    state = model(history, target, mask)
    assert state.shape == (8, SMALL.d_model)
    assert model.field_logits(state, 1, 10.0).shape == (8, fields.vocab_sizes[1])
    # With only the id masked, swapping the target for an item of the same brand and category
    # must not change the output: the masked id is invisible.
    same_fields = target + torch.where(target % 6 == 0, 1, -1)
    assert torch.allclose(model(history, same_fields, mask), state, atol=1e-6)


def test_training_is_deterministic_under_a_seed():
    fields, histories, _ = _toy()
    a = M.train_famae(fields, histories, SMALL, seed=7)
    b = M.train_famae(fields, histories, SMALL, seed=7)
    c = M.train_famae(fields, histories, SMALL, seed=8)
    assert a.losses == b.losses and len(a.losses) == SMALL.steps
    assert np.array_equal(M.item_vectors(a.model), M.item_vectors(b.model))
    assert a.losses != c.losses


def test_loss_falls_when_fields_are_predictable():
    fields, histories, _ = _toy()
    cfg = dataclasses.replace(SMALL, steps=80)
    losses = M.train_famae(fields, histories, cfg, seed=0).losses
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_vectors_concatenate_normalised_field_embeddings():
    fields, histories, cats = _toy()
    model = M.train_famae(fields, histories, SMALL, seed=0).model
    vectors = M.item_vectors(model)
    j, d = len(fields.vocab_sizes), SMALL.d_model
    assert vectors.shape == (len(cats), j * d)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    parts = vectors.reshape(len(cats), j, d) * np.sqrt(j)
    np.testing.assert_allclose(np.linalg.norm(parts, axis=2), 1.0, atol=1e-5)
    # Part j is field j's embedding of the item's value, so items sharing a brand share that part.
    brand = model.tables[1].weight.detach().numpy()[fields.codes[:, 1]]
    np.testing.assert_allclose(parts[:, 1], brand / np.linalg.norm(brand, axis=1, keepdims=True), atol=1e-5)


def test_cold_items_get_their_category_mean_id_part():
    fields, histories, cats = _toy()
    model = M.train_famae(fields, histories, SMALL, seed=0).model
    warm = np.ones(len(cats), dtype=bool)
    warm[[0, 7]] = False
    j, d = len(fields.vocab_sizes), SMALL.d_model
    plain = M.item_vectors(model).reshape(len(cats), j, d)
    filled = M.item_vectors(model, warm, cats).reshape(len(cats), j, d)
    # Only the cold items' id parts change; item 0's becomes the mean of items 1..5 (same category).
    changed = np.flatnonzero(np.abs(filled - plain).max(axis=(1, 2)) > 0)
    assert changed.tolist() == [0, 7]
    assert np.array_equal(filled[:, 1:], plain[:, 1:])
    mean = plain[1:6, 0].sum(0)
    np.testing.assert_allclose(filled[0, 0], mean / np.linalg.norm(mean) / np.sqrt(j), atol=1e-5)
