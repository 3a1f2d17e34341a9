"""De-identification building blocks: detectors, generalizers, pseudonyms, policy, DIDs, VCs."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanda_assets.lib.errors import MissingSecretError
from spanda_assets.lib.privacy import generalize, vc
from spanda_assets.lib.privacy.consent import active_students, latest_states, validate_events
from spanda_assets.lib.privacy.did import (
    DidError,
    Wallet,
    b58decode,
    b58encode,
    did_document,
    did_from_public_key,
    public_key_bytes,
    public_key_from_did,
)
from spanda_assets.lib.privacy.policy import PolicyError, load_policy, parse_policy, policy_for
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
from spanda_assets.lib.privacy.residual import ResidualScanner
from spanda_assets.lib.privacy.scrub import Roster, find_spans, scrub

ROSTER = Roster.from_names(["Hannah Vincent", "Will Smith", "Priya Patel", "Jane Doe"])


def cats(text: str, roster: Roster | None = None) -> list[tuple[str, str]]:
    return [(s.category, text[s.start : s.end]) for s in find_spans(text, roster)]


# ----------------------------------------------------------------------------- detectors


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "mail me at jane.doe+1@student.example.edu.",
            [("EMAIL", "jane.doe+1@student.example.edu")],
        ),
        ("call (555) 123-4567 now", [("PHONE", "(555) 123-4567")]),
        ("call 555.123.4567", [("PHONE", "555.123.4567")]),
        ("call +1 555 123 4567", [("PHONE", "+1 555 123 4567")]),
        ("London office +44 20 7946 0958", [("PHONE", "+44 20 7946 0958")]),
        ("fax 5551234567 please", [("PHONE", "5551234567")]),
        ("SSN 123-45-6789", [("SSN", "123-45-6789")]),
        ("see https://docs.example.edu/a1b2c3.", [("URL", "https://docs.example.edu/a1b2c3")]),
        ("see www.example.org/notes, thanks", [("URL", "www.example.org/notes")]),
        ("from 192.168.10.4 today", [("IP", "192.168.10.4")]),
        ("from 2001:db8:85a3:0:0:8a2e:370:7334", [("IP", "2001:db8:85a3:0:0:8a2e:370:7334")]),
        ("from fe80::1 too", [("IP", "fe80::1")]),
        ("student ID S4000123 here", [("ID", "S4000123")]),
        ("account 4421-8891-22 is mine", [("ID", "account 4421-8891-22")]),
        ("due March 3rd", [("DATE", "March 3rd")]),
        ("due 3/14/2026", [("DATE", "3/14/2026")]),
        ("due 14 March 2026", [("DATE", "14 March 2026")]),
        ("due 2026-03-14", [("DATE", "2026-03-14")]),
        ("due Sept. 4, 2026", [("DATE", "Sept. 4, 2026")]),
        ("send it to 4828 Washington Avenue please", [("ADDRESS", "4828 Washington Avenue")]),
        ("zip 02139 only", [("ZIP", "02139")]),
        ("zip 02139-4307 only", [("ZIP", "02139-4307")]),
        ("my license plate 7ABC123 was towed", [("PLATE", "license plate 7ABC123")]),
        ("car ABC-1234 parked", [("PLATE", "ABC-1234")]),
        ("laptop serial number SN88A7F2Q lost", [("SERIAL", "serial number SN88A7F2Q")]),
        ("MAC 00:1A:2B:3C:4D:5E", [("SERIAL", "00:1A:2B:3C:4D:5E")]),
        ("ask Dr. Patel", [("NAME", "Dr. Patel")]),
        ("Professor Jane Okafor said", [("NAME", "Professor Jane Okafor")]),
        ("Hi, I'm Tomasz and new here", [("NAME", "Tomasz")]),
    ],
)
def test_detectors(text: str, expected: list[tuple[str, str]]) -> None:
    assert cats(text) == expected


def test_roster_names_single_and_full() -> None:
    text = "Hannah Vincent and I worked with Priya on it."
    assert cats(text, ROSTER) == [("NAME", "Hannah Vincent"), ("NAME", "Priya")]


def test_ambiguous_words_need_company() -> None:
    # "Will" alone is a verb here; "Will Smith" is a person.
    assert cats("Will the exam be online?", ROSTER) == []
    assert cats("I asked Will Smith about it", ROSTER) == [("NAME", "Will Smith")]


@pytest.mark.parametrize(
    "text",
    [
        "Quiz 1 is due in week 3, worth 20 points.",
        "The lecture starts at 10:30:15 sharp.",
        "Section 2.4.1 explains it.",
        "SSN-like 000-12-3456 is not issued.",
        "Great discussion about Newton's laws today.",
    ],
)
def test_no_false_alarms_on_ordinary_text(text: str) -> None:
    assert [c for c, _ in cats(text, ROSTER) if c != "NAME"] == []


def test_scrub_replaces_with_typed_placeholders() -> None:
    text = "Thanks Hannah Vincent! Email hv@example.com or call 555-123-4567 before 3/14/2026."
    assert scrub(text, ROSTER) == "Thanks [NAME]! Email [EMAIL] or call [PHONE] before [DATE]."
    assert scrub("", ROSTER) == "" and scrub(None) is None


# ----------------------------------------------------------------------------- property tests

_word = st.sampled_from(["the", "quiz", "is", "hard", "please", "help", "with", "week", "and"])
_identifiers = st.one_of(
    st.from_regex(
        r"[a-z]{2,8}\.[a-z]{2,8}[0-9]{0,3}@(example|school|mail)\.(edu|org|com)", fullmatch=True
    ),
    st.from_regex(r"\([2-9][0-9]{2}\) [2-9][0-9]{2}-[0-9]{4}", fullmatch=True),
    st.from_regex(r"[2-9][0-9]{2}-[2-9][0-9]{2}-[0-9]{4}", fullmatch=True),
    st.from_regex(r"[1-5][0-9]{2}-[1-9][0-9]-[1-9][0-9]{3}", fullmatch=True),
    st.from_regex(r"https://[a-z]{3,8}\.(edu|com|org)/[a-z0-9]{3,10}", fullmatch=True),
    st.from_regex(r"S[0-9]{7}", fullmatch=True),
    st.tuples(*[st.integers(1, 254)] * 4).map(lambda t: ".".join(map(str, t))),
    st.sampled_from(["Hannah Vincent", "Priya Patel", "Jane Doe"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.lists(_word, max_size=6), ident=_identifiers, after=st.lists(_word, max_size=6))
def test_scrubbing_never_leaves_an_injected_identifier(
    before: list[str], ident: str, after: list[str]
) -> None:
    text = " ".join([*before, ident, *after]) + "."
    out = scrub(text, ROSTER)
    assert out is not None and ident not in out, (text, out)


# ----------------------------------------------------------------------------- generalizers


def test_zip3_with_restricted_areas() -> None:
    out = generalize.zip3(pa.array(["02139", "03601", "02139-4307", "89301", "12", None, "abcde"]))
    assert out.to_pylist() == ["021", "000", "021", "000", None, None, None]
    assert "036" in generalize.restricted_zip3() and len(generalize.restricted_zip3()) == 17


def test_birth_year_caps_ages_over_89() -> None:
    on = dt.date(2026, 9, 1)
    births = pa.array(
        [dt.date(1937, 9, 1), dt.date(1936, 9, 1), dt.date(1936, 9, 2), dt.date(2001, 5, 5), None]
    )
    # 89 -> year kept; 90 -> "90+"; turns 90 tomorrow -> still 89
    assert generalize.birth_year(births, on).to_pylist() == ["1937", "90+", "1936", "2001", None]


def test_year_of_timestamps_and_dates() -> None:
    ts = pa.array([dt.datetime(2026, 9, 1, 8), None], pa.timestamp("us"))
    assert generalize.year(ts).to_pylist() == [2026, None]
    assert generalize.year(pa.array([dt.date(1999, 1, 1)])).to_pylist() == [1999]


# ----------------------------------------------------------------------------- pseudonyms


def test_pseudonyms_are_stable_keyed_and_namespaced() -> None:
    a = Pseudonymizer(b"secret-material-" * 2)
    b = Pseudonymizer(b"other-material-x" * 2)
    assert a.one("posts", 42) == a.one("posts", 42)
    assert a.one("posts", 42) != b.one("posts", 42)
    assert a.one("posts", 42) != a.one("results", 42)
    assert len(a.one("posts", 42)) == 35 and a.one("posts", 42).startswith("ps_")
    assert "secret" not in repr(a)
    assert a.array("x", pa.array([1, None])).to_pylist()[1] is None


def test_missing_key_is_refused_outside_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPANDA_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("SPANDA_DEMO", raising=False)
    with pytest.raises(MissingSecretError, match=r"SPANDA_PSEUDONYM_KEY is not set.*SPANDA_DEMO=1"):
        load_key()
    monkeypatch.setenv("SPANDA_PSEUDONYM_KEY", "ab" * 16)
    with pytest.raises(MissingSecretError, match=r"too short \(32 hex characters\)"):
        load_key()
    monkeypatch.setenv("SPANDA_PSEUDONYM_KEY", "correct horse battery staple" * 3)
    with pytest.raises(MissingSecretError, match="must be hexadecimal"):
        load_key()
    monkeypatch.setenv("SPANDA_PSEUDONYM_KEY", "0f" * 32)
    assert load_key() == ("0f" * 32).encode()


def test_demo_key_is_generated_once_and_private(
    monkeypatch: pytest.MonkeyPatch, spanda_home: Path
) -> None:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    first = load_key()
    assert load_key() == first
    path = spanda_home / "secrets" / "pseudonym.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


# ----------------------------------------------------------------------------- policy


def test_packaged_policy_classifies_every_domain_column() -> None:
    policies = load_policy()
    assert policies["students"].columns["ssn"].action == "drop"
    assert policies["students"].subject_column == "student_id"
    assert policies["forum_posts"].columns["body"].action == "scrub"
    assert policies["courses"].subject_column is None


def test_policy_fails_closed_on_unclassified_column() -> None:
    schema = pa.schema([("student_id", pa.int64()), ("pronouns", pa.string())])
    with pytest.raises(
        PolicyError, match=r"silver\.students: column\(s\) pronouns of bronze\.students"
    ):
        policy_for("students").check_covers(schema)
    with pytest.raises(PolicyError, match=r"bronze\.dashboard_data has no entry"):
        policy_for("dashboard_data")


def test_policy_rejects_unknown_action() -> None:
    with pytest.raises(PolicyError, match=r"t\.c has action 'blur'"):
        parse_policy({"tables": {"t": {"key": "c", "columns": {"c": {"action": "blur"}}}}})


# ----------------------------------------------------------------------------- DIDs and VCs


def test_base58_round_trip_with_leading_zeros() -> None:
    for raw in [b"", b"\0\0abc", bytes(range(40))]:
        assert b58decode(b58encode(raw)) == raw
    assert b58encode(b"\0\0\x01") == "112"


@pytest.fixture
def wallet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Wallet:
    """The demo wallet, which only demo mode opens."""
    monkeypatch.setenv("SPANDA_DEMO", "1")
    return Wallet(tmp_path / "wallet")


def test_did_key_shape_and_resolution(wallet: Wallet) -> None:
    alice = wallet.student("sourced-1")
    assert alice.did.startswith("did:key:z6Mk")
    assert Wallet(wallet.root).student("sourced-1").did == alice.did  # same wallet, same DID
    assert wallet.student("sourced-2").did != alice.did
    doc = did_document(alice.did)
    assert doc["id"] == alice.did and doc["assertionMethod"] == [f"{alice.did}#{alice.did[8:]}"]
    assert (
        public_key_from_did(alice.did).public_bytes_raw()
        == alice.private_key.public_key().public_bytes_raw()
    )
    with pytest.raises(DidError):
        public_key_from_did("did:web:example.edu")
    with pytest.raises(DidError):
        public_key_from_did("did:key:z0OIl")


ISSUER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ISSUER_DID = did_from_public_key(public_key_bytes(ISSUER.public_key()))


def _receipt(wallet: Wallet) -> dict[str, object]:
    student = wallet.student("s-1")
    doc = vc.consent_receipt(
        issuer_did=ISSUER_DID,
        subject_did=student.did,
        record={"purposes": ["research"], "event": {"state": "given"}},
        valid_from=dt.datetime(2026, 9, 1, tzinfo=dt.UTC),
    )
    return vc.sign(doc, ISSUER, ISSUER_DID)


def test_receipt_verifies_and_is_canonical(wallet: Wallet) -> None:
    signed = _receipt(wallet)
    assert signed["proof"]["cryptosuite"] == "eddsa-jcs-2022"  # type: ignore[index]
    assert vc.verify(signed).ok
    # JCS: key order and whitespace do not matter.
    reordered = json.loads(json.dumps(signed, sort_keys=True, indent=3))
    assert vc.verify(dict(reversed(list(reordered.items())))).ok


def test_tampered_receipt_fails_with_reason(wallet: Wallet) -> None:
    signed = json.loads(json.dumps(_receipt(wallet)))
    signed["credentialSubject"]["consentRecord"]["event"]["state"] = "withdrawn"
    result = vc.verify(signed)
    assert not result.ok and "changed after it was signed" in result.reason


def test_receipt_signed_by_someone_else_fails(wallet: Wallet) -> None:
    doc = {k: v for k, v in _receipt(wallet).items() if k != "proof"}
    intruder = wallet.student("intruder")
    forged = vc.sign(doc, intruder.private_key, intruder.did)
    result = vc.verify(forged)
    assert not result.ok and "not the issuer" in result.reason
    # claiming the issuer's key but signing with another one
    forged["proof"]["verificationMethod"] = ISSUER_DID + "#x"  # type: ignore[index]
    assert "signature does not match" in vc.verify(forged).reason
    assert "never signed" in vc.verify(doc).reason


# ----------------------------------------------------------------------------- consent


def test_malformed_consent_events_are_quarantined_not_read_as_consent() -> None:
    events = pa.table(
        {
            "consent_event_id": [1, 2, 3, 4, 5],
            "student_id": [10, 10, 11, 99, 12],
            "purpose": ["research", "research", "marketing", "research", "research"],
            "state": ["given", "withdrawn", "given", "given", "maybe"],
            "recorded_at": [dt.datetime(2026, 1, d) for d in (1, 2, 3, 4, 5)],
        }
    )
    valid, quarantined = validate_events(events, {10, 11, 12})
    assert valid.column("consent_event_id").to_pylist() == [1, 2]
    reasons = {q["consent_event_id"]: q["reason"] for q in quarantined}
    assert "unknown purpose 'marketing'" in reasons[3]
    assert "unknown student" in reasons[4] and "99" not in reasons[4]
    assert "unknown state 'maybe'" in reasons[5]
    states = latest_states(valid)
    assert states[(10, "research")].state == "withdrawn"
    assert active_students(states, "research") == set()


# ----------------------------------------------------------------------------- residual scan


def test_residual_scan_finds_survivors_and_reports_keys_only() -> None:
    scanner = ResidualScanner(full_names=["Hannah Vincent"], emails=["hv@example.com"])
    table = pa.table(
        {
            "post_id": ["a", "b", "c"],
            "body": ["fine [NAME]", "ask Hannah Vincent", "mail hv@example.com or 555-123-4567"],
        }
    )
    report = scanner.scan(table, "post_id")
    assert not report.passed
    assert (
        report.counts["NAME"] == 1 and report.counts["EMAIL"] == 1 and report.counts["PHONE"] == 1
    )
    assert report.examples["NAME"] == ["b"]
    assert "Hannah" not in json.dumps(report.examples)
    clean = scanner.scan(
        pa.table({"post_id": ["x"], "body": [scrub("ask Hannah Vincent", ROSTER)]}), "post_id"
    )
    assert clean.passed


def test_pseudonyms_never_look_like_identifiers() -> None:
    """An all-digit hex pseudonym once tripped the ID scan: the prefix prevents it."""
    scanner = ResidualScanner()
    p = Pseudonymizer(b"secret-material-" * 2)
    table = pa.table(
        {"k": [p.one("t", i) for i in range(2000)] + ["ps_68977590798946726808247574426845"]}
    )
    assert scanner.scan(table, "k").passed


def test_residual_scan_flags_identifying_columns() -> None:
    report = ResidualScanner().scan(pa.table({"k": ["1"], "email": ["[EMAIL]"]}), "k")
    assert not report.passed and report.forbidden_columns == ["email"]


def test_a_home_set_up_by_the_demo_keeps_its_key_without_demo_mode(
    monkeypatch: pytest.MonkeyPatch, spanda_home: Path
) -> None:
    """`spanda demo` first, then the daemon on the same SPANDA_HOME: same pseudonyms."""
    monkeypatch.setenv("SPANDA_DEMO", "1")
    demo = load_key()
    monkeypatch.delenv("SPANDA_DEMO")
    assert load_key() == demo
    monkeypatch.setenv("SPANDA_PSEUDONYM_KEY", "ab" * 32)
    assert load_key() == ("ab" * 32).encode()  # the secret store always wins
