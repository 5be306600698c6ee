"""EMR going wrong under the aws DAGs, rehearsed offline: what the user sees in Airflow.

aws environment on the EMR emulator only (`nox -s e2e_aws_emulated`); against real EMR they skip,
as the faults are armed through the emulator's test hook (`POST /_emulator/faults`,
host_stack/emr_emulator/faults.py) for the clusters named for a scenario's day. The DAGs are
not changed: they send EMR what they always send. Each scenario has a day of its own, so the
pipeline tests' day and test_step_failure.py's are never touched.

The scenarios' runs are started together (their waits overlap), then each test checks its own,
black-box: Airflow's REST API (the run, its tasks, the failing task's log), EMR's API (the
cluster, its steps) and S3. Every one asserts that the run failed, that no cluster of the day is
left running, and that the failing task's log holds the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.emr_runs import (
    JOB_GROUPS,
    FinishedRun,
    assert_nothing_left_running,
    clusters_for_day,
    in_order,
    write_raw_day,
)

GENERATION_DAG = "data_generation"
PROCESSING_DAG = "data_processing"
BOOTSTRAP_ERROR = "ERROR: No matching distribution found for pyarrow==99.0.0"
REFUSAL = "Instance type m5.xlarge is not supported in the requested Availability Zone."
# The step-timeout scenario waits out EMR_STEP_TIMEOUT_SECONDS; the rehearsal sets it short.
MAX_REHEARSED_STEP_TIMEOUT_SECONDS = 900
# The late logs reach S3 this long after the sensor has stopped waiting for them.
LATE_LOGS_MARGIN_SECONDS = 60
RAW_LINES, RAW_LINES_CLAIMED = 2, 5


@dataclass(frozen=True)
class Scenario:
    """One failure: the DAG run for its day, and the faults armed for that day's clusters."""

    dag_id: str
    day: str
    faults: dict[str, Any]
    # The processing DAG first waits for a raw day; a corrupt one makes its step fail.
    needs_raw_day: bool = False

    @property
    def job(self) -> str:
        return JOB_GROUPS[self.dag_id]


def scenarios(settings) -> dict[str, Scenario]:
    step_timeout = settings.emr_step_timeout_seconds
    late = settings.emr_step_log_wait_seconds + LATE_LOGS_MARGIN_SECONDS
    planned = {
        "refused": Scenario(GENERATION_DAG, "2026-03-02", {"refuse_cluster": REFUSAL}),
        "bootstrap": Scenario(
            PROCESSING_DAG, "2026-03-03", {"bootstrap_failure": BOOTSTRAP_ERROR},
            needs_raw_day=True,
        ),
        "late_logs": Scenario(
            PROCESSING_DAG, "2026-03-04", {"step_log_delay_seconds": late}, needs_raw_day=True
        ),
        # The step's command would start long after the teardown has cancelled it.
        "timeout": Scenario(
            GENERATION_DAG, "2026-03-05", {"step_delay_seconds": step_timeout + 600}
        ),
    }  # fmt: skip
    if step_timeout > MAX_REHEARSED_STEP_TIMEOUT_SECONDS:
        del planned["timeout"]
    return planned


@dataclass
class ScenarioRuns:
    """The scenarios' runs, started together; `finished` waits for one and reads it."""

    airflow_api: Any
    progress: Callable[[str], None]
    planned: dict[str, Scenario]
    run_ids: dict[str, str] = field(default_factory=dict)
    done: dict[str, FinishedRun] = field(default_factory=dict)

    def finished(self, name: str) -> FinishedRun:
        if name not in self.run_ids:
            pytest.skip(f"scenario {name!r} was not started (see scenarios())")
        if name not in self.done:
            scenario = self.planned[name]
            timeout = float(os.environ.get("E2E_RUN_TIMEOUT", "900"))
            run = self.airflow_api.wait_for_run(
                scenario.dag_id, self.run_ids[name], timeout=timeout, report=self.progress
            )
            self.done[name] = FinishedRun.read(
                self.airflow_api, scenario.dag_id, self.run_ids[name], run["state"]
            )
        return self.done[name]


@pytest.fixture(scope="module")
def scenario_runs(settings, airflow_api, emr_faults, s3, progress) -> Iterator[ScenarioRuns]:
    planned = scenarios(settings)
    runs = ScenarioRuns(airflow_api, progress, planned)
    try:
        for scenario in planned.values():
            emr_faults.arm(scenario.day, **scenario.faults)
            if scenario.needs_raw_day:
                write_raw_day(
                    s3, settings, scenario.day, lines=RAW_LINES, claimed=RAW_LINES_CLAIMED
                )
        for dag_id in {scenario.dag_id for scenario in planned.values()}:
            airflow_api.wait_for_dag(dag_id)
            airflow_api.unpause(dag_id)
        # A new run each time (its ds the scenario's day): a cleared one would keep counting
        # its tries, and the retries' exponential backoff would stretch each rerun.
        now = datetime.now(UTC).strftime("%H:%M:%S")
        for name, scenario in planned.items():
            logical_date = f"{scenario.day}T{now}Z"
            runs.run_ids[name] = airflow_api.trigger(scenario.dag_id, logical_date)
            progress(f"{scenario.dag_id}: run {runs.run_ids[name]} for {scenario.day} ({name})")
        yield runs
    finally:
        # No scenario's run may outlive the module (nor its faults a later run of its day).
        for name in runs.run_ids:
            runs.finished(name)
        for scenario in planned.values():
            emr_faults.disarm(scenario.day)


def run_cluster(emr, run: FinishedRun) -> dict:
    """The cluster the run created (create_cluster's XCom), as EMR describes it."""
    return emr.describe_cluster(ClusterId=run.cluster_id())["Cluster"]


def test_a_cluster_refused_by_validation_fails_create_cluster_with_emrs_reason(scenario_runs, emr):
    scenario = scenario_runs.planned["refused"]
    run = scenario_runs.finished("refused")

    run.assert_failed(create_cluster="failed", add_step="upstream_failed")
    # RunJobFlow was refused every try: EMR never created a cluster, so none can be running.
    assert clusters_for_day(emr, scenario.job, scenario.day) == []
    in_order(
        run.log("create_cluster"),
        ["ValidationException", REFUSAL],
        "create_cluster's log",
    )


def test_a_failing_bootstrap_action_ends_the_cluster_and_the_wait_says_why(scenario_runs, emr):
    scenario = scenario_runs.planned["bootstrap"]
    run = scenario_runs.finished("bootstrap")

    run.assert_failed(create_cluster="success", add_step="success", wait_for_step="failed")
    cluster = run_cluster(emr, run)
    status = cluster["Status"]
    assert status["State"] == "TERMINATED_WITH_ERRORS", status
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE", status
    assert BOOTSTRAP_ERROR in status["StateChangeReason"]["Message"], status
    assert_nothing_left_running(emr, scenario.job, scenario.day)
    (step,) = emr.list_steps(ClusterId=cluster["Id"])["Steps"]
    assert step["Status"]["State"] == "CANCELLED", step["Status"]

    in_order(
        run.log("wait_for_step"),
        [
            f"EMR step {step['Id']}",
            "is CANCELLED.",
            f"Cluster {cluster['Id']} is TERMINATED_WITH_ERRORS (BOOTSTRAP_FAILURE: ",
            BOOTSTRAP_ERROR,
            "The step never started, so it has no logs.",
        ],
        "wait_for_step's log",
    )


def test_logs_that_arrive_late_are_named_in_the_task_log(scenario_runs, emr, s3, settings):
    scenario = scenario_runs.planned["late_logs"]
    run = scenario_runs.finished("late_logs")

    run.assert_failed(
        create_cluster="success", add_step="success", wait_for_step="failed",
        terminate_cluster="success",
    )  # fmt: skip
    cluster = run_cluster(emr, run)
    assert cluster["Status"]["StateChangeReason"]["Code"] == "USER_REQUEST", cluster["Status"]
    assert_nothing_left_running(emr, scenario.job, scenario.day)
    (step,) = emr.list_steps(ClusterId=cluster["Id"])["Steps"]
    assert step["Status"]["State"] == "FAILED", step["Status"]
    details = step["Status"]["FailureDetails"]

    wait = settings.emr_step_log_wait_seconds
    in_order(
        run.log("wait_for_step"),
        [
            "FailureDetails:",
            f"Reason: {details['Reason']}",
            f"LogFile: {details['LogFile']}",
            f"The step's logs are not in S3 yet after {wait} s",
            f"look later at {details['LogFile']}",
            "Full logs:",
        ],
        "wait_for_step's log",
    )
    # The URI the log names is where they do arrive, with the job's error in them.
    bucket, _, key = details["LogFile"].removeprefix("s3://").partition("/")
    deadline = time.monotonic() + scenario.faults["step_log_delay_seconds"] + 120
    while not s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"):
        assert time.monotonic() < deadline, f"{details['LogFile']} never arrived"
        time.sleep(2)


def test_a_step_past_its_timeout_fails_the_wait_and_the_teardown_cancels_it(
    scenario_runs, emr, settings
):
    scenario = scenario_runs.planned.get("timeout")
    if scenario is None:
        pytest.skip(
            f"EMR_STEP_TIMEOUT_SECONDS is {settings.emr_step_timeout_seconds} s here; the "
            f"scenario waits out at most {MAX_REHEARSED_STEP_TIMEOUT_SECONDS} s (the host "
            "rehearsal sets it short)"
        )
    run = scenario_runs.finished("timeout")

    run.assert_failed(
        create_cluster="success", add_step="success", wait_for_step="failed",
        terminate_cluster="success",
    )  # fmt: skip
    cluster = run_cluster(emr, run)
    # Terminated by the DAG's teardown (TerminateJobFlows), which cancelled the running step.
    assert cluster["Status"]["State"] == "TERMINATED", cluster["Status"]
    assert cluster["Status"]["StateChangeReason"]["Code"] == "USER_REQUEST", cluster["Status"]
    assert_nothing_left_running(emr, scenario.job, scenario.day)
    (step,) = emr.list_steps(ClusterId=cluster["Id"])["Steps"]
    assert step["Status"]["State"] == "CANCELLED", step["Status"]

    in_order(
        run.log("wait_for_step"),
        [
            f"EMR step {step['Id']} on cluster {cluster['Id']} did not end within the sensor's "
            f"timeout ({settings.emr_step_timeout_seconds} s).",
            f"EMR step {step['Id']}",
            "is RUNNING.",
        ],
        "wait_for_step's log",
    )
