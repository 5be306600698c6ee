"""`nox -s doctor` (host_stack/doctor.py): each finding names what is wrong and its fix."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from host_stack import doctor
from host_stack.stack_settings import REPO_ROOT, StackSettings


def _fake_java(bin_dir: Path, version: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    java = bin_dir / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-04-15' >&2\n")
    java.chmod(0o755)


def test_a_path_without_java_gives_the_java_finding_with_its_fix(tmp_path: Path) -> None:
    environ = {"PATH": str(tmp_path)}  # an empty folder: no java, and no JAVA_HOME

    finding = doctor.check_java(environ)

    assert finding.blocking
    assert "Java 17 not found" in finding.message
    assert "no java on PATH and JAVA_HOME unset" in finding.message
    assert "sudo apt-get install openjdk-17-jre-headless" in finding.message
    assert "brew install openjdk@17" in finding.message
    assert "\n" not in finding.line()


def test_the_whole_report_stops_on_a_missing_java(tmp_path: Path) -> None:
    environ = {"PATH": str(tmp_path), "STACK_STATE_DIR": str(tmp_path / "state")}

    findings = doctor.check_machine(environ, docker=False)

    java = [f for f in findings if f.check == "java"]
    assert len(java) == 1
    assert java[0].blocking


@pytest.mark.parametrize(
    ("version", "blocking"), [("11.0.22", True), ("17.0.15", False), ("21.0.5", False)]
)
def test_the_java_version_is_checked(tmp_path: Path, version: str, blocking: bool) -> None:
    _fake_java(tmp_path / "bin", version)

    finding = doctor.check_java({"PATH": str(tmp_path / "bin")})

    assert finding.blocking is blocking
    assert f"Java {version.split('.', maxsplit=1)[0]}" in finding.message


def test_java_home_wins_over_path(tmp_path: Path) -> None:
    _fake_java(tmp_path / "jdk" / "bin", "17.0.15")
    _fake_java(tmp_path / "old", "11.0.22")

    finding = doctor.check_java({"JAVA_HOME": str(tmp_path / "jdk"), "PATH": str(tmp_path / "old")})

    assert not finding.blocking
    assert str(tmp_path / "jdk") in finding.message


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("Unable to locate a Java Runtime.", None),
    ],
)
def test_java_major(output: str, major: int | None) -> None:
    assert doctor.java_major(output) == major


def _listening_socket() -> socket.socket:
    """A socket listening on a port the OS picked (so no assumption about the stack's ports)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_taken_port_gives_a_finding_naming_its_setting(tmp_path: Path) -> None:
    with _listening_socket() as sock:
        port = sock.getsockname()[1]
        environ = {"AIRFLOW_API_PORT": str(port), "STACK_STATE_DIR": str(tmp_path)}

        findings = doctor.check_ports(StackSettings.from_env(environ), environ)

    mine = [f for f in findings if f"port {port} " in f.message]
    assert len(mine) == 1
    assert mine[0].blocking
    assert "AIRFLOW_API_PORT=<free port>" in mine[0].message
    assert "Airflow API server / UI" in mine[0].message
    assert f"sport = :{port}" in mine[0].message  # who holds it, on Linux
    assert f"-iTCP:{port}" in mine[0].message  # and on macOS


def test_the_running_stacks_own_port_is_not_a_clash(tmp_path: Path) -> None:
    """`up` reuses a running stack: its listeners must not stop `nox -s up` run again."""
    pids = tmp_path / "pids"
    pids.mkdir()
    record = {
        "name": "airflow-api-server",
        "pid": os.getpid(),
        "create_time": 0,
        "log": "",
        "command": "",
    }
    (pids / "airflow-api-server.json").write_text(json.dumps(record))
    with _listening_socket() as sock:
        port = sock.getsockname()[1]
        environ = {"AIRFLOW_API_PORT": str(port), "STACK_STATE_DIR": str(tmp_path)}

        findings = doctor.check_ports(StackSettings.from_env(environ), environ)

    assert not [f for f in findings if f"port {port} " in f.message]


def test_a_dead_stack_process_does_not_hide_a_clash(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pids = tmp_path / "pids"
    pids.mkdir()
    (pids / "airflow-api-server.json").write_text(json.dumps({"pid": dead.pid}))
    with _listening_socket() as sock:
        port = sock.getsockname()[1]
        environ = {"AIRFLOW_API_PORT": str(port), "STACK_STATE_DIR": str(tmp_path)}

        findings = doctor.check_ports(StackSettings.from_env(environ), environ)

    assert [f for f in findings if f"port {port} " in f.message]


def test_only_the_ports_of_the_chosen_environment_are_checked() -> None:
    settings = StackSettings()

    local = {env for _, _, env in doctor.ports_to_check(settings, {})}
    aws = {env for _, _, env in doctor.ports_to_check(settings, {"PIPELINE_ENV": "aws"})}
    classic = {env for _, _, env in doctor.ports_to_check(settings, {"SPARK_CONNECT_URL": ""})}

    assert "SPARK_CONNECT_PORT" in local
    assert "EMR_EMULATOR_PORT" not in local
    assert "EMR_EMULATOR_PORT" in aws
    assert "SPARK_CONNECT_PORT" not in aws
    assert "SPARK_CONNECT_PORT" not in classic
    # Airflow's log servers have settings of their own, and follow the API port by default.
    ports = {env: p for p, _, env in doctor.ports_to_check(settings, {})}
    assert ports["AIRFLOW_API_PORT"] == 8080
    assert ports["AIRFLOW_TASK_LOG_PORT"] == 8793
    assert ports["AIRFLOW_TRIGGERER_LOG_PORT"] == 8794
    moved = StackSettings.from_env({"AIRFLOW_API_PORT": "28080", "AIRFLOW_TASK_LOG_PORT": "29000"})
    assert (moved.airflow_task_log_port, moved.airflow_triggerer_log_port) == (29000, 28794)


def test_a_malformed_port_setting_is_a_finding(tmp_path: Path) -> None:
    environ = {"AIRFLOW_API_PORT": "eighty", "PATH": str(tmp_path)}

    findings = doctor.check_machine(environ, docker=False)

    settings = [f for f in findings if f.check == "settings"]
    assert settings
    assert settings[0].blocking
    assert "AIRFLOW_API_PORT='eighty'" in settings[0].message


def test_a_missing_python_names_where_it_looked_and_the_fix(tmp_path: Path) -> None:
    environ = {"PATH": str(tmp_path), "PYENV_ROOT": str(tmp_path / "pyenv")}

    with pytest.raises(doctor.PythonNotFoundError) as raised:
        doctor.find_python((3, 99), exact=True, override_var="SOME_BASE_PYTHON", environ=environ)

    assert "Python 3.99 not found" in str(raised.value)
    assert "SOME_BASE_PYTHON=/path/to/python3.99" in str(raised.value)


def test_the_override_variable_is_tried_first(tmp_path: Path) -> None:
    environ = {"PATH": str(tmp_path), "SOME_BASE_PYTHON": sys.executable}
    version = sys.version_info[:2]

    found = doctor.find_python((version[0], version[1]), True, "SOME_BASE_PYTHON", environ)

    assert found == sys.executable


@pytest.mark.skipif(
    sys.version_info[:2] >= doctor.LOCALSTACK_PYTHON,
    reason="this interpreter would itself be found for LocalStack",
)
def test_the_localstack_python_finding_carries_both_fixes(tmp_path: Path) -> None:
    environ = {"PATH": str(tmp_path), "PYENV_ROOT": str(tmp_path / "pyenv")}

    findings = {f.check: f for f in doctor.check_pythons(environ)}

    assert findings["python3.13"].blocking
    assert "brew install python@3.13" in findings["python3.13"].message
    assert "pyenv install 3.13" in findings["python3.13"].message
    assert "LOCALSTACK_BASE_PYTHON" in findings["python3.13"].message


def test_the_doctor_needs_only_the_standard_library() -> None:
    """It runs in nox's own interpreter, before the virtualenvs exist: -S hides site-packages."""
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import host_stack.doctor"],
        cwd=REPO_ROOT,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=False,
    )

    assert probe.returncode == 0, probe.stderr


def test_the_pythons_checked_are_those_the_locks_and_the_noxfile_build_with() -> None:
    noxfile = (REPO_ROOT / "noxfile.py").read_text()
    match = re.search(r'^PYTHON = "(\d+)\.(\d+)"', noxfile, re.MULTILINE)

    assert match is not None
    assert (int(match.group(1)), int(match.group(2))) == doctor.PIPELINE_PYTHON
    assert doctor.LOCALSTACK_PYTHON >= (3, 13)  # localstack-core uses warnings.deprecated
