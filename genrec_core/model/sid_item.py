"""An item-level generative recommender over SIDs: one transformer position per item.

Each history item enters as the sum of its L SID token embeddings and of its hashed SID prefixes'
embeddings (prefixes of 2..L tokens; the whole SID names the item), a causal GPT-2 reads the items, and
the state at position i gives the next item's SID level by level: level l's logits come from that state
plus the embeddings of the SID's tokens at levels < l, through a small per-level head, scored against
the level's token embeddings (the input table, tied). So the model still generates an item as its SID,
one code at a time, under the catalogue's trie; what changes from `sid_gpt` is the unit of a position:
a history of n items is n positions instead of n * L + 1, every position is an item-level prediction,
and decoding runs the transformer once per user while the beam search over levels touches only the
heads.

With `members` > 1 the model is an ensemble of independently initialised copies whose level
log-probabilities are averaged at every beam step (ItemSidEnsemble).

`beam_items` is the batched search; `exhaustive_scores` scores every catalogue item by teacher forcing,
the slow reference that wide enough beams must reproduce.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from transformers import GPT2Config, GPT2Model

from genrec_core.model.beams import beam_result, rank_in_batches, trie_step
from genrec_core.model.sid_vocab import PAD, SidVocab
from genrec_core.model.trie import SidTrie


class ItemSidNet(nn.Module):
    """GPT-2 over item positions (input: summed SID token and SID prefix embeddings) with one head per
    SID level."""

    def __init__(self, vocab: SidVocab, *, d_model: int, d_ff: int, num_layers: int, num_heads: int,
                 dropout: float, max_history: int, ngram_buckets: int = 0) -> None:
        super().__init__()
        # No bos/eos: GPT-2's default 50256 lies outside the SID vocabulary (transformers warns on each
        # build), and sid_item's beams never go through transformers' generate.
        config = GPT2Config(vocab_size=vocab.vocab_size, n_positions=max_history + 1, n_embd=d_model,
                            n_inner=d_ff, n_layer=num_layers, n_head=num_heads, resid_pdrop=dropout,
                            embd_pdrop=dropout, attn_pdrop=dropout, pad_token_id=PAD,
                            bos_token_id=None, eos_token_id=None)
        self.gpt = GPT2Model(config)
        self.lo = [vocab.offset(level) for level in range(vocab.num_levels)]
        self.sizes = list(vocab.level_sizes)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, d_model), nn.GELU(), nn.Dropout(dropout),
                          nn.Linear(d_model, d_model))
            for _ in self.sizes)
        # Prefix n-grams: SID prefixes of 2..L tokens, hashed into ngram_buckets rows per length. A
        # prefix names a group of items (the whole SID names the item), so the input is no longer only
        # a sum of per-level codes; the rows depend on the tokens alone, not on the catalogue.
        self.ngram_buckets = int(ngram_buckets)
        self.ngrams = nn.ModuleList(nn.Embedding(self.ngram_buckets, d_model) for _ in self.sizes[1:]) \
            if self.ngram_buckets else nn.ModuleList()
        for table in self.ngrams:
            nn.init.normal_(table.weight, std=0.02)

    @property
    def table(self) -> torch.Tensor:
        """[vocab, d] token embeddings, shared by the input and the level heads."""
        return self.gpt.wte.weight

    def states(self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """tokens [b, n, L] of left-padded histories -> [b, n, d] the state after each item."""
        embeds = self.table[tokens].sum(dim=2)
        if self.ngram_buckets:
            for table, bucket in zip(self.ngrams, prefix_buckets(tokens, self.ngram_buckets)):
                embeds = embeds + table(bucket)
        return self.gpt(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).last_hidden_state

    def level_logp(self, level: int, query: torch.Tensor) -> torch.Tensor:
        """query [..., d] (a state plus the embeddings of the chosen tokens of the levels before) ->
        [..., level_sizes[level]] log-probabilities of that level's codes."""
        block = self.table[self.lo[level]:self.lo[level] + self.sizes[level]]
        return (self.heads[level](query) @ block.T).float().log_softmax(-1)


class ItemSidEnsemble(nn.Module):
    """Several ItemSidNets read as one: a state or token embedding is the members' side by side, and a
    level's log-probabilities are the mean of the members' (a product of experts, renormalised by
    nothing: beams compare sums of them). Each member trains on its own loss (see `loss`)."""

    def __init__(self, members: list[ItemSidNet]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.lo, self.sizes = members[0].lo, members[0].sizes
        self.width = members[0].table.shape[1]

    @property
    def table(self) -> torch.Tensor:
        return torch.cat([m.table for m in self.members], dim=1)

    def states(self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.states(tokens, mask, positions) for m in self.members], dim=-1)

    def level_logp(self, level: int, query: torch.Tensor) -> torch.Tensor:
        parts = query.split(self.width, dim=-1)
        return torch.stack([m.level_logp(level, q) for m, q in zip(self.members, parts)]).mean(0)


AnyNet = ItemSidNet | ItemSidEnsemble

_HASH_MULT = 1_000_003  # a prime above any token id; products stay far below 2**63


def prefix_buckets(tokens: torch.Tensor, buckets: int) -> list[torch.Tensor]:
    """tokens [..., L] -> L - 1 tensors [...]: the bucket of each prefix of 2..L tokens, by a polynomial
    hash taken modulo `buckets` at every step (exact in int64)."""
    h = tokens[..., 0] % buckets
    out = []
    for level in range(1, tokens.shape[-1]):
        h = (h * _HASH_MULT + tokens[..., level]) % buckets
        out.append(h)
    return out


def build_model(vocab: SidVocab, *, d_model: int, d_ff: int, num_layers: int, num_heads: int,
                dropout: float, max_history: int, seed: int, ngram_buckets: int = 0,
                members: int = 1) -> AnyNet:
    """One ItemSidNet, or with members > 1 an ensemble of that many, initialised one after another
    from `seed` (so each starts elsewhere)."""
    torch.manual_seed(seed)
    nets = [ItemSidNet(vocab, d_model=d_model, d_ff=d_ff, num_layers=num_layers, num_heads=num_heads,
                       dropout=dropout, max_history=max_history, ngram_buckets=ngram_buckets)
            for _ in range(members)]
    return nets[0] if members == 1 else ItemSidEnsemble(nets)


def _prefix_sums(net: AnyNet, tokens: torch.Tensor) -> torch.Tensor:
    """tokens [..., L] -> [..., L, d]: at level l, the sum of the embeddings of tokens 0..l-1."""
    embeds = net.table[tokens]
    return torch.cumsum(embeds, dim=-2) - embeds


def _left_pad(sequences: list[np.ndarray], item_tokens: np.ndarray) -> tuple[torch.Tensor, ...]:
    """Item-index sequences -> (tokens [b, n, L], mask [b, n], positions [b, n]), left-padded, positions
    counted from each row's first real item."""
    L = item_tokens.shape[1]
    width = max(len(s) for s in sequences)
    tokens = np.full((len(sequences), width, L), PAD, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for i, seq in enumerate(sequences):
        if len(seq):
            tokens[i, width - len(seq):] = item_tokens[np.asarray(seq, dtype=np.int64)]
            mask[i, width - len(seq):] = 1
    positions = np.maximum(mask.cumsum(axis=1) - 1, 0)
    return tuple(torch.from_numpy(a) for a in (tokens, mask, positions))


def loss(net: AnyNet, sequences: list[np.ndarray], item_tokens: np.ndarray,
         device: torch.device) -> torch.Tensor:
    """Mean cross-entropy of every SID token of every next item (items 2.. of each sequence), each level
    conditioned on the true tokens of the levels before it. An ensemble's is its members' mean: each
    member learns alone (training the averaged log-probabilities instead would let them co-adapt)."""
    tokens, mask, positions = (t.to(device) for t in _left_pad(sequences, item_tokens))
    if isinstance(net, ItemSidEnsemble):  # one padding for every member
        return torch.stack([_padded_loss(m, tokens, mask, positions) for m in net.members]).mean()
    return _padded_loss(net, tokens, mask, positions)


def _padded_loss(net: ItemSidNet, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    states = net.states(tokens[:, :-1], mask[:, :-1], positions[:, :-1])  # the state after item i ...
    target = tokens[:, 1:]  # ... predicts item i + 1
    keep = (mask[:, :-1] * mask[:, 1:]).bool()
    target = target[keep]
    query = states[keep][:, None, :] + _prefix_sums(net, target)
    total = query.new_zeros(())
    for level, lo in enumerate(net.lo):
        total = total - net.level_logp(level, query[:, level]).gather(1, target[:, level:level + 1] - lo).mean()
    return total / len(net.lo)


def last_states(net: AnyNet, histories: list[np.ndarray], item_tokens: np.ndarray, max_history: int,
                device: torch.device) -> torch.Tensor:
    """[b, d] the state after each history's last item (its last max_history items are read)."""
    hist = [np.asarray(h, dtype=np.int64)[-max_history:] for h in histories]
    tokens, mask, positions = (t.to(device) for t in _left_pad(hist, item_tokens))
    return net.states(tokens, mask, positions)[:, -1]


def beam_items(net: AnyNet, histories: list[np.ndarray], item_tokens: np.ndarray, trie: SidTrie,
               num_beams: int, max_history: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(int64[b, num_beams] the items of each history's beams, best first, -1 where a beam is no item;
    float32[b, num_beams] their mean log-probability per SID token)."""
    tables = trie.tables()
    child = [torch.from_numpy(c).to(device) for c in tables.child]
    b, L = len(histories), trie.num_levels
    with torch.inference_mode():
        state = last_states(net, histories, item_tokens, max_history, device)
        node = torch.zeros((b, 1), dtype=torch.long, device=device)
        score = torch.zeros((b, 1), dtype=torch.float32, device=device)
        prefix = torch.zeros((b, 1, state.shape[-1]), dtype=state.dtype, device=device)
        for d in range(L):
            # the trie's tokens of level d lie in tables.lo[d] .. + width[d], inside the level's block
            start, w = tables.lo[d] - net.lo[d], tables.width[d]
            logp = net.level_logp(d, state[:, None, :] + prefix)[..., start:start + w]
            node, score, parent, index = trie_step(child[d], node, score, logp, num_beams)
            token = index + tables.lo[d]
            prefix = prefix.gather(1, parent[..., None].expand(-1, -1, prefix.shape[-1])) + net.table[token]
    return beam_result(node, score, tables, L, num_beams)


def exhaustive_scores(net: AnyNet, history: np.ndarray, item_tokens: np.ndarray,
                      max_history: int) -> np.ndarray:
    """float64[n_items]: log-probability of every catalogue item's whole SID after `history`, by teacher
    forcing each item's tokens through the heads. The reference `beam_items` is tested against."""
    tokens = torch.from_numpy(np.asarray(item_tokens, dtype=np.int64))
    with torch.inference_mode():
        state = last_states(net, [history], item_tokens, max_history, torch.device("cpu"))[0]
        query = state[None, None, :] + _prefix_sums(net, tokens)
        total = torch.zeros(len(tokens), dtype=torch.float64)
        for level, lo in enumerate(net.lo):
            total += net.level_logp(level, query[:, level]).gather(1, tokens[:, level:level + 1] - lo)[:, 0].double()
    return total.numpy()


def rank(net: AnyNet, histories: list[np.ndarray], item_tokens: np.ndarray, trie: SidTrie, num_beams: int,
         batch_size: int, max_history: int, device: str,
         progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`beam_items` of every history, batch by batch."""
    return rank_in_batches(net, lambda chunk, dev: beam_items(net, chunk, item_tokens, trie, num_beams,
                                                              max_history, dev),
                           histories, num_beams, batch_size, device, progress)
