"""A decoder-only generative recommender over flattened SID tokens.

A user's items become one token stream, EOS first as a start token and then each item's L SID tokens
oldest first: [EOS, s(i1)_1 .. s(i1)_L, s(i2)_1 .. s(i2)_L, ...]. A GPT-2 is trained with the next-token
loss at every SID token, so one sequence of n items teaches n next-item predictions in one pass, where
TIGER's encoder-decoder teaches one. Decoding feeds the history and generates L tokens by beam search
constrained to the catalogue's SID trie.

Two beam searches give the same beams: `beam_items` runs the history through the model once, copies its
key/value cache to the beams and masks with the trie's dense tables, all in tensors; `generate_beam_items`
is transformers' `generate` with a trie logits processor, the simple reference (it runs the prompt once
per beam and asks the trie per beam in Python: 4 to 7 times slower on 2 CPU cores, 10 to 20 beams).

Sequences are left-padded, and position ids count from the first real token (what `generate` derives
from the attention mask), so training and decoding see the same positions.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LogitsProcessor,
    LogitsProcessorList,
)

from genrec_core.model.beams import beam_result, rank_in_batches, trie_step
from genrec_core.model.sid_vocab import EOS, PAD, SidVocab
from genrec_core.model.trie import SidTrie

IGNORE = -100  # label of a token that carries no loss (padding and the start token)


def build_model(vocab: SidVocab, *, d_model: int, d_ff: int, num_layers: int, num_heads: int,
                dropout: float, max_history: int, seed: int) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 over the SID vocabulary, long enough for max_history + 1 items."""
    config = GPT2Config(vocab_size=vocab.vocab_size, n_positions=1 + (max_history + 1) * vocab.num_levels,
                        n_embd=d_model, n_inner=d_ff, n_layer=num_layers, n_head=num_heads,
                        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                        bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD, loss_type="ForCausalLM")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"  # the config's own field is not read back; without it transformers warns
    return model


def make_examples(sequences: list[np.ndarray], max_history: int) -> list[np.ndarray]:
    """Training sequences -> chunks of at most max_history + 1 items, cut from the end of each sequence
    (the latest items keep the longest context). Sequences of one item teach nothing and are dropped."""
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}")
    width = max_history + 1
    out: list[np.ndarray] = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for end in range(len(seq), 1, -width):
            out.append(seq[max(0, end - width):end])
    return out


def encode(sequences: list[np.ndarray], item_tokens: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Item-index sequences -> (input_ids, attention_mask, position_ids, labels), each LongTensor[b, T],
    left-padded to the longest row; labels are the inputs with IGNORE on padding and the start token."""
    item_tokens = np.asarray(item_tokens, dtype=np.int64)
    rows = [np.concatenate([[EOS], item_tokens[np.asarray(s, dtype=np.int64)].reshape(-1)]) for s in sequences]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), PAD, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    labels = np.where(mask == 1, ids, IGNORE)
    labels[np.arange(len(rows)), width - np.array([len(r) for r in rows])] = IGNORE  # the start token
    positions = np.maximum(mask.cumsum(axis=1) - 1, 0)
    return tuple(torch.from_numpy(a) for a in (ids, mask, positions, labels))


def loss(model: GPT2LMHeadModel, sequences: list[np.ndarray], item_tokens: np.ndarray,
         device: torch.device) -> torch.Tensor:
    """Mean next-token cross-entropy over every SID token of the batch."""
    ids, mask, positions, labels = (t.to(device) for t in encode(sequences, item_tokens))
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, labels=labels).loss


class _PromptTrieProcessor(LogitsProcessor):
    """Masks every token the trie does not allow after the tokens generated so far (those after the
    prompt) to -inf, for the whole [beams, vocab] score matrix in one indexed assignment."""

    def __init__(self, trie: SidTrie, prompt_len: int) -> None:
        self._trie, self._prompt_len = trie, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # allowed_pairs skips its first column (a decoder start token): hand it the last prompt token.
        rows, tokens = self._trie.allowed_pairs(input_ids[:, self._prompt_len - 1:].cpu().numpy())
        mask = torch.full_like(scores, -math.inf)
        mask[torch.from_numpy(rows).to(scores.device), torch.from_numpy(tokens).to(scores.device)] = 0.0
        return scores + mask


def beam_items(model: GPT2LMHeadModel, histories: list[np.ndarray], item_tokens: np.ndarray, trie: SidTrie,
               num_beams: int, max_history: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(int64[b, num_beams] the items of each history's beams, best first, -1 where a beam is no item;
    float32[b, num_beams] their mean log-probability per SID token)."""
    hist = [np.asarray(h, dtype=np.int64)[-max_history:] for h in histories]
    ids, mask, positions, _ = (t.to(device) for t in encode(hist, item_tokens))
    tables = trie.tables()
    child = [torch.from_numpy(c).to(device) for c in tables.child]
    b, L = len(hist), trie.num_levels
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1]
        node = torch.zeros((b, 1), dtype=torch.long, device=device)  # every row starts at the root
        score = torch.zeros((b, 1), dtype=torch.float32, device=device)
        last_pos = positions[:, -1]
        for d in range(L):
            lo, w = tables.lo[d], tables.width[d]
            logp = logits.float().log_softmax(-1)[:, lo:lo + w].view(b, -1, w)
            width = node.shape[1]  # the beams of the last step, before this one
            node, score, parent, index = trie_step(child[d], node, score, logp, num_beams)
            if d == L - 1:
                break
            # the beams' rows in the flat [b * beams] batch of the last step, then one step on their tokens
            rows = (torch.arange(b, device=device)[:, None] * width + parent).view(-1)
            cache.reorder_cache(rows)
            mask = torch.cat([mask[rows], torch.ones_like(mask[rows, :1])], dim=1)
            last_pos = last_pos[rows] + 1
            token = (index + lo).view(-1, 1)
            out = model(input_ids=token, attention_mask=mask, position_ids=last_pos[:, None],
                        past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1]
    return beam_result(node, score, tables, L, num_beams)


def generate_beam_items(model: GPT2LMHeadModel, histories: list[np.ndarray], item_tokens: np.ndarray,
                        trie: SidTrie, num_beams: int, max_history: int,
                        device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """`beam_items` through transformers' `generate`: the reference the cached search is tested against."""
    hist = [np.asarray(h, dtype=np.int64)[-max_history:] for h in histories]
    ids, mask, _, _ = encode(hist, item_tokens)
    L = trie.num_levels
    with torch.inference_mode():
        out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=num_beams,
                             num_return_sequences=num_beams, max_new_tokens=L, min_new_tokens=L,
                             do_sample=False, pad_token_id=PAD, eos_token_id=None,
                             return_dict_in_generate=True, output_scores=True,
                             logits_processor=LogitsProcessorList([_PromptTrieProcessor(trie, ids.shape[1])]))
    new = out.sequences[:, ids.shape[1]:].cpu().numpy().reshape(len(hist), num_beams, -1)
    scores = out.sequences_scores.float().cpu().numpy().reshape(len(hist), num_beams)
    items = np.full((len(hist), num_beams), -1, dtype=np.int64)
    for u in range(len(hist)):
        for b in range(num_beams):
            item = trie.item_of(new[u, b, :L]) if new.shape[2] >= L else None
            items[u, b] = -1 if item is None else item
    return items, np.where(items >= 0, scores, -np.inf).astype(np.float32)


def exhaustive_scores(model: GPT2LMHeadModel, history: np.ndarray, item_tokens: np.ndarray,
                      max_history: int) -> np.ndarray:
    """float64[n_items]: log-probability of every catalogue item's whole SID after `history`.

    The slow, obviously right reference for beam search: beams wide enough to hold the catalogue must
    return the items in this order."""
    hist = np.asarray(history, dtype=np.int64)[-max_history:]
    seqs = [np.append(hist, i) for i in range(len(item_tokens))]
    ids, mask, positions, _ = encode(seqs, item_tokens)
    L = item_tokens.shape[1]
    with torch.inference_mode():
        logp = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.log_softmax(-1)
    picked = logp[:, -L - 1:-1, :].gather(2, ids[:, -L:, None]).squeeze(2)
    return picked.sum(dim=1).double().numpy()


def rank(model: GPT2LMHeadModel, histories: list[np.ndarray], item_tokens: np.ndarray, trie: SidTrie,
         num_beams: int, batch_size: int, max_history: int, device: str,
         progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`beam_items` of every history, batch by batch."""
    return rank_in_batches(model, lambda chunk, dev: beam_items(model, chunk, item_tokens, trie, num_beams,
                                                                max_history, dev),
                           histories, num_beams, batch_size, device, progress)
