"""Version parity: what runs here is what the EMR release in effect runs.

The release is envs/aws/settings.env's EMR_RELEASE_LABEL; what it runs is its row in
envs/aws/emr_releases.toml. Held to it: the lock's pyspark (tests, Docker images, the Spark
Connect server, the EMR emulator and the benchmarks all run the installed one), the installed
wheel's Scala and Hadoop, the Dockerfile's JDK, noxfile.py's PYTHON (the lock is resolved for
it), and the EMR bootstrap (its interpreter, spark-env's PYSPARK_PYTHON, requirements-emr.txt).
Each mismatch is one line saying what to change.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from config.config import load_settings
from config.emr_releases import EMR_RELEASES_FILE, EmrRelease, load_emr_releases, upstream_version
from orchestration.artifact import BOOTSTRAP_SOURCE, runtime_requirements

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE = EMR_RELEASES_FILE.relative_to(REPO_ROOT).as_posix()
SETTINGS = "envs/aws/settings.env"
CLUSTER = "envs/aws/emr_cluster.json"
BOOTSTRAP = BOOTSTRAP_SOURCE.relative_to(REPO_ROOT).as_posix()
_JDK_RE = re.compile(r"\bopenjdk-(\d+)-(?:jre|jdk)(?:-headless)?\b")
_PIN_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(?P<version>[^\s;]+)(?P<marker>.*)$"
)


@dataclass(frozen=True)
class Tree:
    """The files of the checkout that name a version, as text."""

    lock: str
    dockerfile: str
    noxfile: str
    bootstrap: str
    cluster: str

    @classmethod
    def read(cls, root: Path = REPO_ROOT) -> Tree:
        return cls(
            lock=(root / "requirements.txt").read_text(),
            dockerfile=(root / "Dockerfile").read_text(),
            noxfile=(root / "noxfile.py").read_text(),
            bootstrap=(root / BOOTSTRAP).read_text(),
            cluster=(root / CLUSTER).read_text(),
        )


def lock_pins(lock: str) -> dict[str, tuple[str, str]]:
    """name -> (version, environment marker) of each pinned line of a uv lock."""
    pins = {}
    for line in lock.splitlines():
        match = _PIN_RE.match(line.strip())
        if match and not line[:1].isspace():
            pins[match["name"].lower()] = (match["version"], match["marker"].strip(" ;"))
    return pins


def nox_python(noxfile: str) -> str:
    match = re.search(r'^PYTHON = "(\d+\.\d+)"', noxfile, re.MULTILINE)
    assert match, 'noxfile.py has no PYTHON = "3.X" line; the parity test reads it'
    return match[1]


def interpreter_version(path: str) -> str | None:
    match = re.search(r"python(\d+\.\d+)$", path)
    return match[1] if match else None


def parity_problems(release: EmrRelease, tree: Tree) -> list[str]:
    """Every place that disagrees with `release`, each with the change that fixes it."""
    where = f"EMR_RELEASE_LABEL={release.label} ({SETTINGS}; {TABLE})"
    spark = release.spark_version
    problems = []

    pins = lock_pins(tree.lock)
    pyspark = pins.get("pyspark", ("not pinned", ""))[0]
    if pyspark != spark:
        problems.append(
            f"requirements.txt pins pyspark {pyspark}, but {where} runs Spark {spark}: set "
            f"pyspark[connect]=={spark} in requirements.in (and the version in overrides.txt's "
            "note), then `nox -s lock`"
        )
    client_version, client_marker = pins.get("pyspark-client", (None, ""))
    if client_version not in (None, spark) and "never" not in client_marker:
        problems.append(
            f"requirements.txt installs pyspark-client {client_version} over pyspark {spark}: "
            'keep overrides.txt\'s `pyspark-client ; sys_platform == "never"`, then `nox -s lock`'
        )

    jdks = sorted(set(_JDK_RE.findall(tree.dockerfile)))
    if jdks != [release.java]:
        found = ", ".join(f"openjdk-{v}" for v in jdks) or "no openjdk package"
        problems.append(
            f"Dockerfile installs {found}, but {where} runs Java {release.java}: install "
            f"openjdk-{release.java}-jre-headless in its apt-get line (from a Debian release "
            "that ships it)"
        )

    python = nox_python(tree.noxfile)
    offered = ", ".join(release.python)
    if python not in release.python:
        problems.append(
            f"noxfile.py runs the jobs on Python {python} (PYTHON, PYTHON_VERSION; the lock is "
            f"resolved for it), but {where} offers {offered}: set PYTHON to one of those, "
            "the Dockerfile's python base image to match, then `nox -s lock`"
        )

    match = re.search(r'python_bin="\$\{JOB_PYTHON:-(?P<path>[^}]+)\}"', tree.bootstrap)
    bootstrap_python = interpreter_version(match["path"]) if match else None
    if bootstrap_python != python:
        problems.append(
            f"{BOOTSTRAP} installs the jobs' dependencies for Python {bootstrap_python}, but the "
            f"lock is resolved for {python}: set its default JOB_PYTHON to /usr/bin/python{python}"
        )

    exports = [
        c["Properties"]
        for top in json.loads(tree.cluster).get("Configurations", [])
        if top.get("Classification") == "spark-env"
        for c in top.get("Configurations", [])
        if c.get("Classification") == "export"
    ]
    pyspark_python = next((e.get("PYSPARK_PYTHON") for e in exports), None) or ""
    if interpreter_version(pyspark_python) != python:
        problems.append(
            f"{CLUSTER} spark-env exports PYSPARK_PYTHON={pyspark_python or '(unset)'}, but the "
            f"jobs' dependencies are installed for Python {python}: "
            f"set it to /usr/bin/python{python}"
        )

    shipped = {_PIN_RE.match(line)["name"].lower() for line in runtime_requirements(tree.lock)}
    if shipped & {"pyspark", "pyspark-client", "py4j"}:
        problems.append(
            f"requirements-emr.txt (orchestration/artifact.py JOB_RUNTIME_DEPS) would install "
            f"{sorted(shipped & {'pyspark', 'pyspark-client', 'py4j'})} over EMR's own Spark "
            f"{release.spark}: drop the job dependency that pulls it in"
        )
    return problems


def wheel_problems(release: EmrRelease, jars: Path) -> list[str]:
    """The installed pyspark wheel's Scala and Hadoop against the release's."""
    problems = []
    names = [p.name for p in jars.glob("*.jar")]
    scala = [m[1] for n in names if (m := re.fullmatch(r"scala-library-(.+)\.jar", n))]
    if scala != [release.scala]:
        problems.append(
            f"the installed pyspark bundles Scala {scala}, but {release.label} runs "
            f"{release.scala} ({TABLE}): a pyspark of the release's Spark brings it (`nox -s lock`)"
        )
    hadoop = [m[1] for n in names if (m := re.fullmatch(r"hadoop-client-api-(.+)\.jar", n))]
    if release.hadoop and hadoop != [upstream_version(release.hadoop)]:
        problems.append(
            f"the installed pyspark bundles Hadoop {hadoop}, but {release.label} runs "
            f"{release.hadoop} ({TABLE}); envs/local/s3a_jars.py follows the wheel's Hadoop"
        )
    return problems


def release_in_effect() -> EmrRelease:
    release = load_settings("aws", environ={}).emr_release
    assert release is not None, f"EMR_RELEASE_LABEL is not set in {SETTINGS}"
    return release


def test_everything_runs_the_release_in_effect() -> None:
    problems = parity_problems(release_in_effect(), Tree.read())
    assert not problems, "\n".join(problems)


def test_the_installed_wheel_is_the_release_spark() -> None:
    import pyspark

    release = release_in_effect()
    assert pyspark.__version__ == release.spark_version, (
        f"pyspark {pyspark.__version__} is installed, but {release.label} runs "
        f"{release.spark_version}: rebuild the virtualenv from the lock (nox rebuilds "
        ".nox/_pipeline when requirements.txt changes)"
    )
    problems = wheel_problems(release, Path(pyspark.__file__).parent / "jars")
    assert not problems, "\n".join(problems)


def test_changing_the_label_alone_fails_saying_what_to_change() -> None:
    """emr-7.12.0 (Spark 3.5.6, Scala 2.12) in place of the release, with nothing else changed."""
    older = load_emr_releases().unsupported["emr-7.12.0"]
    problems = parity_problems(older, Tree.read())

    assert len(problems) == 1, problems
    assert problems[0].startswith("requirements.txt pins pyspark ")
    assert "runs Spark 3.5.6: set pyspark[connect]==3.5.6 in requirements.in" in problems[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"java": "21"}, "install openjdk-21-jre-headless"),
        ({"python": ("3.12", "3.13")}, "offers 3.12, 3.13: set PYTHON to one of those"),
    ],
)
def test_each_mismatch_names_its_fix(change: dict, expected: str) -> None:
    release = dataclasses.replace(release_in_effect(), **change)
    problems = "\n".join(parity_problems(release, Tree.read()))
    assert expected in problems


def test_the_dockerfile_jdk_is_read_from_its_package_name_only() -> None:
    tree = dataclasses.replace(
        Tree.read(),
        dockerfile="ARG PYTHON_BASE=python:3.11-slim-bookworm\nFROM ${PYTHON_BASE} AS airflow\n"
        "RUN apt-get install -y --no-install-recommends openjdk-17-jre-headless curl\n",
    )
    assert not parity_problems(release_in_effect(), tree)
