"""The jobs' SparkSession: the settings that are the jobs' own wherever they run, and a block
with some SQL settings changed (`session_conf`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pyspark.sql import SparkSession

# PySpark's DataFrame debugging sends the Python call site of every Column function call to the
# JVM, for the query context of error messages: about eight py4j round trips per call on top of
# the call itself. The processor builds its validation from about 1,100 such calls, so that is
# 10k of its 16.6k round trips: 3.3 s against 1.8 s to build them in a new JVM (1.0 s against
# 2.0 s warm). Errors keep their message and the Spark plan; they lose the Python line.
JOB_SESSION_CONF = {"spark.python.sql.dataFrameDebugging.enabled": "false"}


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
