"""Every registered quantizer honours the one Tokenizer interface, and the config names match."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from vectors import clustered

from genrec_core.config import COLLISIONS, QUANTIZERS, ConfigError, load_config
from genrec_core.quantize import base
from genrec_core.quantize.collisions import STRATEGIES


def small_config(name):
    cfg = load_config("tiny").tokenize
    return dataclasses.replace(cfg, quantizer=name, codebook_size=8, niter=5,
                               rqvae=dataclasses.replace(cfg.rqvae, hidden_dims=(32, 16), latent_dim=8,
                                                         steps=60, batch_size=128))


def test_config_names_match_the_registries():
    assert set(base.quantizer_names()) == set(QUANTIZERS)
    assert set(STRATEGIES) == set(COLLISIONS)
    with pytest.raises(ConfigError, match="tokenize.quantizer"):
        load_config("tiny", overrides=("tokenize.quantizer=pq",))


@pytest.fixture(scope="module", params=QUANTIZERS)
def fitted(request):
    x = clustered(400, 16, 0)
    return x, base.fit(request.param, x, small_config(request.param), seed=3)


def test_interface(fitted):
    x, tok = fitted
    codes = tok.encode(x)
    assert codes.shape == (len(x), tok.levels) and codes.dtype == np.int64
    assert (codes >= 0).all() and (codes < np.asarray(tok.level_sizes)).all()
    np.testing.assert_array_equal(codes, tok.encode_reference(x))
    np.testing.assert_array_equal(np.concatenate([tok.encode(x[i:i + 37]) for i in range(0, len(x), 37)]), codes)
    assert tok.decode(codes).shape == x.shape
    again = base.from_files(base.to_files(tok, {"note": "caller metadata travels in the header"}))
    assert type(again) is type(tok)
    np.testing.assert_array_equal(again.encode(x), codes)


def test_bad_inputs_fail_clearly():
    cfg = small_config("rq_kmeans")
    with pytest.raises(ValueError, match="unknown quantizer"):
        base.fit("nope", clustered(50, 4, 0), cfg, 0)
    bad = clustered(50, 4, 0)
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        base.fit("rq_kmeans", bad, cfg, 0)


def test_identical_fits_give_byte_identical_files(fitted):
    """Two fits with the same data, config and seed write the same bytes: no wall time, no zip dates,
    no dict-order noise in the artifact."""
    x, tok = fitted
    again = base.fit(tok.kind, x, small_config(tok.kind), seed=3)
    first, second = base.to_files(tok, {"note": "same"}), base.to_files(again, {"note": "same"})
    assert sorted(first) == [base.ARRAYS_FILE, base.HEADER_FILE]
    assert first == second
    np.testing.assert_array_equal(base.from_files(second).encode(x), tok.encode(x))


def test_missing_file_is_named():
    with pytest.raises(ValueError, match="codebooks.npz"):
        base.from_files({base.HEADER_FILE: b"{}"})
