"""The one-command pipeline run on the local stack (`python -m host_stack run-pipeline`, `nox -s
pipeline`): both DAGs for a day through Airflow's REST API, then a summary of the day's quality
report and what to do next; and `ls`, the objects in the stack's S3.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from spark_jobs.common import layout

if TYPE_CHECKING:
    from config.config import Settings
    from host_stack.stack import Stack

PIPELINE_DAGS = ("data_generation", "data_processing")
# What a DAG waits for that an earlier DAG of the pipeline writes: data_processing's sensor
# waits for the raw day's marker, which data_generation writes last.
UPSTREAM_OF = {"data_processing": "data_generation"}
# head_object's answers for a key (or bucket) that does not exist.
MISSING_CODES = ("404", "NoSuchKey", "NoSuchBucket")


def missing_input(settings: Settings, day: str, dags: Iterable[str]) -> str | None:
    """Why `dags` cannot run for `day`, or None: a DAG's input day is neither in S3 nor written
    by a DAG that runs before it here. Said at once, where the DAG's sensor would wait hours."""
    import boto3
    from botocore.exceptions import ClientError

    dags = list(dags)
    for dag_id, upstream in UPSTREAM_OF.items():
        if dag_id not in dags or upstream in dags:
            continue
        key = layout.raw_success_path(settings.raw_prefix, day)
        s3 = boto3.client("s3", **settings.boto3_client_kwargs())
        try:
            s3.head_object(Bucket=settings.data_bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in MISSING_CODES:
                raise
            return (
                f"no raw day {day}: s3://{settings.data_bucket}/{key} does not exist, so "
                f"{dag_id} would wait for it until its sensor times out. Write the day first:\n"
                f"  nox -s pipeline -- --dag {upstream} --date {day}   (then rerun {dag_id})\n"
                f"  nox -s pipeline -- --date {day}   (both DAGs)\n"
                "(LocalStack keeps no data across a restart: a new stack has no day yet.)"
            )
    return None


def run_pipeline(
    stack: Stack,
    info: Mapping[str, str],
    day: str,
    *,
    timeout: float = 900,
    dags: Iterable[str] = PIPELINE_DAGS,
    stays_up: bool = True,
) -> bool:
    """Generation then processing for `day` (or only `dags`) through Airflow's REST API; print a
    summary and what to do next."""
    from host_stack.airflow import AirflowApi

    report = stack.report
    dags = [dag_id for dag_id in PIPELINE_DAGS if dag_id in set(dags)]
    missing = missing_input(stack.pipeline_settings(), day, dags)
    if missing:
        report(missing)
        return False
    api = AirflowApi(info["AIRFLOW_API_URL"], info["AIRFLOW_USERNAME"], info["AIRFLOW_PASSWORD"])
    started = time.monotonic()
    try:
        for dag_id in dags:
            api.wait_for_dag(dag_id)
            api.unpause(dag_id)
        for dag_id in dags:
            run_id = api.run_for_date(dag_id, day)
            report(f"{dag_id}: run {run_id} for {day}")
            run = api.wait_for_run(
                dag_id, run_id, timeout=timeout, report=report, fail_on_retry=True
            )
            if run["state"] != "success":
                report(f"{dag_id} run {run_id} ended {run['state']}:")
                report(api.failure_report(dag_id, run_id))
                report(next_steps(stack, info, day, stays_up))
                return False
    finally:
        api.close()
    what = "both DAGs" if len(dags) == len(PIPELINE_DAGS) else ", ".join(dags)
    report(f"\n{what} succeeded for {day} in {time.monotonic() - started:.0f}s")
    if "data_processing" in dags:
        report(pipeline_summary(stack.pipeline_settings(), day))
    report(next_steps(stack, info, day, stays_up))
    return True


def pipeline_summary(settings: Settings, day: str) -> str:
    """Counts from the day's quality report."""
    import boto3

    s3 = boto3.client("s3", **settings.boto3_client_kwargs())
    key = layout.report_path(settings.processed_prefix, day)
    body = s3.get_object(Bucket=settings.data_bucket, Key=key)["Body"].read()
    quality = json.loads(body)
    reasons = {k: v for k, v in quality.get("quarantine_by_reason", {}).items() if v}
    tables = ", ".join(f"{name} {rows}" for name, rows in quality.get("tables", {}).items())
    return "\n".join(
        [
            f"quality report s3://{settings.data_bucket}/{key}:",
            f"  lines read {quality['lines_read']} = valid {quality['valid']} + quarantined "
            f"{quality['quarantined']} + duplicates dropped {quality['duplicates_dropped']}"
            f" (reconciled: {quality['reconciled']})",
            f"  quarantined by reason: {reasons or 'none'}",
            f"  table rows: {tables}",
        ]
    )


def next_steps(stack: Stack, info: Mapping[str, str], day: str, stays_up: bool = True) -> str:
    """What a user does after a run: where to look, how to rerun, how to stop."""
    settings = stack.pipeline_settings()
    login = f"{info['AIRFLOW_USERNAME']} / {info['AIRFLOW_PASSWORD']}"
    lines = ["", "next:"]
    if stays_up:
        lines.append(f"  Airflow UI      {info['AIRFLOW_API_URL']}   login {login}")
    lines += [
        f"  raw data        {layout.raw_day_dir(settings.raw_uri, day)}/",
        f"  processed data  {layout.table_day_dir(settings.processed_uri, '<table>', day)}/",
        f"  task logs       {settings.logs_uri}/  (also in the UI, per task)",
        f"  stack logs      {stack.log_dir}/<service>.log",
    ]
    if stays_up:
        lines.append(f"  list the data   nox -s ls -- {settings.processed_prefix}/")
    lines.append(f"  rerun one DAG   nox -s pipeline -- --dag data_processing --date {day}")
    lines.append(
        "  stop the stack  nox -s down"
        if stays_up
        else "  the stack is stopped (--down); its S3 data is gone with LocalStack"
    )
    return "\n".join(lines)


def list_objects(settings: Settings, where: str = "") -> list[str]:
    """`size  s3://bucket/key` for every object under `where`: s3://bucket/prefix, or a prefix
    of the data bucket (raw/, processed/orders/...)."""
    import boto3

    if where.startswith("s3://"):
        bucket, _, prefix = where.removeprefix("s3://").partition("/")
    else:
        bucket, prefix = settings.data_bucket, where.lstrip("/")
    s3 = boto3.client("s3", **settings.boto3_client_kwargs())
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            lines.append(f"{item['Size']:>12}  s3://{bucket}/{item['Key']}")
    return lines
