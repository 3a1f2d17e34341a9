"""The Cedar access policy: validation at load, each rule's decision and reason, column
masking in one batch, and properties over the real dataset declarations."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanda_assets.lib.access import (
    ANONYMOUS,
    ENV_ACCESS_POLICY_DIR,
    AccessConfigError,
    AccessControl,
    Principal,
)
from spanda_assets.lib.publish.datasets import DatasetDeclaration, load_datasets

DATASETS = {d.id: d for d in load_datasets()}
DUA = DATASETS["validated_posts"].dua.id
PUBLISHER = DATASETS["validated_posts"].publisher.name


def researcher(
    name: str = "alice",
    purposes: tuple[str, ...] = ("research",),
    duas: tuple[str, ...] = (DUA,),
    institution: str = "Other University",
) -> Principal:
    return Principal(name, "researcher", institution, frozenset(purposes), frozenset(duas), "t")


STEWARD = Principal(
    "sam", "steward", "Elsewhere", frozenset({"research"}), frozenset({DUA}), "tok_steward"
)


def in_bronze(dataset: DatasetDeclaration) -> DatasetDeclaration:
    # declarations refuse bronze; the policy must refuse it too should one slip through
    return dataclasses.replace(dataset, table=f"bronze.{dataset.id}")


@pytest.fixture
def ac(spanda_home: Path) -> AccessControl:
    return AccessControl.load()


@pytest.fixture
def policy_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An editable copy of the packaged policy, in force through SPANDA_ACCESS_POLICY_DIR."""
    target = tmp_path / "policy"
    target.mkdir()
    packaged = resources.files("spanda_assets").joinpath("config/access")
    for name in ("policies.cedar", "schema.cedarschema"):
        (target / name).write_text(packaged.joinpath(name).read_text("utf-8"))
    monkeypatch.setenv(ENV_ACCESS_POLICY_DIR, str(target))
    return target


# --- loading ------------------------------------------------------------------------------


def test_the_packaged_policy_validates_and_names_every_policy(ac: AccessControl) -> None:
    assert "metadata-for-everyone" in ac.policy_ids
    assert "data-for-approved-purpose" in ac.policy_ids
    assert len(ac.policy_ids) == len(set(ac.policy_ids))
    assert len(ac.policy_set_hash) == 64


def test_a_policy_that_does_not_validate_is_refused_naming_the_problem(
    policy_copy: Path,
) -> None:
    path = policy_copy / "policies.cedar"
    text = path.read_text()
    assert 'resource.namespace != "bronze"' in text
    path.write_text(text.replace('resource.namespace != "bronze"', 'resource.nmespace != "b"', 1))
    with pytest.raises(AccessConfigError) as err:
        AccessControl.load()
    message = str(err.value)
    assert str(path) in message
    assert "nmespace" in message
    assert "metadata-for-everyone" in message  # the policy, by its @id
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "metadata-for-everyone" in t)
    assert f"line {line}" in message


def test_a_type_error_in_a_policy_is_refused(policy_copy: Path) -> None:
    path = policy_copy / "policies.cedar"
    path.write_text(
        path.read_text().replace(
            "principal.duas.contains(resource.dua) &&", "principal.duas == resource.dua &&", 1
        )
    )
    with pytest.raises(AccessConfigError, match="data-for-approved-purpose"):
        AccessControl.load()


def test_a_broken_schema_and_a_policy_without_an_id_are_refused(policy_copy: Path) -> None:
    schema = policy_copy / "schema.cedarschema"
    good_schema = schema.read_text()
    schema.write_text(good_schema.replace("entity Table = {", "entity Table = ", 1))
    with pytest.raises(AccessConfigError, match=r"schema\.cedarschema is not a valid Cedar"):
        AccessControl.load()
    schema.write_text(good_schema)
    policies = policy_copy / "policies.cedar"
    policies.write_text(policies.read_text() + "\npermit (principal, action, resource is Table);\n")
    with pytest.raises(AccessConfigError, match=r"has no @id"):
        AccessControl.load()


def test_a_schema_that_lacks_what_spanda_sends_is_refused(policy_copy: Path) -> None:
    schema = policy_copy / "schema.cedarschema"
    # still valid for the policies (none reads licence), but Spanda sends one
    schema.write_text(schema.read_text().replace("  licence: String,\n", "", 1))
    with pytest.raises(AccessConfigError, match="licence"):
        AccessControl.load()


def test_a_missing_policy_file_names_the_directory(policy_copy: Path) -> None:
    (policy_copy / "policies.cedar").unlink()
    with pytest.raises(AccessConfigError, match=ENV_ACCESS_POLICY_DIR):
        AccessControl.load()


# --- the rules ----------------------------------------------------------------------------


def test_data_is_denied_by_default(policy_copy: Path) -> None:
    # keep only the metadata permit: nothing else permits, nothing forbids
    path = policy_copy / "policies.cedar"
    text = path.read_text()
    path.write_text(text[: text.index('@id("data-for-approved-purpose")')])
    ac = AccessControl.load()
    decision = ac.authorize(
        researcher(), "download", DATASETS["validated_posts"], purpose="research"
    )
    assert not decision.allowed
    assert decision.policy_ids == ()
    assert decision.reasons  # explained even when no policy spoke


def test_a_table_outside_the_datasets_is_denied_by_default(ac: AccessControl) -> None:
    """Through the API a bare table is nobody's; on the platform host's CLI (`spanda
    sql`) silver and gold are readable, bronze only by a steward."""
    decision = ac.authorize_namespace(researcher(), "query", "gold.validated_posts", channel="api")
    assert not decision.allowed and decision.policy_ids == ()
    assert "not a declared dataset" in decision.reasons[0]
    on_host = ac.authorize_namespace(ANONYMOUS, "query", "gold.validated_posts", channel="cli")
    assert on_host.allowed and on_host.policy_ids == ("host-cli-queries-silver-and-gold",)
    assert not ac.authorize_namespace(ANONYMOUS, "query", "bronze.students", channel="cli").allowed
    steward = Principal("sam", "steward", "X")
    assert ac.authorize_namespace(steward, "query", "bronze.students", channel="cli").allowed
    assert not ac.authorize_namespace(steward, "query", "bronze.students", channel="api").allowed


def test_an_approved_researcher_may_download_an_open_dataset(ac: AccessControl) -> None:
    decision = ac.authorize(
        researcher(), "download", DATASETS["validated_posts"], purpose="research"
    )
    assert decision.allowed
    assert decision.policy_ids == ("data-for-approved-purpose",)
    assert decision.reasons == ()


def test_a_purpose_the_principal_is_not_approved_for_is_denied(ac: AccessControl) -> None:
    decision = ac.authorize(
        researcher(), "download", DATASETS["validated_posts"], purpose="marketing"
    )
    assert not decision.allowed
    assert "forbid-purpose-not-approved-for-principal" in decision.policy_ids
    assert (
        "purpose 'marketing' is not among the purposes principal 'alice' is approved for "
        "(research)" in decision.reasons
    )
    # approved for the principal, but not what the subjects consented to
    approved = researcher(purposes=("research", "marketing"))
    decision = ac.authorize(approved, "download", DATASETS["validated_posts"], purpose="marketing")
    assert not decision.allowed
    assert decision.policy_ids == ("forbid-purpose-not-declared-for-dataset",)
    assert "may be used for (research, model_training" in decision.reasons[0]


def test_no_purpose_is_denied_with_how_to_state_one(ac: AccessControl) -> None:
    decision = ac.authorize(researcher(), "download", DATASETS["validated_posts"])
    assert not decision.allowed
    assert "no purpose stated: send the X-Purpose header or ?purpose=" in decision.reasons
    on_cli = ac.authorize(researcher(), "query", DATASETS["validated_posts"], channel="cli")
    assert "no purpose stated: pass --purpose" in on_cli.reasons


def test_an_unsigned_dua_is_denied(ac: AccessControl) -> None:
    decision = ac.authorize(
        researcher(duas=()), "download", DATASETS["validated_posts"], purpose="research"
    )
    assert not decision.allowed
    assert decision.policy_ids == ("forbid-dua-not-signed",)
    assert decision.reasons[0].startswith(
        "principal 'alice' has not signed the data use agreement 'spanda-demo-dua-1.0' of "
        "dataset 'validated_posts'"
    )


def test_withdrawn_consent_is_denied_even_to_a_steward(ac: AccessControl) -> None:
    for who in (researcher(), STEWARD):
        decision = ac.authorize(
            who,
            "download",
            DATASETS["validated_posts"],
            purpose="research",
            consent_state="withdrawn",
        )
        assert not decision.allowed
        assert decision.policy_ids == ("forbid-consent-withdrawn",)
        assert "withdrawn" in decision.reasons[0]


def test_a_restricted_tier_is_for_the_publishers_institution(ac: AccessControl) -> None:
    restricted = DATASETS["validated_assessments"]
    assert restricted.access.tier == "restricted"
    other = ac.authorize(researcher(), "download", restricted, purpose="research")
    assert not other.allowed
    assert other.policy_ids == ("forbid-restricted-tier-other-institution",)
    assert "'Other University'" in other.reasons[0] and repr(PUBLISHER) in other.reasons[0]
    own = ac.authorize(
        researcher(institution=PUBLISHER), "download", restricted, purpose="research"
    )
    assert own.allowed
    assert ac.authorize(STEWARD, "download", restricted, purpose="research").allowed


def test_bronze_is_for_stewards_and_never_through_the_api(ac: AccessControl) -> None:
    via_api = ac.authorize_namespace(STEWARD, "query", "bronze.students", channel="api")
    assert not via_api.allowed
    assert via_api.policy_ids == ("forbid-bronze-tables-except-stewards-off-api",)
    assert "never through the public API" in via_api.reasons[0]
    via_cli = ac.authorize_namespace(STEWARD, "query", "bronze.students", channel="cli")
    assert via_cli.allowed and via_cli.policy_ids == ("tables-for-stewards",)
    assert not ac.authorize_namespace(researcher(), "query", "bronze", channel="cli").allowed
    # a dataset that somehow sits in bronze: the same rule
    dataset = in_bronze(DATASETS["validated_posts"])
    assert not ac.authorize(STEWARD, "query", dataset, purpose="research", channel="api").allowed
    assert ac.authorize(STEWARD, "query", dataset, purpose="research", channel="cli").allowed
    assert not ac.authorize(
        researcher(), "query", dataset, purpose="research", channel="cli"
    ).allowed


def test_anyone_reads_metadata_except_of_bronze(ac: AccessControl) -> None:
    gold = DATASETS["validated_posts"]
    for who in (ANONYMOUS, Principal("pat", "public", "X"), researcher()):
        decision = ac.authorize(who, "read_metadata", gold)
        assert decision.allowed and decision.policy_ids == ("metadata-for-everyone",)
    bronze = ac.authorize(ANONYMOUS, "read_metadata", in_bronze(gold))
    assert not bronze.allowed
    assert bronze.policy_ids == ("forbid-bronze-except-stewards-off-api",)


def test_public_and_anonymous_read_metadata_only(ac: AccessControl) -> None:
    public = Principal("pat", "public", PUBLISHER, frozenset({"research"}), frozenset({DUA}))
    for who, words in ((public, "role public"), (ANONYMOUS, "no token was given")):
        decision = ac.authorize(who, "download", DATASETS["validated_posts"], purpose="research")
        assert not decision.allowed
        assert "forbid-data-for-metadata-only-roles" in decision.policy_ids
        assert words in decision.reasons[0]


def test_a_mistake_in_the_call_is_an_error_not_a_denial(ac: AccessControl) -> None:
    with pytest.raises(ValueError, match="action 'delete'"):
        ac.authorize(researcher(), "delete", DATASETS["validated_posts"])
    with pytest.raises(ValueError, match="channel"):
        ac.authorize(researcher(), "download", DATASETS["validated_posts"], channel="web")
    with pytest.raises(ValueError, match="consent_state"):
        ac.authorize(researcher(), "download", DATASETS["validated_posts"], consent_state="?")
    assert ac.audit.entries() == []


# --- columns ------------------------------------------------------------------------------


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of requests of every cedarpy.is_authorized_batch call."""
    calls: list[int] = []
    real = cedarpy.is_authorized_batch

    def counting(requests: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        calls.append(len(requests))
        return real(requests, *args, **kwargs)

    monkeypatch.setattr(cedarpy, "is_authorized_batch", counting)
    monkeypatch.setattr(cedarpy, "is_authorized", lambda *a, **k: pytest.fail("one at a time"))
    return calls


def test_a_quasi_identifier_is_released_only_for_its_purposes(
    ac: AccessControl, batches: list[int]
) -> None:
    dataset = DATASETS["validated_posts"]
    columns = list(dataset.columns)
    who = researcher(purposes=("research", "longitudinal_research"))
    research = ac.authorize(who, "download", dataset, purpose="research", columns=columns)
    assert research.allowed
    assert research.columns_denied == ("subject_id",)
    assert set(research.columns_allowed) == set(columns) - {"subject_id"}
    assert "quasi-identifier, released only for longitudinal_research" in research.reasons[0]
    longitudinal = ac.authorize(
        who, "download", dataset, purpose="longitudinal_research", columns=columns
    )
    assert longitudinal.columns_allowed == tuple(columns) and longitudinal.columns_denied == ()
    assert "column-quasi-identifier-for-its-purposes" in longitudinal.policy_ids
    assert batches == [1 + len(columns), 1 + len(columns)]  # one batch per decision


def test_a_restricted_column_is_for_stewards_only(ac: AccessControl, batches: list[int]) -> None:
    dataset = DATASETS["labeled_posts"]
    columns = list(dataset.columns)
    for_researcher = ac.authorize(
        researcher(), "query", dataset, purpose="research", columns=columns
    )
    assert for_researcher.allowed and for_researcher.columns_denied == ("subject_id",)
    assert "forbid-restricted-column-except-stewards" in for_researcher.policy_ids
    assert "restricted: only stewards" in for_researcher.reasons[0]
    for_steward = ac.authorize(STEWARD, "query", dataset, purpose="research", columns=columns)
    assert for_steward.columns_allowed == tuple(columns)
    assert batches == [1 + len(columns)] * 2


def test_no_column_of_a_denied_dataset(ac: AccessControl, batches: list[int]) -> None:
    dataset = DATASETS["validated_posts"]
    decision = ac.authorize(
        researcher(), "download", dataset, purpose="marketing", columns=["body", "body", "post_id"]
    )
    assert not decision.allowed
    assert decision.columns_allowed == () and decision.columns_denied == ("body", "post_id")
    assert batches == [3]


# --- the audit line -----------------------------------------------------------------------


def test_each_decision_is_one_audit_line(ac: AccessControl) -> None:
    dataset = DATASETS["validated_posts"]
    decision = ac.authorize(
        researcher(),
        "download",
        dataset,
        version=2,
        snapshot_id=2**62 + 1,  # Iceberg ids are 64-bit
        purpose="research",
        columns=["subject_id", "body"],
    )
    ac.authorize_namespace(STEWARD, "query", "bronze.students")
    first, second = ac.audit.entries()
    assert first["hash"] == decision.audit_hash
    assert first["resource"] == "dataset/validated_posts/v2"
    assert first["snapshot_id"] == 2**62 + 1
    assert first["decision"] == "allow" and first["columns_denied"] == ["subject_id"]
    assert first["policy_set_hash"] == ac.policy_set_hash
    assert first["principal"] == "alice" and first["purpose"] == "research"
    assert first["channel"] == "api" and first["token_id"] == "t"
    assert second["resource"] == "table/bronze.students" and second["prev"] == first["hash"]
    assert ac.audit.verify().ok


# --- properties ---------------------------------------------------------------------------

ROLE_NAMES = ("researcher", "steward", "public", "anonymous")
PURPOSES = ("research", "model_training", "longitudinal_research", "marketing")
CANDIDATES = [*DATASETS.values(), *(in_bronze(d) for d in DATASETS.values())]


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    dataset = draw(st.sampled_from(CANDIDATES))
    role = draw(st.sampled_from(ROLE_NAMES))
    principal = Principal(
        name="anonymous" if role == "anonymous" else "p",
        role=role,
        institution=draw(st.sampled_from((PUBLISHER, "Other University"))),
        purposes=frozenset(draw(st.sets(st.sampled_from(PURPOSES)))),
        duas=frozenset(draw(st.sets(st.sampled_from((DUA, "other-dua"))))),
    )
    action = draw(st.sampled_from(("read_metadata", "download", "export", "query")))
    columns = draw(st.lists(st.sampled_from(list(dataset.columns)), unique=True))
    return {
        "principal": principal,
        "action": action,
        "dataset": dataset,
        "purpose": draw(st.sampled_from((None, *PURPOSES))),
        "consent_state": draw(st.sampled_from(("current", "withdrawn"))),
        "channel": draw(st.sampled_from(("api", "cli"))),
        # columns are values: only data actions decide them (read_metadata refuses them)
        "columns": [] if action == "read_metadata" else columns,
    }


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(request=requests())
def test_properties_of_every_decision(ac: AccessControl, request: dict[str, Any]) -> None:
    decision = ac.authorize(
        request["principal"],
        request["action"],
        request["dataset"],
        purpose=request["purpose"],
        consent_state=request["consent_state"],
        columns=request["columns"],
        channel=request["channel"],
    )
    principal, dataset = request["principal"], request["dataset"]
    # every requested column is answered, once
    assert sorted(decision.columns_allowed + decision.columns_denied) == sorted(request["columns"])
    # a denied dataset never yields a column
    if not decision.allowed:
        assert decision.columns_allowed == ()
        assert decision.reasons
    # nobody gets bronze through the API; outside it, only stewards
    if dataset.namespace == "bronze" and (
        request["channel"] == "api" or principal.role != "steward"
    ):
        assert not decision.allowed
    for column in decision.columns_allowed:
        rule = dataset.access.column(column)
        # a non-steward never gets a restricted column
        assert rule.sensitivity != "restricted" or principal.role == "steward"
        # a quasi-identifier only for a purpose it names
        assert rule.sensitivity != "quasi_identifier" or request["purpose"] in rule.purposes
    if decision.allowed and request["action"] != "read_metadata":
        assert principal.role in ("researcher", "steward")
        assert request["purpose"] in principal.purposes & set(dataset.access.purposes)
        assert dataset.dua.id in principal.duas
        assert request["consent_state"] == "current"
        assert (
            dataset.access.tier == "open"
            or principal.role == "steward"
            or principal.institution == dataset.publisher.name
        )
    line = json.loads(ac.audit.path.read_text().splitlines()[-1])
    assert line["hash"] == decision.audit_hash
    assert line["decision"] == ("allow" if decision.allowed else "deny")


def test_metadata_reads_grant_no_columns_and_a_pasted_token_is_not_repeated(
    ac: AccessControl,
) -> None:
    dataset = DATASETS["validated_posts"]
    with pytest.raises(ValueError, match="data action"):
        ac.authorize(ANONYMOUS, "read_metadata", dataset, columns=list(dataset.columns)[:2])
    for secret in ("spanda_" + "x" * 43, "spanda_Ab-9" + "y" * 39):
        decision = ac.authorize(ANONYMOUS, "download", dataset, purpose=secret)
        assert not decision.allowed
        assert secret not in " ".join(decision.reasons)
        assert secret not in ac.audit.path.read_text()
