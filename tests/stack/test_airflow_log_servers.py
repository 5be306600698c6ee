"""The host stack's Airflow log servers: one process, a server on each port, 127.0.0.1 only,
and it stops on SIGTERM as one server would (uvicorn hands the signal from one to the next)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import psutil

from host_stack.localstack import free_port
from host_stack.stack_settings import REPO_ROOT


def _wait_accepting(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the log servers exited ({proc.returncode})"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing accepted on 127.0.0.1:{port} after {timeout:.0f}s")


def test_one_process_serves_both_ports_on_loopback_and_stops_on_sigterm() -> None:
    ports = [free_port(), free_port()]
    command = [sys.executable, "-m", "host_stack.airflow_logs"]
    command += [arg for port in ports for arg in ("--port", str(port))]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO_ROOT
    )
    try:
        for port in ports:
            _wait_accepting(port, proc)
        listening = {
            (conn.laddr.ip, conn.laddr.port)
            for conn in psutil.Process(proc.pid).net_connections(kind="inet")
            if conn.status == psutil.CONN_LISTEN
        }
        assert listening == {("127.0.0.1", port) for port in ports}

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == -signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
