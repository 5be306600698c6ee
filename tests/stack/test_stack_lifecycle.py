"""The whole host-mode stack, started on free ports in its own state dir: every listener it opens
is on 127.0.0.1, and `down` stops all of it even after its process records are deleted.

Slow (a full `up`, about two minutes on two cores): marked localstack and spark, so `nox -s tests`
runs it and `nox -s unit` does not.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import psutil
import pytest

from host_stack.localstack import free_port
from host_stack.processes import MARKER_ENV
from host_stack.stack import Stack, StackSettings

pytestmark = [pytest.mark.localstack, pytest.mark.spark]

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = StackSettings(
        airflow_api_port=free_port(),
        spark_master_port=free_port(),
        spark_master_webui_port=free_port(),
        spark_connect_port=free_port(),
        localstack_port=free_port(),
        emr_emulator_port=free_port(),
        airflow_task_log_port=free_port(),
        airflow_triggerer_log_port=free_port(),
        spark_worker_cores=1,
        spark_worker_memory="1g",
        state_dir=tmp_path_factory.mktemp("stack"),
    )
    environ = {k: v for k, v in os.environ.items() if k != "PIPELINE_ENV"}
    stack = Stack(settings=settings, report=print, environ=environ)
    try:
        stack.up(timeout=600)
        yield stack
    finally:
        stack.down(timeout=10)


def stack_listeners(stack: Stack) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening socket of the stack's processes."""
    pids = {p.pid: p for p in stack.stack_processes()}
    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            found.append((conn.laddr.ip, conn.laddr.port, pids[conn.pid].name()))
    return found


def test_every_listener_of_the_running_stack_is_on_loopback(stack: Stack) -> None:
    listeners = stack_listeners(stack)
    ports = {port for _, port, _ in listeners}
    # The plan's own ports are among them (the stack really runs).
    assert {p.port for p in stack.plan().ports()} <= ports, listeners
    assert [entry for entry in listeners if entry[0] not in LOOPBACK] == []


def test_down_stops_everything_even_without_the_process_records(stack: Stack) -> None:
    assert stack.records(), "the stack records its processes"
    shutil.rmtree(stack.pid_dir)
    assert stack.records() == {}

    stopped = stack.down(timeout=20)

    assert stopped, "down found the unrecorded processes"
    left = [
        p
        for p in psutil.process_iter()
        if _environ(p).get(MARKER_ENV) == str(stack.state_dir) and p.is_running()
    ]
    assert [p for p in left if p.status() != psutil.STATUS_ZOMBIE] == []
    assert stack.stack_processes() == []


def _environ(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}
