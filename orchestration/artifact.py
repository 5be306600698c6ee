"""Build (and upload) the Spark job artifact: everything spark-submit needs to run our jobs.

The artifact is a directory, uploaded as-is below s3://<DATA_BUCKET>/<EMR_JOB_ARTIFACT_PREFIX>/ for
EMR, and built into a temporary directory by the local DAG before each SparkSubmitOperator run:

    spark_jobs.zip                     the spark_jobs package incl. schemas/*.json (--py-files)
    data_generator.py, ...             one entry file per job (spark-submit's application)
    requirements-emr.txt               the jobs' runtime dependencies with their hashes:
                                       envs/aws/bootstrap/requirements-emr.txt, the subset of
                                       requirements.txt that `nox -s lock` hashes
    bootstrap/install_job_deps.sh      EMR bootstrap action: pip install --require-hashes of it

Build: `python -m orchestration.artifact --out dist/spark_jobs` (nox -s build_jobs);
add `--upload` to put it in the data bucket of the active environment (PIPELINE_ENV).
"""

from __future__ import annotations

import argparse
import re
import shutil
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_jobs.common.package import zip_package

REPO_ROOT = Path(__file__).resolve().parents[1]
JOBS_PACKAGE_DIR = REPO_ROOT / "spark_jobs"
LOCK_FILE = REPO_ROOT / "requirements.txt"
# The jobs' runtime subset of LOCK_FILE with --hash lines (`nox -s lock` writes it from
# `runtime_requirements`); the bootstrap installs it with pip's --require-hashes.
EMR_LOCK_FILE = REPO_ROOT / "envs" / "aws" / "bootstrap" / "requirements-emr.txt"
BOOTSTRAP_SOURCE = REPO_ROOT / "envs" / "aws" / "bootstrap" / "install_job_deps.sh"

# Third-party distributions the jobs import at runtime (EMR and the local Spark provide pyspark).
# tests/dags/test_job_artifact.py fails when a spark_jobs import is not covered by these.
JOB_RUNTIME_DEPS: tuple[str, ...] = ("faker", "jsonschema", "pandas", "pyarrow")

# Names inside the artifact; the EMR steps and envs/aws/emr_cluster.json refer to these.
PY_FILES_NAME = "spark_jobs.zip"
REQUIREMENTS_NAME = "requirements-emr.txt"
BOOTSTRAP_NAME = "bootstrap/install_job_deps.sh"


@dataclass(frozen=True)
class JobArtifact:
    """Paths of one built artifact; `relative_files()` is what gets uploaded."""

    root: Path
    py_files: Path
    entry_points: dict[str, Path]
    requirements: Path
    bootstrap: Path

    def relative_files(self) -> list[str]:
        """Every file of the artifact as a POSIX path relative to its root, sorted."""
        files = (p for p in self.root.rglob("*") if p.is_file())
        return sorted(p.relative_to(self.root).as_posix() for p in files)


def job_entry_points(package_dir: Path = JOBS_PACKAGE_DIR) -> list[Path]:
    """The job scripts: every top-level module of spark_jobs/ except __init__.py."""
    return sorted(p for p in package_dir.glob("*.py") if p.name != "__init__.py")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements(lock_text: str, roots: Iterable[str] = JOB_RUNTIME_DEPS) -> list[str]:
    """Lines of the lock (uv pip compile output) for `roots` and everything they pull in.

    The closure follows the lock's `# via` annotations, so versions and environment markers are
    exactly those of requirements.txt (the one place versions live).
    """
    lines_by_name: dict[str, list[str]] = defaultdict(list)
    children: dict[str, set[str]] = defaultdict(set)
    current: str | None = None
    for raw in lock_text.splitlines():
        stripped = raw.strip()
        if raw and not raw[0].isspace() and not raw.startswith("#") and "==" in raw:
            current = _canonical(re.split(r"[=<>!~\[; ]", stripped, maxsplit=1)[0])
            lines_by_name[current].append(stripped)
        elif current and stripped.startswith("#"):
            parent = stripped.lstrip("#").strip()
            parent = parent.removeprefix("via").strip()
            if parent and not parent.startswith("-r"):
                children[_canonical(parent)].add(current)
    wanted = [_canonical(r) for r in roots]
    missing = [r for r in wanted if r not in lines_by_name]
    if missing:
        raise ValueError(
            f"job runtime dependencies {missing} are not pinned in {LOCK_FILE.name}; add them to "
            "requirements.in and run `nox -s lock`, or drop them from "
            "orchestration/artifact.py JOB_RUNTIME_DEPS"
        )
    closure: set[str] = set()
    queue = deque(wanted)
    while queue:
        name = queue.popleft()
        if name not in closure:
            closure.add(name)
            queue.extend(children.get(name, ()))
    return [line for name in sorted(closure) for line in lines_by_name[name]]


def hashed_pins(hashed_lock_text: str) -> list[str]:
    """The requirement lines of a `--generate-hashes` lock, without their hashes and the line
    continuations: comparable with `runtime_requirements`."""
    return [
        line.rstrip("\\").strip()
        for line in hashed_lock_text.splitlines()
        if line and not line[0].isspace() and not line.startswith("#")
    ]


def emr_requirements(lock_file: Path = LOCK_FILE, emr_lock_file: Path = EMR_LOCK_FILE) -> str:
    """The hashed requirements the EMR bootstrap installs; ValueError when they are not the
    lock's subset any more (requirements.txt changed, the hashed one was not regenerated)."""
    wanted = runtime_requirements(lock_file.read_text())
    try:
        text = emr_lock_file.read_text()
    except FileNotFoundError:
        raise ValueError(f"{emr_lock_file} is missing; run `nox -s lock` to write it") from None
    if hashed_pins(text) != wanted:
        raise ValueError(
            f"{emr_lock_file.name} pins {hashed_pins(text)}, but {lock_file.name} gives the jobs "
            f"{wanted}; run `nox -s lock` to regenerate it with its hashes"
        )
    if text.count("--hash=sha256:") < len(wanted):
        raise ValueError(f"{emr_lock_file} lacks hashes; run `nox -s lock` to regenerate it")
    return text


def build_job_artifact(
    out_dir: str | Path,
    *,
    package_dir: Path = JOBS_PACKAGE_DIR,
    lock_file: Path = LOCK_FILE,
    emr_lock_file: Path = EMR_LOCK_FILE,
    bootstrap_source: Path = BOOTSTRAP_SOURCE,
) -> JobArtifact:
    """Write the artifact into out_dir (created; previous artifact files replaced)."""
    if not (package_dir / "__init__.py").is_file():
        raise FileNotFoundError(
            f"{package_dir} is not a Python package (no __init__.py); expected the spark_jobs "
            "package at the repository root"
        )
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    py_files = root / PY_FILES_NAME
    zip_package(package_dir, py_files)
    entry_points: dict[str, Path] = {}
    for script in job_entry_points(package_dir):
        entry_points[script.name] = root / script.name
        shutil.copyfile(script, entry_points[script.name])
    requirements = root / REQUIREMENTS_NAME
    requirements.write_text(emr_requirements(lock_file, emr_lock_file))
    bootstrap = root / BOOTSTRAP_NAME
    bootstrap.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bootstrap_source, bootstrap)
    bootstrap.chmod(0o755)
    return JobArtifact(root, py_files, entry_points, requirements, bootstrap)


def upload_job_artifact(
    artifact: JobArtifact, bucket: str, prefix: str, s3_client: Any
) -> list[str]:
    """Upload every artifact file below s3://bucket/prefix/; return the URIs written."""
    prefix = prefix.strip("/")
    uris = []
    for relative in artifact.relative_files():
        key = f"{prefix}/{relative}" if prefix else relative
        s3_client.upload_file(str(artifact.root / relative), bucket, key)
        uris.append(f"s3://{bucket}/{key}")
    return uris


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT / "dist" / "spark_jobs"), help="output dir")
    parser.add_argument(
        "--upload",
        action="store_true",
        help="also upload to s3://<DATA_BUCKET>/<EMR_JOB_ARTIFACT_PREFIX>/ of PIPELINE_ENV",
    )
    parser.add_argument(
        "--write-emr-lock-input",
        metavar="PATH",
        help="write the jobs' pins from requirements.txt to PATH (nox -s lock hashes them)",
    )
    args = parser.parse_args(argv)
    if args.write_emr_lock_input:
        header = (
            f"# The Spark jobs' runtime pins from {LOCK_FILE.name} (nox -s lock); do not edit.\n"
        )
        pins = runtime_requirements(LOCK_FILE.read_text())
        Path(args.write_emr_lock_input).write_text(header + "\n".join(pins) + "\n")
        return 0
    artifact = build_job_artifact(args.out)
    for relative in artifact.relative_files():
        print(artifact.root / relative)
    if args.upload:
        import boto3  # only the upload needs boto3 and the settings
        from botocore.config import Config

        from config.config import get_settings

        settings = get_settings()
        client = boto3.client(
            "s3",
            **settings.boto3_client_kwargs(),
            # An endpoint override is LocalStack, which serves buckets by path.
            config=Config(s3={"addressing_style": "path"}) if settings.aws_endpoint_url else None,
        )
        for uri in upload_job_artifact(
            artifact, settings.data_bucket, settings.emr_job_artifact_prefix, client
        ):
            print(uri)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
