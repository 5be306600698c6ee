"""Checks a machine before anything is built: `nox -s doctor`, and the start of `nox -s pipeline`
and `nox -s up`, which stop at once when something required is missing.

    python3 -m host_stack.doctor      every check, one line each; exit 1 when one is missing

Standard library only: it runs in nox's own interpreter before any virtualenv exists. Each
finding says what is wrong and the command that fixes it on Debian/Ubuntu and on macOS.
`find_python` is also how noxfile.py picks the interpreters its virtualenvs are built from.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from host_stack.stack_settings import (
    PORT_OWNERS,
    REPO_ROOT,
    StackError,
    StackSettings,
    port_in_use,
)


def lock_python(lock: Path) -> tuple[int, int]:
    """The Python a lock was compiled for: `--python-version X.Y` in uv's header (nox -s lock)."""
    match = re.search(r"--python-version (\d+)\.(\d+)", lock.read_text()[:2000])
    if match is None:
        raise ValueError(f"{lock} names no --python-version in its header; run `nox -s lock`")
    return int(match.group(1)), int(match.group(2))


# The pipeline virtualenv: exactly the Python its lock is compiled for.
PIPELINE_PYTHON = lock_python(REPO_ROOT / "requirements.txt")
# LocalStack's own virtualenv: its lock's Python or newer (localstack-core needs 3.13).
LOCALSTACK_PYTHON = lock_python(REPO_ROOT / "envs" / "local" / "localstack-requirements.txt")
# Spark 4 runs on Java 17 or 21; EMR's Spark 4 release runs 17.
JAVA_MAJOR = 17
# The two virtualenvs take about 2.2 GiB, and uv keeps the downloads in its cache besides.
DISK_GIB_TO_BUILD = 5.0
DISK_GIB_TO_RUN = 1.0
# The Spark worker's executors get 2 GiB (SPARK_WORKER_MEMORY); the Spark Connect server,
# Airflow's four processes and LocalStack come on top.
MEMORY_GIB = 4.0

OK, INFO, WARNING, MISSING = "ok", "info", "warning", "missing"


@dataclass(frozen=True)
class Finding:
    """One line of the doctor's report: `missing` stops `nox -s pipeline` and `nox -s up`."""

    level: str
    check: str
    message: str

    @property
    def blocking(self) -> bool:
        return self.level == MISSING

    def line(self) -> str:
        return f"{self.level:8} {self.check:13} {self.message}"


def _fix(debian: str, macos: str) -> str:
    return f"Fix: Debian/Ubuntu: {debian}; macOS: {macos}."


# --- Python interpreters --------------------------------------------------------------------


class PythonNotFoundError(LookupError):
    """No interpreter of the wanted version; the message lists where it looked and the fix."""


def python_fix(version: tuple[int, int]) -> str:
    dotted = f"{version[0]}.{version[1]}"
    return _fix(
        f"`sudo apt-get install python{dotted}` if your release ships it, else `pyenv install "
        f"{dotted}`",
        f"`brew install python@{dotted}`",
    )


def find_python(
    version: tuple[int, int],
    exact: bool,
    override_var: str,
    environ: Mapping[str, str] | None = None,
) -> str:
    """An interpreter of `version` (or newer unless exact): $override_var, then pythonX.Y on
    PATH (nox's own interpreter when it is that version), then pyenv's versions.

    Each candidate is run once: a pyenv shim for a version pyenv does not select errors, so
    being on PATH is not enough."""
    environ = os.environ if environ is None else environ
    name = f"python{version[0]}.{version[1]}"
    candidates = [environ.get(override_var), shutil.which(name, path=environ.get("PATH"))]
    if version == sys.version_info[:2]:
        candidates.insert(1, sys.executable)
    pyenv_root = Path(environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates += sorted(str(p) for p in pyenv_root.glob("versions/3.*/bin/python3"))
    check = "==" if exact else ">="
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", f"import sys; print(sys.version_info[:2] {check} {version})"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.stdout.strip() == "True":
            return candidate
    wanted = f"Python {version[0]}.{version[1]}{'' if exact else '+'}"
    fix = python_fix(version)
    raise PythonNotFoundError(
        f"{wanted} not found (tried ${override_var}, {name} on PATH, pyenv's versions). "
        f"{fix} Or set {override_var}=/path/to/{name}."
    )


def check_pythons(environ: Mapping[str, str]) -> list[Finding]:
    wanted = [
        (
            PIPELINE_PYTHON,
            True,
            "PIPELINE_BASE_PYTHON",
            "base of the pipeline virtualenv (the lock's Python)",
        ),
        (LOCALSTACK_PYTHON, False, "LOCALSTACK_BASE_PYTHON", "base of LocalStack's virtualenv"),
    ]
    findings = []
    for version, exact, override_var, why in wanted:
        label = f"python{version[0]}.{version[1]}"
        try:
            found = find_python(version, exact, override_var, environ)
        except PythonNotFoundError as exc:
            findings.append(Finding(MISSING, label, f"{exc}"))
        else:
            findings.append(Finding(OK, label, f"{found}, {why}"))
    return findings


# --- Java -------------------------------------------------------------------------------------

JAVA_FIX = _fix(
    "`sudo apt-get install openjdk-17-jre-headless`",
    "`brew install openjdk@17`, then put it on PATH or set JAVA_HOME",
)


def find_java(environ: Mapping[str, str]) -> str | None:
    """The java Spark will start: $JAVA_HOME/bin/java when JAVA_HOME is set, else java on PATH."""
    java_home = environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        return str(java) if java.is_file() else None
    return shutil.which("java", path=environ.get("PATH"))


def java_major(version_output: str) -> int | None:
    """17 from `openjdk version "17.0.15" ...`, 8 from `java version "1.8.0_392"`."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java(environ: Mapping[str, str]) -> Finding:
    java = find_java(environ)
    if java is None:
        where = (
            f"JAVA_HOME={environ['JAVA_HOME']} has no bin/java"
            if environ.get("JAVA_HOME")
            else "no java on PATH and JAVA_HOME unset"
        )
        return Finding(MISSING, "java", f"Java {JAVA_MAJOR} not found ({where}). {JAVA_FIX}")
    try:
        probe = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Finding(MISSING, "java", f"{java} does not run ({exc}). {JAVA_FIX}")
    output = probe.stderr + probe.stdout
    major = java_major(output)
    if probe.returncode != 0 or major is None:
        first = (output.strip().splitlines() or ["no output"])[0]
        return Finding(MISSING, "java", f"{java} -version failed: {first}. {JAVA_FIX}")
    if major < JAVA_MAJOR:
        return Finding(
            MISSING, "java", f"{java} is Java {major}; Spark 4 needs {JAVA_MAJOR}. {JAVA_FIX}"
        )
    return Finding(OK, "java", f"{java} (Java {major})")


# --- ports ------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_stack_processes(state_dir: Path) -> set[str]:
    """Names of the stack's processes whose pid record (pids/<name>.json) is alive.

    The stack itself also compares each process's start time; without psutil this only asks
    whether the pid lives. A reused pid can only hide a clash here, which `up` then reports."""
    import json

    names = set()
    for record in sorted((state_dir / "pids").glob("*.json")):
        try:
            pid = int(json.loads(record.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(pid):
            names.add(record.stem)
    return names


def ports_to_check(
    settings: StackSettings, environ: Mapping[str, str]
) -> list[tuple[int, str, str]]:
    """The ports this PIPELINE_ENV's stack listens on: the EMR emulator only for the aws
    rehearsal, the Spark Connect server only locally (unless SPARK_CONNECT_URL is emptied)."""
    aws = environ.get("PIPELINE_ENV", "local") == "aws"
    connect = not aws and environ.get("SPARK_CONNECT_URL", "sc://").strip() != ""
    skip = set()
    if not aws:
        skip.add("EMR_EMULATOR_PORT")
    if not connect:
        skip.add("SPARK_CONNECT_PORT")
    return [port for port in settings.ports() if port[2] not in skip]


def check_ports(settings: StackSettings, environ: Mapping[str, str]) -> list[Finding]:
    """A finding per port another program holds; the running stack's own ports are not clashes
    (`up` reuses what runs)."""
    running = running_stack_processes(settings.state_dir)
    findings = []
    for port, what, env_name in ports_to_check(settings, environ):
        if PORT_OWNERS[env_name] in running or not port_in_use(port):
            continue
        findings.append(
            Finding(
                MISSING,
                "ports",
                f"port {port} ({what}) is in use by another program; stop it or move the "
                f"{what} with {env_name}=<free port>. See who holds it: Debian/Ubuntu "
                f"`sudo ss -ltnp 'sport = :{port}'`; macOS `lsof -nP -iTCP:{port} -sTCP:LISTEN`.",
            )
        )
    if not findings:
        listed = ", ".join(str(port) for port, _, _ in ports_to_check(settings, environ))
        mine = " (or the running stack's own)" if running else ""
        findings.append(Finding(OK, "ports", f"{listed} free{mine}"))
    return findings


# --- disk, memory ------------------------------------------------------------------------------


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_disk(root: Path) -> Finding:
    built = (root / ".nox" / "_pipeline" / ".lock-sha256").exists()
    need = DISK_GIB_TO_RUN if built else DISK_GIB_TO_BUILD
    free = shutil.disk_usage(root).free
    why = "for the stack's state and logs" if built else "for the virtualenvs and uv's cache"
    if free < need * 2**30:
        return Finding(
            MISSING,
            "disk",
            f"{_gib(free)} free under {root}; {need:.0f} GiB needed {why}. Free some space "
            "(`uv cache prune` removes unused downloads).",
        )
    return Finding(OK, "disk", f"{_gib(free)} free under {root}")


def available_memory() -> int | None:
    """Bytes of memory available now (Linux), or installed (macOS); None when unknown."""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        match = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read_text(), re.MULTILINE)
        return int(match.group(1)) * 1024 if match else None
    if sys.platform == "darwin":
        probe = subprocess.run(
            ["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, check=False
        )
        return int(probe.stdout) if probe.stdout.strip().isdigit() else None
    return None


def check_memory(settings: StackSettings) -> Finding:
    memory = available_memory()
    if memory is None:
        return Finding(INFO, "memory", "could not tell how much memory is available")
    if memory < MEMORY_GIB * 2**30:
        return Finding(
            WARNING,
            "memory",
            f"{_gib(memory)} available; the stack is sized for {MEMORY_GIB:.0f} GiB (Spark "
            f"worker {settings.spark_worker_memory}, Spark Connect server, Airflow, LocalStack). "
            "Close other programs, or give Spark less: SPARK_WORKER_MEMORY=1g.",
        )
    return Finding(OK, "memory", f"{_gib(memory)} available")


# --- Docker -----------------------------------------------------------------------------------


def docker_engine_answers(environ: Mapping[str, str] | None = None) -> bool:
    """A Docker engine answers (`docker info`), not just a docker client on PATH. This is how
    `nox -s e2e_local` picks its mode when none is given."""
    environ = os.environ if environ is None else environ
    docker = shutil.which("docker", path=environ.get("PATH"))
    if docker is None:
        return False
    try:
        probe = subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def check_docker(environ: Mapping[str, str]) -> Finding:
    if docker_engine_answers(environ):
        return Finding(
            INFO,
            "docker",
            "a Docker engine answers: `nox -s e2e_local` runs in Docker mode "
            "(`-- --mode host` for host mode)",
        )
    return Finding(
        INFO,
        "docker",
        "no Docker engine answers (`docker info`): `nox -s e2e_local` runs in host mode, which "
        "needs no Docker. For Docker mode: Debian/Ubuntu `sudo apt-get install docker.io`; "
        "macOS: install and start Docker Desktop.",
    )


# --- all of it --------------------------------------------------------------------------------


def check_machine(
    environ: Mapping[str, str] | None = None, *, root: Path = REPO_ROOT, docker: bool = True
) -> list[Finding]:
    """Every check, in the order a first run meets them. `docker=False` leaves out the Docker
    probe (host mode does not need it, and `docker info` can take seconds)."""
    environ = os.environ if environ is None else environ
    findings = [check_java(environ), *check_pythons(environ)]
    try:
        settings = StackSettings.from_env(environ)
    except StackError as exc:
        findings.append(Finding(MISSING, "settings", str(exc)))
        settings = StackSettings()
    else:
        findings += check_ports(settings, environ)
    findings += [check_disk(root), check_memory(settings)]
    if docker:
        findings.append(check_docker(environ))
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m host_stack.doctor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--no-docker", action="store_true", help="skip the Docker engine probe")
    args = parser.parse_args(argv)
    findings = check_machine(docker=not args.no_docker)
    for finding in findings:
        print(finding.line())
    missing = [f for f in findings if f.blocking]
    if missing:
        print(f"\n{len(missing)} missing: fix the lines marked `missing`, then run this again.")
        return 1
    print("\nready: `nox -s pipeline` runs the pipeline; `nox -s tests` runs the tests.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
