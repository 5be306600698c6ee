"""DAG integrity, table-driven over both environments: the DagBag imports cleanly, schedules and
time zones come from config, and each target builds the task graph it should.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import jinja2
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "orchestration" / "dags"
ENVS = ("local", "aws")

# dag_id -> (DAG file, settings key of its schedule, the committed schedule: issue's 09:00 / 18:00)
DAGS = {
    "data_generation": ("data_generation_dag.py", "generation_schedule", "0 9 * * *"),
    "data_processing": ("data_processing_dag.py", "processing_schedule", "0 18 * * *"),
}

LOCAL_EDGES = {
    "data_generation": {
        ("data_generator.package_spark_jobs", "data_generator.spark_submit"),
    },
    "data_processing": {
        ("wait_for_raw_orders", "data_processor.package_spark_jobs"),
        ("data_processor.package_spark_jobs", "data_processor.spark_submit"),
    },
}


def _emr_edges(job: str) -> set[tuple[str, str]]:
    return {
        (f"{job}.create_cluster", f"{job}.add_step"),
        (f"{job}.create_cluster", f"{job}.wait_for_step"),
        (f"{job}.add_step", f"{job}.wait_for_step"),
        (f"{job}.create_cluster", f"{job}.terminate_cluster"),
        (f"{job}.wait_for_step", f"{job}.terminate_cluster"),
    }


AWS_EDGES = {
    "data_generation": _emr_edges("data_generator"),
    "data_processing": _emr_edges("data_processor")
    | {("wait_for_raw_orders", "data_processor.create_cluster")},
}


def _edges(dag) -> set[tuple[str, str]]:
    return {(task.task_id, down) for task in dag.tasks for down in task.downstream_task_ids}


def _render(text: str, ds: str = "2026-03-01") -> str:
    return jinja2.Template(text).render(ds=ds)


@pytest.mark.parametrize("env", ENVS)
def test_dagbag_imports_without_errors_or_warnings(dagbag, env):
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        bag = dagbag(env)
    assert bag.import_errors == {}, f"import errors under PIPELINE_ENV={env}"
    assert bag.captured_warnings == {}, f"warnings while parsing under PIPELINE_ENV={env}"
    ours = [w for w in raised if str(REPO_ROOT) in str(w.filename)]
    assert ours == [], [str(w.message) for w in ours]
    assert sorted(bag.dag_ids) == sorted(DAGS)
    assert {Path(bag.dags[d].fileloc).name for d in DAGS} == {f for f, _, _ in DAGS.values()}


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_dag_defaults_owners_retries_docs(dagbag, env, dag_id):
    dag = dagbag(env).dags[dag_id]
    assert dag.catchup is False
    assert dag.max_active_runs == 2
    assert "### Data " + dag_id.split("_")[1] in (dag.doc_md or "")
    assert {"orders", f"env:{env}"} <= set(dag.tags)
    from airflow.sdk import BaseSensorOperator

    for task in dag.tasks:
        assert task.owner == "data-platform", task.task_id
        assert (task.execution_timeout or timedelta(0)) > timedelta(0), task.task_id
        # Sensors fail for a reason a retry cannot change (timeout, FAILED step): no retries.
        assert task.retries >= (0 if isinstance(task, BaseSensorOperator) else 1), task.task_id
        if task.retries:
            assert task.retry_exponential_backoff >= 2, task.task_id
            assert task.max_retry_delay is not None, task.task_id


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_schedule_and_timezone_come_from_config(dagbag, env, dag_id):
    from airflow.sdk import CronTriggerTimetable

    _, key, committed = DAGS[dag_id]
    dag = dagbag(env).dags[dag_id]
    assert isinstance(dag.timetable, CronTriggerTimetable)
    assert dag.timetable.expression == committed
    assert str(dag.timetable.timezone) == "UTC"

    overridden = dagbag(env, SCHEDULE_TIMEZONE="Europe/Berlin", **{key.upper(): "30 7 * * 1-5"})
    dag = overridden.dags[dag_id]
    assert dag.timetable.expression == "30 7 * * 1-5"
    assert str(dag.timetable.timezone) == "Europe/Berlin"
    assert dag.timezone.name == "Europe/Berlin"


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_local_graph_is_spark_submit_to_the_standalone_master(dagbag, use_env, dag_id):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    dag = dagbag("local").dags[dag_id]
    settings = use_env("local")
    assert _edges(dag) == LOCAL_EDGES[dag_id]
    submit = next(t for t in dag.tasks if t.task_id.endswith(".spark_submit"))
    assert isinstance(submit, SparkSubmitOperator)
    assert submit._conn_id == "spark_default"
    assert submit.conf == settings.spark_submit_conf()
    assert submit.conf["spark.hadoop.fs.s3a.endpoint"] == settings.aws_endpoint_url
    assert submit.application_args[:2] == ["--date", "{{ ds }}"]
    # application and py_files come from the packaging task's XCom (the built artifact).
    package_id = submit.task_id.replace("spark_submit", "package_spark_jobs")
    for field in (submit.application, submit.py_files):
        assert field.operator.task_id == package_id
    assert {submit.application.key, submit.py_files.key} == {"application", "py_files"}
    assert not any(t.is_setup or t.is_teardown for t in dag.tasks)


@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_aws_graph_is_the_emr_flow_with_setup_and_teardown(dagbag, dag_id):
    from airflow.providers.amazon.aws.operators.emr import (
        EmrAddStepsOperator,
        EmrCreateJobFlowOperator,
        EmrTerminateJobFlowOperator,
    )
    from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
    from airflow.sdk import TriggerRule

    dag = dagbag("aws").dags[dag_id]
    assert _edges(dag) == AWS_EDGES[dag_id]
    job = next(iter(AWS_EDGES[dag_id]))[1].split(".")[0]
    create, add, wait, terminate = (
        dag.get_task(f"{job}.{name}")
        for name in ("create_cluster", "add_step", "wait_for_step", "terminate_cluster")
    )
    assert isinstance(create, EmrCreateJobFlowOperator)
    assert isinstance(add, EmrAddStepsOperator)
    assert isinstance(wait, EmrStepSensor)
    assert isinstance(terminate, EmrTerminateJobFlowOperator)
    assert (create.is_setup, terminate.is_teardown) == (True, True)
    # Not as_teardown's all_done_setup_success: a failed create_cluster may have left a cluster.
    assert terminate.trigger_rule == TriggerRule.ALL_DONE
    # True would make the teardown the run's only leaf: a failed step would end in success.
    assert terminate.on_failure_fail_dagrun is False
    for task in (create, add, wait):
        assert task.trigger_rule == TriggerRule.ALL_SUCCESS, task.task_id
        assert not task.is_teardown
    assert (wait.deferrable, terminate.deferrable) == (True, True)
    assert wait.retries == 0
    assert create.emr_conn_id is None
    assert wait.step_id == "{{ ti.xcom_pull(task_ids='" + job + ".add_step')[0] }}"


def test_processing_waits_for_the_generators_success_marker(dagbag, use_env):
    from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

    for env in ENVS:
        settings = use_env(env)
        sensor = dagbag(env).dags["data_processing"].get_task("wait_for_raw_orders")
        assert isinstance(sensor, S3KeySensor)
        assert sensor.bucket_name == settings.data_bucket
        assert _render(sensor.bucket_key) == "raw/orders/dt=2026-03-01/_SUCCESS"
        assert sensor.mode == "reschedule" or sensor.deferrable
        assert 0 < sensor.timeout <= timedelta(hours=12).total_seconds()
        assert sensor.aws_conn_id == "aws_default"


TOPIC = "arn:aws:sns:us-east-1:123456789012:builditall-alerts"


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("dag_id", sorted(DAGS))
def test_a_failed_run_and_a_failed_teardown_alert_the_configured_topic(dagbag, env, dag_id):
    from orchestration.alerts import RUN_FAILED, TEARDOWN_FAILED, FailureAlert

    dag = dagbag(env, ALERTS_TOPIC_ARN=TOPIC).dags[dag_id]
    assert dag.on_failure_callback == FailureAlert(TOPIC, dag_logs_uri(env), RUN_FAILED)
    if env == "aws":
        job = next(iter(AWS_EDGES[dag_id]))[1].split(".")[0]
        teardown = dag.get_task(f"{job}.terminate_cluster")
        assert teardown.on_failure_callback == [
            FailureAlert(TOPIC, dag_logs_uri(env), TEARDOWN_FAILED)
        ]
    # Only the teardown: any other task's failure fails the run, which alerts once.
    others = [t for t in dag.tasks if not t.is_teardown]
    assert all(not t.on_failure_callback for t in others)


def dag_logs_uri(env: str) -> str:
    from config.config import load_settings

    return load_settings(env, environ={}).logs_uri
