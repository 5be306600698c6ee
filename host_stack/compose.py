"""The compose stacks, run for real: Docker mode of `nox -s e2e_local` and `e2e_aws_emulated`.

Two stacks, each docker-compose.yml (the EC2 stack: Celery, Postgres, Redis) plus one overlay:
- `local`: docker-compose.local.yml, the laptop stack (LocalStack, Spark, PIPELINE_ENV=local);
- `aws`: envs/aws/docker-compose.rehearsal.yml, the EC2 stack as the instance runs it with only
  AWS emulated (LocalStack, the EMR emulator), PIPELINE_ENV=aws.

    python -m host_stack.compose e2e  --stack local [pytest args]   # up, tests, down -v
    python -m host_stack.compose up   --stack local                 # build, up --wait
    python -m host_stack.compose env  --stack local [--json]        # the tests' environment
    python -m host_stack.compose down --stack local                 # down -v

`up` makes sure an engine answers (host_stack/docker_engine.py) and .env has the secrets
(orchestration/compose_secrets.py), builds each image (once: the services that share an image
share its build), then waits for every healthcheck. `plan()` says what runs, as data (pure:
tests/compose checks it against the rendered files). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from host_stack.stack import EMULATED_STEP_LOG_WAIT_SECONDS, EMULATED_STEP_TIMEOUT_SECONDS
from host_stack.stack_settings import STACK_ENV_NAMES, StackSettings
from orchestration.compose_secrets import ensure_secrets, read_env_file

REPO_ROOT = Path(__file__).resolve().parent.parent
# A first build installs the lock into the image (a few minutes); Airflow's init migrates Postgres.
WAIT_TIMEOUT_SECONDS = 900
# The port settings the compose files share with host mode, at host mode's defaults (the
# compose files' ${...:-default} equal them: tests/compose checks what they publish).
_DEFAULTS = StackSettings()
DEFAULT_PORTS = {
    STACK_ENV_NAMES[name]: str(getattr(_DEFAULTS, name))
    for name in ("airflow_api_port", "localstack_port", "emr_emulator_port")
}
# The e2e tests, and the checks that only a compose stack can answer (tests/e2e skips them else).
E2E_TESTS = ("tests/e2e",)
# LocalStack's documented dummy keys, which the compose overlays give every emulated client.
LOCALSTACK_KEYS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


@dataclass(frozen=True)
class ComposeStack:
    """One compose stack: its files, the services whose builds make its images, its target."""

    name: str
    files: tuple[str, ...]
    builds: tuple[str, ...]
    pipeline_env: str
    # The rehearsal's clients, like its Airflow, see AWS at the emulators' published ports.
    emulates_aws: bool = False


STACKS = {
    "local": ComposeStack(
        "local", ("docker-compose.yml", "docker-compose.local.yml"), ("airflow-init",), "local"
    ),
    "aws": ComposeStack(
        "aws",
        ("docker-compose.yml", "envs/aws/docker-compose.rehearsal.yml"),
        ("airflow-init", "emr-emulator"),
        "aws",
        emulates_aws=True,
    ),
}


def compose_command(stack: ComposeStack, *args: str, docker: str = "docker") -> list[str]:
    """`docker compose` on the stack's files."""
    files = [arg for name in stack.files for arg in ("-f", name)]
    return [docker, "compose", *files, *args]


@dataclass(frozen=True)
class Plan:
    """The commands of one stack's run and the environment its clients (the tests) get."""

    build: list[str]
    up: list[str]
    tests: list[str]
    down: list[str]
    test_env: dict[str, str] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)
    ps: list[str] = field(default_factory=list)


def plan(
    stack: ComposeStack,
    environ: Mapping[str, str],
    dotenv: Mapping[str, str],
    python: str,
    pytest_args: Sequence[str] = (),
) -> Plan:
    """What to run, reading settings as Compose does: the environment first, then .env."""

    def setting(key: str, default: str) -> str:
        return environ.get(key) or dotenv.get(key) or default

    ports = {key: setting(key, default) for key, default in DEFAULT_PORTS.items()}
    test_env = {
        # The same client settings host mode exports (`python -m host_stack env`).
        "AIRFLOW_API_URL": f"http://localhost:{ports['AIRFLOW_API_PORT']}",
        "AIRFLOW_USERNAME": setting("AIRFLOW_ADMIN_USERNAME", "admin"),
        "AIRFLOW_PASSWORD": setting("AIRFLOW_ADMIN_PASSWORD", ""),
        # The tests read S3 from the host, through LocalStack's published port.
        "PIPELINE_ENV": stack.pipeline_env,
        "AWS_ENDPOINT_URL": f"http://localhost:{ports['LOCALSTACK_PORT']}",
        # What tells the production-shape checks which compose stack they look at.
        "E2E_COMPOSE_FILES": os.pathsep.join(stack.files),
    }
    if stack.emulates_aws:
        test_env |= LOCALSTACK_KEYS | {
            "EMR_ENDPOINT_URL": f"http://localhost:{ports['EMR_EMULATOR_PORT']}",
            # What the rehearsal's Airflow waits (its compose file sets the same): the EMR
            # failure scenarios plan their faults by them.
            "EMR_STEP_TIMEOUT_SECONDS": str(EMULATED_STEP_TIMEOUT_SECONDS),
            "EMR_STEP_LOG_WAIT_SECONDS": str(EMULATED_STEP_LOG_WAIT_SECONDS),
        }
    wait = ["--wait", "--wait-timeout", str(WAIT_TIMEOUT_SECONDS)]
    return Plan(
        build=compose_command(stack, "build", *stack.builds),
        up=compose_command(stack, "up", "--detach", *wait),
        tests=[python, "-m", "pytest", *E2E_TESTS, *pytest_args],
        down=compose_command(stack, "down", "--volumes", "--remove-orphans"),
        test_env=test_env,
        logs=compose_command(stack, "logs", "--no-color", "--tail", "80"),
        ps=compose_command(stack, "ps", "--all"),
    )


def _run(command: list[str], **kwargs) -> int:
    print(f"+ {shlex.join(command)}", flush=True)
    return subprocess.run(command, check=False, **kwargs).returncode


def _stack_plan(stack: ComposeStack, root: Path, pytest_args: Sequence[str] = ()) -> Plan:
    return plan(stack, os.environ, read_env_file(root / ".env"), sys.executable, pytest_args)


def up(stack: ComposeStack, root: Path = REPO_ROOT) -> int:
    """An engine, the secrets, the images (built every time: an unchanged image is all cache
    hits, a changed Dockerfile or lock is never missed), and every service healthy."""
    from host_stack.docker_engine import EngineError, ensure_compose_plugin, start

    try:
        print(start(), flush=True)
        print(ensure_compose_plugin(), flush=True)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    added = ensure_secrets(root / ".env")
    if added:
        print(f"wrote fresh {', '.join(added)} to {root / '.env'} (untracked)", flush=True)
    steps = _stack_plan(stack, root)
    code = _run(steps.build, cwd=root)
    if code != 0:
        print(
            "error: the image build failed. Without a registry, build the stand-in base images "
            "first (nox -s docker_images); without Maven Central, set S3A_CONNECTOR=none; behind "
            "a TLS-inspecting proxy, set BUILD_CA_CERTIFICATES (docs/docker.md)",
            file=sys.stderr,
        )
        return code
    code = _run(steps.up, cwd=root)
    if code != 0:
        _run(steps.ps, cwd=root)
        _run(steps.logs, cwd=root)
        print(
            f"error: the {stack.name} compose stack did not become healthy (exit {code}); the "
            f"logs above end with the failing service's. By hand: {shlex.join(steps.up)}",
            file=sys.stderr,
        )
    return code


def down(stack: ComposeStack, root: Path = REPO_ROOT) -> int:
    return _run(_stack_plan(stack, root).down, cwd=root)


def run_e2e(stack: ComposeStack, pytest_args: Sequence[str], root: Path = REPO_ROOT) -> int:
    """Start the stack, run the e2e tests against it, always take it down."""
    try:
        code = up(stack, root)
        if code != 0:
            return code
        steps = _stack_plan(stack, root, pytest_args)
        return _run(steps.tests, cwd=root, env={**os.environ, **steps.test_env})
    finally:
        down(stack, root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_stack.compose", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=("e2e", "up", "down", "env"))
    parser.add_argument("--stack", choices=sorted(STACKS), default="local")
    parser.add_argument("--json", action="store_true", help="env: one JSON object")
    args, rest = parser.parse_known_args(argv)
    stack = STACKS[args.stack]
    if args.action == "e2e":
        return run_e2e(stack, rest)
    if rest:
        parser.error(f"unexpected arguments: {' '.join(rest)}")
    if args.action == "up":
        return up(stack)
    if args.action == "down":
        return down(stack)
    env = _stack_plan(stack, REPO_ROOT).test_env
    print(json.dumps(env) if args.json else "\n".join(f"{k}={v}" for k, v in env.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
