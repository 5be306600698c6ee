"""The compose stack under test, for the checks only Docker mode can answer.

The Docker-mode runner (host_stack/compose.py) names the stack's compose files in
E2E_COMPOSE_FILES; empty in host mode, where those checks skip.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = [f for f in os.environ.get("E2E_COMPOSE_FILES", "").split(os.pathsep) if f]


def compose(*args: str, timeout: float = 180) -> str:
    """`docker compose` on the stack's files; its output, or fail naming the command."""
    files = [arg for name in COMPOSE_FILES for arg in ("-f", name)]
    done = subprocess.run(
        ["docker", "compose", *files, *args],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, f"docker compose {' '.join(args)}: {done.stderr.strip()}"
    return done.stdout


def inspect(container_id: str, template: str) -> str:
    """`docker inspect --format template` of one container."""
    return subprocess.run(
        ["docker", "inspect", "--format", template, container_id],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
