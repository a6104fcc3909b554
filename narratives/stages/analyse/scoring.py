"""Scores of campaign tags and content notes: learnt from example stories, else by description.

Scores come from sentence embeddings: a tag or a content note is a description plus example
sentences, and its description score is the mean of the top three transcript sentences' best
similarities to those texts. Sentence-level scoring separates topics far better than one
whole-document vector (MODELS.md). Where enough example stories (`campaigns/examples.jsonl`)
and editors' corrections exist, a small model per label learnt from them gives the score
instead (`narratives.stages.analyse.tagging`); for a tag, the mean of one over the embeddings
and one over the story's words.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from narratives.core.campaigns import Campaign
from narratives.records.analysis import CampaignTags, TagScore
from narratives.stages.analyse.content_notes import NoteSpec
from narratives.stages.analyse.fillers import trim_fillers
from narratives.stages.analyse.neighbours import (
    NEIGHBOUR_WEIGHT,
    Neighbours,
    cached_leave_one_out,
)
from narratives.stages.analyse.tagging import (
    ExampleStory,
    cached_arrays,
    features,
    train_label_model,
    train_words_model,
)
from narratives.stages.analyse.timing import text_sentences

__all__ = [
    "TOP_K",
    "Corrections",
    "label_scores",
    "label_texts",
    "learnt_scores",
    "campaign_tags",
]

#: Scores average this many best-matching sentences.
TOP_K = 3


@dataclass
class Corrections:
    """Editor tag corrections: each corrected story, an example for or against its tag, and
    the forced values for the narrative being analysed."""

    #: (campaign, tag) -> [(story text, applies)], oldest first.
    examples: dict[tuple[str, str], list[tuple[str, bool]]] = field(default_factory=dict)
    forced: dict[tuple[str, str], bool] = field(default_factory=dict)


def _topk_mean(sims: np.ndarray, k: int = TOP_K) -> float:
    """Mean of the k best sentence similarities (each sentence's best match to the label)."""
    if sims.size == 0:
        return 0.0
    best = np.sort(sims)[::-1][: min(k, sims.size)]
    return float(best.mean())


def label_scores(sent_vecs: np.ndarray, label_vecs: list[np.ndarray]) -> list[float]:
    return [_topk_mean((sent_vecs @ lv.T).max(axis=1)) for lv in label_vecs]


def label_texts(campaigns: list[Campaign], notes: list[NoteSpec]) -> list[list[str]]:
    """Each tag's and then each note's description and example sentences."""
    groups = [[t.description, *t.examples] for c in campaigns for t in c.tags]
    return groups + [[n.description, *n.examples] for n in notes]


def learnt_scores(
    story_text: str,
    story_vec: np.ndarray,
    sent_vecs: np.ndarray,
    description: np.ndarray,
    campaigns: list[Campaign],
    notes: list[NoteSpec],
    examples: list[ExampleStory],
    corrections: Corrections,
    embedder,
    cache_dir: Path | None,
    note_threshold: float = 0.6,
) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(probability, threshold) per learnt label, keyed ("tag", campaign, tag) or
    ("note", "", note); labels with too few examples are left out.

    A tag's features are the story's embedding, its description scores and how near its
    sentences come to each tag's example sentences (`neighbours`); its probability is the mean
    of that model's and a model of the story's words (`train_words_model`). A note's features
    are the embedding and the description scores."""
    n_tags = sum(len(c.tags) for c in campaigns)
    if not examples and not corrections.examples:
        return {}
    label_vecs = [embedder.encode(g) for g in label_texts(campaigns, [])]

    # One folder per embedding model: vectors of another model must never be read back.
    folder = _model_folder(embedder)
    cache_dir = cache_dir / folder if cache_dir is not None else None
    dim = getattr(embedder, "dim", None)

    def encode_sentences(texts: list[str]) -> list[np.ndarray]:
        groups = [text_sentences(t) or [t] for t in texts]
        flat = embedder.encode([s for g in groups for s in g]) if groups else None
        out, i = [], 0
        for g in groups:
            out.append(flat[i : i + len(g)])
            i += len(g)
        return out

    # Every example story, then every corrected story not among them.
    texts = [e.text for e in examples]
    index = {t: i for i, t in enumerate(texts)}
    for extra in corrections.examples.values():
        for text, _ in extra:
            if text not in index:
                index[text] = len(texts)
                texts.append(text)
    sents = cached_arrays("sentences", texts, encode_sentences, cache_dir, model=folder, dim=dim)
    stories = cached_arrays(
        "story", texts, lambda ts: list(embedder.encode([trim_fillers(t) for t in ts])),
        cache_dir, model=folder, dim=dim,
    )  # fmt: skip
    base = np.stack(
        [
            features(story, np.array(label_scores(sent, label_vecs), dtype=np.float32))
            for sent, story in zip(sents, stories, strict=True)
        ]
    )
    # Groups: each tag's stories (examples and editors' "applies"), then the off-topic examples.
    groups = []
    for c in campaigns:
        for t in c.tags:
            members = [i for i, e in enumerate(examples) if t.name in e.tags]
            extra = corrections.examples.get((c.slug, t.name), [])
            members += [index[text] for text, applies in extra if applies]
            groups.append(sorted(set(members)))
    groups.append([i for i, e in enumerate(examples) if not e.tags])
    near = Neighbours.of(sents, groups)
    tag_rows = np.hstack([base, NEIGHBOUR_WEIGHT * cached_leave_one_out(near)])
    x = features(story_vec, description[:n_tags])
    x_tag = np.concatenate([x, NEIGHBOUR_WEIGHT * near.scores(sent_vecs)])
    out: dict[tuple[str, str, str], tuple[float, float]] = {}
    n_examples = len(examples)
    for c in campaigns:
        for t in c.tags:
            rows = list(range(n_examples))
            y = [t.name in e.tags for e in examples]
            extra = corrections.examples.get((c.slug, t.name), [])
            rows += [index[text] for text, _ in extra]
            y += [applies for _, applies in extra]
            if not rows:
                continue
            model = train_label_model(f"tag:{t.name}", tag_rows[rows], np.array(y))
            if model.learnt:
                p = model.probability(x_tag)
                # Without fillers, as the embeddings: "um" must not become evidence for a tag.
                said = [trim_fillers(texts[i]) for i in rows]
                words = train_words_model(f"tag:{t.name}", said, np.array(y))
                if words.learnt:
                    p = (p + words.probability(trim_fillers(story_text))) / 2
                out[("tag", c.slug, t.name)] = (p, c.tag_threshold)
    if examples:
        for n in notes:
            y = np.array([n.name in e.notes for e in examples])
            model = train_label_model(f"note:{n.name}", base[:n_examples], y)
            if model.learnt:
                out[("note", "", n.name)] = (model.probability(x), note_threshold)
    return out


def campaign_tags(
    campaigns: list[Campaign],
    description: np.ndarray,
    learnt: dict[tuple[str, str, str], tuple[float, float]],
    corrections: Corrections,
) -> dict[str, CampaignTags]:
    """Each campaign's ranked tags: the learnt score where there is one, else the description
    score (`description` holds every campaign's tags in order); editors' corrections force."""
    out: dict[str, CampaignTags] = {}
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
        out[c.slug] = CampaignTags(
            tags=tags,
            top=top.name if top else None,
            on_topic=any(t.applies for t in tags),
            threshold=c.tag_threshold if method == "learnt" else c.description_threshold,
            method=method,
        )
    return out


def _model_folder(embedder) -> str:
    """A folder name for the embedding model: its name, made safe, and a digest of its
    identity (a local path or another revision of the same name gets its own)."""
    name = str(getattr(embedder, "name", "") or type(embedder).__name__)
    where = getattr(embedder, "sha256", None) or getattr(embedder, "location", "")
    ident = f"{name}\0{where}"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit("/", 1)[-1])[:48]
    return f"{safe}-{hashlib.sha256(ident.encode('utf-8')).hexdigest()[:10]}"
