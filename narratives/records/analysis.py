"""The analysis stage's record: summary, quote, title, campaign tags, content notes, entities.

Plain dataclasses that round-trip through analysis.json (`to_dict`/`from_dict`). The file also
holds two derived keys, `summary_text` and each campaign's `applied`, for readers of the JSON;
`from_dict` drops them and recomputes. `from_dict` also reads older and hand-written files:
missing keys take their defaults and unknown keys are ignored, so a newer field never makes an
older analysis unreadable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "ENGINE",
    "Analysis",
    "Excerpt",
    "TagScore",
    "CampaignTags",
    "ContentNote",
    "Entity",
    "Sentiment",
]

#: The extractive engine's name (prefixed "abstractive+" when a summary model is used).
ENGINE = "extractive-minilm"


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    """The keys of `data` that are fields of `cls` (newer files may hold more)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


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
    #: An end was guessed from the words alone (no punctuation and no pause there), so it may
    #: start or end mid-sentence: the review page asks an editor to check it.
    guessed: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Excerpt:
        # Hand-written records may give only the text and its times.
        return cls(**{"raw": data.get("text", ""), "start": 0.0, "end": 0.0, **_known(cls, data)})


@dataclass
class TagScore:
    name: str
    score: float
    #: None only in files that did not record it (older or hand-written analyses).
    applies: bool | None
    #: An editor's correction for this narrative: True, False, or None (none made).
    corrected: bool | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TagScore:
        return cls(**{"score": 0.0, "applies": None, **_known(cls, data)})


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

    @property
    def recorded_applied(self) -> list[str] | None:
        """`applied` (the tags after editors' corrections), or None when the file did not
        record which tags apply (older analyses): the reader then judges by the scores."""
        if any(t.applies is None for t in self.tags):
            return None
        return self.applied

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CampaignTags:
        data = {"top": None, "on_topic": False, "threshold": 0.0, **_known(cls, data)}
        data["tags"] = [TagScore.from_dict(t) for t in data.get("tags") or []]
        return cls(**data)


@dataclass
class ContentNote:
    name: str
    score: float
    flagged: bool
    #: Entities that support the note (names for named-people, places for identifying-places).
    evidence: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContentNote:
        return cls(**{"score": 0.0, "flagged": False, **_known(cls, data)})


@dataclass
class Entity:
    text: str
    #: person | place | name
    kind: str
    #: Where it is spoken (None in hand-written records: then it is hidden in text only).
    start: float | None
    end: float | None
    char_start: int = 0
    char_end: int = 0
    #: Which detector found it: "both" (the NER model and the heuristic agree), "model" or
    #: "heuristic" (only one did: an editor should look); "" in older records.
    found_by: str = ""
    #: False for a find the other detector overruled (the model calls the heuristic's
    #: capitalised word a date, an organisation, a nationality...): listed, not hidden.
    hide: bool = True
    #: Why it is unsure, for the editor ("the model calls it an organisation").
    note: str = ""

    @property
    def unsure(self) -> bool:
        # Also a find that is not hidden (a title alone, "St"): the editor decides.
        return self.found_by in ("model", "heuristic") or not self.hide

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Entity:
        return cls(**{"kind": "name", "start": None, "end": None, **_known(cls, data)})


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

    def fit(self, campaign: str) -> CampaignTags | None:
        """How the story fits `campaign` by its tags (None when the analysis has no tags for it)."""
        return self.campaigns.get(campaign)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary_text"] = self.summary_text
        for slug, tags in self.campaigns.items():
            data["campaigns"][slug]["applied"] = tags.recorded_applied
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        """An Analysis from analysis.json's dict; `summary_text` and `applied` are derived."""
        data = {
            "narrative_id": "",
            "language": "",
            "duration": 0.0,
            "empty": False,
            **_known(cls, data),
        }
        summary = data.get("summary") or []
        if isinstance(summary, dict):  # the first analyses stored {"sentences": [...]}
            summary = summary.get("sentences") or []
        data["summary"] = [Excerpt.from_dict(s) for s in summary]
        data["quote"] = Excerpt.from_dict(data["quote"]) if data.get("quote") else None
        data["campaigns"] = {
            slug: CampaignTags.from_dict(c) for slug, c in (data.get("campaigns") or {}).items()
        }
        data["content_notes"] = [ContentNote.from_dict(n) for n in data.get("content_notes") or []]
        data["entities"] = [Entity.from_dict(e) for e in data.get("entities") or []]
        data["sentiment"] = Sentiment(**data["sentiment"]) if data.get("sentiment") else None
        return cls(**data)
