"""Idempotency and concurrency of the processor, on a local path and on LocalStack S3.

Two days are processed at once (two threads, one SparkSession, one output root), then the first
day twice more and the second day once more, one after the other. Every run of a day must publish
the same tables, row for row, and the same report; reruns of one day must leave the other alone.
(tests/unit/test_data_processor.py checks a rerun's counts and the atomic publish; this checks
the content, three times, and concurrency.)
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from spark_jobs import data_generator
from spark_jobs import data_processor as dp
from spark_jobs.common import layout
from spark_jobs.common.storage import Storage
from spark_jobs.processing.publish import read_published

pytestmark = pytest.mark.spark

DAYS = ("2024-03-01", "2024-03-02")


@pytest.fixture(params=["local", "s3"])
def roots(request, tmp_path, spark):
    """(Storage, raw root, output root) on a local directory or a LocalStack S3 prefix."""
    if request.param == "local":
        return Storage(spark), str(tmp_path / "raw"), str(tmp_path / "processed")
    storage = request.getfixturevalue("s3_storage")
    prefix = f"s3://{request.getfixturevalue('localstack').bucket}/idempotency/{tmp_path.name}"
    return storage, f"{prefix}/raw", f"{prefix}/processed"


def snapshot(storage: Storage, out: str, day: str) -> dict:
    """What a run published for the day: its report (less the timing), and per table the row
    count and a digest of the sorted rows."""
    report = json.loads(storage.read_text(layout.report_path(out, day)))
    report.pop("seconds")
    tables = {}
    for table in layout.PUBLISHED_TABLES:
        rows = read_published(storage.spark, out, table, day, storage=storage).collect()
        lines = sorted(repr(tuple(row)) for row in rows)
        digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
        tables[table] = (len(rows), digest)
    return {"report": report, "tables": tables}


def test_three_runs_give_identical_tables_and_two_days_at_once_do_not_interfere(roots):
    storage, raw, out = roots
    spark = storage.spark
    for n, day in enumerate(DAYS):
        data_generator.write_day(spark, raw, day, 400, seed=n, bad_record_rate=0.2)

    def process(day: str) -> dict:
        return dp.process_day(spark, raw, out, day, storage=storage)

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(process, DAYS))
    assert [r["date"] for r in reports] == list(DAYS)
    first = {day: snapshot(storage, out, day) for day in DAYS}
    for day in DAYS:
        tables = first[day]["tables"]
        assert tables["orders"][0] == first[day]["report"]["valid"] > 0
        assert tables["quarantine"][0] == first[day]["report"]["quarantined"] > 0
    assert first[DAYS[0]]["tables"] != first[DAYS[1]]["tables"], "the two days hold other data"

    for run in (2, 3):
        process(DAYS[0])
        assert snapshot(storage, out, DAYS[0]) == first[DAYS[0]], f"run {run} of {DAYS[0]}"
        assert snapshot(storage, out, DAYS[1]) == first[DAYS[1]], f"{DAYS[1]} changed"
    process(DAYS[1])
    assert snapshot(storage, out, DAYS[1]) == first[DAYS[1]], f"run 2 of {DAYS[1]}"
