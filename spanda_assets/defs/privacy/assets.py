"""Privacy by design: DIDs for data subjects, consent records, and de-identified silver.

Every silver table is generated from the column policy and the sources file.
Heavy work lives in `lib/privacy/`; these functions wire it to Dagster.
"""

import datetime as dt
from typing import TYPE_CHECKING, Any

import dagster as dg

from spanda_assets.lib.sources import SourceTable, load_sources
from spanda_assets.resources import LakehouseResource

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from spanda_assets.lib.privacy.policy import TablePolicy

PRIVACY_GROUP = "privacy"
SILVER_GROUP = "silver"
OWNERS = ["team:privacy-engineering"]
SUBJECTS_KEY = dg.AssetKey(["bronze", "data_subjects"])
CONSENT_RECORDS_KEY = dg.AssetKey(["silver", "consent_records"])
CONSENT_SOURCE = "consent_events"


def silver_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", name])


@dg.asset(
    key=SUBJECTS_KEY,
    deps=[dg.AssetKey(["bronze", "students"])],
    group_name=PRIVACY_GROUP,
    kinds={"iceberg", "python"},
    owners=OWNERS,
    tags={"spanda/layer": "bronze", "spanda/pii": "restricted"},
    description=(
        "Registry of data subjects: one did:key (Ed25519) per student, with its public key. "
        "Private keys stay in the subjects' wallets (a demo wallet under SPANDA_HOME/wallet). "
        "Restricted zone: maps student numbers to DIDs; silver only sees keyed pseudonyms of "
        "the DIDs."
    ),
)
def data_subjects(lakehouse: LakehouseResource) -> dg.MaterializeResult:
    from spanda_assets.lib.privacy.did import Wallet
    from spanda_assets.lib.privacy.subjects import register_subjects

    new, total = register_subjects(lakehouse.catalog(), Wallet())
    return dg.MaterializeResult(
        metadata={"dagster/row_count": total, "subjects_registered": new, "did_method": "did:key"}
    )


@dg.asset(
    key=CONSENT_RECORDS_KEY,
    deps=[dg.AssetKey(["bronze", CONSENT_SOURCE]), SUBJECTS_KEY],
    group_name=SILVER_GROUP,
    kinds={"iceberg", "python"},
    owners=OWNERS,
    tags={"spanda/layer": "silver", "spanda/pii": "de-identified"},
    description=(
        "Consent events as ISO/IEC TS 27560-style consent records (purpose, state, time, "
        "collection method, notice version, controller), keyed by pseudonymous subject. "
        "Malformed events (unknown purpose, state or student) go to silver.consent_quarantine "
        "with the reason and are never read as consent."
    ),
)
def consent_records(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> dg.MaterializeResult:
    from spanda_assets.lib.privacy.consent import load_consent
    from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
    from spanda_assets.lib.privacy.records import write_consent_records
    from spanda_assets.lib.privacy.subjects import subject_ids

    pseudonymizer = Pseudonymizer(load_key())
    catalog = lakehouse.namespace("silver")
    valid, quarantined, states = load_consent(catalog)
    summary = write_consent_records(
        catalog, valid, quarantined, states, pseudonymizer, subject_ids(catalog, pseudonymizer)
    )
    if quarantined:
        context.log.warning(
            f"{len(quarantined)} consent event(s) quarantined; see silver.consent_quarantine"
        )
    return dg.MaterializeResult(metadata=summary)


def _policy_markdown(policy: "TablePolicy") -> str:
    lines = ["| column | category | action | silver column |", "|---|---|---|---|"]
    for rule in policy.columns.values():
        lines.append(
            f"| {rule.name} | {rule.category} | {rule.action} | {rule.output_name() or '–'} |"
        )
    return "\n".join(lines)


def build_silver_asset(source: SourceTable) -> dg.AssetsDefinition:
    name = source.name

    @dg.asset(
        key=silver_key(name),
        deps=[dg.AssetKey(["bronze", name]), SUBJECTS_KEY, dg.AssetKey(["bronze", CONSENT_SOURCE])],
        group_name=SILVER_GROUP,
        kinds={"iceberg", "python"},
        owners=OWNERS,
        tags={"spanda/layer": "silver", "spanda/pii": "de-identified"},
        description=(
            f"bronze.{name} de-identified to HIPAA Safe Harbor and FERPA by the column policy "
            "(spanda_assets/schemas/privacy_policy.yaml): identifiers dropped, pseudonymized "
            "with a keyed HMAC, generalized (dates to years, ZIP to ZIP3, ages over 89 to 90+) "
            "or scrubbed from free text. Only students with active consent for the table's "
            "purpose; a withdrawal erases their rows on the next run. Fails closed on any "
            "column the policy does not classify."
        ),
    )
    def _silver(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        from spanda_assets.lib.privacy.consent import active_students, load_consent
        from spanda_assets.lib.privacy.policy import policy_for
        from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
        from spanda_assets.lib.privacy.silver import SilverInputs, publish
        from spanda_assets.lib.privacy.subjects import subject_ids

        policy = policy_for(name)
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
        )
        result = publish(catalog=catalog, bronze=bronze, inputs=inputs, run_id=context.run.run_id)
        if result.rows_erased:
            context.log.info(
                f"silver.{name}: erased {result.rows_erased} row(s) of {result.subjects_erased} "
                "subject(s) after consent withdrawal"
            )
        silver = catalog.load_table(("silver", name))
        from spanda_assets.defs.extract.assets import table_metadata

        return dg.MaterializeResult(
            metadata={
                **table_metadata(silver, result.total_rows),
                "rows_read_from_bronze": result.rows_read,
                "rows_written": result.rows_written,
                "rows_updated": result.rows_updated,
                "rows_without_consent": result.rows_without_consent,
                "rows_erased": result.rows_erased,
                "subjects_erased": result.subjects_erased,
                "subjects_restored": result.subjects_restored,
                "consent_purpose": policy.purpose,
                "full_rebuild": result.full_rebuild,
                "bronze_sequence_processed": result.bronze_sequence,
                "iceberg_snapshot_id": dg.MetadataValue.text(str(result.snapshot_id or "")),
                "column_policy": dg.MetadataValue.md(_policy_markdown(policy)),
            }
        )

    return _silver


def _roster(catalog: "Catalog") -> Any:
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
        assets=[data_subjects, consent_records, *[build_silver_asset(s) for s in silver_sources()]]
    )
