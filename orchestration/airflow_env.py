"""What Airflow's processes need from the environment, derived from config: connections and env.

Nothing is created by hand in Airflow's database. Whoever starts Airflow (host_stack/, the
compose files) exports `airflow_env(settings)`: the connections as AIRFLOW_CONN_* JSON, remote
task logging to s3://<LOGS_BUCKET>/<LOGS_PREFIX>/, the DAGs folder, and PYTHONPATH=<repo root> so
DAG files can import `config` and `orchestration` (Airflow itself only puts the DAGs folder on
sys.path).

    eval "$(python -m orchestration.airflow_env)"   # export them for the active PIPELINE_ENV
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
AWS_CONN_ID = "aws_default"
SPARK_CONN_ID = "spark_default"
# Services the local stack emulates (LocalStack's free tier); everything else (EMR) has no
# endpoint locally and, with LocalStack's dummy keys, cannot reach real AWS either.
LOCALSTACK_SERVICES = ("s3", "sts", "iam", "cloudformation", "ec2", "ssm", "logs")
# EMR's endpoint is its own setting (EMR_ENDPOINT_URL): the EMR emulator of the offline rehearsal.
EMR_SERVICE = "emr"


def _env_var(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def aws_connection(settings: Settings) -> dict[str, Any]:
    """The aws_default connection: region; locally LocalStack's endpoints and dummy keys; EMR
    at EMR_ENDPOINT_URL when set (the emulator of the offline aws rehearsal)."""
    extra: dict[str, Any] = {"region_name": settings.aws_region}
    connection: dict[str, Any] = {"conn_type": "aws"}
    service_config: dict[str, dict[str, Any]] = {}
    if settings.aws_endpoint_url is not None:
        endpoint = {"endpoint_url": settings.aws_endpoint_url}
        service_config.update({service: dict(endpoint) for service in LOCALSTACK_SERVICES})
        # LocalStack serves buckets by path (http://host:4566/bucket), not as bucket.host.
        extra["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    if settings.emr_endpoint_url is not None:
        service_config[EMR_SERVICE] = {"endpoint_url": settings.emr_endpoint_url}
    if service_config:
        extra["service_config"] = service_config
    if settings.aws_access_key_id is not None and settings.aws_secret_access_key is not None:
        connection["login"] = settings.aws_access_key_id
        connection["password"] = settings.aws_secret_access_key.get_secret_value()
    connection["extra"] = extra
    return connection


def spark_connection(settings: Settings) -> dict[str, Any]:
    """The spark_default connection: SPARK_MASTER as the master URL, client deploy mode."""
    return {
        "conn_type": "spark",
        # A host holding the whole master URL (spark://host:port, local[N]) is used as-is.
        "host": settings.spark_master,
        "extra": {"deploy-mode": "client", "spark-binary": "spark-submit"},
    }


def airflow_connections(settings: Settings) -> dict[str, str]:
    """AIRFLOW_CONN_<ID> -> connection JSON for the DAGs of settings.pipeline_env."""
    connections = {AWS_CONN_ID: aws_connection(settings)}
    # On aws, Spark runs on EMR through aws_default; only local submits to a Spark master.
    if settings.pipeline_env == "local":
        connections[SPARK_CONN_ID] = spark_connection(settings)
    return {_env_var(conn_id): json.dumps(conn) for conn_id, conn in connections.items()}


def airflow_logging_env(settings: Settings) -> dict[str, str]:
    """[logging] settings: task logs to s3://<LOGS_BUCKET>/<LOGS_PREFIX>/ through aws_default."""
    return {
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": settings.logs_uri,
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": AWS_CONN_ID,
    }


def airflow_env(settings: Settings, *, repo_root: Path = REPO_ROOT) -> dict[str, str]:
    """Every variable Airflow's processes need for this repository and environment.

    `repo_root` is where the repository is seen by those processes (e.g. a container mount).
    """
    return {
        "PIPELINE_ENV": settings.pipeline_env,
        "PYTHONPATH": str(repo_root),
        "AIRFLOW__CORE__DAGS_FOLDER": str(repo_root / "orchestration" / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **airflow_logging_env(settings),
        **airflow_connections(settings),
    }


def main() -> int:
    from config.config import get_settings

    for key, value in airflow_env(get_settings()).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
