"""Privacy by design: DIDs for data subjects, consent records, and de-identified silver.

Every silver table is generated from the column policy and the sources file.
Heavy work lives in `lib/privacy/`; these functions wire it to Dagster. Each
silver table is written through write-audit-publish (defs/publishing.py): its
residual-PII scan is a blocking check that reads the audit branch, and main
moves only when it passed.
"""

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from spanda_assets.defs.automation.policies import SILVER_FRESHNESS, stage_automation
from spanda_assets.defs.extract.assets import table_metadata
from spanda_assets.defs.publishing import (
    Audit,
    AuditFn,
    audit_spec,
    outcome_events,
    write_audit_publish,
)
from spanda_assets.lib.sources import SourceTable, load_sources
from spanda_assets.resources import LakehouseResource

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from spanda_assets.lib.privacy.policy import TablePolicy
    from spanda_assets.lib.privacy.residual import ScanReport
    from spanda_assets.lib.privacy.scrub import Roster
    from spanda_assets.lib.writes import Pending

PRIVACY_GROUP = "privacy"
SILVER_GROUP = "silver"
OWNERS = ["team:privacy-engineering"]
SUBJECTS_KEY = dg.AssetKey(["bronze", "data_subjects"])
CONSENT_RECORDS_KEY = dg.AssetKey(["silver", "consent_records"])
STATUS_LISTS_KEY = dg.AssetKey(["silver", "consent_status_lists"])
CONSENT_SOURCE = "consent_events"


RESIDUAL_DESCRIPTION = (
    "Independent scan (other patterns, Arrow's RE2 kernels, exact known names and emails) "
    "of every row the audit branch holds that main lacks: everything since the last "
    "passing audit, whole new files. Fails, and keeps main unchanged, if any identifier "
    "survived de-identification or an identifying column is present. Shows counts per "
    "category and example row keys, never the values."
)


def silver_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", name])


def silver_pool(name: str) -> str:
    """One pool per silver table: two runs never write the same table."""
    return f"silver_{name}"


def residual_audit(catalog: "Catalog", key: str) -> AuditFn:
    """The residual-PII scan as an audit of what a silver table has not published yet."""

    def audit(pending: "Pending") -> Audit:
        from spanda_assets.lib.privacy.residual import scan_pending, scanner_for

        return residual_pii_audit(scan_pending(scanner_for(catalog), pending, key))

    return audit


def residual_pii_audit(report: "ScanReport") -> Audit:
    """A residual-PII scan report as the `residual_pii` audit: counts per category and
    example keys in its metadata, and in what a failure reports."""
    found = {f"found_{c.lower()}": n for c, n in sorted(report.counts.items()) if n}
    return Audit(
        check_name="residual_pii",
        passed=report.passed,
        metadata={
            "rows_scanned": report.rows_scanned,
            **{f"found_{c.lower()}": n for c, n in sorted(report.counts.items())},
            "example_keys": dg.MetadataValue.json(report.examples),
            "identifying_columns": ", ".join(report.forbidden_columns) or "none",
        },
        failing={
            **found,
            "example_keys": report.examples,
            "identifying_columns": report.forbidden_columns,
        },
    )


@dg.asset(
    key=SUBJECTS_KEY,
    deps=[dg.AssetKey(["bronze", "students"])],
    group_name=PRIVACY_GROUP,
    kinds={"iceberg", "python"},
    owners=OWNERS,
    tags={"spanda/layer": "bronze", "spanda/pii": "restricted"},
    pool="bronze_data_subjects",
    automation_condition=stage_automation(),
    freshness_policy=SILVER_FRESHNESS,
    description=(
        "Registry of data subjects: one did:key (Ed25519) per student, with its public key. "
        "The platform holds public keys only: the DIDs come from the students' own wallets "
        "(the CSV file SPANDA_SUBJECT_DIDS names); only the embedded demo (SPANDA_DEMO=1) "
        "derives them from a demo wallet under SPANDA_HOME/wallet. Restricted zone: maps "
        "student numbers to DIDs; silver only sees keyed pseudonyms of the DIDs."
    ),
)
def data_subjects(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from spanda_assets.lib.privacy.subjects import register_subjects, subject_keys

    new, total, missing = register_subjects(lakehouse.catalog(), subject_keys())
    if missing:
        context.log.warning(
            f"{missing} student(s) have no DID yet and are not registered: their consent "
            "events are quarantined until their wallet's DID is listed"
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "subjects_registered": new,
            "students_without_did": missing,
            "did_method": "did:key",
        }
    )


@dg.asset(
    key=CONSENT_RECORDS_KEY,
    deps=[dg.AssetKey(["bronze", CONSENT_SOURCE]), SUBJECTS_KEY],
    group_name=SILVER_GROUP,
    kinds={"iceberg", "python"},
    owners=OWNERS,
    tags={"spanda/layer": "silver", "spanda/pii": "de-identified"},
    pool=silver_pool("consent_records"),
    automation_condition=stage_automation(),
    freshness_policy=SILVER_FRESHNESS,
    check_specs=[
        audit_spec(CONSENT_RECORDS_KEY, "residual_pii", "Residual-PII scan of the consent records.")
    ],
    output_required=False,
    description=(
        "Consent events as ISO/IEC TS 27560-style consent records (purpose, state, time, "
        "collection method, notice version, controller), keyed by pseudonymous subject. "
        "Malformed events (unknown purpose, state or student) go to silver.consent_quarantine "
        "with the reason and are never read as consent. Written through write-audit-publish "
        "with the residual-PII scan as its gate."
    ),
)
def consent_records(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> Iterator[Any]:
    from spanda_assets.lib.privacy.consent import load_consent
    from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
    from spanda_assets.lib.privacy.records import stage_consent_records
    from spanda_assets.lib.privacy.subjects import subject_ids
    from spanda_assets.lib.writes import publish

    pseudonymizer = Pseudonymizer(load_key())
    catalog = lakehouse.namespace("silver")
    valid, quarantined, states = load_consent(catalog)
    staged = stage_consent_records(
        catalog, valid, quarantined, states, pseudonymizer, subject_ids(catalog, pseudonymizer)
    )
    if quarantined:
        context.log.warning(
            f"{len(quarantined)} consent event(s) quarantined; see silver.consent_quarantine"
        )
    outcome = write_audit_publish(staged.records, [residual_audit(catalog, "record_id")])
    if outcome.passed:
        publish(staged.quarantine)  # published with the records it explains
    yield from outcome_events(CONSENT_RECORDS_KEY, outcome, staged.summary)


@dg.asset(
    key=STATUS_LISTS_KEY,
    deps=[dg.AssetKey(["bronze", CONSENT_SOURCE]), SUBJECTS_KEY],
    group_name=SILVER_GROUP,
    kinds={"iceberg", "python"},
    owners=OWNERS,
    tags={"spanda/layer": "silver", "spanda/pii": "none"},
    pool=silver_pool("consent_status_lists"),
    automation_condition=stage_automation(),
    freshness_policy=SILVER_FRESHNESS,
    description=(
        "The institution's consent revocation lists (W3C Bitstring Status List credentials, "
        "signed with the institution key): a receipt of given consent is revoked once the "
        "consent is withdrawn or the student erased, and `spanda consent verify` says so. "
        "Rebuilt from bronze.consent_receipts and the consent events on every consent change, "
        "and written to main at once (no audit holds a revocation back): bits only, no row of "
        "any subject. Nothing to do until a receipt has been issued."
    ),
)
def consent_status_lists(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    from spanda_assets.lib.privacy.institution import load_signer
    from spanda_assets.lib.privacy.receipts import issued, publish_status_lists

    catalog = lakehouse.catalog()
    receipts = issued(catalog)
    if receipts is None:
        return dg.MaterializeResult(
            metadata={"dagster/row_count": 0, "receipts_issued": 0, "revoked": 0}
        )
    signer = load_signer()
    revoked = publish_status_lists(catalog, signer)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(revoked),
            "receipts_issued": receipts.num_rows,
            "revoked": sum(revoked.values()),
            "issuer": signer.did,
            "status_lists": ", ".join(sorted(revoked)),
        }
    )


def _policy_markdown(policy: "TablePolicy") -> str:
    lines = ["| column | category | action | silver column |", "|---|---|---|---|"]
    for rule in policy.columns.values():
        lines.append(
            f"| {rule.name} | {rule.category} | {rule.action} | {rule.output_name() or '–'} |"
        )
    return "\n".join(lines)


def build_silver_asset(source: SourceTable) -> dg.AssetsDefinition:
    from spanda_assets.lib.privacy.policy import policy_for

    name = source.name
    key = silver_key(name)
    row_key = policy_for(name).key_output

    @dg.asset(
        key=key,
        deps=[dg.AssetKey(["bronze", name]), SUBJECTS_KEY, dg.AssetKey(["bronze", CONSENT_SOURCE])],
        group_name=SILVER_GROUP,
        kinds={"iceberg", "python"},
        owners=OWNERS,
        tags={"spanda/layer": "silver", "spanda/pii": "de-identified"},
        pool=silver_pool(name),
        automation_condition=stage_automation(),
        freshness_policy=SILVER_FRESHNESS,
        check_specs=[audit_spec(key, "residual_pii", RESIDUAL_DESCRIPTION)],
        output_required=False,
        description=(
            f"bronze.{name} de-identified to HIPAA Safe Harbor and FERPA by the column policy "
            "(spanda_assets/schemas/privacy_policy.yaml): identifiers dropped, pseudonymized "
            "with a keyed HMAC, generalized (dates to years, ZIP to ZIP3, ages over 89 to 90+) "
            "or scrubbed from free text. Only students with active consent for the table's "
            "purpose. Fails closed on any column the policy does not classify.\n\n"
            "Write-audit-publish: each run stages its rows on the `audit` branch; the "
            "residual-PII scan reads what main lacks; main moves only if it passed. A consent "
            "withdrawal is erased from main at once, without waiting for an audit. Runs by "
            "itself when bronze or consent changes (eager automation)."
        ),
    )
    def _silver(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> Iterator[Any]:
        from spanda_assets.lib.privacy.consent import active_students, load_consent
        from spanda_assets.lib.privacy.identifiers import load_site_patterns
        from spanda_assets.lib.privacy.policy import policy_for
        from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
        from spanda_assets.lib.privacy.scrub import SCRUBBER_VERSION
        from spanda_assets.lib.privacy.silver import SilverInputs, stage_silver
        from spanda_assets.lib.privacy.subjects import subject_ids

        policy = policy_for(name)
        site = load_site_patterns()
        pseudonymizer = Pseudonymizer(load_key())
        catalog = lakehouse.namespace("silver")
        bronze = catalog.load_table(("bronze", name))
        valid, _, states = load_consent(catalog)
        roster = (
            _roster(catalog) if any(r.action == "scrub" for r in policy.columns.values()) else None
        )
        inputs = SilverInputs(
            policy=policy,
            pseudonymizer=pseudonymizer,
            subjects=subject_ids(catalog, pseudonymizer),
            active=active_students(states, policy.purpose) if policy.subject_column else None,
            consent_events=valid,
            roster=roster,
            on=dt.date.today(),
            upsert=source.mode == "upsert",
            site=tuple((i.category, i.pattern) for i in site.scrubbed),
            rules=f"{policy.fingerprint()}:{site.fingerprint()}"
            + (f":{SCRUBBER_VERSION}" if policy.scrubs else ""),
        )
        result = stage_silver(
            catalog=catalog, bronze=bronze, inputs=inputs, run_id=context.run.run_id
        )
        if result.rows_erased:
            context.log.info(
                f"silver.{name}: erased {result.rows_erased} row(s) of {result.subjects_erased} "
                "subject(s) after consent withdrawal"
            )
        silver = catalog.load_table(("silver", name))
        outcome = write_audit_publish(silver, [residual_audit(catalog, row_key)])
        silver.refresh()
        from spanda_assets.lib.writes import row_count

        yield from outcome_events(
            key,
            outcome,
            {
                **table_metadata(silver, row_count(silver)),
                "rows_read_from_bronze": result.rows_read,
                "rows_written": result.rows_written,
                "rows_updated": result.rows_updated,
                "rows_without_consent": result.rows_without_consent,
                "rows_erased": result.rows_erased,
                "subjects_erased": result.subjects_erased,
                "subjects_restored": result.subjects_restored,
                "rows_turned_90": result.rows_turned_90,
                "audit_branch_reset": result.audit_reset,
                "consent_purpose": policy.purpose,
                "full_rebuild": result.full_rebuild,
                "bronze_sequence_processed": result.bronze_sequence,
                "column_policy": dg.MetadataValue.md(_policy_markdown(policy)),
                **result.fanout.metadata(),  # where the de-identification ran (lib/scale.py)
            },
        )

    return _silver


def _roster(catalog: "Catalog") -> "Roster":
    """Names of students and instructors, for scrubbing free text (read in the restricted zone)."""
    from spanda_assets.lib.privacy.people import known_people
    from spanda_assets.lib.privacy.scrub import Roster

    return Roster.from_names(known_people(catalog).full_names)


def silver_sources() -> list[SourceTable]:
    """Every configured source except consent events (which become consent_records)."""
    return [s for s in load_sources() if s.name != CONSENT_SOURCE]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        assets=[
            data_subjects,
            consent_records,
            consent_status_lists,
            *[build_silver_asset(s) for s in silver_sources()],
        ]
    )
