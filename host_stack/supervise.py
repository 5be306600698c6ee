"""Keep a daemon running: restart it when it dies, as Compose's `restart: unless-stopped` does.

    python -m host_stack.supervise --name spark-worker [--pause 1] [--max-restarts 5] -- cmd...

The stack runs the Spark worker under this (a lost worker would leave every running job waiting
for executors that never come): the worker is a child in the supervisor's process group, so
`Stack.down()`, which signals the group, stops both, and a signal to the supervisor is passed on
and ends it. A daemon that keeps dying (more than --max-restarts exits within --window seconds)
is given up on, so `status` shows it dead instead of a restart loop.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Sequence


def supervised(name: str, command: Sequence[str], python: str) -> list[str]:
    """The command line that runs `command` under this supervisor with `python`."""
    return [python, "-m", "host_stack.supervise", "--name", name, "--", *command]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host_stack.supervise")
    parser.add_argument("--name", required=True, help="what the daemon is, for the log lines")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds before a restart")
    parser.add_argument("--max-restarts", type=int, default=5, help="restarts per window")
    parser.add_argument("--window", type=float, default=60.0, help="seconds")
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
        code = child.wait()
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


if __name__ == "__main__":
    sys.exit(main())
