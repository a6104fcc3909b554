"""The `narrative process` / `transcribe` commands: batches, bad input, idempotency, JSON."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from narratives.cli import cli
from narratives.media.captions import parse_srt, parse_webvtt
from narratives.store.context import Context
from narratives.store.stage_runs import list_runs


@pytest.fixture(scope="session")
def speech_clip(tmp_path_factory):
    """A short real spoken clip (espeak-ng), made once."""
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-s",
            "150",
            "-w",
            str(path),
            "I dreamed of a quiet room where everyone could rest.",
        ],
        check=True,
    )
    return path


def _run(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _bad_files(folder):
    (folder / "empty.wav").write_bytes(b"")
    (folder / "notes.wav").write_text("this is a text file, not audio\n")
    silent_video = folder / "no-audio.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64:rate=5",
            "-t",
            "1",
            "-pix_fmt",
            "yuv420p",
            str(silent_video),
        ],
        check=True,
    )
    short = folder / "blip.wav"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=0.1",
            str(short),
        ],
        check=True,
    )
    (folder / "folder.wav").mkdir()
    return {"empty.wav", "notes.wav", "no-audio.mp4", "blip.wav", "folder.wav"}


@pytest.mark.slow
def test_batch_reports_each_bad_file_and_finishes_the_rest(tmp_path, speech_clip, workspace):
    rec = tmp_path / "recordings"
    rec.mkdir()
    shutil.copy(speech_clip, rec / "good.wav")
    truncated = rec / "truncated.wav"
    truncated.write_bytes(speech_clip.read_bytes()[:2000])
    bad = _bad_files(rec) | {"truncated.wav"}

    result = _run("transcribe", str(rec), str(tmp_path / "missing.wav"), "--json")
    assert result.exit_code == 1
    items = {
        json.loads(line)["path"].rsplit("/", 1)[-1]: json.loads(line)
        for line in result.output.splitlines()
        if line.startswith("{")
    }
    assert items["good.wav"]["status"] == "ok"
    assert "quiet room" in items["good.wav"]["text"].lower()
    failed = {name for name, item in items.items() if item["status"] == "failed"}
    # folder.wav is a folder: walking skips it; named directly it would fail.
    assert failed == (bad - {"folder.wav"}) | {"missing.wav"}
    for name in failed:
        err = items[name]["error"]
        assert name in err and len(err) > len(name) + 5, err

    # A failed narrative has no partial transcript files.
    ctx = Context(workspace)
    for name in failed:
        nid = items[name]["id"]
        if nid:
            folder = workspace.narrative_dir(nid)
            assert not list(folder.glob("transcript.*")) if folder.exists() else True
            runs = [r for r in list_runs(ctx.db, nid) if r.stage == "transcribe"]
            assert runs and runs[0].status == "failed" and runs[0].error


def test_directory_named_directly_fails_cleanly(tmp_path):
    (tmp_path / "x.wav").mkdir()
    result = _run("transcribe", str(tmp_path / "x.wav"), "--json")
    # Named directly, a folder is walked; it holds nothing, which the user is told.
    assert result.exit_code == 1 and result.stdout == ""
    assert "no recordings found under" in result.stderr and "x.wav" in result.stderr


@pytest.mark.slow
def test_json_contract_and_caption_files(speech_clip, workspace):
    result = _run("transcribe", str(speech_clip), "--json")
    assert result.exit_code == 0, result.output
    (item,) = _json_lines(result.output)
    for key in ("path", "id", "status", "error", "language", "duration", "text", "segments"):
        assert key in item
    assert item["status"] == "ok" and item["error"] is None and item["language"] == "en"
    assert 2.0 < item["duration"] < 6.0
    words = [w for s in item["segments"] for w in s["words"]]
    assert words and all({"start", "end", "probability", "text"} <= set(w) for w in words)
    assert all(0 <= w["start"] <= w["end"] <= item["duration"] + 0.05 for w in words)
    folder = workspace.narrative_dir(item["id"])
    stored = json.loads((folder / "transcript.json").read_text())
    assert stored["text"] == item["text"]
    assert (folder / "transcript.txt").read_text().strip() == item["text"]
    srt = parse_srt((folder / "transcript.srt").read_text())
    vtt = parse_webvtt((folder / "transcript.vtt").read_text())
    assert srt and len(srt) == len(vtt)
    assert " ".join(c.text for c in vtt).split() == item["text"].split()


@pytest.mark.slow
def test_idempotent_and_same_audio_under_two_names(tmp_path, speech_clip, workspace):
    a, b = tmp_path / "a.wav", tmp_path / "copy-of-a.wav"
    shutil.copy(speech_clip, a)
    shutil.copy(speech_clip, b)
    first = _json_lines(_run("transcribe", str(a), "--json").output)[0]
    ctx = Context(workspace)
    run1 = [r for r in list_runs(ctx.db, first["id"]) if r.stage == "transcribe"][0]

    again = _json_lines(_run("transcribe", str(a), str(b), "--json").output)
    assert [i["status"] for i in again] == ["skipped", "skipped"]
    assert {i["id"] for i in again} == {first["id"]}
    run2 = [r for r in list_runs(ctx.db, first["id"]) if r.stage == "transcribe"][0]
    assert run2.started_at == run1.started_at

    shown = json.loads(_run("show", first["id"][:10], "--json").output)
    assert sorted(p.rsplit("/", 1)[-1] for p in shown["paths"]) == ["a.wav", "copy-of-a.wav"]

    forced = _json_lines(_run("transcribe", str(a), "--force", "--json").output)[0]
    assert forced["status"] == "ok"
    run3 = [r for r in list_runs(ctx.db, first["id"]) if r.stage == "transcribe"][0]
    assert run3.started_at > run1.started_at


@pytest.mark.slow
def test_status_and_show(speech_clip):
    item = _json_lines(_run("transcribe", str(speech_clip), "--json").output)[0]
    status = _json_lines(_run("status", "--json").output)
    assert [s["id"] for s in status] == [item["id"]]
    assert status[0]["stages"]["transcribe"] == "done"
    assert status[0]["stages"]["analyse"] in ("pending", "done")
    human = _run("status").output
    assert item["id"][:12] in human
    shown = _run("show", item["id"][:8])
    assert shown.exit_code == 0 and "quiet room" in shown.output.lower()
    assert _run("show", "ffffffff").exit_code == 5
    assert _run("show", "not-hex").exit_code == 2


def test_usage_errors_exit_2(speech_clip):
    assert _run("transcribe", str(speech_clip), "--engine", "nope").exit_code == 2
    assert _run("transcribe").exit_code == 2
    assert _run("process", "--until", "nowhere", str(speech_clip)).exit_code == 2


def test_missing_model_is_a_clear_error(speech_clip):
    result = _run("transcribe", str(speech_clip), "--model", "/no/such/model", "--json")
    assert result.exit_code == 4 and result.stdout == ""
    assert "/no/such/model" in result.stderr and "Hint:" in result.stderr


@pytest.mark.slow
def test_a_bad_model_keeps_the_transcript_already_made(speech_clip, workspace):
    from narratives.core.errors import ModelNotAvailable
    from narratives.stages.transcribe import run as transcribe_stage

    item = _json_lines(_run("transcribe", str(speech_clip), "--json").output)[0]
    folder = workspace.narrative_dir(item["id"])
    before = {p.name: p.read_bytes() for p in folder.glob("transcript.*")}
    assert len(before) == 4

    result = _run("transcribe", str(speech_clip), "--model", "nonsense")
    assert result.exit_code == 4 and "unknown Whisper model 'nonsense'" in result.stderr
    ctx = Context(workspace)
    settings = ctx.settings.model_copy(
        update={"transcribe": ctx.settings.transcribe.model_copy(update={"model": "nonsense"})}
    )
    with pytest.raises(ModelNotAvailable):  # callers other than the CLI are checked too
        transcribe_stage(ctx, item["id"], force=True, settings=settings)

    assert {p.name: p.read_bytes() for p in folder.glob("transcript.*")} == before
    (run,) = [r for r in list_runs(ctx.db, item["id"]) if r.stage == "transcribe"]
    assert run.status == "done"


def test_unknown_language_codes_are_usage_errors(speech_clip, workspace):
    result = _run("transcribe", str(speech_clip), "--language", "xx")
    assert result.exit_code == 2 and "unknown language code 'xx'" in result.stderr
    # English-only weights asked for German fail the command before any file is touched.
    result = _run("transcribe", str(speech_clip), "--language", "DE")
    assert result.exit_code == 4 and "English-only" in result.stderr
    toml = workspace.settings_path
    toml.write_text(toml.read_text().replace('language = ""', 'language = "klingon"'))
    result = _run("process", str(speech_clip), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "transcribe.language" in result.stderr
    assert not list(workspace.work_dir.iterdir())


@pytest.mark.slow
def test_a_new_request_redoes_the_transcript_and_a_new_transcript_resets_later_stages(
    speech_clip, workspace
):
    """Uses only the shipped tiny.en weights (base is an optional extra, not in CI)."""
    from narratives.store.stage_runs import stage_run

    def runs(stage):
        return [r for r in list_runs(ctx.db, nid) if r.stage == stage]

    ctx = Context(workspace)
    nid = _json_lines(_run("transcribe", str(speech_clip), "--json").output)[0]["id"]
    with stage_run(ctx.db, nid, "analyse"):  # stands in for an analysis of this transcript
        pass
    # The same request with the same result: later stages stay done.
    assert _json_lines(_run("transcribe", str(speech_clip), "--force", "--json").output)
    assert [r.status for r in runs("analyse")] == ["done"]

    # " EN " is English, which the English-only model always transcribes: the same request.
    same = _run("transcribe", str(speech_clip), "--language", " EN ", "--json")
    assert _json_lines(same.output)[0]["status"] == "skipped"
    # Another engine is another request: redone, not skipped; then skipped when repeated.
    other = _run("transcribe", str(speech_clip), "--engine", "openai-whisper", "--json")
    assert _json_lines(other.output)[0]["status"] == "ok"
    assert runs("transcribe")[0].output["requested"] == ["openai-whisper", "tiny.en", "en"]
    again = _run("transcribe", str(speech_clip), "--engine", "openai-whisper", "--json")
    assert _json_lines(again.output)[0]["status"] == "skipped"

    # A transcript that comes out different (the stored one is changed on disk here, standing
    # in for one made by another model) leaves the analysis of the old one not done.
    path = workspace.narrative_dir(nid) / "transcript.json"
    old = json.loads(path.read_text(encoding="utf-8"))
    old["segments"][0]["text"] = "Something else was said."
    path.write_text(json.dumps(old), encoding="utf-8")
    with stage_run(ctx.db, nid, "analyse"):  # an analysis of that stored transcript
        pass
    assert [r.status for r in runs("analyse")] == ["done"]
    redo = _run("transcribe", str(speech_clip), "--force", "--json")
    assert _json_lines(redo.output)[0]["status"] == "ok"
    assert runs("analyse") == []
    assert _json_lines(_run("status", "--json").output)[0]["stages"]["analyse"] == "pending"


@pytest.mark.slow
def test_a_damaged_stored_transcript_is_transcribed_again(speech_clip, workspace):
    """A transcript.json that cannot be read fails neither the skip check nor the comparison:
    the stage transcribes again, and the stages made from the lost text are redone."""
    from narratives.store.stage_runs import stage_run

    ctx = Context(workspace)
    nid = _json_lines(_run("transcribe", str(speech_clip), "--json").output)[0]["id"]
    path = workspace.narrative_dir(nid) / "transcript.json"
    path.write_text('{"segments": [', encoding="utf-8")
    with stage_run(ctx.db, nid, "analyse"):  # made from the transcript now damaged
        pass
    redo = _json_lines(_run("transcribe", str(speech_clip), "--json").output)[0]
    assert redo["status"] == "ok" and redo["error"] is None
    assert json.loads(path.read_text(encoding="utf-8"))["text"] == redo["text"]
    assert [r for r in list_runs(ctx.db, nid) if r.stage == "analyse"] == []


@pytest.mark.slow
def test_names_with_markup_characters_are_shown_as_they_are(tmp_path, speech_clip):
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(speech_clip, rec / "[draft] story.wav")
    result = _run("transcribe", str(rec), "nope/[/b]")
    assert result.exit_code == 1
    assert "[draft] story.wav" in result.stdout and "nope/[/b]" in result.stdout
    status = _run("status")
    assert status.exit_code == 0 and "[draft]" in status.stdout


@pytest.mark.slow
def test_a_newline_in_a_file_name_stays_on_its_row(tmp_path, speech_clip):
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(speech_clip, rec / "two\nlines.wav")
    result = _run("transcribe", str(rec))
    assert result.exit_code == 0, result.output
    assert "two⏎lines.wav" in result.stdout
    assert not any(line.strip().startswith("lines.wav") for line in result.stdout.splitlines())


def test_help_on_every_command():
    def walk(group, prefix):
        for name, cmd in group.commands.items():
            args = [*prefix, name]
            res = _run(*args, "--help")
            assert res.exit_code == 0 and "Usage:" in res.output, args
            if hasattr(cmd, "commands"):
                walk(cmd, args)

    walk(cli, [])


def test_parallel_workers_and_duplicates_in_one_batch(tmp_path, speech_clip):
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(speech_clip, rec / "a.wav")
    shutil.copy(speech_clip, rec / "b-same-audio.wav")
    subprocess.run(
        ["espeak-ng", "-w", str(rec / "c.wav"), "The assembly met inside one shared dream."],
        check=True,
    )
    (rec / "d.wav").write_text("not audio")
    result = _run("process", str(rec), "--until", "transcribe", "--workers", "2", "--json")
    assert result.exit_code == 1
    items = {i["path"].rsplit("/", 1)[-1]: i for i in _json_lines(result.output)}
    assert items["a.wav"]["status"] == "ok" and items["c.wav"]["status"] == "ok"
    assert items["b-same-audio.wav"]["status"] == "skipped"
    assert items["b-same-audio.wav"]["id"] == items["a.wav"]["id"]
    # Each input's line describes its transcript, the duplicate's too (not nulls).
    dup, first = items["b-same-audio.wav"], items["a.wav"]
    assert (dup["language"], dup["duration"]) == (first["language"], first["duration"])
    assert dup["language"] == "en"
    assert items["d.wav"]["status"] == "failed" and "d.wav" in items["d.wav"]["error"]
    status = {s["id"]: s for s in _json_lines(_run("status", "--json").output)}
    assert status[items["c.wav"]["id"]]["stages"]["transcribe"] == "done"


# A fault injector, named as such: no real recording crashes the decoder on demand. Spawned
# workers import this `sitecustomize` (via PYTHONPATH) and die abruptly on one file name, as
# a native crash or the OOM killer would kill them.
_CRASH_ON_FILE = """
import os
import narratives.stages.pipeline as _p

_real = _p._run_stages


def _crash_on_file(ctx, result, *args, **kwargs):
    if result.path.name == "crash.wav":
        os._exit(70)
    return _real(ctx, result, *args, **kwargs)


_p._run_stages = _crash_on_file
"""


def test_a_worker_crash_fails_only_its_own_file(tmp_path, speech_clip, monkeypatch):
    injector = tmp_path / "injector"
    injector.mkdir()
    (injector / "sitecustomize.py").write_text(_CRASH_ON_FILE)
    monkeypatch.setenv("PYTHONPATH", str(injector))
    rec = tmp_path / "rec"
    rec.mkdir()
    for i, text in enumerate(["The first dream.", "The second dream.", "The third dream."]):
        subprocess.run(["espeak-ng", "-w", str(rec / f"ok-{i}.wav"), text], check=True)
    subprocess.run(["espeak-ng", "-w", str(rec / "crash.wav"), "A dream that crashes."], check=True)
    result = _run("process", str(rec), "--until", "transcribe", "--workers", "2", "--json")
    assert result.exit_code == 1
    items = {i["path"].rsplit("/", 1)[-1]: i for i in _json_lines(result.output)}
    assert {n: i["status"] for n, i in items.items()} == {
        "ok-0.wav": "ok",
        "ok-1.wav": "ok",
        "ok-2.wav": "ok",
        "crash.wav": "failed",
    }
    assert "crash.wav" in items["crash.wav"]["error"]
    assert "crashed" in items["crash.wav"]["error"]


@pytest.mark.slow
def test_a_stage_killed_midway_shows_as_interrupted_and_is_redone(speech_clip, workspace):
    import os
    import sys

    item = _json_lines(_run("transcribe", str(speech_clip), "--json").output)[0]
    killer = (
        "import os, signal\n"
        "from narratives.store.context import Context\n"
        "from narratives.store.stage_runs import stage_run\n"
        "ctx = Context.current()\n"
        f"with stage_run(ctx.db, {item['id']!r}, 'transcribe'):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "NARRATIVES_HOME": str(workspace.root)}
    died = subprocess.run([sys.executable, "-c", killer], env=env, check=False)
    assert died.returncode == -9
    status = _json_lines(_run("status", "--json").output)[0]
    assert status["stages"]["transcribe"] == "interrupted"

    again = _json_lines(_run("transcribe", str(speech_clip), "--json").output)[0]
    assert again["status"] == "ok" and "quiet room" in again["text"].lower()
    assert _json_lines(_run("status", "--json").output)[0]["stages"]["transcribe"] == "done"


# A fault injector: the transcription stage waits, so Ctrl-C lands while it works.
_SLOW_TRANSCRIPTION = """
import signal
import time

import narratives.engines.whisper as _t

# Background jobs may inherit SIGINT ignored; Ctrl-C must raise KeyboardInterrupt here.
signal.signal(signal.SIGINT, signal.default_int_handler)


def _wait(*args, **kwargs):
    time.sleep(60)


_t.transcribe_file = _wait
"""


def test_ctrl_c_exits_130_and_the_stage_shows_as_interrupted(tmp_path, speech_clip, workspace):
    import os
    import signal
    import sys
    import time

    injector = tmp_path / "injector"
    injector.mkdir()
    (injector / "sitecustomize.py").write_text(_SLOW_TRANSCRIPTION)
    env = {**os.environ, "PYTHONPATH": str(injector), "NARRATIVES_HOME": str(workspace.root)}
    child = subprocess.Popen(
        [sys.executable, "-m", "narratives", "transcribe", str(speech_clip)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ctx = Context(workspace)
        deadline = time.monotonic() + 60
        while not any(r.status == "running" for r in list_runs(ctx.db)):
            assert child.poll() is None and time.monotonic() < deadline, "never started"
            time.sleep(0.1)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 130, stderr
    assert "Interrupted." in stderr and "Aborted!" not in stderr
    (run,) = list_runs(ctx.db)
    assert run.status == "interrupted" and run.error is None
    assert _json_lines(_run("status", "--json").output)[0]["stages"]["transcribe"] == "interrupted"
