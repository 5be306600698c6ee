"""
### Data processing (daily, PROCESSING_SCHEDULE, 18:00 by default)

Turns the raw orders of `{{ ds }}` into the processed tables: waits for the generator's success
marker of that day below `s3://<DATA_BUCKET>/<RAW_PREFIX>/` (so it never reads a half-written day;
spark_jobs/common/layout.py), then runs `spark_jobs/data_processor.py` into
`s3://<DATA_BUCKET>/<PROCESSED_PREFIX>/`.

Where Spark runs comes from config alone (`PIPELINE_ENV`): local submits to the standalone Spark
master; aws creates an EMR cluster, runs one step and always terminates the cluster
(orchestration/spark_job.py). Owner: data-platform.
"""

from __future__ import annotations

from airflow.sdk import DAG, chain

from config.config import get_settings
from orchestration.spark_job import (
    SparkJob,
    common_dag_args,
    daily_schedule,
    spark_job_tasks,
    wait_for_raw_day,
)

settings = get_settings()

PROCESS_ORDERS = SparkJob(
    script="data_processor.py",
    args=(
        "--date", "{{ ds }}",
        "--input", settings.raw_uri,
        "--output", settings.processed_uri,
    ),
)  # fmt: skip

with DAG(
    dag_id="data_processing",
    schedule=daily_schedule(settings.processing_schedule, settings),
    doc_md=__doc__,
    tags=["orders", "processing", f"env:{settings.pipeline_env}"],
    **common_dag_args(settings),
):
    chain(
        wait_for_raw_day(settings),  # the generator's day marker for {{ ds }}
        spark_job_tasks(PROCESS_ORDERS, settings),
    )
