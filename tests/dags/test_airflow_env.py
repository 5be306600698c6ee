"""Connections and Airflow settings derived from config, read back by Airflow and its providers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.airflow_env import airflow_connections, airflow_env

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exported(use_env, monkeypatch):
    """exported(env) -> settings, with airflow_env(settings) set in os.environ."""

    def export(env: str):
        settings = use_env(env)
        for key, value in airflow_env(settings).items():
            monkeypatch.setenv(key, value)
        return settings

    return export


def test_local_aws_connection_points_emulated_services_at_localstack(exported):
    from airflow.providers.amazon.aws.hooks.emr import EmrHook
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    settings = exported("local")
    s3 = S3Hook(aws_conn_id="aws_default").get_conn()
    assert s3.meta.endpoint_url == settings.aws_endpoint_url
    assert s3.meta.region_name == settings.aws_region
    assert s3.meta.config.s3 == {"addressing_style": "path"}
    credentials = s3._request_signer._credentials
    assert (credentials.access_key, credentials.secret_key) == ("test", "test")
    # LocalStack has no EMR: EMR keeps AWS's endpoint instead of a wrong local one.
    emr = EmrHook(aws_conn_id="aws_default", emr_conn_id=None).get_conn()
    assert emr.meta.endpoint_url == f"https://elasticmapreduce.{settings.aws_region}.amazonaws.com"


def test_aws_connection_uses_real_endpoints_and_the_default_credential_chain(exported):
    settings = exported("aws")
    connections = airflow_connections(settings)
    assert set(connections) == {"AIRFLOW_CONN_AWS_DEFAULT"}
    aws = json.loads(connections["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws == {"conn_type": "aws", "extra": {"region_name": settings.aws_region}}


def test_emulated_aws_connection_sends_emr_to_the_emulator_and_s3_to_localstack(
    use_env, monkeypatch
):
    from airflow.providers.amazon.aws.hooks.emr import EmrHook
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    # What host_stack exports for the offline aws rehearsal (nox -s e2e_aws_emulated).
    settings = use_env(
        "aws",
        AWS_ENDPOINT_URL="http://localhost:4566",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # pragma: allowlist secret (LocalStack dummy)
        EMR_ENDPOINT_URL="http://localhost:4570",
    )
    for key, value in airflow_env(settings).items():
        monkeypatch.setenv(key, value)
    emr = EmrHook(aws_conn_id="aws_default", emr_conn_id=None).get_conn()
    assert emr.meta.endpoint_url == "http://localhost:4570"
    assert S3Hook(aws_conn_id="aws_default").get_conn().meta.endpoint_url == (
        "http://localhost:4566"
    )


def test_local_spark_connection_is_the_standalone_master(exported):
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    settings = exported("local")
    resolved = SparkSubmitHook(conn_id="spark_default")._resolve_connection()
    assert resolved["master"] == settings.spark_master == "spark://127.0.0.1:7077"
    assert resolved["deploy_mode"] == "client"
    assert resolved["spark_binary"] == "spark-submit"


@pytest.mark.parametrize("env", ["local", "aws"])
def test_remote_task_logs_go_to_the_logs_bucket(exported, env):
    from airflow.configuration import conf

    settings = exported(env)
    assert conf.getboolean("logging", "remote_logging") is True
    assert conf.get("logging", "remote_base_log_folder") == settings.logs_uri
    assert settings.logs_uri == "s3://builditall-logs/airflow"
    assert conf.get("logging", "remote_log_conn_id") == "aws_default"


@pytest.mark.parametrize("env", ["local", "aws"])
def test_dag_files_import_with_airflows_environment_alone(use_env, tmp_path, env):
    """A fresh interpreter outside the repo, with only airflow_env(): what the dag-processor has."""
    settings = use_env(env)
    env_vars = {
        "PATH": os.environ["PATH"],
        "AIRFLOW_HOME": str(tmp_path),
        **airflow_env(settings),
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "False",  # parsing writes no task logs
    }
    code = (
        "from airflow.dag_processing.dagbag import DagBag; "
        "bag = DagBag(); "
        "print(sorted(bag.dag_ids), bag.import_errors)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env_vars,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "['data_generation', 'data_processing'] {}"


@pytest.mark.localstack
def test_local_raw_day_sensor_sees_localstack_through_the_connection(
    use_env, monkeypatch, localstack
):
    """The processing DAG's own sensor, with airflow_connections(), against the real LocalStack."""
    import jinja2
    from airflow.dag_processing.dagbag import DagBag

    settings = use_env(
        "local", AWS_ENDPOINT_URL=localstack.endpoint_url, DATA_BUCKET=localstack.bucket
    )
    for name, value in airflow_connections(settings).items():
        monkeypatch.setenv(name, value)
    bag = DagBag(dag_folder=str(REPO_ROOT / "orchestration" / "dags"))
    sensor = bag.dags["data_processing"].get_task("wait_for_raw_orders")
    sensor.bucket_key = jinja2.Template(sensor.bucket_key).render(ds="2026-03-05")

    assert sensor.poke({}) is False
    s3 = localstack.s3_client()
    s3.put_object(Bucket=localstack.bucket, Key="raw/orders/dt=2026-03-05/_SUCCESS", Body=b"")
    assert sensor.poke({}) is True


def test_local_spark_submit_command_ships_the_package_to_the_master(exported):
    """The spark-submit command line the local DAG's operator builds, with real paths rendered."""
    import jinja2
    from airflow.dag_processing.dagbag import DagBag

    from orchestration.spark_job import package_spark_jobs

    settings = exported("local")
    dag = DagBag(dag_folder=str(REPO_ROOT / "orchestration" / "dags")).dags["data_generation"]
    submit = dag.get_task("data_generator.spark_submit")
    package = package_spark_jobs("data_generator.py")  # what the upstream task returns
    submit.application, submit.py_files = package["application"], package["py_files"]
    submit.application_args = [
        jinja2.Template(a).render(ds="2026-03-06") for a in submit.application_args
    ]
    command = submit._get_hook()._build_spark_submit_command(submit.application)

    def value_of(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert command[0] == "spark-submit"
    assert value_of("--master") == settings.spark_master
    assert value_of("--deploy-mode") == "client"
    assert value_of("--py-files") == package["py_files"]
    assert f"spark.hadoop.fs.s3a.endpoint={settings.aws_endpoint_url}" in command
    app = command.index(package["application"])
    assert command[app + 1 :] == [
        "--date", "2026-03-06",
        "--rows", str(settings.rows_per_day),
        "--output", settings.raw_uri,
        "--seed", str(settings.seed),
        "--bad-record-rate", str(settings.bad_record_rate),
    ]  # fmt: skip
