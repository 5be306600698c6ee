"""The local stack in Docker mode: the end-to-end run `nox -s e2e_local` does with an engine.

Host mode (host_stack/stack.py) runs the stack as processes. With a Docker engine, nox runs the
same black-box tests (tests/e2e) against docker-compose.yml + docker-compose.local.yml instead:

    python -m host_stack.compose e2e [pytest args]    # build, up --wait, tests/e2e, down -v

`e2e_plan()` says what to run and with which client environment (pure: tests/compose checks it);
`run_e2e()` runs it and always takes the stack down. Missing secrets are written to .env first
(orchestration/compose_secrets.py), so a fresh clone works. Standard library only.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestration.compose_secrets import ensure_secrets, read_env_file

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.local.yml")
# The first build downloads the AWS SDK bundle (~700 MB) and Airflow's init migrates Postgres.
WAIT_TIMEOUT_SECONDS = 900
# Port settings shared with host mode (StackSettings) and their defaults in the compose files.
DEFAULT_PORTS = {"AIRFLOW_API_PORT": "8080", "LOCALSTACK_PORT": "4566"}


def compose_command(*args: str, docker: str = "docker") -> list[str]:
    """`docker compose` on the base file and the local overlay."""
    files = [arg for name in COMPOSE_FILES for arg in ("-f", name)]
    return [docker, "compose", *files, *args]


@dataclass(frozen=True)
class E2EPlan:
    """The commands of one Docker-mode e2e run and the environment the tests get."""

    up: list[str]
    tests: list[str]
    down: list[str]
    test_env: dict[str, str] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)


def e2e_plan(
    environ: Mapping[str, str],
    dotenv: Mapping[str, str],
    python: str,
    pytest_args: Sequence[str] = (),
) -> E2EPlan:
    """What to run, reading settings as Compose does: the environment first, then .env."""

    def setting(key: str, default: str) -> str:
        return environ.get(key) or dotenv.get(key) or default

    api_port = setting("AIRFLOW_API_PORT", DEFAULT_PORTS["AIRFLOW_API_PORT"])
    localstack_port = setting("LOCALSTACK_PORT", DEFAULT_PORTS["LOCALSTACK_PORT"])
    test_env = {
        # The same client settings host mode exports (`python -m host_stack env`).
        "AIRFLOW_API_URL": f"http://localhost:{api_port}",
        "AIRFLOW_USERNAME": setting("AIRFLOW_ADMIN_USERNAME", "admin"),
        "AIRFLOW_PASSWORD": setting("AIRFLOW_ADMIN_PASSWORD", ""),
        # The tests read S3 from the host, through LocalStack's published port.
        "PIPELINE_ENV": "local",
        "AWS_ENDPOINT_URL": f"http://localhost:{localstack_port}",
    }
    wait = ["--wait", "--wait-timeout", str(WAIT_TIMEOUT_SECONDS)]
    return E2EPlan(
        up=compose_command("up", "--detach", "--build", *wait),
        tests=[python, "-m", "pytest", "tests/e2e", *pytest_args],
        down=compose_command("down", "--volumes", "--remove-orphans"),
        test_env=test_env,
        logs=compose_command("logs", "--no-color", "--tail", "80"),
    )


def _run(command: list[str], **kwargs) -> int:
    print(f"+ {shlex.join(command)}", flush=True)
    return subprocess.run(command, check=False, **kwargs).returncode


def run_e2e(pytest_args: Sequence[str], root: Path = REPO_ROOT) -> int:
    """Build and start the compose stack, run tests/e2e against it, always take it down."""
    added = ensure_secrets(root / ".env")
    if added:
        print(f"wrote fresh {', '.join(added)} to {root / '.env'} (untracked)", flush=True)
    plan = e2e_plan(os.environ, read_env_file(root / ".env"), sys.executable, pytest_args)
    try:
        code = _run(plan.up, cwd=root)
        if code != 0:
            _run(plan.logs, cwd=root)
            print(
                f"error: the compose stack did not become healthy (exit {code}); the logs "
                f"above end with the failing service's. Check by hand: {shlex.join(plan.up)}",
                file=sys.stderr,
            )
            return code
        return _run(plan.tests, cwd=root, env={**os.environ, **plan.test_env})
    finally:
        _run(plan.down, cwd=root)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "e2e":
        print(__doc__, file=sys.stderr)
        return 2
    return run_e2e(args[1:])


if __name__ == "__main__":
    sys.exit(main())
