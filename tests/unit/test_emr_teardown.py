"""EmrTerminateClusterOperator against moto's in-process EMR: the teardown succeeds once the
cluster has ended, with or without errors, and fails while it has not.

moto ends clusters only as TERMINATED, so the tests set a cluster's state in moto's backend as
EMR would after a failed bootstrap action. The whole flow (the emulator's bootstrap failure,
the aws DAG's teardown) is in tests/e2e/test_emr_failure_scenarios.py.
"""

from __future__ import annotations

import pytest

from tests.unit.conftest import MOTO_REGION as REGION

BOOTSTRAP_MESSAGE = "bootstrap action 1 returned a non-zero return code"
# What the provider's trigger sends when its waiter meets TERMINATED_WITH_ERRORS.
WAITER_FAILURE = {
    "status": "error",
    "message": "Error while waiting for EMR Job Flow to terminate: Waiter encountered a terminal "
    "failure state: Cluster.Status.State: TERMINATED_WITH_ERRORS",
}


@pytest.fixture
def emr(moto_aws):
    import boto3

    return boto3.client("emr", region_name=REGION)


def cluster(emr, state: str | None = None, reason: str | None = None) -> str:
    """A cluster, moved to `state` with `reason` in moto's backend when given."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    cluster_id = emr.run_job_flow(
        Name="teardown",
        ReleaseLabel="emr-spark-8.0.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]  # fmt: skip
    fake = emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[cluster_id]
    if state is not None:
        fake.state = state
    if reason is not None:
        fake.last_state_change_reason = reason
    return cluster_id


def teardown(cluster_id: str, **kwargs):
    from orchestration.emr_teardown import EmrTerminateClusterOperator

    return EmrTerminateClusterOperator(
        task_id="terminate_cluster",
        job_flow_id=cluster_id,
        aws_conn_id=None,
        region_name=REGION,
        **kwargs,
    )


def logged(capsys) -> str:
    """What the task logged: Airflow's structlog writes task logs to stdout here."""
    captured = capsys.readouterr()
    return captured.out + captured.err


def state(emr, cluster_id: str) -> str:
    return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]


def test_a_cluster_that_ended_with_errors_while_terminating_is_a_successful_teardown(emr, capsys):
    cluster_id = cluster(emr, "TERMINATED_WITH_ERRORS", BOOTSTRAP_MESSAGE)
    task = teardown(cluster_id, deferrable=True)

    task.execute_complete({}, WAITER_FAILURE)

    text = logged(capsys)
    assert f"Cluster {cluster_id} has ended: TERMINATED_WITH_ERRORS" in text
    assert BOOTSTRAP_MESSAGE in text


def test_a_cluster_that_has_already_ended_is_not_terminated_again(emr, capsys):
    from unittest import mock

    cluster_id = cluster(emr, "TERMINATED_WITH_ERRORS", BOOTSTRAP_MESSAGE)
    task = teardown(cluster_id, deferrable=True)

    with mock.patch.object(task, "defer") as defer:
        task.execute({})

    defer.assert_not_called()
    text = logged(capsys)
    assert f"Cluster {cluster_id} has already ended: TERMINATED_WITH_ERRORS" in text
    assert "Nothing to terminate." in text


def test_a_cluster_not_ended_when_the_wait_gives_up_fails_the_teardown(emr):
    from airflow.providers.common.compat.sdk import AirflowException

    cluster_id = cluster(emr, "TERMINATING")
    task = teardown(cluster_id, deferrable=True)
    event = {"status": "error", "message": "Waiter has timed out"}

    with pytest.raises(AirflowException, match="Error terminating JobFlow"):
        task.execute_complete({}, event)


def test_a_running_cluster_is_terminated(emr):
    cluster_id = cluster(emr)
    assert state(emr, cluster_id) == "WAITING"

    teardown(cluster_id, deferrable=False).execute({"ti": None})

    assert state(emr, cluster_id) == "TERMINATED"


def test_a_successful_wait_is_a_successful_teardown(emr):
    cluster_id = cluster(emr)
    teardown(cluster_id, deferrable=True).execute_complete({}, {"status": "success"})
