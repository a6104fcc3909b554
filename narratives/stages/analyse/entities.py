"""Names and identifying places in a transcript: the entities anonymisation hides.

A heuristic over capitalisation and the words before a name (kinship words, titles, place
prepositions); the campaigns' own capitalised words are public and never count.
"""

from __future__ import annotations

import re
from functools import lru_cache

from narratives.core.campaigns import Campaign
from narratives.records.analysis import Entity
from narratives.records.transcript import Transcript
from narratives.stages.analyse.timing import TextWord, align_words, norm

__all__ = ["find_entities", "campaign_public_terms", "entities_in"]

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
    transcript: Transcript, *, public_terms: set[str] | frozenset[str] = frozenset()
) -> list[Entity]:
    """Names and identifying places in the transcript, with word times (a heuristic).

    A capitalised word that does not open a sentence and is not a common capitalised word is a
    name; a run of them is one name. After a kinship word or title ("my grandmother Rosa") it
    is a person; after in/from/at... a place. A sentence-opening word counts when the same word
    is a name elsewhere.
    """
    text = transcript.text
    words = align_words(transcript, text)
    return entities_in(text, words, public_terms)


@lru_cache(maxsize=8192)
def _rare_in_lowercase(word: str) -> bool:
    """Whether `word` is rare written in lower case, judged by GPT-2's byte-pair vocabulary
    (Whisper's, shipped with openai-whisper): common lowercase words are single tokens
    (" sleep", " clinic", " everyone") while most names are split (" rosa", " zoë", " mary").
    So a word that only ever opens sentences and is rare in lower case is taken for a name.
    Common names that are single tokens (" john") are missed; editors can mark them."""
    # openai-whisper is heavy to import, and only needed for sentence-opening words.
    from whisper.tokenizer import get_encoding

    if not re.fullmatch(r"[^\W\d_]+", word):
        return False
    return len(get_encoding("gpt2").encode(" " + word.lower())) > 1


def entities_in(text: str, words: list[TextWord], public_terms) -> list[Entity]:
    """The entities of `text` (aligned `words`): runs of name words, each typed by the word
    before it."""
    flags = _name_flags(text, words, public_terms)
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
        entities.append(_entity(text, words, i, j))
        i = j + 1
    # A name seen once as a person is a person everywhere.
    kinds = {part: e.kind for e in entities if e.kind != "name" for part in e.text.split()}
    for e in entities:
        if e.kind == "name" and e.text in kinds:
            e.kind = kinds[e.text]
    return entities


def _name_flags(text: str, words: list[TextWord], public_terms) -> list[bool]:
    """Whether each word is (part of) a name."""

    def initial(i: int) -> bool:
        if i == 0:
            return True
        between = text[words[i - 1].char_end - 1 : words[i].char_start]
        return bool(re.search(r"[.!?]", between))

    def capitalised(tok: str) -> bool:
        core = re.sub(r"^[^\w]+|[^\w]+$", "", tok)
        return bool(core) and core[0].isupper() and norm(core) not in _COMMON_CAPS

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
    return flags


def _entity(text: str, words: list[TextWord], i: int, j: int) -> Entity:
    """The entity spoken as words i..j, its kind judged by the word before it."""
    first, last = words[i], words[j]
    span_start = first.char_start + (len(first.text) - len(first.text.lstrip("\"'(")))
    span_end = last.char_end
    while span_end > span_start and not (text[span_end - 1].isalnum()):
        span_end -= 1
    if text[span_start:span_end].endswith(("'s", "’s")):  # "Rosa's laugh": the name is Rosa
        span_end -= 2
    prev = norm(words[i - 1].text) if i > 0 else ""
    if prev in _KIN or prev in _TITLES:
        kind = "person"
    elif prev in _PLACE_PREP:
        kind = "place"
    else:
        kind = "name"
    return Entity(
        text[span_start:span_end],
        kind,
        round(first.start, 3),
        round(last.end, 3),
        span_start,
        span_end,
    )
