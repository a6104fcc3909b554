"""Review app benchmark: 8 editors at once against a live server (`narrative serve`).

A temporary workspace gets `--stories` stories (a transcript and analysis each, drafts made by
the real draft stage: two per story), then the server runs in its own process and each editor
(a thread with its own httpx client and login) loops: the queue (with a filter or a search
every other time), then a random draft's page. Reports p50/p95/p99 latency per page, in ms.

    .venv/bin/python bench/review.py [--editors 8] [--rounds 40] [--stories 60] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from narratives.core.clock import utcnow
from narratives.core.workspace import init_workspace
from narratives.records.transcript import Segment, Transcript, Word
from narratives.stages.draft import stage as drafting
from narratives.store.context import Context
from narratives.store.narrative_files import write_analysis, write_transcript
from narratives.store.schema import narratives
from narratives.store.stage_runs import stage_run
from narratives.store.users import add_user
from narratives.workflow.takedown import set_consent

PASSWORD = "bench horse battery staple"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
SENTENCES = [
    "There were two lines at the dream clinic, one for people who paid.",
    "The rest of us waited all night on plastic chairs.",
    "My grandmother said rest should not be something you buy.",
    "I still hear her voice when the night shift ends.",
]


def _transcript(nid: str) -> Transcript:
    segments, t = [], 0.0
    for i, text in enumerate(SENTENCES):
        words = []
        start = t
        for w in text.split():
            words.append(Word(round(t, 2), round(t + 0.3, 2), " " + w))
            t += 0.35
        segments.append(Segment(i, start, round(t, 2), " " + text, words))
    return Transcript(nid, "en", t + 1, segments, "faster-whisper", "tiny.en")


def _analysis(n: int) -> dict:
    from narratives.records.analysis import Analysis

    data = {
        "title": f"Story {n}: the dream clinic",
        "summary": [{"text": SENTENCES[0], "raw": SENTENCES[0], "start": 0.0, "end": 4.0}],
        "summary_text": SENTENCES[0],
        "quote": {"text": SENTENCES[2], "raw": SENTENCES[2], "start": 8.0, "end": 11.0},
        "campaigns": {
            "emotional-equity": {
                "tags": [{"name": "equal-access", "score": 0.8}],
                "top": "equal-access",
                "on_topic": True,
            }
        },
        "content_notes": [],
        "language": "en",
        "empty": False,
    }
    return Analysis.from_dict(data)


def populate(ctx: Context, stories: int) -> list[int]:
    ids: list[int] = []
    for n in range(stories):
        nid = hashlib.sha256(f"bench-review-{n}".encode()).hexdigest()
        now = utcnow()
        with ctx.db.begin() as conn:
            conn.execute(
                narratives.insert().values(
                    id=nid,
                    created_at=now,
                    updated_at=now,
                    size_bytes=1000,
                    duration=16.0,
                    language="en",
                    label=f"story-{n}.wav",
                )
            )
        write_transcript(ctx.workspace, nid, _transcript(nid))
        write_analysis(ctx.workspace, nid, _analysis(n))
        with stage_run(ctx.db, nid, "transcribe"):
            pass
        set_consent(
            ctx,
            nid,
            given_by="A narrator",
            method="form",
            channels=["bluesky", "rss"],
            anonymous=False,
            actor="bench",
        )
        ids.extend(drafting.run(ctx, nid))
    return ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def editor(base: str, name: str, ids: list[int], rounds: int, out: dict, seed: int) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=base, timeout=60) as client:
        token = CSRF.search(client.get("/login").text).group(1)
        r = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": token})
        assert r.status_code == 303, r.text
        for i in range(rounds):
            queries = ["", "?state=pending_review", "?q=clinic", "?channel=rss&sort=title"]
            path = "/" + queries[i % len(queries)]
            t = time.perf_counter()
            r = client.get(path)
            out["queue"].append(time.perf_counter() - t)
            assert r.status_code == 200, (path, r.status_code)
            path = f"/drafts/{rng.choice(ids)}"
            t = time.perf_counter()
            r = client.get(path)
            out["draft"].append(time.perf_counter() - t)
            assert r.status_code == 200, (path, r.status_code)


def _pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--editors", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--stories", type=int, default=60)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-review-") as tmp:
        root = Path(tmp)
        ctx = Context(init_workspace(root, force=True))
        ids = populate(ctx, args.stories)
        names = [f"editor{i}" for i in range(args.editors)]
        for name in names:
            add_user(ctx, name, PASSWORD, actor="bench")
        ctx.db.dispose()

        port = free_port()
        env = {**os.environ, "NARRATIVES_HOME": str(root)}
        server = subprocess.Popen(
            [sys.executable, "-m", "narratives", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base}/login", timeout=2)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.2)
            out: dict[str, list[float]] = {"queue": [], "draft": []}
            threads = [
                threading.Thread(target=editor, args=(base, n, ids, args.rounds, out, i))
                for i, n in enumerate(names)
            ]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - started
        finally:
            server.terminate()
            server.wait(timeout=20)

    result = {
        "editors": args.editors,
        "rounds": args.rounds,
        "drafts": len(ids),
        "seconds": round(wall, 2),
        **{
            page: {
                "requests": len(v),
                "p50_ms": round(_pct(v, 50), 1),
                "p95_ms": round(_pct(v, 95), 1),
                "p99_ms": round(_pct(v, 99), 1),
            }
            for page, v in out.items()
        },
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.editors} editors x {args.rounds} rounds, {len(ids)} drafts, "
            f"{result['seconds']} s"
        )
        for page in ("queue", "draft"):
            r = result[page]
            print(
                f"  {page:6} n={r['requests']}  p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  "
                f"p99 {r['p99_ms']} ms"
            )


if __name__ == "__main__":
    main()
