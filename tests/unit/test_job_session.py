"""The jobs' own SparkSession settings (spark_jobs/common/session.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pyspark import StorageLevel, cloudpickle
from pyspark.sql.datasource import DataSource, DataSourceWriter, WriterCommitMessage

from spark_jobs.common.session import JOB_SESSION_CONF, cached_view, run_concurrently

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json
from pyspark.errors.utils import is_debugging_enabled
from spark_jobs.common.session import JOB_SESSION_CONF, job_session
session = job_session("job-session-probe")
settings = {key: session.conf.get(key) for key in JOB_SESSION_CONF}
print(json.dumps({"settings": settings, "debugging": is_debugging_enabled()}))
session.stop()
"""


@pytest.mark.spark
def test_a_new_job_session_turns_pyspark_dataframe_debugging_off():
    # The setting is static: it holds only in a session the job itself starts, as under
    # spark-submit, so the probe starts one in its own process.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYSPARK_SUBMIT_ARGS": "--master local[1] pyspark-shell",
    }
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen == {"settings": JOB_SESSION_CONF, "debugging": False}


def _temp_views(spark, prefix: str) -> list[str]:
    return [t.name for t in spark.catalog.listTables() if t.name.startswith(prefix)]


@pytest.mark.spark
def test_cached_view_reads_the_persisted_data_by_name_and_drops_both_on_exit(spark):
    df = spark.range(1000).selectExpr("id", "id * 2 AS twice")
    with cached_view(df, "probe_lines") as view:
        (name,) = _temp_views(spark, "probe_lines_")
        assert spark.catalog.isCached(name)
        assert view.where("twice % 3 = 0").count() == 334
        # A plan built on the view reads the cached data, not the range again.
        plan = view.select("twice")._jdf.queryExecution().withCachedData().toString()
        assert "InMemoryRelation" in plan, plan
    assert _temp_views(spark, "probe_lines_") == []
    assert df.storageLevel == StorageLevel.NONE


@pytest.mark.spark
def test_cached_view_drops_both_when_the_block_fails(spark):
    df = spark.range(10).selectExpr("id")
    with pytest.raises(RuntimeError, match="block failed"), cached_view(df, "probe_failing"):
        raise RuntimeError("block failed")
    assert _temp_views(spark, "probe_failing_") == []
    assert df.storageLevel == StorageLevel.NONE


class _DiscardingWriter(DataSourceWriter):
    def write(self, iterator):
        return WriterCommitMessage()


class _DiscardingSource(DataSource):
    """A Python data source to write to. Spark looks a writer's format up in the active session
    of the calling thread (a reader's in the reader's own session)."""

    @classmethod
    def name(cls) -> str:
        return "run_concurrently_probe"

    def writer(self, schema, overwrite):
        return _DiscardingWriter()


@pytest.mark.spark
def test_run_concurrently_runs_each_action_in_its_own_thread_with_the_session_active(spark):
    # Ship the source by value: the Python workers cannot import this test module.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        spark.dataSource.register(_DiscardingSource)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    threads = set()

    def write_to_python_source() -> str:
        threads.add(threading.current_thread().name)
        spark.range(3).write.format(_DiscardingSource.name()).mode("append").save()
        return "written"

    results = run_concurrently(
        spark, {"python_source": write_to_python_source, "range": lambda: spark.range(5).count()}
    )

    assert results == {"python_source": "written", "range": 5}
    assert threading.current_thread().name not in threads


@pytest.mark.spark
@pytest.mark.parametrize(("max_workers", "expected_peak"), [(1, 1), (2, 2), (None, 4)])
def test_run_concurrently_runs_at_most_max_workers_actions_at_once(
    spark, max_workers, expected_peak
):
    lock = threading.Lock()
    running = peak = 0
    all_started = threading.Barrier(expected_peak, timeout=10)

    def action(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        # Holds until expected_peak actions run together: more never start, fewer would time out.
        all_started.wait()
        with lock:
            running -= 1
        return n

    actions = {f"a{n}": (lambda n=n: action(n)) for n in range(4)}
    results = run_concurrently(spark, actions, max_workers=max_workers)

    assert results == {f"a{n}": n for n in range(4)}
    assert peak == expected_peak


@pytest.mark.spark
def test_run_concurrently_raises_the_first_failure_after_every_action_has_ended(spark):
    finished = threading.Event()

    def slow() -> int:
        count = spark.range(1000).count()
        finished.set()
        return count

    def fail() -> int:
        raise ValueError("table x failed")

    with pytest.raises(ValueError, match="table x failed"):
        run_concurrently(spark, {"fail": fail, "slow": slow})
    assert finished.is_set()
