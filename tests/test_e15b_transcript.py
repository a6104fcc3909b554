"""Transcript correction (issue 15, item 1): the alignment that keeps word times, the stored
correction and its audit diff, `narrative transcript`, the transcript page, and a re-run of
the transcribe stage that keeps the correction."""

from __future__ import annotations

import json
import stat
import threading
import uuid

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.errors import Conflict, UsageError
from narratives.records.transcript import Segment, Transcript
from narratives.stages import transcribe
from narratives.store.context import Context
from narratives.store.narrative_files import (
    corrected_transcript_path,
    read_original_transcript,
    read_transcript,
)
from narratives.store.schema import audit_log, stage_runs
from narratives.store.stage_runs import stage_run
from narratives.workflow import corrections
from tests.review_fixtures import add_narrative, add_user, transcript_for
from tests.web_client import client_for, csrf

FIRST = "There were two lines at the dream clinic, one for people who paid.\n"


def _times(t: Transcript) -> list[tuple[str, float, float]]:
    return [(w.text.strip(), w.start, w.end) for w in t.words]


# ----------------------------------------------------------------------------- alignment


def test_text_form_is_one_sentence_per_line_and_round_trips():
    t = transcript_for("x")
    form = corrections.text_form(t)
    assert form.splitlines()[0] == FIRST.strip()
    assert len(form.splitlines()) == 4
    assert corrections.text_form(corrections.align(t, form)) == form
    # Two sentences in one engine segment are two lines.
    two = Transcript(
        "x",
        "en",
        4.0,
        [Segment(0, 0.0, 2.0, " Hi there. Bye now.", [])],
        "faster-whisper",
        "tiny.en",
    )
    assert corrections.text_form(two) == "Hi there.\nBye now.\n"


def test_a_corrected_word_keeps_the_time_of_the_word_it_replaces():
    t = transcript_for("x")
    old = {w: (s, e) for w, s, e in _times(t)}
    form = corrections.text_form(t).replace("dream clinic,", "Dreamscape clinic,")
    new = corrections.align(t, form)
    times = {w: (s, e) for w, s, e in _times(new)}
    assert times["Dreamscape"] == old["dream"]
    assert "dream" not in times
    # Every other word is untouched, punctuation changes included.
    fixed = corrections.align(t, form.replace("paid.", "paid!"))
    assert dict((w, (s, e)) for w, s, e in _times(fixed))["paid!"] == old["paid."]


def test_two_words_for_one_share_its_span_and_inserted_words_share_a_neighbours():
    t = transcript_for("x")
    old = _times(t)
    clinic = next((s, e) for w, s, e in old if w == "clinic,")
    form = corrections.text_form(t).replace("clinic,", "sleep clinic,", 1)
    new = _times(corrections.align(t, form))
    i = [w for w, _, _ in new].index("sleep")
    # "dream" + "sleep" share the span of "dream" (no gap to "clinic,"), "clinic," keeps its own.
    assert new[i][1] >= new[i - 1][1] and new[i][2] <= clinic[0]
    assert new[i - 1][1] == next(s for w, s, e in old if w == "dream")
    assert (new[i + 1][1], new[i + 1][2]) == clinic
    # Many words for one: the old span is shared evenly, in order.
    form = corrections.text_form(t).replace("paid.", "paid for it all.")
    new = _times(corrections.align(t, form))
    paid = next((s, e) for w, s, e in old if w == "paid.")
    tail = new[[w for w, _, _ in new].index("paid") :][:4]
    assert tail[0][1] == pytest.approx(paid[0]) and tail[-1][2] == pytest.approx(paid[1])
    assert all(a[2] <= b[1] + 1e-9 for a, b in zip(tail, tail[1:], strict=False))
    # Every word is timed within the recording.
    assert all(0 <= s <= e <= t.duration for _, s, e in new)


def test_a_line_break_is_a_sentence_break():
    t = transcript_for("x")
    form = corrections.text_form(t)
    joined = form.replace("paid.\nThe rest", "paid, and the rest")
    new = corrections.align(t, joined)
    assert len(new.segments) == 3
    assert new.segments[0].text.strip().endswith("plastic chairs.")
    assert new.segments[0].end == t.segments[1].words[-1].end
    split = corrections.align(t, form.replace("clinic, one", "clinic.\nOne"))
    assert len(split.segments) == 5
    assert split.segments[1].start == next(w.start for w in t.words if w.text == " one")


def test_empty_or_huge_text_is_refused():
    t = transcript_for("x")
    with pytest.raises(UsageError, match="empty"):
        corrections.align(t, "  \n\n ")
    with pytest.raises(UsageError, match="characters"):
        corrections.align(t, "word " * 50_000)


# ----------------------------------------------------------------------------- storing


def _audit(ctx, nid, action="transcript.correct"):
    with ctx.db.connect() as conn:
        return conn.execute(
            sa.select(audit_log).where(audit_log.c.object_id == nid, audit_log.c.action == action)
        ).all()


def test_correct_stores_a_corrected_file_captions_and_an_audited_diff(ctx):
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    with stage_run(ctx.db, nid, "analyse"):
        pass
    original = read_original_transcript(ctx.workspace, nid)
    version = corrections.text_version(original)
    form = corrections.text_form(original).replace("dream clinic", "Dreamscape clinic")

    result = corrections.correct(ctx, nid, form, actor="kai", seen=version)
    assert result.changed and result.words_changed == 1
    assert corrected_transcript_path(ctx.workspace, nid).is_file()
    # The engine's transcript is kept as it was; every reader now gets the correction.
    assert read_original_transcript(ctx.workspace, nid) == original
    assert "Dreamscape clinic" in read_transcript(ctx.workspace, nid).text
    folder = ctx.workspace.narrative_dir(nid)
    for name in ("transcript.txt", "transcript.vtt", "transcript.srt"):
        assert "Dreamscape" in (folder / name).read_text(), name
    (row,) = _audit(ctx, nid)
    assert row.actor == "kai"
    assert "-There were two lines at the dream clinic" in row.detail
    assert "+There were two lines at the Dreamscape clinic" in row.detail
    assert row.before["text"].startswith("There were two lines at the dream clinic")
    # The later stages were made from the old text: their rows are gone, transcribe's kept.
    with ctx.db.connect() as conn:
        left = {r.stage for r in conn.execute(sa.select(stage_runs.c.stage))}
    assert left == {"transcribe"}

    # The same text again changes nothing and writes no audit row.
    again = corrections.correct(ctx, nid, form, actor="kai")
    assert not again.changed and len(_audit(ctx, nid)) == 1
    # A correction made from the text before kai's is refused, and nothing is written.
    with pytest.raises(Conflict):
        corrections.correct(ctx, nid, form.replace("paid", "payed"), actor="kai", seen=version)
    assert "payed" not in read_transcript(ctx.workspace, nid).text


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request, workspace):
    """A workspace on SQLite, or on a fresh database of the tests' PostgreSQL server."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        name = f"e15b_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        workspace.settings_path.write_text(f'[database]\nurl = "{url.rsplit("/", 1)[0]}/{name}"\n')
    ctx = Context(workspace)
    assert ctx.db.dialect.name == request.param.replace("postgres", "postgresql")
    return ctx


def test_two_editors_correcting_at_once_never_lose_a_correction(any_db):
    """Real threads, 100 rounds: two corrections from the same version; exactly one lands."""
    ctx = any_db
    add_user(ctx, "kai")
    add_user(ctx, "fayez")
    nid = add_narrative(ctx)
    results = {"landed": 0, "refused": 0}
    for n in range(100):
        current = read_transcript(ctx.workspace, nid)
        version = corrections.text_version(current)
        form = corrections.text_form(current)
        lines = form.splitlines()
        texts = {  # each a real change: a new first word of line 1 (kai) or line 2 (fayez)
            "kai": "\n".join([f"K{n} " + lines[0].split(" ", 1)[1], *lines[1:]]),
            "fayez": "\n".join([lines[0], f"F{n} " + lines[1].split(" ", 1)[1], *lines[2:]]),
        }
        barrier = threading.Barrier(2)
        outcome: dict[str, str] = {}

        def edit(who: str, texts=texts, barrier=barrier, outcome=outcome, version=version):
            barrier.wait()
            try:
                corrections.correct(ctx, nid, texts[who], actor=who, seen=version)
                outcome[who] = "ok"
            except Conflict:
                outcome[who] = "conflict"

        threads = [threading.Thread(target=edit, args=(w,)) for w in texts]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(outcome.values()) == ["conflict", "ok"], (n, outcome)
        winner = next(w for w, o in outcome.items() if o == "ok")
        stored = corrections.text_form(read_transcript(ctx.workspace, nid))
        assert stored == corrections.text_form(corrections.align(current, texts[winner])), (
            n
        )  # the winner's text, whole
        results["landed"] += 1
        results["refused"] += 1
    assert results == {"landed": 100, "refused": 100}
    assert len(_audit(ctx, nid)) == 100


def test_a_new_transcription_keeps_the_correction_unless_discarded(ctx):
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    original = read_original_transcript(ctx.workspace, nid)
    form = corrections.text_form(original).replace("dream clinic", "Dreamscape clinic")
    corrections.correct(ctx, nid, form, actor="kai")
    # What the transcribe stage does with a new engine transcript (process --force).
    retranscribed = transcript_for(nid)
    assert transcribe._stored(ctx, nid) == original  # it compares with the engine's own
    transcribe._write(ctx, nid, retranscribed)
    assert "Dreamscape" in read_transcript(ctx.workspace, nid).text
    assert "Dreamscape" in (ctx.workspace.narrative_dir(nid) / "transcript.vtt").read_text()

    assert corrections.discard(ctx, nid, actor="kai")
    assert not corrected_transcript_path(ctx.workspace, nid).exists()
    assert "dream clinic" in read_transcript(ctx.workspace, nid).text
    assert "Dreamscape" not in (ctx.workspace.narrative_dir(nid) / "transcript.vtt").read_text()
    assert len(_audit(ctx, nid, "transcript.discard")) == 1
    assert not corrections.discard(ctx, nid, actor="kai")


# ----------------------------------------------------------------------------- the CLI


def _run(*args, env=None, input=None):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, env=env, input=input)


def test_cli_show_edit_from_file_and_json(ctx, tmp_path):
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    shown = _run("transcript", "show", nid[:10], "--json")
    assert shown.exit_code == 0
    data = json.loads(shown.stdout)
    assert data["text"].startswith(FIRST) and data["corrected"] is False

    fixed = tmp_path / "fixed.txt"
    fixed.write_text(data["text"].replace("dream clinic", "Dreamscape clinic"), encoding="utf-8")
    out = _run(
        "transcript",
        "edit",
        nid[:10],
        "--from-file",
        str(fixed),
        "--no-outputs",
        "--as",
        "kai",
        "--json",
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["changed"] is True and result["words_changed"] == 1
    assert "+There were two lines at the Dreamscape clinic" in result["diff"]
    assert json.loads(_run("transcript", "show", nid[:10], "--json").stdout)["corrected"]

    same = _run("transcript", "edit", nid[:10], "--from-file", str(fixed), "--as", "kai")
    assert same.exit_code == 0 and "unchanged" in same.stdout
    # From stdin.
    text = fixed.read_text().replace("plastic chairs", "plastic seats")
    piped = _run(
        "transcript",
        "edit",
        nid[:10],
        "--from-file",
        "-",
        "--no-outputs",
        "--as",
        "kai",
        input=text,
    )
    assert piped.exit_code == 0 and "1 word(s) changed" in piped.stdout


def test_cli_edit_opens_the_editor(ctx, tmp_path):
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    editor = tmp_path / "fix-words"
    editor.write_text("#!/bin/sh\nsed -i 's/dream clinic/Dreamscape clinic/' \"$1\"\n")
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)
    out = _run(
        "transcript",
        "edit",
        nid[:10],
        "--no-outputs",
        "--as",
        "kai",
        "--json",
        env={"EDITOR": str(editor), "VISUAL": str(editor)},
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["words_changed"] == 1
    assert "Dreamscape clinic" in read_transcript(ctx.workspace, nid).text
    # The editor's help header never reaches the transcript.
    assert "#" not in corrections.text_form(read_transcript(ctx.workspace, nid))


def test_cli_errors_have_exit_codes(ctx, tmp_path):
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    assert _run("transcript", "edit", "abcdef", "--as", "kai").exit_code == 5
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    bad = _run("transcript", "edit", nid[:10], "--from-file", str(empty), "--as", "kai")
    assert bad.exit_code == 2 and "empty" in bad.stderr
    missing = _run(
        "transcript", "edit", nid[:10], "--from-file", str(tmp_path / "nope.txt"), "--as", "kai"
    )
    assert missing.exit_code == 2 and "nope.txt" in missing.stderr
    assert _run("transcript", "edit", nid[:10], "--from-file", str(empty)).exit_code == 2
    assert _run("transcript", "edit", "--help").exit_code == 0
    nobody = tmp_path / "x.txt"
    nobody.write_text("Hello.\n")
    denied = _run("transcript", "edit", nid[:10], "--from-file", str(nobody), "--as", "mallory")
    assert denied.exit_code == 7


# ----------------------------------------------------------------------------- the page


def test_transcript_page_corrects_and_remakes_the_outputs(ctx, monkeypatch):
    nid = add_narrative(ctx)
    remade: list[tuple[str, str]] = []

    def fake_rederive(ctx_, narrative_id, *, actor, progress=None):
        remade.append((narrative_id, actor))
        return corrections.Rederived(analysed=True, videos=2, drafts=2)

    monkeypatch.setattr(corrections, "rederive", fake_rederive)
    client = client_for(ctx)
    page = client.get(f"/narratives/{nid}/transcript")
    assert page.status_code == 200
    assert FIRST.strip() in page.text and "as transcribed" in page.text
    version = corrections.text_version(read_transcript(ctx.workspace, nid))
    assert f'name="version" value="{version}"' in page.text

    form = corrections.text_form(read_transcript(ctx.workspace, nid))
    fixed = form.replace("dream clinic", "Dreamscape <b>clinic</b>")
    token = csrf(client, f"/narratives/{nid}/transcript")
    r = client.post(
        f"/narratives/{nid}/transcript", data={"csrf": token, "text": fixed, "version": version}
    )
    assert r.status_code == 303
    after = client.get(f"/narratives/{nid}/transcript").text
    assert "Correction saved (2 words changed)" in after
    assert "corrected by an editor" in after
    # Escaped everywhere: the form and the diff.
    assert "<b>clinic</b>" not in after and "&lt;b&gt;clinic&lt;/b&gt;" in after
    for _ in range(100):
        if remade:
            break
        threading.Event().wait(0.05)
    assert remade == [(nid, "kai")]

    # A stale form (made before this correction) is refused and changes nothing.
    r = client.post(
        f"/narratives/{nid}/transcript",
        data={"csrf": token, "text": form.replace("paid", "payed"), "version": version},
    )
    assert r.status_code == 303
    assert "someone corrected this transcript" in client.get(r.headers["location"]).text
    assert "payed" not in read_transcript(ctx.workspace, nid).text


def test_transcript_page_needs_login_csrf_and_a_real_story(ctx):
    nid = add_narrative(ctx)
    client = client_for(ctx, user=None)
    r = client.get(f"/narratives/{nid}/transcript")
    assert r.status_code in (302, 303) and "/login" in r.headers["location"]
    client = client_for(ctx)
    r = client.post(f"/narratives/{nid}/transcript", data={"text": "Hello."})
    assert r.status_code == 403
    assert "Hello" not in read_transcript(ctx.workspace, nid).text
    assert client.get("/narratives/nothex/transcript").status_code == 404
    assert client.get(f"/narratives/{'0' * 64}/transcript").status_code == 404
    # The draft page links to it.
    from narratives.stages.draft import stage as drafting

    (draft_id, *_) = drafting.run(ctx, nid)
    assert f'href="/narratives/{nid}/transcript"' in client.get(f"/drafts/{draft_id}").text
