"""The recommenders of `train.model` behind one interface, so one harness trains, validates, ranks,
saves and loads them all.

A recommender is fully described by its `spec` (a JSON dict: kind, catalogue shape, sizes) and its
weights (a dict of tensors, saved as safetensors). `from_spec(spec, weights)` rebuilds it anywhere,
which is what the MLflow pyfunc wrapper and checkpoint resume rely on.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from genrec_core.model import sasrec as sasrec_mod
from genrec_core.model import sid_gpt, sid_item, tiger
from genrec_core.model.sid_vocab import SidVocab
from genrec_core.model.trie import SidTrie

GENERATIVE = ("sid_item", "sid_gpt", "tiger")


class SpecMismatch(ValueError):
    """Saved weights belong to another recommender kind, catalogue or model shape."""


@dataclass(frozen=True)
class Ranking:
    """Top-k item indices per user, best first, two ways: `kept` may list the user's own history items
    (what trie-constrained beam search does); `excluded` ranks them out (RecBole's default). Each comes
    with its scores (higher is better: a logit, a beam's log-probability per token, or a count).
    -1 (score -inf) fills a slot no valid item reached. invalid_share: share of beams that decoded to
    no item."""

    kept: np.ndarray
    kept_scores: np.ndarray
    excluded: np.ndarray
    excluded_scores: np.ndarray
    invalid_share: float = 0.0


def select(candidates: np.ndarray, scores: np.ndarray, k: int,
           histories: Optional[list[np.ndarray]] = None) -> tuple[np.ndarray, np.ndarray]:
    """First k distinct valid candidates of each row (and, given histories, not in that row's history)
    with their scores; -1 / -inf padded. A candidate with score -inf is a dead beam, not an item."""
    items = np.full((len(candidates), k), -1, dtype=np.int64)
    out = np.full((len(candidates), k), -np.inf, dtype=np.float32)
    for u, row in enumerate(candidates):
        seen = set(np.asarray(histories[u]).tolist()) if histories is not None else set()
        picked = []
        for j, i in enumerate(row.tolist()):
            if i >= 0 and i not in seen and np.isfinite(scores[u, j]):
                seen.add(i)
                picked.append(j)
                if len(picked) == k:
                    break
        items[u, :len(picked)] = row[picked]
        out[u, :len(picked)] = scores[u, picked]
    return items, out


def invalid_share(beams: np.ndarray, scores: np.ndarray) -> float:
    """Share of beams that are no item of their own: no catalogue SID, a dead beam (score -inf), or
    the repeat of a better beam's item."""
    if not beams.size:
        return 0.0
    good = sum(len({int(i) for i, v in zip(row, sc) if i >= 0 and np.isfinite(v)}) for row, sc in zip(beams, scores))
    return 1.0 - good / beams.size


class Recommender(ABC):
    """kind: the train.model name; trainable: True for a `Trained` model (examples, loss), False for
    one fitted by counting (fit_counts)."""

    kind: str = ""
    trainable: bool = True
    module: Optional[torch.nn.Module] = None

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = dict(spec)

    @abstractmethod
    def rank(self, histories: list[np.ndarray], k: int, *, num_beams: int, batch_size: int, device: str,
             progress: Optional[Callable[[int, int], None]] = None) -> Ranking:
        """Top-k items of every history, both settings (see Ranking)."""

    def weights(self) -> dict[str, torch.Tensor]:
        """The module's tensors; a tied tensor (GPT-2's and T5's output layer is their input
        embedding) is kept under its first name only, since safetensors refuses shared storage."""
        out, seen = {}, set()
        for k, v in self.module.state_dict().items():
            if v.data_ptr() not in seen:
                seen.add(v.data_ptr())
                out[k] = v.detach().cpu().contiguous()
        return out

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        missing, unexpected = self.module.load_state_dict(weights, strict=False)
        if hasattr(self.module, "tie_weights"):
            self.module.tie_weights()
        tied = {k for k, v in self.module.state_dict().items()
                if any(v.data_ptr() == w.data_ptr() for n, w in self.module.state_dict().items() if n in weights)}
        if unexpected or set(missing) - tied:
            raise SpecMismatch(f"weights do not fit the model: missing {sorted(set(missing) - tied)[:5]}, "
                               f"unexpected {sorted(unexpected)[:5]}")


class Trained(Recommender):
    """A recommender trained by genrec_core.model.training.fit on its own examples and loss."""

    @abstractmethod
    def examples(self, sequences: list[np.ndarray]) -> list:
        """Training sequences -> the examples `loss` takes batches of."""

    @abstractmethod
    def loss(self, batch: list, device: torch.device) -> torch.Tensor:
        """Mean training loss of a batch of examples."""


class _SidModel(Trained):
    """Shared by the two SID models: the catalogue's tokens and trie."""

    def __init__(self, spec: dict[str, Any], item_tokens: np.ndarray) -> None:
        super().__init__(spec)
        self.vocab = SidVocab(tuple(spec["level_sizes"]))
        self.item_tokens = np.asarray(item_tokens, dtype=np.int64)
        self.trie = SidTrie(self.item_tokens)
        self.max_history = int(spec["max_history"])

    @abstractmethod
    def _beams(self, histories, num_beams, batch_size, device, progress) -> tuple[np.ndarray, np.ndarray]:
        """(items, scores) of every history's beams, best first."""

    def rank(self, histories, k, *, num_beams, batch_size, device, progress=None) -> Ranking:
        beams, scores = self._beams(histories, max(num_beams, k), batch_size, device, progress)
        return Ranking(*select(beams, scores, k), *select(beams, scores, k, histories),
                       invalid_share=invalid_share(beams, scores))


class _DecoderSidModel(_SidModel):
    """The decoder-only SID models. Each subclass names its module (sid_gpt or sid_item) as `search`;
    the module gives the loss and the beam search with the same signatures. Examples are every
    sequence cut into chunks of at most max_history + 1 items."""

    def examples(self, sequences):
        return sid_gpt.make_examples(sequences, self.max_history)

    def loss(self, batch, device):
        return self.search.loss(self.module, batch, self.item_tokens, device)

    def _beams(self, histories, num_beams, batch_size, device, progress):
        return self.search.rank(self.module, histories, self.item_tokens, self.trie, num_beams, batch_size,
                                self.max_history, device, progress)


class SidGpt(_DecoderSidModel):
    kind = "sid_gpt"
    search = sid_gpt

    def __init__(self, spec, item_tokens, seed: int = 0) -> None:
        super().__init__(spec, item_tokens)
        s = spec["sizes"]
        self.module = sid_gpt.build_model(self.vocab, d_model=s["d_model"], d_ff=s["d_ff"],
                                          num_layers=s["num_layers"], num_heads=s["num_heads"],
                                          dropout=s["dropout"], max_history=self.max_history, seed=seed)


class SidItem(_DecoderSidModel):
    kind = "sid_item"
    search = sid_item

    def __init__(self, spec, item_tokens, seed: int = 0) -> None:
        super().__init__(spec, item_tokens)
        s = spec["sizes"]
        self.module = sid_item.build_model(self.vocab, d_model=s["d_model"], d_ff=s["d_ff"],
                                           num_layers=s["num_layers"], num_heads=s["num_heads"],
                                           dropout=s["dropout"], max_history=self.max_history, seed=seed,
                                           ngram_buckets=s["ngram_buckets"], members=s.get("members", 1))


class Tiger(_SidModel):
    kind = "tiger"

    def __init__(self, spec, item_tokens, seed: int = 0) -> None:
        super().__init__(spec, item_tokens)
        from genrec_core.config import TrainConfig

        s = spec["sizes"]
        cfg = TrainConfig(d_model=s["d_model"], d_ff=s["d_ff"], num_layers=s["num_layers"],
                          num_decoder_layers=s["num_decoder_layers"], num_heads=s["num_heads"], d_kv=s["d_kv"],
                          dropout=s["dropout"])
        self.module = tiger.build_model(self.vocab, cfg, seed)
        self._labels = tiger.label_table(self.item_tokens)

    def examples(self, sequences):
        return tiger.make_training_pairs(sequences, self.max_history)

    def loss(self, batch, device):
        ids, mask = tiger.encode_histories([h for h, _ in batch], self.item_tokens, self.max_history)
        labels = torch.from_numpy(self._labels[[t for _, t in batch]])
        return self.module(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss

    def _beams(self, histories, num_beams, batch_size, device, progress):
        return tiger.beam_items(self.module, histories, self.item_tokens, self.trie, num_beams, batch_size,
                                self.max_history, device, progress)


class SasRec(Trained):
    kind = "sasrec"

    def __init__(self, spec, item_tokens=None, seed: int = 0) -> None:
        super().__init__(spec)
        s = spec["sizes"]
        torch.manual_seed(seed)
        self.module = sasrec_mod.SASRec(int(spec["n_items"]), d_model=s["d_model"], d_ff=s["d_ff"],
                                        num_layers=s["num_layers"], num_heads=s["num_heads"],
                                        dropout=s["dropout"], max_len=s["max_len"])

    def examples(self, sequences):
        return sasrec_mod.make_examples(sequences, self.module.max_len)

    def loss(self, batch, device):
        return sasrec_mod.loss(self.module, batch, device)

    def rank(self, histories, k, *, num_beams, batch_size, device, progress=None) -> Ranking:
        dev = torch.device(device)
        self.module.to(dev).eval()
        parts = []
        for start in range(0, len(histories), batch_size):
            chunk = histories[start:start + batch_size]
            s = sasrec_mod.scores(self.module, chunk, dev)
            kept = s.topk(k, dim=1)
            excl = sasrec_mod.mask_history(s, chunk).topk(k, dim=1)
            parts.append([t.cpu().numpy() for t in (kept.indices, excl.indices, kept.values, excl.values)])
            if progress is not None:
                progress(start + len(chunk), len(histories))
        if not parts:
            empty = np.zeros((0, k), np.int64)
            return Ranking(empty, empty.astype(np.float32), empty, empty.astype(np.float32))
        kept, excluded, kept_s, excl_s = (np.concatenate([p[i] for p in parts]) for i in range(4))
        return Ranking(kept.astype(np.int64), kept_s.astype(np.float32), excluded.astype(np.int64),
                       excl_s.astype(np.float32))


class Popularity(Recommender):
    """The most frequent training items, ties broken by item index; the same list for every user."""

    kind = "popularity"
    trainable = False

    def __init__(self, spec, item_tokens=None, seed: int = 0) -> None:
        super().__init__(spec)
        self.counts = torch.zeros(int(spec["n_items"]), dtype=torch.int64)

    def fit_counts(self, sequences):
        parts = [np.asarray(s, dtype=np.int64) for s in sequences]
        flat = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        self.counts = torch.from_numpy(np.bincount(flat, minlength=int(self.spec["n_items"])).astype(np.int64))

    def rank(self, histories, k, *, num_beams, batch_size, device, progress=None) -> Ranking:
        counts = self.counts.numpy()
        order = np.lexsort((np.arange(len(counts)), -counts))
        longest = max((len(h) for h in histories), default=0)
        head = np.tile(order[:k + longest], (len(histories), 1))  # enough even after removing a whole history
        head_scores = counts[head].astype(np.float32)
        if progress is not None:
            progress(len(histories), len(histories))
        return Ranking(*select(head, head_scores, k), *select(head, head_scores, k, histories))

    def weights(self):
        return {"counts": self.counts}

    def load_weights(self, weights):
        self.counts = weights["counts"].to(torch.int64)


KINDS: dict[str, type[Recommender]] = {"sid_item": SidItem, "sid_gpt": SidGpt, "tiger": Tiger, "sasrec": SasRec,
                                       "popularity": Popularity}


def make_spec(train_cfg, level_sizes: tuple[int, ...], n_items: int, map_version: str) -> dict[str, Any]:
    """The spec of `train_cfg.model` over a catalogue of n_items with SID level sizes `level_sizes`."""
    kind = train_cfg.model
    if kind not in KINDS:
        raise ValueError(f"unknown recommender {kind!r}; choose one of {', '.join(KINDS)}")
    t = train_cfg
    if kind == "sasrec":
        sizes = {k: v for k, v in dataclasses.asdict(t.sasrec).items() if k != "plateau_evals"}  # training, not shape
    elif kind == "popularity":
        sizes = {}
    else:
        sizes = {"d_model": t.d_model, "d_ff": t.d_ff, "num_layers": t.num_layers, "num_heads": t.num_heads,
                 "dropout": t.dropout}
        if kind == "tiger":
            sizes.update(num_decoder_layers=t.num_decoder_layers, d_kv=t.d_kv)
        if kind == "sid_item":
            sizes.update(ngram_buckets=t.ngram_buckets)
            if t.members > 1:  # absent at 1, so specs saved before the key existed still match
                sizes.update(members=t.members)
    return {"kind": kind, "n_items": int(n_items), "level_sizes": [int(s) for s in level_sizes],
            "max_history": int(t.max_history), "sizes": sizes, "map_version": map_version}


def build(spec: dict[str, Any], item_tokens: np.ndarray, seed: int = 0) -> Recommender:
    """A fresh recommender for `spec`; item_tokens int[n_items, L] are the catalogue's SID tokens."""
    if spec["kind"] not in KINDS:
        raise ValueError(f"unknown recommender {spec['kind']!r}; choose one of {', '.join(KINDS)}")
    if len(item_tokens) != spec["n_items"]:
        raise SpecMismatch(f"the catalogue has {len(item_tokens)} items, the spec {spec['n_items']}")
    return KINDS[spec["kind"]](spec, item_tokens, seed)


def check_compatible(saved: dict[str, Any], wanted: dict[str, Any], *, same_map: bool = True) -> None:
    """Raises SpecMismatch naming what differs when weights saved under `saved` cannot serve `wanted`:
    another kind, SID shape or model sizes, or (with same_map, as for resuming) another catalogue
    size or map version. Without same_map (a warm start on a later map whose SID vocabulary was kept)
    a SID model's weights do not depend on the catalogue; SASRec's and popularity's do."""
    keys = ["kind", "level_sizes", "max_history", "sizes"]
    if same_map or saved.get("kind") not in GENERATIVE:
        keys.append("n_items")
    if same_map:
        keys.append("map_version")
    diffs = [f"{k}: saved {saved.get(k)!r}, this run {wanted.get(k)!r}" for k in keys if saved.get(k) != wanted.get(k)]
    if diffs:
        raise SpecMismatch("the saved recommender does not fit this run (" + "; ".join(diffs) + ")")


SPEC_FILE, WEIGHTS_FILE, CATALOGUE_FILE = "spec.json", "weights.safetensors", "catalogue.npz"


def to_files(recommender: Recommender, item_ids: list[str], item_tokens: np.ndarray) -> dict[str, bytes]:
    """{file name: bytes}: the spec, the weights (safetensors) and the catalogue (item ids, SID tokens)."""
    import json

    from safetensors.torch import save

    from genrec_core.quantize.base import npz_bytes

    catalogue = npz_bytes({"item_ids": np.array(item_ids, dtype=str),
                           "item_tokens": np.asarray(item_tokens, dtype=np.int64)})
    return {SPEC_FILE: json.dumps(recommender.spec, indent=1, sort_keys=True).encode("utf-8"),
            WEIGHTS_FILE: save(recommender.weights()), CATALOGUE_FILE: catalogue}


def from_files(files: dict[str, bytes]) -> tuple[Recommender, list[str]]:
    """The inverse of `to_files`: (recommender, item ids in index order)."""
    import io
    import json

    from safetensors.torch import load

    missing = sorted({SPEC_FILE, WEIGHTS_FILE, CATALOGUE_FILE} - set(files))
    if missing:
        raise ValueError(f"a recommender needs {SPEC_FILE}, {WEIGHTS_FILE} and {CATALOGUE_FILE}; missing {missing}")
    spec = json.loads(files[SPEC_FILE].decode("utf-8"))
    with np.load(io.BytesIO(files[CATALOGUE_FILE]), allow_pickle=False) as cat:
        item_ids, item_tokens = cat["item_ids"].tolist(), cat["item_tokens"]
    rec = build(spec, item_tokens)
    rec.load_weights(load(files[WEIGHTS_FILE]))
    return rec, item_ids
