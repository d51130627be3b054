"""TIGER model: data encoding, seeded training, wall-clock budget and constrained beam search."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from genrec_core.config import TrainConfig
from genrec_core.model import recommenders, tiger
from genrec_core.model.sid_vocab import EOS, PAD, SidVocab
from genrec_core.model.training import LoopConfig, fit

N_ITEMS = 30
TINY = TrainConfig(d_model=32, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2, d_kv=16,
                   dropout=0.0, max_history=5, batch_size=32, learning_rate=3e-3, warmup_steps=20,
                   max_steps=200, max_minutes=5.0, device="cpu")


def _catalogue() -> tuple[SidVocab, np.ndarray]:
    """30 items with distinct 3-level SIDs, as tokens int[30, 3]."""
    vocab = SidVocab((4, 4, 2))
    codes = np.array([[i // 8, (i // 2) % 4, i % 2] for i in range(N_ITEMS)])
    return vocab, vocab.codes_to_tokens(codes)


def _successor_sequences(n_users: int, seed: int) -> list[np.ndarray]:
    """Toy task: item i is always followed by item (i + 1) % 30."""
    rng = np.random.default_rng(seed)
    return [(rng.integers(N_ITEMS) + np.arange(rng.integers(3, 8))) % N_ITEMS for _ in range(n_users)]


def _eval_histories() -> list[np.ndarray]:
    return [np.array([(i - 2) % N_ITEMS, (i - 1) % N_ITEMS, i]) for i in range(N_ITEMS)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiger(cfg: TrainConfig, seed: int):
    vocab, tokens = _catalogue()
    spec = recommenders.make_spec(dataclasses.replace(cfg, model="tiger"), vocab.level_sizes, N_ITEMS, "m")
    return recommenders.build(spec, tokens, seed)


def _loop(cfg: TrainConfig) -> LoopConfig:
    return LoopConfig(batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
                      warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps, max_minutes=cfg.max_minutes,
                      eval_every=cfg.max_steps, patience=1)


@pytest.fixture(scope="module")
def trained(one_torch_thread):
    rec = _tiger(TINY, seed=0)
    examples = rec.examples(_successor_sequences(60, seed=0))
    state, _ = fit(rec.module, rec.loss, examples, _loop(TINY), seed=0, device="cpu")
    return rec.module, rec.item_tokens, rec.trie, state, rec


def test_make_training_pairs():
    pairs = tiger.make_training_pairs([np.array([4, 5, 6, 7]), np.array([9]), np.array([1, 2])], max_history=2)
    assert [(h.tolist(), t) for h, t in pairs] == [([4], 5), ([4, 5], 6), ([5, 6], 7), ([1], 2)]


def test_encode_histories_layout():
    tokens = np.array([[2, 5], [3, 6], [4, 5]])
    ids, mask = tiger.encode_histories([np.array([0, 1, 2]), np.array([2]), np.array([], dtype=np.int64)],
                                       tokens, max_history=2)
    assert ids.dtype == torch.long and ids.shape == mask.shape == (3, 5)
    assert ids.tolist() == [[3, 6, 4, 5, EOS], [4, 5, EOS, PAD, PAD], [EOS, PAD, PAD, PAD, PAD]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]


def test_build_model_matches_config_and_seed():
    vocab, _ = _catalogue()
    a, b = tiger.build_model(vocab, TINY, seed=1), tiger.build_model(vocab, TINY, seed=1)
    c = tiger.build_model(vocab, TINY, seed=2)
    assert a.config.vocab_size == vocab.vocab_size and a.config.d_model == 32
    assert (a.config.pad_token_id, a.config.eos_token_id, a.config.decoder_start_token_id) == (PAD, EOS, PAD)
    assert a.config.num_layers == 1 and a.config.num_decoder_layers == 1 and a.config.num_heads == 2
    assert torch.equal(a.shared.weight, b.shared.weight)
    assert not torch.equal(a.shared.weight, c.shared.weight)


def test_learns_successor_task(trained):
    model, tokens, trie, state, rec = trained
    assert state.step == TINY.max_steps and state.stopped_by == "max_steps"
    assert state.curve[-1]["train_loss"] < 1.0
    ranked = rec.rank(_eval_histories(), 5, num_beams=10, batch_size=16, device="cpu").kept
    targets = (np.arange(N_ITEMS) + 1) % N_ITEMS
    assert (ranked[:, 0] == targets).mean() >= 0.6  # chance is 1/30


def test_recommend_returns_valid_distinct_items(trained):
    *_, rec = trained
    rng = np.random.default_rng(5)
    histories = [rng.integers(0, N_ITEMS, size=rng.integers(0, 9)) for _ in range(20)]
    ranked = rec.rank(histories, 8, num_beams=8, batch_size=7, device="cpu").kept
    assert ranked.shape == (20, 8)
    for row in ranked:
        assert ((row >= 0) & (row < N_ITEMS)).all()
        assert len(set(row.tolist())) == len(row)


def test_beam_ranking_equals_exact_scoring(trained):
    """With as many beams as items the search is exhaustive, so the ranking must follow the exact
    teacher-forced log-likelihood of each item's SID + EOS."""
    model, tokens, trie, *_ = trained
    histories = _eval_histories()[:6]
    ranked, _ = tiger.beam_items(model, histories, tokens, trie, N_ITEMS, 6, TINY.max_history, "cpu")
    labels = torch.from_numpy(np.concatenate([tokens, np.full((N_ITEMS, 1), EOS)], axis=1))
    for row, hist in zip(ranked, histories):
        ids, mask = tiger.encode_histories([hist] * N_ITEMS, tokens, TINY.max_history)
        with torch.inference_mode():
            logp = model(input_ids=ids, attention_mask=mask, labels=labels).logits.log_softmax(-1)
        exact = logp.gather(2, labels[:, :, None]).sum(dim=(1, 2)).numpy()
        assert sorted(row.tolist()) == list(range(N_ITEMS))
        assert (np.diff(exact[row]) <= 1e-4).all()


def test_processor_matches_prefix_allowed_tokens_fn(trained):
    model, tokens, trie, *_ = trained
    ids, mask = tiger.encode_histories(_eval_histories()[:8], tokens, TINY.max_history)
    common = dict(input_ids=ids, attention_mask=mask, num_beams=6, num_return_sequences=6,
                  max_new_tokens=trie.num_levels + 1, early_stopping=True, do_sample=False)
    with torch.inference_mode():
        via_fn = model.generate(prefix_allowed_tokens_fn=trie.prefix_allowed_tokens_fn(), **common)
        via_proc = model.generate(logits_processor=LogitsProcessorList([tiger.TrieLogitsProcessor(trie)]), **common)
    assert torch.equal(via_fn, via_proc)


def test_small_catalogue_pads_with_minus_one():
    vocab = SidVocab((2, 2))
    tokens = vocab.codes_to_tokens(np.array([[0, 0], [0, 1], [1, 1]]))
    spec = recommenders.make_spec(dataclasses.replace(TINY, model="tiger", max_history=3), (2, 2), 3, "m")
    rec = recommenders.build(spec, tokens, 0)
    ranking = rec.rank([np.array([0, 1]), np.array([2])], 5, num_beams=5, batch_size=4, device="cpu")
    for row, scores in zip(ranking.kept, ranking.kept_scores):
        assert sorted(row[:3].tolist()) == [0, 1, 2] and row[3:].tolist() == [-1, -1]
        assert np.isfinite(scores[:3]).all() and np.isneginf(scores[3:]).all()
    assert ranking.invalid_share == pytest.approx(0.4)


def _short_run(seed: int, cfg: TrainConfig):
    rec = _tiger(cfg, seed)
    state, _ = fit(rec.module, rec.loss, rec.examples(_successor_sequences(20, seed=1)), _loop(cfg), seed=seed,
                   device="cpu")
    return state, rec.module.shared.weight.detach().clone()


def test_training_is_deterministic_for_a_seed():
    cfg = dataclasses.replace(TINY, max_steps=4, dropout=0.1, batch_size=8)
    (r1, w1), (r2, w2) = _short_run(3, cfg), _short_run(3, cfg)
    assert r1.curve[-1]["train_loss"] == r2.curve[-1]["train_loss"] and torch.equal(w1, w2)
    r3, w3 = _short_run(4, cfg)
    assert not torch.equal(w1, w3)
