"""Names of people who are not on the roster: classmates, relatives, tutors, staff elsewhere.

Capitalized words next to each other form a run ("Maika van de Noort", "Vanessa
P. Hertzog"; particles and initials stay inside). A run is a person's name when

* a title or a cue introduces it ("Dr.", "my name is", "I'm", "thanks", "hi",
  "called", "Name:"), a speech verb follows it ("..., says Iwase"), or it signs
  the post off on a line of its own; and its words are not common English words; or
* one of its words is a given name far more often than a word (words.nameness),
  and the run is not a place ("in Florence") or an organization ("Henderson Group").

Weekdays, months, course words and common nouns never start a name.
"""

from __future__ import annotations

import bisect

import regex

from spanda_assets.lib.privacy.detectors.base import Span
from spanda_assets.lib.privacy.detectors.words import (
    NAMENESS,
    common,
    common_elsewhere,
    is_given_name,
    is_structure_word,
    nameness,
    zipf,
)

_TITLE = (
    r"(?:Dr|Prof|Professor|Mr|Mrs|Ms|Miss|Mx|Dean|Coach|Sir|Madam|Frau|Herr|Mme|Mlle|M|Sr|"
    r"Sra|Srta|Dott)"
)
_PARTICLE = (
    r"(?:van|von|de|der|den|del|della|di|da|du|le|la|ten|ter|bin|binti|ibn|al|el|dos|das|do|"
    r"y|zu|af|st\.)"
)
_PARTICLES = frozenset(_PARTICLE.strip("(?:)").replace("\\.", ".").split("|"))
_WORD = r"\p{Lu}[\p{Ll}\p{Lo}\p{M}]*(?:(?:-|['’](?!(?:s|t|m|re|ve|ll|d)\b))\p{L}[\p{Ll}\p{M}]*)*"
_INITIAL = r"\p{Lu}\.?(?=\s+\p{Lu})"
_RUN = regex.compile(
    rf"(?<![\p{{L}}\p{{N}}@._'’-])(?:(?i:{_TITLE})\.?\s+)?"
    rf"{_WORD}(?:(?:\s+{_PARTICLE})*\s+(?:(?i:{_TITLE})\.\s+)?(?:{_INITIAL}|{_WORD}))*"
    r"(?![\p{L}\p{N}@])"
)
_TITLE_AT = regex.compile(rf"(?i:{_TITLE})\.?\s+")
_CUE_BEFORE = regex.compile(
    r"(?i:(?:my name is|my name's|name is|i'm|i am|this is|call me|called|named|name\s*[:?]|"
    r"hi|hello|hey|dear|thanks|thank you|thx|ty|cc|by|with|to|from|ask|asked|tell|told|"
    r"met|meet|says|said|according to|starring|featuring|assistant to|user:|contact|"
    r"emailed|email|text|texted|ping|pinged|@)[\s,:]*)$"
)
_STRONG_CUE = regex.compile(
    r"(?i:(?:my name is|my name's|name is|i'm|i am|call me|called|named|name\s*[:?]|hi|"
    r"hello|hey|dear|thanks|thank you|thx|says|said|starring|featuring|assistant to|"
    r"according to|follow up with|(?:speak|spoke|talk|talked|chat|chatted|meet|met)\s+"
    r"(?:to|with)|(?:my|our|his|her|their)\s+(?:kid|son|daughter|wife|husband|partner|"
    r"brother|sister|mother|father|mom|mum|dad|friend|classmate|roommate|flatmate|tutor|"
    r"teacher|boss|colleague|cousin|aunt|uncle|grandma|grandpa|neighbou?r|advisor|"
    r"supervisor|lab partner))[\s,:]*)$"
)
_CUE_AFTER = regex.compile(
    r"^(?:,?\s+(?:says|said|wrote|writes|asked|asks|told|replied|explained|added|who|"
    r"lives|lived|works|worked|studies|studied|shouted|is from|was born|began|spent)\b)"
)
_PLACE_BEFORE = regex.compile(r"(?i:\b(?:in|near|into|across|visit|visiting)\s+)$")
RARE_ZIPF = 2.0
_CONTRACTION = regex.compile(r"['’](?:t|ll|re|ve|d|m)\b")  # "Don't", "Won't"
_MID_SENTENCE = regex.compile(r"\p{Ll}\s+$")
# Role and origin words look like rare proper nouns: "as Fumigator", "the Greenlander".
_ROLE_SUFFIX = regex.compile(r"(?:er|or|ist|ian|ese|ish|ism|ant|ent)$")
_PLACE_BEFORE_ANY = regex.compile(
    r"(?i:\b(?:in|at|near|into|across|visit|visiting|from|to|of|on|via|for)\s+)$"
)
_POSSESSIVE = regex.compile(r"^['’]s?\s")
# Names take no article: "the Packager", "a Cinematographer" are roles.
_ARTICLE_BEFORE = regex.compile(r"(?i:\b(?:the|a|an)\s+)$")
# Names listed with an accepted name ("Morrison, Rogers and Torres") are names too.
_LISTED = regex.compile(r"^(?:\s*,\s*|\s+and\s+|\s*&\s*|\s+or\s+)$")
# What follows a run that is an organization, a place or a street, not a person.
_ORG_AFTER = regex.compile(
    r"^[ \t,]*(?:(?:Inc|Ltd|LLC|Corp|Co|Company|Group|Associates|Partners|Orchestra|University|"
    r"College|School|Bank|Foundation|Institute|Hospital|Club|Society|Agency|Investments|"
    r"Research|Consulting|Capital|Holdings|Systems|Solutions|Technologies|Software|Services|"
    r"Ventures|Industries|International|Enterprises|Studios|Records|Press|Media|Hall|"
    r"Building|Center|Centre|Library|Park|Lake|River|Street|St|Avenue|Ave|Road|Rd|Lane|"
    r"Drive|Court|Way|Place|Square|Crescent|Close|Terrace|Mews|Alley|Plaza|Bridge|Union|"
    r"Pass|Loop|Trail|Flats?|Cliffs?|Greens?|Route|Hills?|Heights|Gardens?|Grove|Parkway|"
    r"Highway|Boulevard)\b|(?:u\.|tér|út|útja|utca)?[ \t]*\d{1,5}\b)"
)
_SIGN_OFF_BEFORE = regex.compile(
    r"(?:(?:^|\n)\s*(?:[-–—~]+\s*)?|(?i:(?:thanks|cheers|best|regards|sincerely|love|"
    r"best wishes|kind regards|many thanks|thank you)[,!.]?\s*[\n-–—]\s*))$"
)


_NONSPACE = regex.compile(r"\S+")
_LOWER_INITIAL = regex.compile(r" \p{Ll}\.? ")


def _tokens(run: str) -> list[str]:
    return run.split()


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop leading words that cannot start a name ("Hi", "Monday", "Great") and trailing
    ones that cannot end one ("Kevin Monday" -> "Kevin"); a title stays."""
    run = text[start:end]
    words = list(_NONSPACE.finditer(run))
    for i, m in enumerate(words):
        word = m.group(0)
        following = words[i + 1].group(0) if i + 1 < len(words) else ""
        score = nameness(word)
        if _TITLE_AT.match(run, m.start()) or (
            score is not None and score >= NAMENESS and following and not common(following)
        ):
            start += m.start()  # "Dr. Okafor"; "Jan Jílek", "May Okafor": a given name
            break
        if is_structure_word(word) or not _name_word(word):
            continue
        start += m.start()
        break
    else:
        return start, start
    while end > start:
        parts = text[start:end].rsplit(maxsplit=1)
        last = parts[-1]
        before = parts[0].split()[-1] if len(parts) > 1 else ""
        if not is_structure_word(last) and (_name_word(last) or _family_name_after(before)):
            break
        end = start + len(text[start:end][: -len(last)].rstrip())
    return start, end


_TITLES = frozenset(t.lower() for t in _TITLE.strip("(?:)").split("|"))


def _family_name_after(word: str) -> bool:
    """A capitalized word after a title or a given name is a family name, even one that
    is also a common word: "Dr. Brown", "Emily Brown", "Mohammed Khan"."""
    if word.rstrip(".").lower() in _TITLES:
        return True
    score = nameness(word)
    return score is not None and score >= NAMENESS


def _name_word(word: str) -> bool:
    """Rare as a word, a given name, or a family name that is also a given name somewhere
    ("Zhang") or a particle ("De Luca")."""
    if not common(word) or word.lower() in _PARTICLES:
        return True
    score = nameness(word)
    return score is not None and score > -1.0 and not is_structure_word(word)


def _accept(text: str, start: int, end: int, has_title: bool) -> bool:
    words = [w.rstrip(".") for w in _tokens(text[start:end])]
    words = [w for w in words if len(w) > 1 and w[0].isupper()]
    if not words or _ORG_AFTER.match(text[end : end + 20]) or _CONTRACTION.match(text, end):
        return False
    if has_title:
        return True
    left = text[max(0, start - 30) : start]
    if _ARTICLE_BEFORE.search(left) and not any(is_given_name(w) for w in words):
        return False
    rare = all(
        _name_word(w) or (i > 0 and _family_name_after(words[i - 1])) for i, w in enumerate(words)
    )
    if rare and (
        _STRONG_CUE.search(left)
        or _CUE_AFTER.match(text[end : end + 12])
        or (_POSSESSIVE.match(text[end : end + 3]) and (len(words) > 1 or not common(words[0])))
        or (text[end : end + 1] == ":" and (start == 0 or text[start - 1] == "\n"))
        or (_SIGN_OFF_BEFORE.search(left) and text[end : end + 1] in ("", "\n") and len(words) <= 3)
    ):
        return True
    if not any(is_given_name(w) for w in words):
        # A rare proper noun mid-sentence, not after a place preposition: more often a
        # person than a place in what students write ("Usamov and Bowers were ...").
        return (
            all(
                zipf(w) < RARE_ZIPF and not _ROLE_SUFFIX.search(w) and not common_elsewhere(w)
                for w in words
            )
            and _MID_SENTENCE.search(left) is not None
            and _PLACE_BEFORE_ANY.search(left) is None
        )
    if _PLACE_BEFORE.search(left) and len(words) == 1:
        return False
    return rare or _CUE_BEFORE.search(left) is not None


def name_spans(text: str) -> list[Span]:
    found: list[Span] = []
    rejected: list[tuple[int, int]] = []
    for m in _RUN.finditer(text):
        start, end = _trim(text, m.start(), m.end())
        has_title = _TITLE_AT.match(text, start, end) is not None
        if end <= start:
            continue
        if _accept(text, start, end, has_title):
            found.append(Span("NAME", start, end))
        else:
            rejected.append((start, end))
    found += _listed(text, found, rejected)
    if _lower_case(text):
        found += lowercase_names(text, found)
    else:
        found += cued_lowercase_names(text, found)
    return sorted(found, key=lambda s: s.start)


def _listed(text: str, found: list[Span], rejected: list[tuple[int, int]]) -> list[Span]:
    """Rare capitalized runs listed beside an accepted name, in both directions.

    Sweeps left to right and right to left, each run looking only at its nearest
    accepted neighbour, so a long pasted list costs n log n, not n cubed.
    """
    candidates = sorted(
        (start, end)
        for start, end in rejected
        if all(_name_word(w) and not is_structure_word(w) for w in _tokens(text[start:end]))
    )
    taken = sorted((n.start, n.end) for n in found)
    out: list[Span] = []
    added = set()

    def beside(start: int, end: int) -> bool:
        i = bisect.bisect_right(taken, (start, end))
        before = taken[i - 1] if i else None
        after = taken[i] if i < len(taken) else None
        return bool(
            (before and 0 <= start - before[1] <= _GAP and _LISTED.match(text[before[1] : start]))
            or (after and 0 <= after[0] - end <= _GAP and _LISTED.match(text[end : after[0]]))
        )

    changed = True
    while changed:
        changed = False
        for run in (*candidates, *reversed(candidates)):
            if run not in added and beside(*run):
                added.add(run)
                bisect.insort(taken, run)
                out.append(Span("NAME", *run))
                changed = True
    return sorted(out, key=lambda s: s.start)


_GAP = 12  # the longest separator a list of names uses (", ", " and ", " or ")


_LOWER_WORD = regex.compile(
    r"(?<![\p{L}\p{N}@._'’-])\p{Ll}[\p{Ll}\p{M}]+(?:-\p{Ll}+)?(?![\p{L}'’@.]\p{L})"
)
# In lower case only an explicit introduction cues a name ("i am" also introduces
# "i am cambodian").
_LOWER_CUE = regex.compile(r"(?i:(?:my name is|my name's|name is|name\s*[:?]|call me)[\s,:]*)$")
# In lower-case text only a word that is a frequent given name and rare as a word counts.
LOWER_NAMENESS = 1.5


_UPPER = regex.compile(r"\p{Lu}\p{Ll}")
_LOWER_CUE_ANYWHERE = regex.compile(r"(?i:name|call me)")


def _lower_case(text: str) -> bool:
    """Written in lower case (no capitalized word), or introducing someone by name."""
    return _UPPER.search(text) is None or _LOWER_CUE_ANYWHERE.search(text) is not None


def lowercase_names(text: str, taken: list[Span]) -> list[Span]:
    """Names written in lower case ("follow up with olga krylova", "my name is borna"):
    after a cue, any rare word; elsewhere a frequent given name that is rarely a word.
    An initial and a rare word after it (the family name) join it."""
    out: list[Span] = []
    words = list(_LOWER_WORD.finditer(text))
    i = 0
    while i < len(words):
        m = words[i]
        word = m.group(0)
        score = nameness(word)
        name_like = score is not None and score >= LOWER_NAMENESS
        cued = (
            not name_like
            and not common(word)
            and _LOWER_CUE.search(text[max(0, m.start() - 30) : m.start()]) is not None
        )
        if is_structure_word(word) or not (cued or name_like):
            i += 1
            continue
        end = m.end()
        while i + 1 < len(words):
            nxt = words[i + 1]
            gap = text[end : nxt.start()]
            initial = _LOWER_INITIAL.fullmatch(gap) is not None
            if not (gap == " " or initial) or zipf(nxt.group(0)) >= 2.5:
                break
            if is_structure_word(nxt.group(0)):
                break
            end = nxt.end()
            i += 1
        if not any(s.start < end and m.start() < s.end for s in taken):
            out.append(Span("NAME", m.start(), end))
        i += 1
    return out


# After a strong cue a less certain given name is enough ("thanks to priya", "my brother
# jake"); after a weak one ("with", "ask") only a clear one ("kevin", not "grace").
CUED_LOWER_NAMENESS = 1.0
_THANKS_TO = regex.compile(r"(?i:(?:thanks|thank you|thx|shout\s*out|props|kudos)\s+to\s+)$")


def cued_lowercase_names(text: str, taken: list[Span]) -> list[Span]:
    """Given names typed in lower case inside an otherwise capitalized post ("worked with
    kevin and sarah", "thanks to priya"): only a frequent given name that is rarely a
    word, and only after a person cue or listed after one just found."""
    out: list[Span] = []
    last_end = -1
    for m in _LOWER_WORD.finditer(text):
        word = m.group(0)
        score = nameness(word)
        if score is None or score < CUED_LOWER_NAMENESS or is_structure_word(word):
            continue
        left = text[max(0, m.start() - 30) : m.start()]
        strong = _STRONG_CUE.search(left) or _THANKS_TO.search(left)
        listed = last_end >= 0 and _LISTED.match(text[last_end : m.start()]) is not None
        weak = listed or _CUE_BEFORE.search(left)
        if not (strong or (weak and score >= LOWER_NAMENESS)):
            continue
        if any(s.start < m.end() and m.start() < s.end for s in taken):
            continue
        out.append(Span("NAME", m.start(), m.end()))
        last_end = m.end()
    return out
