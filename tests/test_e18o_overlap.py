"""With one worker, `process` transcribes and analyses the next story while the current one
renders and drafts (issue 18, item 2: keep both cores busy across stages).

The rules of the overlap (order, at most one story ahead, a failure stays with its story) are
checked with stand-in stages on real threads, many rounds; the real pipeline is then checked
on real recordings: the second story's transcription starts before the first one's render ends,
and every story ends as it would without the overlap.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from narratives.core.config import RenderSettings, Settings
from narratives.records.stage import StageResult
from narratives.stages import pipeline
from narratives.stages.pipeline import ItemResult, _Overlap, process_paths
from narratives.store.context import Context
from narratives.store.schema import stage_runs


@dataclass
class _Log:
    lock: threading.Lock
    events: list[tuple[str, str, str, int]]  # (story, stage, begin|end, thread)
    running: set[str]
    most_running: int = 0


@dataclass(frozen=True)
class _StandIn:
    """A stage that sleeps a little, notes when it ran and on which thread, and fails or
    raises for the stories named so."""

    name: str
    log: _Log
    fail: frozenset[str] = frozenset()
    raise_for: frozenset[str] = frozenset()

    def run(self, ctx, narrative_id: str, *, force: bool = False) -> StageResult:
        me = threading.get_ident()
        with self.log.lock:
            self.log.events.append((narrative_id, self.name, "begin", me))
            self.log.running.add(narrative_id)
            self.log.most_running = max(self.log.most_running, len(self.log.running))
        time.sleep(random.uniform(0, 0.002))
        with self.log.lock:
            self.log.events.append((narrative_id, self.name, "end", me))
            self.log.running.discard(narrative_id)
        if narrative_id in self.raise_for:
            raise RuntimeError(f"{self.name} broke on {narrative_id}")
        if narrative_id in self.fail:
            return StageResult(self.name, "failed", error="stand-in failure")
        return StageResult(self.name, "done")


class _Ctx:
    db = object()


def _stand_ins(log: _Log, **bad) -> tuple[_StandIn, ...]:
    # ("analyse" would route each story through the store: "tag" is an early stage as well.)
    names = ("transcribe", "tag", "render", "draft")
    return tuple(_StandIn(n, log, **bad.get(n, {})) for n in names)


def test_stories_overlap_in_order_one_ahead_many_rounds():
    """300 stories through the overlap on real threads: results in intake order, each once;
    a story's early stages before its late ones; never more than two stories at work; early
    stages on the helper thread and late ones on the caller's, overlapping."""
    log = _Log(threading.Lock(), [], set())
    stages = _stand_ins(log)
    overlap = _Overlap(_Ctx(), force=False, progress=lambda e, d: None)
    ids = [f"story-{i:03d}" for i in range(300)]
    out: list[ItemResult] = []
    try:
        for sid in ids:
            out.extend(overlap.add(ItemResult(Path(sid), id=sid), stages, is_new=True))
        out.extend(overlap.drain())
    finally:
        overlap.close()
    assert [r.id for r in out] == ids
    assert all(r.status == "ok" for r in out)
    assert all(list(r.stages) == ["transcribe", "tag", "render", "draft"] for r in out)
    assert log.most_running <= 2
    caller = threading.get_ident()
    threads = {stage: {t for _, s, _, t in log.events if s == stage} for stage in
               ("transcribe", "tag", "render", "draft")}  # fmt: skip
    assert threads["render"] == threads["draft"] == {caller}
    # The first story has nothing to overlap with: its early stages run on the caller's
    # thread; every later story's on the one helper thread.
    assert threads["transcribe"] == threads["tag"] and len(threads["transcribe"]) == 2
    first = {t for sid, s, _, t in log.events if sid == ids[0] and s == "transcribe"}
    rest = {t for sid, s, _, t in log.events if sid != ids[0] and s == "transcribe"}
    assert first == {caller} and len(rest) == 1 and caller not in rest
    order = {(sid, stage, edge): i for i, (sid, stage, edge, _) in enumerate(log.events)}
    for sid in ids:
        assert order[(sid, "tag", "end")] < order[(sid, "render", "begin")]
    # The next story's transcription began before the current one's draft ended, often.
    overlapped = sum(
        order[(ids[k + 1], "transcribe", "begin")] < order[(ids[k], "draft", "end")]
        for k in range(len(ids) - 1)
    )
    assert overlapped > len(ids) // 2


@pytest.mark.parametrize("how", ["fail", "raise_for"])
@pytest.mark.parametrize("where", ["transcribe", "render"])
def test_a_failed_stage_stays_with_its_story(where, how):
    """One story failing (a failed result or an exception) in an early or a late stage: it is
    reported failed with its stage; the stories around it finish."""
    log = _Log(threading.Lock(), [], set())
    broken = frozenset({"story-1"})
    stages = _stand_ins(log, **{where: {how: broken}})
    overlap = _Overlap(_Ctx(), force=False, progress=lambda e, d: None)
    out = []
    try:
        for sid in ("story-0", "story-1", "story-2"):
            out.extend(overlap.add(ItemResult(Path(sid), id=sid), stages, is_new=True))
        out.extend(overlap.drain())
    finally:
        overlap.close()
    assert [r.status for r in out] == ["ok", "failed", "ok"]
    assert out[1].failed_stage == where and "story-1" in (out[1].error or "")
    ran = {s for sid, s, _, _ in log.events if sid == "story-1"}
    later = ("tag", "render", "draft") if where == "transcribe" else ("draft",)
    assert not ran & set(later)


def test_a_caller_that_stops_early_leaves_no_thread_running():
    log = _Log(threading.Lock(), [], set())
    stages = _stand_ins(log)
    overlap = _Overlap(_Ctx(), force=False, progress=lambda e, d: None)
    list(overlap.add(ItemResult(Path("a"), id="a"), stages, is_new=True))
    list(overlap.add(ItemResult(Path("b"), id="b"), stages, is_new=True))
    overlap.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("narratives-early")]


def test_close_stops_the_story_ahead_at_its_next_progress_report():
    """Ctrl-C (any exit) while a long stage runs ahead on the helper thread: it stops at its
    next progress report with the interruption, instead of running to its end."""
    log = _Log(threading.Lock(), [], set())
    overlap = _Overlap(_Ctx(), force=False, progress=lambda e, d: None)
    reports: list[float] = []

    @dataclass(frozen=True)
    class _Long:
        name: str = "transcribe"

        def run(self, ctx, narrative_id: str, *, force: bool = False) -> StageResult:
            for i in range(1000):  # 10 s in all, reporting progress as Whisper does
                overlap.report("fraction", i / 1000)
                reports.append(time.monotonic())
                time.sleep(0.01)
            return StageResult(self.name, "done")

    fast = _stand_ins(log)
    slow = (_Long(), *fast[1:])
    list(overlap.add(ItemResult(Path("a"), id="a"), fast, is_new=True))
    list(overlap.add(ItemResult(Path("b"), id="b"), slow, is_new=True))  # a finishes here
    while not reports:
        time.sleep(0.01)
    t0 = time.monotonic()
    overlap.close()
    assert time.monotonic() - t0 < 2.0
    assert len(reports) < 500
    assert not {s for sid, s, _, _ in log.events if sid == "b"}  # nothing after transcribe


def _clip(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-s", "160", "-w", str(path), text], check=True)
    return path


@pytest.mark.slow
def test_real_stories_transcribe_while_the_one_before_renders(workspace, tmp_path):
    clips = [
        _clip(tmp_path, "one", "The night shift ended at six and the bus was full of people "
              "who had not slept in their own beds for weeks."),
        _clip(tmp_path, "two", "At the clinic the quiet rooms were kept for those who paid, "
              "and the rest of us waited on plastic chairs until morning."),
        _clip(tmp_path, "three", "My grandmother said rest should be free for everyone, "
              "rich or poor, and she said it until the day she died."),
    ]  # fmt: skip
    settings = Settings(render=RenderSettings(fps=6, scale=0.25))
    ctx = Context(workspace, settings)
    threads: dict[str, set[str]] = {}
    lock = threading.Lock()

    def progress(event, detail):
        if event == "stage":
            with lock:
                threads.setdefault(str(detail).split()[0], set()).add(
                    threading.current_thread().name
                )

    results = list(
        process_paths(
            ctx, clips, settings=settings, campaigns=["emotional-equity"], progress=progress
        )
    )
    assert [r.path.name for r in results] == ["one.wav", "two.wav", "three.wav"]
    assert all(r.status == "ok" and r.new_drafts >= 1 for r in results), results
    assert all(r.stages["render"] == "done" and r.stages["draft"] == "done" for r in results)
    helpers = {n for n in threads["transcribe"] if n.startswith("narratives-early")}
    assert len(helpers) == 1 and threads["transcribe"] == {"MainThread"} | helpers
    assert threads["render"] == {"MainThread"}
    with ctx.db.connect() as conn:
        rows = conn.execute(sa.select(stage_runs)).mappings().all()
    ids = [r.id for r in results]
    began = {(r["narrative_id"], r["stage"]): r["started_at"] for r in rows}
    ended: dict[tuple[str, str], object] = {}
    for r in rows:
        key = (r["narrative_id"], r["stage"])
        ended[key] = max(ended.get(key, r["finished_at"]), r["finished_at"])
    # Story two was being transcribed before story one's last video was finished.
    assert began[(ids[1], "transcribe")] < ended[(ids[0], "render")]
    # Every stage of every story is recorded done, as without the overlap.
    for nid in ids:
        assert {
            r["stage"] for r in rows if r["narrative_id"] == nid and r["status"] == "done"
        } == set(pipeline.STAGES)
