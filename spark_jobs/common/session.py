"""The jobs' SparkSession: the settings that are the jobs' own wherever they run, a block with
some SQL settings changed (`session_conf`), and Spark actions run side by side
(`run_concurrently`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pyspark.sql import SparkSession

# PySpark's DataFrame debugging sends the Python call site of every Column function call to the
# JVM, for the query context of error messages: about eight py4j round trips per call on top of
# the call itself. The processor builds its validation from about 1,100 such calls, so that is
# 10k of its 16.6k round trips: 3.3 s against 1.8 s to build them in a new JVM (1.0 s against
# 2.0 s warm). Errors keep their message and the Spark plan; they lose the Python line.
JOB_SESSION_CONF = {"spark.python.sql.dataFrameDebugging.enabled": "false"}

T = TypeVar("T")


def job_session(app_name: str) -> SparkSession:
    """Start (or join) the job's SparkSession with JOB_SESSION_CONF."""
    return SparkSession.builder.appName(app_name).config(map=JOB_SESSION_CONF).getOrCreate()


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


def run_concurrently(spark: SparkSession, actions: Mapping[str, Callable[[], T]]) -> dict[str, T]:
    """Run Spark actions from threads, one job each; return their results by name.

    One action's driver work (planning, code generation, committing files) overlaps another's
    tasks, and small stages share the executors instead of queueing. The first failure is
    raised once every action has ended. Each thread makes `spark` its active session: that is
    a JVM thread-local, and Python data sources are looked up in the active session.
    """
    jvm_session = spark._jsparkSession

    def run(action: Callable[[], T]) -> T:
        spark._jvm.org.apache.spark.sql.SparkSession.setActiveSession(jvm_session)
        return action()

    with ThreadPoolExecutor(max_workers=max(len(actions), 1), thread_name_prefix="job") as pool:
        futures = {name: pool.submit(run, action) for name, action in actions.items()}
    return {name: future.result() for name, future in futures.items()}
