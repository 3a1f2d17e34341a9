"""Where a run's steps execute: Dagster's default executor, or Ray jobs (SPANDA_EXECUTOR=ray).

With SPANDA_EXECUTOR=ray the code location's executor is dagster-ray's `ray_executor`:
each step of a launched run (UI, schedules, sensors, automation) is submitted as a
Ray job to the cluster RAY_ADDRESS names, and inside it the per-row stages fan their
batches out to Ray tasks on the same cluster (lib/scale.py); the step process keeps
doing the Iceberg commits. Unset, nothing changes: no executor is declared here.
`execute_in_process` (tests, `spanda demo`) runs every step in its own process either
way; the fan-out still goes to Ray there.

Secrets are not copied into the Ray jobs' environment (the dashboard shows it): the
cluster's own environment must hold them (a Kubernetes Secret, docs/kubernetes.md).
"""

import os

import dagster as dg

from spanda_assets import settings

# Copied into each step's Ray job when set here: where the state lives, what to read.
PASSED_ENV = ("DAGSTER_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "RAY_ADDRESS")
SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "CREDENTIAL", "PASSWORD")


def step_env_vars() -> list[str]:
    """Names of the variables each step's Ray job inherits from the launching process:
    the SPANDA_* settings, less anything that names a secret."""
    names = [n for n in sorted(os.environ) if n.startswith("SPANDA_") or n in PASSED_ENV]
    return [n for n in names if not any(w in n.removeprefix("SPANDA_") for w in SECRET_WORDS)]


def ray_step_executor() -> dg.ExecutorDefinition:
    """dagster-ray's executor on the cluster RAY_ADDRESS names (its job server is found
    through the head's GCS address, or through ray://<host>:10001)."""
    from dagster_ray import ray_executor

    from spanda_assets.lib.scale import ray_address

    return ray_executor.configured(
        {"ray": {"address": ray_address(), "env_vars": step_env_vars()}},
        name="spanda_ray_executor",
    )


@dg.definitions
def executor() -> dg.Definitions:
    if settings.executor() != settings.EXECUTOR_RAY:
        return dg.Definitions()
    return dg.Definitions(executor=ray_step_executor())
