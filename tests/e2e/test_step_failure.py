"""A Spark step that fails on its EMR cluster: the run fails, and the cluster is still terminated.

aws environment only (PIPELINE_ENV=aws: `nox -s e2e_aws_emulated`, or a deployed stack); locally
there is no cluster. The failure is a real one, not an injected exit code: the processing job
refuses a raw day whose _manifest.json does not match the lines it holds (it never publishes an
unreconciled day), so its step fails on the cluster. Black-box: Airflow's REST API for the run
and its tasks, EMR's API for the cluster and the step, S3 for the data, and the failing task's
log as the REST API serves it: it must say why (FailureDetails, the job's error in the step log's
last lines, the logs' URIs), so nobody has to leave Airflow to find out.

The step that outlives wait_for_step's timeout is one of the EMR scenarios
(tests/e2e/emr_scenarios.py): its run starts with them, and it is checked here, last, so its
wait overlaps the pipeline tests.
"""

from __future__ import annotations

import os

import pytest

from tests.e2e.emr_runs import FinishedRun, assert_nothing_left_running, in_order, write_raw_day
from tests.e2e.emr_scenarios import MAX_REHEARSED_STEP_TIMEOUT_SECONDS

PROCESSING_DAG = "data_processing"
JOB = "data_processor"
# A day of its own, so the pipeline tests' day is never touched.
CORRUPT_DAY = os.environ.get("E2E_CORRUPT_DATE", "2026-02-27")
LINES_WRITTEN, LINES_CLAIMED = 2, 5


def test_a_failed_step_fails_the_run_and_still_terminates_the_cluster(
    settings, airflow_api, progress, s3, emr
):
    if settings.pipeline_env != "aws":
        pytest.skip("the EMR flow runs with PIPELINE_ENV=aws only (nox -s e2e_aws_emulated)")
    write_raw_day(s3, settings, CORRUPT_DAY, lines=LINES_WRITTEN, claimed=LINES_CLAIMED)
    airflow_api.wait_for_dag(PROCESSING_DAG)
    airflow_api.unpause(PROCESSING_DAG)

    run_id = airflow_api.run_for_date(PROCESSING_DAG, CORRUPT_DAY)
    progress(f"{PROCESSING_DAG}: run {run_id} for {CORRUPT_DAY} (a corrupt raw day)")
    timeout = float(os.environ.get("E2E_RUN_TIMEOUT", "900"))
    run = airflow_api.wait_for_run(PROCESSING_DAG, run_id, timeout=timeout, report=progress)

    finished = FinishedRun.read(airflow_api, PROCESSING_DAG, run_id, run["state"])
    finished.assert_failed(
        create_cluster="success", add_step="success", wait_for_step="failed",
        terminate_cluster="success",
    )  # fmt: skip

    cluster_id = finished.cluster_id()
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["Status"]["State"] == "TERMINATED", cluster["Status"]
    # Terminated by Airflow's teardown (TerminateJobFlows), not by the step or a timeout.
    assert cluster["Status"]["StateChangeReason"]["Code"] == "USER_REQUEST"
    assert_nothing_left_running(emr, JOB, CORRUPT_DAY)
    (step,) = emr.list_steps(ClusterId=cluster_id)["Steps"]
    assert step["Status"]["State"] == "FAILED"
    assert step["Status"].get("FailureDetails"), step["Status"]

    report = f"{settings.processed_prefix}/reports/dt={CORRUPT_DAY}/quality_report.json"
    listed = s3.list_objects_v2(Bucket=settings.data_bucket, Prefix=report)
    assert listed.get("KeyCount", 0) == 0, f"s3://{settings.data_bucket}/{report} was published"

    # What the user sees in Airflow: the failing task's log says why, in this order.
    details = step["Status"]["FailureDetails"]
    log_prefix = f"{cluster['LogUri'].replace('s3n://', 's3://')}{cluster_id}/steps/{step['Id']}/"
    in_order(
        finished.log("wait_for_step"),
        [
            "FailureDetails:",
            f"Reason: {details['Reason']}",
            f"LogFile: {details['LogFile']}",
            "Last ",
            # The job's own error (spark_jobs/data_processor.py) from the step log's tail.
            "ReconciliationError",
            f"the raw _manifest.json says {LINES_CLAIMED} lines but {LINES_WRITTEN} were read",
            "Full logs:",
            f"{log_prefix}stderr.gz",
        ],
        "wait_for_step's log",
    )


def test_a_step_past_its_timeout_fails_the_wait_and_the_teardown_cancels_it(
    emr_scenarios, emr, settings
):
    scenario = emr_scenarios.planned.get("timeout")
    if scenario is None:
        pytest.skip(
            f"EMR_STEP_TIMEOUT_SECONDS is {settings.emr_step_timeout_seconds} s here; the "
            f"scenario waits out at most {MAX_REHEARSED_STEP_TIMEOUT_SECONDS} s (the host "
            "rehearsal sets it short)"
        )
    run = emr_scenarios.finished("timeout")

    run.assert_failed(
        create_cluster="success", add_step="success", wait_for_step="failed",
        terminate_cluster="success",
    )  # fmt: skip
    cluster = run.cluster(emr)
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
