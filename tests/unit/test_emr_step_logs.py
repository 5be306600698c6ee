"""EmrStepSensorWithLogs against moto's in-process EMR and S3: a failed step's task log shows its
reason, its logs' last lines and their URIs; late, absent or unreadable logs never hide the failure.

moto never moves a step, so each test sets the step's state in moto's backend itself; moto's
DescribeStep has no FailureDetails, so one test adds them to its answer. The emulator's own
FailureDetails and log layout are checked in tests/emr_emulator/test_failure_scenarios.py.
"""

from __future__ import annotations

import gzip
from unittest import mock

import pytest

from tests.unit.conftest import MOTO_REGION as REGION

LOGS_BUCKET = "step-logs"
LOG_URI = f"s3n://{LOGS_BUCKET}/emr/"


@pytest.fixture
def clients(moto_aws):
    import boto3

    emr = boto3.client("emr", region_name=REGION)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=LOGS_BUCKET)
    return emr, s3


def failed_step(emr, state: str = "FAILED") -> tuple[str, str]:
    """A cluster with LogUri and one step, moved to `state` in moto's backend."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    cluster_id = emr.run_job_flow(
        Name="failing",
        ReleaseLabel="emr-spark-8.0.0",
        LogUri=LOG_URI,
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]  # fmt: skip
    jar_step = {"Jar": "command-runner.jar", "Args": ["spark-submit", "job.py"]}
    step = {"Name": "job", "ActionOnFailure": "CONTINUE", "HadoopJarStep": jar_step}
    (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"]
    cluster = emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[cluster_id]
    next(s for s in cluster.steps if s.id == step_id).state = state
    return cluster_id, step_id


def ship(s3, cluster_id: str, step_id: str, name: str, text: str) -> str:
    key = f"emr/{cluster_id}/steps/{step_id}/{name}.gz"
    s3.put_object(Bucket=LOGS_BUCKET, Key=key, Body=gzip.compress(text.encode()))
    return f"s3://{LOGS_BUCKET}/{key}"


def sensor(cluster_id: str, step_id: str, **kwargs):
    from orchestration.emr_step_logs import EmrStepSensorWithLogs

    defaults = {"log_wait_seconds": 0.5, "log_poll_seconds": 0.1, "log_tail_lines": 3}
    return EmrStepSensorWithLogs(
        task_id="wait_for_step",
        job_flow_id=cluster_id,
        step_id=step_id,
        aws_conn_id=None,
        region_name=REGION,
        **{**defaults, **kwargs},
    )


def context():
    return {"ti": mock.MagicMock()}


def logged(capsys) -> str:
    """What the task logged: Airflow's structlog writes task logs to stdout here."""
    captured = capsys.readouterr()
    return captured.out + captured.err


STDERR = "\n".join(
    [
        "26/12/03 INFO SparkContext: Running Spark version 4.0.2",
        "Traceback (most recent call last):",
        '  File "data_processor.py", line 9, in main',
        "ValueError: raw day 2026-02-27 holds 2 lines, its manifest claims 5",
    ]
)


def test_a_failed_step_logs_its_reason_then_the_log_tails_then_the_uris(clients, capsys):
    from airflow.providers.common.compat.sdk import AirflowException

    emr, s3 = clients
    cluster_id, step_id = failed_step(emr)
    stderr_uri = ship(s3, cluster_id, step_id, "stderr", STDERR)
    ship(s3, cluster_id, step_id, "controller", "exit code 1, 12.0 s, step FAILED")
    details = {"Reason": "ValueError", "Message": "ValueError: raw day ...", "LogFile": stderr_uri}
    describe = emr.describe_step

    def with_failure_details(**kwargs):
        answer = describe(**kwargs)
        answer["Step"]["Status"]["FailureDetails"] = details
        return answer

    task = sensor(cluster_id, step_id)
    patched = mock.patch.object(task.hook.conn, "describe_step", side_effect=with_failure_details)
    with patched, pytest.raises(AirflowException, match="ValueError"):
        task.poke(context())

    text = logged(capsys)
    order = [
        "FailureDetails:",
        "Reason: ValueError",
        f"LogFile: {stderr_uri}",
        f"Last 3 lines of {stderr_uri}:",
        "| ValueError: raw day 2026-02-27 holds 2 lines",
        "controller.gz:",
        "| exit code 1, 12.0 s, step FAILED",
        "Full logs:",
        f"  {stderr_uri}",
    ]
    positions = [text.find(part) for part in order]
    assert -1 not in positions, text
    assert positions == sorted(positions), text
    # Only the tail: the first stderr line is beyond the last 3.
    assert "Running Spark version" not in text


def test_logs_that_have_not_arrived_are_named_with_their_uri(clients, capsys):
    from airflow.providers.common.compat.sdk import AirflowException

    emr, _ = clients
    cluster_id, step_id = failed_step(emr)
    task = sensor(cluster_id, step_id, log_wait_seconds=0.3)
    with pytest.raises(AirflowException, match="EMR job failed"):
        task.poke(context())

    stderr_uri = f"s3://{LOGS_BUCKET}/emr/{cluster_id}/steps/{step_id}/stderr.gz"
    text = logged(capsys)
    assert "not in S3 yet after 0 s (EMR ships them within about 5 minutes)" in text
    assert f"look later at {stderr_uri}" in text


def test_logs_that_arrive_while_waiting_are_read():
    from orchestration.emr_step_logs import StepLogReport

    calls = []

    class LateS3:
        def get_object(self, Bucket, Key):  # noqa: N803 (boto3's names)
            from botocore.exceptions import ClientError

            calls.append(Key)
            if len(calls) < 3:
                raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
            return {"Body": mock.Mock(read=lambda: gzip.compress(b"boom\n"))}

    emr = mock.Mock()
    emr.describe_step.return_value = {"Step": {"Name": "job", "Status": {"State": "FAILED"}}}
    emr.describe_cluster.return_value = {"Cluster": {"LogUri": "s3://logs/"}}
    clock = iter(range(100))
    report = StepLogReport(emr, LateS3(), wait_seconds=10, poll_seconds=1,
                           sleep=lambda s: None, clock=lambda: next(clock))  # fmt: skip
    lines = report.lines("j-1", "s-1")
    assert "Last 1 lines of s3://logs/j-1/steps/s-1/stderr.gz:" in lines
    assert "  | boom" in lines
    assert calls[:3] == ["j-1/steps/s-1/stderr.gz"] * 3


def test_an_unreadable_log_bucket_is_reported_and_the_failure_still_raised(clients, capsys):
    from airflow.providers.common.compat.sdk import AirflowException

    emr, s3 = clients
    cluster_id, step_id = failed_step(emr)
    s3.delete_bucket(Bucket=LOGS_BUCKET)
    task = sensor(cluster_id, step_id)
    with pytest.raises(AirflowException, match="EMR job failed"):
        task.poke(context())
    text = logged(capsys)
    assert "Could not read s3://step-logs/" in text
    assert "NoSuchBucket" in text


def test_an_error_while_reporting_never_hides_the_failure(clients, capsys):
    from airflow.providers.common.compat.sdk import AirflowException

    emr, _ = clients
    cluster_id, step_id = failed_step(emr)
    task = sensor(cluster_id, step_id)
    broken = mock.patch.object(task, "_s3_client", side_effect=RuntimeError("no S3 connection"))
    with broken, pytest.raises(AirflowException, match="EMR job failed"):
        task.poke(context())
    text = logged(capsys)
    assert "Could not read why EMR step" in text
    assert "no S3 connection" in text


def test_the_deferrable_path_logs_the_same_before_failing(clients, capsys):
    from airflow.providers.common.compat.sdk import AirflowException

    emr, s3 = clients
    cluster_id, step_id = failed_step(emr)
    stderr_uri = ship(s3, cluster_id, step_id, "stderr", STDERR)
    task = sensor(cluster_id, step_id, deferrable=True)
    event = {"status": "error", "message": "Step.Status.State: FAILED"}
    with pytest.raises(AirflowException, match="Error while running job"):
        task.execute_complete(context(), event)
    text = logged(capsys)
    assert f"Last 3 lines of {stderr_uri}:" in text
    assert "ValueError: raw day 2026-02-27" in text


def test_a_successful_step_reads_no_logs(clients):
    emr, _ = clients
    cluster_id, step_id = failed_step(emr, "COMPLETED")
    task = sensor(cluster_id, step_id)
    with mock.patch.object(task, "log_step_failure") as report:
        assert task.poke(context()) is True
        task.execute_complete(context(), {"status": "success"})
    report.assert_not_called()


def test_a_step_still_running_at_the_timeout_says_so_without_logs(clients, capsys):
    from airflow.providers.common.compat.sdk import AirflowException

    emr, _ = clients
    cluster_id, step_id = failed_step(emr, "RUNNING")
    task = sensor(cluster_id, step_id, deferrable=True)
    with pytest.raises(AirflowException):
        task.execute_complete(context(), {"status": "error", "message": "max attempts"})
    text = logged(capsys)
    timed_out = (
        f"EMR step {step_id} on cluster {cluster_id} did not end within the sensor's timeout"
    )
    assert timed_out in text
    assert f"EMR step {step_id} ('job') on cluster {cluster_id} is RUNNING." in text
    assert "Full logs:" not in text


def test_airflow_ending_the_deferral_at_the_timeout_logs_where_the_step_is(clients, capsys):
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout
    from airflow.sdk.bases.operator import TRIGGER_FAIL_REPR, TriggerFailureReason

    emr, _ = clients
    cluster_id, step_id = failed_step(emr, "RUNNING")
    task = sensor(cluster_id, step_id, deferrable=True, timeout=240)
    # What the scheduler resumes a deferred task with when its trigger_timeout has passed.
    timed_out = {"error": TriggerFailureReason.TRIGGER_TIMEOUT}
    with pytest.raises(AirflowSensorTimeout):
        task.resume_execution(TRIGGER_FAIL_REPR, timed_out, context())
    text = logged(capsys)
    assert f"on cluster {cluster_id} did not end within the sensor's timeout (240 s)." in text
    assert f"EMR step {step_id} ('job') on cluster {cluster_id} is RUNNING." in text


def test_a_poking_sensor_at_its_timeout_logs_where_the_step_is(clients, capsys):
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    emr, _ = clients
    cluster_id, step_id = failed_step(emr, "RUNNING")
    task = sensor(cluster_id, step_id, timeout=0.5, poke_interval=0.1)
    with pytest.raises(AirflowSensorTimeout):
        task.execute(context())
    text = logged(capsys)
    assert "did not end within the sensor's timeout (0 s)." in text
    assert f"EMR step {step_id} ('job') on cluster {cluster_id} is RUNNING." in text


@pytest.mark.parametrize(
    ("log_uri", "prefix"),
    [
        ("s3://logs/emr/", "s3://logs/emr/j-1/steps/s-1/"),
        ("s3n://logs/emr", "s3://logs/emr/j-1/steps/s-1/"),
        ("s3://logs", "s3://logs/j-1/steps/s-1/"),
    ],
)
def test_step_log_prefix_follows_emrs_layout(log_uri, prefix):
    from orchestration.emr_step_logs import step_log_prefix

    assert step_log_prefix(log_uri, "j-1", "s-1") == prefix
