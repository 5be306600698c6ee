"""Fixtures shared by every test: a real local SparkSession and a real LocalStack process."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import pytest

from host_stack.localstack import LocalStack, create_buckets, find_localstack_python, free_port
from spark_jobs.common.storage import Storage

# A machine's hostname may not resolve to a reachable address; bind Spark to loopback.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# Python workers default to `python3` on PATH, which outside an activated venv lacks pyarrow.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the Spark or LocalStack fixtures (directly or through another
    fixture) `spark` / `localstack`, so `-m "not spark and not localstack"` (nox -s unit) is
    the quick loop without a JVM or LocalStack."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if "spark" in used:
            item.add_marker(pytest.mark.spark)
        if "localstack" in used:
            item.add_marker(pytest.mark.localstack)


@pytest.fixture(scope="session")
def spark():
    """One small local[2] SparkSession for the whole test run (JVM start dominates test time)."""
    from pyspark.sql import SparkSession

    from spark_jobs.common.session import JOB_SESSION_CONF

    session = (
        SparkSession.builder.master("local[2]")
        .appName("pipeline-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.bindAddress", "127.0.0.1")
        # The jobs' own settings, as in their spark-submits (static: set before the session).
        .config(map=JOB_SESSION_CONF)
        .getOrCreate()
    )
    yield session
    session.stop()


@dataclass(frozen=True)
class LocalStackInfo:
    """A running LocalStack for the tests: where it listens and the bucket made for them."""

    endpoint_url: str
    bucket: str
    region: str = "us-east-1"
    access_key: str = "test"
    secret_key: str = "test"

    def s3_client(self):
        """A boto3 S3 client for this LocalStack."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def spark_s3_conf(self) -> dict[str, str]:
        """The spark.hadoop.fs.s3a.* keys a launcher would set for this endpoint."""
        return {
            "spark.hadoop.fs.s3a.endpoint": self.endpoint_url,
            "spark.hadoop.fs.s3a.endpoint.region": self.region,
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
            "spark.hadoop.fs.s3a.access.key": self.access_key,
            "spark.hadoop.fs.s3a.secret.key": self.secret_key,
        }


@pytest.fixture(scope="session")
def localstack(tmp_path_factory):
    """The real LocalStack as a process on a free port, with one empty test bucket."""
    python = find_localstack_python()
    if python is None:
        pytest.fail(
            "LOCALSTACK_PYTHON is not set: run the tests through `nox -s tests`, which installs "
            "LocalStack in its own Python 3.13 venv and sets it (or set it to that venv's python)"
        )
    stack = LocalStack(python, port=free_port(), state_dir=tmp_path_factory.mktemp("localstack"))
    with stack:
        info = LocalStackInfo(endpoint_url=stack.endpoint_url, bucket="pipeline-tests")
        create_buckets(info.endpoint_url, [info.bucket], region=info.region)
        yield info


@pytest.fixture
def s3_storage(spark, localstack):
    """A Storage built the way the jobs build it: Storage(spark) reading spark.hadoop.fs.s3a.*.

    The keys are set on the shared session at runtime and removed afterwards, so other tests
    see the session as it was.
    """
    from spark_jobs.common.session import session_conf

    with session_conf(spark, localstack.spark_s3_conf()):
        yield Storage(spark)
