"""Faults injected into real runs on the local stack; the pipeline must end correct.

1. The processing spark-submit is killed (SIGKILL) mid-write: no partial day is published (no
   report, no table `_SUCCESS`), the task's try fails, and its retry publishes the whole day.
2. LocalStack is stopped while the generator runs and started again: the try fails, the retry
   writes the day into the re-created buckets, and the run completes. localstack-core keeps no
   state across a restart (PERSISTENCE is a Pro feature), so what was in S3 before is gone.
3. The Spark worker is killed (SIGKILL) while the processor writes: its supervisor restarts it,
   Spark runs the lost tasks on the new worker's executors, and the run completes.

The tests run in file order on one stack and build on each other's days. They observe through
Airflow's REST API and S3 only; the process table is used only to find what to kill. A retry
waits TASK_RETRY_DELAY_SECONDS (15 s locally).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from host_stack.stack import MARKER_ENV, Stack

GENERATION, PROCESSING = "data_generation", "data_processing"
GENERATE_TASK = "data_generator.spark_submit"
PROCESS_TASK = "data_processor.spark_submit"
TABLES = ("orders", "order_items", "customers", "payments", "daily_sales", "quarantine")
KILL_DAY = "2026-02-01"  # processing killed mid-write
RESTART_DAY = "2026-02-02"  # LocalStack restarted in generation; Spark worker lost in processing
RUN_TIMEOUT = 600


# --- helpers: Airflow's API, S3, the process table ----------------------------------------------


def start_run(api, progress: Callable[[str], None], dag_id: str, day: str) -> str:
    """A new run of the DAG for the day. Earlier runs of the date are deleted first: a cleared
    run keeps counting tries, and Airflow's exponential retry delay grows with the try number."""
    api.wait_for_dag(dag_id)
    api.unpause(dag_id)
    logical_date = f"{day}T00:00:00Z"
    window = {"logical_date_gte": logical_date, "logical_date_lte": logical_date}
    for run in api.request("GET", f"/dags/{dag_id}/dagRuns", params=window)["dag_runs"]:
        api.request("DELETE", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}")
    run_id = api.trigger(dag_id, logical_date)
    progress(f"{dag_id}: run {run_id} for {day}")
    return run_id


def finish(api, progress: Callable[[str], None], dag_id: str, run_id: str) -> dict:
    """Wait for the run to end, retries included; fail with the task logs unless it succeeded."""
    run = api.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT, report=progress)
    if run["state"] != "success":
        pytest.fail(
            f"{dag_id} run {run_id} ended {run['state']}:\n{api.failure_report(dag_id, run_id)}",
            pytrace=False,
        )
    return run


def task(api, dag_id: str, run_id: str, task_id: str) -> dict:
    return next(ti for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == task_id)


def wait_for(condition: Callable[[], Any], timeout: float, what: str, poll: float = 0.25) -> Any:
    """The first truthy value of condition(), or fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not seen within {timeout:.0f}s", pytrace=False)
        time.sleep(poll)


def failed_try(api, dag_id: str, run_id: str, task_id: str) -> dict | None:
    """The task instance once its try has ended badly (or succeeded: the fault came too late)."""
    ti = task(api, dag_id, run_id, task_id)
    return ti if ti["state"] in ("up_for_retry", "failed", "success") else None


def day_keys(s3, settings, prefix: str, day: str) -> list[str]:
    keys: list[str] = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.data_bucket, Prefix=f"{prefix}/"
    )
    for page in pages:
        keys += [o["Key"] for o in page.get("Contents", []) if f"/dt={day}/" in o["Key"]]
    return keys


def read_json(s3, settings, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=settings.data_bucket, Key=key)["Body"].read())


def report_key(settings, day: str) -> str:
    return f"{settings.processed_prefix}/reports/dt={day}/quality_report.json"


def manifest(s3, settings, day: str) -> dict:
    return read_json(s3, settings, f"{settings.raw_prefix}/orders/dt={day}/_manifest.json")


def stack_jvms(stack: Stack, main_class: str, *cmdline_parts: str) -> list[psutil.Process]:
    """Live JVMs of this stack (its marker variable) running main_class with the given parts.

    Only `java` processes: the worker's supervisor and Airflow's task process have the same
    words in their command lines."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] != "java" or main_class not in cmdline:
            continue
        if not all(any(part in arg for arg in cmdline) for part in cmdline_parts):
            continue
        try:
            if proc.environ().get(MARKER_ENV) == str(stack.state_dir) and proc.is_running():
                found.append(proc)
        except psutil.Error:
            continue
    return found


def job_driver(stack: Stack, script: str) -> psutil.Process | None:
    """The spark-submit JVM (the driver, client mode) running spark_jobs/<script>."""
    found = stack_jvms(stack, "org.apache.spark.deploy.SparkSubmit", script)
    return found[0] if found else None


def worker_jvm(stack: Stack) -> psutil.Process | None:
    found = stack_jvms(stack, "org.apache.spark.deploy.worker.Worker")
    return found[0] if found else None


def assert_day_published(s3, settings, day: str) -> dict:
    """The day's report reconciles with the raw manifest; every table is marked; no staging."""
    report = read_json(s3, settings, report_key(settings, day))
    assert report["reconciled"] is True
    assert report["lines_read"] == manifest(s3, settings, day)["lines"]
    keys = day_keys(s3, settings, settings.processed_prefix, day)
    for table in TABLES:
        assert f"{settings.processed_prefix}/{table}/dt={day}/_SUCCESS" in keys, table
    leftovers = [k for k in keys if "/_temporary/" in k]
    assert not leftovers, f"staging objects left behind: {leftovers[:5]}"
    return report


def assert_work_went_on_after_the_loss(server_log: str) -> None:
    """The Connect server's log since the run began: it lost its executor while the job's
    session was open, and the job's later tasks finished on another executor."""
    lost = re.search(r"Lost executor (\S+) on", server_log)
    assert lost, "the Spark Connect server's log shows no lost executor since the run began"
    after = server_log[lost.end() :]
    closed = after.find("Closing session")
    assert closed >= 0, "the job's session closed before the executor was lost: killed too late"
    executors = set(re.findall(r"Finished task \S+ in stage .*\(executor (\S+)\)", after[:closed]))
    assert executors - {lost.group(1)}, (
        f"no task finished on a new executor after executor {lost.group(1)} was lost, before "
        "the job's session closed: the worker was killed after the job's last task"
    )


# --- the faults ---------------------------------------------------------------------------------


def test_a_processing_job_killed_mid_write_publishes_nothing_and_its_retry_succeeds(
    airflow_api, progress, stack, s3, settings
):
    finish(
        airflow_api, progress, GENERATION, start_run(airflow_api, progress, GENERATION, KILL_DAY)
    )
    for key in day_keys(s3, settings, settings.processed_prefix, KILL_DAY):
        s3.delete_object(Bucket=settings.data_bucket, Key=key)  # start from an unpublished day
    run_id = start_run(airflow_api, progress, PROCESSING, KILL_DAY)

    written = wait_for(
        lambda: day_keys(s3, settings, settings.processed_prefix, KILL_DAY),
        RUN_TIMEOUT,
        "the processor's first object under processed/",
    )
    driver = job_driver(stack, "data_processor.py")
    assert driver is not None, "no spark-submit of data_processor.py found to kill"
    driver.kill()
    progress(f"  killed spark-submit pid {driver.pid} once {written[0]} existed")

    ti = wait_for(
        lambda: failed_try(airflow_api, PROCESSING, run_id, PROCESS_TASK), 180, "the killed try"
    )
    assert ti["state"] == "up_for_retry", f"the killed try should wait for a retry: {ti}"
    # Between the kill and the retry: partial output exists, and none of it is published.
    keys = day_keys(s3, settings, settings.processed_prefix, KILL_DAY)
    progress(f"  after the kill: {len(keys)} objects for {KILL_DAY}, e.g. {keys[:3]}")
    assert keys, "nothing was written before the kill: the fault missed the write"
    assert report_key(settings, KILL_DAY) not in keys, "a killed run published its report"
    markers = [k for k in keys if k.endswith("/_SUCCESS")]
    assert not markers, f"a killed run marked tables as published: {markers}"

    finish(airflow_api, progress, PROCESSING, run_id)
    assert task(airflow_api, PROCESSING, run_id, PROCESS_TASK)["try_number"] == 2
    assert_day_published(s3, settings, KILL_DAY)


def test_localstack_restarted_during_a_run_the_task_retries_and_the_run_completes(
    airflow_api, progress, stack, s3, settings
):
    run_id = start_run(airflow_api, progress, GENERATION, RESTART_DAY)
    wait_for(lambda: job_driver(stack, "data_generator.py"), RUN_TIMEOUT, "the generator's JVM")
    stopped = stack.down(names=["localstack"])
    assert stopped == ["localstack"]
    progress("  LocalStack stopped while the generator starts")

    ti = wait_for(
        lambda: failed_try(airflow_api, GENERATION, run_id, GENERATE_TASK),
        300,
        "the generator's try without S3",
    )
    assert ti["state"] == "up_for_retry", f"the try without S3 should wait for a retry: {ti}"
    stack.up()  # starts only what is missing: LocalStack, and re-creates the buckets
    kept = s3.list_objects_v2(Bucket=settings.data_bucket, MaxKeys=1).get("KeyCount", 0)
    progress(f"  LocalStack restarted; objects kept from before the restart: {kept}")

    finish(airflow_api, progress, GENERATION, run_id)
    assert task(airflow_api, GENERATION, run_id, GENERATE_TASK)["try_number"] >= 2
    written = manifest(s3, settings, RESTART_DAY)
    keys = day_keys(s3, settings, settings.raw_prefix, RESTART_DAY)
    parts = [k for k in keys if k.rsplit("/", 1)[-1].startswith("part-")]
    lines = sum(
        len(s3.get_object(Bucket=settings.data_bucket, Key=k)["Body"].read().splitlines())
        for k in parts
    )
    assert lines == written["lines"] > 0
    assert f"{settings.raw_prefix}/orders/dt={RESTART_DAY}/_SUCCESS" in keys


def test_a_spark_worker_lost_mid_job_is_restarted_and_the_job_finishes(
    airflow_api, progress, stack, s3, settings
):
    worker = worker_jvm(stack)
    assert worker is not None, "no Spark worker JVM found"
    # With SPARK_CONNECT_URL set the job's driver is the stack's Spark Connect server: its log.
    server_log = stack.log_dir / "spark-connect.log"
    server_log_start = server_log.stat().st_size if server_log.exists() else 0
    for key in day_keys(s3, settings, settings.processed_prefix, RESTART_DAY):
        s3.delete_object(Bucket=settings.data_bucket, Key=key)
    run_id = start_run(airflow_api, progress, PROCESSING, RESTART_DAY)

    written = wait_for(
        lambda: day_keys(s3, settings, settings.processed_prefix, RESTART_DAY),
        RUN_TIMEOUT,
        "the processor's first object under processed/",
    )
    worker.kill()
    progress(f"  killed the Spark worker (pid {worker.pid}) once {written[0]} existed")
    restarted = wait_for(
        lambda: (jvm := worker_jvm(stack)) is not None and jvm.pid != worker.pid and jvm,
        60,
        "a new Spark worker JVM (the supervisor's restart)",
    )
    progress(f"  the supervisor restarted the worker: pid {restarted.pid}")

    finish(airflow_api, progress, PROCESSING, run_id)
    ti = task(airflow_api, PROCESSING, run_id, PROCESS_TASK)
    progress(f"  {PROCESS_TASK} succeeded on try {ti['try_number']}")
    assert_day_published(s3, settings, RESTART_DAY)
    if server_log.exists():
        with server_log.open("rb") as log:
            log.seek(server_log_start)
            assert_work_went_on_after_the_loss(log.read().decode(errors="replace"))
    else:
        logs = "\n".join(
            airflow_api.task_log(PROCESSING, run_id, PROCESS_TASK, n)
            for n in range(1, ti["try_number"] + 1)
        )
        assert re.search(r"Lost (an )?executor|ExecutorLostFailure", logs), (
            "the driver's log shows no lost executor: the worker was killed after the job's tasks"
        )
    assert stack.spark().alive_workers() >= 1
