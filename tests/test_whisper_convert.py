"""The CTranslate2 -> openai-whisper conversion: format reader, names, caching, and agreement.

MODELS.md measured beam-5 transcripts and word times identical between faster-whisper float32
and openai-whisper on the converted weights; the agreement test holds that exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from narratives.core.config import TranscribeSettings
from narratives.core.errors import ModelNotAvailable
from narratives.engines import whisper as transcribe
from narratives.engines import whisper_convert, whisper_models
from tests._speech import speak

TINY_DIMS = {
    "n_mels": 80,
    "n_audio_ctx": 1500,
    "n_audio_state": 384,
    "n_audio_head": 6,
    "n_audio_layer": 4,
    "n_vocab": 51864,
    "n_text_ctx": 448,
    "n_text_state": 384,
    "n_text_head": 6,
    "n_text_layer": 4,
}


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("convert-cache")


@pytest.fixture(scope="session")
def tiny(model_cache) -> whisper_models.ModelRef:
    return whisper_models.resolve_model("tiny.en", cache_dir=model_cache)


@pytest.fixture(scope="session")
def ct2(tiny) -> whisper_convert.CT2Model:
    return whisper_convert.read_ct2_model(tiny.path / "model.bin")


@pytest.fixture(scope="session")
def checkpoint_path(tiny, model_cache):
    return whisper_convert.converted_checkpoint(tiny.path, tiny.sha256, model_cache)


def test_reader_parses_the_shipped_model(ct2):
    assert (ct2.spec, ct2.revision) == ("WhisperSpec", 3)
    assert ct2.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    emb = ct2.get("decoder/embeddings/weight")
    assert emb.shape == (51864, 384) and emb.dtype == np.float32
    assert ct2.get("decoder/projection/weight") is emb
    assert int(ct2.get("encoder/num_heads")) == 6
    # The stored key projection has no bias in Whisper: CTranslate2 keeps zeros there.
    qkv_bias = ct2.get("encoder/layer_0/self_attention/linear_0/bias")
    assert qkv_bias.shape == (1152,) and not qkv_bias[384:768].any()


def test_reader_refuses_other_formats(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes((5).to_bytes(4, "little") + b"\0" * 64)
    with pytest.raises(ModelNotAvailable, match="binary version 5"):
        whisper_convert.read_ct2_model(bad)
    cut = tmp_path / "cut.bin"
    cut.write_bytes((6).to_bytes(4, "little") + (12).to_bytes(2, "little") + b"Whisper")
    with pytest.raises(ModelNotAvailable, match="truncated"):
        whisper_convert.read_ct2_model(cut)


def test_checkpoint_matches_openai_whisper_layout(ct2):
    import whisper

    ckpt = whisper_convert.to_openai_checkpoint(ct2)
    assert ckpt["dims"] == TINY_DIMS
    expected = whisper.model.Whisper(whisper.model.ModelDimensions(**TINY_DIMS)).state_dict()
    got = ckpt["model_state_dict"]
    assert set(got) == set(expected)
    for name, tensor in expected.items():
        assert tuple(got[name].shape) == tuple(tensor.shape), name
        assert got[name].dtype == torch.float32
    # Fused q/k/v split in order: the query is the first third of CTranslate2's linear_0.
    fused = ct2.get("decoder/layer_2/self_attention/linear_0/weight")
    np.testing.assert_array_equal(got["decoder.blocks.2.attn.query.weight"].numpy(), fused[:384])
    np.testing.assert_array_equal(got["decoder.blocks.2.attn.value.weight"].numpy(), fused[768:])
    kv = ct2.get("decoder/layer_1/attention/linear_1/weight")
    np.testing.assert_array_equal(got["decoder.blocks.1.cross_attn.key.weight"].numpy(), kv[:384])


def test_conversion_is_cached_by_source_digest(tiny, model_cache, checkpoint_path):
    assert checkpoint_path.parent == model_cache / "openai-whisper"
    assert checkpoint_path.name.startswith(tiny.sha256[:24])
    stamp = checkpoint_path.stat().st_mtime_ns
    again = whisper_convert.converted_checkpoint(tiny.path, tiny.sha256, model_cache)
    assert again == checkpoint_path and again.stat().st_mtime_ns == stamp
    ckpt = torch.load(checkpoint_path, weights_only=True)  # loads as openai-whisper does
    assert ckpt["dims"] == TINY_DIMS


@pytest.mark.slow
def test_alignment_heads_come_from_config(tiny, model_cache, checkpoint_path):
    import json

    model = whisper_convert.load_openai_model(tiny.path, tiny.sha256, model_cache)
    heads = json.loads((tiny.path / "config.json").read_text())["alignment_heads"]
    mask = model.alignment_heads.to_dense().numpy()
    assert mask.shape == (4, 6) and mask.sum() == len(heads) == 8
    assert all(mask[layer, head] for layer, head in heads)


@pytest.fixture(scope="session")
def spoken(tmp_path_factory):
    return speak(tmp_path_factory.mktemp("agree") / "clip.wav")


@pytest.mark.slow
@pytest.mark.parametrize("vad", [False, True])
def test_both_engines_agree_on_the_same_weights(spoken, model_cache, checkpoint_path, vad):
    """faster-whisper float32 and openai-whisper (converted) give the same beam-5 transcript."""
    # The plain path: the batched one (transcribe.batch_size) decodes differently by design.
    settings = {"model": "tiny.en", "threads": 1, "beam_size": 5, "vad": vad, "batch_size": 0}
    results = []
    for engine, compute in (("faster-whisper", "float32"), ("openai-whisper", "float32")):
        s = TranscribeSettings(engine=engine, compute_type=compute, **settings)
        results.append(transcribe.transcribe_file(spoken, s, "cd" * 32, cache_dir=model_cache))
    fw, ow = results
    assert fw.text and fw.text == ow.text
    assert [(w.text, w.start, w.end) for w in fw.words] == [
        (w.text, w.start, w.end) for w in ow.words
    ]
    assert [(s.start, s.end) for s in fw.segments] == [(s.start, s.end) for s in ow.segments]
