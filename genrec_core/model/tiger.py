"""TIGER-style generative retrieval: a T5 encoder-decoder reads a user's history as SID tokens and
decodes the next item's SID with beam search constrained to the catalogue's SID trie.

Tensor layout: a history of h items becomes h*L SID tokens (oldest first) followed by EOS and
right-padded with PAD; the label of a training pair is the target's L SID tokens followed by EOS.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, T5Config, T5ForConditionalGeneration

from genrec_core.config import TrainConfig
from genrec_core.device import resolve_device
from genrec_core.model.sid_vocab import EOS, PAD, SidVocab
from genrec_core.model.trie import SidTrie


def build_model(vocab: SidVocab, cfg: TrainConfig, seed: int) -> T5ForConditionalGeneration:
    """Randomly initialised T5 over the SID vocabulary (weights depend only on `seed` and `cfg`)."""
    config = T5Config(
        vocab_size=vocab.vocab_size,
        d_model=cfg.d_model,
        d_ff=cfg.d_ff,
        num_layers=cfg.num_layers,
        num_decoder_layers=cfg.num_decoder_layers,
        num_heads=cfg.num_heads,
        d_kv=cfg.d_kv,
        dropout_rate=cfg.dropout,
        feed_forward_proj="relu",
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
        # transformers 5.x always ties T5's input and output embeddings; this flag only keeps the
        # original-T5 rescaling of decoder outputs by d_model**-0.5, which suits tied embeddings.
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config)


def make_training_pairs(sequences: list[np.ndarray], max_history: int) -> list[tuple[np.ndarray, int]]:
    """Every prefix of every training sequence predicts its next item.

    sequences: item indices in time order, validation/test items already removed.
    Returns (history int[<=max_history], target) pairs, sequence by sequence, position by position.
    """
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    pairs: list[tuple[np.ndarray, int]] = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for t in range(1, len(seq)):
            pairs.append((seq[max(0, t - max_history):t], int(seq[t])))
    return pairs


def encode_histories(histories: list[np.ndarray], item_tokens: np.ndarray,
                     max_history: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Histories -> encoder inputs.

    histories: item indices, most recent last; only the last `max_history` are kept.
    item_tokens: int[n_items, L] SID tokens per item.
    Returns input_ids LongTensor[b, T] (h*L tokens, EOS, then PAD) and attention_mask LongTensor[b, T].
    """
    item_tokens = np.asarray(item_tokens, dtype=np.int64)
    rows = []
    for hist in histories:
        hist = np.asarray(hist, dtype=np.int64)[-max_history:] if max_history > 0 else np.zeros(0, np.int64)
        rows.append(np.append(item_tokens[hist].reshape(-1), EOS))
    width = max((len(r) for r in rows), default=1)
    ids = np.full((len(rows), width), PAD, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def label_table(item_tokens: np.ndarray) -> np.ndarray:
    """int64[n_items, L+1]: each item's SID tokens followed by EOS (the decoder target)."""
    item_tokens = np.asarray(item_tokens, dtype=np.int64)
    return np.concatenate([item_tokens, np.full((len(item_tokens), 1), EOS, np.int64)], axis=1)


class TrieLogitsProcessor(LogitsProcessor):
    """Masks every token the trie does not allow after each beam's decoder prefix to -inf.

    Same constraint as `generate(prefix_allowed_tokens_fn=trie.prefix_allowed_tokens_fn())`, but the
    built-in processor indexes the mask once per beam (a device sync each on GPU); this one moves the
    prefixes to the host once per step and writes the whole mask with one indexed assignment.
    """

    def __init__(self, trie: SidTrie) -> None:
        self._trie = trie

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """input_ids LongTensor[R, t] decoder prefixes; scores FloatTensor[R, V] -> masked scores."""
        rows, tokens = self._trie.allowed_pairs(input_ids.cpu().numpy())
        mask = torch.full_like(scores, -math.inf)
        mask[torch.from_numpy(rows).to(scores.device), torch.from_numpy(tokens).to(scores.device)] = 0.0
        return scores + mask


def beam_items(model: T5ForConditionalGeneration, histories: list[np.ndarray], item_tokens: np.ndarray,
               trie: SidTrie, num_beams: int, batch_size: int, max_history: int, device: str,
               progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(int64[n, num_beams] every beam's item, -1 where it is none; float32[n, num_beams] beam scores),
    best first, batch by batch: what `recommend` reduces to distinct top-k items, with the scores."""
    dev = torch.device(resolve_device(device))
    model.to(dev).eval()
    L = trie.num_levels
    items = np.full((len(histories), num_beams), -1, dtype=np.int64)
    scores = np.full((len(histories), num_beams), -np.inf, dtype=np.float32)
    for start in range(0, len(histories), batch_size):
        chunk = histories[start:start + batch_size]
        ids, mask = encode_histories(chunk, item_tokens, max_history)
        with torch.inference_mode():
            out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), num_beams=num_beams,
                                 num_return_sequences=num_beams, max_new_tokens=L + 1, do_sample=False,
                                 early_stopping=True, return_dict_in_generate=True, output_scores=True,
                                 logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie)]))
        seqs = out.sequences.cpu().numpy().reshape(len(chunk), num_beams, -1)
        beam_scores = out.sequences_scores.float().cpu().numpy().reshape(len(chunk), num_beams)
        for u in range(len(chunk)):
            for b, seq in enumerate(seqs[u]):
                ok = len(seq) > L + 1 and seq[1 + L] == EOS
                item = trie.item_of(seq[1:1 + L]) if ok else None
                if item is not None:
                    items[start + u, b], scores[start + u, b] = item, beam_scores[u, b]
        if progress is not None:
            progress(start + len(chunk), len(histories))
    return items, scores
