"""Towns, countries and what a found name is: the rules behind the identifying-places and
named-people notes (records/places.py, the kind rules of stages/analyse/entities.py)."""

from __future__ import annotations

import pytest

from narratives.core.config import AnalyseSettings
from narratives.records.analysis import Entity
from narratives.records.places import is_broad_region, is_city
from narratives.records.transcript import Segment, Transcript, Word
from narratives.stages.analyse.content_notes import note_evidence, note_specs
from narratives.stages.analyse.entities import entities_in, heuristic_entities
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
        # Friends and housemates are named like kin; a name the model misses is a person when
        # it is the subject of what people do...
        ("My flatmate Oskarina lent me her winter coat.", "Oskarina", "person"),
        ("Afterwards Zbyszek painted the whole fence blue.", "Zbyszek", "person"),
        # ...and, without capitals, where only a person stands.
        ("so me and tomasz went out on the lake", "tomasz", "person"),
        ("we waited and jurgita said she was sorry", "jurgita", "person"),
        ("my mate oskarina lent me a coat", "oskarina", "person"),
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


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        "everyone was cheering and i just stood there",  # a verb in -ing
        "honestly shes been good to me and theyve helped a lot",  # contractions unmarked
    ],
)
def test_lower_case_words_beside_a_person_need_not_be_names(text):
    assert _kinds(text) == {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "text",
    [
        "chemo was brutal and covid was the worst time",
        "youtube kept me going and spotify did too",
        "uni was hard and furlough was harder",
    ],
)
def test_being_the_subject_of_a_verb_makes_no_lower_case_word_a_person(text):
    assert "person" not in _kinds(text).values()


@pytest.mark.slow
def test_a_kinship_word_names_a_person_even_with_a_campaign_word():
    """A campaign's public words are no names, but "my friend rosa" is a person whatever the
    campaign's wording: hidden in an anonymous story."""
    t = _transcript("my friend rosa helped me so much")
    found = entities_in(t.text, align_words(t, t.text), {"rosa"})
    assert [(e.text, e.kind, e.hide) for e in found] == [("rosa", "person", True)]


@pytest.mark.slow
def test_an_organisation_doing_something_is_no_named_person():
    spec = {s.name: s for s in note_specs(AnalyseSettings())}["named-people"]
    t = _transcript("Tesco sacked me after six years. Then Radek fixed the boiler.")
    found = entities_in(t.text, align_words(t, t.text), set())
    assert note_evidence(spec, found, t.text, set()) == ["Radek"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("I rang the office and Mrs van Houtem picked up.", "Houtem"),  # a surname's particle
        ("so my son kofi's bike got stolen", "kofi"),  # a possessive without capitals
    ],
)
def test_the_word_rules_see_a_person_past_particles_and_possessives(text, name):
    t = _transcript(text)
    found = heuristic_entities(t.text, align_words(t, t.text), set())
    assert [(e.text, e.kind) for e in found] == [(name, "person")]


@pytest.mark.slow
def test_an_identifying_place_is_said_as_a_place():
    """A one-word "place" with no place word before it and no known town is no evidence (a
    product, a pet)."""
    spec = {s.name: s for s in note_specs(AnalyseSettings())}["identifying-places"]
    text = (
        "We shared a tin of Crumblewick, then drove to Dunmarra past Glenhollow Mill. Leicester "
        "was cold."
    )
    names = ["Crumblewick", "Dunmarra", "Glenhollow Mill", "Leicester"]
    entities = []
    for name in names:
        start = text.index(name)
        entities.append(Entity(name, "place", 1.0, 1.4, start, start + len(name)))
    assert note_evidence(spec, entities, text, set()) == [
        "Dunmarra",
        "Glenhollow Mill",
        "Leicester",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "places"),
    [
        ("We lived in the town of Dunmarra for years.", ["Dunmarra"]),
        ("We lived in central Dunmarra and then in north Kellbrook.", ["Dunmarra", "Kellbrook"]),
        ("We went back home to Dunmarra and Kellbrook every summer.", ["Dunmarra", "Kellbrook"]),
        ("In the end I left for Kellbrook.", ["Kellbrook"]),
        ("She brought a bag of Crumblewick to share.", []),
    ],
)
def test_the_ways_people_say_where(text, places):
    spec = {s.name: s for s in note_specs(AnalyseSettings())}["identifying-places"]
    entities = []
    for name in ("Dunmarra", "Kellbrook", "Crumblewick"):
        if name in text:
            start = text.index(name)
            entities.append(Entity(name, "place", 1.0, 1.4, start, start + len(name)))
    assert note_evidence(spec, entities, text, set()) == places


@pytest.mark.slow
def test_kin_words_of_any_language_name_no_one():
    spec = {s.name: s for s in note_specs(AnalyseSettings())}["named-people"]
    text = "My abuela and my cousin Ireneo cooked all day."
    entities = [
        Entity("abuela", "person", 0.3, 0.6, 3, 9),
        Entity("Ireneo", "person", 1.5, 1.8, 27, 33),
    ]
    assert note_evidence(spec, entities, text, set()) == ["Ireneo"]
