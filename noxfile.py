"""Every command a developer or CI runs: `nox -l` lists them.

Set-up is part of each session: a fresh machine needs only `pip install "nox[uv]"`. Sessions install
the pinned lock (requirements.txt + requirements-dev.txt) into their own virtualenv under .nox/,
and LocalStack into its own Python >= 3.13 virtualenv (it cannot share Airflow's pins; FACTS.md).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHON = "3.11"
LOCK = ("requirements.txt", "requirements-dev.txt")
LOCALSTACK_LOCK = ROOT / "envs/local/localstack-requirements.txt"
LOCALSTACK_VENV = ROOT / ".nox/_localstack"

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


def _pins(*names: str) -> list[str]:
    """name==version for each name, read from the lock files (the one place versions live)."""
    pins: dict[str, str] = {}
    for lock in LOCK:
        for line in (ROOT / lock).read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.\-\[\],]+)==([^\s;]+)", line)
            if match:
                pins[match.group(1).split("[")[0].lower()] = line.split(";")[0].strip()
    missing = [name for name in names if name.lower() not in pins]
    if missing:
        raise nox.command.CommandFailed(f"{missing} not pinned in {LOCK}; add to requirements*.in")
    return [pins[name.lower()] for name in names]


def _install_lock(session: nox.Session) -> None:
    """Install exactly the lock. --no-deps: the lock is complete, and it deliberately leaves out
    pyspark-client, which the Spark provider asks for but full pyspark replaces (overrides.txt)."""
    stamp = Path(session.virtualenv.location) / ".lock-sha256"
    digest = hashlib.sha256(b"".join((ROOT / f).read_bytes() for f in LOCK)).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        session.log("lock unchanged since the last install; skipping")
        return
    session.install("--no-deps", *(arg for lock in LOCK for arg in ("-r", lock)))
    stamp.write_text(digest)


def _uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # installed by nox[uv]
    except ImportError:
        return None
    return find_uv_bin()


def _python_313() -> str:
    """A Python >= 3.13 for LocalStack: $LOCALSTACK_BASE_PYTHON, python3.13 on PATH, or pyenv's."""
    candidates = [os.environ.get("LOCALSTACK_BASE_PYTHON"), shutil.which("python3.13")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in pyenv_root.glob("versions/3.1[3-9]*/bin/python3"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 13))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "True":
            return candidate
    raise nox.command.CommandFailed(
        "LocalStack needs Python >= 3.13 and none was found (tried $LOCALSTACK_BASE_PYTHON, "
        "python3.13 on PATH, pyenv versions). Install one (`pyenv install 3.13` or your OS "
        "package) or set LOCALSTACK_BASE_PYTHON=/path/to/python3.13."
    )


def _localstack_python(session: nox.Session) -> str:
    """LocalStack's own virtualenv, built once from its lock (pinned to its release date)."""
    python = LOCALSTACK_VENV / "bin/python"
    stamp = LOCALSTACK_VENV / ".lock-sha256"
    digest = hashlib.sha256(LOCALSTACK_LOCK.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return str(python)
    base = _python_313()
    session.log(f"building LocalStack's virtualenv in {LOCALSTACK_VENV} with {base}")
    shutil.rmtree(LOCALSTACK_VENV, ignore_errors=True)
    uv = _uv()
    if uv:
        session.run_install(
            uv, "venv", "--quiet", "--python", base, str(LOCALSTACK_VENV), external=True
        )
        session.run_install(
            uv, "pip", "sync", "--quiet", "--python", str(python), str(LOCALSTACK_LOCK),
            external=True,
        )  # fmt: skip
    else:
        session.run_install(base, "-m", "venv", str(LOCALSTACK_VENV), external=True)
        session.run_install(
            str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(LOCALSTACK_LOCK),
            external=True,
        )  # fmt: skip
    stamp.write_text(digest)
    return str(python)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, then every pre-commit hook on every file."""
    session.install(*_pins("ruff", "pre-commit"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("pre-commit", "run", "--all-files", "--show-diff-on-failure")


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit and component tests: real Spark, real LocalStack, real Airflow; moto only for EMR."""
    _install_lock(session)
    env = {"LOCALSTACK_PYTHON": _localstack_python(session), "SPARK_LOCAL_IP": "127.0.0.1"}
    args = session.posargs or ["tests", "--ignore=tests/e2e"]
    session.run("pytest", *args, env=env)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: figures to bench-results/ (JSON + markdown), never pass/fail on time."""
    _install_lock(session)
    env = {"LOCALSTACK_PYTHON": _localstack_python(session), "SPARK_LOCAL_IP": "127.0.0.1"}
    session.run("python", "-m", "tests.benchmarks.run", *session.posargs, env=env)


@nox.session(python=PYTHON)
def build_jobs(session: nox.Session) -> None:
    """Build the Spark job artifact in dist/spark_jobs/; `-- --upload` also puts it in
    s3://<DATA_BUCKET>/<EMR_JOB_ARTIFACT_PREFIX>/ of PIPELINE_ENV (before the aws DAGs run)."""
    _install_lock(session)
    session.run(
        "python", "-m", "orchestration.artifact", "--out", "dist/spark_jobs", *session.posargs,
        env={"PYTHONPATH": str(ROOT)},
    )  # fmt: skip


@nox.session(python=PYTHON, venv_backend="none")
def lock(session: nox.Session) -> None:
    """Regenerate the pinned locks from requirements*.in (needs uv)."""
    uv = _uv() or "uv"
    common = ["pip", "compile", "--universal", "--python-version", PYTHON]
    common += ["--override", "overrides.txt"]
    session.run(uv, *common, "requirements.in", "-o", "requirements.txt", external=True)
    session.run(uv, *common, "requirements-dev.in", "-o", "requirements-dev.txt", external=True)
    session.run(
        uv, "pip", "compile", "--python-version", "3.13", "--exclude-newer", "2026-03-24",
        "envs/local/localstack-requirements.in", "-o", str(LOCALSTACK_LOCK.relative_to(ROOT)),
        external=True,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit("run me with nox: `nox -l` lists the sessions")
