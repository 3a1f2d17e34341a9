"""Trust in consent receipts: the issuer, the subject, revocation, and the keys behind them.

Exit codes come from the real `spanda consent verify` (Click's runner) on a
demo platform seeded once for the module, with bronze, the subject registry and
the revocation list materialized through Dagster. Each test works on its own
student, so their receipts and withdrawals do not meet.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spanda_assets import settings
from spanda_assets.cli import main
from spanda_assets.definitions import defs
from spanda_assets.lib.errors import ConfigError, MissingSecretError
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.privacy import status, vc
from spanda_assets.lib.privacy.consent import load_consent
from spanda_assets.lib.privacy.did import (
    DemoOnlyError,
    Wallet,
    did_from_public_key,
    public_key_bytes,
)
from spanda_assets.lib.privacy.institution import institution_did, keygen, load_signer
from spanda_assets.lib.privacy.receipts import status_list
from spanda_assets.lib.privacy.subjects import SUBJECTS, is_registered, subject_keys
from spanda_assets.lib.privacy.trust import Verdict, check_receipt
from spanda_assets.lib.seed import SeedSizes, seed

PLATFORM = [
    "bronze/students",
    "bronze/consent_events",
    "bronze/data_subjects",
    "silver/consent_status_lists",
]


def materialize(keys: list[str]) -> dg.ExecuteInProcessResult:
    job = defs().resolve_job_def("materialize_platform")
    with dg.instance_for_test() as instance:
        return job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey.from_user_string(k) for k in keys],
            raise_on_error=False,
        )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("platform")
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("SPANDA_") or key == "DAGSTER_HOME":
                mp.delenv(key)
        mp.setenv("SPANDA_HOME", str(home))
        mp.setenv("SPANDA_DEMO", "1")
        seed(source_url(home), SeedSizes.preset("tiny"), seed=7, ground_truth=home / "gt")
        result = materialize(PLATFORM)
        assert result.success
    yield home


@pytest.fixture
def demo(platform: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPANDA_HOME", str(platform))
    monkeypatch.setenv("SPANDA_DEMO", "1")
    return platform


def source_url(home: Path) -> str:
    return f"sqlite:///{home / 'operational.db'}"


def consenting(home: Path) -> list[int]:
    """Students whose latest research consent is `given`, read from the source itself."""
    con = sqlite3.connect(home / "operational.db")
    rows = con.execute(
        'SELECT StudentID, State FROM "ConsentEvents" WHERE Purpose = ? '
        "ORDER BY RecordedAt, ConsentEventID",
        ("research",),
    ).fetchall()
    con.close()
    latest = dict(rows)
    return sorted(s for s, state in latest.items() if state == "given")


def add_consent_event(home: Path, event_id: int, student: int, state: str, day: int) -> None:
    con = sqlite3.connect(home / "operational.db")
    at = f"2027-01-{day:02d} 00:00:00.000000"
    con.execute(
        'INSERT INTO "ConsentEvents" VALUES (?, ?, ?, ?, ?, ?, ?)',
        (event_id, student, "research", state, at, "web_form", "v2.0"),
    )
    con.commit()
    con.close()


def issue(student: int, out: Path) -> dict[str, Any]:
    issued = CliRunner().invoke(main, ["consent", "issue", str(student), "--out", str(out)])
    assert issued.exit_code == 0, issued.output
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def verify(document: dict[str, Any], path: Path) -> Result:
    path.write_text(json.dumps(document))
    return CliRunner().invoke(main, ["consent", "verify", str(path)])


def fresh_identity() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, did_from_public_key(public_key_bytes(key.public_key()))


def unsigned(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "proof"}


# ----------------------------------------------------------------------------- verify


def test_a_receipt_the_institution_issued_is_valid(demo: Path, tmp_path: Path) -> None:
    receipt = issue(consenting(demo)[0], tmp_path / "r.json")
    entry = receipt["credentialStatus"]
    assert entry["type"] == "BitstringStatusListEntry"
    assert entry["statusPurpose"] == "revocation"
    assert entry["statusListIndex"].isdigit()
    assert entry["statusListCredential"] == settings.status_list_url()
    ok = verify(receipt, tmp_path / "r.json")
    assert ok.exit_code == 0, ok.output
    assert "valid: signed by the issuer" in ok.output and "not revoked" in ok.output


def test_a_receipt_signed_by_a_fresh_did_key_is_rejected(demo: Path, tmp_path: Path) -> None:
    genuine = issue(consenting(demo)[1], tmp_path / "r.json")
    key, did = fresh_identity()
    # a self-consistent forgery: issuer and signer are the forger's own did:key
    forged = vc.sign({**unsigned(genuine), "issuer": did}, key, did)
    assert vc.verify(forged).ok  # integrity alone would accept it
    out = verify(forged, tmp_path / "forged.json")
    assert out.exit_code == Verdict.WRONG_ISSUER == 3
    assert "wrong issuer" in out.output and "not by the institution" in out.output
    # the institution named as issuer, the forger's key in the proof
    claimed = vc.sign(unsigned(genuine), key, did)
    out = verify(claimed, tmp_path / "claimed.json")
    assert out.exit_code == Verdict.WRONG_ISSUER and "not the issuer" in out.output


def test_a_tampered_receipt_is_rejected(demo: Path, tmp_path: Path) -> None:
    genuine = issue(consenting(demo)[2], tmp_path / "r.json")
    changed = json.loads(json.dumps(genuine))
    changed["credentialSubject"]["consentRecord"]["processing"]["purposes"] = ["marketing"]
    out = verify(changed, tmp_path / "changed.json")
    assert out.exit_code == Verdict.TAMPERED == 1
    assert "tampered" in out.output and "changed after it was signed" in out.output
    # the status entry is signed too: pointing it at another bit is tampering
    moved = json.loads(json.dumps(genuine))
    moved["credentialStatus"]["statusListIndex"] = "0"
    assert verify(moved, tmp_path / "moved.json").exit_code == Verdict.TAMPERED


def test_a_receipt_about_an_unknown_subject_is_rejected(demo: Path, tmp_path: Path) -> None:
    signer = load_signer()
    _, stranger = fresh_identity()
    receipt = vc.sign(
        vc.consent_receipt(
            issuer_did=signer.did,
            subject_did=stranger,
            record={"purposes": ["research"], "event": {"state": "given"}},
            valid_from=dt.datetime.now(dt.UTC),
            status=status.entry(settings.status_list_url(), 7),
        ),
        signer.key,
        signer.did,
    )
    out = verify(receipt, tmp_path / "stranger.json")
    assert out.exit_code == Verdict.UNKNOWN_SUBJECT == 4
    assert "not a registered data subject" in out.output


def test_a_receipt_for_consent_withdrawn_after_issue_is_revoked(demo: Path, tmp_path: Path) -> None:
    student = consenting(demo)[3]
    receipt = issue(student, tmp_path / "r.json")
    assert verify(receipt, tmp_path / "r.json").exit_code == 0

    add_consent_event(demo, 990_001, student, "withdrawn", day=1)
    assert materialize(["bronze/consent_events", "silver/consent_status_lists"]).success
    _, _, states = load_consent(open_catalog(CatalogConfig.from_env()))
    assert states[(student, "research")].state == "withdrawn"  # the cause, on record
    out = verify(receipt, tmp_path / "r.json")
    assert out.exit_code == Verdict.REVOKED == 5, out.output
    assert "revoked" in out.output and "withdrawn" in out.output

    # the published list is the W3C one: its bit for the receipt is 1
    url, index = status.read_entry(receipt)
    published = status_list(open_catalog(CatalogConfig.from_env()), url)
    assert published is not None and vc.verify_proof(published).ok
    assert published["credentialSubject"]["type"] == "BitstringStatusList"
    assert status.is_set(status.read_list(published, url), index)
    on_disk = json.loads(Path(url.removeprefix("file://")).read_text())
    assert on_disk == published  # the file: URL is published as a file

    # revocation is not undone by a later grant; a new receipt for it is valid
    add_consent_event(demo, 990_002, student, "given", day=2)
    assert materialize(["bronze/consent_events", "silver/consent_status_lists"]).success
    assert verify(receipt, tmp_path / "r.json").exit_code == Verdict.REVOKED
    again = issue(student, tmp_path / "again.json")
    assert verify(again, tmp_path / "again.json").exit_code == 0


def test_an_erased_students_receipt_is_revoked_at_once(demo: Path, tmp_path: Path) -> None:
    student = consenting(demo)[4]
    receipt = issue(student, tmp_path / "r.json")
    erased = CliRunner().invoke(main, ["erase", "--student-id", str(student)])
    assert erased.exit_code == 0, erased.output
    assert verify(receipt, tmp_path / "r.json").exit_code == Verdict.REVOKED


def test_a_receipt_whose_status_cannot_be_checked_is_not_valid(demo: Path, tmp_path: Path) -> None:
    genuine = issue(consenting(demo)[5], tmp_path / "r.json")
    signer = load_signer()
    bare = unsigned(genuine)
    del bare["credentialStatus"]
    out = verify(vc.sign(bare, signer.key, signer.did), tmp_path / "bare.json")
    assert out.exit_code == Verdict.STATUS_UNKNOWN == 6
    assert "no credentialStatus" in out.output
    elsewhere = {**unsigned(genuine), "credentialStatus": status.entry("https://x.invalid/l", 1)}
    out = verify(vc.sign(elsewhere, signer.key, signer.did), tmp_path / "elsewhere.json")
    assert out.exit_code == Verdict.STATUS_UNKNOWN and "no status list" in out.output


def test_a_receipt_outside_its_validity_period_is_not_in_force(demo: Path, tmp_path: Path) -> None:
    genuine = issue(consenting(demo)[7], tmp_path / "r.json")
    signer = load_signer()
    lapsed = {**unsigned(genuine), "validUntil": "2020-01-01T00:00:00Z"}
    out = verify(vc.sign(lapsed, signer.key, signer.did), tmp_path / "lapsed.json")
    assert out.exit_code == Verdict.NOT_IN_FORCE == 7
    assert "validUntil is 2020-01-01T00:00:00Z" in out.output
    early = {**unsigned(genuine), "validFrom": "2999-01-01T00:00:00Z"}
    out = verify(vc.sign(early, signer.key, signer.did), tmp_path / "early.json")
    assert out.exit_code == Verdict.NOT_IN_FORCE and "validFrom" in out.output


def test_an_erasure_revokes_before_the_list_is_republished(demo: Path, tmp_path: Path) -> None:
    """The erasure register answers at once, whatever the published list still says."""
    receipt = issue(consenting(demo)[8], tmp_path / "r.json")
    catalog = open_catalog(CatalogConfig.from_env())

    def check(erased: bool) -> Verdict:
        return check_receipt(
            receipt,
            institution_did=institution_did(),
            is_registered=lambda did: is_registered(catalog, did),
            find_list=lambda url: status_list(catalog, url),
            is_erased=lambda did: erased and did == receipt["credentialSubject"]["id"],
        ).verdict

    assert check(erased=False) is Verdict.VALID
    assert check(erased=True) is Verdict.REVOKED


def test_verify_documents_its_exit_codes() -> None:
    text = CliRunner().invoke(main, ["consent", "verify", "--help"]).output
    for verdict in Verdict:
        if verdict is not Verdict.VALID:
            assert f"{int(verdict)}  {verdict.label}" in text, verdict


def test_the_trust_anchor_is_the_configured_did(
    demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A verifier that only knows the institution's DID (no key) checks the same way."""
    receipt = issue(consenting(demo)[6], tmp_path / "r.json")
    monkeypatch.delenv("SPANDA_DEMO")
    monkeypatch.setenv("SPANDA_INSTITUTION_DID", receipt["issuer"])
    monkeypatch.setenv("SPANDA_HOME", str(tmp_path / "verifier-has-no-key"))
    monkeypatch.setenv("SPANDA_CATALOG_URI", f"sqlite:///{demo / 'catalog.db'}")
    monkeypatch.setenv("SPANDA_WAREHOUSE", (demo / "warehouse").as_uri())
    assert verify(receipt, tmp_path / "r.json").exit_code == 0
    _, other = fresh_identity()
    monkeypatch.setenv("SPANDA_INSTITUTION_DID", other)
    assert verify(receipt, tmp_path / "r.json").exit_code == Verdict.WRONG_ISSUER


# ----------------------------------------------------------------------------- keys


def test_production_refuses_to_derive_subject_keys(
    tiny_source: str, spanda_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DemoOnlyError, match="only in the embedded demo"):
        Wallet()
    with pytest.raises(DemoOnlyError, match="SPANDA_SUBJECT_DIDS is not set"):
        subject_keys()
    refused = materialize(["bronze/students", "bronze/data_subjects"])
    assert not refused.success
    (failure,) = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "SPANDA_SUBJECT_DIDS is not set" in str(failure.step_failure_data.error)

    # production is given the students' DIDs (public keys), never a private key
    con = sqlite3.connect(tiny_source.removeprefix("sqlite:///"))
    sourced = [r[0] for r in con.execute('SELECT SourcedId FROM "Students"')]
    con.close()
    dids = {s: fresh_identity()[1] for s in sourced[:-3]}  # three have no wallet yet
    listing = tmp_path / "dids.csv"
    listing.write_text("sourced_id,did\n" + "".join(f"{s},{d}\n" for s, d in dids.items()))
    monkeypatch.setenv("SPANDA_SUBJECT_DIDS", str(listing))
    result = materialize(["bronze/data_subjects"])
    assert result.success
    (mat,) = result.asset_materializations_for_node("bronze__data_subjects")
    assert mat.metadata["students_without_did"].value == 3
    registry = open_catalog(CatalogConfig.from_env()).load_table(SUBJECTS).scan().to_arrow()
    assert set(registry.column("did").to_pylist()) == set(dids.values())
    assert not (spanda_home / "wallet").exists()  # no master secret was ever made


def test_a_bad_subject_did_listing_names_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = tmp_path / "dids.csv"
    listing.write_text("sourced_id,did\na,did:web:example.edu\nb,did:key:z6MkX#frag\n")
    monkeypatch.setenv("SPANDA_SUBJECT_DIDS", str(listing))
    with pytest.raises(ConfigError, match=r"line 2: .*did:key.*line 3"):
        subject_keys()


def test_one_did_cannot_belong_to_two_students(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    did = did_from_public_key(bytes(range(32)))
    listing = tmp_path / "dids.csv"
    listing.write_text(f"sourced_id,did\na,{did}\nb,{did}\n")
    monkeypatch.setenv("SPANDA_SUBJECT_DIDS", str(listing))
    with pytest.raises(ConfigError, match=r"line 3: .* already the DID of sourced_id 'a'"):
        subject_keys()


def test_the_institution_key_comes_from_a_secret_and_is_never_shown(
    spanda_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(MissingSecretError, match="SPANDA_INSTITUTION_KEY"):
        load_signer()
    with pytest.raises(MissingSecretError, match="SPANDA_INSTITUTION_DID is not set"):
        institution_did()
    refused = CliRunner().invoke(main, ["consent", "issue", "1"])
    assert refused.exit_code == 2 and "SPANDA_INSTITUTION_KEY" in refused.output

    made = CliRunner().invoke(main, ["consent", "keygen", "--out", str(tmp_path / "k")])
    assert made.exit_code == 0, made.output
    did = made.output.split("SPANDA_INSTITUTION_DID=")[1].strip()
    secret = (tmp_path / "k").read_text().strip()
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600
    assert secret not in made.output

    monkeypatch.setenv("SPANDA_INSTITUTION_KEY_FILE", str(tmp_path / "k"))
    signer = load_signer()
    assert signer.did == did == institution_did() and secret not in repr(signer)
    monkeypatch.delenv("SPANDA_INSTITUTION_KEY_FILE")
    monkeypatch.setenv("SPANDA_INSTITUTION_KEY", secret)
    assert load_signer().did == did
    monkeypatch.setenv("SPANDA_INSTITUTION_DID", fresh_identity()[1])
    with pytest.raises(ConfigError, match="is not the key of SPANDA_INSTITUTION_DID") as exc:
        load_signer()
    assert secret not in str(exc.value)
    monkeypatch.delenv("SPANDA_INSTITUTION_DID")
    monkeypatch.setenv("SPANDA_INSTITUTION_KEY", secret[:-2] + "zz")
    with pytest.raises(ConfigError) as bad:
        load_signer()
    assert secret[:-2] not in str(bad.value)
    assert not (spanda_home / "secrets").exists()  # production generated nothing


def test_key_files_are_0600_from_their_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, str, bool]] = []
    real_link = os.link

    def watch(src: Any, dst: Any) -> None:
        # what is about to appear under the key's name: its mode and content, complete
        seen.append((stat.S_IMODE(os.stat(src).st_mode), Path(src).read_text(), Path(dst).exists()))
        real_link(src, dst)

    monkeypatch.setattr(os, "link", watch)
    old = os.umask(0)  # the most permissive umask cannot widen it
    try:
        key = settings.local_secret(tmp_path / "secrets" / "demo.key")
        did = keygen(tmp_path / "institution.key")
    finally:
        os.umask(old)
    assert [(mode, exists) for mode, _, exists in seen] == [(0o600, False), (0o600, False)]
    assert seen[0][1] == key and len(key) == 64
    assert did.startswith("did:key:z6Mk")
    for path in (tmp_path / "secrets" / "demo.key", tmp_path / "institution.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == ["demo.key"]
    with pytest.raises(ConfigError, match="already exists"):
        keygen(tmp_path / "institution.key")


RACER = """
import sys, time
from pathlib import Path
from spanda_assets import settings
key, line, go = (Path(a) for a in sys.argv[1:4])
(line / sys.argv[4]).touch()
while not go.exists():
    pass
print(settings.local_secret(key))
"""


def test_processes_racing_to_create_a_key_end_with_one_key(tmp_path: Path) -> None:
    path, line, go = tmp_path / "secrets" / "race.key", tmp_path / "line", tmp_path / "go"
    line.mkdir()
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(path), str(line), str(go), str(i)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    deadline = time.monotonic() + 60
    while len(list(line.iterdir())) < len(racers) and time.monotonic() < deadline:
        time.sleep(0.01)  # until every racer is waiting at the line
    go.touch()
    keys = {r.communicate(timeout=60)[0].strip() for r in racers}
    assert all(r.returncode == 0 for r in racers)
    assert keys == {path.read_text().strip()} and len(keys.pop()) == 64
    assert [p.name for p in path.parent.iterdir()] == ["race.key"]  # no temporary file left
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ----------------------------------------------------------------------------- status lists


def test_the_encoded_list_follows_the_bitstring_status_list_format() -> None:
    bits = status.bitstring(status.MIN_BITS, {0, 9, status.MIN_BITS - 1})
    encoded = status.encode(bits)
    assert encoded.startswith("u") and "=" not in encoded
    raw = gzip.decompress(base64.urlsafe_b64decode(encoded[1:] + "=" * (-len(encoded[1:]) % 4)))
    assert len(raw) == 16 * 1024 == status.MIN_BITS // 8  # 131,072 entries uncompressed
    assert raw[0] == 0x80 and raw[1] == 0x40 and raw[-1] == 0x01  # index 0 is the leftmost bit
    assert status.decode(encoded) == bits
    assert status.set_bits(bits) == {0, 9, status.MIN_BITS - 1}
    assert status.size_for([status.MIN_BITS]) == 2 * status.MIN_BITS
    short = "u" + base64.urlsafe_b64encode(gzip.compress(bytes(1024))).decode().rstrip("=")
    with pytest.raises(status.StatusError, match="minimum is 131072"):
        status.decode(short)
    with pytest.raises(status.StatusError, match="starting with 'u'"):
        status.decode(encoded[1:])
    bomb = "u" + base64.urlsafe_b64encode(gzip.compress(bytes(status.MAX_BYTES + 1))).decode()
    with pytest.raises(status.StatusError, match="larger than"):
        status.decode(bomb.rstrip("="))
