"""The one place that decides the target environment and its settings.

`PIPELINE_ENV` (local | aws, default local) selects the committed, non-secret
`envs/<env>/settings.env`; any key set in the process environment overrides the file.
Everything is typed and validated once, in `load_settings()`; a bad or missing value raises
one `ConfigError` naming the key, where it came from and the expected form.

DAG files import this at parse time, so it must stay cheap: no network, no Spark, no boto3.
"""

from __future__ import annotations

import functools
import os
import re
import zoneinfo
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.emr_releases import EmrRelease, load_emr_releases

__all__ = [
    "ENV_NAMES",
    "KEYS",
    "ConfigError",
    "Settings",
    "get_settings",
    "load_settings",
]

PipelineEnv = Literal["local", "aws"]
ENV_NAMES: tuple[str, ...] = get_args(PipelineEnv)
DEFAULT_ENV = "local"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ENVS_DIR = REPO_ROOT / "envs"
SETTINGS_FILE_NAME = "settings.env"

# Where a value came from, as shown by `python -m config show` and in error messages.
FROM_ENVIRONMENT = "environment"
FROM_DEFAULT = "default"
FROM_ARGUMENT = "load_settings argument"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the key, its source and the fix."""


def _setting(default: Any = ..., *, description: str, expected: str, **kwargs: Any) -> Any:
    """A field with a description and the expected form quoted in error messages."""
    return Field(
        default, description=description, json_schema_extra={"expected": expected}, **kwargs
    )


# --- value checks (plain functions so their messages read as sentences) ---------------------

_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")
_SPARK_STANDALONE_RE = re.compile(r"spark://(?P<host>[^\s:/]+):(?P<port>\d+)")
_SPARK_LOCAL_RE = re.compile(r"local\[(\*|[1-9]\d*)(,[1-9]\d*)?\]")
_SPARK_CONNECT_RE = re.compile(r"sc://(?P<host>[^\s:/]+):(?P<port>\d+)")
_EMR_RELEASE_RE = re.compile(r"emr-(spark-)?\d+\.\d+\.\d+")
_SNS_TOPIC_ARN_RE = re.compile(
    r"arn:aws(-[a-z]+)*:sns:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:[A-Za-z0-9_-]{1,256}"
)
_CRON_ITEM_RE = re.compile(r"(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(\d+))?")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (name, lowest, highest, names with their numbers) for the five cron fields.
_CRON_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, {name: i for i, name in enumerate(_MONTHS, start=1)}),
    ("day-of-week", 0, 7, {name: i for i, name in enumerate(_DAYS)}),
)


def _check_bucket_name(name: str) -> str:
    """Apply S3's general-purpose bucket naming rules."""
    if not 3 <= len(name) <= 63:
        raise ValueError(f"is {len(name)} characters long; S3 bucket names have 3 to 63")
    if not re.fullmatch(r"[a-z0-9.-]+", name):
        raise ValueError("may only contain lowercase letters, digits, dots and hyphens")
    if not (name[0].isalnum() and name[-1].isalnum()):
        raise ValueError("must begin and end with a lowercase letter or digit")
    if ".." in name:
        raise ValueError("must not contain two adjacent dots")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        raise ValueError("must not be formatted as an IP address")
    for prefix in ("xn--", "sthree-", "amzn-s3-demo-"):
        if name.startswith(prefix):
            raise ValueError(f"must not start with the reserved prefix {prefix!r}")
    for suffix in ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"):
        if name.endswith(suffix):
            raise ValueError(f"must not end with the reserved suffix {suffix!r}")
    return name


def _check_key_prefix(prefix: str) -> str:
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            "must be segments of letters, digits, '.', '_' or '-' joined by single '/', "
            "with no leading or trailing '/'"
        )
    return prefix


def _check_cron_value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> None:
    number = int(text) if text.isdigit() else names.get(text.upper())
    if number is None:
        raise ValueError(f"has {text!r} in the {name} field; use {low}-{high} with * , - /")
    if not low <= number <= high:
        raise ValueError(f"has {text!r} in the {name} field, outside {low}-{high}")


def _check_cron(expression: str) -> str:
    """Check a 5-field cron expression: field count, characters and number ranges."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"has {len(fields)} field{'' if len(fields) == 1 else 's'}; cron needs 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.split(","):
            match = _CRON_ITEM_RE.fullmatch(item)
            if match is None:
                raise ValueError(f"has characters cron does not allow in the {name} field {text!r}")
            base, step = match.groups()
            if step is not None and int(step) == 0:
                raise ValueError(f"has a step of 0 in the {name} field {text!r}")
            if base != "*":
                for value in base.split("-"):
                    _check_cron_value(value, name, low, high, names)
    return " ".join(fields)


def _check_endpoint_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - urlsplit only checks the port when it is read
    except ValueError:
        raise ValueError("has a port that is not a number between 0 and 65535") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must not have a path, query or fragment")
    return url.rstrip("/")


def _check_host_port_url(pattern: re.Pattern[str], url: str, what: str) -> str:
    """`url` if it matches `pattern` (with a `port` group) and its port is 1-65535."""
    match = pattern.fullmatch(url)
    if match is None:
        raise ValueError(f"is not {what}")
    if not 1 <= int(match["port"]) <= 65535:
        raise ValueError("has a port outside 1-65535")
    return url


def _check_spark_master(master: str) -> str:
    if master == "yarn" or _SPARK_LOCAL_RE.fullmatch(master):
        return master
    return _check_host_port_url(
        _SPARK_STANDALONE_RE, master, "a Spark master this pipeline supports"
    )


def _check_spark_connect_url(url: str) -> str:
    return _check_host_port_url(_SPARK_CONNECT_RE, url, "a Spark Connect URL")


def _check_relative_json_path(path: str) -> str:
    pure = PurePosixPath(path)
    if "\\" in path or pure.is_absolute() or ".." in pure.parts or pure.suffix != ".json":
        raise ValueError("must be a relative path to a .json file, using '/' and no '..'")
    return path


def _check_region(region: str) -> str:
    if not _REGION_RE.fullmatch(region):
        raise ValueError("is not an AWS region name")
    return region


def _check_emr_release(label: str) -> str:
    if not _EMR_RELEASE_RE.fullmatch(label):
        raise ValueError("is not an EMR release label of the form emr-spark-X.Y.Z or emr-X.Y.Z")
    releases = load_emr_releases()
    if releases.get(label) is None:
        table = _display(releases.source)
        listed = ", ".join(releases.supported)
        refused = releases.unsupported.get(label)
        why = refused.unsupported_because if refused else None
        raise ValueError(
            f"is not a release this project supports ({table} lists {listed})"
            + (f": {why}" if why else "; add it there, from AWS's release guide, to support it")
        )
    return label


def _check_subnet_id(subnet_id: str) -> str:
    if not re.fullmatch(r"subnet-[0-9a-f]{8,17}", subnet_id):
        raise ValueError("is not an EC2 subnet id of the form subnet-0123456789abcdef0")
    return subnet_id


def _check_sns_topic_arn(arn: str) -> str:
    if not _SNS_TOPIC_ARN_RE.fullmatch(arn):
        raise ValueError("is not an SNS topic ARN")
    return arn


def _check_java_options(options: str) -> str:
    if not all(token.startswith("-") for token in options.split()):
        raise ValueError("must be JVM options, each starting with '-'")
    return options


def _check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not a time zone known to zoneinfo") from None
    return name


_KEY_CHECKS = {
    "aws_region": _check_region,
    "emr_release_label": _check_emr_release,
    "data_bucket": _check_bucket_name,
    "logs_bucket": _check_bucket_name,
    "raw_prefix": _check_key_prefix,
    "processed_prefix": _check_key_prefix,
    "logs_prefix": _check_key_prefix,
    "emr_job_artifact_prefix": _check_key_prefix,
    "emr_subnet_id": _check_subnet_id,
    "alerts_topic_arn": _check_sns_topic_arn,
    "generation_schedule": _check_cron,
    "processing_schedule": _check_cron,
    "aws_endpoint_url": _check_endpoint_url,
    "emr_endpoint_url": _check_endpoint_url,
    "spark_java_options": _check_java_options,
    "spark_master": _check_spark_master,
    "spark_connect_url": _check_spark_connect_url,
    "emr_cluster_config": _check_relative_json_path,
    "schedule_timezone": _check_timezone,
}
_OPTIONAL_KEYS = (
    "aws_endpoint_url",
    "aws_access_key_id",
    "aws_secret_access_key",
    "emr_subnet_id",
    "spark_java_options",
    "spark_connect_url",
    "emr_endpoint_url",
    "alerts_topic_arn",
)
_AWS_ONLY_KEYS = ("emr_release_label", "emr_cluster_config", "emr_job_artifact_prefix")


class Settings(BaseSettings):
    """Validated pipeline settings for one environment. Build it with `load_settings()`."""

    # Only init kwargs: load_settings() does the file + environment merge itself, so it stays
    # pure (an explicit environ) and knows where each value came from.
    model_config = SettingsConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=True, validate_default=True
    )

    pipeline_env: PipelineEnv = _setting(
        DEFAULT_ENV,
        description="Target environment; selects envs/<env>/settings.env.",
        expected="one of: " + ", ".join(ENV_NAMES),
    )
    aws_region: str = _setting(
        description="AWS region of the buckets and EMR clusters (LocalStack accepts any).",
        expected="an AWS region like us-east-1",
    )
    aws_endpoint_url: str | None = _setting(
        None,
        description="S3/AWS endpoint override: LocalStack's URL locally; unset for real AWS.",
        expected="an http(s) URL like http://localhost:4566, or empty for real AWS",
    )
    aws_access_key_id: str | None = _setting(
        None,
        description="Static access key (LocalStack's dummy 'test'); unset to use the "
        "instance profile / default credential chain.",
        expected="an access key id (LocalStack uses test), or unset for the instance profile",
    )
    aws_secret_access_key: SecretStr | None = _setting(
        None,
        description="Secret for aws_access_key_id; set together with it or not at all.",
        expected="a secret key (LocalStack uses test), set together with AWS_ACCESS_KEY_ID",
    )
    data_bucket: str = _setting(
        description="Bucket holding raw and processed data (and the EMR job artifacts).",
        expected="a bucket name like builditall-data",
    )
    raw_prefix: str = _setting(
        description="Key prefix of the raw JSON-lines data in the data bucket.",
        expected="a key prefix like raw",
    )
    processed_prefix: str = _setting(
        description="Key prefix of the processed Parquet tables in the data bucket.",
        expected="a key prefix like processed",
    )
    logs_bucket: str = _setting(
        description="Bucket for the pipeline logs (Airflow remote task logs).",
        expected="a bucket name like builditall-logs",
    )
    logs_prefix: str = _setting(
        description="Key prefix of the logs in the logs bucket.",
        expected="a key prefix like airflow",
    )
    spark_master: str = _setting(
        description="Spark master the jobs are submitted to (yarn on EMR).",
        expected="spark://host:port, local[N], local[*] or yarn",
    )
    spark_connect_url: str | None = _setting(
        None,
        description="Spark Connect server the jobs run on as clients (local only: the stack's "
        "long-lived Spark application on SPARK_MASTER); unset: each job starts its own driver.",
        expected="sc://host:port, or unset",
    )
    spark_java_options: str | None = _setting(
        None,
        description="JVM options of the jobs' Spark driver and executors; unset keeps the "
        "cluster's own (EMR sets its defaults in spark-defaults).",
        expected="JVM options like -XX:-DontCompileHugeMethods, or unset",
    )
    emr_release_label: str | None = _setting(
        None,
        description="EMR release of the per-job clusters (aws only); one of "
        "envs/aws/emr_releases.toml, which says what Spark, Python and Java it runs.",
        expected="an EMR release label listed in envs/aws/emr_releases.toml, like emr-spark-8.0.0",
    )
    emr_cluster_config: str | None = _setting(
        None,
        description="JSON file describing the EMR cluster, relative to envs/<env>/ (aws only).",
        expected="a .json path relative to envs/<env>/, like emr_cluster.json",
    )
    emr_job_artifact_prefix: str | None = _setting(
        None,
        description="Key prefix in the data bucket where the Spark job code is uploaded "
        "(aws only).",
        expected="a key prefix like artifacts/spark_jobs",
    )
    emr_subnet_id: str | None = _setting(
        None,
        description="Subnet the EMR clusters launch into (aws only); the deployed stack's "
        "tagged subnet, set on the Airflow instance by envs/aws/cloudformation.yaml.",
        expected="an EC2 subnet id like subnet-0123456789abcdef0, or unset",
    )
    emr_endpoint_url: str | None = _setting(
        None,
        description="EMR API endpoint override: the EMR emulator's URL when rehearsing aws "
        "offline (host_stack); unset for real EMR.",
        expected="an http(s) URL like http://localhost:4570, or empty for real EMR",
    )
    emr_step_poll_seconds: int = _setting(
        60,
        description="How often Airflow asks EMR whether a job's step has finished (aws only).",
        expected="a whole number of seconds from 1 to 600, like 60",
        ge=1,
        le=600,
    )
    emr_termination_poll_seconds: int = _setting(
        30,
        description="How often Airflow asks EMR whether a job's cluster has terminated (aws only).",
        expected="a whole number of seconds from 1 to 600, like 30",
        ge=1,
        le=600,
    )
    emr_step_timeout_seconds: int = _setting(
        10800,
        description="How long a job's step may run before wait_for_step fails and the teardown "
        "terminates its cluster, cancelling the step (aws only).",
        expected="a whole number of seconds from 60, like 10800 (3 hours)",
        ge=60,
    )
    emr_step_log_wait_seconds: int = _setting(
        300,
        description="How long a failed step's wait_for_step waits for EMR to ship the step's "
        "logs to S3 before it names their URI instead of showing their last lines (aws only).",
        expected="a whole number of seconds from 0 to 1800, like 300",
        ge=0,
        le=1800,
    )
    alerts_topic_arn: str | None = _setting(
        None,
        description="SNS topic that hears of every failed DAG run and failed EMR teardown "
        "(orchestration/alerts.py); the deployed stack's, set on the Airflow instance by "
        "envs/aws/cloudformation.yaml. Unset: failures are only in Airflow.",
        expected="an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:builditall-alerts, "
        "or unset",
    )
    generation_schedule: str = _setting(
        description="Cron schedule of the data generation DAG.",
        expected="a 5-field cron expression like '0 9 * * *'",
    )
    processing_schedule: str = _setting(
        description="Cron schedule of the data processing DAG.",
        expected="a 5-field cron expression like '0 18 * * *'",
    )
    schedule_timezone: str = _setting(
        "UTC",
        description="IANA time zone the schedules are read in.",
        expected="an IANA time zone like UTC or Europe/Berlin",
    )
    task_retry_delay_seconds: int = _setting(
        description="Seconds Airflow waits before a failed task's first retry (doubled on each "
        "further retry, up to 30 minutes).",
        expected="a whole number of seconds from 1, like 120",
        ge=1,
    )
    rows_per_day: int = _setting(
        description="Orders the generator writes per day.",
        expected="a whole number greater than 0, like 10000",
        gt=0,
    )
    seed: int = _setting(
        description="Base seed of the generator (same seed + date = same data).",
        expected="a whole number >= 0, like 42",
        ge=0,
    )
    bad_record_rate: float = _setting(
        description="Share of generated lines that are deliberately bad.",
        expected="a number from 0 to 0.5, like 0.02",
        ge=0,
        le=0.5,
        allow_inf_nan=False,
    )

    _envs_dir: Path = PrivateAttr(default=DEFAULT_ENVS_DIR)
    _sources: Mapping[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @field_validator(*_OPTIONAL_KEYS, *_AWS_ONLY_KEYS, mode="before")
    @classmethod
    def _empty_means_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(*_KEY_CHECKS, mode="after")
    @classmethod
    def _check_form(cls, value: Any, info: ValidationInfo) -> Any:
        return value if value is None else _KEY_CHECKS[info.field_name](value)

    @field_validator(*_AWS_ONLY_KEYS, mode="after")
    @classmethod
    def _required_on_aws(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.data.get("pipeline_env") == "aws":
            raise PydanticCustomError("required_for_env", "is required when PIPELINE_ENV=aws")
        return value

    @field_validator("aws_secret_access_key", mode="after")
    @classmethod
    def _keys_together(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if "aws_access_key_id" not in info.data:
            return value  # the key id itself was invalid; that error is reported
        both = "set both, or neither to use the instance profile"
        if value is None and info.data["aws_access_key_id"] is not None:
            raise ValueError(f"AWS_ACCESS_KEY_ID is; {both}")
        if value is not None and info.data["aws_access_key_id"] is None:
            raise ValueError(f"is set without AWS_ACCESS_KEY_ID; {both}")
        return value

    # --- derived values ----------------------------------------------------------------------

    @property
    def raw_uri(self) -> str:
        """Root of the raw data, e.g. s3://builditall-data/raw."""
        return f"s3://{self.data_bucket}/{self.raw_prefix}"

    @property
    def processed_uri(self) -> str:
        """Root of the processed tables, e.g. s3://builditall-data/processed."""
        return f"s3://{self.data_bucket}/{self.processed_prefix}"

    @property
    def logs_uri(self) -> str:
        """Root of the logs, e.g. s3://builditall-logs/airflow."""
        return f"s3://{self.logs_bucket}/{self.logs_prefix}"

    @property
    def emr_job_artifacts_uri(self) -> str | None:
        """Where the Spark job code is uploaded for EMR, e.g. s3://builditall-data/artifacts/..."""
        if self.emr_job_artifact_prefix is None:
            return None
        return f"s3://{self.data_bucket}/{self.emr_job_artifact_prefix}"

    @property
    def emr_release(self) -> EmrRelease | None:
        """What EMR_RELEASE_LABEL runs (envs/aws/emr_releases.toml); None when unset."""
        if self.emr_release_label is None:
            return None
        return load_emr_releases().get(self.emr_release_label)

    @property
    def emr_cluster_config_path(self) -> Path | None:
        """Absolute path of EMR_CLUSTER_CONFIG (the value is relative to envs/<env>/)."""
        if self.emr_cluster_config is None:
            return None
        return self.envs_dir / self.pipeline_env / self.emr_cluster_config

    @property
    def envs_dir(self) -> Path:
        """The envs/ folder the settings were read from (PIPELINE_ENVS_DIR or <repo>/envs)."""
        return self._envs_dir

    @property
    def settings_file(self) -> Path:
        """The envs/<env>/settings.env file of this environment."""
        return self.envs_dir / self.pipeline_env / SETTINGS_FILE_NAME

    @property
    def sources(self) -> Mapping[str, str]:
        """KEY -> where its value came from: the settings file, 'environment' or 'default'."""
        return self._sources

    def boto3_client_kwargs(self, service: str = "s3") -> dict[str, Any]:
        """Keyword arguments for `boto3.client(service, **kwargs)` on this environment: region,
        endpoint (LocalStack locally, the EMR emulator for "emr" when EMR_ENDPOINT_URL is set,
        None for real AWS) and keys (None: the default chain)."""
        secret = self.aws_secret_access_key
        endpoint = self.emr_endpoint_url if service == "emr" else self.aws_endpoint_url
        return {
            "region_name": self.aws_region,
            "endpoint_url": endpoint,
            "aws_access_key_id": self.aws_access_key_id,
            "aws_secret_access_key": secret.get_secret_value() if secret else None,
        }

    def spark_submit_conf(self) -> dict[str, str]:
        """Every --conf a job is submitted with: S3 (spark_s3_conf) and SPARK_JAVA_OPTIONS."""
        conf = self.spark_s3_conf()
        if self.spark_java_options:
            conf["spark.driver.extraJavaOptions"] = self.spark_java_options
            conf["spark.executor.extraJavaOptions"] = self.spark_java_options
        return conf

    def spark_job_env(self) -> dict[str, str]:
        """Environment a job's spark-submit runs with: SPARK_CONNECT_URL when set (the job
        then runs as a client of that server: spark_jobs/common/session.py)."""
        return {"SPARK_CONNECT_URL": self.spark_connect_url} if self.spark_connect_url else {}

    def spark_s3_conf(self) -> dict[str, str]:
        """Spark conf pointing S3 at the endpoint; empty without one (EMR's s3:// is native)."""
        if self.aws_endpoint_url is None:
            return {}
        https = self.aws_endpoint_url.startswith("https://")
        conf = {
            "spark.hadoop.fs.s3a.endpoint": self.aws_endpoint_url,
            "spark.hadoop.fs.s3a.endpoint.region": self.aws_region,
            # LocalStack serves buckets by path, not by bucket.host virtual hosting.
            "spark.hadoop.fs.s3a.path.style.access": "true",
            "spark.hadoop.fs.s3a.connection.ssl.enabled": "true" if https else "false",
            # Jobs are given s3:// URIs on every target; map s3:// to S3A off EMR.
            "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        }
        if self.aws_access_key_id is not None and self.aws_secret_access_key is not None:
            conf["spark.hadoop.fs.s3a.access.key"] = self.aws_access_key_id
            conf["spark.hadoop.fs.s3a.secret.key"] = self.aws_secret_access_key.get_secret_value()
        return conf


KEYS: tuple[str, ...] = tuple(name.upper() for name in Settings.model_fields)


# --- loading --------------------------------------------------------------------------------


def _display(path: Path) -> str:
    """A path as people read it: relative to the repo when inside it."""
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def _envs_dir(environ: Mapping[str, str]) -> Path:
    override = environ.get("PIPELINE_ENVS_DIR")
    if not override:
        return DEFAULT_ENVS_DIR
    path = Path(override).expanduser().absolute()
    if not path.is_dir():
        raise ConfigError(
            f"PIPELINE_ENVS_DIR={override!r} (from the environment) is not a directory; "
            f"expected a folder holding <env>/{SETTINGS_FILE_NAME}, or unset it to use "
            f"{DEFAULT_ENVS_DIR}"
        )
    return path


def _choose_env(env: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """The environment name and where it came from."""
    if env is not None:
        name, source = env, FROM_ARGUMENT
    elif "PIPELINE_ENV" in environ:
        name, source = environ["PIPELINE_ENV"], FROM_ENVIRONMENT
    else:
        return DEFAULT_ENV, FROM_DEFAULT
    if name not in ENV_NAMES:
        raise ConfigError(
            f"PIPELINE_ENV={name!r} (from the {source}) is not a known environment; "
            f"expected one of: {', '.join(ENV_NAMES)}"
        )
    return name, source


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _read_settings_file(path: Path, shown: str, env: str) -> dict[str, str]:
    """Parse KEY=value lines (whole-line # comments, optional quotes); report every bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{shown} not found; expected the KEY=value settings of PIPELINE_ENV={env} there "
            "(or set PIPELINE_ENVS_DIR to the folder holding <env>/settings.env)"
        ) from None
    values: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key = key.strip()
        where = f"{shown} line {number}"
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            problems.append(f"{where}: expected KEY=value, got {stripped!r}")
        elif key == "PIPELINE_ENV":
            problems.append(f"{where}: PIPELINE_ENV is chosen by the folder name; remove it")
        elif key not in KEYS:
            import difflib

            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"did you mean {close[0]}?" if close else "known keys: " + ", ".join(KEYS)
            problems.append(f"{where}: {key} is not a known setting; {hint}")
        elif key in values:
            problems.append(f"{where}: {key} is set twice; keep one line")
        else:
            values[key] = _unquote(value.strip())
    if problems:
        raise ConfigError("\n".join(problems) if len(problems) == 1 else _bullets(problems))
    return values


def _bullets(problems: list[str]) -> str:
    return f"{len(problems)} settings problems:\n" + "\n".join(f"  - {p}" for p in problems)


def _describe_error(
    error: Mapping[str, Any], raw: Mapping[str, str], sources: Mapping[str, str], shown: str
) -> str:
    """One line for one pydantic error: key, value, where it came from, what was expected."""
    field = str(error["loc"][0]) if error["loc"] else ""
    key = field.upper()
    info = Settings.model_fields.get(field)
    extra = info.json_schema_extra if info is not None else None
    expected = extra.get("expected") if isinstance(extra, dict) else None
    tail = f"; expected {expected}" if expected else ""
    source = sources.get(key)
    origin = "the environment" if source == FROM_ENVIRONMENT else source
    # pydantic prefixes messages of plain ValueErrors; ours already read as sentences.
    message = str(error["msg"]).removeprefix("Value error, ")
    if key not in raw:
        if error["type"] == "missing":
            return f"{key} is not set ({shown} or the environment){tail}"
        return f"{key} is not set ({shown} or the environment) but {message}{tail}"
    if not raw[key].strip():
        return f"{key} is empty (from {origin}){tail}"
    shown_value = "'**********'" if key == "AWS_SECRET_ACCESS_KEY" else repr(raw[key])
    return f"{key}={shown_value} (from {origin}) {_as_predicate(message)}{tail}"


def _as_predicate(message: str) -> str:
    """Turn 'is ...'/'must ...' messages into the sentence's verb, others into 'is invalid: ...'."""
    if message.split(" ", 1)[0] in ("is", "has", "must", "may"):
        return message
    return f"is invalid: {message[0].lower()}{message[1:]}"


def load_settings(env: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read envs/<env>/settings.env, let `environ` (default os.environ) override, validate.

    `env` wins over PIPELINE_ENV in `environ`; the default is local. PIPELINE_ENVS_DIR in
    `environ` points at another envs/ folder (tests use it). Raises ConfigError.
    """
    environ = os.environ if environ is None else environ
    envs_dir = _envs_dir(environ)
    env_name, env_source = _choose_env(env, environ)
    settings_file = envs_dir / env_name / SETTINGS_FILE_NAME
    shown = _display(settings_file)
    file_values = _read_settings_file(settings_file, shown, env_name)

    raw: dict[str, str] = {"PIPELINE_ENV": env_name}
    sources: dict[str, str] = {"PIPELINE_ENV": env_source}
    for key in KEYS:
        if key == "PIPELINE_ENV":
            continue
        if key in environ:
            raw[key], sources[key] = environ[key], FROM_ENVIRONMENT
        elif key in file_values:
            raw[key], sources[key] = file_values[key], shown
        else:
            sources[key] = FROM_DEFAULT

    try:
        settings = Settings(**{key.lower(): value for key, value in raw.items()})
    except ValidationError as exc:
        problems = [_describe_error(e, raw, sources, shown) for e in exc.errors()]
        raise ConfigError(problems[0] if len(problems) == 1 else _bullets(problems)) from None
    settings._envs_dir = envs_dir
    settings._sources = MappingProxyType(sources)
    return settings


@functools.cache
def get_settings() -> Settings:
    """The settings of this process (os.environ), loaded once; for DAG files and jobs."""
    return load_settings()
