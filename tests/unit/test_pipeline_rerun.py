"""`nox -s pipeline -- --dag data_processing [--date D]`, the developer loop's rerun: the day it
runs for comes from the arguments (2026-01-15 unless --date), and a day with no raw data is said
at once, with the command that writes it, instead of after the sensor's timeout.

S3 is moto's server standing in for LocalStack, at the port the stack's settings point to;
only the stack's start-up is skipped (test_host_stack.py covers it).
"""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from config.config import KEYS, load_settings
from host_stack import __main__ as cli
from host_stack.localstack import free_port
from host_stack.pipeline_run import missing_input
from host_stack.stack import Stack
from spark_jobs.common import layout

DEFAULT_DAY = "2026-01-15"


@pytest.fixture
def s3_port() -> Iterator[int]:
    """moto's S3 server on a free port of 127.0.0.1, as LocalStack would listen, empty."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto's backends live in this process and outlive a server: start and end with none.
    reset = f"http://127.0.0.1:{port}/moto-api/reset"
    httpx.post(reset).raise_for_status()
    yield port
    httpx.post(reset).raise_for_status()
    server.stop()


@pytest.fixture
def local_settings(s3_port):
    """The local environment's settings, S3 pointed at the moto server; the data bucket made."""
    settings = load_settings("local", environ={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}"})
    boto3.client("s3", **settings.boto3_client_kwargs()).create_bucket(Bucket=settings.data_bucket)
    return settings


def write_raw_day(settings, day: str) -> None:
    s3 = boto3.client("s3", **settings.boto3_client_kwargs())
    key = layout.raw_success_path(settings.raw_prefix, day)
    s3.put_object(Bucket=settings.data_bucket, Key=key, Body=b"")


def test_a_missing_raw_day_names_its_marker_and_the_commands_that_write_it(local_settings):
    message = missing_input(local_settings, "2026-02-01", ["data_processing"])

    assert message is not None
    assert message.startswith("no raw day 2026-02-01:")
    assert f"s3://{local_settings.data_bucket}/raw/orders/dt=2026-02-01/_SUCCESS" in message
    assert "nox -s pipeline -- --dag data_generation --date 2026-02-01" in message
    assert "nox -s pipeline -- --date 2026-02-01" in message


def test_a_written_raw_day_lets_processing_run(local_settings):
    write_raw_day(local_settings, "2026-02-01")

    assert missing_input(local_settings, "2026-02-01", ["data_processing"]) is None
    # Another day's marker is not this day's.
    assert missing_input(local_settings, "2026-02-02", ["data_processing"]) is not None


def test_generation_needs_no_input_and_writes_processings(local_settings):
    assert missing_input(local_settings, "2026-02-01", ["data_generation"]) is None
    both = ["data_generation", "data_processing"]
    assert missing_input(local_settings, "2026-02-01", both) is None


@pytest.fixture
def stack_env(monkeypatch, tmp_path, s3_port):
    """`python -m host_stack` in-process against moto's S3 (as LocalStack's port) and an
    Airflow port nothing listens on: a run that got as far as Airflow fails to log in."""
    for key in (*KEYS, "PIPELINE_ENVS_DIR", "STACK_STATE_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("STACK_STATE_DIR", str(tmp_path / "stack"))
    monkeypatch.setenv("LOCALSTACK_PORT", str(s3_port))
    airflow_url = f"http://127.0.0.1:{free_port()}"
    info = {
        "AIRFLOW_API_URL": airflow_url,
        "AIRFLOW_USERNAME": "admin",
        "AIRFLOW_PASSWORD": "not-used",  # pragma: allowlist secret
        "SPARK_MASTER_URL": "spark://127.0.0.1:7077",
        "SPARK_MASTER_WEBUI_URL": "http://127.0.0.1:8081",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
    }
    monkeypatch.setattr(Stack, "up", lambda self, timeout=300: info)
    settings = Stack().pipeline_settings()
    boto3.client("s3", **settings.boto3_client_kwargs()).create_bucket(Bucket=settings.data_bucket)
    return settings


@pytest.mark.parametrize(
    ("posargs", "day"),
    [
        (["--dag", "data_processing"], DEFAULT_DAY),
        (["--dag", "data_processing", "--date", "2026-02-01"], "2026-02-01"),
        (["--date", "2026-02-01", "--dag", "data_processing"], "2026-02-01"),
    ],
)
def test_the_rerun_of_processing_stops_at_once_on_a_day_never_generated(
    stack_env, capsys, posargs, day
):
    # What `nox -s pipeline -- <posargs>` runs: python -m host_stack run-pipeline <posargs>.
    code = cli.main(["run-pipeline", *posargs])

    out = capsys.readouterr().out
    assert code == 1
    assert f"no raw day {day}:" in out
    assert f"nox -s pipeline -- --dag data_generation --date {day}" in out


def test_the_rerun_of_processing_reads_the_day_of_its_arguments(stack_env):
    # The default day exists, 2026-02-01 does not: a run for the default day goes on to Airflow.
    write_raw_day(stack_env, DEFAULT_DAY)
    from httpx import ConnectError

    with pytest.raises(ConnectError):
        cli.main(["run-pipeline", "--dag", "data_processing"])
    assert cli.main(["run-pipeline", "--dag", "data_processing", "--date", "2026-02-01"]) == 1
