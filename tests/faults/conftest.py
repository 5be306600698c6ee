"""Fault injection on the running local stack: `nox -s faults` starts it (ports from the
environment) and exports the Airflow login, as for tests/e2e, whose fixtures this reuses.

The tests also need the stack's own handle (host_stack.Stack, from the same environment) to find
the process to kill and to restart LocalStack; everything they check goes through Airflow's REST
API and S3.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from host_stack.airflow import COMPONENTS
from host_stack.stack import Stack, StackSettings
from tests.e2e.conftest import airflow_api, progress, s3, settings  # noqa: F401  (fixtures)

STACK_COMPONENTS = (
    "localstack",
    "spark-master",
    "spark-worker",
    *(f"airflow-{c}" for c in COMPONENTS),
)


@pytest.fixture(scope="session")
def stack(progress: Callable[[str], None]) -> Stack:  # noqa: F811
    """The running stack (same ports and state dir as `nox -s faults` used)."""
    stack = Stack(settings=StackSettings.from_env(), report=progress)
    running = stack.running()
    missing = [name for name in STACK_COMPONENTS if name not in running]
    if missing:
        pytest.fail(
            f"the local stack is not (fully) running in {stack.state_dir}: {missing} missing; "
            "run the fault tests with `nox -s faults`, which starts it"
        )
    if "host_stack.supervise" not in running["spark-worker"].command:
        pytest.fail(
            "the Spark worker runs without its supervisor (the stack was started by an older "
            "host_stack): `nox -s down`, then `nox -s faults`"
        )
    return stack
