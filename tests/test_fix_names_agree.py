"""Fixes: the audio and the text hide the same words (a detected name that is a common word,
"Will", is hidden where written with its capital in both; a title alone, "St", in neither,
and the editor is told), and a full name's parts no longer hide lower-case common words
("the green door") or a describing suffix ("Dmitri-led")."""

from __future__ import annotations

import pytest

from narratives.policy import anonymise
from narratives.records.redactions import Term
from narratives.stages.analyse.entities import find_entities
from tests.corpus import transcript_of

WILL = "In May I met Will at the clinic. He said he will call."


def _word_times(t, text):
    return [(w.start, w.end) for w in t.words if w.text.strip(" .,") == text]


def test_a_common_word_name_is_hidden_as_written_in_text_and_audio():
    t = transcript_of(WILL)
    found = find_entities(t)
    assert [(e.text, e.hide) for e in found] == [("Will", True)]
    assert "hidden only where written “Will”" in found[0].note
    terms = anonymise.analysis_terms({"entities": [vars(e) for e in found]})
    assert anonymise.redact_text(WILL, terms) == (
        "In May I met [name] at the clinic. He said he will call."
    )
    assert anonymise.anonymised_transcript(t, terms).text.strip() == (
        "In May I met [name] at the clinic. He said he will call."
    )
    # The bleep is the capitalised "Will" only, not the verb.
    (will,) = _word_times(t, "Will")
    (verb,) = _word_times(t, "will")
    bleeps = anonymise.bleep_intervals(t, terms, pad=0)
    assert bleeps == [(pytest.approx(will[0]), pytest.approx(will[1]))]
    assert not any(a < verb[1] and verb[0] < b for a, b in bleeps)
    # The leak check reads as the redaction does.
    assert anonymise.draft_leaks({"text": "He will call."}, terms) == []
    assert anonymise.draft_leaks({"text": "We met Will."}, terms) == ["Will"]


def test_a_title_alone_is_neither_bleeped_nor_hidden_and_the_editor_is_told():
    text = "I met St at the shop."
    t = transcript_of(text)
    found = find_entities(t)
    assert [(e.text, e.hide, e.unsure) for e in found] == [("St", False, True)]
    assert "not hidden" in found[0].note
    assert anonymise.analysis_terms({"entities": [vars(e) for e in found]}) == []
    # An older analysis record that still lists it to hide: the text matcher refuses it, so
    # the audio is not bleeped there either.
    (st,) = _word_times(t, "St")
    term = Term("St", "name", st[0], st[1], "analysis")
    assert anonymise.redact_text(text, [term]) == text
    assert anonymise.bleep_intervals(t, [term]) == []
    # A hidden term is still bleeped at its own times.
    (shop,) = _word_times(t, "shop")
    rosa = Term("Rosalind", "person", shop[0], shop[1], "analysis")
    assert anonymise.bleep_intervals(t, [rosa], pad=0) == [
        (pytest.approx(shop[0]), pytest.approx(shop[1]))
    ]


def test_an_editors_will_is_still_refused():
    # As written only for what the detector found mid-sentence; an editor's "Will" would be
    # every "Will" of every text, so it is refused (with the reason) as before.
    term = Term("Will", "name", source="editor")
    assert anonymise.redact_text("We met Will.", [term]) == "We met Will."


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("Mark Green", "Mark Green came. Green left by the green door.",
         "[name] came. [name] left by the green door."),
        ("Rosa Parks", "Rosa Parks loved the parks in town. Parks said so.",
         "[name] loved the parks in town. [name] said so."),
        # An unpunctuated transcript has no capitals: a part is hidden in any case.
        ("Mark Green", "mark green came and then green left",
         "[name] came and then [name] left"),
        ("Dmitri", "A Dmitri-led walk, then dmitri-based work and Dmitri-Marie's bike.",
         "A [name]-led walk, then [name]-based work and [name]'s bike."),
    ],
)  # fmt: skip
def test_name_parts_and_suffixes(name, text, expected):
    terms = [Term(name, "person", source="analysis")]
    assert anonymise.redact_text(text, terms) == expected
    # The leak check agrees with the redaction: nothing left in what was redacted.
    assert anonymise.draft_leaks({"text": expected}, terms) == []


def test_parts_in_the_transcript_audio_and_text_agree():
    text = "Mark Green came by. We painted the green door."
    t = transcript_of(text)
    terms = [Term("Mark Green", "person", source="analysis")]
    out = anonymise.anonymised_transcript(t, terms).text.strip()
    assert out == "[name] came by. We painted the green door."
    (green,) = _word_times(t, "green")
    bleeps = anonymise.bleep_intervals(t, terms, pad=0)
    assert len(bleeps) == 1 and not any(a < green[1] and green[0] < b for a, b in bleeps)


def test_a_name_spelled_across_two_segments_is_hidden_in_text_and_audio():
    from narratives.records.transcript import Segment, Transcript, Word

    def seg(n, start, tokens):
        words = [
            Word(start + k * 0.5, start + k * 0.5 + 0.4, f" {w}") for k, w in enumerate(tokens)
        ]
        return Segment(n, start, start + len(tokens) * 0.5, "".join(w.text for w in words), words)

    t = Transcript(
        "f" * 64, "en", 8.0,
        [seg(0, 0.0, ["It", "is", "spelled", "D.", "M.", "I."]),
         seg(1, 3.0, ["T.", "R.", "I.", "He", "waited."])],
        "e", "m",
    )  # fmt: skip
    terms = [Term("D. M. I. T. R. I.", "name", source="analysis")]
    out = anonymise.anonymised_transcript(t, terms)
    assert [s.text for s in out.segments] == [" It is spelled [name].", " [name]. He waited."]
    assert [w.text for w in out.segments[1].words] == [" [name].", " He", " waited."]
    assert anonymise.bleep_intervals(t, terms, pad=0) == [(1.5, pytest.approx(4.4))]
