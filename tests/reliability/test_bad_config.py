"""Bad configuration, table-driven over every setting: a missing or malformed value stops things
with one clear message (the key, where the value came from, the expected form) before any work.

tests/unit/test_config.py covers the message forms one by one; this file makes sure no setting is
left out (the tables must name every key of config.KEYS), and that the entry points refuse to
start: the config CLI, `python -m host_stack up` (no process started) and both Spark jobs (no
SparkSession). The DAG files turn the same error into a DagBag import error
(tests/dags/test_dag_config_errors.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.config import KEYS, Settings
from host_stack.localstack import free_port
from host_stack.stack_settings import STACK_ENV_NAMES
from spark_jobs import data_generator, data_processor
from tests.unit.test_config import committed_lines, config_error, envs_dir_with

REPO_ROOT = Path(__file__).resolve().parents[2]

# One malformed value per setting, and a word its message must contain.
MALFORMED = {
    "PIPELINE_ENV": ("prod", "not a known environment"),
    "AWS_REGION": ("Frankfurt", "not an AWS region name"),
    "AWS_ENDPOINT_URL": ("localhost:4566", "http:// or https:// URL"),
    "AWS_ACCESS_KEY_ID": ("", "set both, or neither"),  # empty id next to the local secret
    "AWS_SECRET_ACCESS_KEY": ("", "set together with AWS_ACCESS_KEY_ID"),  # next to the local id
    "DATA_BUCKET": ("Data_Bucket", "lowercase letters"),
    "RAW_PREFIX": ("raw/", "trailing '/'"),
    "PROCESSED_PREFIX": ("/processed", "leading or trailing '/'"),
    "LOGS_BUCKET": ("-logs", "begin and end with a lowercase letter or digit"),
    "LOGS_PREFIX": ("air flow", "segments of letters"),
    "SPARK_MASTER": ("spark://127.0.0.1", "not a Spark master"),
    "SPARK_JAVA_OPTIONS": ("XX:-DontCompileHugeMethods", "each starting with '-'"),
    "SPARK_CONNECT_URL": ("spark://127.0.0.1:15002", "not a Spark Connect URL"),
    "EMR_ENDPOINT_URL": ("localhost:4570", "http:// or https:// URL"),
    "EMR_SUBNET_ID": ("subnet-xyz", "not an EC2 subnet id"),
    "ALERTS_TOPIC_ARN": ("arn:aws:sns:us-east-1:alerts", "not an SNS topic ARN"),
    "EMR_STEP_POLL_SECONDS": ("0", "greater than or equal to 1"),
    "EMR_TERMINATION_POLL_SECONDS": ("601", "less than or equal to 600"),
    "EMR_STEP_TIMEOUT_SECONDS": ("30", "greater than or equal to 60"),
    "EMR_STEP_LOG_WAIT_SECONDS": ("-1", "greater than or equal to 0"),
    "EMR_RELEASE_LABEL": ("emr-7", "not an EMR release label"),
    "EMR_CLUSTER_CONFIG": ("/etc/emr.json", "relative path to a .json file"),
    "EMR_JOB_ARTIFACT_PREFIX": ("artifacts//jobs", "segments of letters"),
    "GENERATION_SCHEDULE": ("0 9 * * * *", "has 6 fields"),
    "PROCESSING_SCHEDULE": ("0 18 32 * *", "outside 1-31"),
    "SCHEDULE_TIMEZONE": ("CET+1", "not a time zone"),
    "TASK_RETRY_DELAY_SECONDS": ("0", "greater than or equal to 1"),
    "ROWS_PER_DAY": ("1e6", "valid integer"),
    "SEED": ("-1", "greater than or equal to 0"),
    "BAD_RECORD_RATE": ("2%", "valid number"),
}
AWS_ONLY = ("EMR_RELEASE_LABEL", "EMR_CLUSTER_CONFIG", "EMR_JOB_ARTIFACT_PREFIX")


def required(env: str) -> list[str]:
    """The settings an environment cannot run without (no default, or aws-only on aws)."""
    keys = [
        key
        for key in KEYS
        if key != "PIPELINE_ENV" and Settings.model_fields[key.lower()].is_required()
    ]
    return keys + list(AWS_ONLY) if env == "aws" else keys


def expected_form(key: str) -> str:
    return Settings.model_fields[key.lower()].json_schema_extra["expected"]


def test_the_tables_cover_every_setting():
    assert set(MALFORMED) == set(KEYS), "add the new setting to MALFORMED"
    assert set(required("local")) < set(required("aws")) <= set(KEYS)


@pytest.mark.parametrize(
    ("env", "key"), [(env, key) for env in ("local", "aws") for key in required(env)]
)
def test_a_missing_setting_names_the_key_the_file_and_the_form(tmp_path, env, key):
    environ = envs_dir_with(tmp_path, env, committed_lines(env, drop=(key,)))
    settings_file = tmp_path / "envs" / env / "settings.env"

    message = config_error(env, environ)

    assert message.startswith(f"{key} is not set ({settings_file} or the environment)")
    assert message.endswith(f"; expected {expected_form(key)}")
    assert "\n" not in message


@pytest.mark.parametrize("key", sorted(set(MALFORMED) - {"PIPELINE_ENV"}))
@pytest.mark.parametrize("source", ["environment", "file"])
def test_a_malformed_setting_names_the_key_the_value_its_source_and_the_form(tmp_path, key, source):
    value, reason = MALFORMED[key]
    env = "aws" if key in AWS_ONLY else "local"
    if source == "environment":
        environ = {key: value}
        origin = "the environment"
    else:
        lines = [*committed_lines(env, drop=(key,)), f"{key}={value}"]
        environ = envs_dir_with(tmp_path, env, lines)
        origin = str(tmp_path / "envs" / env / "settings.env")

    message = config_error(env, environ)

    assert "\n" not in message, message
    assert reason in message
    if value:
        assert message.startswith(f"{key}={value!r} (from {origin}) ")
        assert message.endswith(f"; expected {expected_form(key)}")
    else:  # an empty key id or secret: the pair is reported on the secret, never its value
        assert message.startswith("AWS_SECRET_ACCESS_KEY")


def test_an_unknown_environment_is_one_error():
    value, reason = MALFORMED["PIPELINE_ENV"]
    message = config_error(environ={"PIPELINE_ENV": value})
    assert message.startswith(f"PIPELINE_ENV={value!r} (from the environment)")
    assert reason in message


# --- entry points refuse to start ---------------------------------------------------------------


def _clean_environ(**extra: str) -> dict[str, str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in KEYS and k not in STACK_ENV_NAMES.values() and k != "PIPELINE_ENVS_DIR"
    }
    return environ | extra


@pytest.mark.parametrize("key", ["DATA_BUCKET", "SPARK_MASTER", "TASK_RETRY_DELAY_SECONDS"])
def test_host_stack_up_refuses_a_bad_setting_before_starting_anything(tmp_path, key):
    value, reason = MALFORMED[key]
    state_dir = tmp_path / "stack"
    environ = _clean_environ(
        **{key: value},
        STACK_STATE_DIR=str(state_dir),
        AIRFLOW_API_PORT=str(free_port()),
        SPARK_MASTER_PORT=str(free_port()),
        SPARK_MASTER_WEBUI_PORT=str(free_port()),
        LOCALSTACK_PORT=str(free_port()),
    )
    result = subprocess.run(
        [sys.executable, "-m", "host_stack", "up", "--timeout", "30"],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {key}={value!r} (from the environment)")
    assert reason in result.stderr
    assert "Traceback" not in result.stderr
    assert not (state_dir / "pids").exists(), "a process was started before the check"


@pytest.fixture
def no_spark(monkeypatch):
    """Fail the test if anything starts (or joins) a SparkSession."""
    from pyspark.sql import SparkSession

    def refuse(self):
        raise AssertionError("a SparkSession was requested before the arguments were checked")

    monkeypatch.setattr(SparkSession.Builder, "getOrCreate", refuse)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "10", "--output", "/tmp/x"], "the following arguments are required: --date"),
        (["--date", "2024-01-15", "--output", "/tmp/x"], "required: --rows"),
        (["--date", "2024-01-15", "--rows", "10"], "required: --output"),
        (["--date", "2024-02-30", "--rows", "10", "--output", "/tmp/x"], "not a calendar date"),
        (["--date", "2024-01-15", "--rows", "0", "--output", "/tmp/x"], "--rows 0 is out of range"),
    ],
)
def test_the_generator_checks_its_arguments_before_spark(no_spark, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        data_generator.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--input", "/tmp/r", "--output", "/tmp/p"],
            "the following arguments are required: --date",
        ),
        (["--date", "2024-01-15", "--output", "/tmp/p"], "required: --input"),
        (["--date", "2024-01-15", "--input", "/tmp/r"], "required: --output"),
        (
            ["--date", "15/01/2024", "--input", "/tmp/r", "--output", "/tmp/p"],
            "--date '15/01/2024' is not a date; expected YYYY-MM-DD",
        ),
    ],
)
def test_the_processor_checks_its_arguments_before_spark(no_spark, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        data_processor.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
