"""Street addresses and postal codes in running text, in more than the US format.

Anchors are the parts of an address that have a shape:

* number first, then a street name and an English street kind ("4828 Washington Avenue");
* a street kind first, then the name and the number ("Rue de Piétrain 371", "Via dei
  Fiorentini 17", "ul. Narewska 94"), or a number before it ("12 rue de la Paix");
* a compound street name and its number ("Koskikatu 25", "Parijsstraat 8",
  "Villacher Strasse 89", "Rákóczi út 13");
* a house number, an uncommon capitalized name and a number ("5049 Harjukuja 54");
* apartments, suites and flats, post office boxes, military addresses.

Anchors a few characters apart are one address. `usaddress` (a CRF trained on
addresses) then labels what follows an anchor, and the span grows over the
unit, locality, state and postal code it recognizes, so "590 Edington Drive,
Toronto, ON" loses its locality too. `pyap` finds whole addresses itself but
knows three countries' formats, and missed almost all of a European test set.
"""

from __future__ import annotations

import regex
import usaddress

from spanda_assets.lib.privacy.detectors.base import Span, before
from spanda_assets.lib.privacy.detectors.words import common, is_structure_word

_EN_KIND = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Court|Ct|Boulevard|Blvd|Way|Place|Pl|"
    r"Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Close|Crescent|Cres|Square|Sq|Row|"
    r"Trail|Trl|Greens?|Gardens?|Grove|Mews|Walk|Alley|Loop|Plaza|Pike|Squares|Route|"
    r"Str|str)"
)
_LEAD_KIND = (
    r"(?:rue|avenue|av\.|avda\.|boulevard|bd\.?|chemin|allée|impasse|quai|place|via|viale|"
    r"vicolo|piazza|corso|largo|strada|calle|avenida|paseo|plaza|carrer|passeig|rua|"
    r"travessa|ul\.|ulica|aleja|al\.|str\.|c/)"
)
_SUFFIX = (
    r"(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|damm|ufer|vej|vei|veien|vegen|gade|"
    r"gata|gatan|vägen|väg|katu|tie|kuja|polku|kaari|laan|straat|plein|gracht|kade|steeg|"
    r"dreef|singel|utca|út|tér|ulica|cesta)"
)
# The same as separate words after a name ("Erzsébet tér 19", "Kálmán Imre u. 12",
# "Stensås terrasse 38", "Villacher Strasse 89").
_KIND_WORD = (
    r"(?:straße|strasse|str\.|weg|gasse|platz|allee|ring|vej|gade|gata|vägen|tie|laan|straat|"
    r"baan|wei|utca|út|útja|tér|u\.|kapu|körút|sor|köz|krt\.|terrasse|cesta|ulica)"
)
# What introduces an address in a sentence; the address is the words up to a number.
_ADDRESS_CUE = (
    r"(?:lives?\s+(?:on|at)|located\s+at|address(?:\s+is|:)|(?:sent|send\s+\w+|return(?:ed)?|"
    r"mail(?:ed)?|ship(?:ped)?|deliver(?:ed)?|moved)\s+to|drops?\s+(?:you\s+|me\s+)?off\s+at|"
    r"corner\s+of|enter\s+on|meet\s+(?:me|us)\s+at|stop\s+at)"
)
_UNIT_WORD = r"(?i:apt|apartment|suite|ste|flat|unit|box)\b"
_CAP = r"\p{Lu}[\p{L}'’.-]*"
_NUM = r"\d{1,5}(?:\s?[A-Za-z](?![\p{L}]))?"

_ANCHORS = regex.compile(
    rf"(?P<en>\b\d{{1,6}}[A-Za-z]?,?\s+(?:[NSEW]\.?\s+)?(?:(?:{_CAP}|\d+(?:st|nd|rd|th))\s+){{1,4}}"
    rf"{_EN_KIND}\b\.?)"
    rf"|(?P<lead>(?i:\b\d{{1,5}}(?:\s?(?:bis|ter))?,?\s+)?(?i:\b{_LEAD_KIND})\s+"
    rf"(?:[\p{{L}}'’.-]+\s+){{0,5}}?{_NUM}\b)"
    rf"|(?P<fr>\b\d{{1,5}}(?:\s?(?:bis|ter))?,?\s+(?i:{_LEAD_KIND})"
    rf"(?:\s+(?!(?i:and|or|but|in|on|at|to|for|with|street|st)\b)[\p{{L}}'’-]+){{1,4}})"
    rf"|(?P<kindword>(?:\b{_CAP}\s+){{1,3}}(?i:{_KIND_WORD})\s+{_NUM}\b\.?)"
    rf"|(?P<numbered>(?:\b{_CAP}\s+){{1,3}}{_NUM}\.?\s+(?i:street|st\b\.?))"
    rf"|(?i:\b{_ADDRESS_CUE}\s+)(?P<cued>(?:the\s+corner\s+of\s+)?(?:\d{{1,6}}\s+)?"
    rf"(?:(?!(?i:on|in|at|by|for|and|the|to|from|before|after|since|until)\b)"
    rf"[\p{{L}}'’./-]+\s+){{1,5}}?\d{{1,5}}\b\.?)"
    rf"|(?P<generic>\b\d{{1,6}}\s+(?!{_UNIT_WORD})(?P<words>{_CAP}(?:\s+{_CAP}){{0,3}})\s+\d{{1,5}}\b)"
    r"|(?P<unit>(?i:\b(?:apt|apartment|suite|ste|flat)\b\.?\s*#?\s*\d+[A-Za-z]?\b))"
    r"|(?P<box>(?i:\bp\.?\s?o\.?\s*box\s+\d+|\b(?:psc|cmr|unit)\s+\d+,?\s+box\s+\d+"
    r"|\b(?:apo|fpo|dpo)\s+(?:aa|ae|ap)\s+\d{5}\b)|\bUSN?S\s+\p{Lu}\p{L}+)"
)
# A word and a number: a street when the word ends like one ("Koskikatu 25"), checked in
# Python (as one alternative above, the suffixes made the whole automaton three times slower).
_WORD_NUMBER = regex.compile(rf"(?:\b{_CAP}\s+)?\b(?P<word>\p{{L}}[\p{{L}}-]*)\s+{_NUM}\b")
_SUFFIXES = tuple(_SUFFIX.strip("(?:)").replace("\\.", ".").split("|"))
_DIGIT = regex.compile(r"\d")
# Postal codes: after a cue ("zip code", "PLZ"), in the UK's and Canada's shapes, or a
# number closing a line after a place ("Costamezzana 43015", "Aalborg NO 9100").
_POSTAL = regex.compile(
    r"(?P<cue>(?i:\b(?:zip|zip\s*code|postal\s*code|post\s*code|postcode|plz|cp)\b\s*"
    r"(?:is|:|#)?\s*)(?P<code>[A-Z0-9]{2,5}(?:[ -][A-Z0-9]{2,4})?)\b)"
    r"|(?P<uk>\b[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b|\b[A-Z]\d[A-Z]\s?\d[A-Z]\d\b)"
    r"|(?P<placed>(?P<place>\b\p{Lu}[\p{L}]+|\b[A-Z]{2}\b|\bnan\b)[ ,]*\n?[ \t>]*"
    r"(?P<pcode>\d{3,5}(?:[ -]\d{2,4})?)(?=\s*$|\s*[\n.,;!?)]))"
    r"|(?P<inplace>\bin\s+(?P<place2>\p{Lu}[\p{L}]+(?:\s+(?:(?:de|da|do|del|di|la|le|am|an|sur|nad)\s+)?\p{Lu}[\p{L}]+){0,3})\s+"
    r"(?P<pcode2>\d{3,5}(?:[ -]\d{2,4})?|\d{2}-\d{3})\b)",
    regex.MULTILINE,
)
# What every postal code above needs: a digit, or a cue word (same engine, same case
# folding); a post with neither, two in five, skips the automaton.
_POSTAL_NEED = regex.compile(r"\d|(?i:zip|post|plz|cp)")
_TAIL_LABELS = frozenset(
    {
        "OccupancyType",
        "OccupancyIdentifier",
        "SubaddressType",
        "SubaddressIdentifier",
        "PlaceName",
        "StateName",
        "ZipCode",
        "CountryName",
        "USPSBoxType",
        "USPSBoxID",
    }
)
_TAIL = regex.compile(r"[^\n]{0,160}(?:\n[^\n]{1,160}){0,4}")  # the line and four more, capped
_GAP = regex.compile(r"[\s,>;]*")
_LEAD_NUMBER = regex.compile(r"(?<![\p{L}\p{N}])\d{1,6}[ \t]+$")
# A line (or comma-separated part) of an address block after the street: a locality,
# a state or county code, a country, a postal code ("Pärnu", ", ON", "Estonia 35018").
_LOCALITY = regex.compile(
    r"(?:[ \t]*(?:\n[ \t>]*|,[ \t]*)(?:\n[ \t>]*)?)"
    r"(?!(?i:mobile|phone|tel|fax|desk|office|e-?mail|website|cell)\b)"
    r"(?:(?:\p{Lu}[\p{L}().'’-]*|nan|[A-Z]{2})"
    r"(?:[ \t]+(?:\p{Lu}[\p{L}().'’-]*|de|del|la|nad|am|an|sur|upon|on))*"
    r"(?:[ \t]+(?:\d{3,6}(?:[ -]\d{2,4})?|\d{2}-\d{3}))?|\d{3,6}(?:[ -]\d{2,4})?|\d{2}-\d{3})"
    r"(?=[ \t]*(?:[\n,.?!]|$))"
)

_SAME_LINE = regex.compile(
    r"[ \t]+(?P<words>(?:\p{Lu}[\p{L}().'’-]*)(?:[ \t]+(?:\p{Lu}[\p{L}().'’-]*|nan)){0,3})"
    r"(?:[ \t]+\d{3,6}(?:[ -]\d{2,4})?)?(?=[ \t]*(?:\n|$))"
)


def _generic_ok(words: str) -> bool:
    # "5049 Harjukuja 54", not "3 Section 4" or "2 Python 3"
    tokens = words.split()
    return not any(is_structure_word(t) for t in tokens) and any(not common(t) for t in tokens)


def _anchors(text: str) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    if not _DIGIT.search(text):
        return found  # every anchor but a ship's name has a number
    for m in _WORD_NUMBER.finditer(text):
        word = m.group("word")
        if len(word) > 4 and word.lower().endswith(_SUFFIXES) and not common(word):
            found.append((m.start(), m.end()))
    for m in _ANCHORS.finditer(text):
        if m.group("generic") is not None and not _generic_ok(m.group("words")):
            continue
        start = m.start("cued") if m.group("cued") is not None else m.start()
        # "975 3968 Bay Street": a second number before the house number belongs to it
        lead = _LEAD_NUMBER.search(text, max(0, start - 8), start)
        found.append((lead.start() if lead else start, m.end()))
    return found


def _extend(text: str, end: int) -> int:
    """Grow an address over the unit, locality, state and postal code after it; a
    postal code ends it."""
    tail = _TAIL.match(text, end)
    if tail is None or not tail.group(0).strip():
        return end
    chunk = tail.group(0)
    try:
        parsed = usaddress.parse(chunk)
    except Exception:  # usaddress raises on odd input; the anchor alone stands
        return end
    pos, last, place_seen = 0, end, False
    for token, label in parsed:
        word = token.strip(" ,\n")
        at = chunk.find(word, pos)
        if at < 0 or word[:1].islower() or is_structure_word(word):
            break  # usaddress calls "please" and "Thanks" places
        pos = at + len(word)
        postal = label == "ZipCode" or (label == "AddressNumber" and place_seen)
        if (label not in _TAIL_LABELS and not postal) or sum(c.isdigit() for c in word) > 6:
            break
        place_seen = place_seen or label in ("PlaceName", "StateName", "CountryName")
        last = end + pos
        if postal:
            break
    return last


def address_spans(text: str) -> list[Span]:
    anchors = _anchors(text)
    spans: list[Span] = []
    for start, end in sorted(anchors):
        joined = spans and (start < spans[-1].end or _GAP.fullmatch(text, spans[-1].end, start))
        if joined:
            spans[-1] = Span("ADDRESS", spans[-1].start, max(end, spans[-1].end))
        else:
            spans.append(Span("ADDRESS", start, end))
    out: list[Span] = []
    for s in spans:
        end = _localities(text, _same_line_locality(text, _extend(text, s.end)))
        while end > s.start and text[end - 1] in ".,;" and text[end - 2].isdigit():
            end -= 1  # "TX 78765." ends the sentence, not the address
        out.append(Span("ADDRESS", s.start, end))
    return out


def _same_line_locality(text: str, end: int) -> int:
    """Grow an address over capitalized words that close its line ("Suite 274 Ljubljana",
    "Apt. 050 Coalville South Africa"): a place written after the street without a comma.
    Mid-line words are left alone, as are words that structure a sentence."""
    m = _SAME_LINE.match(text, end)
    words = m.group("words").split() if m is not None else []
    if m is None or common(words[0]) or any(is_structure_word(w) for w in words):
        return end  # "221 Baker Street Tomorrow Morning": words, not a town (rare) first
    return m.end()


def _localities(text: str, end: int, lines: int = 4) -> int:
    """Grow an address block over the locality lines that follow it."""
    for _ in range(lines):
        m = _LOCALITY.match(text, end)
        if m is None:
            break
        end = m.end()
    return end


def postal_spans(text: str) -> list[Span]:
    found: list[Span] = []
    if not _POSTAL_NEED.search(text):
        return found
    for m in _POSTAL.finditer(text):
        if m.group("cue") is not None:
            found.append(Span("ZIP", m.start("code"), m.end("code")))
        elif m.group("uk") is not None:
            found.append(Span("ZIP", m.start(), m.end()))
        elif m.group("placed") is not None and _place_ok(text, m, "place", "pcode"):
            found.append(Span("ZIP", m.start("pcode"), m.end("pcode")))
        elif m.group("inplace") is not None and _place_ok(text, m, "place2", "pcode2"):
            found.append(Span("ZIP", m.start("pcode2"), m.end("pcode2")))
    return found


_TOWN_BEFORE = regex.compile(r"(\p{Lu}[\p{L}'’.-]+)[ \t]*,?[ \t]*$")


def _place_ok(text: str, m: regex.Match[str], place_group: str, code_group: str) -> bool:
    place = m.group(place_group)
    code = m.group(code_group)
    if "version" in before(text, m.start(), 20):
        return False
    digits = len(code.replace(" ", "").replace("-", ""))
    if place == "nan":
        return digits >= 4
    if place.isupper():
        if len(place) == 2:
            # A state or country code after its place, words among them: "Aalborg NO
            # 9100", "Indianapolis, IN 46204". Alone, it is a course: "see CS 4501".
            town = _TOWN_BEFORE.search(text, 0, m.start(place_group))
            return digits >= 4 and town is not None and not common(town[1])
        # A town in capitals after "in" ("in ARENDAL 4844"), not a room ("in ROOM 2041")
        return place_group == "place2" and not any(common(w) for w in place.split())
    if any(is_structure_word(w) for w in place.split()):
        return False
    return not any(common(w) for w in place.split() if w[0].isupper())
