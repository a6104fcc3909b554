"""Content notes: what an editor and a reader should be warned of before a story.

A note is flagged when any of three signals says so, because a missed warning costs more than
an extra one and each signal misses what another catches (measured on the labelled corpus,
bench/tagging.py):

- a classifier learnt from the example stories' notes (`narratives.stages.analyse.tagging`);
- cue phrases: rare notes such as violence or self-harm are often one sentence in a story,
  which neither a whole-story classifier nor a sentence average can hear, and too few example
  stories carry them to learn from;
- evidence: private names and identifying places found in the text (the names heuristic of
  the analysis, and spaCy's named-entity recogniser for people). Named people and identifying
  places are flagged on evidence alone: a story-level score for them was mostly wrong
  (cross-validated on the corpus's tuning half, F1 0.39 and 0.22 against 0.89 and 0.76). A
  country, continent or US state is too broad to identify anyone and is no evidence, nor is
  one word said without a preposition and no known town (a product or a pet the small model
  reads as a place). Kin words in any
  language ("my abuela") name no one.
  Self-harm is flagged on its cues alone, for the same reason.

The cue lists name the ways people say these things ("took his own life", "did not want to be
here any more", "threw me against the wall", "the GP"), and leave out the everyday phrases that
look like them ("it hit me that", "pushed me to apply", "a stroke of luck").

Without examples, a note falls back to its description's similarity (`content_note_threshold`).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from narratives.core.config import AnalyseSettings
from narratives.core.errors import ConfigError
from narratives.engines.nlp import get_pipeline
from narratives.records.places import is_broad_region, is_city

__all__ = ["DEFAULT_CONTENT_NOTES", "NoteSpec", "note_specs", "cue_hits", "note_evidence"]

DEFAULT_CONTENT_NOTES: list[dict[str, Any]] = [
    {
        "name": "grief",
        "cues": [
            (
                r"\b(?:my|our|his|her|their) (?:\w+ )?(?:mum|mom|mam|mother|dad|father|"
                r"nan|nana|gran|granny|grandma|grandmother|grandad|grandpa|grandfather|"
                r"brother|sister|son|daughter|wife|husband|partner|friend|uncle|aunt|auntie|"
                r"cousin|baby|boy|girl|child|neighbou?r|dog|cat)s? (?:died|passed away|passed on)\b"
            ),
            r"\b(?:funeral|buried (?:him|her|them|my)|widow(?:ed|er)?)\b",
        ],
        "description": "Grief and loss: someone the narrator loved has died; mourning, missing "
        "them, a funeral, never getting to say goodbye.",
        "examples": [
            "My grandmother died and I never got to say goodbye.",
            "I still miss him every day since he passed away.",
        ],
    },
    {
        "name": "self-harm",
        # On cues alone: the learnt score, from the few example stories that carry it, added
        # no hit and two false alarms in cross-validation on the tuning halves.
        "evidence_only": True,
        "cues": [
            (
                r"\b(?:hurt(?:ing)?|cut(?:ting)?|harm(?:ing)?|kill(?:ing)?) (?:myself|herself|"
                r"himself|themselves)\b"
            ),
            (
                r"\b(?:suicid\w*|overdos\w*|end(?:ing)? (?:it all|my life)|not wanting to (?:live|"
                r"wake up))\b"
            ),
            r"\b(?:wanted|want) to die\b",
            r"\b(?:took|take|taking|taken) (?:his|her|their|my|your) own li(?:fe|ves)\b",
            r"\bend(?:ed|ing|s)? (?:my|his|her|their|your) li(?:fe|ves)\b(?! as\b)",
            r"\bhang(?:ed|ing)? (?:myself|herself|himself|themselves)\b",
            # "I didn't want to be here any more", not "I didn't want to live in London".
            (
                r"\b(?:did ?n[o'’]?t|do ?n[o'’]?t|never|no longer|not) (?:want(?:ed)?|wanting) to "
                r"(?:be alive|(?:live|be here|go on living|exist|be around|wake up)"
                r"(?: any ?more| again| at all| either)?(?=[.,;:!?]|$| and\b| but\b| so\b))"
            ),
            r"\bnot (?:being|be|to be) (?:here|around|alive) any ?more\b",
            r"\bbetter off without me\b|\bsuicidal thoughts\b|\bself[- ]?harm\w*\b",
            r"\b(?:crisis (?:line|hotline)|suicide (?:line|hotline)|the samaritans)\b",
            r"\bnot (?:to )?wake up (?:at all|again|ever)\b",
            r"\b(?:could ?n[o'’]?t|can ?n[o'’]?t|cannot) go on living\b",
        ],
        "description": "Self-harm or suicide: hurting oneself on purpose, wanting to die, "
        "suicidal thoughts or attempts.",
        "examples": ["I wanted to hurt myself.", "I thought about ending my life."],
    },
    {
        "name": "violence",
        "cues": [
            (
                r"\b(?:punch(?:ed|ing) (?:me|him|her|them)|got punched|stabb(?:ed|ing)|"
                r"beat (?:me|him|her|them) up|beaten up|kick(?:ed|ing) (?:me|him|her)|"
                r"slapp(?:ed|ing))\b"
            ),
            (
                r"\b(?:assault(?:ed)?|attacked (?:me|him|her|us)|abused (?:me|him|her)|"
                r"ambush\w*|shelling|gunfire|got shot(?! down)|"
                r"(?:was|were|being) shot (?:at|dead|twice|in the "
                r"(?:head|leg|arm|chest|back|face))|"
                r"shot at (?:me|him|her|us|them))\b"
            ),
            r"\b(?:threaten(?:ed|ing) to kill|fist ?fight|a fight broke out)\b",
            # A person doing it to someone: "he hit me", "she used to slap us", not "the storm
            # hit us" or "my brother always beats me at chess".
            (
                r"\b(?:he|she|they|someone|somebody|a man|a guy|a woman|a lad|(?:step)?dad|"
                r"father|(?:step)?mum|mother|husband|boyfriend|partner|ex)(?: \w+){0,2} "
                r"(?:hit|hits|punch(?:ed)?|slap(?:ped)?|shov(?:e|ed)|smack(?:ed)?|chok(?:e|ed)|"
                r"strangl(?:e|ed)|stab(?:bed)?|kick(?:ed)?|attacked|shot) "
                r"(?:me|him|her|them|us|my|his|their)\b"
            ),
            (
                r"\b(?:push(?:ed)?|shov(?:e|ed)|thr(?:ew|own)|knock(?:ed)?|drag(?:ged)?|"
                r"slamm(?:ed)?) "
                r"(?:me|him|her|them|us) (?:against (?:a|the) \w+|down the stairs|to the "
                r"(?:ground|floor)|off (?:the|my|his|her) bike)\b"
            ),
            (
                r"\b(?:was|were|got|been|being|get|gets) (?:stabbed|mugged|assaulted|punched|raped|"
                r"knifed|strangled|slapped|attacked|bombed|shot (?:dead|twice))\b|"
                r"\bbeat (?:me|us|him|her|them) (?:up|with|black)\b"
            ),
            (
                r"\b(?:held|pointed|pulled|put|waved|holding|pointing) (?:a|the|his|her) "
                r"(?:\w+ )?(?:knife|gun|blade|bottle|pistol|machete) (?:at|to|on)\b|"
                r"\bat (?:gun|knife)point\b"
            ),
            (
                r"\b(?:domestic (?:violence|abuse)|abusive|mugg(?:ed|ing)|bombings?|air ?raids?|"
                r"a bomb went off|snipers?|(?:bar|street) ?fights?)\b"
            ),
        ],
        "description": "Violence or abuse: someone was hit, beaten, attacked, shot, stabbed, "
        "threatened or abused.",
        "examples": [
            "He hit me and I was afraid he would kill me.",
            "There was a fight and someone was stabbed.",
        ],
    },
    {
        "name": "medical",
        "cues": [
            (
                r"\b(?:in (?:the )?hospital|hospital (?:bed|ward|stay)|surgery|diagnos\w*|chemo\w*|"
                r"cancer|tumou?r|(?:had|has|have) a stroke|seizures?|epilep\w*)\b"
            ),
            (
                r"\b(?:dementia|alzheimer\w*|diabet\w*|medication|prescri\w*|antidepressants?|"
                r"morphine|ambulance|intensive care|heart attack|wheelchair|inhaler)\b"
            ),
            r"\b(?:had a|after (?:a|his|her|the)|second|minor|massive|mild) stroke\b(?! of\b)",
            (
                r"\b(?:heart (?:problem|condition|failure|surgery)|cardiac|panic attacks?|"
                r"blood pressure|appendicitis|stillb(?:irth|orn)|miscarri\w+|nosebleed|concussion|"
                r"migraines?|asthma|insulin|dialysis|pneumonia|bronchitis|ptsd|"
                r"(?<!great )depression|bipolar|schizophreni\w*|psychiatr\w*|insomnia)\b"
            ),
            (
                r"\b(?:(?:a|an|chest|ear|kidney|bladder|lung|wound|viral) infection|"
                r"(?:broken|broke (?:my|his|her)) (?:arm|leg|wrist|hip|ribs?|ankle|jaw|nose)|"
                r"(?:needed|got|had) (?:\w+ )?stitches|emergency room|a&e|icu|on the ward|"
                r"(?:his|her|my) appendix)\b"
            ),
            # Seeing a doctor, or what one did; not "she's a nurse" or "Doctor Who".
            (
                r"\b(?:saw|see|seeing|told|tell|asked|rang|called|visited|went to|go to|took (?:me|"
                r"him|her) to|appointment with) (?:a |the |my |our |his |her )?(?:gps?|doctors?|"
                r"nurses?|midwife)\b|\b(?:gps?|doctors?|nurses?|midwife|paramedics?) (?:said|says|"
                r"told|tells|gave|prescribed|put|sent|signed|found|checked|examined)\b"
            ),
            (
                r"\b(?:gave|give|prescribed|taking|take|took|started|stopped|the) "
                r"(?:me |her |him )?"
                r"(?:medicine|medication|meds|pills|tablets|antidepressants)\b"
            ),
        ],
        "description": "Medical detail: an illness, diagnosis, hospital stay, surgery, "
        "medication, symptoms or injuries.",
        "examples": [
            "The doctors said it was cancer and I started chemotherapy.",
            "I was in the hospital for weeks after the surgery.",
        ],
    },
    {
        "name": "named-people",
        "evidence_only": True,
        "description": "A private person named by their first or full name: a relative, friend, "
        "neighbour or colleague called by name.",
        "examples": ["My sister Maria told me about it.", "My neighbour John Smith helped us."],
    },
    {
        "name": "identifying-places",
        "evidence_only": True,
        "description": "A place that could identify someone: their home town, street, "
        "workplace, school, or the named city where they or their family live.",
        "examples": [
            "I live on Elm Street in Springfield.",
            "She was in her house in Santiago, where she always lived.",
        ],
    },
]


#: Notes that found entities flag, by entity kind of the analysis.
_NOTE_EVIDENCE = {"named-people": ("person",), "identifying-places": ("place",)}
#: Capitalised words spaCy sometimes takes for a person's name that name no one in particular.
_NOT_NAMES = set(
    """mum mom dad mam mama papa mother father nan nana nanna gran granny grandma grandad
    grandpa grandmother grandfather auntie aunty uncle sister brother baby god""".split()
) | {  # the same words in the languages narrators bring with them ("my abuela")
    *"""abuela abuelo abuelita abuelito mamá papá nonna nonno oma opa babcia dziadek
    nani dadi""".split()
}


class NoteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str = Field(min_length=10)
    examples: list[str] = []
    #: Regular expressions (case-insensitive); any match flags the note.
    cues: list[str] = []
    #: Flag only on evidence (names, places, cues), not on a score: for notes that are about
    #: what is said rather than what the story is about.
    evidence_only: bool = False

    @field_validator("cues")
    @classmethod
    def _compiles(cls, v: list[str]) -> list[str]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"cue {pattern!r} is not a regular expression: {exc}") from None
        return v


def note_specs(settings: AnalyseSettings) -> list[NoteSpec]:
    raw = settings.content_notes or DEFAULT_CONTENT_NOTES
    specs = []
    for i, item in enumerate(raw):
        try:
            specs.append(NoteSpec.model_validate(item))
        except ValidationError as exc:
            lines = [f"narratives.toml: invalid analyse.content_notes[{i}]"]
            for err in exc.errors():
                lines.append(f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
            raise ConfigError("\n".join(lines)) from None
    return specs


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def cue_hits(spec: NoteSpec, text: str) -> list[str]:
    """The cue phrases of a note found in the text, as said."""
    hits: dict[str, None] = {}
    for pattern in spec.cues:
        for m in _compiled(pattern).finditer(text):
            hits.setdefault(m.group(0), None)
    return list(hits)


def note_evidence(
    spec: NoteSpec, entities: list[Any], text: str, public_terms: set[str] | frozenset[str]
) -> list[str]:
    """Names or places that support a note: the analysis's entities of the note's kind (for
    identifying places, not countries or larger regions) and, for named people, the people
    spaCy's recogniser finds (minus kin words and public names)."""
    kinds = _NOTE_EVIDENCE.get(spec.name, ())
    found = {e.text for e in entities if e.kind in kinds}
    if spec.name == "identifying-places":
        # "I came from Portugal" identifies no one; "a flat in Lisbon" might.
        found = {t for t in found if not is_broad_region(t)}
        found &= {e.text for e in entities if e.kind == "place" and _said_as_a_place(e, text)}
    if spec.name == "named-people":
        places = {e.text for e in entities if e.kind == "place"}
        found |= _recognised_people(text, frozenset(public_terms)) - places
        found = {t for t in found if not _kin_word(t)}
    return sorted(found)


#: Words before a name that make it somewhere: where one lives, works, goes or comes from.
_PLACE_WORDS = frozenset(
    """in at from to near into outside on onto round around across through towards toward via
    by opposite behind past off for up down""".split()
)
#: Words before "of" that make the name after it a place ("the town of Dunmarra").
_PLACE_NOUNS = frozenset(
    """town city village county borough parish island suburb district estate""".split()
)


def _said_as_a_place(entity: Any, text: str) -> bool:
    """Whether a found place is said as one: a known town, a name of two words or more ("the
    Royal Infirmary", "Ridley Road"), a place word before it ("in Alfama", "at Makola"), also
    past one lower-case word ("in central Alfama") or another name ("to Alfama and Belém"), or
    a place noun and "of" ("the town of Alfama"). One rare word the model calls a place with
    none of these is most often a product or a pet's name ("a box of Maltesers", "we fed
    Biscotti"): the note is about where someone lives, works or studies, and people say where
    with a preposition."""
    if is_city(entity.text) or len(entity.text.split()) > 1:
        return True
    start, end = entity.char_start, entity.char_end
    if end <= start or text[start:end] != entity.text:
        return True  # no position in this text to read the words before it by
    before = re.findall(r"[\w'’]+", text[max(0, start - 60) : start])
    low = [w.lower() for w in before]
    if low[-1:] and low[-1] in _PLACE_WORDS:
        return True
    if low[-2:-1] and low[-2] in _PLACE_WORDS and before[-1].islower():
        return True  # "in central Alfama", "to north Kellbrook"
    if low[-1:] == ["of"] and low[-2:-1] and low[-2] in _PLACE_NOUNS:
        return True
    # The second of two places: "to Alfama and Belém".
    return (
        len(low) >= 3
        and low[-1] in ("and", "or")
        and before[-2][:1].isupper()
        and low[-3] in _PLACE_WORDS
    )


@lru_cache(maxsize=4)
def _parsed(text: str) -> Any:
    """spaCy's reading of a story, once for both notes that ask for it."""
    return get_pipeline()(text)


def _kin_word(name: str) -> bool:
    """Whether a found "person" is only what a family calls its own ("Mum", "my abuela's")."""
    words = unicodedata.normalize("NFC", name).lower().split()
    return all(re.sub(r"['’]s$", "", w).strip("'’") in _NOT_NAMES for w in words)


def _recognised_people(text: str, public_terms: frozenset[str]) -> set[str]:
    people = set()
    for ent in _parsed(text).ents:
        if ent.label_ != "PERSON" or not ent.text[:1].isupper():
            continue
        words = [w.lower().strip("'’") for w in ent.text.split()]
        if all(w in _NOT_NAMES or w in public_terms for w in words):
            continue
        people.add(ent.text)
    return people
