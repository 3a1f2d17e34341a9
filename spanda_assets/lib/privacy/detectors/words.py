"""What a capitalized word is likely to be: a common word, a given name, or a word of
the course forum itself.

* How common a word is: `wordfreq`'s English frequencies (Zipf scale: 7 is "the",
  3 is once per million words).
* How often it is a given name: counts from name-gender data sets
  (data/given_names.tsv.gz, see data/README.md).
* Their difference, `nameness`, separates "Kevin" (a name far more often than a
  word) from "Will", "May" and "Hope" (words far more often than names).

Weekdays, months, course words and forum words are never names, whatever the lists say.
"""

from __future__ import annotations

import gzip
import math
import unicodedata
from functools import cache, lru_cache
from pathlib import Path

import wordfreq

_DATA = Path(__file__).parent / "data" / "given_names.tsv.gz"
# A word this common in English is a word, unless it is also a frequent name.
COMMON_ZIPF = 3.5
# log10(name count) - zipf: above this a capitalized word is taken for a name.
NAMENESS = 0.3

STRUCTURE_WORDS = frozenset(
    (  # noqa: SIM905 - a word list reads best as words
        # weekdays and months
        "monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur "
        "thurs fri sat sun january february march april may june july august september "
        "october november december jan feb mar apr jun jul aug sep sept oct nov dec "
        # course and forum words
        "quiz exam midterm final finals lab labs lecture lectures tutorial seminar module unit "
        "chapter section week homework assignment assignments project report essay thesis "
        "syllabus course class grade grades rubric problem question exercise part step task "
        "page slide slides notes reading test tests room office hours term semester level "
        "version day year ta tutor professor instructor teacher student students dean "
        "calculus algebra geometry biology chemistry physics statistics economics history "
        "english french spanish german latin math maths science python java sql excel canvas "
        "moodle zoom teams discord piazza github google windows linux mac iphone "
        # greetings, sign-offs and sentence openers
        "hi hello hey dear thanks thank cheers regards best greetings sorry please yes no ok "
        "okay anyone everyone guys folks all team "
        "grüße gruß danke hallo merci bonjour salut cordialement gracias hola saludos grazie "
        "ciao obrigado namaste "
        # form labels
        "name e-mail email website phone mobile fax desk address iban card zip"
    ).split()
)


def fold(word: str) -> str:
    """Lower-case ASCII form, as the name list writes names ("Ján" -> "jan")."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    out = "".join(c for c in decomposed if not unicodedata.combining(c))
    return out.translate(_FOLD)


_FOLD = str.maketrans({"ł": "l", "ø": "o", "æ": "ae", "ß": "ss", "đ": "d", "ð": "d", "þ": "th"})


@cache
def _frequencies() -> dict[str, float]:
    return wordfreq.get_frequency_dict("en")


@cache
def _given_names() -> dict[str, float]:
    """Folded given name -> log10 of its count."""
    names: dict[str, float] = {}
    with gzip.open(_DATA, "rt", encoding="utf-8") as f:
        for line in f:
            name, count = line.rstrip("\n").split("\t")
            names[name] = math.log10(int(count) + 1)
    return names


# Languages whose common words students also write in; their nouns are capitalized
# (German) or look like rare English proper nouns ("Klausur", "Adresse").
OTHER_LANGUAGES = ("de", "fr", "es", "it", "nl", "pt")


@cache
def _other_frequencies() -> tuple[dict[str, float], ...]:
    return tuple(wordfreq.get_frequency_dict(lang, wordlist="small") for lang in OTHER_LANGUAGES)


@lru_cache(maxsize=200_000)
def common_elsewhere(word: str) -> bool:
    """A common word in one of OTHER_LANGUAGES."""
    lower = word.lower()
    threshold = 10 ** (COMMON_ZIPF - 9)
    return any(f.get(lower, 0.0) >= threshold for f in _other_frequencies())


@lru_cache(maxsize=200_000)
def zipf(word: str) -> float:
    f = _frequencies().get(word.lower())
    return math.log10(f) + 9 if f else 0.0


def common(word: str) -> bool:
    """A common English word ("Section", "Great"), not a rare token ("Harjukuja")."""
    return zipf(word) >= COMMON_ZIPF


def is_structure_word(word: str) -> bool:
    return word.lower().rstrip(".") in STRUCTURE_WORDS


@lru_cache(maxsize=200_000)
def nameness(word: str) -> float | None:
    """How much more often `word` is a given name than a word; None if never a name."""
    count = _given_names().get(fold(word))
    if count is None:
        return None
    return count - zipf(word)


def is_given_name(word: str) -> bool:
    if len(word) < 2 or is_structure_word(word):
        return False
    score = nameness(word)
    return score is not None and score >= NAMENESS
