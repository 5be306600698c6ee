"""Tests of config/config.py: both committed envs load, the environment overrides, errors read well.

Every test passes an explicit `environ`, so the developer's shell (AWS_REGION, ...) cannot leak in.
Broken settings files live under tmp_path, selected with PIPELINE_ENVS_DIR.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from config.config import (
    DEFAULT_ENVS_DIR,
    ENV_NAMES,
    KEYS,
    REPO_ROOT,
    ConfigError,
    get_settings,
    load_settings,
)

LOCAL_FILE = "envs/local/settings.env"
URL_FORM = "an http(s) URL like http://localhost:4566"
CRON_FORM = "a 5-field cron expression like"

LOCAL_S3_CONF = {
    "spark.hadoop.fs.s3a.endpoint": "http://localhost:4566",
    "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
    "spark.hadoop.fs.s3a.path.style.access": "true",
    "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
    "spark.hadoop.fs.s3a.access.key": "test",
    "spark.hadoop.fs.s3a.secret.key": "test",
    "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
}


def committed_lines(env: str, drop: tuple[str, ...] = ()) -> list[str]:
    """The committed settings file of `env` without the lines setting the keys in `drop`."""
    lines = (DEFAULT_ENVS_DIR / env / "settings.env").read_text().splitlines()
    return [line for line in lines if line.partition("=")[0].strip() not in drop]


def envs_dir_with(tmp_path: Path, env: str, lines: list[str]) -> dict[str, str]:
    """Write tmp_path/envs/<env>/settings.env; return an environ selecting that envs dir."""
    settings_file = tmp_path / "envs" / env / "settings.env"
    settings_file.parent.mkdir(parents=True)
    settings_file.write_text("\n".join(lines) + "\n")
    return {"PIPELINE_ENVS_DIR": str(tmp_path / "envs")}


def config_error(env: str | None = None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(env, environ or {})
    return str(caught.value)


# --- the committed environments ------------------------------------------------------------


def test_local_env_loads_localstack_settings() -> None:
    settings = load_settings(environ={})

    assert settings.pipeline_env == "local"
    assert settings.aws_region == "us-east-1"
    assert settings.aws_endpoint_url == "http://localhost:4566"
    assert settings.aws_access_key_id == "test"
    assert isinstance(settings.aws_secret_access_key, SecretStr)
    assert settings.aws_secret_access_key.get_secret_value() == "test"
    assert settings.spark_master == "spark://127.0.0.1:7077"
    assert settings.spark_connect_url == "sc://127.0.0.1:15002"
    assert settings.spark_job_env() == {"SPARK_CONNECT_URL": "sc://127.0.0.1:15002"}
    assert (settings.generation_schedule, settings.processing_schedule) == (
        "0 9 * * *",
        "0 18 * * *",
    )
    assert settings.schedule_timezone == "UTC"
    assert settings.rows_per_day > 0
    assert settings.seed >= 0
    assert 0 <= settings.bad_record_rate <= 0.5
    assert settings.emr_release_label is None
    assert settings.sources["PIPELINE_ENV"] == "default"
    assert settings.sources["DATA_BUCKET"] == LOCAL_FILE


def test_aws_env_loads_without_endpoint_or_keys() -> None:
    settings = load_settings("aws", environ={})

    assert settings.pipeline_env == "aws"
    assert settings.aws_endpoint_url is None
    assert settings.aws_access_key_id is None
    assert settings.aws_secret_access_key is None
    assert settings.spark_master == "yarn"
    # Every EMR job is a Spark application of its own: no Connect server, no job environment.
    assert settings.spark_connect_url is None
    assert settings.spark_job_env() == {}
    assert settings.emr_release_label == "emr-spark-8.0.0"
    assert settings.emr_release is not None
    assert settings.emr_release.spark_version == "4.0.2"
    assert settings.emr_cluster_config_path == DEFAULT_ENVS_DIR / "aws" / "emr_cluster.json"
    assert settings.emr_job_artifacts_uri == "s3://builditall-data/artifacts/spark_jobs"


def test_aws_settings_file_holds_no_endpoint_and_no_keys() -> None:
    keys = {line.partition("=")[0] for line in committed_lines("aws") if "=" in line}
    assert not keys & {
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "EMR_ENDPOINT_URL",
    }


def test_pipeline_env_from_environment_and_argument() -> None:
    assert load_settings(environ={"PIPELINE_ENV": "aws"}).pipeline_env == "aws"
    assert load_settings(environ={"PIPELINE_ENV": "aws"}).sources["PIPELINE_ENV"] == "environment"
    # An explicit argument is the caller's decision and wins over the process environment.
    assert load_settings("local", environ={"PIPELINE_ENV": "aws"}).pipeline_env == "local"


def test_environment_overrides_a_file_value() -> None:
    settings = load_settings(environ={"DATA_BUCKET": "other-bucket", "ROWS_PER_DAY": "7"})

    assert settings.data_bucket == "other-bucket"
    assert settings.rows_per_day == 7
    assert settings.raw_uri == "s3://other-bucket/raw"
    assert settings.sources["DATA_BUCKET"] == "environment"
    assert settings.sources["RAW_PREFIX"] == LOCAL_FILE


def test_empty_endpoint_in_environment_means_real_aws() -> None:
    settings = load_settings(environ={"AWS_ENDPOINT_URL": ""})

    assert settings.aws_endpoint_url is None
    assert settings.spark_s3_conf() == {}


def test_empty_spark_connect_url_means_each_job_starts_its_own_driver() -> None:
    settings = load_settings(environ={"SPARK_CONNECT_URL": ""})

    assert settings.spark_connect_url is None
    assert settings.spark_job_env() == {}


def test_alerts_topic_arn_is_read_and_empty_means_unset() -> None:
    arn = "arn:aws:sns:eu-west-1:123456789012:builditall-alerts"
    assert load_settings("aws", environ={"ALERTS_TOPIC_ARN": arn}).alerts_topic_arn == arn
    # docker-compose.yml passes ${ALERTS_TOPIC_ARN:-}: empty when the stack set none.
    assert load_settings("aws", environ={"ALERTS_TOPIC_ARN": ""}).alerts_topic_arn is None
    assert load_settings("local", environ={}).alerts_topic_arn is None


def test_empty_emr_subnet_in_environment_means_unset() -> None:
    # docker-compose.yml passes ${EMR_SUBNET_ID:-}: empty when the instance's .env lacks it.
    settings = load_settings("aws", environ={"EMR_SUBNET_ID": ""})

    assert settings.emr_subnet_id is None
    assert settings.sources["EMR_SUBNET_ID"] == "environment"


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValidationError, match="frozen"):
        settings.data_bucket = "elsewhere"  # type: ignore[misc]


def test_secret_is_masked_in_repr() -> None:
    settings = load_settings(environ={"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"})
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings.model_dump())


# --- derived values ------------------------------------------------------------------------


def test_derived_uris_and_paths(tmp_path: Path) -> None:
    environ = envs_dir_with(tmp_path, "local", committed_lines("local"))
    environ |= {"RAW_PREFIX": "landing/raw", "LOGS_BUCKET": "my.logs-1", "LOGS_PREFIX": "af"}
    settings = load_settings(environ=environ)

    assert settings.raw_uri == "s3://builditall-data/landing/raw"
    assert settings.processed_uri == "s3://builditall-data/processed"
    assert settings.logs_uri == "s3://my.logs-1/af"
    assert settings.envs_dir == tmp_path / "envs"
    assert settings.settings_file == tmp_path / "envs" / "local" / "settings.env"


def test_default_envs_dir_is_repo_envs() -> None:
    settings = load_settings(environ={})
    assert settings.envs_dir == REPO_ROOT / "envs"
    assert settings.settings_file == REPO_ROOT / "envs" / "local" / "settings.env"


def test_boto3_client_kwargs_follow_the_environment() -> None:
    local = load_settings("local", environ={}).boto3_client_kwargs()
    assert local == {
        "region_name": "us-east-1",
        "endpoint_url": "http://localhost:4566",
        "aws_access_key_id": "test",
        "aws_secret_access_key": "test",  # pragma: allowlist secret (LocalStack dummy)
    }
    aws = load_settings("aws", environ={}).boto3_client_kwargs()
    assert aws["endpoint_url"] is None
    assert aws["aws_access_key_id"] is None
    assert aws["aws_secret_access_key"] is None


def test_emr_client_kwargs_use_the_emr_endpoint_only() -> None:
    emulated = load_settings(
        "aws",
        environ={
            "AWS_ENDPOINT_URL": "http://localhost:4566",
            "EMR_ENDPOINT_URL": "http://localhost:4570/",
        },
    )
    assert emulated.boto3_client_kwargs("emr")["endpoint_url"] == "http://localhost:4570"
    assert emulated.boto3_client_kwargs("s3")["endpoint_url"] == "http://localhost:4566"
    # Locally there is no EMR: an EMR client would go to AWS (and fail on the dummy keys).
    assert load_settings("local", environ={}).boto3_client_kwargs("emr")["endpoint_url"] is None


def test_emr_poll_intervals_default_and_override() -> None:
    aws = load_settings("aws", environ={})
    assert (aws.emr_step_poll_seconds, aws.emr_termination_poll_seconds) == (60, 30)
    fast = load_settings("aws", environ={"EMR_STEP_POLL_SECONDS": "2"})
    assert fast.emr_step_poll_seconds == 2
    with pytest.raises(ConfigError, match=r"EMR_STEP_POLL_SECONDS='0'.*from 1 to 600"):
        load_settings("aws", environ={"EMR_STEP_POLL_SECONDS": "0"})
    with pytest.raises(ConfigError, match="EMR_ENDPOINT_URL='localhost:4570'"):
        load_settings("aws", environ={"EMR_ENDPOINT_URL": "localhost:4570"})


def test_emr_step_timeout_and_log_wait_default_and_override() -> None:
    aws = load_settings("aws", environ={})
    assert (aws.emr_step_timeout_seconds, aws.emr_step_log_wait_seconds) == (10800, 300)
    short = load_settings(
        "aws", environ={"EMR_STEP_TIMEOUT_SECONDS": "240", "EMR_STEP_LOG_WAIT_SECONDS": "0"}
    )
    assert (short.emr_step_timeout_seconds, short.emr_step_log_wait_seconds) == (240, 0)
    with pytest.raises(ConfigError, match=r"EMR_STEP_TIMEOUT_SECONDS='5'.*from 60"):
        load_settings("aws", environ={"EMR_STEP_TIMEOUT_SECONDS": "5"})


def test_spark_s3_conf_local_points_s3_at_localstack() -> None:
    assert load_settings(environ={}).spark_s3_conf() == LOCAL_S3_CONF


def test_spark_s3_conf_aws_is_empty() -> None:
    assert load_settings("aws", environ={}).spark_s3_conf() == {}


def test_spark_s3_conf_https_endpoint_keeps_ssl() -> None:
    conf = load_settings(environ={"AWS_ENDPOINT_URL": "https://s3.example.com:9000/"})
    assert conf.spark_s3_conf()["spark.hadoop.fs.s3a.endpoint"] == "https://s3.example.com:9000"
    assert conf.spark_s3_conf()["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"


def test_spark_s3_conf_endpoint_without_keys_sets_no_credentials() -> None:
    environ = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    conf = load_settings(environ=environ).spark_s3_conf()
    assert "spark.hadoop.fs.s3a.access.key" not in conf
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://localhost:4566"


# --- accepted forms (the checks are not stricter than Spark, cron and S3) -------------------


@pytest.mark.parametrize(
    ("key", "value", "parsed"),
    [
        ("SPARK_MASTER", "local[*]", "local[*]"),
        ("SPARK_MASTER", "local[2]", "local[2]"),
        ("SPARK_MASTER", "local[4,3]", "local[4,3]"),
        ("SPARK_MASTER", "yarn", "yarn"),
        ("SPARK_MASTER", "spark://spark-master:7077", "spark://spark-master:7077"),
        ("GENERATION_SCHEDULE", "*/15 0-6 1,15 JAN-MAR mon-fri", "*/15 0-6 1,15 JAN-MAR mon-fri"),
        ("GENERATION_SCHEDULE", " 0  0 * * 7 ", "0 0 * * 7"),
        ("DATA_BUCKET", "my.bucket-1", "my.bucket-1"),
        ("BAD_RECORD_RATE", "0", 0.0),
        ("BAD_RECORD_RATE", "0.5", 0.5),
        ("SEED", "0", 0),
        ("ROWS_PER_DAY", " 250 ", 250),
        ("SCHEDULE_TIMEZONE", "Europe/Berlin", "Europe/Berlin"),
        ("AWS_REGION", "ap-southeast-2", "ap-southeast-2"),
        ("AWS_ENDPOINT_URL", "http://localstack:4566", "http://localstack:4566"),
    ],
)
def test_valid_forms_are_accepted(key: str, value: str, parsed: object) -> None:
    assert getattr(load_settings(environ={key: value}), key.lower()) == parsed


# --- error messages ------------------------------------------------------------------------


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_missing_key_names_key_file_and_expected_form(tmp_path: Path) -> None:
    environ = envs_dir_with(tmp_path, "local", committed_lines("local", drop=("DATA_BUCKET",)))
    settings_file = tmp_path / "envs" / "local" / "settings.env"

    assert config_error(environ=environ) == (
        f"DATA_BUCKET is not set ({settings_file} or the environment); "
        "expected a bucket name like builditall-data"
    )


def test_empty_required_value_is_reported_as_empty() -> None:
    message = config_error(environ={"DATA_BUCKET": ""})
    assert message == (
        "DATA_BUCKET is empty (from the environment); expected a bucket name like builditall-data"
    )


def test_emr_settings_are_required_on_aws(tmp_path: Path) -> None:
    lines = committed_lines("aws", drop=("EMR_RELEASE_LABEL",))
    environ = envs_dir_with(tmp_path, "aws", lines) | {"PIPELINE_ENV": "aws"}

    message = config_error(environ=environ)
    assert message.startswith("EMR_RELEASE_LABEL is not set (")
    assert str(tmp_path / "envs" / "aws" / "settings.env") in message
    assert "required when PIPELINE_ENV=aws" in message
    assert "expected an EMR release label listed in envs/aws/emr_releases.toml" in message


@pytest.mark.parametrize(
    ("key", "value", "reason", "expected"),
    [
        ("DATA_BUCKET", "Builditall_Data", "lowercase letters", "a bucket name like"),
        ("DATA_BUCKET", "ab", "3 to 63", "a bucket name like"),
        ("DATA_BUCKET", "192.168.1.1", "IP address", "a bucket name like"),
        ("LOGS_BUCKET", "logs..bucket", "adjacent dots", "a bucket name like builditall-logs"),
        ("AWS_ENDPOINT_URL", "localhost:4566", "http:// or https://", URL_FORM),
        ("AWS_ENDPOINT_URL", "http://localhost:99999", "port", URL_FORM),
        ("AWS_ENDPOINT_URL", "http://localhost:4566/s3", "path", URL_FORM),
        ("GENERATION_SCHEDULE", "0 9 * *", "has 4 fields", CRON_FORM),
        ("GENERATION_SCHEDULE", "0 25 * * *", "hour field", CRON_FORM),
        ("PROCESSING_SCHEDULE", "0 18 * * ?", "cron does not allow", CRON_FORM),
        ("PROCESSING_SCHEDULE", "@daily", "has 1 field;", CRON_FORM),
        ("SCHEDULE_TIMEZONE", "Mars/Olympus", "not a time zone", "an IANA time zone like UTC"),
        ("ROWS_PER_DAY", "0", "greater than 0", "a whole number greater than 0"),
        ("ROWS_PER_DAY", "lots", "valid integer", "a whole number greater than 0"),
        ("SEED", "-1", "greater than or equal to 0", "a whole number >= 0"),
        ("BAD_RECORD_RATE", "0.9", "less than or equal to 0.5", "a number from 0 to 0.5"),
        ("BAD_RECORD_RATE", "nan", "finite", "a number from 0 to 0.5"),
        ("SPARK_MASTER", "local", "Spark master", "spark://host:port"),
        ("SPARK_MASTER", "spark://127.0.0.1", "Spark master", "spark://host:port"),
        ("SPARK_MASTER", "mesos://host:5050", "Spark master", "spark://host:port"),
        ("SPARK_CONNECT_URL", "http://127.0.0.1:15002", "Spark Connect URL", "sc://host:port"),
        ("SPARK_CONNECT_URL", "sc://127.0.0.1", "Spark Connect URL", "sc://host:port"),
        ("SPARK_CONNECT_URL", "sc://127.0.0.1:70000", "port outside", "sc://host:port"),
        ("AWS_REGION", "US-East-1", "AWS region", "an AWS region like us-east-1"),
        ("RAW_PREFIX", "/raw/", "leading or trailing", "a key prefix like raw"),
    ],
)
def test_malformed_value_from_environment(key: str, value: str, reason: str, expected: str) -> None:
    message = config_error(environ={key: value})

    assert message.startswith(f"{key}={value!r} (from the environment) ")
    assert reason in message
    assert f"; expected {expected}" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("EMR_RELEASE_LABEL", "7.12.0", "an EMR release label listed in envs/aws/emr_releases"),
        ("EMR_CLUSTER_CONFIG", "../emr_cluster.json", "a .json path relative to envs/<env>/"),
        ("EMR_CLUSTER_CONFIG", "emr_cluster.yaml", "a .json path relative to envs/<env>/"),
        ("EMR_JOB_ARTIFACT_PREFIX", "artifacts//jobs", "a key prefix like artifacts/spark_jobs"),
        ("EMR_SUBNET_ID", "sn-0123abcd", "an EC2 subnet id like subnet-0123456789abcdef0"),
        ("ALERTS_TOPIC_ARN", "builditall-alerts", "an SNS topic ARN like arn:aws:sns:"),
        ("ALERTS_TOPIC_ARN", "arn:aws:sqs:us-east-1:123456789012:alerts", "an SNS topic ARN"),
    ],
)
def test_malformed_emr_value(key: str, value: str, expected: str) -> None:
    message = config_error("aws", environ={key: value})
    assert message.startswith(f"{key}={value!r} (from the environment) ")
    assert f"; expected {expected}" in message


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        # Known to the table, refused with its reason.
        ("emr-7.12.0", "its Spark 3.5 lacks the Spark 4 APIs"),
        # A real label the table does not list: add it there to support it.
        ("emr-spark-8.1.0", "add it there, from AWS's release guide"),
    ],
)
def test_release_label_not_in_the_release_table(label: str, reason: str) -> None:
    message = config_error("aws", environ={"EMR_RELEASE_LABEL": label})

    assert message.startswith(f"EMR_RELEASE_LABEL={label!r} (from the environment) ")
    assert "is not a release this project supports" in message
    assert "envs/aws/emr_releases.toml lists emr-spark-8.0.0" in message
    assert reason in message


def test_malformed_value_in_file_names_the_file(tmp_path: Path) -> None:
    lines = [*committed_lines("local", drop=("ROWS_PER_DAY",)), "ROWS_PER_DAY=ten"]
    environ = envs_dir_with(tmp_path, "local", lines)

    message = config_error(environ=environ)
    assert message.startswith(
        f"ROWS_PER_DAY='ten' (from {tmp_path / 'envs' / 'local' / 'settings.env'}) is invalid"
    )


def test_several_bad_keys_are_listed_in_one_message() -> None:
    environ = {"DATA_BUCKET": "Bad_Bucket", "SEED": "-3", "SCHEDULE_TIMEZONE": "Nowhere/Land"}
    message = config_error(environ=environ)

    assert message.startswith("3 settings problems:")
    for key, value in environ.items():
        assert f"\n  - {key}={value!r} (from the environment)" in message


@pytest.mark.parametrize(
    ("env", "environ", "origin"),
    [
        (None, {"PIPELINE_ENV": "prod"}, "from the environment"),
        ("staging", {}, "from the load_settings argument"),
    ],
)
def test_unknown_pipeline_env_lists_the_valid_ones(
    env: str | None, environ: dict[str, str], origin: str
) -> None:
    message = config_error(env, environ)
    assert origin in message
    assert message.endswith("expected one of: local, aws")
    assert ENV_NAMES == ("local", "aws")


def test_missing_settings_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "envs").mkdir()
    message = config_error(environ={"PIPELINE_ENVS_DIR": str(tmp_path / "envs")})
    assert message.startswith(f"{tmp_path / 'envs' / 'local' / 'settings.env'} not found")


def test_envs_dir_that_does_not_exist() -> None:
    message = config_error(environ={"PIPELINE_ENVS_DIR": "/no/such/envs"})
    assert message.startswith("PIPELINE_ENVS_DIR='/no/such/envs' (from the environment)")
    assert "is not a directory" in message


def test_bad_lines_in_settings_file_are_all_reported(tmp_path: Path) -> None:
    lines = [
        *committed_lines("local"),
        "just some words",
        "DATA_BUCKT=builditall-data",
        "PIPELINE_ENV=aws",
        "SEED=1",
    ]
    environ = envs_dir_with(tmp_path, "local", lines)
    message = config_error(environ=environ)
    first_extra = len(committed_lines("local")) + 1

    assert message.startswith("4 settings problems:")
    assert f"line {first_extra}: expected KEY=value, got 'just some words'" in message
    assert "DATA_BUCKT is not a known setting; did you mean DATA_BUCKET?" in message
    assert "PIPELINE_ENV is chosen by the folder name" in message
    assert f"line {first_extra + 3}: SEED is set twice" in message


def test_access_keys_must_be_set_together() -> None:
    message = config_error(environ={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    assert message.startswith("AWS_SECRET_ACCESS_KEY='**********' (from the environment)")
    assert "without AWS_ACCESS_KEY_ID" in message
    assert "s3cr3t" not in message

    message = config_error("aws", environ={"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"})
    assert message.startswith("AWS_SECRET_ACCESS_KEY is not set (envs/aws/settings.env")
    assert "but AWS_ACCESS_KEY_ID is" in message


# --- process-level behaviour ---------------------------------------------------------------


def test_get_settings_is_cached_and_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (*KEYS, "PIPELINE_ENVS_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIPELINE_ENV", "aws")
    get_settings.cache_clear()
    try:
        first = get_settings()
        monkeypatch.setenv("PIPELINE_ENV", "local")
        assert first.pipeline_env == "aws"
        assert get_settings() is first
    finally:
        get_settings.cache_clear()


def _clean_environ(**extra: str) -> dict[str, str]:
    """The test process environment without any pipeline setting, plus `extra`."""
    environ = {k: v for k, v in os.environ.items() if k not in KEYS and k != "PIPELINE_ENVS_DIR"}
    return environ | extra


def _python(*args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=_clean_environ(**environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_loads_no_spark_and_no_boto3() -> None:
    heavy = ("pyspark", "py4j", "boto3", "botocore", "airflow", "requests")
    code = f"import sys, config.config; print([m for m in {heavy!r} if m in sys.modules])"
    result = _python("-c", code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_cli_show_masks_the_secret_and_names_sources() -> None:
    result = _python("-m", "config", "show", DATA_BUCKET="cli-bucket")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    row = {line.partition("=")[0]: line for line in lines if not line.startswith("#")}
    assert set(row) == set(KEYS)
    assert row["AWS_SECRET_ACCESS_KEY"].split()[0] == "AWS_SECRET_ACCESS_KEY=**********"
    assert row["DATA_BUCKET"].split() == ["DATA_BUCKET=cli-bucket", "#", "environment"]
    assert row["RAW_PREFIX"].split() == ["RAW_PREFIX=raw", "#", LOCAL_FILE]
    assert "# raw_uri = s3://cli-bucket/raw" in lines


def test_cli_spark_conf_prints_one_conf_per_line() -> None:
    local = _python("-m", "config", "spark-conf", PIPELINE_ENV="local")
    aws = _python("-m", "config", "spark-conf", PIPELINE_ENV="aws")

    assert local.returncode == 0, local.stderr
    assert sorted(local.stdout.splitlines()) == sorted(
        f"--conf {key}={value}"
        for key, value in load_settings("local", environ={}).spark_submit_conf().items()
    )
    assert len(local.stdout.splitlines()) == len(LOCAL_S3_CONF) + 2  # + the JVM options
    assert (aws.returncode, aws.stdout) == (0, "")


def test_cli_reports_config_errors_without_a_traceback() -> None:
    result = _python("-m", "config", "show", PIPELINE_ENV="prod")

    assert result.returncode == 1
    assert result.stderr.startswith("config error: PIPELINE_ENV='prod' (from the environment)")
    assert "Traceback" not in result.stderr


def test_spark_submit_conf_adds_the_java_options_where_set() -> None:
    local = load_settings(environ={})
    conf = local.spark_submit_conf()
    assert conf["spark.driver.extraJavaOptions"] == local.spark_java_options
    assert conf["spark.executor.extraJavaOptions"] == local.spark_java_options
    assert {k: v for k, v in conf.items() if "JavaOptions" not in k} == local.spark_s3_conf()
    # On EMR the cluster's own JVM options stay in force.
    assert load_settings("aws", environ={}).spark_submit_conf() == {}
    unset = load_settings(environ={"SPARK_JAVA_OPTIONS": ""}).spark_submit_conf()
    assert "spark.driver.extraJavaOptions" not in unset
