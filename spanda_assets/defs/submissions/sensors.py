"""Watch the inbox; register each new or changed submission as a dynamic partition."""

import json

import dagster as dg

from spanda_assets.defs.submissions.assets import SUBMISSIONS, submission_job


@dg.sensor(
    name="submission_inbox",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=submission_job,
    description=(
        "Looks at the submissions inbox (SPANDA_INBOX: a folder, or an s3:// prefix; "
        "SPANDA_HOME/inbox by default). Each new or changed submission becomes a partition "
        "and a run that validates it and, if valid, ingests it."
    ),
)
def submission_inbox(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    from spanda_assets.lib.submissions.inbox import list_submissions

    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = {s.key: s.fingerprint for s in list_submissions()}
    changed = sorted(k for k, fp in current.items() if seen.get(k) != fp)
    if not changed:
        return dg.SkipReason("no new or changed submissions in the inbox")
    known = set(context.instance.get_dynamic_partitions(SUBMISSIONS.name or "submissions"))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                partition_key=k, run_key=f"{k}:{current[k]}", tags={"spanda/trigger": "inbox"}
            )
            for k in changed
        ],
        dynamic_partitions_requests=[
            SUBMISSIONS.build_add_request([k for k in changed if k not in known])
        ],
        cursor=json.dumps(current),
    )
