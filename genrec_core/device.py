"""Device choice shared by the embedder and the recommender."""
from __future__ import annotations


def resolve_device(device: str) -> str:
    """"auto" means cuda when a GPU is visible, else cpu; any other value is used as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
