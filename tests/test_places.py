"""Towns, countries and what a found name is: the rules behind the identifying-places and
named-people notes (records/places.py, the kind rules of stages/analyse/entities.py)."""

from __future__ import annotations

import pytest

from narratives.core.config import AnalyseSettings
from narratives.records.analysis import Entity
from narratives.records.places import is_broad_region, is_city
from narratives.records.transcript import Segment, Transcript, Word
from narratives.stages.analyse.content_notes import note_evidence, note_specs
from narratives.stages.analyse.entities import entities_in
from narratives.stages.analyse.timing import align_words


def test_towns_and_broad_regions_from_geonames():
    for town in ("Leicester", "Cork", "Gdańsk", "Gdansk", "Hobart", "Curitiba"):
        assert is_city(town), town
    for region in ("Ghana", "the Netherlands", "Wales", "Ohio", "Africa", "the UK"):
        assert is_broad_region(region), region
    for word in ("Tamsin", "Okonkwo", "Hollybush Road"):
        assert not is_city(word) and not is_broad_region(word), word
    assert not is_broad_region("Leicester")


def _transcript(text: str) -> Transcript:
    words = [Word(i * 0.3, i * 0.3 + 0.27, " " + w) for i, w in enumerate(text.split())]
    return Transcript("c" * 64, "en", len(words) * 0.3 + 0.5, [Segment(0, 0.0, words[-1].end, " " + text, words)], "t", "t")  # fmt: skip  # noqa: E501


def _kinds(text: str) -> dict[str, str]:
    t = _transcript(text)
    return {e.text: e.kind for e in entities_in(t.text, align_words(t, t.text), set())}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "name", "kind"),
    [
        # A kinship word, a title or a person's verb beside a name makes a person...
        ("Then my cousin, Tamsin, rang the helpline for me.", "Tamsin", "person"),
        ("The day Okonkwo died the whole street came out.", "Okonkwo", "person"),
        ("We all loved Ifeoma and we still do.", "Ifeoma", "person"),
        # ...a place preposition a place, where the name is a town...
        ("In the spring I moved to Leicester with two bags.", "Leicester", "place"),
        # ...and not where it is not one: people are talked to.
        ("I finally talked to Gareth about the money.", "Gareth", "person"),
        # A town or a country stays a place whatever it does.
        ("My nan in Leeds said I could stay.", "Leeds", "place"),
        ("Everyone in Bristol said it would rain.", "Bristol", "place"),
        ("Syria fell apart the year I left.", "Syria", "place"),
        ("We loved Barcelona.", "Barcelona", "place"),
        # A street word ends a street, not a person named by a kinship word.
        ("I grew up on Jane Street with my nan.", "Jane Street", "place"),
        ("My cousin Mary Hill came round with soup.", "Mary Hill", "person"),
    ],
)
def test_the_words_around_a_name_say_what_it_is(text, name, kind):
    kinds = _kinds(text)
    assert kinds.get(name) == kind, kinds


@pytest.mark.slow
def test_a_name_that_is_a_person_once_is_a_person_everywhere():
    kinds = _kinds("My uncle Desmond left us his van. The kids call it Desmond now.")
    assert kinds == {"Desmond": "person"}


def test_a_country_is_not_an_identifying_place():
    spec = {s.name: s for s in note_specs(AnalyseSettings())}["identifying-places"]
    entities = [
        Entity("Ghana", "place", 1.0, 1.4),
        Entity("Kumasi", "place", 2.0, 2.4),
        Entity("the Netherlands", "place", 3.0, 3.4),
    ]
    assert note_evidence(spec, entities, "", set()) == ["Kumasi"]
    assert note_evidence(spec, entities[::2], "", set()) == []
