"""Issue 14: one normalised matcher for redaction and the leak check (spelled, initialled and
punctuated names, accents, case, possessives), the two detectors combined, terms refused with
the reason, and the leak check at publish sending a draft back to review."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.errors import UsageError
from narratives.media import captions
from narratives.policy import anonymise
from narratives.policy.names import Matcher, keys_of, letter_runs
from narratives.records.analysis import Analysis, Entity
from narratives.records.common_words import term_problem
from narratives.records.redactions import Term
from narratives.records.transcript import Segment, Transcript, Word
from narratives.stages.analyse.entities import combine, heuristic_entities
from narratives.stages.analyse.timing import align_words
from narratives.store import audit, redactions
from narratives.store.delivery_queries import get_delivery
from narratives.workflow import review, scheduling
from narratives.workflow.publishing import publish_delivery
from tests.delivery_fixtures import add_draft, add_narrative, bluesky_content, write_media
from tests.web_client import client_for, post

DMITRI = Term("D. M. I. T. R. I.", "name")


def transcript(*tokens: str, step: float = 0.3) -> Transcript:
    words = [Word(i * step, i * step + step * 0.9, f" {t}") for i, t in enumerate(tokens)]
    text = "".join(w.text for w in words)
    segment = Segment(0, 0.0, words[-1].end, text, words)
    return Transcript("f" * 64, "en", len(words) * step + 0.5, [segment], "e", "m")


# ----------------------------------------------------------------------------- the matcher


@pytest.mark.parametrize(
    "text",
    [
        "His name is D. M. I. T. R. I., and he fixed bikes.",
        "His name is D-M-I-T-R-I, and he fixed bikes.",
        "his name is d m i t r i and he fixed bikes",
        "His name is Dmitri, and he fixed bikes.",
        "His name is DMITRI, and he fixed bikes.",
        "his name is d m i t r i i think and he fixed bikes",
    ],
)
def test_a_spelled_term_hides_every_spelling_and_the_word(text):
    out = Matcher([DMITRI]).redact(text)
    assert "[name]" in out
    assert "dmitri" not in out.lower().replace(" ", "").replace(".", "").replace("-", "")
    assert "fixed bikes" in out


def test_spelled_term_in_post_text_is_hidden_too():
    """The issue's case: the editor's "D. M. I. T. R. I." bleeped the audio but not the post."""
    content = bluesky_content("Dmitri's bike, D-M-I-T-R-I's words. #EmotionalEquity")
    red = anonymise.redact_draft(content, [DMITRI])
    assert red["posts"][0]["text"] == "[name]'s bike, [name]'s words. #EmotionalEquity"
    assert anonymise.draft_leaks(content, [DMITRI]) == ["D. M. I. T. R. I."]
    assert anonymise.draft_leaks(red, [DMITRI]) == []


@pytest.mark.parametrize(
    ("term", "text", "expected"),
    [
        (Term("St. Ives", "place"), "To St Ives, then st. ives.", "To [place], then [place]."),
        (Term("St Ives", "place"), "From St. Ives to St Albans.", "From [place] to St Albans."),
        (Term("Zoë-Marie", "person"), "Zoe Marie and ZOË-MARIE's dog", "[name] and [name]'s dog"),
        (Term("zoe", "person"), "Zoë-Marie and ZOE came.", "[name] and [name] came."),
        (Term("J. R. Whitfield", "person"), "JR Whitfield, J.R. Whitfield.", "[name], [name]."),
        # A part alone is hidden capitalised, or in a text without capitals (fix: "the parks").
        (Term("Rosa Parks", "person"), "Rosa Parks, Parks' car, rosa", "[name], [name]' car, rosa"),  # noqa: E501
        (Term("Rosa Parks", "person"), "rosa parks, parks' car, rosa", "[name], [name]' car, [name]"),  # noqa: E501
    ],
)  # fmt: skip
def test_punctuation_accents_case_and_possessives(term, text, expected):
    assert anonymise.redact_text(text, [term]) == expected


def test_no_false_positives_from_letters_stop_words_titles_or_nationalities():
    terms = [Term("St. Ives", "place"), Term("Ana de la Cruz", "person"), DMITRI]
    text = "I said it: St Albans, a street. An American in the West, de facto, I am."
    assert anonymise.redact_text(text, terms) == text
    # Parts of a full name that are common words or particles never match on their own.
    assert Matcher([Term("Will De Souza", "person")]).redact("I will go to de Souza.") == (
        "I will go to de [name]."
    )
    # A nationality is hidden only when an editor marks it.
    assert anonymise.redact_text("An American dream.", [Term("American")]) == "An [name] dream."


def test_keys_and_letter_runs():
    # Initials that spell a title ("jr") keep a spelled mark: alone they match only spelled
    # initials; in a longer name "JR Whitfield" is still "J. R. Whitfield" (tested above).
    assert keys_of("J. R. Whitfield") == (".jr", "whitfield")
    assert keys_of("JR Whitfield") == ("jr", "whitfield")
    assert keys_of("K. T. Whitfield") == keys_of("KT Whitfield") == ("kt", "whitfield")
    assert keys_of("D-M-I-T-R-I") == keys_of("dmitri") == ("dmitri",)
    assert keys_of("O'Brien's") == ("obrien",)
    assert [r[2] for r in letter_runs("K-A-T-Y-A and I, then J. R. Smith")] == ["katya", "jr"]


def test_spelled_name_over_words_is_one_bleep_and_one_caption_word():
    """Whisper writes a spelled name as one word per letter: one run of words, one interval,
    one "[name]" in the captions (no single-letter cues left)."""
    t = transcript(
        "It's", "D.", "M.", "I.", "T.", "R.", "I.,", "my", "brother", "Dmitri's", "bike."
    )
    intervals = anonymise.bleep_intervals(t, [DMITRI], pad=0.0)
    assert intervals == [(0.3, pytest.approx(2.07)), (2.7, pytest.approx(2.97))]
    out = anonymise.anonymised_transcript(t, [DMITRI])
    assert out.text == "It's [name]., my brother [name]'s bike."
    assert [w.text for w in out.words][1] == " [name].,"
    assert (out.words[1].start, out.words[1].end) == (0.3, pytest.approx(2.07))
    vtt, srt = captions.to_webvtt(out), captions.to_srt(out)
    for text in (vtt, srt):
        assert "[name]" in text
        assert not any(f" {c}." in text for c in "DMITR"), text


def test_place_with_inner_full_stop_over_words():
    t = transcript("We", "lived", "in", "St.", "Ives", "then", "St", "Albans.")
    assert anonymise.bleep_intervals(t, [Term("St Ives", "place")], pad=0) == [
        (0.9, pytest.approx(1.47))
    ]
    assert anonymise.anonymised_transcript(t, [Term("St Ives", "place")]).text == (
        "We lived in [place] then St Albans."
    )  # fmt: skip


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("term", "why"),
    [("D", "single letter"), ("d.", "single letter"), ("the", "common word"),
     ("Will", "common word"), ("St", "title"), ("St.", "title"), ("  ", "give a word")],
)  # fmt: skip
def test_one_letter_stop_words_and_titles_are_refused_with_the_reason(ctx, term, why):
    nid = add_narrative(ctx)
    assert why in (term_problem(term) or "")
    with pytest.raises(UsageError, match=why):
        redactions.mark_term(ctx, nid, term, actor="kai")
    assert redactions.marked_terms(ctx, nid) == []
    # A spelled-out name, a nationality and a two-letter name are fine.
    for ok in ("D. M. I. T. R. I.", "American", "Jo"):
        assert term_problem(ok) is None


def test_cli_redact_refuses_a_letter_or_stop_word_with_exit_2(ctx):
    nid = add_narrative(ctx)
    runner = CliRunner()
    for term in ("J", "and"):
        r = runner.invoke(cli, ["consent", "redact", nid[:12], term, "--as", "kai"])
        assert r.exit_code == 2, r.output
        assert "not hidden" in r.output and (
            "single letter" in r.output or "common word" in r.output
        )
    r = runner.invoke(cli, ["consent", "redact", nid[:12], "D. M. I. T. R. I.", "--as", "kai"])
    assert r.exit_code == 0, r.output
    assert [t.text for t in redactions.marked_terms(ctx, nid)] == ["D. M. I. T. R. I."]


def test_web_hide_refuses_a_letter_or_stop_word(ctx):
    nid = add_narrative(ctx)
    draft = add_draft(ctx, "emotional-equity", "bluesky", narrative_id=nid, state="pending_review")
    client = client_for(ctx)
    for term in ("x", "The"):
        r = post(client, f"/drafts/{draft}/hide", {"term": term, "kind": "name"})
        assert r.status_code == 400
        assert "hiding it would blank" in r.text
    assert redactions.marked_terms(ctx, nid) == []


# ----------------------------------------------------------------------------- the detectors


def test_combined_detector_records_who_found_what_and_what_it_overrules():
    text = "Zoë met Søren at Tesco on Christmas Eve."
    e = lambda a, b, kind="name": Entity(text[a:b], kind, None, None, a, b)  # noqa: E731
    model = [e(0, 3, "person")]  # "Zoë"
    eve = text.index("Eve")
    heuristic = [e(0, 3), e(8, 13), e(17, 22, "place"), e(eve, eve + 3)]  # Zoë, Søren, Tesco, Eve
    overruled = [(8, 13, "ORG"), (17, 22, "ORG"), (text.index("Christmas"), eve + 3, "DATE")]
    out = combine(model, heuristic, text, overruled=overruled)
    got = {x.text: (x.kind, x.found_by, x.hide) for x in out}
    assert got == {
        "Zoë": ("person", "both", True),
        "Søren": ("name", "heuristic", True),  # the small model calls rare names organisations
        "Tesco": ("place", "heuristic", True),  # a cue ("at") keeps it
        "Eve": ("name", "heuristic", False),  # the model reads "Christmas Eve" as a date
    }
    assert [x.text for x in out if x.unsure] == ["Søren", "Tesco", "Eve"]
    assert "date" in next(x for x in out if x.text == "Eve").note
    # What anonymity hides: not the overruled word.
    analysis = {"entities": [vars(x) for x in out]}
    assert [t.text for t in anonymise.analysis_terms(analysis)] == ["Zoë", "Søren", "Tesco"]
    # The record keeps who found each (and older records without it still load).
    old = [{"text": "Old", "kind": "name"}]
    record = {"narrative_id": "x", "language": "en", "duration": 1.0, "empty": False}
    back = Analysis.from_dict({**record, "entities": analysis["entities"] + old})
    assert [(x.found_by, x.hide) for x in back.entities] == [
        ("both", True), ("heuristic", True), ("heuristic", True), ("heuristic", False), ("", True)
    ]  # fmt: skip


def test_heuristic_finds_spelled_lower_case_and_hyphenated_names_not_acronyms():
    def found(text: str) -> list[tuple[str, str]]:
        t = transcript(*text.split())
        return [(x.text, x.kind) for x in heuristic_entities(t.text, align_words(t, t.text), set())]

    assert found("his name was d m i t r i and he fixed bikes") == [("d m i t r i", "name")]
    assert found("my friend agnieszka came from valparaiso") == [
        ("agnieszka", "person"), ("valparaiso", "place"),
    ]  # fmt: skip
    assert found("we met in st ives and walked") == [("st ives", "place")]
    assert found("Zoë-Marie was six when she first talked.") == [("Zoë-Marie", "name")]
    assert found("The letter was signed J. R. Whitfield.") == [("J. R. Whitfield", "name")]
    assert found("I am American, the NHS and the BBC helped, I think.") == []
    assert found("I, I, I was scared and a b c was all I knew") == []


# ----------------------------------------------------------------------------- the leak check


def _due(ctx, content, channel="bluesky"):
    nid = add_narrative(ctx)
    draft = add_draft(ctx, "emotional-equity", channel, content=content, narrative_id=nid)
    when = scheduling.utcnow() - timedelta(seconds=1)
    delivery = scheduling.schedule(ctx, draft, at=when, actor="kai", now=when).id
    return nid, draft, delivery


class _Recorder:
    channel = "bluesky"

    def __init__(self):
        self.calls = []

    def publish(self, item):
        self.calls.append(item)
        raise AssertionError("a leaking draft must not reach the publisher")

    def after_commit(self, item):
        pass


@pytest.mark.parametrize("where", ["post", "alt text", "captions file"])
def test_a_leak_anywhere_sends_the_draft_back_to_review(ctx, where):
    said = "D. M. I. T. R. I." if where == "captions file" else "[name]"
    cue = f"WEBVTT\n\n00:00.000 --> 00:01.000\n{said}\n"
    rel = write_media(ctx.workspace.root, "media/work/x/video.vtt", cue.encode())
    content = bluesky_content(
        "Dmitri fixed bikes. #EmotionalEquity" if where == "post" else "[name] fixed bikes.",
        video="media/work/x/video.mp4",
        captions=rel,
    )
    if where == "alt text":
        content["alt"] = "An audiogram: d-m-i-t-r-i tells a dream"
    nid, draft, delivery = _due(ctx, content)
    redactions.mark_term(ctx, nid, "Dmitri", actor="kai")
    publisher = _Recorder()
    outcome = publish_delivery(ctx, delivery, {"bluesky": publisher})
    assert publisher.calls == []
    assert outcome.status == "failed" and outcome.delivery.retry_at is None
    assert (
        "Dmitri" in outcome.error and where in outcome.error and "back to review" in outcome.error
    )
    assert review.get_draft(ctx, draft).state == "pending_review"
    with ctx.db.connect() as conn:
        [entry] = [
            h for h in audit.history(conn, "draft", draft) if h["action"] == "draft.send_back"
        ]
        assert get_delivery(conn, delivery).last_error == outcome.error
    assert (entry["before"], entry["after"]) == ({"state": "approved"}, {"state": "pending_review"})
    assert entry["actor"] == "leak-check" and where in entry["detail"]
    # The editor sees it on the draft page: the reason, and where the name still is.
    page = client_for(ctx).get(f"/drafts/{draft}").text
    assert "Publishing stopped" in page and "<strong>sent it back to review</strong>" in page
    assert f"This draft still names Dmitri (in {where}" in page


def test_a_clean_draft_is_published_and_an_unreadable_captions_file_is_not(ctx):
    class Ok(_Recorder):
        def publish(self, item):
            from narratives.channels.base import PublishResult

            self.calls.append(item)
            return PublishResult(posts=[], url="https://example.invalid/p")

    cue = b"WEBVTT\n\n00:00.000 --> 00:01.000\n[name] rode\n"
    rel = write_media(ctx.workspace.root, "media/work/y/video.vtt", cue)
    nid, draft, delivery = _due(ctx, bluesky_content("[name] rode on.", captions=rel))
    redactions.mark_term(ctx, nid, "Dmitri", actor="kai")
    publisher = Ok()
    assert publish_delivery(ctx, delivery, {"bluesky": publisher}).status == "published"
    assert len(publisher.calls) == 1

    missing = bluesky_content("[name] rode on.", captions="media/work/none.vtt")
    nid, draft, delivery = _due(ctx, missing)
    outcome = publish_delivery(ctx, delivery, {"bluesky": Ok()})
    assert outcome.status == "failed" and "captions file media/work/none.vtt" in outcome.error
    assert review.get_draft(ctx, draft).state == "pending_review"


def test_leaks_name_where_they_are():
    content = {
        "title": "Rosa's dream",
        "summary": "nothing",
        "content": "She said ROSA twice.",
        "link": "https://x.example/rosa",
        "enclosure": "media/work/rosa/video.mp4",
        "captions": None,
    }
    leaks = anonymise.leaks_in(anonymise._texts(content, ""), [Term("Rosa", "person")])
    assert [(x.term, x.where) for x in leaks] == [("Rosa", "title"), ("Rosa", "content")]
    assert str(leaks[1]) == "“Rosa” in content: “She said ROSA twice.”"
    assert json.dumps([str(x) for x in leaks])  # plain strings for the audit and the page


def test_the_draft_page_lists_the_unsure_names(ctx):
    from tests.review_fixtures import add_narrative as add_analysed
    from tests.review_fixtures import analysis_for

    entities = [
        {"text": "Rosalind", "kind": "person", "start": 1.0, "end": 1.4, "found_by": "both"},
        {"text": "Søren", "kind": "name", "start": 2.0, "end": 2.3, "found_by": "heuristic",
         "note": "hidden, though the model reads it as an organisation"},
        {"text": "Eve", "kind": "name", "start": 3.0, "end": 3.2, "found_by": "heuristic",
         "hide": False, "note": "not hidden: the model reads it as a date"},
    ]  # fmt: skip
    nid = add_analysed(ctx, analysis=analysis_for(entities=entities))
    draft = add_draft(ctx, "emotional-equity", "bluesky", narrative_id=nid, state="pending_review")
    page = client_for(ctx).get(f"/drafts/{draft}").text
    unsure = page[page.index('id="unsure-terms"') :].split("</p>")[0]
    assert "Søren" in unsure and "organisation" in unsure
    assert "Eve" in unsure and "not hidden: the model reads it as a date" in unsure
    assert "Rosalind" not in unsure  # both detectors agree: nothing to check
    # What is hidden: not the overruled word.
    assert [t.text for t in anonymise.terms_for(ctx, nid)] == ["Rosalind", "Søren"]


def test_concurrent_leak_checks_send_a_draft_back_once(ctx):
    """Four threads find the same leak at once, over 100 rounds: each round the draft goes
    back to review exactly once, with one audit row."""
    import threading

    import sqlalchemy as sa

    from narratives.store import drafts as draft_rows
    from narratives.store.schema import drafts

    draft = add_draft(ctx, "emotional-equity", "bluesky")
    rounds, threads = 100, 4
    for _ in range(rounds):
        with ctx.db.begin() as conn:
            conn.execute(sa.update(drafts).where(drafts.c.id == draft).values(state="approved"))
        results: list[bool] = []
        start = threading.Barrier(threads)

        def check(start=start, results=results):
            start.wait()
            with ctx.db.begin() as conn:
                results.append(draft_rows.send_back(conn, draft, actor="leak-check", reason="x"))

        workers = [threading.Thread(target=check) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert sorted(results) == [False] * (threads - 1) + [True]
    assert review.get_draft(ctx, draft).state == "pending_review"
    with ctx.db.connect() as conn:
        sent = [h for h in audit.history(conn, "draft", draft) if h["action"] == "draft.send_back"]
    assert len(sent) == rounds
