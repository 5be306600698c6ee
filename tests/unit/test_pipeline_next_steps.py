"""What `nox -s pipeline` prints last: where to look, how to rerun one DAG, how to stop; and
`nox -s ls`, the listing it points to (no AWS CLI needed)."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
from moto import mock_aws

from config.config import load_settings
from host_stack.pipeline_run import PIPELINE_DAGS, list_objects, next_steps
from host_stack.stack import Stack, StackSettings

NOXFILE = Path(__file__).resolve().parents[2] / "noxfile.py"
INFO = {
    "AIRFLOW_API_URL": "http://127.0.0.1:8080",
    "AIRFLOW_USERNAME": "admin",
    "AIRFLOW_PASSWORD": "generated-in-airflow-home",  # pragma: allowlist secret
}


def _stack(tmp_path: Path) -> Stack:
    settings = StackSettings(state_dir=tmp_path / "stack")
    return Stack(settings=settings, report=lambda line: None, environ={})


def test_the_last_lines_say_where_to_look_how_to_rerun_and_how_to_stop(tmp_path: Path) -> None:
    text = next_steps(_stack(tmp_path), INFO, "2026-01-15")

    assert "http://127.0.0.1:8080" in text
    assert "login admin / generated-in-airflow-home" in text
    assert "s3://builditall-data/raw/orders/dt=2026-01-15/" in text
    assert "s3://builditall-data/processed/<table>/dt=2026-01-15/" in text
    assert "s3://builditall-logs/airflow/" in text
    assert str(tmp_path / "stack" / "logs") in text
    assert "nox -s pipeline -- --dag data_processing --date 2026-01-15" in text
    assert "nox -s down" in text
    assert "aws " not in text  # the AWS CLI is not a prerequisite


def test_every_session_the_last_lines_name_exists(tmp_path: Path) -> None:
    sessions = set(re.findall(r"^def (\w+)\(session", NOXFILE.read_text(), re.MULTILINE))
    for stays_up in (True, False):
        text = next_steps(_stack(tmp_path), INFO, "2026-01-15", stays_up=stays_up)
        named = set(re.findall(r"nox -s (\w+)", text))
        assert named
        assert named <= sessions, named - sessions
        assert set(re.findall(r"--dag (\w+)", text)) <= set(PIPELINE_DAGS)


def test_after_down_the_last_lines_offer_no_ui_and_no_listing(tmp_path: Path) -> None:
    text = next_steps(_stack(tmp_path), INFO, "2026-01-15", stays_up=False)

    assert "http://127.0.0.1:8080" not in text
    assert "nox -s ls" not in text
    assert "nox -s down" not in text


@mock_aws
def test_ls_lists_a_prefix_of_the_data_bucket_or_any_s3_uri() -> None:
    settings = load_settings("aws", environ={})
    s3 = boto3.client("s3", **settings.boto3_client_kwargs())
    for bucket in (settings.data_bucket, settings.logs_bucket):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=settings.data_bucket, Key="processed/orders/dt=D/part-0", Body=b"x" * 7)
    s3.put_object(Bucket=settings.data_bucket, Key="raw/orders/dt=D/part-0", Body=b"y")
    s3.put_object(Bucket=settings.logs_bucket, Key="airflow/dag_id=x/1.log", Body=b"z")

    processed = list_objects(settings, "processed/")
    logs = list_objects(settings, f"s3://{settings.logs_bucket}/airflow/")

    assert processed == [f"{7:>12}  s3://{settings.data_bucket}/processed/orders/dt=D/part-0"]
    assert [line.split()[-1] for line in logs] == [
        f"s3://{settings.logs_bucket}/airflow/dag_id=x/1.log"
    ]
    assert len(list_objects(settings)) == 2
