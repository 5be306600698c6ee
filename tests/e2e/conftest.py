"""Black-box end-to-end tests: they talk only to Airflow's REST API and to S3.

Nothing here knows how the stack was started (host mode, Docker Compose, or the aws environment):
the API comes from AIRFLOW_API_URL / AIRFLOW_USERNAME / AIRFLOW_PASSWORD, the buckets and the S3
endpoint from config (PIPELINE_ENV and its settings). Locally `nox -s e2e_local` starts the stack
and sets these (`nox -s e2e_aws_emulated` does the same for the aws DAGs on emulated AWS); by
hand: `eval "$(python -m host_stack env | sed 's/^/export /')"`.

E2E_DATE (default 2026-01-15) is the date both DAGs run for; E2E_RUN_TIMEOUT (seconds, default
900) bounds each DAG run; E2E_WAIT_RETRIES=1 waits out task retries instead of failing on the first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from config.config import Settings, get_settings
from host_stack.airflow import AirflowApi
from tests.e2e.emr_runs import EmulatorFaults
from tests.e2e.emr_scenarios import ScenarioRuns, started_scenarios


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def e2e_date() -> str:
    return os.environ.get("E2E_DATE", "2026-01-15")


@pytest.fixture(scope="session")
def progress(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """Print a line now, even while pytest captures output (state changes of the runs)."""
    reporter = pytestconfig.pluginmanager.getplugin("terminalreporter")
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def write(line: str) -> None:
        if reporter is None or capture is None:
            print(line, file=sys.__stderr__, flush=True)
            return
        # Outside pytest's capture, so the run's progress shows while the test is running.
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    return write


@pytest.fixture(scope="session")
def airflow_api() -> Iterator[AirflowApi]:
    url = os.environ.get("AIRFLOW_API_URL", "http://localhost:8080")
    username = os.environ.get("AIRFLOW_USERNAME", "admin")
    password = os.environ.get("AIRFLOW_PASSWORD")
    if not password:
        pytest.fail(
            "AIRFLOW_PASSWORD is not set; the e2e tests log in to the Airflow API at "
            f"{url} with AIRFLOW_USERNAME/AIRFLOW_PASSWORD (nox -s e2e_local sets them; by hand: "
            "`python -m host_stack env` prints them for the local stack)"
        )
    api = AirflowApi(url, username, password)
    yield api
    api.close()


@pytest.fixture(scope="session")
def s3(settings: Settings):
    import boto3

    return boto3.client("s3", **settings.boto3_client_kwargs())


@pytest.fixture(scope="session")
def emr(settings: Settings):
    """EMR's API where the DAGs reach it: the EMR emulator when EMR_ENDPOINT_URL is set."""
    import boto3

    return boto3.client("emr", **settings.boto3_client_kwargs("emr"))


@pytest.fixture(scope="session")
def emr_faults(settings: Settings) -> Iterator[EmulatorFaults]:
    """The EMR emulator's test hook (host_stack/emr_emulator/faults.py); skips on real EMR."""
    if settings.pipeline_env != "aws":
        pytest.skip("the EMR flow runs with PIPELINE_ENV=aws only (nox -s e2e_aws_emulated)")
    if not settings.emr_endpoint_url:
        pytest.skip("EMR is real AWS here (no EMR_ENDPOINT_URL): faults are armed on the EMR "
                    "emulator only (nox -s e2e_aws_emulated)")  # fmt: skip
    faults = EmulatorFaults(settings.emr_endpoint_url)
    if not faults.is_emulator():
        pytest.skip(f"EMR_ENDPOINT_URL {settings.emr_endpoint_url} is not the EMR emulator "
                    "(no /_emulator/health): its faults cannot be armed there")  # fmt: skip
    yield faults
    faults.close()


@pytest.fixture(scope="session")
def emr_scenarios(
    settings: Settings, airflow_api: AirflowApi, emr_faults: EmulatorFaults, s3, progress
) -> Iterator[ScenarioRuns]:
    """The EMR failure scenarios' runs, started at the first test that asks (emr_scenarios.py)."""
    with started_scenarios(settings, airflow_api, emr_faults, s3, progress) as runs:
        yield runs


@pytest.fixture(scope="session")
def arrow_fs(settings: Settings):
    """pyarrow's S3 filesystem on the same endpoint, for reading the Parquet back."""
    from pyarrow import fs

    kwargs: dict = {"region": settings.aws_region}
    if settings.aws_endpoint_url:
        scheme, _, host = settings.aws_endpoint_url.partition("://")
        kwargs.update(endpoint_override=host, scheme=scheme)
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        kwargs.update(
            access_key=settings.aws_access_key_id,
            secret_key=settings.aws_secret_access_key.get_secret_value(),
        )
    return fs.S3FileSystem(**kwargs)


@dataclass
class PipelineRuns:
    """The runs the tests made, in order, so later tests can find their logs."""

    runs: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture(scope="session")
def pipeline_runs() -> PipelineRuns:
    return PipelineRuns()


@pytest.fixture(scope="session")
def run_dag(
    airflow_api: AirflowApi,
    progress: Callable[[str], None],
    pipeline_runs: PipelineRuns,
) -> Callable[[str, str], str]:
    """Run a DAG for a date through the API and wait; on failure, fail with the task logs."""
    timeout = float(os.environ.get("E2E_RUN_TIMEOUT", "900"))
    wait_retries = os.environ.get("E2E_WAIT_RETRIES", "") == "1"

    def run(dag_id: str, day: str) -> str:
        airflow_api.wait_for_dag(dag_id)
        airflow_api.unpause(dag_id)
        run_id = airflow_api.run_for_date(dag_id, day)
        progress(f"{dag_id}: run {run_id} for {day}")
        pipeline_runs.runs.append((dag_id, run_id))
        result = airflow_api.wait_for_run(
            dag_id, run_id, timeout=timeout, report=progress, fail_on_retry=not wait_retries
        )
        if result["state"] != "success":
            pytest.fail(
                f"{dag_id} run {run_id} for {day} ended {result['state']}; failed tasks:\n"
                + airflow_api.failure_report(dag_id, run_id),
                pytrace=False,
            )
        return run_id

    return run
