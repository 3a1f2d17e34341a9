"""The scrubber's detectors, one module per kind of identifier (lib/privacy/scrub.py runs them).

patterns   shaped identifiers in one RE2 pass (emails, URLs, IPs, SSNs, dates, ...)
finance    IBANs (schwifty) and payment cards (Luhn, python-stdnum)
phones     phone and fax numbers (phonenumbers, libphonenumber's matcher)
addresses  street addresses (anchors, then usaddress) and postal codes
names      people's names beyond the roster (given-name counts, wordfreq, cues)
roster     the names the institution knows
words      word lists behind addresses and names
ner        optional: Presidio's analyzer with a spaCy model (SPANDA_NER=presidio)
"""
