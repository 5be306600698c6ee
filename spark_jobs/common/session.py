"""The jobs' SparkSession: the settings that are the jobs' own wherever they run, a block with
some SQL settings changed (`session_conf`), and Spark actions run side by side
(`run_concurrently`).

A job runs its Spark work in one of two ways, chosen by its launcher, never by the job:
- classic (EMR, the benchmarks, the tests): spark-submit starts the driver JVM in the job's
  process, and the job's session lives and dies with it;
- Spark Connect: when the environment names a server in SPARK_CONNECT_URL (sc://host:port), the
  job is a client of that long-lived Spark application with a server-side session of its own.
  The local stack runs one (host_stack/), so a developer's run skips starting a driver and
  executors and finds Spark's code already loaded and compiled. The job adds the spark_jobs
  package to its session (as --py-files does for a classic run) and releases the session when
  it ends (`end_job_session`). spark-submit refuses Spark's own SPARK_REMOTE next to the
  --master that SparkSubmitOperator always passes, hence a variable of the project's own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)

from spark_jobs.common.package import zip_package

log = logging.getLogger(__name__)

# The Spark Connect server a job's launcher asks it to use (unset: classic, a driver of its own).
CONNECT_URL_ENV = "SPARK_CONNECT_URL"

# PySpark's DataFrame debugging sends the Python call site of every Column function call to the
# JVM, for the query context of error messages: about eight py4j round trips per call on top of
# the call itself. The processor builds its validation from about 1,100 such calls, so most of
# its round trips are these, and building it takes about half as long without them
# (docs/performance.md). Errors keep their message and the Spark plan; they lose the Python line.
JOB_SESSION_CONF = {"spark.python.sql.dataFrameDebugging.enabled": "false"}

T = TypeVar("T")


def job_session(app_name: str) -> SparkSession:
    """Start (or join) the job's SparkSession with JOB_SESSION_CONF.

    With SPARK_CONNECT_URL set: a new session on that Spark Connect server, with the spark_jobs
    package added to it, so the server's Python workers import the same code as the job.
    """
    url = os.environ.get(CONNECT_URL_ENV, "").strip()
    if not url:
        return SparkSession.builder.appName(app_name).config(map=JOB_SESSION_CONF).getOrCreate()
    if not url.startswith("sc://"):
        raise ValueError(
            f"{CONNECT_URL_ENV}={url!r} is not a Spark Connect URL; expected sc://host:port"
        )
    log.info("%s: running as a Spark Connect client of %s", app_name, url)
    from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

    # What SparkSession.builder.remote() does, minus its refusal of the MASTER variable that
    # spark-submit sets for the job's Python: PySpark's API now dispatches to Connect.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    session = RemoteSparkSession.builder.remote(url).appName(app_name).create()
    session.addArtifacts(str(_package_archive()), pyfile=True)
    return session


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (no JVM in this process)."""
    return not hasattr(spark, "_jsparkSession")


def end_job_session(spark: SparkSession) -> None:
    """A job's last step: release its session on a Spark Connect server (its cached data, its
    settings, its artifacts); a classic driver ends with its process instead."""
    if is_connect(spark):
        spark.stop()


def default_parallelism(spark: SparkSession) -> int:
    """The cores the session's executors have (SparkContext.defaultParallelism).

    A Connect client has no SparkContext: it reads spark.default.parallelism (the local stack
    sets it on its server), else counts the partitions Spark gives a range by default, which is
    that same number."""
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    configured = spark.conf.get("spark.default.parallelism", None)
    if configured:
        return int(configured)
    rows = 1 << 16
    partitions = spark.range(rows).select(F.spark_partition_id().alias("p"))
    last = partitions.agg(F.max("p")).first()[0]
    return int(last) + 1


def _package_archive() -> Path:
    """The spark_jobs package as a zip: the one it was imported from (spark-submit's
    --py-files), else a new zip of its directory (a run from a checkout)."""
    import spark_jobs

    package_dir = Path(spark_jobs.__file__).resolve().parent
    for candidate in (package_dir, *package_dir.parents):
        if candidate.suffix == ".zip" and zipfile.is_zipfile(candidate):
            return candidate
    archive = Path(tempfile.mkdtemp(prefix="spark_jobs_")) / "spark_jobs.zip"
    zip_package(package_dir, archive)
    return archive


@contextlib.contextmanager
def cached_view(
    df: DataFrame, name: str, level: StorageLevel = StorageLevel.MEMORY_AND_DISK
) -> Iterator[DataFrame]:
    """df persisted and named: yields a DataFrame that reads it through a temporary view.

    Every plan built on the yielded DataFrame refers to the view by name. Spark keeps the view's
    analyzed plan, so a query on it skips analysing df's expressions again and finds the cached
    data at once. Otherwise each query re-sends, re-analyses and re-canonicalises df's whole plan
    to match it with the cache: a noticeable part of a second per query for the processor's
    validation, on a Spark Connect server more than once per write. The view (unique to this
    block) is dropped and df unpersisted on exit.
    """
    spark = df.sparkSession
    view = f"{name}_{uuid.uuid4().hex[:12]}"
    persisted = df.persist(level)
    persisted.createTempView(view)
    try:
        yield spark.table(view)
    finally:
        spark.catalog.dropTempView(view)
        persisted.unpersist()


@contextlib.contextmanager
def session_conf(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """Set SQL settings for the duration of the block, then restore the session's own."""
    before = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def run_concurrently(
    spark: SparkSession, actions: Mapping[str, Callable[[], T]], max_workers: int | None = None
) -> dict[str, T]:
    """Run Spark actions from threads, one job each (at most max_workers at a time, default all);
    return their results by name.

    One action's driver work (planning, code generation, committing files) overlaps another's
    tasks, and small stages share the executors instead of queueing. The first failure is
    raised once every action has ended. In a classic driver each thread makes `spark` its
    active session: that is a JVM thread-local, and Python data sources are looked up in the
    active session (a Connect server does that for each request itself).
    """

    def run(action: Callable[[], T]) -> T:
        if not is_connect(spark):
            spark._jvm.org.apache.spark.sql.SparkSession.setActiveSession(spark._jsparkSession)
        return action()

    workers = max(min(len(actions), max_workers or len(actions)), 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job") as pool:
        futures = {name: pool.submit(run, action) for name, action in actions.items()}
    return {name: future.result() for name, future in futures.items()}
