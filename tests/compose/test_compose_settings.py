"""The stack's settings in the compose files: AWS_REGION, DATA_BUCKET, LOGS_BUCKET, EMR_SUBNET_ID.

On the EC2 instance they are in the .env next to docker-compose.yml (envs/aws/cloudformation.yaml
writes it). Compose's .env only feeds ${...}, so the files must pass each one into the Airflow
containers, where config reads the process environment over envs/<env>/settings.env. Unset, each
defaults to the value of that settings file. (test_compose_files checks the connections and the
remote log folder against orchestration/airflow_env.py for both cases.)
"""

from __future__ import annotations

import json

import pytest

from config.config import load_settings
from tests.compose.conftest import (
    AIRFLOW_SERVICES,
    BASE,
    FAKE_SECRETS,
    MERGED,
    STACK_SETTINGS,
    render,
    run_compose,
)

TARGETS = [(BASE, "aws"), (MERGED, "local")]
# Only for the buckets and region: the local one-shot that creates the buckets.
BUCKET_INIT = "localstack-init"
BUCKET_SETTINGS = ("AWS_REGION", "DATA_BUCKET", "LOGS_BUCKET")


def file_value(env_name: str, key: str) -> str:
    """KEY as envs/<env>/settings.env sets it ('' for an optional key it leaves unset)."""
    value = getattr(load_settings(env_name, environ={}), key.lower())
    return "" if value is None else value


@pytest.mark.parametrize(("files", "env_name"), TARGETS, ids=["aws", "local"])
def test_unset_settings_default_to_the_settings_file(files, env_name):
    services = render(files)["services"]
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        for key in STACK_SETTINGS:
            assert key in environment, f"{name} is not passed {key} ({files[0]})"
            assert environment[key] == file_value(env_name, key), (
                f"{name}: the default of {key} in the compose files is {environment[key]!r}; "
                f"make it envs/{env_name}/settings.env's"
            )
        # Empty means unset for config: EMR then picks its default subnet.
        assert load_settings(environ=environment).emr_subnet_id is None, name
    if env_name == "local":
        environment = services[BUCKET_INIT]["environment"]
        for key in BUCKET_SETTINGS:
            assert environment[key] == file_value(env_name, key), f"{BUCKET_INIT} {key}"


@pytest.mark.parametrize(("files", "env_name"), TARGETS, ids=["aws", "local"])
def test_settings_from_the_environment_reach_every_airflow_service(files, env_name):
    services = render(files, STACK_SETTINGS)["services"]
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        assert {key: environment.get(key) for key in STACK_SETTINGS} == STACK_SETTINGS, name
        settings = load_settings(environ=environment)
        assert settings.pipeline_env == env_name, name
        assert (settings.aws_region, settings.data_bucket, settings.logs_bucket) == (
            "eu-west-1",
            "acme-data",
            "acme-logs",
        ), name
        assert settings.emr_subnet_id == "subnet-0123456789abcdef0", name
        # The derived values follow them (their exact form: test_compose_files' drift test).
        log_folder = environment["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"]
        assert log_folder.startswith("s3://acme-logs/"), name
        connection = json.loads(environment["AIRFLOW_CONN_AWS_DEFAULT"])
        assert connection["extra"]["region_name"] == "eu-west-1", name
    if env_name == "local":
        # The one-shot creates the buckets the Airflow services use, in their region.
        init = load_settings(environ=services[BUCKET_INIT]["environment"])
        assert (init.aws_region, init.data_bucket, init.logs_bucket) == (
            "eu-west-1",
            "acme-data",
            "acme-logs",
        )


def test_the_instances_env_file_reaches_the_airflow_services(tmp_path):
    """As on EC2: the settings come from .env (not the shell) with the secrets."""
    env_file = tmp_path / ".env"
    lines = ["PIPELINE_ENV=aws", *(f"{key}={value}" for key, value in STACK_SETTINGS.items())]
    lines += [f"{key}={value}" for key, value in FAKE_SECRETS.items()]
    env_file.write_text("\n".join(lines) + "\n")
    result = run_compose(BASE, {}, "config", "--format", "json", env_file=str(env_file))
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        assert {key: environment.get(key) for key in STACK_SETTINGS} == STACK_SETTINGS, name
        settings = load_settings(environ=environment)
        assert settings.logs_uri == "s3://acme-logs/airflow", name
        assert environment["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == settings.logs_uri, name
