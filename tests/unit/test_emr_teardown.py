"""EmrTerminateClusterOperator against moto's in-process EMR: the teardown succeeds once the
cluster has ended, with or without errors, and fails while it has not.

moto ends clusters only as TERMINATED, so the tests set a cluster's state in moto's backend as
EMR would after a failed bootstrap action. The whole flow (the emulator's bootstrap failure,
the aws DAG's teardown) is in tests/e2e/test_emr_failure_scenarios.py.

The teardown also finds the run's clusters by their tags when XCom has no cluster id
(create_cluster failed after RunJobFlow) or a retry started a second one.
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


RUN_TAGS = {
    "airflow-dag-id": "data_processing",
    "airflow-run-id": "manual__2026-03-03T18:00:00+00:00",
    "spark-job": "data_processor",
}


def cluster(
    emr, state: str | None = None, reason: str | None = None, tags: dict[str, str] | None = None
) -> str:
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
        Tags=[{"Key": key, "Value": value} for key, value in (tags or {}).items()],
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


# --- clusters found by the run's tags ---------------------------------------------------------


def test_run_cluster_tags_name_the_dag_run_and_job():
    from orchestration.emr_teardown import run_cluster_tags

    assert run_cluster_tags("data_processor") == {
        "airflow-dag-id": "{{ dag.dag_id }}",
        "airflow-run-id": "{{ run_id }}",
        "spark-job": "data_processor",
    }


def test_without_a_cluster_id_the_runs_tagged_cluster_is_terminated(emr, capsys):
    # create_cluster called RunJobFlow, then failed before pushing the id to XCom.
    orphan = cluster(emr, tags=RUN_TAGS)
    other_run = cluster(emr, tags={**RUN_TAGS, "airflow-run-id": "scheduled__2026-03-02"})
    other_job = cluster(emr, tags={**RUN_TAGS, "spark-job": "data_generator"})
    untagged = cluster(emr)

    teardown(None, cluster_tags=RUN_TAGS, deferrable=False).execute({"ti": None})

    assert state(emr, orphan) == "TERMINATED"
    for kept in (other_run, other_job, untagged):
        assert state(emr, kept) == "WAITING", kept
    assert f"terminating the run's cluster {orphan}, found by its tags" in logged(capsys)


def test_clusters_the_role_may_not_describe_are_not_the_runs(emr):
    from unittest import mock

    from botocore.exceptions import ClientError

    foreign = cluster(emr)
    orphan = cluster(emr, tags=RUN_TAGS)
    task = teardown(None, cluster_tags=RUN_TAGS, deferrable=False)
    describe = task.hook.conn.describe_cluster

    def describe_own_only(ClusterId):  # noqa: N803 - boto3's argument name
        if ClusterId == foreign:
            denied = {"Error": {"Code": "AccessDeniedException", "Message": "not tagged"}}
            raise ClientError(denied, "DescribeCluster")
        return describe(ClusterId=ClusterId)

    with mock.patch.object(task.hook.conn, "describe_cluster", side_effect=describe_own_only):
        assert task.tagged_active_clusters() == [orphan]


def test_a_retry_that_started_a_second_cluster_terminates_both(emr):
    # The first attempt of create_cluster started `orphan` and failed; the retry started `current`.
    orphan = cluster(emr, tags=RUN_TAGS)
    current = cluster(emr, tags=RUN_TAGS)

    teardown(current, cluster_tags=RUN_TAGS, deferrable=False).execute({"ti": None})

    assert (state(emr, orphan), state(emr, current)) == ("TERMINATED", "TERMINATED")


def test_a_deferred_teardown_resumes_with_the_cluster_it_found_by_tags(emr):
    from unittest import mock

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    orphan = cluster(emr, tags=RUN_TAGS)
    task = teardown(None, cluster_tags=RUN_TAGS, deferrable=True)
    with mock.patch("airflow.sdk.BaseOperator.defer") as defer:
        task.execute({})
    assert defer.call_args.kwargs["kwargs"] == {"job_flow_id": orphan}

    # The resumed task is a new instance, rendered again without an id in XCom; the wait failed
    # because the cluster ended with errors, which is the teardown's success.
    emr_backends[DEFAULT_ACCOUNT_ID][REGION].clusters[orphan].state = "TERMINATED_WITH_ERRORS"
    resumed = teardown(None, cluster_tags=RUN_TAGS, deferrable=True)
    resumed.execute_complete({}, WAITER_FAILURE, job_flow_id=orphan)
    assert resumed.job_flow_id == orphan


def test_without_a_cluster_id_or_a_tagged_cluster_there_is_nothing_to_terminate(emr, capsys):
    untagged = cluster(emr)

    teardown(None, cluster_tags=RUN_TAGS, deferrable=False).execute({"ti": None})

    assert state(emr, untagged) == "WAITING"
    assert "nothing to terminate" in logged(capsys)
