"""Nearest example sentences per tag (narratives/stages/analyse/neighbours.py): the rule on
small made-up vectors. Its effect on routing is held by the held-out tests in test_tagging.py."""

from __future__ import annotations

import numpy as np

from narratives.stages.analyse.neighbours import Neighbours, cached_leave_one_out


def _unit(*rows):
    a = np.array(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _stories():
    # Three stories in a 3-d space: two near the x axis (a tag's examples), one on z (off-topic).
    return [
        _unit([1, 0.1, 0], [1, 0, 0.1]),
        _unit([1, 0, 0], [0.9, 0.1, 0]),
        _unit([0, 0, 1]),
    ]


def test_a_story_near_a_groups_sentences_scores_high_for_it_only():
    near = Neighbours.of(_stories(), [[0, 1], [2]])
    s = near.scores(_unit([1, 0, 0]))
    assert s[0] > 0.99 and s[1] < 0.01
    s = near.scores(_unit([0, 0.1, 1]))
    assert s[1] > 0.99 and s[0] < 0.2


def test_the_best_three_sentences_count():
    near = Neighbours.of(_stories(), [[0, 1]])
    one_close = near.scores(_unit([1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 1, 0]))[0]
    three_close = near.scores(_unit([1, 0, 0], [1, 0.05, 0], [1, 0, 0.05], [0, 1, 0]))[0]
    assert three_close > one_close + 0.5


def test_leaving_a_story_out_of_its_own_group():
    stories = _stories()
    near = Neighbours.of(stories, [[0, 1], [2]])
    left_out = near.leave_one_out()
    for i, sentences in enumerate(stories):
        assert np.allclose(left_out[i], near.scores(sentences, exclude=i))
    # Story 2 is the only member of group 1: without itself the group is empty.
    assert left_out[2, 1] == 0.0
    # With itself it would match perfectly; left out, story 0 still finds story 1.
    assert near.scores(stories[0])[0] > 0.999 and 0.9 < left_out[0, 0] < 0.999
    assert np.array_equal(cached_leave_one_out(near), left_out)


def test_empty_inputs_score_zero():
    near = Neighbours.of(_stories(), [[], [0]])
    assert near.scores(np.zeros((0, 3), dtype=np.float32)).tolist() == [0.0, 0.0]
    assert near.scores(_unit([1, 0, 0]))[0] == 0.0
    assert Neighbours.of([], []).leave_one_out().shape == (0, 0)
