"""Locally, a Spark job that fails under SparkSubmitOperator says why in the task log.

The provider's SparkSubmitHook logs every line spark-submit prints (the driver's stdout and
stderr merged) into the task log; this checks that it holds for the failure that is hardest to
see: a Python exception raised inside an executor, whose traceback travels back to the driver
inside Spark's error. The exception itself names the exit code and ends with spark-submit's last
lines, which for a Python driver are Spark's shutdown messages: the reason is in the log above
it. Real spark-submit on local[1].

The local stack runs its jobs as Spark Connect clients (SPARK_CONNECT_URL, spark_jobs/common/
session.py): the same submit, whose driver runs the job on a real Spark Connect server, must
leave the same in the task log, both for a Python UDF that raises on the server's Python worker
and for Spark's own error (an ANSI division by zero in an executor task).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import mock

import pytest

from spark_jobs.common.session import CONNECT_URL_ENV
from tests.spark_connect_server import running_connect_server

pytestmark = [pytest.mark.spark, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]

JOB = """
from pyspark.sql import SparkSession

def check(order_id):
    if order_id == 3:
        raise ValueError(f"order {order_id} has no customer")
    return order_id

spark = SparkSession.builder.getOrCreate()
spark.sparkContext.parallelize(range(5), 1).map(check).collect()
"""


# As the pipeline's jobs do: the session from spark_jobs, Connect when SPARK_CONNECT_URL is set.
CONNECT_JOB = """
import sys
from pyspark.sql.functions import udf
from spark_jobs.common.session import is_connect, job_session

def check(order_id):
    if order_id == 3:
        raise ValueError(f"order {order_id} has no customer")
    return order_id

spark = job_session("failing_job")
assert is_connect(spark), "not a Spark Connect session"
if sys.argv[1] == "udf":
    spark.range(5).repartition(1).select(udf(check, "long")("id")).collect()
else:
    spark.sql("SELECT id / (id - 3) FROM range(5)").collect()
"""


@pytest.fixture
def spark_submit(monkeypatch):
    """A SparkSubmitOperator on local[1], as the local DAGs build it; returns (operator, log)."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    monkeypatch.setenv("AIRFLOW_CONN_SPARK_LOCAL", '{"conn_type": "spark", "host": "local[1]"}')
    # spark-submit comes from the venv's bin; its Python workers need the venv's packages.
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")

    def operator(application: Path, **kwargs) -> SparkSubmitOperator:
        return SparkSubmitOperator(
            task_id="spark_submit",
            conn_id="spark_local",
            application=str(application),
            conf={"spark.ui.enabled": "false"},
            **kwargs,
        )

    return operator


def failed_submit(submit, capsys) -> tuple[str, str]:
    """Run the submit, which must fail; return (the task log, the task's error)."""
    from airflow.providers.common.compat.sdk import AirflowException

    with pytest.raises(AirflowException) as failure:
        submit.execute({"ti": mock.MagicMock()})
    return capsys.readouterr().out, str(failure.value)


def test_an_exception_inside_an_executor_is_in_the_task_log_and_the_error(
    tmp_path, spark_submit, capsys
):
    job = tmp_path / "failing_job.py"
    job.write_text(JOB)

    task_log, error = failed_submit(spark_submit(job), capsys)

    # The Python traceback from the executor, and Spark's error around it.
    assert "Traceback (most recent call last)" in task_log
    assert "ValueError: order 3 has no customer" in task_log
    assert "PythonException" in task_log or "Py4JJavaError" in task_log
    assert "Error code is: 1" in error


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    log = tmp_path_factory.mktemp("spark-connect") / "server.log"
    with running_connect_server({}, log) as (server, _):
        yield server


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        # The client's traceback, then the UDF's own, raised on the server's Python worker.
        (
            "udf",
            [
                "Traceback (most recent call last)",
                "pyspark.errors.exceptions.connect.PythonException",
                "ValueError: order 3 has no customer",
            ],
        ),
        # The client's traceback, then Spark's error from an executor task, with its JVM trace.
        (
            "spark",
            [
                "Traceback (most recent call last)",
                "pyspark.errors.exceptions.connect.ArithmeticException",
                "[DIVIDE_BY_ZERO]",
                "JVM stacktrace:",
                "org.apache.spark.SparkArithmeticException",
            ],
        ),
    ],
)
def test_a_job_failing_on_the_spark_connect_server_says_why_in_the_task_log(
    tmp_path, spark_submit, connect_server, capsys, failure, expected
):
    job = tmp_path / "failing_connect_job.py"
    job.write_text(CONNECT_JOB)
    submit = spark_submit(
        job,
        application_args=[failure],
        # What the local DAGs pass (Settings.spark_job_env); spark_jobs is importable as in a
        # checkout (the DAGs ship it with --py-files).
        env_vars={CONNECT_URL_ENV: connect_server.url, "PYTHONPATH": str(ROOT)},
    )

    task_log, error = failed_submit(submit, capsys)

    at = 0
    for part in expected:
        found = task_log.find(part, at)
        assert found >= 0, f"the task log lacks {part!r} after offset {at}:\n{task_log}"
        at = found + len(part)
    assert "Error code is: 1" in error
