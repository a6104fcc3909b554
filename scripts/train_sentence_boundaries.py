"""Train the sentence-boundary model for unpunctuated speech (stages/analyse/boundaries.py).

    .venv/bin/python scripts/train_sentence_boundaries.py [--check] [--json]

Training text: the spoken-style stories in tests/data/sentences/ (written for this, on any
topic) and the punctuated stories of the corpus's tuning halves. Never a held-out story: the
script refuses if one is among its inputs. Each story is stripped of punctuation and capitals as
a recogniser without punctuation would give it; its own punctuation (split by pysbd) says where
sentences start. The regularisation, the length prior's weight and the cut bias are chosen by
5-fold cross-validation over stories (the share of pieces whose both ends are right, among
settings whose pieces average at most 1.75 times the written sentences' length), then the
model is fitted on everything and written to narratives/defaults/sentences/boundaries.json.

`--check` only verifies that the shipped model was trained on the training text as it is now
(exit 1 if not).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from narratives.engines.nlp import get_pipeline  # noqa: E402
from narratives.stages.analyse.boundaries import (  # noqa: E402
    BOUNDARY_MODEL,
    BoundaryModel,
    gap_features,
    normalise_words,
)
from tests.corpus import HELD_OUT, has_reference, sentence_bounds, split, tuning_stories  # noqa: E402

TEXTS = REPO / "tests" / "data" / "sentences"
#: Weights smaller than this are left out of the shipped file (half its size, same cuts).
MIN_WEIGHT = 0.02
MAX_WORDS = 35
MIN_WORDS = 3
GRID_C = (0.1, 0.3, 1.0)
GRID_PRIOR = (0.0, 0.5, 1.0)
GRID_BIAS = (-1.0, 0.0, 1.0, 2.0)
#: Pieces may average at most this many times the written sentences' length.
MEAN_WORDS_OVER_TRUE = 1.75


def training_texts(corpus: bool = True) -> list[tuple[str, str]]:
    """(id, punctuated text) of every training story, held-out ones refused."""
    out = []
    for path in sorted(TEXTS.glob("*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                out.append((d["id"], d["text"].strip()))
            except (ValueError, KeyError) as e:
                raise SystemExit(f"{path.name}:{n}: not a story ({e})") from e
    if corpus:
        out += [(s.id, s.text) for s in tuning_stories() if has_reference(s)]
    held = {s.id for half in HELD_OUT for s in split(half)}
    clash = held & {i for i, _ in out}
    if clash:
        raise SystemExit(f"held-out stories among the training text: {sorted(clash)[:5]}")
    return out


def fingerprint(texts: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for i, t in texts:
        h.update(i.encode() + b"\0" + t.encode() + b"\0")
    return h.hexdigest()


def labelled(text: str) -> tuple[list[str], list[int]] | None:
    """The words as an unpunctuated recogniser writes them, and for each gap (before word k,
    k >= 1) whether a written sentence starts there."""
    words = normalise_words(text)
    starts, _ = sentence_bounds(text)
    kept = [(k, w) for k, w in enumerate(words) if w]
    if len(kept) < 2:
        return None
    flat = [w for _, w in kept]
    labels = [int(kept[j][0] in starts) for j in range(1, len(kept))]
    return flat, labels


def length_prior(label_lists: list[list[int]]) -> list[float]:
    lengths = []
    for labels in label_lists:
        cuts = [0] + [k + 1 for k, y in enumerate(labels) if y] + [len(labels) + 1]
        lengths += [b - a for a, b in zip(cuts, cuts[1:], strict=False)]
    counts = Counter(min(n, MAX_WORDS) for n in lengths)
    total = sum(counts.values())
    smoothed = total + 0.5 * MAX_WORDS
    return [math.log((counts.get(n, 0) + 0.5) / smoothed) for n in range(1, MAX_WORDS + 1)]


def whole_pieces(model: BoundaryModel, log_odds: list[float], labels: list[int]) -> tuple[int, int]:
    """(pieces with both ends right, pieces) when the story is cut by `model`."""
    cuts = model.choose_cuts(log_odds)
    truth = {k + 1 for k, y in enumerate(labels) if y} | {0, len(labels) + 1}
    bounds = [0, *cuts, len(labels) + 1]
    pairs = list(zip(bounds, bounds[1:], strict=False))
    return sum(a in truth and b in truth for a, b in pairs), len(pairs)


def fit(features, labels, c):
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = DictVectorizer()
    x = vec.fit_transform([f for fs in features for f in fs])
    y = [v for ls in labels for v in ls]
    clf = LogisticRegression(C=c, max_iter=5000).fit(x, y)
    weights = {
        name: round(float(w), 4)
        for name, w in zip(vec.get_feature_names_out(), clf.coef_[0], strict=True)
        if abs(w) >= MIN_WEIGHT
    }
    return weights, round(float(clf.intercept_[0]), 5)


def model_of(weights, intercept, prior, prior_weight, bias, trained_on) -> BoundaryModel:
    return BoundaryModel(
        weights, intercept, prior, prior_weight, bias, MIN_WORDS, MAX_WORDS, trained_on
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the shipped model")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--without-corpus",
        metavar="PATH",
        type=Path,
        help="train on tests/data/sentences/ only and write the model to PATH (to measure "
        "settings on the corpus's tuning halves with a model that has not seen them)",
    )
    args = parser.parse_args()
    texts = training_texts(corpus=args.without_corpus is None)
    target = args.without_corpus or BOUNDARY_MODEL
    digest = fingerprint(texts)
    if args.check:
        shipped = json.loads(BOUNDARY_MODEL.read_text(encoding="utf-8"))["trained_on"]
        ok = shipped.get("sha256") == digest
        print("up to date" if ok else "the training text changed: run this script again")
        return 0 if ok else 1
    nlp = get_pipeline()
    stories = [r for r in (labelled(t) for _, t in texts) if r]
    features = [gap_features(words, nlp(" ".join(words))) for words, _ in stories]
    labels = [ls for _, ls in stories]
    folds = [list(range(k, len(stories), 5)) for k in range(5)]
    scores: dict[tuple, list[int]] = {}
    for fold in folds:
        test = set(fold)
        train = [i for i in range(len(stories)) if i not in test]
        prior = length_prior([labels[i] for i in train])
        for c in GRID_C:
            weights, intercept = fit([features[i] for i in train], [labels[i] for i in train], c)
            for pw in GRID_PRIOR:
                for bias in GRID_BIAS:
                    m = model_of(weights, intercept, prior, pw, bias, {})
                    got = scores.setdefault((c, pw, bias), [0, 0, 0])
                    for i in fold:
                        ok, n = whole_pieces(m, m.log_odds(features[i]), labels[i])
                        got[0] += ok
                        got[1] += n
                        got[2] += len(labels[i]) + 1
    # Fewer cuts make more whole pieces but long ones: a quote must fit in 200 characters.
    true_mean = sum(len(ls) + 1 for ls in labels) / (sum(sum(ls) for ls in labels) + len(labels))
    allowed = {k: v for k, v in scores.items() if v[2] / v[1] <= MEAN_WORDS_OVER_TRUE * true_mean}
    (c, pw, bias), (ok, n, _) = max(allowed.items(), key=lambda kv: kv[1][0] / kv[1][1])
    weights, intercept = fit(features, labels, c)
    import sklearn

    report = {
        "stories": len(stories),
        "gaps": sum(len(ls) for ls in labels),
        "sentence_starts": sum(sum(ls) for ls in labels),
        "sha256": digest,
        "scikit_learn": sklearn.__version__,
        "C": c,
        "written_mean_words": round(true_mean, 1),
        "cross_validated_whole_pieces": round(ok / n, 3),
        "cross_validated_grid": {
            f"C={k[0]} prior={k[1]} bias={k[2]}": {
                "whole": round(v[0] / v[1], 3),
                "mean_words": round(v[2] / v[1], 1),
            }
            for k, v in scores.items()
        },
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        json.dumps(
            {
                "intercept": intercept,
                "length_prior": [round(v, 4) for v in length_prior(labels)],
                "prior_weight": pw,
                "cut_bias": bias,
                "min_words": MIN_WORDS,
                "max_words": MAX_WORDS,
                "trained_on": report,
                "weights": dict(sorted(weights.items())),
            },
            indent=0,
        )
        + "\n",
        encoding="utf-8",
    )
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(
            f"{report['stories']} stories, {report['sentence_starts']} sentence starts in "
            f"{report['gaps']} gaps; chosen C={c}, prior weight {pw}, cut bias {bias}: "
            f"{report['cross_validated_whole_pieces']:.3f} of pieces whole (5-fold)\n"
            f"wrote {target} ({len(weights)} weights)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
