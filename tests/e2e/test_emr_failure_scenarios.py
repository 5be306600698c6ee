"""EMR going wrong under the aws DAGs, rehearsed offline: what the user sees in Airflow.

aws environment on the EMR emulator only (`nox -s e2e_aws_emulated`); against real EMR they skip,
as the faults are armed through the emulator's test hook (`POST /_emulator/faults`,
host_stack/emr_emulator/faults.py) for the clusters named for a scenario's day. The DAGs are
not changed: they send EMR what they always send. Each scenario has a day of its own, so the
pipeline tests' day and test_step_failure.py's are never touched.

The scenarios (tests/e2e/emr_scenarios.py) start together here, then each test checks its own,
black-box: Airflow's REST API (the run, its tasks, the failing task's log), EMR's API (the
cluster, its steps) and S3. Every one asserts that the run failed, that no cluster of the day is
left running, and that the failing task's log holds the reason. The step past its timeout is
checked last, in test_step_failure.py, so its wait overlaps the pipeline tests.
"""

from __future__ import annotations

import time

from tests.e2e.emr_runs import assert_nothing_left_running, clusters_for_day, in_order
from tests.e2e.emr_scenarios import BOOTSTRAP_ERROR, REFUSAL


def test_a_cluster_refused_by_validation_fails_create_cluster_with_emrs_reason(emr_scenarios, emr):
    scenario = emr_scenarios.planned["refused"]
    run = emr_scenarios.finished("refused")

    run.assert_failed(create_cluster="failed", add_step="upstream_failed")
    # RunJobFlow was refused every try: EMR never created a cluster, so none can be running.
    assert clusters_for_day(emr, scenario.job, scenario.day) == []
    in_order(
        run.log("create_cluster"),
        ["ValidationException", REFUSAL],
        "create_cluster's log",
    )


def test_a_failing_bootstrap_action_ends_the_cluster_and_the_wait_says_why(emr_scenarios, emr):
    scenario = emr_scenarios.planned["bootstrap"]
    run = emr_scenarios.finished("bootstrap")

    # The teardown has nothing left to terminate, and says so instead of failing.
    run.assert_failed(
        create_cluster="success", add_step="success", wait_for_step="failed",
        terminate_cluster="success",
    )  # fmt: skip
    cluster = run.cluster(emr)
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
    in_order(
        run.log("terminate_cluster"),
        [
            f"Cluster {cluster['Id']} has already ended: ",
            "TERMINATED_WITH_ERRORS (BOOTSTRAP_FAILURE: ",
            BOOTSTRAP_ERROR,
            "Nothing to terminate.",
        ],
        "terminate_cluster's log",
    )


def test_logs_that_arrive_late_are_named_in_the_task_log(emr_scenarios, emr, s3, settings):
    scenario = emr_scenarios.planned["late_logs"]
    run = emr_scenarios.finished("late_logs")

    run.assert_failed(
        create_cluster="success", add_step="success", wait_for_step="failed",
        terminate_cluster="success",
    )  # fmt: skip
    cluster = run.cluster(emr)
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
