"""Secrets of the compose stack: required, read only from .env or the environment, each landing
exactly where it is used, and never committed with a value."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from orchestration.compose_secrets import SECRET_KEYS, ensure_secrets, read_env_file
from tests.compose.conftest import (
    AIRFLOW_SERVICES,
    FAKE_SECRETS,
    MERGED,
    REPO_ROOT,
    render,
    run_compose,
    walk,
)

FIX = "python3 -m orchestration.compose_secrets"
# Secret -> the (service, environment key) pairs that must hold it, and nothing else.
ON_EVERY_AIRFLOW_SERVICE = {
    "AIRFLOW_FERNET_KEY": "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW_JWT_SECRET": "AIRFLOW__API_AUTH__JWT_SECRET",  # pragma: allowlist secret
    "AIRFLOW_API_SECRET_KEY": "AIRFLOW__API__SECRET_KEY",  # pragma: allowlist secret
}
DATABASE_URLS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND")
EXPECTED_PLACES = {
    **{
        secret: {(service, key) for service in AIRFLOW_SERVICES}
        for secret, key in ON_EVERY_AIRFLOW_SERVICE.items()
    },
    "AIRFLOW_ADMIN_PASSWORD": {("airflow-init", "AIRFLOW_ADMIN_PASSWORD")},
    "POSTGRES_PASSWORD": {("postgres", "POSTGRES_PASSWORD")}
    | {(service, key) for service in AIRFLOW_SERVICES for key in DATABASE_URLS},
}


def required_variables(text: str) -> set[str]:
    """The ${VAR:?message} variables of a compose file (comments left out)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", "\n".join(lines)))


def test_the_required_variables_are_exactly_the_secrets_the_tool_writes():
    required = set()
    for name in MERGED:
        required |= required_variables((REPO_ROOT / name).read_text())
    assert required == set(SECRET_KEYS)
    assert set(EXPECTED_PLACES) == set(SECRET_KEYS)


@pytest.mark.parametrize("missing", sorted(SECRET_KEYS))
@pytest.mark.parametrize("value", ["unset", "empty"])
def test_a_missing_secret_stops_compose_with_the_fix(missing, value):
    env = {key: fake for key, fake in FAKE_SECRETS.items() if key != missing}
    if value == "empty":
        env[missing] = ""  # as copied from .env.example
    result = run_compose(MERGED, env, "config", "--quiet")
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr
    assert FIX in result.stderr


def test_each_secret_reaches_exactly_the_services_that_use_it():
    services = render(MERGED)["services"]
    for secret, fake in FAKE_SECRETS.items():
        places = {
            (path[0], path[2])
            for path, value in walk(services)
            if isinstance(value, str) and fake in value
        }
        assert places == EXPECTED_PLACES[secret], secret
    for service in AIRFLOW_SERVICES:
        for key in DATABASE_URLS:
            url = urlsplit(services[service]["environment"][key])
            assert (url.username, url.password) == ("airflow", FAKE_SECRETS["POSTGRES_PASSWORD"])
            assert url.hostname == "postgres"


def test_no_committed_file_holds_a_secret_value():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert ".env" not in tracked
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO_ROOT, check=False)
    assert ignored.returncode == 0, ".env must be git-ignored"
    example = read_env_file(REPO_ROOT / ".env.example")
    assert example == dict.fromkeys(SECRET_KEYS, ""), ".env.example lists the keys, empty"
    # Any value in the rendered files came from the environment (the fakes), none is literal.
    for name in MERGED:
        text = (REPO_ROOT / name).read_text()
        for key in (
            *ON_EVERY_AIRFLOW_SERVICE.values(),
            "POSTGRES_PASSWORD",
            "AIRFLOW_ADMIN_PASSWORD",
        ):
            for line in re.findall(rf"^\s*{key}:\s*(.+)$", text, flags=re.MULTILINE):
                assert re.fullmatch(r'"?\$\{[A-Z_]+:\?[^}]+\}"?', line.strip()), f"{name}: {line}"


def test_the_tool_writes_every_secret_once_and_keeps_existing_values(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text((REPO_ROOT / ".env.example").read_text())
    assert sorted(ensure_secrets(env_file)) == sorted(SECRET_KEYS)
    first = read_env_file(env_file)
    assert all(first[key] for key in SECRET_KEYS)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert ensure_secrets(env_file) == []
    assert read_env_file(env_file) == first
    # Airflow's own Fernet accepts the key.
    from cryptography.fernet import Fernet

    Fernet(first["AIRFLOW_FERNET_KEY"].encode())
    # Airflow signs with HS512: a key of at least 64 bytes (RFC 7518 3.2).
    assert len(first["AIRFLOW_JWT_SECRET"].encode()) >= 64
    # Compose reads the file as the tool wrote it.
    result = run_compose(MERGED, {}, "config", "--format", "json", env_file=str(env_file))
    assert result.returncode == 0, result.stderr
    assert first["AIRFLOW_JWT_SECRET"] in result.stdout


def test_the_tool_needs_only_the_standard_library(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("AIRFLOW_FERNET_KEY=keep-me\n")
    # -S: no site-packages, as with a bare python3 on a fresh instance.
    result = subprocess.run(
        [sys.executable, "-S", "-m", "orchestration.compose_secrets", "--env-file", str(env_file)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    values = read_env_file(env_file)
    assert values["AIRFLOW_FERNET_KEY"] == "keep-me"
    assert set(values) == set(SECRET_KEYS)
