"""Campaign tags and content notes learnt from labelled example stories, and from editors.

Describing a tag in a sentence and matching stories against it (the first method) held only on
stories that echoed the description: on stories written by others, 2 of 29 reached a campaign.
Measured on a labelled corpus (tests/data/corpus, bench/tagging.py), what generalises is a
small classifier per label: a logistic regression over the story's sentence embedding plus its
similarity to each tag's description, trained on example stories that carry the label against
those that do not, off-topic everyday stories included. A label's score is then a probability,
so one threshold (`Campaign.tag_threshold`) means the same for every tag. Each tag's
model also sees how near the story's sentences come to each tag's example sentences
(`narratives.stages.analyse.neighbours`).

A tag's probability is the mean of that model's and a second one's over the story's words
(TF-IDF of words and word pairs, `train_words_model`): the embedding blurs the few words that
place a story ("the paid room", "without asking me"), and the words alone miss paraphrase.
Chosen by a rule written before measuring, on stories that trained nothing (the calibration
half) and by 5-fold cross-validation on the examples, both of which it had to win: the best
recall-and-specificity point rose 1.85 -> 1.89 and 1.80 -> 1.85 (summed over both campaigns),
and top tag 0.95 -> 0.97 on the calibration half. A campaign-level model beside the tags' won
neither.

The examples live in the workspace (`campaigns/examples.jsonl`: text, tags, notes per line);
the shipped ones are the tuning half of the corpus. An editor's correction adds the corrected
story as an example for (applies) or against (does not apply) that tag, so corrections keep
teaching. A tag with too few examples either way falls back to description similarity against
the campaign's `description_threshold`.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from narratives.core.errors import ConfigError

__all__ = [
    "EXAMPLES_FILE",
    "ExampleStory",
    "LabelModel",
    "load_examples",
    "read_examples",
    "cached_array",
    "cached_arrays",
    "features",
    "train_label_model",
    "train_words_model",
    "MIN_EXAMPLES",
]

#: Beside the campaign files.
EXAMPLES_FILE = "examples.jsonl"
#: A label needs this many examples for it and against it to be learnt.
MIN_EXAMPLES = 5
#: Regularisation of the logistic regressions (chosen by cross-validation on the tuning half).
_C = 3.0
#: Description similarities enter the features at this weight.
_DESCRIPTION_WEIGHT = 3.0
#: Regularisation of the word models (fixed before they were measured, not tuned).
_WORDS_C = 10.0


@dataclass(frozen=True)
class ExampleStory:
    """A labelled story: its tags (none: off-topic) and content notes."""

    text: str
    tags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: Where it came from: the examples file, or "correction" for an editor's.
    source: str = "examples"
    #: Its line in the examples file (0 when it did not come from one).
    line: int = 0


def load_examples(campaigns_dir: Path) -> list[ExampleStory]:
    """The workspace's example stories; none when it has no examples file. ConfigError names
    the first line that is not an example story."""
    examples, errors = read_examples(campaigns_dir)
    if errors:
        raise ConfigError(
            errors[0],
            hint='each line is JSON: {"text": "...", "tags": [...], "notes": [...]}',
        )
    return examples


def read_examples(campaigns_dir: Path) -> tuple[list[ExampleStory], list[str]]:
    """The example stories that read, and an error for each line that does not."""
    path = campaigns_dir / EXAMPLES_FILE
    if not path.is_file():
        return [], []
    out: list[ExampleStory] = []
    errors: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        return [], [f"{path}:{line}: not UTF-8 text ({exc.reason}); save the file as UTF-8"]
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            text = str(data["text"]).strip()
            tags = tuple(str(t) for t in data.get("tags") or ())
            notes = tuple(str(t) for t in data.get("notes") or ())
            text.encode("utf-8")  # a lone surrogate ("\\ud800") is JSON but no text
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            errors.append(f"{path}:{n}: not an example story ({type(exc).__name__}: {exc})")
            continue
        if text:
            out.append(ExampleStory(text, tags, notes, line=n))
    return out, errors


@dataclass
class LabelModel:
    """One label's classifier (or None when it has too few examples to learn)."""

    name: str
    positives: int
    negatives: int
    classifier: object | None = None

    @property
    def learnt(self) -> bool:
        return self.classifier is not None

    def probability(self, features: np.ndarray | str) -> float:
        """The label's probability for a story's features, or for its text (a word model)."""
        assert self.classifier is not None
        rows = [features] if isinstance(features, str) else features[None, :]
        return float(self.classifier.predict_proba(rows)[0, 1])


@dataclass
class _Cache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    #: The most recently used models, at most `_MODELS_KEPT`: every editor's correction makes a
    #: new training set, and a long-running review server must not keep them all.
    models: OrderedDict[str, LabelModel] = field(default_factory=OrderedDict)


#: Enough for a batch's labels with several example sets (corrections) at once.
_MODELS_KEPT = 64


_CACHE = _Cache()


def cached_array(
    kind: str, text: str, compute: Callable[[str], np.ndarray], cache_dir: Path | None
) -> np.ndarray:
    """`compute(text)`, kept in memory and (when given) on disk by kind and text digest:
    the example stories are embedded once per workspace, not once per story analysed."""
    return cached_arrays(kind, [text], lambda texts: [compute(t) for t in texts], cache_dir)[0]


def cached_arrays(
    kind: str,
    texts: list[str],
    compute_many: Callable[[list[str]], list[np.ndarray]],
    cache_dir: Path | None,
    *,
    model: str = "",
    dim: int | None = None,
) -> list[np.ndarray]:
    """`cached_array` for many texts: those in neither cache are computed in one call (one
    batched encode instead of one per example story). `model` keeps each embedding model's
    vectors apart in memory (on disk, `cache_dir` is the model's own folder); a stored array
    that is unreadable, empty or not `dim` wide is computed again."""
    keys = _cache_keys(kind, texts)
    memory = [f"{model}\0{k}" for k in keys]
    with _CACHE.lock:
        found: list[np.ndarray | None] = [_CACHE.arrays.get(k) for k in memory]
    for i, key in enumerate(keys):
        if found[i] is None and cache_dir is not None:
            found[i] = _load(cache_dir / f"{key}.npy", dim)
    missing = [i for i, v in enumerate(found) if v is None]
    if missing and cache_dir is None:
        computed = compute_many([texts[i] for i in missing])
        for i, value in zip(missing, computed, strict=True):
            found[i] = np.asarray(value, dtype=np.float32)
    elif missing:
        _fill_shared(keys, texts, found, compute_many, cache_dir, dim)
    with _CACHE.lock:
        for key, value in zip(memory, found, strict=True):
            _CACHE.arrays[key] = value
    return found  # type: ignore[return-value]  (none is None any more)


#: Texts computed under one lock when the cache is on disk. Processes that share a workspace
#: (the pool's, or Dask workers') and find its cache empty split the work chunk by chunk,
#: instead of each embedding every example story (about 30 s on one core).
CACHE_CHUNK = 24
#: How long to wait for a chunk another process is computing before computing it here too.
_CHUNK_WAIT_SECONDS = 300.0


def _fill_shared(
    keys: list[str],
    texts: list[str],
    found: list[np.ndarray | None],
    compute_many: Callable[[list[str]], list[np.ndarray]],
    cache_dir: Path,
    dim: int | None,
) -> None:
    """Fills `found` chunk by chunk (fixed positions, so every process draws the same chunks),
    each chunk under a file lock: a chunk another process holds is left for last, then read
    back from its files once that process is done. A process that dies releases its lock (the
    OS drops it); one that hangs past `_CHUNK_WAIT_SECONDS` only costs the work again."""
    from filelock import FileLock, Timeout

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # unwritable: every chunk is computed here (the lock below cannot be taken)
    chunks = [
        list(range(a, min(a + CACHE_CHUNK, len(keys))))
        for a in range(0, len(keys), CACHE_CHUNK)
        if any(found[i] is None for i in range(a, min(a + CACHE_CHUNK, len(keys))))
    ]

    def fill(chunk: list[int]) -> None:
        for i in chunk:
            if found[i] is None:
                found[i] = _load(cache_dir / f"{keys[i]}.npy", dim)
        todo = [i for i in chunk if found[i] is None]
        if todo:
            computed = compute_many([texts[i] for i in todo])
            for i, value in zip(todo, computed, strict=True):
                found[i] = value = np.asarray(value, dtype=np.float32)
                _save(cache_dir, keys[i], value)

    later = []
    for chunk in chunks:
        lock = FileLock(
            _chunk_lock_path(cache_dir, [keys[i] for i in chunk]), preserve_lock_file=True
        )
        try:
            lock.acquire(blocking=False)
        except (Timeout, OSError):
            later.append((chunk, lock))
            continue
        try:
            fill(chunk)
        finally:
            lock.release()
    for chunk, lock in later:
        try:
            lock.acquire(timeout=_CHUNK_WAIT_SECONDS)
        except (Timeout, OSError):
            fill(chunk)
            continue
        try:
            fill(chunk)
        finally:
            lock.release()


def _cache_keys(kind: str, texts: list[str]) -> list[str]:
    return [f"{kind}-{hashlib.sha256(t.encode('utf-8')).hexdigest()}" for t in texts]


def _chunk_lock_path(cache_dir: Path, chunk_keys: list[str]) -> Path:
    """The lock file of one chunk (kept: removing a lock file races with its next taker)."""
    digest = hashlib.sha256("\0".join(chunk_keys).encode()).hexdigest()[:24]
    return cache_dir / f".chunk-{digest}.lock"


def _load(path: Path, dim: int | None) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        value = np.load(path)
    except (OSError, ValueError, EOFError):  # damaged, truncated or empty: compute again
        return None
    if value.size == 0 or (dim is not None and value.shape[-1] != dim):
        return None
    return value


def _save(cache_dir: Path, key: str, value: np.ndarray) -> None:
    path = cache_dir / f"{key}.npy"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Processes (pool or Dask workers) may share the folder: their own temporary names.
        tmp = path.with_name(f".{key}.{os.getpid()}-{threading.get_ident()}.tmp.npy")
        np.save(tmp, value)
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def features(story_vec: np.ndarray, description_scores: np.ndarray) -> np.ndarray:
    """What a classifier sees of a story: its embedding and its similarity to each tag."""
    return np.concatenate([story_vec, _DESCRIPTION_WEIGHT * description_scores])


def _trained(key: str, name: str, y: np.ndarray, fit: Callable[[np.ndarray], object]):
    """The model cached under `key`, else one fitted by `fit(y)` when the label has enough
    examples for it and against it (unlearnt otherwise), so a batch of stories trains each
    label once."""
    with _CACHE.lock:
        if key in _CACHE.models:
            _CACHE.models.move_to_end(key)
            return _CACHE.models[key]
    y = np.asarray(y, dtype=bool)
    pos = int(np.sum(y))
    model = LabelModel(name, pos, len(y) - pos)
    if pos >= MIN_EXAMPLES and len(y) - pos >= MIN_EXAMPLES:
        model.classifier = fit(y)
    with _CACHE.lock:
        _CACHE.models[key] = model
        while len(_CACHE.models) > _MODELS_KEPT:
            _CACHE.models.popitem(last=False)
    return model


def train_label_model(name: str, matrix: np.ndarray, y: np.ndarray) -> LabelModel:
    """A logistic regression for one label, or an unlearnt model with too few examples."""
    key = hashlib.sha256(
        name.encode() + matrix.tobytes() + np.asarray(y, dtype=bool).tobytes()
    ).hexdigest()

    def fit(labels):
        # scikit-learn is slow to import: only when a label has enough examples to learn.
        from sklearn.linear_model import LogisticRegression

        regression = LogisticRegression(C=_C, max_iter=5000, class_weight="balanced")
        return regression.fit(matrix, labels)

    return _trained(key, name, y, fit)


def train_words_model(name: str, texts: list[str], y: np.ndarray) -> LabelModel:
    """A logistic regression for one label over the words of the stories (TF-IDF of words and
    word pairs), or an unlearnt model with too few examples."""
    h = hashlib.sha256(name.encode() + np.asarray(y, dtype=bool).tobytes())
    for text in texts:  # a digest per text: no two lists of texts give the same bytes
        h.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())

    def fit(labels):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        # min_df 2: a word only one story uses says nothing about a label.
        words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
        regression = LogisticRegression(C=_WORDS_C, max_iter=5000, class_weight="balanced")
        try:
            return make_pipeline(words, regression).fit(texts, labels)
        except ValueError:  # no word is shared by two stories: nothing to learn from words
            return None

    return _trained("words:" + h.hexdigest(), name, y, fit)


def check_examples(examples: list[ExampleStory], campaigns, note_names: list[str]):
    """(errors, remarks) about the example stories against the campaigns: labels nobody
    defines are errors; tags with too few examples to learn are remarks."""
    tags = {t.name for c in campaigns for t in c.tags}
    errors, remarks = [], []
    for e in examples:
        where = f"{EXAMPLES_FILE}:{e.line}" if e.line else EXAMPLES_FILE
        unknown_tags = sorted(set(e.tags) - tags)
        unknown_notes = sorted(set(e.notes) - set(note_names))
        if unknown_tags:
            errors.append(f"{where}: tags no campaign defines: {', '.join(unknown_tags)}")
        if unknown_notes:
            errors.append(f"{where}: unknown content notes: {', '.join(unknown_notes)}")
    for c in campaigns:
        for t in c.tags:
            n = sum(t.name in e.tags for e in examples)
            if n < MIN_EXAMPLES or len(examples) - n < MIN_EXAMPLES:
                remarks.append(
                    f"{c.slug}/{t.name}: {n} example stories; scored by its description until "
                    f"{EXAMPLES_FILE} has {MIN_EXAMPLES} for it and {MIN_EXAMPLES} against it"
                )
    return errors, remarks
