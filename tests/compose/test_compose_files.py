"""docker-compose.yml (aws, production-shaped) and docker-compose.local.yml (the laptop overlay),
rendered by the real Compose CLI: services, healthchecks, start order, ports and env wiring.

The Airflow environment is checked against orchestration/airflow_env.py: the connections and
remote-logging settings in the files must be exactly what it derives from config for the
environment the containers run in, so the two cannot drift.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pytest

from config.config import load_settings
from host_stack.supervise import REAP_IDLE_SECONDS
from orchestration.airflow_env import LOCALSTACK_SERVICES, airflow_env
from tests.compose.conftest import (
    AIRFLOW_SERVICES,
    BASE,
    MERGED,
    REPO_ROOT,
    STACK_SETTINGS,
    render,
    run_compose,
)

# Where the containers see the repository (the bind mounts of every Airflow service).
CONTAINER_REPO = PurePosixPath("/opt/pipeline")
MOUNTED = ("orchestration", "spark_jobs", "config", "envs")
BASE_SERVICES = {"postgres", "redis", *AIRFLOW_SERVICES}
LOCAL_SERVICES = {"localstack", "localstack-init", "spark-master", "spark-worker", "spark-connect"}
ONE_SHOTS = {"airflow-init", "localstack-init"}

HEALTHY, DONE = "service_healthy", "service_completed_successfully"
_DB = {"postgres": HEALTHY, "redis": HEALTHY}
BASE_DEPENDS = {
    "postgres": {},
    "redis": {},
    "airflow-init": _DB,
    "airflow-apiserver": {**_DB, "airflow-init": DONE},
    "airflow-scheduler": {**_DB, "airflow-init": DONE},
    "airflow-dag-processor": {**_DB, "airflow-init": DONE},
    "airflow-triggerer": {**_DB, "airflow-init": DONE},
    "airflow-worker": {**_DB, "airflow-init": DONE, "airflow-apiserver": HEALTHY},
}
_BUCKETS = {"localstack-init": DONE}
LOCAL_DEPENDS = {
    **BASE_DEPENDS,
    "airflow-apiserver": {**BASE_DEPENDS["airflow-apiserver"], **_BUCKETS},
    "airflow-scheduler": {**BASE_DEPENDS["airflow-scheduler"], **_BUCKETS},
    "airflow-dag-processor": {**BASE_DEPENDS["airflow-dag-processor"], **_BUCKETS},
    "airflow-triggerer": {**BASE_DEPENDS["airflow-triggerer"], **_BUCKETS},
    # The worker runs the jobs, as clients of the Spark Connect server.
    "airflow-worker": {**BASE_DEPENDS["airflow-worker"], **_BUCKETS, "spark-connect": HEALTHY},
    "localstack": {},
    "localstack-init": {"localstack": HEALTHY},
    "spark-master": {},
    "spark-worker": {"spark-master": HEALTHY},
    "spark-connect": {"spark-worker": HEALTHY},
}


def depends(service: dict) -> dict[str, str]:
    return {name: dep["condition"] for name, dep in (service.get("depends_on") or {}).items()}


def published(services: dict) -> set[tuple[str, str, str, int]]:
    """(service, host ip, host port, container port) of every published port."""
    return {
        (name, port.get("host_ip", ""), str(port["published"]), port["target"])
        for name, service in services.items()
        for port in service.get("ports", [])
    }


# --- each file alone and merged ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (BASE, BASE_SERVICES),
        (("docker-compose.local.yml",), LOCAL_SERVICES | set(AIRFLOW_SERVICES)),
        (MERGED, BASE_SERVICES | LOCAL_SERVICES),
    ],
    ids=["base", "overlay-alone", "merged"],
)
def test_files_render_with_the_expected_services(files, expected):
    assert set(render(files)["services"]) == expected


@pytest.mark.parametrize(
    ("files", "expected"), [(BASE, BASE_DEPENDS), (MERGED, LOCAL_DEPENDS)], ids=["aws", "local"]
)
def test_start_order_is_declared_with_conditions(files, expected):
    services = render(files)["services"]
    assert {name: depends(service) for name, service in services.items()} == expected


@pytest.mark.parametrize("files", [BASE, MERGED], ids=["aws", "local"])
def test_long_running_services_have_healthchecks_and_one_shots_are_awaited(files):
    services = render(files)["services"]
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert service.get("restart") == "no", f"{name} is a one-shot: it must not restart"
            # `up --wait` fails on an exited container unless a running service awaits it.
            assert any(depends(other).get(name) == DONE for other in services.values()), name
        else:
            assert service.get("restart") == "always", name
            test = service.get("healthcheck", {}).get("test")
            assert test, f"{name} has no healthcheck"
            assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
    for name, service in services.items():
        for target, condition in depends(service).items():
            if condition == HEALTHY:
                assert services[target].get("healthcheck"), f"{name} waits on {target}'s health"


# --- ports ---------------------------------------------------------------------------------------


def test_aws_publishes_only_the_ui_and_only_on_loopback():
    # Users reach the UI through an SSM or SSH port forward; Postgres and Redis stay internal.
    assert published(render(BASE)["services"]) == {("airflow-apiserver", "127.0.0.1", "8080", 8080)}


def test_local_ports_bind_loopback_and_follow_the_host_stack_port_settings():
    assert published(render(MERGED)["services"]) == {
        ("airflow-apiserver", "127.0.0.1", "8080", 8080),
        ("localstack", "127.0.0.1", "4566", 4566),
        ("spark-master", "127.0.0.1", "8081", 8080),
    }
    moved = {
        "AIRFLOW_API_PORT": "18080",
        "LOCALSTACK_PORT": "14566",
        "SPARK_MASTER_WEBUI_PORT": "18081",
    }
    assert published(render(MERGED, moved)["services"]) == {
        ("airflow-apiserver", "127.0.0.1", "18080", 8080),
        ("localstack", "127.0.0.1", "14566", 4566),
        ("spark-master", "127.0.0.1", "18081", 8080),
    }


# --- the environment of each target --------------------------------------------------------------


@pytest.mark.parametrize(
    "settings_env", [{}, STACK_SETTINGS], ids=["defaults", "settings-from-the-environment"]
)
@pytest.mark.parametrize(("files", "env_name"), [(BASE, "aws"), (MERGED, "local")])
def test_airflow_env_is_what_orchestration_derives_for_the_container(files, env_name, settings_env):
    services = render(files, settings_env)["services"]
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        # What config sees in the container: the service's environment over the mounted
        # envs/<env>/settings.env (the same files as here).
        settings = load_settings(environ=environment)
        assert settings.pipeline_env == env_name, name
        expected = airflow_env(settings, repo_root=CONTAINER_REPO)
        for key, value in expected.items():
            actual = environment.get(key)
            if key.startswith("AIRFLOW_CONN_"):
                assert actual is not None, f"{name} lacks {key}"
                assert json.loads(actual) == json.loads(value), f"{name} {key}"
            else:
                assert actual == value, f"{name} {key}"
        connections = {key for key in environment if key.startswith("AIRFLOW_CONN_")}
        assert connections == {key for key in expected if key.startswith("AIRFLOW_CONN_")}, name


def test_aws_uses_real_endpoints_and_the_instance_profile():
    for name in AIRFLOW_SERVICES:
        settings = load_settings(environ=render(BASE)["services"][name]["environment"])
        assert settings.aws_endpoint_url is None, name
        assert settings.aws_access_key_id is None, name
        assert settings.spark_master == "yarn", name


def test_local_endpoints_are_services_of_the_compose_network():
    services = render(MERGED)["services"]
    for name in AIRFLOW_SERVICES:
        settings = load_settings(environ=services[name]["environment"])
        endpoint = urlsplit(settings.aws_endpoint_url)
        assert (endpoint.hostname, endpoint.port) == ("localstack", 4566), name
        assert 4566 in {port["target"] for port in services["localstack"]["ports"]}
        master = urlsplit(settings.spark_master)
        assert master.hostname == "spark-master", name
        command = services["spark-master"]["command"]
        assert command[command.index("--port") + 1] == str(master.port)
    worker = services["spark-worker"]["command"]
    assert settings.spark_master in worker
    init = load_settings(environ=services["localstack-init"]["environment"])
    assert init.aws_endpoint_url == settings.aws_endpoint_url
    # The Connect server is built from the same settings the Airflow services have, and
    # listens where they look for it.
    connect = load_settings(environ=services["spark-connect"]["environment"])
    assert connect.spark_connect_url == settings.spark_connect_url
    assert urlsplit(settings.spark_connect_url).hostname == "spark-connect"
    assert (connect.spark_master, connect.aws_endpoint_url) == (
        settings.spark_master,
        settings.aws_endpoint_url,
    )
    # The driver (client mode, in the Airflow worker) is reachable under the service's name.
    assert services["airflow-worker"]["environment"]["SPARK_LOCAL_HOSTNAME"] == "airflow-worker"


def test_the_spark_worker_stops_idle_connect_session_daemons_as_the_host_stack_does():
    """Spark Connect sessions leave Python daemons on the executor (SPARK-54055): the compose
    worker runs under host_stack.supervise with the host stack's reaping, and can import it."""
    worker = render(MERGED)["services"]["spark-worker"]
    command = [
        worker["entrypoint"][0] if isinstance(worker["entrypoint"], list) else worker["entrypoint"],
        *worker["command"],
    ]
    assert command[:3] == ["python", "-m", "host_stack.supervise"]
    reap = command.index("--reap-idle-pyspark-daemons")
    assert float(command[reap + 1]) == REAP_IDLE_SECONDS
    assert command[command.index("--") + 1 :][:2] == [
        "spark-class",
        "org.apache.spark.deploy.worker.Worker",
    ]
    assert worker["environment"]["PYTHONPATH"] == "/opt/pipeline"
    assert any(v["target"] == "/opt/pipeline/host_stack" for v in worker["volumes"])
    assert worker["environment"]["SPARK_WORKER_DIR"]


@pytest.mark.parametrize("files", [BASE, MERGED], ids=["aws", "local"])
def test_workers_reach_the_execution_api_of_the_api_server(files):
    services = render(files)["services"]
    api_port = {port["target"] for port in services["airflow-apiserver"]["ports"]}
    for name in AIRFLOW_SERVICES:
        url = urlsplit(services[name]["environment"]["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (url.hostname, url.path) == ("airflow-apiserver", "/execution/"), name
        assert url.port in api_port, name


@pytest.mark.parametrize("files", [BASE, MERGED], ids=["aws", "local"])
def test_dags_jobs_and_config_are_mounted_into_every_airflow_service(files):
    services = render(files)["services"]
    for name in AIRFLOW_SERVICES:
        mounts = {
            volume["target"]: (volume["source"], volume.get("read_only", False))
            for volume in services[name].get("volumes", [])
            if volume["type"] == "bind"
        }
        for folder in MOUNTED:
            target = str(CONTAINER_REPO / folder)
            assert mounts.get(target) == (str(REPO_ROOT / folder), True), f"{name}: {target}"


def test_localstack_is_the_last_free_tag_with_the_emulated_services():
    localstack = render(MERGED)["services"]["localstack"]
    assert localstack["image"] == "localstack/localstack:4.14.0"
    assert localstack["environment"]["SERVICES"] == ",".join(LOCALSTACK_SERVICES)
    assert localstack["environment"]["LOCALSTACK_AUTH_TOKEN"] == ""
    token = "ls-fake-token-for-the-test"  # pragma: allowlist secret
    passed = render(MERGED, {"LOCALSTACK_AUTH_TOKEN": token})["services"]["localstack"]
    assert passed["environment"]["LOCALSTACK_AUTH_TOKEN"] == token


def test_bucket_init_creates_the_configured_buckets():
    """Run the one-shot's own command, with its own environment, against moto's S3 server."""
    import boto3
    from moto.server import ThreadedMotoServer

    service = render(MERGED)["services"]["localstack-init"]
    assert service["entrypoint"] == ["python"]
    mounts = {volume["target"] for volume in service["volumes"]}
    assert {str(CONTAINER_REPO / name) for name in ("config", "envs", "host_stack")} <= mounts
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env = {**service["environment"], "AWS_ENDPOINT_URL": endpoint, "PYTHONPATH": str(REPO_ROOT)}
        result = subprocess.run(
            [sys.executable, *service["command"]],
            env={**env, "PATH": ""},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        settings = load_settings("local")
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",  # pragma: allowlist secret
        )
        buckets = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
        assert buckets == {settings.data_bucket, settings.logs_bucket}
    finally:
        server.stop()


def test_compose_cli_rejects_a_broken_reference(tmp_path):
    """The renders above can fail: a service that depends on a missing one is refused."""
    broken = tmp_path / "broken-compose.yml"
    broken.write_text("services:\n  a:\n    image: x:1\n    depends_on: [missing]\n")
    result = run_compose((str(broken),), {}, "config", "--quiet")
    assert result.returncode != 0
    assert "missing" in result.stderr
