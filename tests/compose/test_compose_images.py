"""The images: every version in them comes from the locks or from pyspark's own jars.

- the Dockerfile names no Python package version: it installs the locks, --no-deps, as nox does;
- its Python is noxfile.py's; the Docker-only lock agrees with requirements.txt on every pin;
- the S3A connector (local target) is matched to the Hadoop of pyspark's jars at build time:
  envs/local/s3a_jars.py runs here against a Maven-layout HTTP server, reading the Hadoop
  version from the pinned pyspark's real jars folder.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.compose.conftest import BASE, MERGED, REPO_ROOT, render

DOCKERFILE = REPO_ROOT / "Dockerfile"
LOCKS = ("requirements.txt", "requirements-docker.txt")
S3A_SCRIPT = REPO_ROOT / "envs" / "local" / "s3a_jars.py"
# What the compose settings name, and the distribution (in the Docker lock) that provides it.
PROVIDED_BY = {
    "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager": (
        "apache-airflow-providers-fab"
    ),
    "CeleryExecutor": "apache-airflow-providers-celery",
    "postgresql+psycopg2://": "psycopg2-binary",
    "redis://": "redis",
}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def lock_pins(name: str) -> dict[str, set[str]]:
    pins: dict[str, set[str]] = {}
    for line in (REPO_ROOT / name).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if match:
            pins.setdefault(match[1].lower(), set()).add(match[2])
    return pins


def noxfile_python() -> str:
    match = re.search(r'^PYTHON = "(\d+\.\d+)"$', (REPO_ROOT / "noxfile.py").read_text(), re.M)
    assert match, 'noxfile.py no longer sets PYTHON = "X.Y"'
    return match[1]


def test_the_base_image_is_a_setting_defaulting_to_the_python_of_the_locks():
    instructions = dockerfile_instructions()
    defaults = dict(a.split("=", 1) for kind, a in instructions if kind == "ARG" and "=" in a)
    assert defaults["PYTHON_IMAGE"] == f"python:{noxfile_python()}-slim-bookworm"
    froms = [args for instruction, args in instructions if instruction == "FROM"]
    assert froms[0] == "${PYTHON_IMAGE} AS airflow"
    # Later stages build on the first, never on another Python.
    assert all(args.split()[0] == "airflow" for args in froms[1:]), froms
    # Compose passes the same setting, with the same default, to every build.
    for name, service in render(MERGED)["services"].items():
        if "build" in service:
            assert service["build"]["args"]["PYTHON_IMAGE"] == defaults["PYTHON_IMAGE"], name
    moved = render(MERGED, {"PYTHON_IMAGE": "mirror.example/python:3.11"})["services"]
    assert moved["airflow-worker"]["build"]["args"]["PYTHON_IMAGE"] == "mirror.example/python:3.11"


def test_the_s3a_connector_switch_is_explicit():
    """S3A_CONNECTOR=maven (default) downloads the connector; none builds without it and says
    so; anything else stops the build."""
    (run,) = [arg for kind, arg in dockerfile_instructions() if kind == "RUN" and "s3a_jars" in arg]
    assert 'case "${S3A_CONNECTOR}" in' in run
    assert "maven) python /tmp/s3a_jars.py" in run
    assert "none) echo" in run
    assert "*) echo" in run
    assert "exit 2" in run
    services = render(MERGED)["services"]
    assert services["airflow-worker"]["build"]["args"]["S3A_CONNECTOR"] == "maven"
    off = render(MERGED, {"S3A_CONNECTOR": "none"})["services"]
    assert {s["build"]["args"]["S3A_CONNECTOR"] for s in off.values() if "build" in s} == {"none"}


def test_the_dockerfile_installs_exactly_the_locks_and_names_no_version():
    runs = [args for instruction, args in dockerfile_instructions() if instruction == "RUN"]
    installs = [args for args in runs if "pip install" in args]
    # The image installs the locks; the rehearsal's emulator stage adds moto within the dev lock.
    assert len(installs) == 2, installs
    assert installs[1].split()[-3:] == ["-c", "/opt/pipeline/requirements-dev.txt",
                                        '"moto[emr,s3,server]"']  # fmt: skip
    words = installs[0].split()
    assert "--no-deps" in words
    requirements = [Path(words[i + 1]).name for i, word in enumerate(words) if word == "-r"]
    assert requirements == list(LOCKS)
    for args in runs:
        assert not re.search(r"[A-Za-z0-9_.-]==\d", args), f"a pinned version in RUN {args}"
    copies = [args for instruction, args in dockerfile_instructions() if instruction == "COPY"]
    assert f"{' '.join(LOCKS)} /opt/pipeline/" in copies


def test_the_image_precompiles_pysparks_zips_after_installing_the_locks():
    # The same step as noxfile.py's for the host virtualenv (host_stack/bytecode.py).
    steps = [f"{instruction} {args}" for instruction, args in dockerfile_instructions()]
    install = next(i for i, step in enumerate(steps) if "pip install" in step)
    assert "COPY host_stack/bytecode.py /tmp/bytecode.py" in steps[install:]
    assert "RUN python /tmp/bytecode.py && rm /tmp/bytecode.py" in steps[install:]
    assert "!host_stack/bytecode.py" in (REPO_ROOT / ".dockerignore").read_text().splitlines()
    # It runs as a plain file there, with no host_stack package around it.
    alone = subprocess.run(
        [sys.executable, str(REPO_ROOT / "host_stack" / "bytecode.py")],
        capture_output=True, text=True, timeout=120, check=False, cwd="/",
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr
    assert "pyspark.zip: already precompiled" in alone.stdout


def test_the_docker_lock_agrees_with_requirements_txt():
    runtime, docker = lock_pins("requirements.txt"), lock_pins("requirements-docker.txt")
    assert "-c requirements.txt" in (REPO_ROOT / "requirements-docker.in").read_text()
    disagree = {name: (runtime[name], docker[name]) for name in runtime.keys() & docker.keys()
                if runtime[name] != docker[name]}  # fmt: skip
    assert not disagree, f"requirements-docker.txt differs from requirements.txt: {disagree}"
    environment = render(BASE)["services"]["airflow-scheduler"]["environment"]
    settings = " ".join(environment.values())
    for needle, distribution in PROVIDED_BY.items():
        assert needle in settings, needle
        assert distribution in docker, f"{needle} needs {distribution} in requirements-docker.txt"


def test_built_images_come_from_this_dockerfile_and_others_are_pinned():
    targets = {args.split()[-1] for instruction, args in dockerfile_instructions()
               if instruction == "FROM"}  # fmt: skip
    for name, service in render(MERGED)["services"].items():
        if "build" in service:
            assert service["build"]["context"] == str(REPO_ROOT), name
            assert service["build"].get("dockerfile", "Dockerfile") == "Dockerfile", name
            assert service["build"]["target"] in targets, name
            assert service["image"].startswith("builditall-"), name
        else:
            image, _, tag = service["image"].rpartition(":")
            assert image, f"{name}: {service['image']} has no tag"
            assert tag not in ("", "latest"), f"{name}: {service['image']} is not pinned"


def test_the_build_context_holds_what_the_dockerfile_copies():
    patterns = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:] for line in patterns if line.startswith("!")}
    assert "*" in patterns, ".dockerignore starts from nothing (keeps .nox/ and .env out)"
    for instruction, args in dockerfile_instructions():
        if instruction == "COPY":
            for source in args.split()[:-1]:
                assert source in allowed, f"COPY {source} is excluded by .dockerignore"
                assert (REPO_ROOT / source).exists(), source


# --- the S3A connector of the local image ----------------------------------------------------


@functools.cache
def pyspark_hadoop_version() -> tuple[Path, str]:
    """The pinned pyspark's jars folder and the Hadoop client version in it."""
    import pyspark

    assert f"pyspark=={version('pyspark')}" in (REPO_ROOT / "requirements.txt").read_text()
    jars = Path(pyspark.__file__).parent / "jars"
    (jar,) = jars.glob("hadoop-client-api-*.jar")
    return jar, jar.name.removeprefix("hadoop-client-api-").removesuffix(".jar")


class _Maven:
    """A Maven-layout HTTP server over a folder (the layout of repo1.maven.org/maven2)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, group: str, artifact: str, ver: str, data: bytes, ext: str = "jar") -> None:
        folder = self.root / group.replace(".", "/") / artifact / ver
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{artifact}-{ver}.{ext}").write_bytes(data)
        sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        (folder / f"{artifact}-{ver}.{ext}.sha1").write_text(sha1)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def maven(tmp_path) -> Iterator[_Maven]:
    server = _Maven(tmp_path / "maven")
    yield server
    server.server.shutdown()


@pytest.fixture
def spark_jars(tmp_path) -> Path:
    """A jars folder holding the pinned pyspark's real hadoop-client-api jar (linked)."""
    jar, _ = pyspark_hadoop_version()
    folder = tmp_path / "jars"
    folder.mkdir()
    (folder / jar.name).symlink_to(jar)
    return folder


def hadoop_project_pom(**properties: str) -> bytes:
    body = "".join(f"    <{key}>{value}</{key}>\n" for key, value in properties.items())
    return f"<project>\n  <properties>\n{body}  </properties>\n</project>\n".encode()


def run_s3a(jars: Path, maven: _Maven) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-S", str(S3A_SCRIPT), "--jars", str(jars), "--maven", maven.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_s3a_jars_match_the_hadoop_of_the_pinned_pyspark(spark_jars, maven):
    _, hadoop = pyspark_hadoop_version()
    pom = hadoop_project_pom(**{
        "aws-java-sdk-v2.version": "2.99.1-test",
        "amazon-s3-analyticsaccelerator-s3.version": "1.9.1-test",
    })  # fmt: skip
    maven.publish("org.apache.hadoop", "hadoop-project", hadoop, pom, ext="pom")
    maven.publish("org.apache.hadoop", "hadoop-aws", hadoop, b"hadoop-aws jar")
    maven.publish("software.amazon.awssdk", "bundle", "2.99.1-test", b"sdk bundle jar")
    accelerator = "software.amazon.s3.analyticsaccelerator"
    maven.publish(accelerator, "analyticsaccelerator-s3", "1.9.1-test", b"accelerator jar")
    result = run_s3a(spark_jars, maven)
    assert result.returncode == 0, result.stderr
    added = {p.name: p.read_bytes() for p in spark_jars.iterdir() if not p.is_symlink()}
    assert added == {
        f"hadoop-aws-{hadoop}.jar": b"hadoop-aws jar",
        "bundle-2.99.1-test.jar": b"sdk bundle jar",
        "analyticsaccelerator-s3-1.9.1-test.jar": b"accelerator jar",
    }


def test_s3a_jars_refuse_a_download_that_does_not_match_its_sha1(spark_jars, maven):
    _, hadoop = pyspark_hadoop_version()
    pom = hadoop_project_pom(**{"aws-java-sdk-v2.version": "2.99.1-test"})
    maven.publish("org.apache.hadoop", "hadoop-project", hadoop, pom, ext="pom")
    maven.publish("org.apache.hadoop", "hadoop-aws", hadoop, b"hadoop-aws jar")
    maven.publish("software.amazon.awssdk", "bundle", "2.99.1-test", b"sdk bundle jar")
    bundle = maven.root / "software/amazon/awssdk/bundle/2.99.1-test/bundle-2.99.1-test.jar"
    bundle.write_bytes(b"truncated")
    result = run_s3a(spark_jars, maven)
    assert result.returncode == 1
    assert "bundle-2.99.1-test.jar: SHA-1" in result.stderr
    assert not (spark_jars / "bundle-2.99.1-test.jar").exists()


def test_s3a_jars_fail_when_hadoop_does_not_name_its_sdk(spark_jars, maven):
    _, hadoop = pyspark_hadoop_version()
    maven.publish("org.apache.hadoop", "hadoop-project", hadoop, hadoop_project_pom(), ext="pom")
    result = run_s3a(spark_jars, maven)
    assert result.returncode == 1
    assert f"<aws-java-sdk-v2.version> not found in {maven.url}" in result.stderr
    assert f"hadoop-project-{hadoop}.pom" in result.stderr
