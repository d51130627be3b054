"""Unit-test defaults."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def one_faiss_thread():
    # Two OpenMP threads spin against each other on a shared 2-core runner (up to 10x slower k-means);
    # the unit tests' inputs are tiny, so one thread loses nothing.
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """For tiny torch models: a second intra-op thread gains nothing and, when the two cores are busy
    with other work, OpenMP spin-waiting slows training up to tenfold."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
