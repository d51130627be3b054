"""What the trie-constrained beam searches of the SID models share: turning the final beams into items,
and running a search over every history batch by batch."""
from __future__ import annotations

from collections.abc import Callable

import math

import numpy as np
import torch

from genrec_core.model.trie import TrieTables

BeamFn = Callable[[list[np.ndarray], torch.device], tuple[np.ndarray, np.ndarray]]


def trie_step(child: torch.Tensor, node: torch.Tensor, score: torch.Tensor, logp: torch.Tensor,
              num_beams: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of the search. child: the level's trie table on the device; node, score [b, beams]: the
    beams' trie nodes (-1 dead) and summed log-probabilities; logp [b, beams, w]: this level's
    log-probabilities over the trie's token range of the level. Returns the best `num_beams` extensions:
    (node, score, parent beam, token index within the range), each [b, beams']."""
    b, w = node.shape[0], logp.shape[-1]
    nxt = child[node.clamp(min=0)]  # [b, beams, w]
    cand = torch.where((nxt >= 0) & (node[..., None] >= 0), score[..., None] + logp, -math.inf)
    top = cand.view(b, -1).topk(min(num_beams, cand[0].numel()), dim=1)
    node = torch.where(torch.isfinite(top.values), nxt.view(b, -1).gather(1, top.indices), -1)
    return node, top.values, top.indices // w, top.indices % w


def beam_result(node: torch.Tensor, score: torch.Tensor, tables: TrieTables, num_levels: int,
                num_beams: int) -> tuple[np.ndarray, np.ndarray]:
    """Final beams (depth-L trie nodes, -1 for a dead beam; summed log-probabilities) -> (int64[b, num_beams]
    items, -1 where a beam is no item; float32[b, num_beams] mean log-probability per SID token), padded
    with -1 / -inf where the catalogue has fewer items than beams."""
    item_of = torch.from_numpy(tables.item).to(node.device)
    items = torch.where(node >= 0, item_of[node.clamp(min=0)], -1).cpu().numpy()
    scores = (score / num_levels).cpu().numpy()
    pad = num_beams - items.shape[1]
    if pad > 0:
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items.astype(np.int64), np.where(items >= 0, scores, -np.inf).astype(np.float32)


def rank_in_batches(module: torch.nn.Module, search: BeamFn, histories: list[np.ndarray], num_beams: int,
                    batch_size: int, device: str,
                    progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`search(chunk, device)` over every history, batch by batch, with `module` in eval mode on `device`."""
    dev = torch.device(device)
    module.to(dev).eval()
    items = np.full((len(histories), num_beams), -1, dtype=np.int64)
    scores = np.full((len(histories), num_beams), -np.inf, dtype=np.float32)
    for start in range(0, len(histories), batch_size):
        chunk = histories[start:start + batch_size]
        done = slice(start, start + len(chunk))
        items[done], scores[done] = search(chunk, dev)
        if progress is not None:
            progress(start + len(chunk), len(histories))
    return items, scores
