"""Failure scenarios rehearsed offline: what the user of the aws DAGs sees when EMR goes wrong.

Each test plays one failure on the emulator and reads it the way the DAG's tasks do: the
provider's operators and our wait_for_step sensor (orchestration/emr_step_logs.py), through
boto3 and aiobotocore pointed at the emulator (EMR) and LocalStack (S3). The failures are real
where they can be (a step that exits with a Python error, a bootstrap script that does not
parse, a step that outlives its sensor); logs that arrive late use the emulator's test hook
(the `emulator:step-log-delay-seconds` cluster tag).
"""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest

from host_stack.emr_emulator.emulator import STEP_LOG_DELAY_TAG
from tests.emr_emulator.support import (
    CODE_BUCKET,
    LOGS_BUCKET,
    cluster_request,
    shell_step,
    step_status,
    wait_for_cluster,
    wait_for_steps_to_end,
)

REGION = "us-east-1"
FAILING_JOB = (
    "echo 'INFO starting the job'; "
    "echo 'Traceback (most recent call last):' >&2; "
    "echo '  File \"job.py\", line 3, in <module>' >&2; "
    "echo 'ValueError: 2026-01-15 holds 2 lines, its manifest claims 5' >&2; exit 1"
)


@pytest.fixture
def airflow_aws(emulator, monkeypatch):
    """The provider's hooks with no connection reach the emulator for EMR, LocalStack for S3."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_EMR", emulator.endpoint_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", emulator.localstack_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")  # pragma: allowlist secret (dummy)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def wait_for_step_sensor(cluster_id: str, step_id: str, **kwargs):
    from orchestration.emr_step_logs import EmrStepSensorWithLogs

    defaults = {"log_wait_seconds": 10, "log_poll_seconds": 0.5, "deferrable": True}
    return EmrStepSensorWithLogs(
        task_id="wait_for_step",
        job_flow_id=cluster_id,
        step_id=step_id,
        aws_conn_id=None,
        region_name=REGION,
        poke_interval=1,
        **{**defaults, **kwargs},
    )


def trigger_event(sensor) -> dict:
    """Run the sensor's trigger as the triggerer would, to its first event."""
    from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger

    trigger = EmrStepSensorTrigger(
        job_flow_id=sensor.job_flow_id,
        step_id=sensor.step_id,
        waiter_delay=1,
        waiter_max_attempts=sensor.max_attempts,
        aws_conn_id=None,
        region_name=REGION,
    )

    async def first() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first())


def task_log(capsys) -> str:
    """What the task logged: Airflow's structlog writes task logs to stdout here."""
    captured = capsys.readouterr()
    return captured.out + captured.err


def in_order(text: str, parts: list[str]) -> None:
    """Each part occurs in `text` after the one before it."""
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} not found after offset {at} in:\n{text}"
        at = found + len(part)


def test_a_step_whose_job_raises_puts_the_python_error_in_the_task_log(
    emr, emulator, airflow_aws, capsys
):
    from airflow.providers.common.compat.sdk import AirflowException

    cluster_id = emr.run_job_flow(**cluster_request(Name="raising-job"))["JobFlowId"]
    (step_id,) = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[shell_step("raising job", FAILING_JOB)]
    )["StepIds"]
    sensor = wait_for_step_sensor(cluster_id, step_id)
    event = trigger_event(sensor)
    assert event["status"] == "error", event
    capsys.readouterr()

    with pytest.raises(AirflowException, match="Error while running job"):
        sensor.execute_complete({"ti": mock.MagicMock()}, event)

    prefix = f"s3://{LOGS_BUCKET}/emr/{cluster_id}/steps/{step_id}/"
    in_order(
        task_log(capsys),
        [
            f"EMR step {step_id} ('raising job') on cluster {cluster_id} is FAILED.",
            "FailureDetails:",
            "Reason: ValueError",
            "Message: ValueError: 2026-01-15 holds 2 lines, its manifest claims 5",
            f"LogFile: {prefix}stderr.gz",
            f"Last 3 lines of {prefix}stderr.gz:",
            "| Traceback (most recent call last):",
            "| ValueError: 2026-01-15 holds 2 lines",
            f"{prefix}controller.gz:",
            "step FAILED",
            "Full logs:",
            f"{prefix}stderr.gz",
            f"{prefix}stdout.gz",
        ],
    )


def test_logs_that_arrive_late_are_named_then_read_once_there(emr, emulator, airflow_aws, capsys):
    from airflow.providers.common.compat.sdk import AirflowException

    delay = [{"Key": STEP_LOG_DELAY_TAG, "Value": "6"}]
    request = cluster_request(Name="late-logs", Tags=delay)
    cluster_id = emr.run_job_flow(**request)["JobFlowId"]
    (step_id,) = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[shell_step("raising job", FAILING_JOB)]
    )["StepIds"]
    wait_for_steps_to_end(emr, cluster_id)
    stderr_uri = f"s3://{LOGS_BUCKET}/emr/{cluster_id}/steps/{step_id}/stderr.gz"
    # EMR names the log file at once, before the file is there.
    assert step_status(emr, cluster_id, step_id)["FailureDetails"]["LogFile"] == stderr_uri
    capsys.readouterr()

    impatient = wait_for_step_sensor(cluster_id, step_id, log_wait_seconds=1, deferrable=False)
    with pytest.raises(AirflowException, match="ValueError"):
        impatient.poke({"ti": mock.MagicMock()})
    log = task_log(capsys)
    assert "Reason: ValueError" in log
    assert "not in S3 yet after 1 s (EMR ships them within about 5 minutes)" in log
    assert f"look later at {stderr_uri}" in log

    patient = wait_for_step_sensor(cluster_id, step_id, log_wait_seconds=30, deferrable=False)
    with pytest.raises(AirflowException, match="ValueError"):
        patient.poke({"ti": mock.MagicMock()})
    assert f"Last 3 lines of {stderr_uri}:" in task_log(capsys)


def test_a_failing_bootstrap_action_ends_the_cluster_and_the_task_log_says_why(
    emr, emulator, airflow_aws, capsys
):
    from airflow.providers.common.compat.sdk import AirflowException

    emulator.s3().put_object(
        Bucket=CODE_BUCKET, Key="bootstrap/scenario-broken.sh", Body=b"#!/bin/bash\nif then\n"
    )
    action = {
        "Name": "install requirements",
        "ScriptBootstrapAction": {"Path": f"s3://{CODE_BUCKET}/bootstrap/scenario-broken.sh"},
    }
    # As the DAG does: the step is sent before the cluster is up, so it waits PENDING.
    request = cluster_request(
        Name="broken-bootstrap",
        BootstrapActions=[action],
        Steps=[shell_step("job", "echo never runs")],
    )
    cluster_id = emr.run_job_flow(**request)["JobFlowId"]
    status = wait_for_cluster(emr, cluster_id, ("TERMINATED_WITH_ERRORS",))
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    (step,) = emr.list_steps(ClusterId=cluster_id)["Steps"]
    assert step["Status"]["State"] == "CANCELLED"
    capsys.readouterr()

    sensor = wait_for_step_sensor(cluster_id, step["Id"], deferrable=False)
    with pytest.raises(AirflowException, match="EMR job failed"):
        sensor.poke({"ti": mock.MagicMock()})
    log = task_log(capsys)
    assert "is CANCELLED" in log
    assert f"Cluster {cluster_id} is TERMINATED_WITH_ERRORS (BOOTSTRAP_FAILURE: " in log
    assert "bootstrap action 1 returned a non-zero return code" in log
    # No wait for logs a step that never ran cannot have.
    assert "The step never started, so it has no logs." in log


def test_a_step_past_its_timeout_fails_the_sensor_and_the_teardown_cancels_it(
    emr, emulator, airflow_aws, capsys
):
    from airflow.providers.amazon.aws.operators.emr import EmrTerminateJobFlowOperator
    from airflow.providers.common.compat.sdk import AirflowException

    cluster_id = emr.run_job_flow(**cluster_request(Name="slow-step"))["JobFlowId"]
    (step_id,) = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[shell_step("slow job", "sleep 600")]
    )["StepIds"]
    sensor = wait_for_step_sensor(cluster_id, step_id, max_attempts=3)
    event = trigger_event(sensor)
    assert event["status"] == "error", event
    capsys.readouterr()
    with pytest.raises(AirflowException, match="Error while running job"):
        sensor.execute_complete({"ti": mock.MagicMock()}, event)
    log = task_log(capsys)
    assert f"EMR step {step_id} ('slow job') on cluster {cluster_id} is RUNNING." in log
    assert "Full logs:" not in log

    teardown = EmrTerminateJobFlowOperator(
        task_id="terminate_cluster",
        job_flow_id=cluster_id,
        aws_conn_id=None,
        region_name=REGION,
        waiter_delay=1,
        waiter_max_attempts=30,
    )
    teardown.execute({"ti": mock.MagicMock()})
    status = wait_for_cluster(emr, cluster_id, ("TERMINATED",))
    assert status["StateChangeReason"]["Code"] == "USER_REQUEST"
    assert step_status(emr, cluster_id, step_id)["State"] == "CANCELLED"
