"""FAMAE, ReSID's field-aware masked auto-encoder (arXiv 2602.02338), in plain torch.

Every item is described by J structured fields: its own id, its brand and each level of its
category path. An item's input vector is the SUM of its J field embeddings. A small Transformer reads
a user's history followed by a target item (the next one) whose fields are partly masked: K of its J
fields, K ~ U{1..J}, have their embedding replaced by that field's learned mask vector. From the
output at the target position the model predicts every masked field with a scaled-cosine softmax
over that field's own embedding table, so the tables themselves are what training shapes.

The quantization vector of an item is the concatenation of its L2-normalised field embeddings,
scaled by 1/sqrt(J) so the whole vector has unit norm like every row of item_embeddings.

Deterministic under a seed on CPU (seeded init, a seeded generator for batches and masks, no
dropout). CUDA kernels may reorder float sums, so GPU runs agree only approximately.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genrec_core.config import FAMAEConfig

MISSING = "<none>"


@dataclass(frozen=True)
class ItemFields:
    """codes: int64 [n_items, J], column j indexes field j's vocabulary (0 = missing value)."""

    codes: np.ndarray
    vocab_sizes: tuple[int, ...]
    names: tuple[str, ...]


def _encode_column(values: Sequence[str]) -> tuple[np.ndarray, int]:
    # Sorted vocabulary with MISSING first: the same catalogue always gives the same codes.
    vocab = [MISSING] + sorted({v for v in values if v != MISSING})
    index = {v: i for i, v in enumerate(vocab)}
    return np.array([index[v] for v in values], dtype=np.int64), len(vocab)


def item_fields(brands: Sequence[Optional[str]], categories: Sequence[Optional[str]]) -> ItemFields:
    """Field codes for n items given in a fixed order: id (the row), brand, category levels.

    A category level's value is the path down to it ("Beauty > Skin"), so equal leaf names under
    different parents stay apart. Items with shorter paths get MISSING at the deeper levels.
    """
    paths = [[p.strip() for p in (c or "").split(">") if p.strip()] for c in categories]
    depth = max((len(p) for p in paths), default=0)
    columns = [[(b or "").strip() or MISSING for b in brands]]
    columns += [[" > ".join(p[:k + 1]) if len(p) > k else MISSING for p in paths] for k in range(depth)]
    encoded = [_encode_column(col) for col in columns]
    n = len(brands)
    codes = np.stack([np.arange(n, dtype=np.int64)] + [c for c, _ in encoded], axis=1)
    names = ("item_id", "brand") + tuple(f"category_{k + 1}" for k in range(depth))
    return ItemFields(codes=codes, vocab_sizes=(n,) + tuple(v for _, v in encoded), names=names)


def sample_field_mask(batch: int, n_fields: int, generator: torch.Generator) -> torch.Tensor:
    """bool [batch, n_fields]: each row masks K ~ U{1..n_fields} fields, chosen uniformly."""
    k = torch.randint(1, n_fields + 1, (batch, 1), generator=generator)
    # The rank of a random score is a uniformly random permutation; ranks below K pick K fields.
    ranks = torch.rand(batch, n_fields, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < k


class FAMAE(nn.Module):
    """history [B, H] item rows (-1 = padding), target [B], mask [B, J] -> target state [B, d]."""

    def __init__(self, fields: ItemFields, cfg: FAMAEConfig):
        super().__init__()
        d, j = cfg.d_model, len(fields.vocab_sizes)
        self.register_buffer("codes", torch.as_tensor(fields.codes), persistent=False)
        self.tables = nn.ModuleList(nn.Embedding(v, d) for v in fields.vocab_sizes)
        self.mask_vectors = nn.Parameter(torch.zeros(j, d))
        self.heads = nn.ModuleList(nn.Linear(d, d) for _ in range(j))
        self.positions = nn.Embedding(cfg.max_history + 1, d)
        layer = nn.TransformerEncoderLayer(d, cfg.num_heads, 4 * d, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        for p in [*(t.weight for t in self.tables), self.mask_vectors, self.positions.weight]:
            nn.init.normal_(p, std=0.02)

    def field_embeddings(self, items: torch.Tensor) -> torch.Tensor:
        """items [...] -> [..., J, d], one embedding per field."""
        codes = self.codes[items]
        return torch.stack([t(codes[..., j]) for j, t in enumerate(self.tables)], dim=-2)

    def forward(self, history: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hist = self.field_embeddings(history.clamp(min=0)).sum(-2)
        fields = torch.where(mask[..., None], self.mask_vectors, self.field_embeddings(target))
        seq = torch.cat([hist, fields.sum(-2)[:, None]], dim=1) + self.positions.weight
        pad = torch.cat([history < 0, torch.zeros_like(target, dtype=torch.bool)[:, None]], dim=1)
        return self.norm(self.encoder(seq, src_key_padding_mask=pad)[:, -1])

    def field_logits(self, state: torch.Tensor, field: int, scale: float) -> torch.Tensor:
        """state [B, d] -> [B, V_field]: scale × cosine(head(state), each value's embedding)."""
        query = F.normalize(self.heads[field](state), dim=-1)
        return scale * query @ F.normalize(self.tables[field].weight, dim=-1).T


def masked_field_loss(model: FAMAE, state, target, mask, scale: float) -> torch.Tensor:
    """Mean cross-entropy over every masked (example, field) pair."""
    true = model.codes[target]
    total, count = state.new_zeros(()), 0
    for j in range(mask.shape[1]):
        rows = mask[:, j].nonzero(as_tuple=True)[0]
        if len(rows):
            logits = model.field_logits(state[rows], j, scale)
            total = total + F.cross_entropy(logits, true[rows, j], reduction="sum")
            count += len(rows)
    return total / max(count, 1)


@dataclass
class Examples:
    """Every (user, t >= 1) of the histories: predict item t from the up to H items before it."""

    sequences: torch.Tensor  # int64 [U, L], item rows, right-padded with -1
    user: torch.Tensor  # int64 [N]
    step: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.user)

    def batch(self, idx: torch.Tensor, max_history: int) -> tuple[torch.Tensor, torch.Tensor]:
        """idx [B] -> history [B, max_history] (left-padded with -1), target [B]."""
        user, step = self.user[idx], self.step[idx]
        cols = step[:, None] - max_history + torch.arange(max_history)
        history = self.sequences[user[:, None], cols.clamp(min=0)]
        return torch.where(cols >= 0, history, -1), self.sequences[user, step]


def make_examples(histories: Sequence[Sequence[int]]) -> Examples:
    """histories: per user, item rows oldest first (users with fewer than 2 items give no example)."""
    length = max((len(h) for h in histories), default=1)
    sequences = torch.full((len(histories), length), -1, dtype=torch.int64)
    for u, h in enumerate(histories):
        sequences[u, :len(h)] = torch.as_tensor(np.asarray(h, dtype=np.int64))
    lengths = (sequences >= 0).sum(1)
    user = torch.repeat_interleave(torch.arange(len(histories)), (lengths - 1).clamp(min=0))
    # Within a user the steps run 1..len-1: position in the repeat minus the user's first slot.
    first = torch.cumsum((lengths - 1).clamp(min=0), 0) - (lengths - 1).clamp(min=0)
    step = torch.arange(len(user)) - first[user] + 1
    return Examples(sequences=sequences, user=user, step=step)


@dataclass
class FAMAEResult:
    model: FAMAE
    losses: list[float]


def train_famae(fields: ItemFields, histories: Sequence[Sequence[int]], cfg: FAMAEConfig, seed: int,
                device: str = "cpu", progress: Optional[Callable[[int], None]] = None) -> FAMAEResult:
    """Trains for cfg.steps batches of cfg.batch_size examples; losses holds each step's loss."""
    examples = make_examples(histories)
    if not len(examples):
        raise ValueError("FAMAE needs at least one history with two or more items")
    # A private RNG stream: the caller's global torch RNG is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FAMAE(fields, cfg).to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
    losses = []
    model.train()
    for _ in range(cfg.steps):
        idx = torch.randint(len(examples), (cfg.batch_size,), generator=generator)
        history, target = examples.batch(idx, cfg.max_history)
        mask = sample_field_mask(len(idx), len(fields.vocab_sizes), generator)
        history, target, mask = history.to(device), target.to(device), mask.to(device)
        loss = masked_field_loss(model, model(history, target, mask), target, mask, cfg.cosine_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(1)
    return FAMAEResult(model=model.eval(), losses=losses)


def item_vectors(model: FAMAE, warm: Optional[np.ndarray] = None,
                 categories: Optional[Sequence[Optional[str]]] = None) -> np.ndarray:
    """float32 [n_items, J * d]: concatenated L2-normalised field embeddings, divided by sqrt(J).

    An item that never occurs in a history keeps an item-id embedding that only the softmax's
    negatives have touched. Given `warm` (bool [n_items]) and `categories`, that part is replaced by
    the category-mean rule of genrec_core.embed.collab, as for cold items in ALS.
    """
    from genrec_core.embed.collab import fill_cold

    with torch.no_grad():
        parts = model.field_embeddings(torch.arange(len(model.codes), device=model.codes.device))
        parts = F.normalize(parts.float(), dim=-1).cpu().numpy()
    if warm is not None and not np.all(warm):
        cold = ~np.asarray(warm, dtype=bool)
        parts[cold, 0] = fill_cold(parts[:, 0], warm, categories)[cold]
    n, j, d = parts.shape
    return (parts.reshape(n, j * d) / math.sqrt(j)).astype(np.float32)
