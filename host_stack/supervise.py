"""Keep a daemon running: restart it when it dies, as Compose's `restart: unless-stopped` does.

    python -m host_stack.supervise --name spark-worker [--pause 1] [--max-restarts 5] -- cmd...

The stack runs the Spark worker under this (a lost worker would leave every running job waiting
for executors that never come): the worker is a child in the supervisor's process group, so
`Stack.down()`, which signals the group, stops both, and a signal to the supervisor is passed on
and ends it. A daemon that keeps dying (more than --max-restarts exits within --window seconds)
is given up on, so `status` shows it dead instead of a restart loop.

`--reap-idle-pyspark-daemons SECONDS` also stops the Python daemons a long-lived Spark process
leaves behind (the Spark Connect server, and the worker's executors for it). Spark starts one
`pyspark.daemon` per Python worker module and per Connect session's artifact set, and stops none
of them before the application ends (SPARK-54055, open in 4.3): without this, every local DAG
run leaves four to six Python processes and 100-300 MB behind. A daemon of a session
(SPARK_JOB_ARTIFACT_UUID set) whose forked workers are all gone (Spark stops idle ones after a
minute) for SECONDS is sent SIGTERM. Stopping one that its session still uses costs a restart:
with no idle worker queued, Spark's next request finds the daemon gone and starts a new one.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import psutil

DAEMON_MODULE = "pyspark.daemon"
ARTIFACT_ENV = "SPARK_JOB_ARTIFACT_UUID"


def session_daemons(root: psutil.Process) -> list[psutil.Process]:
    """The `python -m pyspark.daemon` processes below root that serve one Connect session."""
    daemons = []
    for proc in root.children(recursive=True):
        try:
            cmdline = proc.cmdline()
            if DAEMON_MODULE not in cmdline or cmdline[cmdline.index(DAEMON_MODULE) - 1] != "-m":
                continue
            if proc.environ().get(ARTIFACT_ENV, "default") == "default":
                continue  # a classic job's or the plain application's: lives with it
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        # The daemon's forked workers are its children; a worker is not a daemon itself.
        if proc.parent() is not None and DAEMON_MODULE in _cmdline(proc.parent()):
            continue
        daemons.append(proc)
    return daemons


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


class DaemonReaper:
    """Stops session daemons below a process once they have had no workers for idle_seconds."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self._idle_since: dict[int, float] = {}

    def sweep(self, root: psutil.Process, now: float | None = None) -> list[int]:
        """One look: returns the pids sent SIGTERM."""
        now = time.monotonic() if now is None else now
        seen, reaped = set(), []
        for daemon in session_daemons(root):
            seen.add(daemon.pid)
            try:
                if daemon.children():
                    self._idle_since.pop(daemon.pid, None)
                    continue
                since = self._idle_since.setdefault(daemon.pid, now)
                if now - since >= self.idle_seconds:
                    daemon.terminate()
                    reaped.append(daemon.pid)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
        self._idle_since = {pid: t for pid, t in self._idle_since.items() if pid in seen}
        return reaped


# How long a session's Python daemon may sit without workers before it is stopped: Spark itself
# stops idle workers after a minute, so this is about 1.5-2 minutes after a session's last use.
# Short, because back-to-back runs open a session every few seconds and a longer wait let the
# daemons pile up by the dozen (figures in docs/reliability.md).
REAP_IDLE_SECONDS = 30.0


def supervised(
    name: str, command: Sequence[str], python: str, reap_idle_pyspark_daemons: float | None = None
) -> list[str]:
    """The command line that runs `command` under this supervisor with `python`."""
    reap = []
    if reap_idle_pyspark_daemons is not None:
        reap = ["--reap-idle-pyspark-daemons", f"{reap_idle_pyspark_daemons:g}"]
    return [python, "-m", "host_stack.supervise", "--name", name, *reap, "--", *command]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host_stack.supervise")
    parser.add_argument("--name", required=True, help="what the daemon is, for the log lines")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds before a restart")
    parser.add_argument("--max-restarts", type=int, default=5, help="restarts per window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds")
    parser.add_argument(
        "--reap-idle-pyspark-daemons",
        type=float,
        metavar="SECONDS",
        help="stop a Connect session's Python daemons idle this long (see the module doc)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the daemon's command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")

    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts: list[float] = []
    while True:
        child = subprocess.Popen(command)  # shares our output (the stack's log) and group
        code = _wait(child, args.name, args.reap_idle_pyspark_daemons)
        if stopping:
            return code
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < args.window] + [now]
        if len(restarts) > args.max_restarts:
            print(
                f"supervise: {args.name} exited {len(restarts)} times in {args.window:.0f}s "
                f"(last exit code {code}); giving up",
                flush=True,
            )
            return 1
        print(
            f"supervise: {args.name} exited with code {code}; restarting in {args.pause:g}s",
            flush=True,
        )
        time.sleep(args.pause)
        if stopping:
            return code


def _wait(child: subprocess.Popen[bytes], name: str, reap_after: float | None) -> int:
    """child's exit code; meanwhile, with reap_after, sweep its idle session daemons."""
    if reap_after is None:
        return child.wait()
    reaper, root = DaemonReaper(reap_after), psutil.Process(child.pid)
    interval = min(max(reap_after / 2, 1.0), 30.0)
    while True:
        try:
            return child.wait(timeout=interval)
        except subprocess.TimeoutExpired:
            pass
        try:
            reaped = reaper.sweep(root)
        except psutil.Error:
            continue  # the child is exiting: wait() says how
        if reaped:
            print(f"supervise: {name}: stopped {len(reaped)} idle pyspark daemons", flush=True)


if __name__ == "__main__":
    sys.exit(main())
