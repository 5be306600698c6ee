"""Publish one day atomically for readers, and read what was published.

A day is published when its quality report exists: `publish` first removes the report and every
table's success marker, replaces each table's partition, then marks each table done;
`write_report` writes the report last. `read_published` refuses what is not marked.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from functools import partial
from typing import Any

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)

from spark_jobs.common.layout import parse_day, report_path, table_day_dir, table_success_path
from spark_jobs.common.session import run_concurrently
from spark_jobs.common.storage import Storage

log = logging.getLogger("data_processor")


class NotPublishedError(RuntimeError):
    """A reader asked for a day or table whose marker is missing."""


def publish(
    storage: Storage, output_uri: str, day: date, tables: dict[str, DataFrame]
) -> dict[str, int]:
    """Unpublish the day, replace each table's partition, then mark each table done.

    Returns the rows written per table, counted by the writes themselves (no read-back)."""
    storage.delete(report_path(output_uri, day))
    for name in tables:
        storage.delete(table_success_path(output_uri, name, day))

    def write(name: str, df: DataFrame) -> int:
        written = Observation(f"{name}_rows")
        table_dir = table_day_dir(output_uri, name, day)
        storage.write_parquet(df.observe(written, F.count(F.lit(1)).alias("rows")), table_dir)
        rows = written.get.get("rows")
        if rows is None:
            # A Spark 4.0 Connect server may finish the write before its metrics arrive (the
            # client's result then stays {}): count what the write left, never assume it.
            log.warning("write metrics of %s did not arrive; counting %s", name, table_dir)
            rows = storage.read_parquet(table_dir).count()
        return rows

    rows = run_concurrently(
        storage.spark,
        {name: partial(write, name, df) for name, df in tables.items()},
        max_workers=storage.concurrent_writes(output_uri),
    )
    for name in tables:
        storage.write_text(table_success_path(output_uri, name, day), "")
    return rows


def write_report(storage: Storage, output_uri: str, day: date, report: dict[str, Any]) -> None:
    """The report is the day marker: written last, after every table and its success marker."""
    storage.write_text(report_path(output_uri, day), json.dumps(report, indent=2) + "\n")


def read_published(
    spark: SparkSession,
    output_uri: str,
    table: str,
    day: str | date,
    storage: Storage | None = None,
) -> DataFrame:
    """One table's partition of a published day; refuses a day without its report or a table
    partition without its success marker (still being written, or its run failed)."""
    day = parse_day(day)
    storage = storage or Storage(spark)
    report = report_path(output_uri, day)
    if not storage.exists(report):
        raise NotPublishedError(
            f"{day} is not published: {report} is missing (data_processor.py has not finished "
            f"or failed for that date); run data_processor.py --date {day} and read again"
        )
    success = table_success_path(output_uri, table, day)
    if not storage.exists(success):
        raise NotPublishedError(
            f"{table} for {day} is not published: {success} is missing; "
            f"re-run data_processor.py --date {day}"
        )
    return storage.read_parquet(table_day_dir(output_uri, table, day))
