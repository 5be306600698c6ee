"""The compose stacks are the production shape: Celery workers, Postgres metadata, Redis broker.

Docker mode only (`nox -s e2e_local -- --mode docker`, `nox -s e2e_aws_emulated -- --mode
docker`): the runner names the compose files in E2E_COMPOSE_FILES; host mode (SQLite and the
LocalExecutor) skips these with that reason. Runs after test_pipeline.py and looks at the runs
it made; alone, it looks at the newest successful runs. Besides Airflow's REST API, these look
into the stack's own containers (`docker compose exec`), which is what they are about.
"""

from __future__ import annotations

import ipaddress
import json

import pytest

from tests.e2e.compose_stack import COMPOSE_FILES, compose, inspect

DAGS = ("data_generation", "data_processing")

pytestmark = pytest.mark.skipif(
    not COMPOSE_FILES,
    reason="a compose stack only (E2E_COMPOSE_FILES): host mode runs SQLite and the LocalExecutor",
)


def container_ips(service: str) -> set[str]:
    """Every address of the service's containers on the stack's networks."""
    ips = set()
    for container in compose("ps", "--quiet", service).split():
        networks = inspect(container, "{{json .NetworkSettings.Networks}}")
        ips |= {net["IPAddress"] for net in json.loads(networks).values() if net["IPAddress"]}
    assert ips, f"no running container of {service}"
    return ips


def finished_runs(airflow_api, pipeline_runs) -> list[tuple[str, str]]:
    made = [(dag, run) for dag, run in pipeline_runs.runs if dag in DAGS]
    if made:
        return made
    runs = []
    for dag_id in DAGS:
        params = {"state": "success", "order_by": "-end_date", "limit": 1}
        found = airflow_api.request("GET", f"/dags/{dag_id}/dagRuns", params=params)["dag_runs"]
        assert found, f"no successful {dag_id} run to look at; run tests/e2e/test_pipeline.py"
        runs.append((dag_id, found[0]["dag_run_id"]))
    return runs


def test_tasks_ran_on_the_celery_worker_not_the_scheduler(airflow_api, pipeline_runs):
    worker, scheduler = container_ips("airflow-worker"), container_ips("airflow-scheduler")
    for dag_id, run_id in finished_runs(airflow_api, pipeline_runs):
        for ti in airflow_api.task_instances(dag_id, run_id):
            if ti["state"] != "success" or ti.get("operator") == "EmptyOperator":
                continue
            # Hosts are recorded by address (AIRFLOW__CORE__HOSTNAME_CALLABLE in the compose file).
            host = ti["hostname"]
            ipaddress.ip_address(host)
            assert host in worker, (
                f"{dag_id}.{ti['task_id']} ran on {host}; the worker is {worker}, "
                f"the scheduler {scheduler}"
            )
            assert host not in scheduler


def test_the_metadata_database_is_postgres(airflow_api, pipeline_runs):
    (dag_id, run_id), *_ = finished_runs(airflow_api, pipeline_runs)
    query = f"SELECT state FROM dag_run WHERE dag_id = '{dag_id}' AND run_id = '{run_id}'"
    state = compose("exec", "-T", "postgres", "psql", "-U", "airflow", "-d", "airflow",
                    "-tAc", query).strip()  # fmt: skip
    assert state == "success", f"Postgres has {dag_id} run {run_id} as {state!r}"
    conn = compose("exec", "-T", "airflow-scheduler", "airflow", "config", "get-value",
                   "database", "sql_alchemy_conn").strip()  # fmt: skip
    assert conn.startswith("postgresql"), "the scheduler's metadata database is not Postgres"


def test_the_celery_broker_is_redis():
    broker = compose("exec", "-T", "airflow-worker", "airflow", "config", "get-value",
                     "celery", "broker_url").strip()  # fmt: skip
    assert broker.startswith("redis://redis:"), broker
    # Kombu declares its queue bindings in the broker once a worker consumes from it.
    keys = compose("exec", "-T", "redis", "redis-cli", "--scan", "--pattern", "_kombu.binding.*")
    assert keys.split(), "Redis holds no Celery queue binding: the worker does not use it"
    stats = compose("exec", "-T", "redis", "redis-cli", "info", "stats")
    commands = int(next(line for line in stats.splitlines() if "total_commands_processed" in line)
                   .split(":")[1])  # fmt: skip
    assert commands > 0, stats
