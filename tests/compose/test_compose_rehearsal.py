"""envs/aws/docker-compose.rehearsal.yml: docker-compose.yml as the EC2 instance runs it, plus only
what stands in for AWS (LocalStack, the EMR emulator). Rendered by the real Compose CLI."""

from __future__ import annotations

import json

from config.config import load_settings
from orchestration.airflow_env import airflow_connections
from tests.compose.conftest import AIRFLOW_SERVICES, BASE, render

REHEARSAL = ("docker-compose.yml", "envs/aws/docker-compose.rehearsal.yml")
EMULATED_AWS = {"localstack", "aws-init", "emr-emulator"}
# What the rehearsal may change in an Airflow service's environment: where AWS is.
EMULATION_KEYS = {
    "AWS_ENDPOINT_URL", "EMR_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "ROWS_PER_DAY", "EMR_STEP_POLL_SECONDS", "EMR_TERMINATION_POLL_SECONDS",
    "TASK_RETRY_DELAY_SECONDS", "EMR_STEP_TIMEOUT_SECONDS", "EMR_STEP_LOG_WAIT_SECONDS",
    "AIRFLOW_CONN_AWS_DEFAULT",
}  # fmt: skip


def test_the_rehearsal_adds_only_the_aws_emulators():
    base, rehearsal = render(BASE)["services"], render(REHEARSAL)["services"]
    assert set(rehearsal) - set(base) == EMULATED_AWS


def test_the_airflow_services_are_the_ec2_ones_but_for_where_aws_is():
    base, rehearsal = render(BASE)["services"], render(REHEARSAL)["services"]
    for name in AIRFLOW_SERVICES:
        ours, theirs = rehearsal[name], base[name]
        assert ours["image"] == theirs["image"], name
        assert ours.get("command") == theirs.get("command"), name
        changed = {
            k for k in ours["environment"] if ours["environment"][k] != theirs["environment"].get(k)
        }
        assert changed <= EMULATION_KEYS, f"{name}: {changed - EMULATION_KEYS}"
        assert ours["environment"]["PIPELINE_ENV"] == "aws", name
        assert ours["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name


def test_the_aws_connection_is_what_orchestration_derives_for_the_emulated_settings():
    services = render(REHEARSAL)["services"]
    for name in AIRFLOW_SERVICES:
        if name == "airflow-init":
            continue
        environment = services[name]["environment"]
        settings = load_settings(environ=environment)
        expected = airflow_connections(settings)
        assert json.loads(environment["AIRFLOW_CONN_AWS_DEFAULT"]) == json.loads(
            expected["AIRFLOW_CONN_AWS_DEFAULT"]
        ), name
        assert settings.emr_endpoint_url == "http://emr-emulator:4570"


def test_the_emulator_runs_steps_in_its_own_container_on_the_same_settings():
    services = render(REHEARSAL)["services"]
    emulator = services["emr-emulator"]
    command = emulator["command"]
    assert command[:2] == ["-m", "host_stack.emr_emulator"]
    assert command[command.index("--spark-master") + 1].startswith("local[")
    assert emulator["build"]["target"] == "emr-emulator"
    worker = load_settings(environ=services["airflow-worker"]["environment"])
    for name in ("emr-emulator", "aws-init"):
        settings = load_settings(environ=services[name]["environment"])
        assert (settings.aws_endpoint_url, settings.data_bucket) == (
            worker.aws_endpoint_url,
            worker.data_bucket,
        ), name
