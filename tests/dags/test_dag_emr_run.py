"""`dag.test()` of the aws DAGs against moto's in-process EMR and S3 (real Airflow, no network).

moto never finishes an EMR step by itself (its state manager does not cover EMR), so a thread
plays the cluster: it moves each RUNNING step to the outcome under test. The cluster must end
TERMINATED either way, and a FAILED step must fail the run.

Deferral cannot run here (the triggers use aiobotocore, which moto does not intercept), so the
tests switch the DAG's deferrable tasks to poking; the DAGs themselves stay deferrable
(tests/dags/test_dag_integrity.py checks that).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest

# dag.test() of one of these DAGs takes ~15 s here; a hang should not cost the 15 min default.
pytestmark = pytest.mark.timeout(300)

JOBS = {"data_generation": "data_generator", "data_processing": "data_processor"}


@contextmanager
def emr_steps_end_as(outcome: str, region: str) -> Iterator[None]:
    """While active, every RUNNING step of every moto cluster becomes `outcome`."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    backend = emr_backends[DEFAULT_ACCOUNT_ID][region]
    stop = threading.Event()

    def play_the_cluster() -> None:
        while not stop.wait(0.05):
            for cluster in list(backend.clusters.values()):
                for step in cluster.steps:
                    if step.state == "RUNNING":
                        step.state = outcome

    player = threading.Thread(target=play_the_cluster, daemon=True)
    player.start()
    try:
        yield
    finally:
        stop.set()
        player.join()


@pytest.fixture
def aws_dag(dagbag, use_env, monkeypatch, airflow_db):
    """aws_dag(dag_id) -> (dag, settings), with connections exported as the stack would.

    Call it before mock_aws() starts: it clears the settings keys (AWS_ACCESS_KEY_ID among
    them) from the environment, where moto puts its fake credentials.
    """
    from orchestration.airflow_env import airflow_connections

    def load(dag_id: str):
        settings = use_env("aws")
        for name, value in airflow_connections(settings).items():
            monkeypatch.setenv(name, value)
        dag = dagbag("aws").dags[dag_id]
        for task in dag.tasks:
            if getattr(task, "deferrable", False):
                task.deferrable = False
            if hasattr(task, "poke_interval"):
                task.poke_interval = 0.1
            if hasattr(task, "log_wait_seconds"):
                # moto's cluster never ships step logs: do not wait minutes for them.
                task.log_wait_seconds = 0.5
            # Keep the DAG's retry counts but not its minutes of backoff.
            task.retry_delay = task.max_retry_delay = timedelta(seconds=0.1)
        return dag, settings

    return load


def _run(dag, logical_date: datetime):
    run = dag.test(logical_date=logical_date)
    return run, {ti.task_id: ti.state for ti in run.get_task_instances()}


def _clusters(region: str) -> list:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.emr.models import emr_backends

    return list(emr_backends[DEFAULT_ACCOUNT_ID][region].clusters.values())


@pytest.mark.parametrize(
    ("step_outcome", "run_state", "sensor_state", "day"),
    [("COMPLETED", "success", "success", 1), ("FAILED", "failed", "failed", 2)],
)
def test_generation_terminates_the_cluster_whatever_the_step_does(
    aws_dag, step_outcome, run_state, sensor_state, day
):
    from moto import mock_aws

    dag, settings = aws_dag("data_generation")
    with mock_aws():
        with emr_steps_end_as(step_outcome, settings.aws_region):
            run, states = _run(dag, datetime(2026, 3, day, 9, tzinfo=UTC))
        (cluster,) = _clusters(settings.aws_region)

    assert run.state == run_state
    assert states["data_generator.wait_for_step"] == sensor_state
    assert states["data_generator.terminate_cluster"] == "success"
    assert cluster.state == "TERMINATED"
    assert [step.state for step in cluster.steps] == [step_outcome]
    assert cluster.name == f"builditall-data_generator-2026-03-0{day}"
    assert "--date" in cluster.steps[0].args
    assert f"2026-03-0{day}" in cluster.steps[0].args


def test_processing_runs_once_the_raw_day_is_complete(aws_dag):
    import boto3
    from moto import mock_aws

    dag, settings = aws_dag("data_processing")
    with mock_aws():
        s3 = boto3.client("s3", region_name=settings.aws_region)
        s3.create_bucket(Bucket=settings.data_bucket)
        marker = "raw/orders/dt=2026-03-03/_SUCCESS"
        s3.put_object(Bucket=settings.data_bucket, Key=marker, Body=b"")
        with emr_steps_end_as("COMPLETED", settings.aws_region):
            run, states = _run(dag, datetime(2026, 3, 3, 18, tzinfo=UTC))
        (cluster,) = _clusters(settings.aws_region)

    assert run.state == "success", states
    assert states["wait_for_raw_orders"] == "success"
    assert cluster.state == "TERMINATED"
    expected_io = ["--input", settings.raw_uri, "--output", settings.processed_uri]
    assert cluster.steps[0].args[-4:] == expected_io


def test_processing_without_the_raw_day_fails_before_any_cluster(aws_dag):
    from moto import mock_aws

    dag, settings = aws_dag("data_processing")
    with mock_aws():
        dag.get_task("wait_for_raw_orders").timeout = 2  # seconds; the DAG waits hours
        run, states = _run(dag, datetime(2026, 3, 4, 18, tzinfo=UTC))
        clusters = _clusters(settings.aws_region)

    assert run.state == "failed"
    assert states["wait_for_raw_orders"] == "failed"
    assert states["data_processor.create_cluster"] == "upstream_failed"
    # No cluster was created: the teardown finds none tagged for the run, and succeeds.
    assert states["data_processor.terminate_cluster"] == "success"
    assert clusters == []


def test_clusters_started_by_a_failed_create_cluster_are_terminated(aws_dag, monkeypatch):
    from airflow.providers.amazon.aws.operators.emr import EmrCreateJobFlowOperator
    from moto import mock_aws

    run_job_flow = EmrCreateJobFlowOperator.execute

    def started_then_failed(self, context):
        run_job_flow(self, context)  # RunJobFlow succeeded: a cluster is starting
        raise RuntimeError("the worker lost the task after RunJobFlow")

    monkeypatch.setattr(EmrCreateJobFlowOperator, "execute", started_then_failed)
    dag, settings = aws_dag("data_generation")
    with mock_aws():
        run, states = _run(dag, datetime(2026, 3, 5, 9, tzinfo=UTC))
        clusters = _clusters(settings.aws_region)

    assert run.state == "failed"
    assert states["data_generator.create_cluster"] == "failed"
    assert states["data_generator.terminate_cluster"] == "success"
    # One cluster per attempt (the DAG retries create_cluster), none in XCom, none left running.
    attempts = 1 + dag.get_task("data_generator.create_cluster").retries
    assert len(clusters) == attempts
    assert {cluster.state for cluster in clusters} == {"TERMINATED"}
