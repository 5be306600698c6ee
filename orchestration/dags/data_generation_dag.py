"""
### Data generation (daily, GENERATION_SCHEDULE, 09:00 by default)

Writes one day of synthetic orders: `spark_jobs/data_generator.py` for the run's logical date
`{{ ds }}` into that day's raw partition below `s3://<DATA_BUCKET>/<RAW_PREFIX>/`, with its success
marker written last (the processing DAG waits for it; spark_jobs/common/layout.py names both).

Where Spark runs comes from config alone (`PIPELINE_ENV`): local submits to the standalone Spark
master; aws creates an EMR cluster, runs one step and always terminates the cluster
(orchestration/spark_job.py). Owner: data-platform.
"""

from __future__ import annotations

from airflow.sdk import DAG

from config.config import get_settings
from orchestration.spark_job import SparkJob, common_dag_args, daily_schedule, spark_job_tasks

settings = get_settings()

GENERATE_ORDERS = SparkJob(
    script="data_generator.py",
    args=(
        "--date", "{{ ds }}",
        "--rows", str(settings.rows_per_day),
        "--output", settings.raw_uri,
        "--seed", str(settings.seed),
        "--bad-record-rate", str(settings.bad_record_rate),
    ),
)  # fmt: skip

with DAG(
    dag_id="data_generation",
    schedule=daily_schedule(settings.generation_schedule, settings),
    doc_md=__doc__,
    tags=["orders", "generation", f"env:{settings.pipeline_env}"],
    **common_dag_args(settings),
):
    spark_job_tasks(GENERATE_ORDERS, settings)
