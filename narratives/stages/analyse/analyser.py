"""The analysis of one transcript, without database or files: the analyse stage's pure core.

Everything quoted is the narrator's own words (`timing`, `excerpts`). Tags and content notes
are scored by `scoring` from all-MiniLM-L6-v2 sentence embeddings
(`narratives.engines.embeddings`) and, for tags, the story's words, learnt from example stories
and editors' corrections where there are enough. An editor's tag correction adds the corrected
narrative's story as an example of the tag (`applies=True`), or forces the tag off for that
narrative (`applies=False`).

If `analyse.summary_model` names a seq2seq model, an abstractive summary is generated as well
(`abstract`); the extractive sentences stay, because the video and posts quote them with times.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from narratives import __version__
from narratives.core.campaigns import Campaign
from narratives.core.config import AnalyseSettings
from narratives.engines.embeddings import get_embedder
from narratives.records.analysis import ENGINE, Analysis, ContentNote, Sentiment
from narratives.records.transcript import Transcript
from narratives.stages.analyse.abstractive import abstractive_summary
from narratives.stages.analyse.content_notes import NoteSpec, cue_hits, note_evidence, note_specs
from narratives.stages.analyse.entities import campaign_public_terms, entities_in
from narratives.stages.analyse.excerpts import (
    UNSURE_WORD,
    choose_quote,
    choose_summary,
    make_title,
)
from narratives.stages.analyse.fillers import trim_fillers
from narratives.stages.analyse.scoring import (
    Corrections,
    campaign_tags,
    label_scores,
    label_texts,
    learnt_scores,
)
from narratives.stages.analyse.tagging import ExampleStory
from narratives.stages.analyse.timing import (
    Sentence,
    TextWord,
    align_words,
    excerpt,
    norm,
    split_sentences,
)

__all__ = ["MIN_WORDS", "analyse_transcript"]

#: Fewer words than this is silence or noise: nothing to analyse.
MIN_WORDS = 3

_VADER = None


def _sentiment(text: str) -> Sentiment:
    global _VADER
    if _VADER is None:
        # VADER loads its lexicon on first use; only analysing needs it.
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _VADER = SentimentIntensityAnalyzer()
    compound = float(_VADER.polarity_scores(text)["compound"])
    label = "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"
    return Sentiment(round(compound, 4), label)


def analyse_transcript(
    transcript: Transcript,
    *,
    campaigns: list[Campaign],
    settings: AnalyseSettings | None = None,
    corrections: Corrections | None = None,
    embedder=None,
    examples: list[ExampleStory] | None = None,
    cache_dir: Path | None = None,
) -> Analysis:
    """The Analysis of one transcript: the stage's pure core (no database; `cache_dir`, when
    given, keeps the example stories' embeddings between runs).

    Tags and notes are learnt from `examples` and the editors' `corrections`
    (`narratives.stages.analyse.tagging`); a label with too few examples is scored by its
    description."""
    t0 = time.perf_counter()
    settings = settings or AnalyseSettings()
    corrections = corrections or Corrections()
    notes = note_specs(settings)
    text = transcript.text
    words = align_words(transcript, text)
    base = _blank(transcript, settings)
    word_count = len(words) if words else len(text.split())
    base.word_count = word_count
    if word_count < MIN_WORDS:
        base.empty = True
        base.reason = (
            "nothing to analyse: the recording holds no speech"
            if word_count == 0
            else f"nothing to analyse: only {word_count} word(s) of speech"
        )
        base.seconds = round(time.perf_counter() - t0, 3)
        return base

    embedder = embedder or get_embedder(settings.embedding_model, threads=settings.threads)
    base.version = f"narratives {__version__}; {embedder.version}"
    sentences = split_sentences(text, words, transcript)
    if not sentences:
        base.empty = True
        base.reason = "nothing to analyse: no sentence could be formed"
        return base
    base.sentence_count = len(sentences)

    sent_vecs, description = _embed(sentences, campaigns, notes, embedder)
    story_vec = embedder.encode([trim_fillers(text)])[0]
    learnt = learnt_scores(
        text, story_vec, sent_vecs, description, campaigns, notes, examples or [], corrections,
        embedder, cache_dir, note_threshold=settings.learnt_note_threshold,
    )  # fmt: skip
    _choose_words(base, transcript, sentences, sent_vecs, words, embedder, settings)
    base.campaigns = campaign_tags(campaigns, description, learnt, corrections)
    public = campaign_public_terms(campaigns)
    base.entities = entities_in(text, words, public)
    n_tags = sum(len(c.tags) for c in campaigns)
    base.content_notes = _content_notes(
        notes, description[n_tags:], learnt, base, text, public, settings
    )
    base.sentiment = _sentiment(trim_fillers(text))
    if settings.summary_model:
        result = abstractive_summary(
            [s.text for s in sentences],
            settings.summary_model,
            max_tokens=settings.summary_max_tokens,
        )
        base.abstract = result["text"] or None
    base.seconds = round(time.perf_counter() - t0, 3)
    return base


def _blank(transcript: Transcript, settings: AnalyseSettings) -> Analysis:
    """The Analysis before anything is found: what was analysed, and with what."""
    return Analysis(
        narrative_id=transcript.narrative_id,
        language=transcript.language or "",
        duration=float(transcript.duration or 0.0),
        empty=False,
        engine=ENGINE if not settings.summary_model else f"abstractive+{ENGINE}",
        model=settings.embedding_model
        + (f" + {settings.summary_model}" if settings.summary_model else ""),
    )


def _embed(
    sentences: list[Sentence], campaigns: list[Campaign], notes: list[NoteSpec], embedder
) -> tuple[np.ndarray, np.ndarray]:
    """The sentences' vectors, and every tag's then every note's description score."""
    # One batch for everything that depends only on this narrative and the campaigns.
    groups = label_texts(campaigns, notes)
    flat = [s.text for s in sentences] + [x for group in groups for x in group]
    vecs = embedder.encode(flat)
    sent_vecs = vecs[: len(sentences)]
    label_vecs, offset = [], len(sentences)
    for group in groups:
        label_vecs.append(vecs[offset : offset + len(group)])
        offset += len(group)
    return sent_vecs, np.array(label_scores(sent_vecs, label_vecs), dtype=np.float32)


def _choose_words(
    base: Analysis,
    transcript: Transcript,
    sentences: list[Sentence],
    sent_vecs: np.ndarray,
    words: list[TextWord],
    embedder,
    settings: AnalyseSettings,
) -> None:
    """The summary sentences, the pull-quote and the title, set on `base`."""
    chosen = choose_summary(sentences, sent_vecs, settings.summary_sentences)
    base.summary = [excerpt(s) for s in chosen]
    base.quote = choose_quote(sentences, sent_vecs, words, embedder)
    summary_vec = sent_vecs[[s.index for s in chosen]].mean(axis=0)
    summary_vec = summary_vec / max(float(np.linalg.norm(summary_vec)), 1e-12)
    unsure = {norm(w.text) for w in transcript.words if (w.probability or 1.0) < UNSURE_WORD}
    base.title = make_title(sentences, summary_vec, embedder, unsure)


def _content_notes(
    notes: list[NoteSpec],
    description: np.ndarray,
    learnt: dict[tuple[str, str, str], tuple[float, float]],
    base: Analysis,
    text: str,
    public: set[str],
    settings: AnalyseSettings,
) -> list[ContentNote]:
    """Each note's score (learnt, else by description) and whether it is flagged: by its
    evidence (entities, cue words), or by its score unless the note needs evidence."""
    out = []
    for i, n in enumerate(notes):
        score, threshold = learnt.get(("note", "", n.name), (None, None))
        if score is None:
            score, threshold = float(description[i]), settings.content_note_threshold
        score = round(score, 4)
        evidence = note_evidence(n, base.entities, text, public)
        evidence += cue_hits(n, text)
        flagged = bool(evidence) or (score >= threshold and not n.evidence_only)
        out.append(ContentNote(n.name, score, flagged, evidence))
    out.sort(key=lambda n: n.score, reverse=True)
    return out
