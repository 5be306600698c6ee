"""Locally, a Spark job that fails under SparkSubmitOperator says why in the task log.

The provider's SparkSubmitHook logs every line spark-submit prints (the driver's stdout and
stderr merged) into the task log; this checks that it holds for the failure that is hardest to
see: a Python exception raised inside an executor, whose traceback travels back to the driver
inside Spark's error. The exception itself names the exit code and ends with spark-submit's last
lines, which for a Python driver are Spark's shutdown messages: the reason is in the log above
it. Real spark-submit on local[1].
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import mock

import pytest

pytestmark = [pytest.mark.spark, pytest.mark.timeout(300)]

JOB = """
from pyspark.sql import SparkSession

def check(order_id):
    if order_id == 3:
        raise ValueError(f"order {order_id} has no customer")
    return order_id

spark = SparkSession.builder.getOrCreate()
spark.sparkContext.parallelize(range(5), 1).map(check).collect()
"""


def test_an_exception_inside_an_executor_is_in_the_task_log_and_the_error(
    tmp_path, monkeypatch, capsys
):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
    from airflow.providers.common.compat.sdk import AirflowException

    job = tmp_path / "failing_job.py"
    job.write_text(JOB)
    monkeypatch.setenv("AIRFLOW_CONN_SPARK_LOCAL", '{"conn_type": "spark", "host": "local[1]"}')
    # spark-submit comes from the venv's bin; its Python workers need the venv's packages.
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    submit = SparkSubmitOperator(
        task_id="spark_submit",
        conn_id="spark_local",
        application=str(job),
        conf={"spark.ui.enabled": "false"},
    )

    with pytest.raises(AirflowException) as failure:
        submit.execute({"ti": mock.MagicMock()})

    task_log = capsys.readouterr().out
    # The Python traceback from the executor, and Spark's error around it.
    assert "Traceback (most recent call last)" in task_log
    assert "ValueError: order 3 has no customer" in task_log
    assert "PythonException" in task_log or "Py4JJavaError" in task_log
    assert "Error code is: 1" in str(failure.value)
