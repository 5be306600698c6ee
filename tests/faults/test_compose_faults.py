"""Faults of the production shape, on the local compose stack (`nox -s faults -- --mode docker`).

1. The Celery worker container dies (SIGKILL to its init, as an out-of-memory kill would) while
   the processing job runs: Docker restarts it (restart: always), the scheduler fails the silent
   try after AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT, and the retry publishes the day.
2. Redis (the Celery broker) is restarted while the generator runs: the worker reconnects, the
   run completes, and the next DAG's tasks reach the worker through the restarted broker.
3. Postgres (the metadata database) is restarted while the scheduler runs a job: the scheduler and
   the api-server ride it out (or are restarted by Docker), and the run completes.

Each day ends published exactly once: the quality report reconciles with the raw manifest (every
raw line processed or quarantined), every table has its marker, no staging object is left.
Docker mode only: the runner names the compose files in E2E_COMPOSE_FILES; host mode skips.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from host_stack.airflow import AirflowApiError
from tests.e2e.compose_stack import COMPOSE_FILES, compose, inspect
from tests.faults.test_faults import (
    GENERATE_TASK,
    GENERATION,
    PROCESS_TASK,
    PROCESSING,
    RUN_TIMEOUT,
    assert_day_published,
    day_keys,
    finish,
    start_run,
    task,
    wait_for,
)

WORKER_DAY, REDIS_DAY, POSTGRES_DAY = "2026-03-01", "2026-03-02", "2026-03-03"

pytestmark = pytest.mark.skipif(
    not COMPOSE_FILES, reason="a compose stack only (nox -s faults -- --mode docker)"
)


def container(service: str) -> str:
    (container_id,) = compose("ps", "--quiet", service).split()
    return container_id


def start_and_wait_running(api, progress, dag_id: str, day: str, task_id: str) -> str:
    """A new run of the DAG for the day, once `task_id` runs on the worker: its run id."""
    run_id = start_run(api, progress, dag_id, day)
    wait_for(
        lambda: task(api, dag_id, run_id, task_id)["state"] == "running",
        RUN_TIMEOUT,
        f"{task_id} running on the worker",
        poll=0.5,
    )
    return run_id


def api_answers(api) -> bool:
    try:
        api.request("GET", "/dags", params={"limit": 1})
    except (AirflowApiError, httpx.HTTPError):
        return False
    return True


def generate(api, progress, day: str) -> None:
    finish(api, progress, GENERATION, start_run(api, progress, GENERATION, day))


def process_and_check(api, progress, s3, settings, day: str) -> dict:
    for key in day_keys(s3, settings, settings.processed_prefix, day):
        s3.delete_object(Bucket=settings.data_bucket, Key=key)  # start from an unpublished day
    finish(api, progress, PROCESSING, start_run(api, progress, PROCESSING, day))
    return assert_day_published(s3, settings, day)


def test_the_celery_worker_killed_mid_job_is_restarted_and_the_retry_publishes_the_day(
    airflow_api, progress, s3, settings
):
    generate(airflow_api, progress, WORKER_DAY)
    for key in day_keys(s3, settings, settings.processed_prefix, WORKER_DAY):
        s3.delete_object(Bucket=settings.data_bucket, Key=key)
    run_id = start_and_wait_running(airflow_api, progress, PROCESSING, WORKER_DAY, PROCESS_TASK)
    worker = container("airflow-worker")
    restarts = int(inspect(worker, "{{.RestartCount}}"))
    os.kill(int(inspect(worker, "{{.State.Pid}}")), signal.SIGKILL)
    progress("  killed the Celery worker container while the processing job ran")
    wait_for(
        lambda: (
            int(inspect(worker, "{{.RestartCount}}")) > restarts
            and inspect(worker, "{{.State.Running}}") == "true"
        ),
        120,
        "Docker restarting the worker container",
    )
    progress("  Docker restarted the worker container")

    finish(airflow_api, progress, PROCESSING, run_id)
    ti = task(airflow_api, PROCESSING, run_id, PROCESS_TASK)
    assert ti["try_number"] >= 2, f"the killed try should have been retried: {ti}"
    report = assert_day_published(s3, settings, WORKER_DAY)
    progress(f"  published on try {ti['try_number']}: {report['lines_read']} lines reconciled")


def test_redis_restarted_mid_run_the_broker_recovers_and_the_day_is_published(
    airflow_api, progress, s3, settings
):
    run_id = start_and_wait_running(airflow_api, progress, GENERATION, REDIS_DAY, GENERATE_TASK)
    compose("restart", "redis")
    progress("  restarted Redis while the generator ran")
    finish(airflow_api, progress, GENERATION, run_id)
    # The processing DAG's tasks reach the worker through the restarted broker.
    report = process_and_check(airflow_api, progress, s3, settings, REDIS_DAY)
    progress(f"  {report['lines_read']} lines reconciled after the broker restart")


def test_postgres_restarted_while_the_scheduler_runs_the_run_completes(
    airflow_api, progress, s3, settings
):
    run_id = start_and_wait_running(airflow_api, progress, GENERATION, POSTGRES_DAY, GENERATE_TASK)
    compose("restart", "postgres")
    progress("  restarted Postgres while the scheduler ran the generator")
    wait_for(lambda: api_answers(airflow_api), 180, "the api-server answering again", poll=2)
    time.sleep(2)
    finish(airflow_api, progress, GENERATION, run_id)
    report = process_and_check(airflow_api, progress, s3, settings, POSTGRES_DAY)
    progress(f"  {report['lines_read']} lines reconciled after the database restart")
