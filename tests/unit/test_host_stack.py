"""The host-mode stack's process handling, with real processes (no mocks).

Each test uses its own state dir and free ports, so it never touches a stack that is already up.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from host_stack.localstack import free_port
from host_stack.stack import (
    MARKER_ENV,
    REPO_ROOT,
    WARMUP_PREFIX,
    Stack,
    StackError,
    StackSettings,
)


def make_stack(tmp_path: Path, **ports: int) -> Stack:
    settings = StackSettings(
        airflow_api_port=ports.get("airflow_api_port", free_port()),
        spark_master_port=ports.get("spark_master_port", free_port()),
        spark_master_webui_port=ports.get("spark_master_webui_port", free_port()),
        localstack_port=ports.get("localstack_port", free_port()),
        emr_emulator_port=ports.get("emr_emulator_port", free_port()),
        spark_connect_port=ports.get("spark_connect_port", free_port()),
        spark_worker_cores=1,
        spark_worker_memory="512m",
        state_dir=tmp_path / "stack",
    )
    return Stack(settings=settings, report=lambda line: None)


def marked_processes(stack: Stack) -> list[psutil.Process]:
    return stack.stray_processes()


@pytest.fixture
def listening_port():
    """A port something really listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_port_fails_up_naming_the_port_and_the_setting(tmp_path, listening_port):
    stack = make_stack(tmp_path, airflow_api_port=listening_port)
    with pytest.raises(StackError) as error:
        stack.up(timeout=30)
    message = str(error.value)
    assert f"port {listening_port} (Airflow API server / UI) is already in use" in message
    assert "AIRFLOW_API_PORT=<free port>" in message
    assert f"pid {os.getpid()}" in message  # who holds it
    assert stack.running() == {}, "a failed up must not leave processes behind"


def test_the_cli_reports_a_taken_port_and_exits_non_zero(tmp_path, listening_port):
    env = {
        **os.environ,
        "SPARK_MASTER_PORT": str(listening_port),
        "STACK_STATE_DIR": str(tmp_path / "stack"),
        "AIRFLOW_API_PORT": str(free_port()),
        "SPARK_MASTER_WEBUI_PORT": str(free_port()),
        "LOCALSTACK_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "host_stack", "up"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {listening_port} (Spark master)" in result.stderr
    assert "SPARK_MASTER_PORT=<free port>" in result.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AIRFLOW_API_PORT": "80a"}, "AIRFLOW_API_PORT='80a'"),
        ({"LOCALSTACK_PORT": "70000"}, "LOCALSTACK_PORT='70000'"),
        ({"STACK_SCHEDULES": "sometimes"}, "expected on or off"),
    ],
)
def test_bad_stack_settings_name_the_variable(env, expected):
    with pytest.raises(StackError, match=expected):
        StackSettings.from_env(env)


def test_stack_settings_defaults_and_overrides():
    assert StackSettings.from_env({}).airflow_api_port == 8080
    assert StackSettings.from_env({}).spark_master_port == 7077
    assert StackSettings.from_env({}).localstack_port == 4566
    assert StackSettings.from_env({}).spark_connect_port == 15002
    assert StackSettings.from_env({"SPARK_CONNECT_PORT": "15010"}).spark_connect_port == 15010
    moved = StackSettings.from_env({"LOCALSTACK_PORT": "4570", "STACK_SCHEDULES": "on"})
    assert moved.localstack_port == 4570
    assert moved.schedules is True


def test_moved_ports_reach_the_pipeline_settings(tmp_path):
    stack = make_stack(
        tmp_path, localstack_port=4570, spark_master_port=7078, spark_connect_port=15003
    )
    stack.environ = {k: v for k, v in os.environ.items() if k != "PIPELINE_ENV"}
    settings = stack.pipeline_settings()
    assert settings.aws_endpoint_url.endswith(":4570")
    assert settings.spark_master == "spark://127.0.0.1:7078"
    assert settings.spark_connect_url == "sc://127.0.0.1:15003"
    # The Connect server runs on the stack's master with the jobs' S3 conf, on the moved port.
    command = stack.spark_connect().command()
    assert command[command.index("--master") + 1] == "spark://127.0.0.1:7078"
    assert "spark.connect.grpc.binding.port=15003" in command
    assert f"spark.hadoop.fs.s3a.endpoint={settings.aws_endpoint_url}" in command
    # Its driver keeps the JIT's optimising compiler (tests/unit/test_spark_quick_start.py
    # has the executor's options).
    driver = next(a for a in command if a.startswith("spark.driver.extraJavaOptions="))
    assert "TieredStopAtLevel" not in driver
    assert "SharedArchiveFile" not in driver
    airflow_env = stack.airflow().environment({})
    assert '"host": "spark://127.0.0.1:7078"' in airflow_env["AIRFLOW_CONN_SPARK_DEFAULT"]
    assert airflow_env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == settings.logs_uri


def test_a_new_connect_server_is_warmed_up_through_its_own_url_in_a_scratch_prefix(tmp_path):
    stack = make_stack(tmp_path, spark_connect_port=15004)
    stack.environ = {k: v for k, v in os.environ.items() if k != "PIPELINE_ENV"}
    settings = stack.pipeline_settings()
    command = stack.connect_warmup_command()
    assert command[1:3] == ["-m", "host_stack.spark_warmup"]
    work_dir = command[command.index("--work-dir") + 1]
    assert work_dir == f"s3://{settings.data_bucket}/{WARMUP_PREFIX}"
    assert "--clean" in command, "the warm-up's data must not stay in the data bucket"
    env = stack.job_env()
    assert env["SPARK_CONNECT_URL"] == "sc://127.0.0.1:15004"
    assert env["PYTHONPATH"] == str(REPO_ROOT)


def test_aws_mode_points_every_aws_service_at_an_emulator(tmp_path):
    from config.config import KEYS, load_settings

    stack = make_stack(tmp_path, localstack_port=4701, emr_emulator_port=4702)
    shell = {k: v for k, v in os.environ.items() if k not in KEYS}
    # Keys a developer's shell may hold must never reach the rehearsal's clients.
    shell.update(PIPELINE_ENV="aws", AWS_ACCESS_KEY_ID="AKIAREALKEY", AWS_SECRET_ACCESS_KEY="x")
    stack.environ = shell

    settings = stack.pipeline_settings()
    assert settings.pipeline_env == "aws"
    assert settings.aws_endpoint_url == "http://localhost:4701"
    assert settings.emr_endpoint_url == "http://127.0.0.1:4702"
    assert settings.aws_access_key_id == "test"
    assert settings.rows_per_day == load_settings("local", environ={}).rows_per_day
    assert (settings.emr_step_poll_seconds, settings.emr_termination_poll_seconds) == (2, 2)
    # Short enough for tests/e2e to rehearse a step past its timeout and late logs.
    assert (settings.emr_step_timeout_seconds, settings.emr_step_log_wait_seconds) == (420, 10)
    assert (
        settings.task_retry_delay_seconds
        == load_settings("local", environ={}).task_retry_delay_seconds
    )
    airflow = stack.airflow()
    assert airflow.home == stack.state_dir / "airflow-aws"
    connection = json.loads(airflow.environment({})["AIRFLOW_CONN_AWS_DEFAULT"])
    endpoints = connection["extra"]["service_config"]
    assert endpoints["emr"] == {"endpoint_url": "http://127.0.0.1:4702"}
    assert endpoints["s3"] == {"endpoint_url": "http://localhost:4701"}
    assert "4702" in stack.emr_emulator_command()
    # EMR runs each job as a Spark application of its own: no Connect server in the rehearsal.
    assert stack.spark_connect() is None
    # What the shell sets explicitly still wins over the rehearsal's sizes.
    stack.environ = {**shell, "ROWS_PER_DAY": "123"}
    assert stack.pipeline_settings().rows_per_day == 123


def test_a_running_stack_keeps_its_pipeline_env(tmp_path):
    stack = make_stack(tmp_path)
    stack.environ = {k: v for k, v in os.environ.items() if k != "PIPELINE_ENV"}
    stack._check_same_pipeline_env({})  # nothing runs: records local
    running = {"localstack": object()}

    stack.environ = {**stack.environ, "PIPELINE_ENV": "aws"}
    with pytest.raises(StackError, match="runs with PIPELINE_ENV=local; stop it first"):
        stack._check_same_pipeline_env(running)


def test_down_stops_children_that_left_their_process_group(tmp_path):
    stack = make_stack(tmp_path)
    # The child starts its own session: only the marker variable still ties it to the stack.
    record = stack.spawn(
        "escaper", ["bash", "-c", "setsid sleep 300 & sleep 300"], env=dict(os.environ)
    )
    deadline = time.monotonic() + 10
    while len(marked_processes(stack)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = {p.pid for p in marked_processes(stack)}
    assert record.pid in pids
    assert len(pids) == 3, pids

    stopped = stack.down(timeout=5)

    assert stopped == ["escaper"]
    assert marked_processes(stack) == []
    assert not any(psutil.pid_exists(pid) and _not_zombie(pid) for pid in pids)
    assert stack.records() == {}


def test_status_tells_running_from_dead(tmp_path):
    stack = make_stack(tmp_path)
    stack.spawn("spark-master", ["sleep", "300"], env=dict(os.environ))
    stack.spawn("spark-worker", ["true"], env=dict(os.environ))
    time.sleep(0.5)
    rows = {name: state for name, state, _ in stack.status()}
    assert rows["spark-master"] == "running"
    assert rows["spark-worker"] == "dead"
    assert rows["localstack"] == "stopped"
    stack.down(timeout=5)
    assert {state for _, state, _ in stack.status()} == {"stopped"}


@pytest.mark.spark
def test_the_spark_pair_starts_registers_and_stops_without_leftovers(tmp_path):
    stack = make_stack(tmp_path)
    spark = stack.spark()
    spark.prepare()
    env = spark.environment(os.environ, python=sys.executable)
    try:
        stack.spawn("spark-master", spark.master_command(), env)
        _wait(spark.master_port_open, 90, "Spark master RPC port")
        stack.spawn("spark-worker", spark.worker_command(), env)
        _wait(lambda: spark.worker_ready()[0], 120, "worker registration")
        assert spark.master_ready()[0]
        assert spark.alive_workers() == 1
    finally:
        stack.down(timeout=15)
    assert marked_processes(stack) == []
    assert stack.running() == {}
    assert not spark.master_port_open()


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not ready after {timeout}s")
        time.sleep(0.5)


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_marker_names_the_state_dir(tmp_path):
    stack = make_stack(tmp_path)
    stack.spawn("probe", [sys.executable, "-c", "import time; time.sleep(30)"], dict(os.environ))
    try:
        (proc,) = marked_processes(stack)
        assert proc.environ()[MARKER_ENV] == str(stack.state_dir)
    finally:
        stack.down(timeout=5)


@pytest.fixture
def fake_airflow_api():
    """An HTTP server answering Airflow's two health routes; `execution` sets the execution
    API's status, and `paths` records what was asked."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"execution": 503, "paths": []}
    healthy = {"status": "healthy"}
    health = {k: healthy for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state["paths"].append(self.path)
            if self.path == "/api/v2/monitor/health":
                status, body = 200, health
            elif self.path == "/execution/health":
                status, body = state["execution"], healthy
            else:
                status, body = 404, {}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["port"] = server.server_address[1]
    yield state
    server.shutdown()
    server.server_close()


def test_airflow_is_ready_only_once_its_execution_api_answers(tmp_path, fake_airflow_api):
    # Task processes call the execution API; its first request builds its routes, so `up`
    # asks it before it reports Airflow ready instead of leaving that to the first task.
    stack = make_stack(tmp_path, airflow_api_port=fake_airflow_api["port"])
    airflow = stack.airflow()
    ok, detail = airflow.ready()
    assert not ok
    assert "/execution/health: 503" in detail
    fake_airflow_api["execution"] = 200
    assert airflow.ready() == (True, "all components healthy")
    assert fake_airflow_api["paths"][-2:] == ["/api/v2/monitor/health", "/execution/health"]


def test_airflow_gets_an_owner_only_jwt_secret_long_enough_for_hs512(tmp_path):
    airflow = make_stack(tmp_path).airflow()
    assert "AIRFLOW__API_AUTH__JWT_SECRET" not in airflow.environment({})  # before prepare
    airflow.prepare()
    mode = airflow.jwt_secret_file.stat().st_mode & 0o777
    assert mode == 0o600
    secret = airflow.environment({})["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(secret.encode()) >= 64
    airflow.prepare()  # a restart keeps it: tokens stay valid, components agree
    assert airflow.environment({})["AIRFLOW__API_AUTH__JWT_SECRET"] == secret


def test_an_empty_jwt_secret_file_is_made_again(tmp_path):
    """A start cut short between creating the file and writing the key leaves it empty; an
    empty key would let anyone sign tokens."""
    airflow = make_stack(tmp_path).airflow()
    airflow.home.mkdir(parents=True)
    airflow.jwt_secret_file.write_text("\n")
    airflow.prepare()
    assert len(airflow.environment({})["AIRFLOW__API_AUTH__JWT_SECRET"].encode()) >= 64
    assert airflow.jwt_secret_file.stat().st_mode & 0o777 == 0o600
