"""Both jobs as Spark Connect clients (SPARK_CONNECT_URL) of a real Spark Connect server.

The server is host_stack's own (host_stack/spark_connect.py) on local[2] with the S3 conf of a
real LocalStack; the jobs run in a process of their own, as under spark-submit, and read and
write s3:// there. The local stack runs the DAGs' jobs this way; EMR and the other tests run
them classic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from spark_jobs.common import session as job_session_module
from spark_jobs.common.session import CONNECT_URL_ENV
from tests.spark_connect_server import running_connect_server

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-02-03"
JOBS = f"""
import json, sys
from spark_jobs import data_generator, data_processor
raw, processed = sys.argv[1], sys.argv[2]
assert data_generator.main(["--date", "{DAY}", "--rows", "400", "--output", raw]) == 0
assert data_processor.main(["--date", "{DAY}", "--input", raw, "--output", processed]) == 0
"""


# The server process of each fixture server, by port.
server_pids: dict[int, int] = {}

REAP_AND_RESTART = """
import os, sys, time
import psutil
os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
from pyspark.sql.connect.session import SparkSession
from pyspark.sql.functions import udf
from host_stack.supervise import DaemonReaper, session_daemons

server = psutil.Process(int(sys.argv[2]))
spark = SparkSession.builder.remote(sys.argv[1]).create()
plus_one = udf(lambda x: x + 1, "long")
run = lambda: sorted(row[0] for row in spark.range(4).select(plus_one("id")).collect())
assert run() == [1, 2, 3, 4]
daemons = session_daemons(server)
assert daemons, "no Python daemon of a Connect session below the server"
# Spark stops a factory's idle workers after a minute without use (checked every 10 s); only
# then is a daemon childless, which is what the reaper waits for.
deadline = time.monotonic() + 150
while any(d.children() for d in daemons):
    assert time.monotonic() < deadline, "Spark did not stop its idle Python workers"
    time.sleep(2)
reaped = DaemonReaper(idle_seconds=0).sweep(server)
assert sorted(reaped) == sorted(d.pid for d in daemons), (reaped, daemons)
gone, alive = psutil.wait_procs(daemons, timeout=10)
assert not alive, f"daemons still running after SIGTERM: {alive}"
# The session still open: Spark starts a new daemon for it.
assert run() == [1, 2, 3, 4]
assert session_daemons(server), "Spark did not start a new daemon for the open session"
spark.stop()
print("reaped", len(reaped))
"""


@pytest.fixture(scope="module")
def connect_server(localstack, tmp_path_factory):
    """A Spark Connect server on local[2] that reaches LocalStack as the stack's does."""
    log = tmp_path_factory.mktemp("spark-connect") / "server.log"
    with running_connect_server(localstack.spark_s3_conf(), log) as (server, pid):
        server_pids[server.port] = pid
        yield server


@pytest.mark.spark
@pytest.mark.timeout(600)
def test_both_jobs_run_as_clients_of_a_spark_connect_server(connect_server, localstack):
    raw = f"s3://{localstack.bucket}/connect/raw"
    processed = f"s3://{localstack.bucket}/connect/processed"
    env = {
        **os.environ,
        CONNECT_URL_ENV: connect_server.url,
        "PYTHONPATH": str(ROOT),
        # spark-submit sets MASTER for a job's Python; a Connect client must not trip over it.
        "MASTER": "spark://127.0.0.1:7077",
    }

    jobs = subprocess.run(
        [sys.executable, "-c", JOBS, raw, processed],
        env=env, capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip

    assert jobs.returncode == 0, jobs.stderr[-4000:]
    assert f"running as a Spark Connect client of {connect_server.url}" in jobs.stderr
    # No hadoop-aws on the server's classpath: the probe found that, so pyarrow's S3 client
    # wrote the days, as in a classic driver here.
    assert "Spark has no Hadoop FileSystem for s3" in jobs.stderr
    report = json.loads(jobs.stdout[jobs.stdout.index("{") :])
    assert report["date"] == DAY
    assert report["reconciled"] is True
    assert report["manifest_lines"] == report["lines_read"]
    assert report["tables"]["orders"] == report["valid"] > 0
    assert report["quarantined"] > 0


@pytest.mark.spark
@pytest.mark.timeout(600)
def test_the_stack_warm_up_runs_both_jobs_on_the_server_and_deletes_what_it_wrote(
    connect_server, localstack
):
    prefix = "stack-warm-up"
    env = {**os.environ, CONNECT_URL_ENV: connect_server.url, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "host_stack.spark_warmup", "--clean"]
    work_dir = f"s3://{localstack.bucket}/{prefix}"

    warmup = subprocess.run(
        [*command, "--work-dir", work_dir],
        env=env, capture_output=True, text=True, timeout=540, check=False,
    )  # fmt: skip

    assert warmup.returncode == 0, warmup.stderr[-4000:]
    assert f"running as a Spark Connect client of {connect_server.url}" in warmup.stderr
    report = json.loads(warmup.stdout[warmup.stdout.index("{") :])
    assert report["reconciled"] is True
    assert report["tables"]["orders"] == report["valid"] > 0
    s3 = localstack.s3_client()
    left = s3.list_objects_v2(Bucket=localstack.bucket, Prefix=prefix).get("KeyCount", 0)
    assert left == 0, f"the warm-up left {left} objects under {work_dir}"


@pytest.mark.spark
@pytest.mark.timeout(400)
def test_an_idle_session_daemon_is_reaped_and_spark_restarts_it_for_its_open_session(
    connect_server,
):
    """Spark keeps a Python daemon per Connect session until the server ends (SPARK-54055);
    host_stack.supervise stops idle ones, which must not break a session that still runs."""
    pid = server_pids[connect_server.port]
    result = subprocess.run(
        [sys.executable, "-c", REAP_AND_RESTART, connect_server.url, str(pid)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "reaped" in result.stdout


def test_the_package_ships_as_the_zip_it_was_imported_from(tmp_path, monkeypatch):
    archive = tmp_path / "spark_jobs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("spark_jobs/__init__.py", "")
    import spark_jobs

    monkeypatch.setattr(spark_jobs, "__file__", str(archive / "spark_jobs" / "__init__.py"))

    assert job_session_module._package_archive() == archive


def test_a_checkout_ships_as_a_new_zip_of_the_package():
    archive = job_session_module._package_archive()

    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    assert "spark_jobs/common/session.py" in names
    assert "spark_jobs/schemas/raw_order.schema.json" in names
    assert not any("__pycache__" in name for name in names)


def test_a_connect_url_that_is_not_one_fails_before_any_spark(monkeypatch):
    monkeypatch.setenv(CONNECT_URL_ENV, "http://127.0.0.1:15002")

    with pytest.raises(ValueError, match=r"SPARK_CONNECT_URL='http://127.0.0.1:15002' .*sc://"):
        job_session_module.job_session("probe")
