"""Docker mode (host_stack/compose.py): the commands and the client environment of each compose
stack, checked against the rendered compose files. Running them needs an engine: CI runs
`nox -s e2e_local -- --mode docker` and `nox -s e2e_aws_emulated -- --mode docker`."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from config.config import load_settings
from host_stack.compose import STACKS, WAIT_TIMEOUT_SECONDS, plan
from tests.compose.conftest import MERGED, render

LOCAL, AWS = STACKS["local"], STACKS["aws"]
REHEARSAL = ("docker-compose.yml", "envs/aws/docker-compose.rehearsal.yml")


def compose(*files: str) -> list[str]:
    return ["docker", "compose", *(arg for name in files for arg in ("-f", name))]


def test_plan_builds_each_image_once_waits_tests_and_tears_down():
    steps = plan(LOCAL, {}, {"AIRFLOW_ADMIN_PASSWORD": "from-dotenv"}, "/venv/bin/python", ["-x"])
    wait = ["--wait", "--wait-timeout", str(WAIT_TIMEOUT_SECONDS)]
    assert steps.build == [*compose(*MERGED), "build", "airflow-init"]
    assert steps.up == [*compose(*MERGED), "up", "--detach", *wait]
    assert steps.tests == ["/venv/bin/python", "-m", "pytest", "tests/e2e", "-x"]
    assert steps.down == [*compose(*MERGED), "down", "--volumes", "--remove-orphans"]
    assert steps.test_env == {
        "AIRFLOW_API_URL": "http://localhost:8080",
        "AIRFLOW_USERNAME": "admin",
        "AIRFLOW_PASSWORD": "from-dotenv",  # pragma: allowlist secret
        "PIPELINE_ENV": "local",
        "AWS_ENDPOINT_URL": "http://localhost:4566",
        "E2E_COMPOSE_FILES": os.pathsep.join(MERGED),
    }
    assert LOCAL.files == MERGED
    assert AWS.files == REHEARSAL


@pytest.mark.parametrize("stack", [LOCAL, AWS], ids=["local", "aws"])
def test_the_builds_cover_every_image_the_stack_builds(stack):
    services = render(stack.files)["services"]
    built = {service["image"] for service in services.values() if "build" in service}
    assert {services[name]["image"] for name in stack.builds} == built


def test_plan_reads_settings_as_compose_does_environment_before_dotenv():
    environ = {
        "AIRFLOW_API_PORT": "18080",
        "AIRFLOW_ADMIN_PASSWORD": "from-environment",  # pragma: allowlist secret
    }
    dotenv = {"AIRFLOW_API_PORT": "28080", "LOCALSTACK_PORT": "14566"}
    env = plan(LOCAL, environ, dotenv, "python").test_env
    assert env["AIRFLOW_API_URL"] == "http://localhost:18080"
    assert env["AIRFLOW_PASSWORD"] == "from-environment"  # pragma: allowlist secret
    assert env["AWS_ENDPOINT_URL"] == "http://localhost:14566"


@pytest.mark.parametrize("stack", [LOCAL, AWS], ids=["local", "aws"])
def test_plan_points_the_tests_at_what_the_compose_files_publish(stack):
    ports = {"AIRFLOW_API_PORT": "18080", "LOCALSTACK_PORT": "14566", "EMR_EMULATOR_PORT": "14570"}
    services = render(stack.files, ports)["services"]
    env = plan(stack, ports, {"AIRFLOW_ADMIN_PASSWORD": "pw"}, "python").test_env

    def published(service: str) -> tuple[str, str]:
        (port,) = services[service]["ports"]
        return port["host_ip"], str(port["published"])

    api = urlsplit(env["AIRFLOW_API_URL"])
    assert ("127.0.0.1", str(api.port)) == published("airflow-apiserver")
    assert (
        env["AIRFLOW_USERNAME"] == services["airflow-init"]["environment"]["AIRFLOW_ADMIN_USERNAME"]
    )
    settings = load_settings(environ=env)
    assert settings.pipeline_env == stack.pipeline_env
    assert ("127.0.0.1", str(urlsplit(settings.aws_endpoint_url).port)) == published("localstack")
    if stack.emulates_aws:
        emr = urlsplit(settings.emr_endpoint_url)
        assert ("127.0.0.1", str(emr.port)) == published("emr-emulator")
        # LocalStack's dummy keys, never the caller's: the rehearsal never reaches AWS.
        assert settings.aws_access_key_id == "test"
        # The EMR scenarios see the waits the rehearsal's Airflow uses.
        airflow = load_settings(environ=services["airflow-worker"]["environment"])
        assert (settings.emr_step_timeout_seconds, settings.emr_step_log_wait_seconds) == (
            airflow.emr_step_timeout_seconds,
            airflow.emr_step_log_wait_seconds,
        )
