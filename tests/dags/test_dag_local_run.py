"""`dag.test()` of the local generation DAG: real spark-submit, real LocalStack, real Airflow.

SPARK_MASTER is set to local[2] and SPARK_CONNECT_URL unset (the standalone master and the Spark
Connect server are host_stack's business, and the e2e tests run through them); everything else
is the local target as configured: the packaging task, --py-files, the S3 conf from config
and the connections from airflow_connections().
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = [pytest.mark.localstack, pytest.mark.spark, pytest.mark.timeout(600)]


def test_generation_writes_the_raw_day_through_spark_submit(
    dagbag, use_env, monkeypatch, airflow_db, localstack
):
    from orchestration.airflow_env import airflow_connections

    overrides = {
        "AWS_ENDPOINT_URL": localstack.endpoint_url,
        "DATA_BUCKET": localstack.bucket,
        "SPARK_MASTER": "local[2]",
        "SPARK_CONNECT_URL": "",
        "ROWS_PER_DAY": "300",
    }
    settings = use_env("local", **overrides)
    for name, value in airflow_connections(settings).items():
        monkeypatch.setenv(name, value)
    # spark-submit comes from the venv's bin; its Python workers need the venv's packages.
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    dag = dagbag("local", **overrides).dags["data_generation"]

    run = dag.test(logical_date=datetime(2026, 3, 7, 9, tzinfo=UTC))

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    s3 = localstack.s3_client()
    listed = s3.list_objects_v2(Bucket=localstack.bucket, Prefix="raw/orders/dt=2026-03-07/")
    keys = {o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])}
    assert {"_SUCCESS", "_manifest.json"} <= keys
    assert any(k.startswith("part-") for k in keys)
