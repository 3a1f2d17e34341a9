"""`spanda access`: API tokens, the access policy, and the audit log of every decision.

* `access token create --principal NAME --role ROLE [--purpose P]... [--dua ID]...`
  prints the new token once, alone on stdout (`TOKEN=$(spanda access token create ...)`);
  everything else goes to stderr. Only the token's SHA-256 is kept.
* `access token list [--json]`, `access token revoke TOKEN_ID`.
* `access audit [--json] [--limit N] [--verify]`: the decisions, newest last; `--verify`
  checks the hash chain and its head anchor and exits 1 at the first bad line.
* `access policy [--json]`: validates the policy against its schema and shows its hash
  and policy ids (run it after editing a policy).

None of them prints a token again, nor a token's hash.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from spanda_assets.cli.base import fail, main
from spanda_assets.lib.errors import SpandaError


@main.group("access")
def access() -> None:
    """Who may read what: API tokens, the Cedar policy and the audit log."""


@access.group("token")
def token() -> None:
    """Issue, list and revoke API tokens (only their SHA-256 is stored)."""


def _declared() -> tuple[str | None, set[str], set[str]]:
    """(the publisher's name, declared purposes, declared DUA ids) from datasets.yaml."""
    from spanda_assets.lib.publish.datasets import load_datasets

    datasets = load_datasets()
    publisher = datasets[0].publisher.name if datasets else None
    purposes = {p for d in datasets for p in d.access.purposes}
    duas = {d.dua.id for d in datasets}
    return publisher, purposes, duas


@token.command("create")
@click.option("--principal", required=True, help="Who holds the token (a login or a service).")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["researcher", "steward", "public"]),
    help="researcher: data for approved purposes; steward: everything but bronze over the "
    "API; public: metadata only.",
)
@click.option(
    "--purpose",
    "purposes",
    multiple=True,
    metavar="PURPOSE",
    help="A purpose the holder is approved for (repeat it), e.g. research.",
)
@click.option(
    "--dua",
    "duas",
    multiple=True,
    metavar="ID",
    help="A data use agreement the holder has signed (repeat it), e.g. spanda-demo-dua-1.0.",
)
@click.option(
    "--institution",
    default=None,
    help="The holder's institution (default: the publisher of datasets.yaml).",
)
@click.option(
    "--expires-days",
    default=90,
    show_default=True,
    type=click.IntRange(1, 3650),
    help="Days until the token stops working.",
)
def token_create(
    principal: str,
    role: str,
    purposes: tuple[str, ...],
    duas: tuple[str, ...],
    institution: str | None,
    expires_days: int,
) -> None:
    """Issue a token; it is printed once, alone on stdout: store it now."""
    from spanda_assets.lib.access import TokenStore, access_dir

    try:
        publisher, declared_purposes, declared_duas = _declared()
    except SpandaError as exc:
        if institution is None:
            fail(SpandaError(f"{exc}\n(pass --institution to issue a token without it)"))
            return
        publisher, declared_purposes, declared_duas = None, set(), set()
    chosen = institution if institution is not None else publisher
    if not chosen:
        fail(SpandaError("no dataset is declared to take the publisher from: pass --institution"))
        return
    try:
        secret, record = TokenStore(access_dir()).create(
            principal,
            role,
            institution=chosen,
            purposes=purposes,
            duas=duas,
            expires_days=expires_days,
        )
    except SpandaError as exc:
        fail(exc)
        return
    click.echo(secret)
    click.echo(
        f"issued {record.token_id} to {record.principal!r} ({record.role}, "
        f"{record.institution}); purposes: {', '.join(record.purposes) or 'none'}; data use "
        f"agreements: {', '.join(record.duas) or 'none'}; expires {record.expires_at}. The "
        "token is shown only this once.",
        err=True,
    )
    # A typo makes a token that silently opens nothing: say so while it can be re-issued.
    if declared_purposes:
        for p in sorted(set(purposes) - declared_purposes):
            click.secho(f"warning: no dataset may be used for {p!r}", fg="yellow", err=True)
    if declared_duas:
        for d in sorted(set(duas) - declared_duas):
            click.secho(f"warning: no dataset has the agreement {d!r}", fg="yellow", err=True)
    if role == "researcher" and not (purposes and duas):
        click.secho(
            "warning: without --purpose and --dua this researcher reads metadata only",
            fg="yellow",
            err=True,
        )


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def token_list(as_json: bool) -> None:
    """Every token issued here, with its state (active, revoked, expired); never the token."""
    from spanda_assets.lib.access import TokenStore, access_dir

    try:
        rows = [r.listing() for r in TokenStore(access_dir()).records()]
    except SpandaError as exc:
        fail(exc)
        return
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no tokens issued yet (spanda access token create)")
    for r in rows:
        click.echo(
            f"{r['token_id']:<17} {r['state']:<8} {r['principal']:<20} {r['role']:<10} "
            f"{r['institution']}  purposes={','.join(r['purposes']) or '-'}  "
            f"duas={','.join(r['duas']) or '-'}  expires={r['expires_at'] or 'never'}"
        )


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token by its id (from `spanda access token list`); it stops working at once."""
    from spanda_assets.lib.access import TokenStore, access_dir

    try:
        record, changed = TokenStore(access_dir()).revoke(token_id)
    except SpandaError as exc:
        fail(exc)
        return
    if changed:
        click.echo(f"revoked {record.token_id} of {record.principal!r}")
    else:
        click.echo(
            f"{record.token_id} of {record.principal!r} was already revoked on {record.revoked_at}"
        )


def _show(entry: dict[str, Any]) -> None:
    verdict = entry.get("decision", "?")
    click.echo(
        f"#{entry.get('seq')} {entry.get('time')}  "
        + click.style(f"{verdict:<5}", fg="green" if verdict == "allow" else "red")
        + f"  {entry.get('principal')} ({entry.get('role')})  {entry.get('action')} "
        f"{entry.get('resource')}  purpose={entry.get('purpose') or '-'}  "
        f"via {entry.get('channel')}"
    )
    if entry.get("columns_denied"):
        click.echo(f"    masked: {', '.join(entry['columns_denied'])}")
    if entry.get("policy_ids"):
        click.echo(f"    policies: {', '.join(entry['policy_ids'])}")
    for reason in entry.get("reasons") or ():
        click.echo(f"    why: {reason}")


@access.command("audit")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(1),
    help="Show the last N decisions.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Check the hash chain and its head anchor; exit 1 at the first bad line.",
)
def audit(as_json: bool, limit: int, verify: bool) -> None:
    """The access decisions, newest last; with --verify, whether the log is intact."""
    from spanda_assets.lib.access import AuditLog, access_dir

    log = AuditLog(access_dir())
    if verify:
        try:
            result = log.verify()
        except SpandaError as exc:
            fail(exc)
            return
        if as_json:
            click.echo(json.dumps({"path": str(log.path), **asdict(result)}, indent=2))
        elif result.ok:
            click.echo(
                f"audit log {log.path} is intact: {result.entries} entries, head seq "
                f"{result.head_seq} hash {result.head_hash}"
            )
            if result.note:
                click.secho(f"note: {result.note}", fg="yellow", err=True)
        else:
            # the problem names its line
            click.secho(f"audit log {log.path} is NOT intact: {result.problem}", fg="red")
            click.echo(
                f"the first {result.entries} entries verify (up to seq {result.head_seq}, "
                f"hash {result.head_hash})",
                err=True,
            )
        if not result.ok:
            raise SystemExit(1)
        return
    try:
        entries = log.entries(limit)
    except SpandaError as exc:
        fail(exc)
        return
    if as_json:
        click.echo(json.dumps(entries, indent=2, ensure_ascii=False))
        return
    if not entries:
        click.echo(f"no decisions logged yet in {log.path}")
    for entry in entries:
        _show(entry)


@access.command("policy")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def policy(as_json: bool) -> None:
    """Validate the access policy against its schema; show its files, hash and policy ids.

    The policy is SPANDA_ACCESS_POLICY_DIR/{policies.cedar,schema.cedarschema}, or the
    packaged one. Exit status 2 with Cedar's errors when it does not validate.
    """
    from spanda_assets.lib.access import AccessControl

    try:
        ac = AccessControl.load()
    except SpandaError as exc:
        fail(exc)
        return
    doc = {
        "policies": ac.files.policies_origin,
        "schema": ac.files.schema_origin,
        "policy_set_hash": ac.policy_set_hash,
        "policy_ids": ac.policy_ids,
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{doc['policies']} validates against {doc['schema']}")
    click.echo(f"policy set hash {ac.policy_set_hash}")
    for name in ac.policy_ids:
        click.echo(f"  {name}")
