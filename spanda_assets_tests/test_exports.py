"""OneRoster and xAPI exports of the demo's gold tables: they round-trip through
`spanda validate`, hold nothing but gold's values, are skipped when nothing changed,
replace (and delete) the previous export when gold changed, and survive a crash."""

from __future__ import annotations

import csv
import json
import random
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from click.testing import CliRunner

from spanda_assets.cli import main
from spanda_assets.definitions import defs
from spanda_assets.lib.exports import EXPORT_KINDS, ExportInfo, latest_export, remove_exports
from spanda_assets.lib.exports import build as build_module
from spanda_assets.lib.exports import oneroster as oneroster_module
from spanda_assets.lib.exports import store as store_module
from spanda_assets.lib.exports.build import build_export
from spanda_assets.lib.exports.common import year_end, year_start
from spanda_assets.lib.exports.oneroster import HEADERS, Org, write_oneroster
from spanda_assets.lib.exports.spill import SortedKeys
from spanda_assets.lib.exports.store import EXPORT_SOURCES
from spanda_assets.lib.exports.xapi import COMMENTED_ID, SCORED_ID, statement_id
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.writes import MAIN
from spanda_assets_tests.test_privacy_e2e import run_all

KEYS = [dg.AssetKey(["export", kind]) for kind in EXPORT_KINDS]
PII_COLUMNS = (
    "username",
    "userIds",
    "givenName",
    "familyName",
    "middleName",
    "identifier",
    "email",
    "sms",
    "phone",
    "password",
)
NEW_SUBJECT = "ps_" + "f" * 32
NEW_ENROLLMENT = "ps_" + "e" * 32
NEW_POST = "ps_" + "a" * 32


@pytest.fixture
def demo_env(tiny_source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    return tiny_source


def _export(
    instance: dg.DagsterInstance, keys: list[dg.AssetKey] = KEYS
) -> dg.ExecuteInProcessResult:
    """The export assets as the `publish_datasets` job runs them (the daemon's wiring)."""
    job = defs().resolve_job_def("publish_datasets")
    return job.execute_in_process(instance=instance, asset_selection=keys, raise_on_error=False)


def _events(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, dict[str, Any]]]:
    """Per kind: the metadata of its materialization and of its observation in the run."""
    out: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in EXPORT_KINDS}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        out[mat.asset_key.path[-1]]["materialized"] = {k: v.value for k, v in mat.metadata.items()}
    for event in result.get_asset_observation_events():
        obs = event.asset_observation_data.asset_observation
        out[obs.asset_key.path[-1]]["observed"] = {k: v.value for k, v in obs.metadata.items()}
    return out


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {
        c.asset_key.path[-1]: c
        for c in result.get_asset_check_evaluations()
        if c.check_name == "round_trip_valid"
    }


def _latest(kind: str) -> ExportInfo:
    info = latest_export(kind)
    assert info is not None, f"no {kind} export"
    return info


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _validate_cli(path: Path) -> tuple[int, dict[str, Any]]:
    out = CliRunner().invoke(main, ["validate", str(path), "--json"])
    return out.exit_code, json.loads(out.output)


def _gold(catalog: Any, name: str, snapshot_id: int) -> pa.Table:
    return catalog.load_table(("gold", name)).scan(snapshot_id=snapshot_id).to_arrow()


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def test_exports_round_trip_through_spanda_validate_and_hold_only_gold(
    demo_env: str, spanda_home: Path, tmp_path: Path
) -> None:
    catalog = open_catalog(CatalogConfig.from_env())
    with dg.instance_for_test() as instance:
        assert run_all(instance).success
        first = _export(instance)
        assert first.success
        events = _events(first)
        checks = _checks(first)
        for kind in EXPORT_KINDS:
            md = events[kind]["materialized"]
            assert md["outcome"] == "exported", md
            assert checks[kind].passed and checks[kind].metadata["errors"].value == 0
            info = _latest(kind)
            assert md["key"] == info.key and md["path"] == str(info.directory)
            assert md["sha256"] == {f.name: f.sha256 for f in info.files}
            assert {f.name for f in info.files} >= {"dataset_description.json"}
            assert info.sources == {
                t: catalog.load_table(tuple(t.split("."))).snapshot_by_name(MAIN).snapshot_id
                for t in EXPORT_SOURCES[kind]
            }

        roster, xapi = _latest("oneroster"), _latest("xapi")
        assert set(roster.datasets) == {"validated_enrollments", "validated_assessments"}
        assert set(xapi.datasets) == {"validated_posts", "validated_assessments"}

        # the round trip: the real CLI accepts both packages with zero errors
        code, report = _validate_cli(roster.directory)
        assert code == 0, report["issues"][:5]
        assert report["valid"] and report["summary"] == {"errors": 0, "warnings": 0}
        assert report["formats"] == ["OneRoster 1.1"]
        code, report = _validate_cli(xapi.directory)
        assert code == 0 and report["valid"] and report["formats"] == ["xAPI"]
        # no warning either: identifiers (activity IRIs) are not scanned as free text
        assert report["summary"] == {"errors": 0, "warnings": 0}, report["issues"][:3]

        _only_gold_values(catalog, roster, xapi)
        _no_bronze_values(catalog, roster, xapi)

        # the round trip can fail: a package without a required column is rejected
        broken = tmp_path / "broken"
        broken.mkdir()
        for f in roster.files:
            (broken / f.name).write_bytes(roster.file(f.name).read_bytes())
        users = _csv(broken / "users.csv")
        header = [h for h in HEADERS["users"] if h != "role"]
        with (broken / "users.csv").open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, header, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(users)
        code, report = _validate_cli(broken)
        assert code == 1 and not report["valid"]
        assert any(
            i["code"] == "CSV_COLUMN_MISSING"
            and i["location"] == "users.csv"
            and i["column"] == "role"
            for i in report["issues"]
        ), report["issues"]

        # nothing changed: nothing written, the same files, the check still reported
        before = {k: _latest(k) for k in EXPORT_KINDS}
        before_bytes = {
            k: {f.name: before[k].file(f.name).read_bytes() for f in before[k].files}
            for k in EXPORT_KINDS
        }
        again = _export(instance)
        assert again.success
        events = _events(again)
        checks = _checks(again)
        for kind in EXPORT_KINDS:
            assert "materialized" not in events[kind]
            assert events[kind]["observed"]["outcome"] == "unchanged"
            assert checks[kind].passed
            now = _latest(kind)
            assert now.key == before[kind].key and now.created == before[kind].created
            assert {f.name: now.file(f.name).read_bytes() for f in now.files} == before_bytes[kind]

        # the same snapshots give the same bytes, so statement ids are stable across runs
        for kind in EXPORT_KINDS:
            other = build_export(kind, catalog, root=tmp_path / "again")
            assert other.action == "exported" and other.info is not None
            assert other.key == before[kind].key
            for f in before[kind].files:
                assert (
                    other.info.file(f.name).read_bytes() == before[kind].file(f.name).read_bytes()
                )
        posts = _jsonl(xapi.file("posts.jsonl"))
        for statement in posts:
            row = statement["context"]["extensions"][
                "http://127.0.0.1:8000/xapi/extensions/source-row"
            ]
            table, _, key = row.rpartition("/")
            assert statement["id"] == statement_id(table, key, COMMENTED_ID)


def _only_gold_values(catalog: Any, roster: ExportInfo, xapi: ExportInfo) -> None:
    """Every identifier in the exports is a gold key or pseudonym at the exported snapshot."""
    s = roster.sources
    enrollments = _gold(catalog, "validated_enrollments", s["gold.validated_enrollments"])
    assessments = _gold(catalog, "validated_assessments", s["gold.validated_assessments"])
    subjects = set(enrollments["subject_id"].to_pylist()) | set(
        assessments["subject_id"].to_pylist()
    )
    users = _csv(roster.file("users.csv"))
    assert {u["sourcedId"] for u in users} == subjects
    assert all(not u[c] for u in users for c in PII_COLUMNS), "a personal column holds a value"
    assert {u["role"] for u in users} <= {"student", "teacher", "aide"}
    rows = _csv(roster.file("enrollments.csv"))
    assert {r["sourcedId"] for r in rows} == set(enrollments["enrollment_id"].to_pylist())
    assert {r["userSourcedId"] for r in rows} <= subjects
    assert {r["role"] for r in rows} <= {"student", "teacher"}
    results = _csv(roster.file("results.csv"))
    assert {r["sourcedId"] for r in results} == set(assessments["result_id"].to_pylist())
    years = set(assessments["submitted_at_year"].to_pylist()) - {None}
    assert {r["scoreDate"] for r in results} <= {year_start(y) for y in years} | {""}
    for name in HEADERS:
        with roster.file(f"{name}.csv").open(newline="", encoding="utf-8") as f:
            assert tuple(next(csv.reader(f))) == HEADERS[name], name

    p = xapi.sources
    posts = _gold(catalog, "validated_posts", p["gold.validated_posts"])
    scored = _gold(catalog, "validated_assessments", p["gold.validated_assessments"])
    statements = _jsonl(xapi.file("posts.jsonl"))
    assert len(statements) == posts.num_rows
    assert {st["actor"]["account"]["name"] for st in statements} <= set(
        posts["subject_id"].to_pylist()
    )
    assert {st["result"]["response"] for st in statements if "result" in st} <= set(
        posts["body"].to_pylist()
    )
    assert {st["verb"]["id"] for st in statements} == {COMMENTED_ID}
    results_st = _jsonl(xapi.file("assessments.jsonl"))
    assert len(results_st) == scored.num_rows
    assert {st["verb"]["id"] for st in results_st} == {SCORED_ID}
    by_id = {r["result_id"]: r for r in scored.to_pylist()}
    for st in results_st:
        row = by_id[
            st["context"]["extensions"][
                "http://127.0.0.1:8000/xapi/extensions/source-row"
            ].rpartition("/")[2]
        ]
        score = st["result"]["score"]
        assert score["raw"] == float(row["score"]) and score["max"] == float(row["max_score"])
        assert score["scaled"] == pytest.approx(float(row["score"]) / float(row["max_score"]))
        assert st["actor"] == {
            "objectType": "Agent",
            "account": {"homePage": "http://127.0.0.1:8000", "name": row["subject_id"]},
        }
    keys = {k for st in statements + results_st for k in _keys(st)}
    assert "mbox" not in keys and "mbox_sha1sum" not in keys


def _no_bronze_values(catalog: Any, roster: ExportInfo, xapi: ExportInfo) -> None:
    """No direct identifier of the seed's bronze tables, and no bronze column, anywhere."""
    text = "\n".join(
        info.file(f.name).read_text(encoding="utf-8") for info in (roster, xapi) for f in info.files
    )
    students = catalog.load_table(("bronze", "students")).scan().to_arrow()
    courses = catalog.load_table(("bronze", "courses")).scan().to_arrow()
    found: list[str] = []
    for column in ("sourced_id", "email", "phone", "ssn", "street_address", "last_login_ip"):
        found += [f"{column}" for v in students[column].to_pylist() if v and str(v) in text]
    full_names = zip(
        students["given_name"].to_pylist(), students["family_name"].to_pylist(), strict=True
    )
    found += ["name" for g, f in full_names if f"{g} {f}" in text]
    for column in ("instructor_name", "instructor_email", "course_code"):
        found += [column for v in courses[column].to_pylist() if v and str(v) in text]
    assert not found, f"bronze values in the exports: {sorted(set(found))}"
    bronze_columns = set(students.column_names) | {
        "student_id",
        "given_name",
        "family_name",
        "instructor_name",
        "instructor_email",
    }
    json_keys = {
        k
        for f in ("posts.jsonl", "assessments.jsonl")
        for st in _jsonl(xapi.file(f))
        for k in _keys(st)
    }
    assert not json_keys & bronze_columns
    # the CSV headers are the spec's (checked above): its email and phone stay empty


def _append_gold(catalog: Any) -> None:
    """One new enrollment and one new post on gold's main (what the next chain run does)."""
    enrollments = catalog.load_table(("gold", "validated_enrollments"))
    row = {
        "enrollment_id": NEW_ENROLLMENT,
        "subject_id": NEW_SUBJECT,
        "course_id": 1,
        "role": "student",
        "begin_date_year": 2026,
        "end_date_year": None,
        "final_grade": None,
        "modified_at_year": 2026,
    }
    enrollments.append(pa.Table.from_pylist([row], schema=enrollments.schema().as_arrow()))
    posts = catalog.load_table(("gold", "validated_posts"))
    body = "A question about week 3, when someone has a moment."
    post = {
        "post_id": NEW_POST,
        "subject_id": NEW_SUBJECT,
        "course_id": 1,
        "body": body,
        "created_at_year": 2026,
        "body_length": len(body),
    }
    posts.append(pa.Table.from_pylist([post], schema=posts.schema().as_arrow()))


def test_new_gold_rows_replace_the_export_and_a_crash_leaves_the_old_one_intact(
    demo_env: str, spanda_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = open_catalog(CatalogConfig.from_env())
    with dg.instance_for_test() as instance:
        assert run_all(instance).success
        assert _export(instance).success
        old = {k: _latest(k) for k in EXPORT_KINDS}
        old_bytes = {
            k: {f.name: old[k].file(f.name).read_bytes() for f in old[k].files} for k in old
        }
        _append_gold(catalog)
        kind_dirs = {k: old[k].directory.parent for k in EXPORT_KINDS}

        # a mapping bug makes a package the validator rejects: it never becomes current,
        # the blocking check fails the run, and the staging folder is gone
        with monkeypatch.context() as m:
            m.setattr(oneroster_module, "USER_ROLE_BY_RANK", dict.fromkeys("012", "pupil"))
            rejected = _export(instance, [dg.AssetKey(["export", "oneroster"])])
        assert not rejected.success
        assert not rejected.get_asset_materialization_events()
        assert _events(rejected)["oneroster"]["observed"]["outcome"] == "rejected"
        check = _checks(rejected)["oneroster"]
        assert not check.passed
        users = {
            s
            for name in ("validated_enrollments", "validated_assessments")
            for s in catalog.load_table(("gold", name)).scan().to_arrow()["subject_id"].to_pylist()
        }
        # every user's role is refused, the 50 listed and those only counted
        assert check.metadata["errors_by_code"].value == {"CSV_VALUE_NOT_ALLOWED": len(users)}
        assert check.metadata["files_with_errors"].value == ["users.csv"]
        assert _latest("oneroster").key == old["oneroster"].key
        assert not list(kind_dirs["oneroster"].glob(".staging-*"))

        # OneRoster dies while writing; xAPI dies after its new package was moved in
        # place but before it was made current
        def boom(*args: Any, **kwargs: Any) -> Any:
            raise OSError("disk full (simulated)")

        with monkeypatch.context() as m:
            m.setattr(oneroster_module, "_users", boom)
            m.setattr(store_module, "write_pointer", boom)
            crashed = _export(instance)
        assert not crashed.success
        assert not crashed.get_asset_materialization_events()
        for kind in EXPORT_KINDS:
            now = _latest(kind)
            assert now.key == old[kind].key, "a crash changed what readers get"
            for name, data in old_bytes[kind].items():
                assert now.file(name).read_bytes() == data
            assert not list(kind_dirs[kind].glob(".staging-*"))

        # a hard crash (SIGKILL) would have left its staging folder, rows included
        stale = kind_dirs["oneroster"] / ".staging-deadbeef-0000"
        stale.mkdir()
        (stale / "users.csv").write_text("leftover\n")

        # the next run recovers: stale staging gone, new exports current, old ones deleted
        recovered = _export(instance)
        assert recovered.success
        events = _events(recovered)
        assert events["oneroster"]["materialized"]["outcome"] == "exported"
        assert events["oneroster"]["materialized"]["stale_staging_removed"] == 1
        assert events["xapi"]["materialized"]["outcome"] == "recovered"
        assert all(c.passed for c in _checks(recovered).values())
        assert not stale.exists()
        for kind in EXPORT_KINDS:
            new = _latest(kind)
            assert new.key != old[kind].key
            assert not old[kind].directory.exists(), "the previous export was kept"
            assert events[kind]["materialized"]["previous_exports_removed"] == [old[kind].key]
            kept = {p.name for p in kind_dirs[kind].iterdir() if not p.name.startswith(".")}
            assert kept == {new.key, "LATEST"}
        roster = _latest("oneroster")
        assert NEW_ENROLLMENT in {r["sourcedId"] for r in _csv(roster.file("enrollments.csv"))}
        assert NEW_SUBJECT in {r["sourcedId"] for r in _csv(roster.file("users.csv"))}
        posts = _jsonl(_latest("xapi").file("posts.jsonl"))
        assert any(st["actor"]["account"]["name"] == NEW_SUBJECT for st in posts)
        assert _validate_cli(roster.directory)[0] == 0

    # an erasure need not wait for the next run: the exports of a table go at once
    xapi_key = _latest("xapi").key
    assert remove_exports({"gold.validated_posts"}) == [f"xapi/{xapi_key}"]
    assert latest_export("xapi") is None
    assert latest_export("oneroster") is not None
    assert remove_exports() == [f"oneroster/{roster.key}"]
    assert latest_export("oneroster") is None


# ------------------------------------------------------------------ no lakehouse needed


def test_the_readers_list_of_sources_is_the_one_the_writers_read() -> None:
    assert {k: tuple(v) for k, v in build_module.SOURCES.items()} == EXPORT_SOURCES
    assert tuple(EXPORT_SOURCES) == EXPORT_KINDS


def test_years_become_dates_that_cover_the_year() -> None:
    assert (year_start(2026), year_end(2026), year_start(None)) == ("2026-01-01", "2026-12-31", "")


def test_sorted_keys_spill_to_disk_and_give_the_same_order(tmp_path: Path) -> None:
    rng = random.Random(3)
    keys = [
        "".join(rng.choices(string.ascii_letters + "é€", k=rng.randint(1, 6))) for _ in range(5000)
    ]
    expected = sorted(set(keys))
    for run_keys in (1, 97, 10_000):
        spill = SortedKeys(tmp_path / f"run{run_keys}", run_keys=run_keys)
        for start in range(0, len(keys), 333):
            spill.add(pa.array([*keys[start : start + 333], None]))
        assert list(spill.sorted_unique()) == expected
        assert (spill.runs > 1) == (run_keys < 5000)


def test_roles_map_to_onerosters_vocabularies(tmp_path: Path) -> None:
    """An aide is `aide` in users and a non-primary teacher in enrollments (enrollments
    know no aide); a user who is also a student anywhere is listed as a student."""
    enrollments = pa.record_batch(
        {
            "enrollment_id": ["e1", "e2", "e3"],
            "subject_id": ["ps_a", "ps_a", "ps_b"],
            "course_id": [1, 2, 2],
            "role": ["aide", "student", "aide"],
            "begin_date_year": [2025, 2026, None],
            "end_date_year": [2026, None, None],
        }
    )
    assessments = pa.record_batch(
        {
            "result_id": ["r1"],
            "subject_id": ["ps_c"],
            "course_id": [3],
            "assessment_name": ["Quiz, the first"],
            "score": [7.5],
            "max_score": [10.0],
            "submitted_at_year": [2026],
            "attempt_no": [1],
        }
    )
    out = tmp_path / "package"
    out.mkdir()
    rows, skipped = write_oneroster([enrollments], [assessments], out, tmp_path / "spill", Org("X"))
    assert skipped == {} and rows["users"] == 3 and rows["classes"] == 3
    users = {u["sourcedId"]: u["role"] for u in _csv(out / "users.csv")}
    assert users == {"ps_a": "student", "ps_b": "aide", "ps_c": "student"}
    got = {
        e["sourcedId"]: (e["role"], e["primary"], e["beginDate"], e["endDate"])
        for e in _csv(out / "enrollments.csv")
    }
    assert got == {
        "e1": ("teacher", "false", "2025-01-01", "2026-12-31"),
        "e2": ("student", "", "2026-01-01", ""),
        "e3": ("teacher", "false", "", ""),
    }
    (item,) = _csv(out / "lineItems.csv")
    assert (item["title"], item["resultValueMax"], item["classSourcedId"]) == (
        "Quiz, the first",
        "10.0",
        "class-3",
    )
    (result,) = _csv(out / "results.csv")
    assert (result["score"], result["lineItemSourcedId"]) == ("7.5", item["sourcedId"])
