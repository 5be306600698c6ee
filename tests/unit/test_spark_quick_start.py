"""The host stack's quick JVM start for the local jobs (host_stack/spark_cds.py).

The options reach the jobs only through the pipeline setting SPARK_JAVA_OPTIONS, which the stack
overrides for Airflow; the archive is real: the Spark test builds one with the warm-up run and
starts a Spark JVM that must map it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from host_stack.spark import pyspark_home
from host_stack.spark_cds import QUICK_JIT, SparkQuickStart
from host_stack.stack import REPO_ROOT, StackError, StackSettings
from tests.unit.test_host_stack import make_stack

LOCAL_DEFAULT = "-XX:-DontCompileHugeMethods"  # envs/local/settings.env


def local_shell(**extra: str) -> dict[str, str]:
    from config.config import KEYS

    shell = {k: v for k, v in os.environ.items() if k not in KEYS and k != "PIPELINE_ENV"}
    return {**shell, **extra}


def test_the_local_jobs_get_the_quick_start_options_through_their_setting(tmp_path):
    stack = make_stack(tmp_path)
    stack.environ = local_shell()
    archive = stack.spark_quick_start().archive
    assert archive.parent == stack.venv_bin.parent / "spark-cds"

    settings = stack.pipeline_settings()

    expected = f"{LOCAL_DEFAULT} {QUICK_JIT} -XX:SharedArchiveFile={archive}"
    assert settings.spark_java_options == expected
    conf = settings.spark_submit_conf()
    assert conf["spark.driver.extraJavaOptions"] == expected
    assert conf["spark.executor.extraJavaOptions"] == expected
    assert stack.airflow().environment({})["SPARK_JAVA_OPTIONS"] == expected


def test_the_quick_start_options_are_added_once_and_after_the_shells_own(tmp_path):
    stack = make_stack(tmp_path)
    stack.environ = local_shell(SPARK_JAVA_OPTIONS="-Xss4m")
    once = stack.pipeline_settings().spark_java_options
    assert once.startswith(f"-Xss4m {QUICK_JIT} -XX:SharedArchiveFile=")
    # A client of the stack (the e2e session) passes the overrides on; nothing doubles.
    stack.environ = local_shell(SPARK_JAVA_OPTIONS=once)
    assert stack.pipeline_settings().spark_java_options == once


def test_quick_start_off_leaves_the_jvm_options_as_configured(tmp_path):
    stack = make_stack(tmp_path)
    stack.settings = replace(stack.settings, spark_quick_start=False)
    stack.environ = local_shell()
    assert stack.spark_quick_start() is None
    assert stack.pipeline_settings().spark_java_options == LOCAL_DEFAULT


def _server_java_options(stack) -> dict[str, str]:
    command = stack.spark_connect().command()
    conf = dict(arg.split("=", 1) for arg in command if "extraJavaOptions=" in arg)
    return {key.split(".")[1]: value for key, value in conf.items()}


def test_the_connect_servers_executor_gets_c1_only_and_its_driver_keeps_c2(tmp_path):
    stack = make_stack(tmp_path)
    stack.environ = local_shell()
    assert _server_java_options(stack) == {
        "driver": LOCAL_DEFAULT,
        # Started once per server: no class-data archive, only the quick compiler.
        "executor": f"{LOCAL_DEFAULT} {QUICK_JIT}",
    }
    stack.settings = replace(stack.settings, spark_quick_start=False)
    assert _server_java_options(stack) == {"driver": LOCAL_DEFAULT, "executor": LOCAL_DEFAULT}


def test_the_aws_rehearsal_gets_no_quick_start(tmp_path):
    stack = make_stack(tmp_path)
    stack.environ = local_shell(PIPELINE_ENV="aws")
    assert stack.spark_quick_start() is None
    assert "SPARK_JAVA_OPTIONS" not in stack.pipeline_overrides()


def test_a_bad_quick_start_value_names_the_variable():
    with pytest.raises(StackError, match=r"STACK_SPARK_QUICK_START='maybe'.*expected on or off"):
        StackSettings.from_env({"STACK_SPARK_QUICK_START": "maybe"})
    assert StackSettings.from_env({}).spark_quick_start is True
    assert StackSettings.from_env({"STACK_SPARK_QUICK_START": "off"}).spark_quick_start is False


def test_the_warmup_writes_its_archive_aside_and_never_reads_one(tmp_path):
    quick = SparkQuickStart(archive_dir=tmp_path)
    base = f"-Xss4m {QUICK_JIT} -XX:SharedArchiveFile={quick.archive}"
    command = quick.build_command(base, tmp_path / "work")
    assert command[command.index("--master") + 1] == "local[2]"
    options = command[command.index("--conf") + 1].removeprefix("spark.driver.extraJavaOptions=")
    assert options.split() == ["-Xss4m", QUICK_JIT, f"-XX:ArchiveClassesAtExit={quick.partial}"]


def test_only_a_complete_warmup_publishes_the_archive(tmp_path):
    quick = SparkQuickStart(archive_dir=tmp_path / "cds")
    work = tmp_path / "work"
    quick.prepare(work)
    stale = quick.archive_dir / "spark-0.0-java-old.jsa"
    stale.write_bytes(b"old")

    quick.partial.write_bytes(b"half")
    assert quick.finish(1, work) is False  # the warm-up failed: its archive may be cut short
    assert not quick.archive.exists()
    assert not quick.partial.exists()

    quick.prepare(work)
    assert quick.finish(0, work) is False  # exit 0 but the JVM wrote nothing
    assert not quick.archive.exists()

    quick.prepare(work)
    quick.partial.write_bytes(b"archive")
    assert quick.finish(0, work) is True
    assert quick.archive.read_bytes() == b"archive"
    assert not stale.exists(), "an archive of another Spark or JDK is of no use"
    assert not work.exists()


@pytest.mark.spark
def test_the_warmup_builds_an_archive_that_a_spark_jvm_maps(tmp_path):
    quick = SparkQuickStart(archive_dir=tmp_path / "cds")
    work = tmp_path / "work"
    quick.prepare(work)
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONPATH": str(REPO_ROOT),
    }
    built = subprocess.run(
        quick.build_command(LOCAL_DEFAULT, work),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert quick.finish(built.returncode, work), "the warm-up's JVM wrote no archive"
    # Both jobs ran in the warm-up: the archive holds far more than a bare JVM's classes.
    assert quick.archive.stat().st_size > 50_000_000

    app = tmp_path / "app.py"
    app.write_text(
        "from pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "assert spark.range(10).count() == 10\n"
        "spark.stop()\n"
    )

    def submit(archive: Path) -> subprocess.CompletedProcess[str]:
        # -Xshare:on: a JVM that cannot map the archive refuses to start (default: it ignores it).
        options = f"-Xshare:on -XX:SharedArchiveFile={archive} {QUICK_JIT}"
        command = [
            str(pyspark_home() / "bin" / "spark-submit"),
            "--master", "local[1]",
            "--conf", f"spark.driver.extraJavaOptions={options}",
            "--conf", "spark.ui.enabled=false",
            str(app),
        ]  # fmt: skip
        return subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    used = submit(quick.archive)
    assert used.returncode == 0, used.stderr[-3000:]
    broken = tmp_path / "broken.jsa"
    broken.write_bytes(b"\0" * 4096)
    refused = submit(broken)
    assert refused.returncode != 0, "-Xshare:on must refuse an archive it cannot map"
