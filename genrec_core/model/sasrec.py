"""SASRec (Kang & McAuley, ICDM 2018): a causal transformer over item ids, the baseline the SID models
must beat. It is trained with cross-entropy over all items at every position, the loss under which it
is strongest (RecBole's CE setting), and it ranks the whole catalogue by the dot product of the last
hidden state with every item embedding.

Item index i is token i + 1; token 0 is padding. Sequences are left-padded, so the last column is always
the newest item, and position p is the p-th item back from the newest.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn


class SASRec(nn.Module):
    def __init__(self, n_items: int, *, d_model: int, d_ff: int, num_layers: int, num_heads: int,
                 dropout: float, max_len: int) -> None:
        super().__init__()
        self.n_items, self.max_len = n_items, max_len
        self.items = nn.Embedding(n_items + 1, d_model, padding_idx=0)
        self.positions = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(d_model, num_heads, d_ff, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens LongTensor[b, T] (0 = padding, T <= max_len) -> FloatTensor[b, T, d]."""
        T = tokens.shape[1]
        # Positions count back from the newest item, so that a row means the same whatever width the
        # batch pads it to (training pads to the batch's longest row, scoring to max_len).
        x = self.items(tokens) + self.positions(torch.arange(T - 1, -1, -1, device=tokens.device))[None]
        # Query q sees keys k <= q that are items; a padding position sees only itself, so that no
        # softmax row is empty (padding outputs are never used).
        eye = torch.eye(T, dtype=torch.bool, device=tokens.device)
        future = torch.triu(torch.ones(T, T, dtype=torch.bool, device=tokens.device), diagonal=1)
        blocked = future[None] | ((tokens == 0)[:, None, :] & ~eye[None])
        heads = self.blocks.layers[0].self_attn.num_heads
        h = self.blocks(self.dropout(x), mask=blocked.repeat_interleave(heads, dim=0))
        return self.norm(h)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """FloatTensor[..., d] -> FloatTensor[..., n_items] scores of every item (padding excluded)."""
        return hidden @ self.items.weight[1:].T


def make_examples(sequences: list[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Chunks of at most max_len + 1 items cut from the end of each training sequence (each chunk gives
    up to max_len next-item targets); one-item sequences teach nothing and are dropped."""
    out: list[np.ndarray] = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for end in range(len(seq), 1, -max_len):
            out.append(seq[max(0, end - max_len - 1):end])
    return out


def _left_pad(rows: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        r = np.asarray(r, dtype=np.int64)[-width:]
        if len(r):
            out[i, width - len(r):] = r + 1
    return out


def loss(model: SASRec, sequences: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """Mean cross-entropy over all items of every next-item prediction in the batch."""
    width = max(len(s) for s in sequences) - 1
    inputs = torch.from_numpy(_left_pad([s[:-1] for s in sequences], width)).to(device)
    targets = torch.from_numpy(_left_pad([s[1:] for s in sequences], width)).to(device) - 1  # -1 = padding
    # Scoring the catalogue is most of the cost: score real positions only, not the left padding.
    real = targets >= 0
    return nn.functional.cross_entropy(model.logits(model.hidden(inputs)[real]), targets[real])


def scores(model: SASRec, histories: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """FloatTensor[b, n_items]: every item's score as the next item of each history."""
    tokens = torch.from_numpy(_left_pad(histories, model.max_len)).to(device)
    with torch.inference_mode():
        return model.logits(model.hidden(tokens)[:, -1])


def rank(model: SASRec, histories: list[np.ndarray], k: int, exclude_history: bool, batch_size: int,
         device: str, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """int64[len(histories), k] full-catalogue top-k, best first; with exclude_history the user's own
    history items are ranked out."""
    dev = torch.device(device)
    model.to(dev).eval()
    out = np.empty((len(histories), k), dtype=np.int64)
    for start in range(0, len(histories), batch_size):
        chunk = histories[start:start + batch_size]
        s = scores(model, chunk, dev)
        if exclude_history:
            s = mask_history(s, chunk)
        out[start:start + len(chunk)] = s.topk(k, dim=1).indices.cpu().numpy()
        if progress is not None:
            progress(start + len(chunk), len(histories))
    return out


def mask_history(s: torch.Tensor, histories: list[np.ndarray]) -> torch.Tensor:
    """Scores with every history item of each row set to -inf."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if len(rows) else np.zeros(0, np.int64)
    s = s.clone()
    s[torch.from_numpy(rows).to(s.device), torch.from_numpy(cols).to(s.device)] = -torch.inf
    return s
