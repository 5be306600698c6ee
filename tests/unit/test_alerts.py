"""Failure alerts (orchestration/alerts.py) published to moto's in-process SNS, read back through
an SQS subscription as a subscriber would: one message per failure, naming the DAG, run, task
and the task log's S3 URI. The wiring into the DAGs is in tests/dags/test_dag_integrity.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.unit.conftest import MOTO_REGION as REGION

LOGS_URI = "s3://builditall-logs/airflow"
RUN_ID = "scheduled__2026-03-03T09:00:00+00:00"


@pytest.fixture
def topic(moto_aws):
    """(topic ARN, receive) where receive() returns the messages the topic delivered."""
    import boto3

    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    arn = sns.create_topic(Name="builditall-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])

    def receive() -> list[dict]:
        found = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [json.loads(m["Body"]) for m in found.get("Messages", [])]

    return arn, receive


def task_instance(task_id: str, try_number: int = 3, map_index: int = -1) -> SimpleNamespace:
    return SimpleNamespace(
        dag_id="data_generation",
        run_id=RUN_ID,
        task_id=task_id,
        try_number=try_number,
        map_index=map_index,
    )


def alert(topic_arn, what):
    from orchestration.alerts import FailureAlert

    return FailureAlert(topic_arn, LOGS_URI, what, aws_conn_id=None)


def published_fields(message: dict) -> dict:
    """The JSON line every alert ends with."""
    return json.loads(message["Message"].splitlines()[-1])


def test_a_failed_run_publishes_one_message_naming_dag_run_task_and_log(topic):
    from orchestration.alerts import RUN_FAILED

    arn, receive = topic
    ti = task_instance("data_generator.wait_for_step")
    # The DAG processor's context for a run failed by a task: that task is `ti`.
    alert(arn, RUN_FAILED)({"ti": ti, "reason": "task_failure", "run_id": RUN_ID})

    (message,) = receive()
    log_uri = (
        f"{LOGS_URI}/dag_id=data_generation/run_id={RUN_ID}/"
        "task_id=data_generator.wait_for_step/attempt=3.log"
    )
    assert published_fields(message) == {
        "what": RUN_FAILED,
        "dag_id": "data_generation",
        "run_id": RUN_ID,
        "task_id": "data_generator.wait_for_step",
        "log": log_uri,
        "reason": "task_failure",
    }
    assert message["Subject"] == "[builditall] DAG run failed: data_generation"
    for line in ("DAG:  data_generation", f"Run:  {RUN_ID}", f"Log:  {log_uri}"):
        assert line in message["Message"]


def test_a_failed_teardown_publishes_one_message(topic):
    from orchestration.alerts import TEARDOWN_FAILED

    arn, receive = topic
    ti = task_instance("data_generator.terminate_cluster", try_number=1)
    alert(arn, TEARDOWN_FAILED)({"ti": ti, "exception": RuntimeError("Waiter has timed out")})

    (message,) = receive()
    fields = published_fields(message)
    assert fields["what"] == TEARDOWN_FAILED
    assert fields["task_id"] == "data_generator.terminate_cluster"
    assert fields["log"].endswith("task_id=data_generator.terminate_cluster/attempt=1.log")
    assert fields["reason"] == "Waiter has timed out"


def test_a_run_that_failed_without_a_task_still_names_the_dag_and_run(topic):
    from orchestration.alerts import RUN_FAILED

    arn, receive = topic
    context = {"dag": SimpleNamespace(dag_id="data_processing"), "run_id": RUN_ID,
               "reason": "timed_out"}  # fmt: skip
    alert(arn, RUN_FAILED)(context)

    (message,) = receive()
    fields = published_fields(message)
    assert (fields["dag_id"], fields["run_id"], fields["task_id"], fields["log"]) == (
        "data_processing",
        RUN_ID,
        None,
        None,
    )


def test_without_a_topic_nothing_is_published(topic):
    from orchestration.alerts import RUN_FAILED

    _, receive = topic
    alert(None, RUN_FAILED)({"ti": task_instance("x.create_cluster")})
    assert receive() == []


def test_a_publish_error_is_logged_not_raised(moto_aws, caplog):
    from orchestration.alerts import RUN_FAILED

    missing = f"arn:aws:sns:{REGION}:123456789012:no-such-topic"
    alert(missing, RUN_FAILED)({"ti": task_instance("x.create_cluster")})
    assert f"Could not publish the failure alert to {missing}" in caplog.text


def test_the_log_uri_is_where_airflows_log_filename_template_puts_it():
    import jinja2
    from airflow.configuration import conf

    from orchestration.alerts import task_log_uri

    template = jinja2.Template(conf.get("logging", "log_filename_template"))
    for ti in (task_instance("a.b", 2), task_instance("a.b", 1, map_index=4)):
        expected = f"{LOGS_URI}/{template.render(ti=ti, try_number=ti.try_number)}"
        assert task_log_uri(LOGS_URI, ti) == expected
