"""host_stack.supervise with real processes: a killed daemon comes back, a signal stops both, and
a daemon that keeps dying is given up on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from host_stack.stack import REPO_ROOT
from host_stack.supervise import supervised

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def start(command: list[str], *options: str) -> subprocess.Popen[bytes]:
    line = supervised("sleeper", command, sys.executable)
    line[5:5] = list(options)  # after "--name sleeper"
    return subprocess.Popen(line, cwd=REPO_ROOT, start_new_session=True)


def child_of(supervisor: subprocess.Popen[bytes], not_pid: int | None = None) -> psutil.Process:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = [c for c in psutil.Process(supervisor.pid).children() if c.pid != not_pid]
        if children:
            return children[0]
        time.sleep(0.1)
    pytest.fail("the supervisor did not (re)start its child within 20 s")


def test_a_killed_daemon_is_restarted_and_a_signal_stops_both():
    supervisor = start(SLEEPER, "--pause", "0.2")
    try:
        first = child_of(supervisor)
        first.kill()
        second = child_of(supervisor, not_pid=first.pid)
        assert second.pid != first.pid
        os.killpg(supervisor.pid, signal.SIGTERM)  # what Stack.down() sends
        assert supervisor.wait(20) is not None
        assert not second.is_running() or second.status() == psutil.STATUS_ZOMBIE
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)


def test_a_daemon_that_keeps_dying_is_given_up():
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    supervisor = start(failing, "--pause", "0.1", "--max-restarts", "2", "--window", "60")
    try:
        assert supervisor.wait(60) == 1
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
