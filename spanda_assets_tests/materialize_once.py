"""Materialize assets in a fresh process (for the crash tests): `python -m ... KEY [KEY ...]`.

The whole run executes in this one process, so SPANDA_FAULT's SIGKILL takes
the run down at the named point exactly as a lost machine would. Configuration
comes from the environment as in production.
"""

from __future__ import annotations

import sys

import dagster as dg

from spanda_assets.definitions import defs


def main(keys: list[str]) -> int:
    job = defs().resolve_job_def("materialize_platform")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey.from_user_string(k) for k in keys],
            raise_on_error=False,
        )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
