"""The Spark job artifact: what spark-submit ships (zip + entry files) and what EMR installs."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orchestration.artifact import (
    JOB_RUNTIME_DEPS,
    JOBS_PACKAGE_DIR,
    LOCK_FILE,
    build_job_artifact,
    runtime_requirements,
    upload_job_artifact,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return build_job_artifact(tmp_path_factory.mktemp("artifact"))


def test_layout(artifact):
    assert artifact.relative_files() == sorted(
        [
            "bootstrap/install_job_deps.sh",
            "data_generator.py",
            "data_processor.py",
            "requirements-emr.txt",
            "spark_jobs.zip",
        ]
    )
    assert artifact.bootstrap.stat().st_mode & 0o111


def test_zip_holds_the_package_with_its_schemas_and_no_caches(artifact):
    names = set(zipfile.ZipFile(artifact.py_files).namelist())
    sources = {
        p.relative_to(JOBS_PACKAGE_DIR.parent).as_posix()
        for p in JOBS_PACKAGE_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert names == sources
    assert "spark_jobs/schemas/raw_order.schema.json" in names
    assert "spark_jobs/common/__init__.py" in names


def test_build_is_reproducible(artifact, tmp_path):
    again = build_job_artifact(tmp_path)
    assert again.py_files.read_bytes() == artifact.py_files.read_bytes()


def test_jobs_import_their_package_from_the_zip_alone(artifact, tmp_path):
    """What --py-files gives the driver: only the zip on sys.path, not the repository."""
    code = (
        "import spark_jobs.common.contract as c, sys; "
        "assert c.__file__.startswith(sys.argv[1]), c.__file__; "
        "print(len(c.raw_struct_type().fields))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(artifact.py_files)],
        env={"PYTHONPATH": str(artifact.py_files), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 0


def test_requirements_are_pinned_from_the_lock_with_their_closure(artifact):
    from orchestration.artifact import hashed_pins

    lines = hashed_pins(artifact.requirements.read_text())
    lock_lines = {line.strip() for line in LOCK_FILE.read_text().splitlines()}
    assert lines
    assert all("==" in line and line in lock_lines for line in lines)
    names = {line.split("==")[0].lower() for line in lines}
    assert set(JOB_RUNTIME_DEPS) <= names
    # pandas needs numpy, jsonschema needs referencing: the closure, not just the roots.
    assert {"numpy", "referencing", "python-dateutil"} <= names
    # EMR brings its own Spark; installing pyspark would shadow it.
    assert not {"pyspark", "pyspark-client", "apache-airflow"} & names


def _third_party_imports(package_dir: Path) -> set[str]:
    found = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    provided = {"spark_jobs", "pyspark", "__future__"}
    return {name for name in found - provided if name not in sys.stdlib_module_names}


def test_every_third_party_import_of_the_jobs_is_installed_on_emr(artifact):
    shipped = {line.split("==")[0].lower() for line in artifact.requirements.read_text().split()}
    distributions = importlib.metadata.packages_distributions()
    for module in sorted(_third_party_imports(JOBS_PACKAGE_DIR)):
        owners = {d.lower() for d in distributions.get(module, [])}
        assert owners & shipped, (
            f"spark_jobs imports {module!r} (from {sorted(owners)}) but requirements-emr.txt "
            "lacks it; add it to JOB_RUNTIME_DEPS in orchestration/artifact.py"
        )


def test_unpinned_dependency_is_reported_with_the_fix():
    with pytest.raises(ValueError, match=r"not-a-real-package.*requirements\.in.*JOB_RUNTIME_DEPS"):
        runtime_requirements(LOCK_FILE.read_text(), ["not-a-real-package"])


def test_upload_puts_every_file_below_the_prefix(artifact):
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="builditall-data")
        uris = upload_job_artifact(artifact, "builditall-data", "artifacts/spark_jobs/", s3)
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="builditall-data")["Contents"]}
    assert keys == {f"artifacts/spark_jobs/{f}" for f in artifact.relative_files()}
    assert "s3://builditall-data/artifacts/spark_jobs/spark_jobs.zip" in uris


def test_local_packaging_task_returns_what_spark_submit_needs():
    from orchestration.spark_job import package_spark_jobs

    paths = package_spark_jobs("data_processor.py")
    assert Path(paths["application"]).name == "data_processor.py"
    source = JOBS_PACKAGE_DIR / "data_processor.py"
    assert Path(paths["application"]).read_bytes() == source.read_bytes()
    assert zipfile.is_zipfile(paths["py_files"])


@pytest.mark.localstack
def test_build_jobs_cli_uploads_to_the_configured_bucket(use_env, localstack, tmp_path, capsys):
    """`python -m orchestration.artifact --upload` (nox -s build_jobs) against real LocalStack."""

    from orchestration.artifact import main

    use_env(
        "local",
        AWS_ENDPOINT_URL=localstack.endpoint_url,
        DATA_BUCKET=localstack.bucket,
        EMR_JOB_ARTIFACT_PREFIX="artifacts/cli-test",
    )
    assert main(["--out", str(tmp_path / "out"), "--upload"]) == 0
    s3 = localstack.s3_client()
    listed = s3.list_objects_v2(Bucket=localstack.bucket, Prefix="artifacts/cli-test/")
    keys = {o["Key"].removeprefix("artifacts/cli-test/") for o in listed["Contents"]}
    assert "spark_jobs.zip" in keys
    assert "bootstrap/install_job_deps.sh" in keys
    assert f"s3://{localstack.bucket}/artifacts/cli-test/spark_jobs.zip" in capsys.readouterr().out


def test_every_requirement_the_bootstrap_installs_has_the_locks_hashes(artifact):
    from orchestration.artifact import EMR_LOCK_FILE, hashed_pins

    text = artifact.requirements.read_text()
    assert text == EMR_LOCK_FILE.read_text()
    entries = re.split(r"\n(?=\S)", text)
    pinned = [e for e in entries if not e.startswith("#")]
    assert len(pinned) == len(hashed_pins(text))
    for entry in pinned:
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), entry.splitlines()[0]
    script = artifact.bootstrap.read_text()
    assert "pip install" in script
    assert "--require-hashes" in script
    assert "--only-binary=:all:" in script


def test_a_hashed_lock_behind_requirements_txt_fails_the_build(tmp_path):
    from orchestration.artifact import EMR_LOCK_FILE, build_job_artifact

    stale = tmp_path / "requirements-emr.txt"
    stale.write_text(EMR_LOCK_FILE.read_text().replace("faker==", "faker==0.0.1+", 1))
    with pytest.raises(ValueError, match=r"requirements-emr\.txt pins .*run `nox -s lock`"):
        build_job_artifact(tmp_path / "out", emr_lock_file=stale)
