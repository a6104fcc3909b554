"""faster-whisper (plain and batched) vs openai-whisper on the same weights and the same audio.

Each run (openai-whisper, faster-whisper on the plain path, faster-whisper batched with each
`--batch` size) is its own subprocess so its peak memory (ru_maxrss) is its own; the model is
loaded (and, for openai-whisper, converted) before the clock starts, one warm-up pass is not
timed, and the fastest of `--repeat` runs counts. Prints wall time, real-time factor, peak
memory, word error rate against the scripts and (batched) the windows the guard sent back to
the plain path, then each faster-whisper run's speed-up over openai-whisper. Beam size and
threads are the same for every run.

    python bench/transcribe.py [AUDIO] [--script TXT] [--model tiny.en] [--beam 5]
        [--threads 1] [--repeat 3] [--batch 8 [--batch 4 ...]] [--order fw-first] [--stages]

Without AUDIO it joins every recording in media/samples/ into one ~2 minute clip, and their
scripts (media/samples/*.txt) into the reference text; with AUDIO, `--script` gives the
reference (else no WER is printed). `--heldout N` instead speaks the first N stories of the
labelled corpus's held-out half (tests/data/corpus/, never used to tune the guard) with
espeak-ng, one second of silence between stories, and scores against their text.

`--stages` also times the parts of each batched run, in the same (fastest) run that counts:
Silero VAD, feature extraction and the CTranslate2 encode, generate and align calls (guard
fallbacks included), and the windows encoded. After the table it prints where that run's wall
time went and the compute floor: encode+generate, and encode+generate+align (word times, which
the guard needs), against openai-whisper's wall / 8, the budget for 8x. If the floor is over
the budget, no saving in the rest of the pipeline reaches 8x.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENGINES = ("faster-whisper", "openai-whisper")
#: The batched run's parts `--stages` times: (JSON key, label).
STAGES = (
    ("vad_s", "VAD"),
    ("features_s", "features"),
    ("encode_s", "encode"),
    ("generate_s", "generate"),
    ("align_s", "align"),
)
SAMPLES = REPO / "media" / "samples"
_STORY = (
    "Last night I dreamed that the Neural Mandate Protocols were read aloud in the Dreamscape "
    "Assembly. Everyone listened, rich or poor, and nobody had to stand in a separate line. "
    "The Sleep Sanctuary kept its doors open until morning, and the NeuroSync lamps dimmed "
    "whenever someone began to speak. I remember my grandmother laughing at the back of the "
    "hall, saying that a dream shared out loud is a promise kept. When I woke up, the city "
    "was quiet, and I wrote down every word before it could slip away."
)


def _default_audio() -> Path:
    """All the sample recordings joined into one ~2 minute, 16 kHz mono clip: long enough that
    per-call overheads do not decide the ratio (a 24 s clip measured 3.6x, this one 5.2x)."""
    samples = sorted(p for p in SAMPLES.iterdir() if p.suffix != ".txt")
    out = Path(tempfile.gettempdir()) / "narratives-bench-samples.wav"
    if samples and not out.exists():
        inputs = [arg for p in samples for arg in ("-i", str(p))]
        chains = "".join(
            f"[{i}:a]aresample=16000,aformat=channel_layouts=mono[a{i}];"
            for i in range(len(samples))
        )
        joined = "".join(f"[a{i}]" for i in range(len(samples)))
        graph = f"{chains}{joined}concat=n={len(samples)}:v=0:a=1"
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-y", *inputs, "-filter_complex", graph, str(out)],
            check=True,
        )
    if not samples:
        out = Path(tempfile.gettempdir()) / "narratives-bench-story.wav"
        if not out.exists():
            subprocess.run(["espeak-ng", "-s", "150", "-w", str(out), _STORY], check=True)
    return out


def _heldout(n: int) -> tuple[Path, str]:
    """The first n held-out corpus stories spoken by espeak-ng into one 16 kHz clip, and
    their text."""
    sys.path.insert(0, str(REPO))
    from tests.corpus import split

    stories = split("heldout")[:n]
    out = Path(tempfile.gettempdir()) / f"narratives-bench-heldout-{n}.wav"
    if not out.exists():
        with tempfile.TemporaryDirectory() as tmp:
            parts = []
            for i, story in enumerate(stories):
                part = Path(tmp) / f"{i}.wav"
                cmd = ["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(part), story.text]
                subprocess.run(cmd, check=True)
                parts.append(part)
            inputs = [arg for p in parts for arg in ("-i", str(p))]
            chains = "".join(
                f"[{i}:a]aresample=16000,aformat=channel_layouts=mono,apad=pad_dur=1[a{i}];"
                for i in range(len(parts))
            )
            joined = "".join(f"[a{i}]" for i in range(len(parts)))
            graph = f"{chains}{joined}concat=n={len(parts)}:v=0:a=1"
            cmd = ["ffmpeg", "-loglevel", "error", "-y", *inputs, "-filter_complex", graph]
            subprocess.run([*cmd, str(out)], check=True)
    return out, " ".join(story.text for story in stories)


def _reference(audio: Path | None, script: Path | None) -> str:
    """The text the audio speaks: the given script, else (default audio) the samples' scripts
    in the order `_default_audio` joins them; "" when unknown."""
    if script is not None:
        return script.read_text(encoding="utf-8")
    if audio is not None:
        return ""
    stems = sorted(p.stem for p in SAMPLES.iterdir() if p.suffix != ".txt")
    scripts = [SAMPLES / f"{stem}.txt" for stem in stems]
    if not stems:
        return _STORY
    if not all(p.is_file() for p in scripts):
        return ""
    return " ".join(p.read_text(encoding="utf-8") for p in scripts)


def _normalise(text: str) -> str:
    """As tests/test_wer.py: lower case, hyphens split, punctuation dropped."""
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


def _wer(reference: str, hypothesis: str) -> float | None:
    if not reference.strip():
        return None
    import jiwer

    return round(jiwer.wer(_normalise(reference), _normalise(hypothesis)), 3)


def _timed(fn, spent: dict, key: str):
    """`fn`, adding the seconds of each call to `spent[key]`."""

    def timed(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            spent[key] += time.perf_counter() - t0

    return timed


class _TimedModel:
    """Stands in for the CTranslate2 Whisper model, whose methods live on a C++ object and
    cannot be patched: its encode, generate and align calls are timed into `spent`, encode also
    counts the windows (the batch dimension of its input); everything else passes through."""

    def __init__(self, model, spent: dict) -> None:
        self._model, self._spent = model, spent

    def __getattr__(self, name: str):
        attr = getattr(self._model, name)
        if not callable(attr) or f"{name}_s" not in self._spent:
            return attr
        timed = _timed(attr, self._spent, f"{name}_s")
        if name != "encode":
            return timed

        def encode(features, *a, **kw):
            self._spent["windows"] += features.shape[0]
            return timed(features, *a, **kw)

        return encode


def _time_stages(engine) -> dict:
    """Time the batched pipeline's parts from here on; returns the totals, which the caller
    zeroes before each run. VAD is patched where faster-whisper's transcribe module looks it
    up, features on the extractor's class (calls look `__call__` up on the type)."""
    import faster_whisper.transcribe as fwt

    spent: dict = {key: 0.0 for key, _ in STAGES} | {"windows": 0}
    fwt.get_speech_timestamps = _timed(fwt.get_speech_timestamps, spent, "vad_s")
    fwt.FeatureExtractor.__call__ = _timed(fwt.FeatureExtractor.__call__, spent, "features_s")
    engine._model.model = _TimedModel(engine._model.model, spent)
    return spent


def _worker(args: argparse.Namespace) -> None:
    """Runs in the child: load, warm up, time one transcription, print JSON."""
    from narratives.core.config import TranscribeSettings
    from narratives.engines.whisper import get_engine
    from narratives.media.audio import decode

    compute = "int8" if args.engine == "faster-whisper" else "float32"
    settings = TranscribeSettings(
        engine=args.engine, model=args.model, compute_type=compute, threads=args.threads
    )
    t0 = time.perf_counter()
    engine = get_engine(settings)
    load = time.perf_counter() - t0
    samples = decode(args.audio)
    duration = samples.size / 16000

    def run() -> tuple[str, int]:
        info, segments = engine.transcribe(
            samples, beam_size=args.beam, word_timestamps=True, batch_size=args.batch_size
        )
        text = " ".join(s.text.strip() for s in segments)
        return text, len(info.fallbacks)

    timing = args.stages and args.engine == "faster-whisper" and args.batch_size > 0
    spent = _time_stages(engine) if timing else {}
    run()  # warm-up: first-call allocations and caches
    walls, cpus, stages = [], [], []
    for _ in range(args.repeat):
        spent.update(dict.fromkeys(spent, 0))
        t0, c0 = time.perf_counter(), time.process_time()
        text, fallbacks = run()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        stages.append({k: round(v, 3) for k, v in spent.items()})
    wall = min(walls)  # the least disturbed run on a shared machine
    reference = args.reference.read_text(encoding="utf-8") if args.reference else ""
    print(
        json.dumps(
            {
                "engine": args.engine,
                "batch": args.batch_size,
                "compute": compute,
                "load_s": round(load, 2),
                "wall_s": round(wall, 2),
                # CPU time of this process: what the run cost, less swayed by other load
                "cpu_s": round(min(cpus), 2),
                "audio_s": round(duration, 2),
                "rtf": round(wall / duration, 3),
                "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "words": len(text.split()),
                "wer": _wer(reference, text),
                "fallbacks": fallbacks,
                "walls": [round(w, 2) for w in walls],
                # the parts of the run that counts (the fastest), with --stages
                **({"stages": stages[walls.index(wall)]} if timing else {}),
            }
        )
    )


def _label(r: dict) -> str:
    if r["engine"] == "openai-whisper":
        return "openai-whisper"
    return f"fw batched {r['batch']}" if r["batch"] else "fw plain"


def _print_stages(r: dict, ow: dict) -> None:
    """Where a batched run's wall time went, and whether the model's compute alone fits in the
    8x budget: encode and generate are CTranslate2's work, which no change around them saves."""
    st, n = r["stages"], r["stages"]["windows"]
    print(f"{_label(r)}: its fastest run's {r['wall_s']:.2f} s, {n} window(s) encoded")
    for key, label in STAGES:
        per = f"  ({st[key] / n:.3f} s/window)" if key in ("encode_s", "generate_s") and n else ""
        print(f"  {label:22} {st[key]:6.2f} s{per}")
    rest = r["wall_s"] - sum(st[key] for key, _ in STAGES)
    print(f"  {'rest (wall - parts)':22} {rest:6.2f} s")
    budget = ow["wall_s"] / 8
    print(f"  {'8x budget':22} {budget:6.2f} s  (openai-whisper {ow['wall_s']:.2f} s / 8)")
    for label, keys in (
        ("encode+generate", ("encode_s", "generate_s")),
        ("encode+generate+align", ("encode_s", "generate_s", "align_s")),
    ):
        floor = sum(st[k] for k in keys)
        if floor <= budget:
            verdict = (
                f"under the budget by {budget - floor:.2f} s: 8x reachable only if "
                f"all else took <= {budget - floor:.2f} s"
            )
        else:
            verdict = (
                f"over the budget by {floor - budget:.2f} s: 8x not reachable "
                "even if all else took no time"
            )
        print(f"  {label:22} {floor:6.2f} s  {verdict}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("audio", nargs="?", type=Path)
    p.add_argument("--script", type=Path, help="the text AUDIO speaks, for the WER")
    p.add_argument(
        "--heldout", type=int, metavar="N", help="speak N held-out corpus stories instead"
    )
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3, help="timed runs; the fastest counts")
    p.add_argument(
        "--batch",
        type=int,
        action="append",
        help="faster-whisper batch sizes to run besides the plain path (default: 8)",
    )
    p.add_argument(
        "--order",
        choices=("ow-first", "fw-first"),
        default="ow-first",
        help="which engine runs first (load on a shared machine drifts)",
    )
    p.add_argument(
        "--stages",
        action="store_true",
        help="batched runs: time VAD, features, encode, generate and align in the run that "
        "counts (the fastest), and compare the model's compute with the 8x budget",
    )
    p.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.engine:
        return _worker(args)
    if any(b < 1 for b in args.batch or []):
        p.error("--batch: batch sizes are 1 or more (the plain path always runs)")
    reference = Path(tempfile.gettempdir()) / "narratives-bench-reference.txt"
    if args.heldout:
        audio, text = _heldout(args.heldout)
    else:
        audio, text = args.audio or _default_audio(), _reference(args.audio, args.script)
    reference.write_text(text, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    runs = [("openai-whisper", 0), ("faster-whisper", 0)]
    runs += [("faster-whisper", b) for b in args.batch or [8]]
    if args.order == "fw-first":
        runs = runs[1:] + runs[:1]
    results = []
    for engine, batch in runs:
        cmd = [sys.executable, __file__, str(audio), "--engine", engine, "--model", args.model]
        cmd += ["--beam", str(args.beam), "--threads", str(args.threads)]
        cmd += ["--repeat", str(args.repeat), "--batch-size", str(batch)]
        cmd += ["--reference", str(reference)]
        cmd += ["--stages"] if args.stages and batch else []
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"audio: {audio} ({results[0]['audio_s']} s), model {args.model}, "
        f"beam {args.beam}, {args.threads} thread(s), best of {args.repeat}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'run':16} {'compute':8} {'load s':>7} {'wall s':>7} {'CPU s':>7} {'RTF':>6} "
        f"{'peak MB':>8} {'words':>6} {'WER':>6} {'fallbk':>6}"
    )
    for r in results:
        wer = "-" if r["wer"] is None else f"{r['wer']:.3f}"
        print(
            f"{_label(r):16} {r['compute']:8} {r['load_s']:7.2f} {r['wall_s']:7.2f} "
            f"{r['cpu_s']:7.2f} "
            f"{r['rtf']:6.3f} {r['peak_mb']:8d} {r['words']:6d} {wer:>6} {r['fallbacks']:6d}"
        )
    ow = next(r for r in results if r["engine"] == "openai-whisper")
    for r in results:
        if r is ow:
            continue
        speedup = ow["wall_s"] / r["wall_s"]
        print(
            f"{_label(r)} is {speedup:.1f}x openai-whisper in wall time "
            f"({ow['cpu_s'] / r['cpu_s']:.1f}x in CPU time; target >= 8x: "
            f"{'met' if speedup >= 8 else 'NOT met'}); uses "
            f"{ow['peak_mb'] / r['peak_mb']:.1f}x less peak memory"
        )
    for r in results:
        if "stages" in r:
            _print_stages(r, ow)


if __name__ == "__main__":
    main()
