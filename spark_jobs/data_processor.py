"""Job 2: turn one day of raw order JSON lines into validated, deduplicated Parquet tables.

Reads the raw day job 1 wrote (its lines, manifest and success marker) and publishes one partition
per table (orders, order_items, customers, payments, daily_sales), the quarantine (each rejected
line: raw_line, reason, detail, source_file) and the quality report (the counts), written LAST as
the day marker; where each lives is spark_jobs/common/layout.py.

Every line ends up in exactly one place: lines read = valid + quarantined + duplicates dropped
(checked before anything is published). Rerunning a date replaces exactly that date. Readers use
`read_published()` (spark_jobs/processing/publish.py), which refuses a day whose report or a table
whose success marker is missing.

The record contract is schemas/raw_order.schema.json (via spark_jobs.common.contract); the
processor does not restate it. `process_day` reads as its stages, one module of
spark_jobs/processing/ each: extract, validate, deduplicate, build the tables, publish.

Run: spark-submit --py-files spark_jobs.zip spark_jobs/data_processor.py --date D --input I \
         --output O
 or: python -m spark_jobs.data_processor --date D --input I --output O
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from datetime import date
from typing import Any

from pyspark.sql import DataFrame, SparkSession

if __package__ in (None, ""):
    # spark-submit runs this file as a script; the package comes from --py-files or the repo.
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spark_jobs.common.layout import QUARANTINE_TABLE, parse_day
from spark_jobs.common.session import (
    cached_view,
    default_parallelism,
    end_job_session,
    job_session,
    session_conf,
)
from spark_jobs.common.storage import Storage
from spark_jobs.processing.dedupe import keep_winners, tally
from spark_jobs.processing.extract import read_raw_day
from spark_jobs.processing.publish import publish, write_report
from spark_jobs.processing.report import quality_report
from spark_jobs.processing.tables import build_tables
from spark_jobs.processing.validate import split_valid, validate

log = logging.getLogger("data_processor")

# While process_day runs: its cache (one day of checked lines, read by every table's write) is
# kept uncompressed: compressing and decompressing it cost more CPU than it saved, on 2 cores
# where the job is CPU-bound (docs/performance.md).
CACHE_CONF = {"spark.sql.inMemoryColumnarStorage.compressed": "false"}


def process_day(
    spark: SparkSession,
    input_uri: str,
    output_uri: str,
    day: str | date,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Validate, dedupe and publish one day; returns the quality report (also written last)."""
    day = parse_day(day)
    storage = storage or Storage(spark)
    started = time.monotonic()
    lines, manifest = read_raw_day(storage, input_uri, day)
    with session_conf(spark, CACHE_CONF), contextlib.ExitStack() as cached:

        def cache(df: DataFrame, name: str) -> DataFrame:
            return cached.enter_context(cached_view(df, name))

        validated = validate(lines, day, cache)
        counts, winners, dropped = tally(validated)
        valid, quarantine = split_valid(validated)
        kept = keep_winners(valid, winners)
        # Before anything is replaced: the manifest agrees and no line is unaccounted for.
        quality_report(day, counts, dropped, {}, manifest)
        tables = build_tables(kept, day)
        tables[QUARANTINE_TABLE] = quarantine.coalesce(1)
        table_rows = publish(storage, output_uri, day, tables)
        # Again with the rows actually written; the day stays unpublished if they disagree.
        report = quality_report(day, counts, dropped, table_rows, manifest)
        report["seconds"] = round(time.monotonic() - started, 1)
        write_report(storage, output_uri, day, report)
    log.info("published %s: %s", day, json.dumps(report))
    return report


def build_session(app_name: str = "data_processor") -> SparkSession:
    """The job's SparkSession: UTC, small shuffles (one day of orders is a few GB at most)."""
    session = job_session(app_name)
    session.conf.set("spark.sql.session.timeZone", "UTC")
    if session.conf.get("spark.sql.shuffle.partitions") == "200":
        # Spark's default of 200 is for clusters; AQE still coalesces what is left over.
        parallelism = default_parallelism(session)
        session.conf.set("spark.sql.shuffle.partitions", str(max(4, 2 * parallelism)))
    return session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", required=True, help="the day to process, YYYY-MM-DD")
    parser.add_argument("--input", required=True, help="raw root URI, e.g. s3://bucket/raw")
    parser.add_argument("--output", required=True, help="processed root URI")
    args = parser.parse_args(argv)
    try:
        day = parse_day(args.date)
    except ValueError as exc:
        parser.error(str(exc))  # one line and exit code 2, before any Spark
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    spark = build_session()
    try:
        report = process_day(spark, args.input, args.output, day)
    finally:
        end_job_session(spark)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
