"""TIGER-style generative retrieval: a T5 encoder-decoder reads a user's history as SID tokens and
decodes the next item's SID with beam search constrained to the catalogue's SID trie.

Tensor layout: a history of h items becomes h*L SID tokens (oldest first) followed by EOS and
right-padded with PAD; the label of a training pair is the target's L SID tokens followed by EOS.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, T5Config, T5ForConditionalGeneration

from genrec_core.config import TrainConfig
from genrec_core.device import resolve_device
from genrec_core.model.sid_vocab import EOS, PAD, SidVocab
from genrec_core.model.trie import SidTrie


@dataclass(frozen=True)
class TrainResult:
    steps: int
    epochs: float
    final_loss: float
    mean_loss_last_100: float
    seconds: float
    stopped_by: str  # "max_steps" or "max_minutes"


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


def _label_table(item_tokens: np.ndarray) -> np.ndarray:
    """int64[n_items, L+1]: each item's SID tokens followed by EOS (the decoder target)."""
    item_tokens = np.asarray(item_tokens, dtype=np.int64)
    return np.concatenate([item_tokens, np.full((len(item_tokens), 1), EOS, np.int64)], axis=1)


def _lr_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup to 1, then inverse-sqrt decay; needs no total step count, since the wall-clock
    budget may end training long before max_steps."""
    s = step + 1
    w = max(1, warmup_steps)
    return s / w if s < w else math.sqrt(w / s)


def _make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW without weight decay on layer norms (decaying their scales only hurts)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless stream of index batches, reshuffled every epoch; the last batch of an epoch may be short."""
    while True:
        perm = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield perm[start:start + batch_size]


def train(model: T5ForConditionalGeneration, pairs: list[tuple[np.ndarray, int]], item_tokens: np.ndarray,
          cfg: TrainConfig, seed: int, device: str, clock: Callable[[], float] = time.monotonic,
          progress: Callable[[int, float], None] | None = None) -> TrainResult:
    """Teacher-forced next-item training until cfg.max_steps or cfg.max_minutes of `clock`, whichever first."""
    if not pairs:
        raise ValueError("no training pairs")
    dev = torch.device(resolve_device(device))
    model.to(dev).train()
    torch.manual_seed(seed)  # dropout masks
    opt = _make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, cfg.warmup_steps))
    labels_of = _label_table(item_tokens)
    targets = np.fromiter((t for _, t in pairs), dtype=np.int64, count=len(pairs))
    batches = _batches(len(pairs), cfg.batch_size, np.random.default_rng(seed))
    budget_s, start = cfg.max_minutes * 60.0, clock()
    losses: list[float] = []
    seen, stopped_by = 0, "max_steps"
    while len(losses) < cfg.max_steps:
        if clock() - start >= budget_s:
            stopped_by = "max_minutes"
            break
        idx = next(batches)
        ids, mask = encode_histories([pairs[i][0] for i in idx], item_tokens, cfg.max_history)
        labels = torch.from_numpy(labels_of[targets[idx]])
        losses.append(_train_step(model, opt, sched, ids.to(dev), mask.to(dev), labels.to(dev)))
        seen += len(idx)
        if progress is not None:
            progress(len(losses), losses[-1])
    model.eval()
    return TrainResult(steps=len(losses), epochs=seen / len(pairs),
                       final_loss=losses[-1] if losses else float("nan"),
                       mean_loss_last_100=float(np.mean(losses[-100:])) if losses else float("nan"),
                       seconds=float(clock() - start), stopped_by=stopped_by)


def _train_step(model: T5ForConditionalGeneration, opt: torch.optim.Optimizer,
                sched: torch.optim.lr_scheduler.LRScheduler, ids: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor) -> float:
    """One AdamW step on a batch: ids/mask LongTensor[b, T], labels LongTensor[b, L+1]. Returns the loss."""
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return float(loss.detach())


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


def recommend(model: T5ForConditionalGeneration, histories: list[np.ndarray], item_tokens: np.ndarray,
              trie: SidTrie, k: int, num_beams: int, batch_size: int, max_history: int, device: str,
              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Top-k next items per history by trie-constrained beam search.

    Returns int64[len(histories), k] item indices, best first, distinct within a row; -1 fills rows
    for which fewer than k valid items came back. `progress(users_done, users_total)` after each batch.
    """
    if not 1 <= k <= num_beams:
        raise ValueError(f"need 1 <= k <= num_beams, got k={k}, num_beams={num_beams}")
    dev = torch.device(resolve_device(device))
    model.to(dev).eval()
    out = np.full((len(histories), k), -1, dtype=np.int64)
    for start in range(0, len(histories), batch_size):
        chunk = histories[start:start + batch_size]
        seqs = _beam_search(model, chunk, item_tokens, trie, num_beams, max_history, dev)
        for i, beams in enumerate(seqs):
            out[start + i] = _first_k_items(beams, trie, k)
        if progress is not None:
            progress(start + len(chunk), len(histories))
    return out


def _beam_search(model: T5ForConditionalGeneration, histories: list[np.ndarray], item_tokens: np.ndarray,
                 trie: SidTrie, num_beams: int, max_history: int, dev: torch.device) -> np.ndarray:
    """Returns int64[b, num_beams, t] decoder sequences (start token first), best beam first."""
    ids, mask = encode_histories(histories, item_tokens, max_history)
    with torch.inference_mode():
        seqs = model.generate(
            input_ids=ids.to(dev), attention_mask=mask.to(dev),
            num_beams=num_beams, num_return_sequences=num_beams,
            max_new_tokens=trie.num_levels + 1, do_sample=False, early_stopping=True,
            logits_processor=LogitsProcessorList([TrieLogitsProcessor(trie)]),
        )
    return seqs.cpu().numpy().reshape(len(histories), num_beams, -1)


def _first_k_items(beams: np.ndarray, trie: SidTrie, k: int) -> np.ndarray:
    """beams int[num_beams, t] sorted best first -> int64[k] first k distinct valid items, -1 padded.

    Every finished beam has the same length (L tokens + EOS), so the length penalty cannot reorder
    them; placeholder or dead beams map to no item and are skipped.
    """
    found: list[int] = []
    for seq in beams:
        L = trie.num_levels
        item = trie.item_of(seq[1:1 + L]) if len(seq) > L + 1 and seq[1 + L] == EOS else None
        if item is not None and item not in found:
            found.append(item)
            if len(found) == k:
                break
    return np.array(found + [-1] * (k - len(found)), dtype=np.int64)
