"""The whole pipeline through Airflow: generation, then processing, then both again for the date.

The tests run in file order and build on each other (one pipeline run per session): the
generation DAG writes a raw day, the processing DAG publishes it, a rerun changes nothing, and
the task logs of every run are in the logs bucket. Each failure message says what was expected
where; a failed DAG run prints its failed tasks' logs.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

GENERATION_DAG = "data_generation"
PROCESSING_DAG = "data_processing"
# A task's log is uploaded when its process ends, which can be just after the run is marked done.
LOG_UPLOAD_GRACE_SECONDS = 30
PROCESSED_TABLES = ("orders", "order_items", "customers", "payments", "daily_sales")
QUARANTINE_COLUMNS = {"raw_line", "reason", "detail", "source_file"}
# Generator bad kinds that the processor quarantines under the same reason.
QUARANTINED_KINDS = (
    "malformed_json",
    "missing_required_field",
    "wrong_type",
    "negative_quantity",
    "timestamp_outside_day",
)


# --- helpers (S3 only) --------------------------------------------------------------------------


def list_objects(s3, bucket: str, prefix: str) -> list[dict]:
    objects: list[dict] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects.extend(page.get("Contents", []))
    return objects


def read_json(s3, bucket: str, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def raw_day_prefix(settings, day: str) -> str:
    return f"{settings.raw_prefix}/orders/dt={day}/"


def table_prefix(settings, table: str, day: str) -> str:
    return f"{settings.processed_prefix}/{table}/dt={day}/"


def report_key(settings, day: str) -> str:
    return f"{settings.processed_prefix}/reports/dt={day}/quality_report.json"


def read_table(arrow_fs, settings, table: str, day: str):
    """One day of a processed table, read back with pyarrow (files named _* or .* are skipped)."""
    path = f"{settings.data_bucket}/{table_prefix(settings, table, day)}".rstrip("/")
    return pq.read_table(path, filesystem=arrow_fs)


def snapshot(s3, arrow_fs, settings, day: str) -> dict:
    """What a rerun must leave unchanged: manifest, report counts, rows and distinct keys."""
    manifest = read_json(s3, settings.data_bucket, raw_day_prefix(settings, day) + "_manifest.json")
    report = read_json(s3, settings.data_bucket, report_key(settings, day))
    report.pop("seconds", None)
    orders = read_table(arrow_fs, settings, "orders", day)
    raw_parts = [
        o["Key"]
        for o in list_objects(s3, settings.data_bucket, raw_day_prefix(settings, day))
        if o["Key"].rsplit("/", 1)[-1].startswith("part-")
    ]
    return {
        "manifest": {k: manifest[k] for k in ("date", "seed", "rows", "lines", "good", "bad")},
        "report": report,
        "orders": orders.num_rows,
        "distinct_order_ids": len(set(orders.column("order_id").to_pylist())),
        "raw_part_files": len(raw_parts),
        "table_rows": {
            table: read_table(arrow_fs, settings, table, day).num_rows
            for table in (*PROCESSED_TABLES, "quarantine")
        },
    }


# --- the pipeline -------------------------------------------------------------------------------


def test_dags_are_parsed_without_import_errors(airflow_api):
    errors = airflow_api.import_errors()
    assert errors == [], f"Airflow reports DAG import errors: {errors}"
    for dag_id in (GENERATION_DAG, PROCESSING_DAG):
        dag = airflow_api.wait_for_dag(dag_id)
        assert dag["dag_id"] == dag_id


def test_generation_writes_a_complete_raw_day(run_dag, s3, settings, e2e_date):
    run_dag(GENERATION_DAG, e2e_date)

    prefix = raw_day_prefix(settings, e2e_date)
    objects = {
        o["Key"].rsplit("/", 1)[-1]: o for o in list_objects(s3, settings.data_bucket, prefix)
    }
    where = f"s3://{settings.data_bucket}/{prefix}"
    parts = {name: o for name, o in objects.items() if name.startswith("part-")}
    assert parts, f"no part-* files under {where}; found {sorted(objects)}"
    assert "_manifest.json" in objects, f"no _manifest.json under {where}"
    assert "_SUCCESS" in objects, f"no _SUCCESS under {where}"
    written_last = objects["_SUCCESS"]["LastModified"]
    assert all(o["LastModified"] <= written_last for o in objects.values()), (
        f"_SUCCESS under {where} is not the last object written"
    )

    manifest = read_json(s3, settings.data_bucket, prefix + "_manifest.json")
    assert manifest["date"] == e2e_date
    lines = sum(
        len(s3.get_object(Bucket=settings.data_bucket, Key=o["Key"])["Body"].read().splitlines())
        for o in parts.values()
    )
    assert lines == manifest["lines"], f"{where}: part files hold {lines} lines, manifest says"
    assert manifest["rows"] == manifest["lines"] - manifest["bad"]["duplicate_order_id"]
    assert manifest["good"] + sum(manifest["bad"].values()) == manifest["lines"]
    assert manifest["rows"] > 0


def test_processing_publishes_reconciled_tables(run_dag, s3, arrow_fs, settings, e2e_date):
    run_dag(PROCESSING_DAG, e2e_date)

    bucket = settings.data_bucket
    manifest = read_json(s3, bucket, raw_day_prefix(settings, e2e_date) + "_manifest.json")
    report = read_json(s3, bucket, report_key(settings, e2e_date))
    assert report["date"] == e2e_date
    assert report["reconciled"] is True
    assert report["lines_read"] == manifest["lines"], "processor read a different line count"
    assert report["lines_read"] == (
        report["valid"] + report["quarantined"] + report["duplicates_dropped"]
    ), f"reconciliation broken: {report}"
    assert report["duplicates_dropped"] == manifest["bad"]["duplicate_order_id"]
    for kind in QUARANTINED_KINDS:
        assert report["quarantine_by_reason"][kind] == manifest["bad"][kind], (
            f"quarantined {kind}: report {report['quarantine_by_reason'][kind]}, "
            f"generator injected {manifest['bad'][kind]}"
        )

    report_written = s3.head_object(Bucket=bucket, Key=report_key(settings, e2e_date))
    for table in (*PROCESSED_TABLES, "quarantine"):
        prefix = table_prefix(settings, table, e2e_date)
        names = {o["Key"].rsplit("/", 1)[-1]: o for o in list_objects(s3, bucket, prefix)}
        assert "_SUCCESS" in names, f"s3://{bucket}/{prefix} has no _SUCCESS"
        assert any(n.endswith(".parquet") for n in names), f"s3://{bucket}/{prefix}: no Parquet"
        assert names["_SUCCESS"]["LastModified"] <= report_written["LastModified"], (
            f"quality_report.json was written before {table}'s _SUCCESS"
        )

    orders = read_table(arrow_fs, settings, "orders", e2e_date).to_pylist()
    items = read_table(arrow_fs, settings, "order_items", e2e_date).to_pylist()
    quarantine = read_table(arrow_fs, settings, "quarantine", e2e_date)
    assert len(orders) == report["valid"] == report["tables"]["orders"]
    assert quarantine.num_rows == report["quarantined"]
    assert set(quarantine.column_names) >= QUARANTINE_COLUMNS

    order_ids = Counter(o["order_id"] for o in orders)
    assert max(order_ids.values()) == 1, "orders has duplicate order_id rows"
    item_sums: dict[str, Decimal] = defaultdict(Decimal)
    for item in items:
        item_sums[item["order_id"]] += item["quantity"] * item["unit_price"]
    mismatched = [
        (o["order_id"], o["total_amount"], item_sums[o["order_id"]])
        for o in orders
        if o["total_amount"] != item_sums[o["order_id"]]
    ]
    assert not mismatched, f"order totals != sum of their items, first: {mismatched[:5]}"
    assert set(item_sums) == set(order_ids), "order_items and orders have different order ids"


def test_rerunning_the_date_changes_nothing(run_dag, s3, arrow_fs, settings, e2e_date):
    before = snapshot(s3, arrow_fs, settings, e2e_date)
    run_dag(GENERATION_DAG, e2e_date)
    run_dag(PROCESSING_DAG, e2e_date)
    after = snapshot(s3, arrow_fs, settings, e2e_date)
    assert after == before
    assert after["orders"] == after["distinct_order_ids"], "rerun left duplicate orders"


def test_task_logs_are_in_the_logs_bucket(pipeline_runs, s3, settings):
    if not pipeline_runs.runs:
        pytest.skip("no DAG run was made in this session")
    deadline = time.monotonic() + LOG_UPLOAD_GRACE_SECONDS
    for dag_id, run_id in pipeline_runs.runs:
        wanted = f"dag_id={dag_id}/run_id={run_id}/"
        while True:
            keys = [
                o["Key"] for o in list_objects(s3, settings.logs_bucket, f"{settings.logs_prefix}/")
            ]
            found = [k for k in keys if wanted in k]
            if found or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert found, (
            f"no task log of {dag_id} run {run_id} under s3://{settings.logs_bucket}/"
            f"{settings.logs_prefix}/ (looked for '{wanted}'); {len(keys)} keys there"
        )
