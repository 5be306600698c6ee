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
from host_stack.supervise import (
    ARTIFACT_ENV,
    DAEMON_MODULE,
    DaemonReaper,
    session_daemons,
    supervised,
)

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


def pyspark_daemon(artifact_uuid: str | None) -> subprocess.Popen[bytes]:
    """A real `python -m pyspark.daemon`, as Spark starts one (it serves until stdin closes)."""
    env = {k: v for k, v in os.environ.items() if k != ARTIFACT_ENV}
    if artifact_uuid is not None:
        env[ARTIFACT_ENV] = artifact_uuid
    return subprocess.Popen(
        [sys.executable, "-m", DAEMON_MODULE, "pyspark.worker"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def test_a_sessions_idle_pyspark_daemon_is_stopped_and_a_plain_one_kept():
    session, plain = pyspark_daemon("0b6f-a-connect-session"), pyspark_daemon(None)
    try:
        for daemon in (session, plain):
            assert daemon.stdout is not None
            assert len(daemon.stdout.read(4)) == 4, "the daemon did not start (no port written)"
        me = psutil.Process()
        assert [d.pid for d in session_daemons(me)] == [session.pid]

        reaper = DaemonReaper(idle_seconds=120)
        assert reaper.sweep(me, now=1000.0) == []  # first seen without workers
        assert reaper.sweep(me, now=1119.0) == []
        assert reaper.sweep(me, now=1120.0) == [session.pid]
        session.wait(timeout=10)
        assert plain.poll() is None, "a daemon outside any Connect session was stopped"
    finally:
        for daemon in (session, plain):
            daemon.kill()
            daemon.wait()


def test_supervise_reaps_below_its_child(tmp_path):
    """The flag wires the reaper to the supervised child's process tree."""
    spawn = tmp_path / "spawn.py"
    spawn.write_text(
        "import os, subprocess, sys, time\n"
        f"env = {{**os.environ, {ARTIFACT_ENV!r}: 'a-session'}}\n"
        f"d = subprocess.Popen([sys.executable, '-m', {DAEMON_MODULE!r}, 'pyspark.worker'],"
        " env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)\n"
        "print(d.pid, flush=True)\n"
        "d.wait()\n"
        "print('daemon ended', flush=True)\n"
        "time.sleep(120)\n"
    )
    line = supervised("spawner", [sys.executable, str(spawn)], sys.executable, 1)
    supervisor = subprocess.Popen(
        line, cwd=REPO_ROOT, start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    try:
        assert supervisor.stdout is not None
        daemon_pid = int(supervisor.stdout.readline())
        assert psutil.pid_exists(daemon_pid)
        # Either may be written first: the supervisor's report or the child's.
        lines = {supervisor.stdout.readline().strip() for _ in range(2)}
        assert lines == {"supervise: spawner: stopped 1 idle pyspark daemons", "daemon ended"}
    finally:
        os.killpg(supervisor.pid, signal.SIGTERM)
        supervisor.wait(timeout=30)
