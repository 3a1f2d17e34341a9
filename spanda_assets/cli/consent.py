"""`spanda consent`: issue, verify and publish consent receipts (W3C Verifiable Credentials)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spanda_assets import settings
from spanda_assets.lib.errors import SpandaError

if TYPE_CHECKING:
    pass

# Dagster and the definitions load only in the commands that run the graph: `spanda
# validate`, `seed`, `tables` and `--help` start in a fraction of a second
# (test_cli.test_the_cli_starts_without_dagster).

from spanda_assets.cli.base import (
    fail,
    main,
)


@main.group()
def consent() -> None:
    """Consent receipts: W3C Verifiable Credentials signed with eddsa-jcs-2022."""


@consent.command("issue")
@click.argument("student_id", type=int)
@click.option("--purpose", type=click.Choice(["research", "model_training"]), default="research")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def consent_issue(student_id: int, purpose: str, out_path: Path | None) -> None:
    """Issue a signed consent receipt for a student's current consent state.

    Signed with the institution's key (SPANDA_INSTITUTION_KEY or
    SPANDA_INSTITUTION_KEY_FILE; a generated one in the demo). The receipt names
    its entry in the institution's revocation list (SPANDA_STATUS_LIST_URL), which
    is published again now and on every consent change.
    """
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.privacy import status, vc
    from spanda_assets.lib.privacy.consent import latest_states, record, validate_events
    from spanda_assets.lib.privacy.institution import load_signer
    from spanda_assets.lib.privacy.receipts import publish_status_lists, register_receipt
    from spanda_assets.lib.privacy.subjects import did_of
    from spanda_assets.lib.writes import eq_filter

    try:
        signer = load_signer()
        catalog = open_catalog(CatalogConfig.from_env())
        subject_did = did_of(catalog, student_id)
        events = (
            catalog.load_table(("bronze", "consent_events"))
            .scan(row_filter=eq_filter("student_id", student_id))
            .to_arrow()
        )
        valid, _ = validate_events(events, {student_id})
        state = latest_states(valid).get((student_id, purpose))
        if state is None:
            raise SpandaError(f"student {student_id} has no valid consent event for {purpose!r}")
        row = next(r for r in valid.to_pylist() if r["consent_event_id"] == state.event_id)
        receipt_id, list_url = vc.new_credential_id(), settings.status_list_url()
        index = register_receipt(
            catalog,
            receipt_id=receipt_id,
            list_url=list_url,
            student_id=student_id,
            purpose=purpose,
            consent_event_id=state.event_id,
            state=state.state,
        )
        receipt = vc.sign(
            vc.consent_receipt(
                issuer_did=signer.did,
                subject_did=subject_did,
                record=record(
                    record_id=f"consent-event-{state.event_id}",
                    subject=subject_did,
                    purpose=purpose,
                    state=state.state,
                    time=row["recorded_at"].isoformat(),
                    collection_method=row["collection_method"],
                    notice_version=row["notice_version"],
                ),
                valid_from=dt.datetime.now(dt.UTC),
                credential_id=receipt_id,
                status=status.entry(list_url, index),
            ),
            signer.key,
            signer.did,
        )
        publish_status_lists(catalog, signer)
    except SpandaError as exc:
        fail(exc)
        return
    text = json.dumps(receipt, indent=2, sort_keys=True)
    if out_path:
        out_path.write_text(text + "\n", encoding="utf-8")
        click.echo(f"receipt for {subject_did} ({purpose}: {state.state}) written to {out_path}")
    else:
        click.echo(text)


@consent.command("verify")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def consent_verify(path: Path) -> None:
    """Verify a consent receipt: its integrity, that the institution issued it, that its
    subject is registered, and that it is not revoked. Says why one fails.

    The institution is SPANDA_INSTITUTION_DID (or the DID of the institution's
    key); the subject must be in bronze.data_subjects; revocation is read from the
    status list the platform published under the receipt's statusListCredential.

    \b
    Exit codes:
      0  valid
      1  tampered: the signature does not match the content, or the proof is malformed
      2  the file cannot be read, or the platform is not set up to verify
      3  wrong issuer: not signed by the institution's key
      4  unknown subject: not a registered data subject
      5  revoked: the consent it states was withdrawn (or the student erased) since
      6  status unknown: no revocation entry, or no valid published list to check it
      7  not in force: before its validFrom or after its validUntil
    """
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.privacy.erasure import is_erased
    from spanda_assets.lib.privacy.institution import institution_did
    from spanda_assets.lib.privacy.receipts import status_list
    from spanda_assets.lib.privacy.subjects import is_registered
    from spanda_assets.lib.privacy.trust import check_receipt

    if not path.is_file():
        fail(SpandaError(f"{path}: no such file"))
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        fail(SpandaError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"))
        return
    except UnicodeDecodeError as exc:
        fail(SpandaError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"))
        return
    try:
        anchor = institution_did()
        catalog = open_catalog(CatalogConfig.from_env())
        finding = check_receipt(
            document,
            institution_did=anchor,
            is_registered=lambda did: is_registered(catalog, did),
            find_list=lambda url: status_list(catalog, url),
            is_erased=lambda did: is_erased(catalog, did),
        )
    except SpandaError as exc:
        fail(exc)
        return
    if finding.ok:
        click.secho(f"valid: {finding.reason}", fg="green")
        click.echo(
            f"  issuer:  {finding.issuer} (the institution)\n"
            f"  subject: {finding.subject} (registered)\n"
            f"  status:  {finding.status}"
        )
        return
    click.secho(f"invalid ({finding.verdict.label}): {finding.reason}", fg="red", err=True)
    raise SystemExit(int(finding.verdict))


@consent.command("keygen")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="New key file (refused if it exists).",
)
def consent_keygen(out_path: Path) -> None:
    """Create the institution's Ed25519 signing key in a new file (mode 0600 from its first
    byte) and print its DID, the trust anchor verifiers set as SPANDA_INSTITUTION_DID."""
    from spanda_assets.lib.privacy.institution import keygen

    try:
        did = keygen(out_path)
    except SpandaError as exc:
        fail(exc)
        return
    click.echo(f"institution key written to {out_path} (mode 0600); keep it in a secret store")
    click.echo(f"{settings.ENV_INSTITUTION_DID}={did}")


@consent.command("status-list")
@click.option("--url", default=None, help="The list's URL (default: SPANDA_STATUS_LIST_URL).")
@click.option("--publish", is_flag=True, help="Rebuild and sign every list first.")
def consent_status_list(url: str | None, publish: bool) -> None:
    """Print the signed revocation list (a W3C Bitstring Status List credential) the platform
    published, to serve at its URL."""
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.privacy.institution import load_signer
    from spanda_assets.lib.privacy.receipts import publish_status_lists, status_list

    target = url or settings.status_list_url()
    try:
        catalog = open_catalog(CatalogConfig.from_env())
        if publish:
            publish_status_lists(catalog, load_signer())
        found = status_list(catalog, target)
        if found is None:
            raise SpandaError(f"no status list published under {target} (no receipt issued yet)")
    except SpandaError as exc:
        fail(exc)
        return
    click.echo(json.dumps(found, indent=2, sort_keys=True))
