"""`nox -s e2e_local` in Docker mode (host_stack/compose.py): the commands and the client
environment, checked against the rendered compose files. Running it needs a Docker engine,
which CI does not have; host mode is what CI runs."""

from __future__ import annotations

from urllib.parse import urlsplit

from config.config import load_settings
from host_stack.compose import COMPOSE_FILES, WAIT_TIMEOUT_SECONDS, e2e_plan
from tests.compose.conftest import MERGED, render

COMPOSE = ["docker", "compose", "-f", "docker-compose.yml", "-f", "docker-compose.local.yml"]


def test_plan_builds_waits_tests_and_tears_down():
    plan = e2e_plan({}, {"AIRFLOW_ADMIN_PASSWORD": "from-dotenv"}, "/venv/bin/python", ["-x"])
    wait = ["--wait", "--wait-timeout", str(WAIT_TIMEOUT_SECONDS)]
    assert plan.up == [*COMPOSE, "up", "--detach", "--build", *wait]
    assert plan.tests == ["/venv/bin/python", "-m", "pytest", "tests/e2e", "-x"]
    assert plan.down == [*COMPOSE, "down", "--volumes", "--remove-orphans"]
    assert plan.test_env == {
        "AIRFLOW_API_URL": "http://localhost:8080",
        "AIRFLOW_USERNAME": "admin",
        "AIRFLOW_PASSWORD": "from-dotenv",  # pragma: allowlist secret
        "PIPELINE_ENV": "local",
        "AWS_ENDPOINT_URL": "http://localhost:4566",
    }
    assert COMPOSE_FILES == MERGED


def test_plan_reads_settings_as_compose_does_environment_before_dotenv():
    environ = {
        "AIRFLOW_API_PORT": "18080",
        "AIRFLOW_ADMIN_PASSWORD": "from-environment",  # pragma: allowlist secret
    }
    dotenv = {"AIRFLOW_API_PORT": "28080", "LOCALSTACK_PORT": "14566"}
    env = e2e_plan(environ, dotenv, "python").test_env
    assert env["AIRFLOW_API_URL"] == "http://localhost:18080"
    assert env["AIRFLOW_PASSWORD"] == "from-environment"  # pragma: allowlist secret
    assert env["AWS_ENDPOINT_URL"] == "http://localhost:14566"


def test_plan_points_the_tests_at_what_the_compose_files_publish():
    ports = {"AIRFLOW_API_PORT": "18080", "LOCALSTACK_PORT": "14566"}
    services = render(MERGED, ports)["services"]
    env = e2e_plan(ports, {"AIRFLOW_ADMIN_PASSWORD": "pw"}, "python").test_env

    def published(service: str) -> tuple[str, str]:
        (port,) = services[service]["ports"]
        return port["host_ip"], str(port["published"])

    api = urlsplit(env["AIRFLOW_API_URL"])
    assert ("127.0.0.1", str(api.port)) == published("airflow-apiserver")
    assert (
        env["AIRFLOW_USERNAME"] == services["airflow-init"]["environment"]["AIRFLOW_ADMIN_USERNAME"]
    )
    settings = load_settings(environ=env)
    assert settings.pipeline_env == "local"
    assert ("127.0.0.1", str(urlsplit(settings.aws_endpoint_url).port)) == published("localstack")
