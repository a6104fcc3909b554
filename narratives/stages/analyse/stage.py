"""The analysis stage: summary, pull-quote, title, campaign tags and content notes of a Transcript.

Everything quoted is the narrator's own words. Sentences are cut from `Transcript.text` (so each
is an exact substring of it) and timed from the words that fall inside them; filler words are
trimmed from the quoted text by `trim_fillers`, and the untrimmed `raw` text is kept beside it.

Scores come from all-MiniLM-L6-v2 sentence embeddings (`narratives.engines.embeddings`): a tag or a
content note is a description plus example sentences, and its score is the mean of the top
three transcript sentences' best similarities to those texts. Sentence-level scoring separates
topics far better than one whole-document vector (MODELS.md). An editor's tag correction adds
the corrected narrative's summary sentences as examples of the tag (`applies=True`), or forces
the tag off for that narrative (`applies=False`).

If `analyse.summary_model` names a seq2seq model, an abstractive summary is generated as well
(`abstract`); the extractive sentences stay, because the video and posts quote them with times.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from narratives import __version__
from narratives.core.campaigns import Campaign, get_campaign, load_campaigns
from narratives.core.config import AnalyseSettings
from narratives.core.errors import InvalidState, ModelNotAvailable, NotFound
from narratives.core.files import atomic_write_json
from narratives.core.workspace import Workspace
from narratives.records.transcript import Segment, Transcript
from narratives.stages.analyse.content_notes import (
    DEFAULT_CONTENT_NOTES,
    NoteSpec,
    cue_hits,
    note_evidence,
    note_specs,
)
from narratives.stages.analyse.tagging import ExampleStory, load_examples
from narratives.store.audit import record as audit_record
from narratives.store.context import Context
from narratives.store.schema import tag_corrections, utcnow
from narratives.store.stage_runs import get_run, stage_run

__all__ = [
    "STAGE",
    "ENGINE",
    "DEFAULT_CONTENT_NOTES",
    "Analysis",
    "Excerpt",
    "TagScore",
    "CampaignTags",
    "ContentNote",
    "Entity",
    "Sentiment",
    "Corrections",
    "run",
    "analyse_transcript",
    "load_analysis",
    "load_corrections",
    "correct_tag",
    "trim_fillers",
    "find_entities",
    "abstractive_summary",
]

STAGE = "analyse"
ENGINE = "extractive-minilm"
#: Fewer words than this is silence or noise: nothing to analyse.
MIN_WORDS = 3
#: Scores average this many best-matching sentences.
TOP_K = 3
QUOTE_MAX_CHARS = 200
#: A quote is cut (with "…") only when no sentence of the story is shorter than this.
QUOTE_HARD_MAX_CHARS = 300

# --------------------------------------------------------------------------------------------
# Records


@dataclass
class Excerpt:
    """A stretch of the narrator's own words with its place in the recording."""

    #: Filler words trimmed ("um", "you know", a leading "So,").
    text: str
    #: Exactly as in the transcript.
    raw: str
    start: float
    end: float
    #: Character offsets of `raw` in `Transcript.text`.
    char_start: int = 0
    char_end: int = 0


@dataclass
class TagScore:
    name: str
    score: float
    applies: bool
    #: An editor's correction for this narrative: True, False, or None (none made).
    corrected: bool | None = None


@dataclass
class CampaignTags:
    #: Ranked, best first.
    tags: list[TagScore]
    #: The best-scoring tag (not forced off), even when off-topic; None without tags.
    top: str | None
    #: The best tag reaches the campaign's `tag_threshold` (or an editor said a tag applies).
    on_topic: bool
    threshold: float
    #: How the tags were scored: "learnt" from example stories, by "description" similarity
    #: (too few examples), or "mixed".
    method: str = "learnt"

    @property
    def applied(self) -> list[str]:
        return [t.name for t in self.tags if t.applies]


@dataclass
class ContentNote:
    name: str
    score: float
    flagged: bool
    #: Entities that support the note (names for named-people, places for identifying-places).
    evidence: list[str] = field(default_factory=list)


@dataclass
class Entity:
    text: str
    #: person | place | name
    kind: str
    start: float
    end: float
    char_start: int
    char_end: int


@dataclass
class Sentiment:
    #: VADER compound score, -1 (negative) to 1 (positive).
    compound: float
    label: str


@dataclass
class Analysis:
    narrative_id: str
    language: str
    duration: float
    #: True when the transcript holds (next to) no speech: nothing is summarised or tagged.
    empty: bool
    reason: str | None = None
    title: str = ""
    summary: list[Excerpt] = field(default_factory=list)
    quote: Excerpt | None = None
    #: Generated by `analyse.summary_model` when one is configured.
    abstract: str | None = None
    campaigns: dict[str, CampaignTags] = field(default_factory=dict)
    content_notes: list[ContentNote] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)
    sentiment: Sentiment | None = None
    sentence_count: int = 0
    word_count: int = 0
    engine: str = ENGINE
    model: str = ""
    version: str = ""
    seconds: float = 0.0

    @property
    def summary_text(self) -> str:
        """The abstract when there is one, else the extractive summary's sentences."""
        if self.abstract:
            return self.abstract
        return " ".join(s.text for s in self.summary)

    @property
    def flagged_notes(self) -> list[str]:
        return [n.name for n in self.content_notes if n.flagged]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary_text"] = self.summary_text
        for slug, tags in self.campaigns.items():
            data["campaigns"][slug]["applied"] = tags.applied
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        data = dict(data)
        data.pop("summary_text", None)
        data["summary"] = [Excerpt(**s) for s in data.get("summary") or []]
        data["quote"] = Excerpt(**data["quote"]) if data.get("quote") else None
        campaigns = {}
        for slug, c in (data.get("campaigns") or {}).items():
            c = dict(c)
            c.pop("applied", None)
            c["tags"] = [TagScore(**t) for t in c.get("tags") or []]
            campaigns[slug] = CampaignTags(**c)
        data["campaigns"] = campaigns
        data["content_notes"] = [ContentNote(**n) for n in data.get("content_notes") or []]
        data["entities"] = [Entity(**e) for e in data.get("entities") or []]
        data["sentiment"] = Sentiment(**data["sentiment"]) if data.get("sentiment") else None
        return cls(**data)


# --------------------------------------------------------------------------------------------
# Filler words

_HESITATION = r"(?:u+m+|u+h+|e+r+m+|e+r+|h+m+|m+h?m+)"
# A run of discourse markers and hesitations opening a sentence ("So, um, I work nights").
# Markers that are ordinary words ("so many", "well done", "I mean it") need their comma.
_OPENING = re.compile(
    r"(?:^|(?<=[.!?]\s))"
    rf"(?:(?:(?:so|well|okay|ok|like|you know|i mean|anyway),|{_HESITATION}\b[,.]?)\s+)+"
    r"(\w)",
    re.IGNORECASE,
)
_HESITATION_MID = re.compile(
    rf"(?:,\s*)?(?<![\w'-]){_HESITATION}(?![\w'-])(?:\s*,)?", re.IGNORECASE
)
# ", you know," between clauses keeps one comma; ", you know." at the end keeps none.
_YOU_KNOW = re.compile(r",\s*(?:you know|i mean)(?:(\s*,)|(?=\s*[.!?]))", re.IGNORECASE)


def trim_fillers(text: str) -> str:
    """Remove filler words ("um", "uh", ", you know,", a leading "So,") without changing meaning.

    Applied to a whole transcript or to one sentence of it, it trims the same words, so a trimmed
    sentence is a substring of the trimmed transcript.
    """
    out = _OPENING.sub(lambda m: m.group(1).upper(), text)
    out = _HESITATION_MID.sub(" ", out)
    out = _YOU_KNOW.sub(lambda m: "," if m.group(1) else "", out)
    out = re.sub(r"\s+", " ", out)
    out = re.sub(r"\s+([,.!?;:])", r"\1", out)
    out = re.sub(r",([.!?;:])", r"\1", out)
    out = re.sub(r"^[\s,.;:]+", "", out)
    # A hesitation removed at a sentence's start leaves a lowercase letter behind.
    out = re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), out)
    return out.strip()


# --------------------------------------------------------------------------------------------
# Sentences and words


@dataclass
class _Word:
    text: str
    start: float
    end: float
    char_start: int
    char_end: int


@dataclass
class _Sentence:
    index: int
    raw: str
    text: str
    char_start: int
    char_end: int
    start: float
    end: float
    words: list[int]
    #: Whether each end is sure (text edge, end punctuation or a pause), not guessed.
    sure_start: bool = True
    sure_end: bool = True

    @property
    def sure(self) -> bool:
        return self.sure_start and self.sure_end


def _align_words(transcript: Transcript, text: str) -> list[_Word]:
    """Each word's character span in `text`; words that cannot be found are left out."""
    words: list[_Word] = []
    cursor = 0
    for w in transcript.words:
        token = w.text.strip()
        if not token:
            continue
        pos = text.find(token, cursor)
        if pos < 0 or pos - cursor > 80:
            continue
        words.append(_Word(token, float(w.start), float(w.end), pos, pos + len(token)))
        cursor = pos + len(token)
    return words


def _segment_spans(transcript: Transcript) -> list[tuple[int, int, float, float]]:
    spans, cursor = [], 0
    for s in transcript.segments:
        t = s.text.strip()
        if not t:
            continue
        spans.append((cursor, cursor + len(t), float(s.start), float(s.end)))
        cursor += len(t) + 1
    return spans


def _split_sentences(text: str, words: list[_Word], transcript: Transcript) -> list[_Sentence]:
    from narratives.stages.analyse.sentences import TimedWord, split_spans

    segments = _segment_spans(transcript)
    timed = [TimedWord(w.char_start, w.char_end, w.start, w.end) for w in words]
    spans = split_spans(text, timed, [s[1] for s in segments])
    sentences: list[_Sentence] = []
    for span in spans:
        start, end = span.start, span.end
        raw = text[start:end].strip()
        if not raw:
            continue
        start = text.find(raw, start)
        end = start + len(raw)
        idx = [i for i, w in enumerate(words) if w.char_start < end and w.char_end > start]
        trimmed = trim_fillers(raw)
        if not re.search(r"\w", trimmed):
            continue
        if idx:
            t0, t1 = _trimmed_times(trimmed, [words[i] for i in idx])
        else:
            hit = [s for s in segments if s[0] < end and s[1] > start]
            if not hit:
                continue
            t0, t1 = min(s[2] for s in hit), max(s[3] for s in hit)
        sentences.append(
            _Sentence(
                len(sentences),
                raw,
                trimmed,
                start,
                end,
                t0,
                t1,
                idx,
                span.sure_start,
                span.sure_end,
            )  # fmt: skip
        )
    duration = float(transcript.duration or 0.0)
    for s in sentences:
        if duration > 0:
            s.start = min(max(s.start, 0.0), duration)
            s.end = min(max(s.end, s.start), duration)
    return sentences


def _norm(token: str) -> str:
    return re.sub(r"[^\w'-]", "", token).lower()


def _trimmed_times(trimmed: str, words: list[_Word]) -> tuple[float, float]:
    """Start at the first kept word and end at the last, skipping trimmed fillers."""
    kept = [_norm(t) for t in trimmed.split()]
    kept = [k for k in kept if k]
    first = next((w for w in words if kept and _norm(w.text) == kept[0]), words[0])
    last = next((w for w in reversed(words) if kept and _norm(w.text) == kept[-1]), words[-1])
    if last.end < first.start:
        first, last = words[0], words[-1]
    return round(first.start, 3), round(last.end, 3)


def _excerpt(s: _Sentence) -> Excerpt:
    return Excerpt(s.text, s.raw, round(s.start, 3), round(s.end, 3), s.char_start, s.char_end)


# --------------------------------------------------------------------------------------------
# Scoring


def _topk_mean(sims: np.ndarray, k: int = TOP_K) -> float:
    """Mean of the k best sentence similarities (each sentence's best match to the label)."""
    if sims.size == 0:
        return 0.0
    best = np.sort(sims)[::-1][: min(k, sims.size)]
    return float(best.mean())


def _label_scores(sent_vecs: np.ndarray, label_vecs: list[np.ndarray]) -> list[float]:
    return [_topk_mean((sent_vecs @ lv.T).max(axis=1)) for lv in label_vecs]


def _label_texts(campaigns: list[Campaign], notes: list[NoteSpec]) -> list[list[str]]:
    """Each tag's and then each note's description and example sentences."""
    groups = [[t.description, *t.examples] for c in campaigns for t in c.tags]
    return groups + [[n.description, *n.examples] for n in notes]


def _text_sentences(text: str) -> list[str]:
    """The sentences of a written story (an example), split as a transcript's are."""
    transcript = Transcript("example", "en", 0.0, [Segment(0, 0.0, 0.0, text)], "text", "none")
    return [s.text for s in _split_sentences(transcript.text, [], transcript)]


def _learnt_scores(
    story_vec: np.ndarray,
    description: np.ndarray,
    campaigns: list[Campaign],
    notes: list[NoteSpec],
    examples: list[ExampleStory],
    corrections: Corrections,
    embedder,
    cache_dir: Path | None,
) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(probability, threshold) per learnt label, keyed ("tag", campaign, tag) or
    ("note", "", note); labels with too few examples are left out."""
    from narratives.stages.analyse.tagging import (
        cached_array,
        features,
        train_label_model,
    )

    n_tags = sum(len(c.tags) for c in campaigns)
    if not examples and not corrections.examples:
        return {}
    label_vecs = [embedder.encode(g) for g in _label_texts(campaigns, [])]

    def row(text: str) -> np.ndarray:
        sents = cached_array(
            "sentences", text, lambda t: embedder.encode(_text_sentences(t) or [t]), cache_dir
        )
        story = cached_array(
            "story", text, lambda t: embedder.encode([trim_fillers(t)])[0], cache_dir
        )
        return features(story, np.array(_label_scores(sents, label_vecs), dtype=np.float32))

    base_rows = np.stack([row(e.text) for e in examples]) if examples else None
    x = features(story_vec, description[:n_tags])[None, :]
    out: dict[tuple[str, str, str], tuple[float, float]] = {}
    for c in campaigns:
        for t in c.tags:
            rows = [base_rows] if base_rows is not None else []
            y = [t.name in e.tags for e in examples]
            extra = corrections.examples.get((c.slug, t.name), [])
            if extra:
                rows.append(np.stack([row(text) for text, _ in extra]))
                y += [applies for _, applies in extra]
            if not rows:
                continue
            model = train_label_model(f"tag:{t.name}", np.concatenate(rows), np.array(y))
            if model.learnt:
                out[("tag", c.slug, t.name)] = (model.probability(x[0]), c.tag_threshold)
    if base_rows is not None:
        for n in notes:
            y = np.array([n.name in e.notes for e in examples])
            model = train_label_model(f"note:{n.name}", base_rows, y)
            if model.learnt:
                out[("note", "", n.name)] = (model.probability(x[0]), 0.5)
    return out


_DANGLING = {
    "it", "this", "that", "these", "those", "then", "and", "but", "or", "he", "she", "they",
    "him", "her", "them", "his", "its", "their", "later", "also", "which", "because", "after",
}  # fmt: skip

_VECTORS: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}


def _cached_vectors(embedder, texts: tuple[str, ...]) -> np.ndarray:
    key = (id(embedder), texts)
    if key not in _VECTORS:
        _VECTORS[key] = embedder.encode(list(texts))
    return _VECTORS[key]


def _summary(sentences: list[_Sentence], vecs: np.ndarray, k: int) -> list[_Sentence]:
    n = len(sentences)
    if n <= k:
        return list(sentences)
    sims = vecs @ vecs.T
    centrality = (sims.sum(axis=1) - 1.0) / max(n - 1, 1)
    base = centrality.copy()
    for s in sentences:
        words = len(s.text.split())
        if words < 5:
            base[s.index] -= 0.15
        elif words > 45:
            base[s.index] -= 0.05
        # Openings and conclusions carry a spoken story's gist.
        if s.index == 0 or s.index == n - 1:
            base[s.index] += 0.04
        # A sentence whose ends were guessed may be a fragment.
        base[s.index] -= 0.06 * ((not s.sure_start) + (not s.sure_end))
    chosen: list[int] = []
    while len(chosen) < k:
        best, best_val = None, -1e9
        for s in sentences:
            if s.index in chosen:
                continue
            val = base[s.index]
            if chosen:
                val -= 0.3 * float(max(sims[s.index, c] for c in chosen))
            first_word = _norm(s.text.split()[0]) if s.text.split() else ""
            # A sentence leaning on the one before reads badly without it.
            if first_word in _DANGLING and (s.index - 1) not in chosen:
                val -= 0.08
            if val > best_val:
                best, best_val = s.index, val
        chosen.append(best)
    return [sentences[i] for i in sorted(chosen)]


def _quote(
    sentences: list[_Sentence], vecs: np.ndarray, words: list[_Word], embedder
) -> Excerpt | None:
    if not sentences:
        return None
    n = len(sentences)
    sims = vecs @ vecs.T
    centrality = (sims.sum(axis=1) - 1.0) / max(n - 1, 1) if n > 1 else np.ones(1)
    proto = _cached_vectors(embedder, tuple(_QUOTABLE))
    quotable = (vecs @ proto.T).max(axis=1)
    best, best_val = None, -1e9
    # Whole sentences only: one that fits, else the shortest (cut only past the hard limit).
    fitting = [s for s in sentences if len(s.text) <= QUOTE_MAX_CHARS]
    sure = [s for s in fitting if s.sure]
    half = [s for s in fitting if s.sure_start or s.sure_end]
    pool = sure or half or fitting or [min(sentences, key=lambda s: len(s.text))]
    for s in pool:
        length = len(s.text)
        val = 0.3 * float(centrality[s.index]) + 0.7 * float(quotable[s.index])
        if length < 40:
            val -= 0.2
        elif length > 170:
            val -= 0.05
        first_word = _norm(s.text.split()[0]) if s.text.split() else ""
        if first_word in _DANGLING:
            val -= 0.08
        if val > best_val:
            best, best_val = s, val
    excerpt = _excerpt(best)
    if len(excerpt.text) > QUOTE_HARD_MAX_CHARS:
        excerpt = _cut(best, words)
    return excerpt


#: What a pull-quote sounds like: a felt conviction, said plainly.
_QUOTABLE = [
    "Everyone deserves the same chance to rest, no matter who they are.",
    "Nobody should have to carry this alone.",
    "It made me feel that we are not alone, and that things can change.",
    "What I learned is that this belongs to all of us.",
]


def _cut(s: _Sentence, words: list[_Word]) -> Excerpt:
    """A too-long sentence cut at the last word that fits, timed by its words."""
    ws = [words[i] for i in s.words]
    kept = [w for w in ws if w.char_end - s.char_start <= QUOTE_HARD_MAX_CHARS - 1] or ws[:1]
    raw = s.raw[: kept[-1].char_end - s.char_start].rstrip(",;: ")
    text = trim_fillers(raw)[: QUOTE_HARD_MAX_CHARS - 1].rstrip() + "…"
    return Excerpt(text, raw, kept[0].start, kept[-1].end, s.char_start, s.char_start + len(raw))


#: Phrases embedded to choose a title from (each costs a little model time).
_MAX_TITLE_CANDIDATES = 200
#: A word Whisper gave less than this probability is likely misheard: no title is built on it.
_UNSURE_WORD = 0.5


def _title(
    sentences: list[_Sentence], summary_vec: np.ndarray, embedder, unsure: set[str] = frozenset()
) -> str:
    """A well-formed phrase of the narrator's own words closest in meaning to the summary."""
    from narratives.stages.analyse.titles import choose_title

    best = choose_title(_title_candidates(sentences), summary_vec, embedder.encode, unsure)
    if best:
        return best
    # No phrase passes the rule (a very short or broken story): its shortest whole sentence.
    shortest = min(sentences, key=lambda s: len(s.text.split())) if sentences else None
    return _capitalise(shortest.text.rstrip(",.;:")) if shortest else ""


def _title_candidates(sentences: list[_Sentence]) -> list[str]:
    """Grammatical phrases from the whole story (`narratives.stages.analyse.titles`)."""
    from narratives.stages.analyse.titles import title_candidates

    return title_candidates([s.text for s in sentences], limit=_MAX_TITLE_CANDIDATES)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


# --------------------------------------------------------------------------------------------
# Entities

_KIN = set(
    """grandmother grandfather grandma grandpa granny nana mother father mom mum dad mama papa
    sister brother aunt auntie uncle cousin friend neighbour neighbor wife husband son daughter
    boss teacher doctor nurse partner niece nephew girlfriend boyfriend colleague coworker
    named called""".split()
)
_TITLES = {"mr", "mrs", "ms", "miss", "dr", "doctor", "sir", "madam", "aunt", "uncle"}
_PLACE_PREP = set(
    """in from at to near into across outside around through towards toward via""".split()
)
_COMMON_CAPS = set(
    """i i'm i've i'd i'll monday tuesday wednesday thursday friday saturday sunday january
    february march april may june july august september october november december god mom dad
    mum ok okay tv english christmas easter oh yes no""".split()
)


def _public_terms(campaigns: list[Campaign]) -> set[str]:
    """Capitalised words of the campaigns' own texts: public names, not private details."""
    terms: set[str] = set()
    for c in campaigns:
        texts = [c.name, c.description] + [t.description for t in c.tags]
        texts += [e for t in c.tags for e in t.examples]
        for text in texts:
            terms.update(_norm(w) for w in re.findall(r"\b[A-Z][\w'-]*", text))
    return terms


def find_entities(
    transcript: Transcript, *, public_terms: set[str] | frozenset[str] = frozenset()
) -> list[Entity]:
    """Names and identifying places in the transcript, with word times (a heuristic).

    A capitalised word that does not open a sentence and is not a common capitalised word is a
    name; a run of them is one name. After a kinship word or title ("my grandmother Rosa") it
    is a person; after in/from/at... a place. A sentence-opening word counts when the same word
    is a name elsewhere.
    """
    text = transcript.text
    words = _align_words(transcript, text)
    return _entities(text, words, public_terms)


@lru_cache(maxsize=8192)
def _rare_in_lowercase(word: str) -> bool:
    """Whether `word` is rare written in lower case, judged by GPT-2's byte-pair vocabulary
    (Whisper's, shipped with openai-whisper): common lowercase words are single tokens
    (" sleep", " clinic", " everyone") while most names are split (" rosa", " zoë", " mary").
    So a word that only ever opens sentences and is rare in lower case is taken for a name.
    Common names that are single tokens (" john") are missed; editors can mark them."""
    from whisper.tokenizer import get_encoding

    if not re.fullmatch(r"[^\W\d_]+", word):
        return False
    return len(get_encoding("gpt2").encode(" " + word.lower())) > 1


def _entities(text: str, words: list[_Word], public_terms) -> list[Entity]:
    def initial(i: int) -> bool:
        if i == 0:
            return True
        between = text[words[i - 1].char_end - 1 : words[i].char_start]
        return bool(re.search(r"[.!?]", between))

    def capitalised(tok: str) -> bool:
        core = re.sub(r"^[^\w]+|[^\w]+$", "", tok)
        return bool(core) and core[0].isupper() and _norm(core) not in _COMMON_CAPS

    flags = []
    for i, w in enumerate(words):
        norm = _norm(w.text)
        name = capitalised(w.text) and norm not in public_terms and norm not in _TITLES
        flags.append(name and not initial(i))
    names = {_norm(words[i].text) for i, f in enumerate(flags) if f}
    lowercase = set(re.findall(r"\b[^\W\d_][\w'’-]*\b", text)) - {""}
    for i, w in enumerate(words):
        if flags[i] or not initial(i) or not capitalised(w.text):
            continue
        norm = _norm(w.text)
        if norm in public_terms or norm in _TITLES:
            continue
        # Seen as a name elsewhere, or (only ever opening sentences) not an ordinary word.
        base = re.sub(r"['’]s$", "", norm)  # "Zoë's" is Zoë
        if norm in names or (base not in lowercase and _rare_in_lowercase(base)):
            flags[i] = True
    entities: list[Entity] = []
    i = 0
    while i < len(words):
        if not flags[i]:
            i += 1
            continue
        j = i
        # Join "Santa Rosa" but not "Rosa, Maria": no punctuation between the words.
        while (
            j + 1 < len(words)
            and flags[j + 1]
            and not re.search(r"[^\w\s'-]", text[words[j].char_end - 1 : words[j + 1].char_start])
        ):
            j += 1
        first, last = words[i], words[j]
        span_start = first.char_start + (len(first.text) - len(first.text.lstrip("\"'(")))
        span_end = last.char_end
        while span_end > span_start and not (text[span_end - 1].isalnum()):
            span_end -= 1
        if text[span_start:span_end].endswith(("'s", "’s")):  # "Rosa's laugh": the name is Rosa
            span_end -= 2
        prev = _norm(words[i - 1].text) if i > 0 else ""
        if prev in _KIN or prev in _TITLES:
            kind = "person"
        elif prev in _PLACE_PREP:
            kind = "place"
        else:
            kind = "name"
        entities.append(
            Entity(
                text[span_start:span_end],
                kind,
                round(first.start, 3),
                round(last.end, 3),
                span_start,
                span_end,
            )
        )
        i = j + 1
    # A name seen once as a person is a person everywhere.
    kinds = {part: e.kind for e in entities if e.kind != "name" for part in e.text.split()}
    for e in entities:
        if e.kind == "name" and e.text in kinds:
            e.kind = kinds[e.text]
    return entities


# --------------------------------------------------------------------------------------------
# Abstractive summaries (optional)

_SEQ2SEQ: dict[str, tuple[Any, Any]] = {}


def _load_seq2seq(name: str) -> tuple[Any, Any]:
    if name in _SEQ2SEQ:
        return _SEQ2SEQ[name]
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = AutoModelForSeq2SeqLM.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(
            f"summary model {name!r} is not installed here ({type(exc).__name__}), and this "
            "machine works offline",
            hint="put the model in the Hugging Face cache or a local folder (save_pretrained) "
            "and name it in narratives.toml [analyse] summary_model, or set summary_model = "
            '"" for extractive summaries',
        ) from None
    model.eval()
    _SEQ2SEQ[name] = (tokenizer, model)
    return tokenizer, model


def _max_input(tokenizer, model) -> int:
    limits = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 100_000:
        limits.append(tok_max)
    for attr in ("max_position_embeddings", "n_positions", "max_source_positions"):
        v = getattr(model.config, attr, None)
        if isinstance(v, int) and v > 0:
            limits.append(v)
    return min(limits) if limits else 512


def abstractive_summary(
    sentences: list[str], model_name: str, *, max_tokens: int = 80
) -> dict[str, Any]:
    """Summarise with a local seq2seq model: sentences are packed into chunks that fit the
    model's input, each chunk gets an equal share of `max_tokens`, and the parts are joined.

    Returns `{"text", "model", "chunks", "max_input", "generated_tokens"}`.
    """
    import torch

    tokenizer, model = _load_seq2seq(model_name)
    limit = _max_input(tokenizer, model)
    specials = len(tokenizer("", add_special_tokens=True)["input_ids"])
    room = max(8, limit - specials)
    chunks: list[list[int]] = []
    current: list[int] = []
    for sentence in sentences:
        ids = tokenizer(sentence, add_special_tokens=False)["input_ids"]
        # A sentence longer than the model's input is split by tokens.
        pieces = [ids[i : i + room] for i in range(0, len(ids), room)] or [[]]
        for piece in pieces:
            if current and len(current) + len(piece) > room:
                chunks.append(current)
                current = []
            current = current + piece
    if current:
        chunks.append(current)
    share = max(4, max_tokens // max(len(chunks), 1))
    parts, generated = [], 0
    with torch.inference_mode():
        for chunk in chunks:
            # Decoded and encoded again so the tokenizer adds its own special tokens.
            enc = tokenizer(
                tokenizer.decode(chunk), truncation=True, max_length=limit, return_tensors="pt"
            )
            input_ids = enc["input_ids"]
            out = model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=share,
                num_beams=1,
                do_sample=False,
            )
            new = out[0].tolist()
            if model.config.is_encoder_decoder:
                new = new[1:]  # the decoder start token is not generated text
            generated += len(new)
            parts.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return {
        "text": " ".join(p for p in parts if p),
        "model": model_name,
        "chunks": len(chunks),
        "max_input": limit,
        "generated_tokens": generated,
    }


# --------------------------------------------------------------------------------------------
# The analysis


@dataclass
class Corrections:
    """Editor tag corrections: each corrected story, an example for or against its tag, and
    the forced values for the narrative being analysed."""

    #: (campaign, tag) -> [(story text, applies)], oldest first.
    examples: dict[tuple[str, str], list[tuple[str, bool]]] = field(default_factory=dict)
    forced: dict[tuple[str, str], bool] = field(default_factory=dict)


_VADER = None


def _sentiment(text: str) -> Sentiment:
    global _VADER
    if _VADER is None:
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
    from narratives.engines.embeddings import get_embedder

    t0 = time.perf_counter()
    settings = settings or AnalyseSettings()
    corrections = corrections or Corrections()
    notes = note_specs(settings)
    text = transcript.text
    words = _align_words(transcript, text)
    base = Analysis(
        narrative_id=transcript.narrative_id,
        language=transcript.language or "",
        duration=float(transcript.duration or 0.0),
        empty=False,
        engine=ENGINE if not settings.summary_model else f"abstractive+{ENGINE}",
        model=settings.embedding_model
        + (f" + {settings.summary_model}" if settings.summary_model else ""),
    )
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
    sentences = _split_sentences(text, words, transcript)
    if not sentences:
        base.empty = True
        base.reason = "nothing to analyse: no sentence could be formed"
        return base
    base.sentence_count = len(sentences)

    # One batch for everything that depends only on this narrative and the campaigns.
    label_texts = _label_texts(campaigns, notes)
    flat = [s.text for s in sentences] + [x for group in label_texts for x in group]
    vecs = embedder.encode(flat)
    sent_vecs = vecs[: len(sentences)]
    label_vecs, offset = [], len(sentences)
    for group in label_texts:
        label_vecs.append(vecs[offset : offset + len(group)])
        offset += len(group)
    description = np.array(_label_scores(sent_vecs, label_vecs), dtype=np.float32)
    story_vec = embedder.encode([trim_fillers(text)])[0]
    learnt = _learnt_scores(
        story_vec, description, campaigns, notes, examples or [], corrections, embedder,
        cache_dir,
    )  # fmt: skip

    chosen = _summary(sentences, sent_vecs, settings.summary_sentences)
    base.summary = [_excerpt(s) for s in chosen]
    base.quote = _quote(sentences, sent_vecs, words, embedder)
    summary_vec = sent_vecs[[s.index for s in chosen]].mean(axis=0)
    summary_vec = summary_vec / max(float(np.linalg.norm(summary_vec)), 1e-12)
    unsure = {_norm(w.text) for w in transcript.words if (w.probability or 1.0) < _UNSURE_WORD}
    base.title = _title(sentences, summary_vec, embedder, unsure)

    i = 0
    for c in campaigns:
        tags = []
        method = "learnt"
        for t in c.tags:
            score, threshold = learnt.get(("tag", c.slug, t.name), (None, c.tag_threshold))
            if score is None:  # too few examples: description similarity
                score, threshold, method = float(description[i]), c.description_threshold, "mixed"
            score = round(score, 4)
            forced = corrections.forced.get((c.slug, t.name))
            applies = forced if forced is not None else score >= threshold
            tags.append(TagScore(t.name, score, applies, forced))
            i += 1
        if all(("tag", c.slug, t.name) not in learnt for t in c.tags):
            method = "description"
        tags.sort(key=lambda t: (t.corrected is not False, t.score), reverse=True)
        ranked = [t for t in tags if t.corrected is not False]
        forced_on = [t for t in ranked if t.corrected is True]
        top = (forced_on or ranked or [None])[0]
        base.campaigns[c.slug] = CampaignTags(
            tags=tags,
            top=top.name if top else None,
            on_topic=any(t.applies for t in tags),
            threshold=c.tag_threshold if method == "learnt" else c.description_threshold,
            method=method,
        )

    public = _public_terms(campaigns)
    entities = _entities(text, words, public)
    base.entities = entities
    for n in notes:
        score, threshold = learnt.get(("note", "", n.name), (None, 0.5))
        if score is None:
            score, threshold = float(description[i]), settings.content_note_threshold
        score = round(score, 4)
        i += 1
        evidence = note_evidence(n, entities, text, public)
        evidence += cue_hits(n, text)
        flagged = bool(evidence) or (score >= threshold and not n.evidence_only)
        base.content_notes.append(ContentNote(n.name, score, flagged, evidence))
    base.content_notes.sort(key=lambda n: n.score, reverse=True)

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


# --------------------------------------------------------------------------------------------
# Files, database and the stage


def _analysis_path(workspace: Workspace, narrative_id: str) -> Path:
    return workspace.narrative_dir(narrative_id) / "analysis.json"


def load_analysis(workspace: Workspace, narrative_id: str) -> Analysis:
    """The stored Analysis of a narrative; `NotFound` if it has not been analysed."""
    path = _analysis_path(workspace, narrative_id)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(
            f"narrative {narrative_id[:12]} has not been analysed",
            hint=f"run `narrative analyse {narrative_id[:12]}`",
        ) from None
    return Analysis.from_dict(data)


def _load_transcript(ctx: Context, narrative_id: str) -> Transcript:
    run_ = get_run(ctx.db, narrative_id, "transcribe")
    if run_ is None or run_.status != "done":
        state = run_.status if run_ else "not run"
        raise InvalidState(
            f"narrative {narrative_id[:12]} is not transcribed (transcribe: {state})",
            hint="run `narrative process` first",
        )
    path = ctx.workspace.narrative_dir(narrative_id) / "transcript.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidState(
            f"narrative {narrative_id[:12]}: transcript.json is missing",
            hint="re-run the transcription with `narrative process --force`",
        ) from None
    return Transcript.from_dict(data)


def load_corrections(ctx: Context, narrative_id: str) -> Corrections:
    """Corrections for analysing `narrative_id`: the latest correction per narrative and tag
    wins; every corrected story becomes an example for (or against) its tag."""
    with ctx.db.connect() as conn:
        rows = conn.execute(sa.select(tag_corrections).order_by(tag_corrections.c.id)).all()
    latest: dict[tuple[str, str, str], bool] = {}
    for r in rows:
        latest.pop((r.narrative_id, r.campaign, r.tag), None)
        latest[(r.narrative_id, r.campaign, r.tag)] = bool(r.applies)
    out = Corrections()
    texts: dict[str, str | None] = {}
    for (nid, campaign, tag), applies in latest.items():
        if nid == narrative_id:
            out.forced[(campaign, tag)] = applies
        if nid not in texts:
            texts[nid] = _transcript_text(ctx.workspace, nid)
        if texts[nid]:
            out.examples.setdefault((campaign, tag), []).append((texts[nid], applies))
    return out


def _transcript_text(workspace: Workspace, narrative_id: str) -> str | None:
    """A narrative's transcript text (None if it has no transcript)."""
    path = workspace.narrative_dir(narrative_id) / "transcript.json"
    try:
        return Transcript.from_dict(json.loads(path.read_text(encoding="utf-8"))).text
    except (OSError, ValueError):
        return None


def run(ctx: Context, narrative_id: str, *, force: bool = False) -> Analysis:
    """Analyse a transcribed narrative; skipped (the stored Analysis returned) when done."""
    path = _analysis_path(ctx.workspace, narrative_id)
    previous = get_run(ctx.db, narrative_id, STAGE)
    if not force and previous is not None and previous.status == "done" and path.is_file():
        return load_analysis(ctx.workspace, narrative_id)
    transcript = _load_transcript(ctx, narrative_id)
    campaigns = load_campaigns(ctx.workspace)
    settings = ctx.settings.analyse
    with stage_run(ctx.db, narrative_id, STAGE) as handle:
        corrections = load_corrections(ctx, narrative_id)
        analysis = analyse_transcript(
            transcript,
            campaigns=campaigns,
            settings=settings,
            corrections=corrections,
            examples=load_examples(ctx.workspace.campaigns_dir),
            cache_dir=ctx.workspace.state_dir / "cache" / "examples",
        )
        handle.engine = analysis.engine
        handle.model = analysis.model
        handle.version = analysis.version[:64] or f"narratives {__version__}"
        atomic_write_json(path, analysis.to_dict())
        handle.output = {
            "empty": analysis.empty,
            "title": analysis.title,
            "top": {slug: c.top for slug, c in analysis.campaigns.items() if c.on_topic},
            "notes": analysis.flagged_notes,
        }
    return analysis


def correct_tag(
    ctx: Context,
    narrative_id: str,
    campaign: str,
    tag: str,
    applies: bool,
    actor: str,
) -> Analysis:
    """Record an editor's tag correction (with an audit row) and re-score the narrative."""
    get_campaign(ctx.workspace, campaign).tag(tag)  # NotFound for an unknown campaign or tag
    # The audit's "before" is what the editor saw: read it from the stored JSON as it is.
    path = ctx.workspace.narrative_dir(narrative_id) / "analysis.json"
    if not path.exists():
        raise NotFound(f"narrative {narrative_id[:12]} has not been analysed yet")
    stored = json.loads(path.read_text(encoding="utf-8"))
    before = None
    for t in ((stored.get("campaigns") or {}).get(campaign) or {}).get("tags") or []:
        if t.get("name") == tag:
            before = {k: t.get(k) for k in ("score", "applies", "corrected")}
    with ctx.db.begin() as conn:
        conn.execute(
            tag_corrections.insert().values(
                narrative_id=narrative_id,
                campaign=campaign,
                tag=tag,
                applies=bool(applies),
                actor=actor,
                at=utcnow(),
            )
        )
        audit_record(
            conn,
            actor=actor,
            action="tag.correct",
            object_type="narrative",
            object_id=narrative_id,
            before=before,
            after={"campaign": campaign, "tag": tag, "applies": bool(applies)},
            detail=f"{campaign}/{tag}: {'applies' if applies else 'does not apply'}",
        )
    return run(ctx, narrative_id, force=True)
