"""Word error rate of the default engine on the sample recordings, against their scripts."""

from __future__ import annotations

import re

import jiwer
import pytest

from tests.conftest import SAMPLES

#: tiny.en on the Piper voice; MODELS.md measured 0.044 on a natural 40 s clip.
MAX_WER_EACH = 0.12
MAX_WER_ALL = 0.07


def _normalise(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


@pytest.mark.slow
def test_word_error_rate_on_samples(processed_samples):
    _ctx, done = processed_samples
    scripts = sorted(SAMPLES.glob("*.txt"))
    assert len(scripts) >= 5 and set(done) == {p.stem for p in scripts}
    refs, hyps = [], []
    for script in scripts:
        ref = _normalise(script.read_text(encoding="utf-8"))
        hyp = _normalise(done[script.stem][1].text)
        wer = jiwer.wer(ref, hyp)
        assert wer <= MAX_WER_EACH, f"{script.stem}: WER {wer:.3f}\nref: {ref}\nhyp: {hyp}"
        refs.append(ref)
        hyps.append(hyp)
    assert jiwer.wer(refs, hyps) <= MAX_WER_ALL
