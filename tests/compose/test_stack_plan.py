"""Host mode's local plan (host_stack/plans.py) held against its Docker twin, the merged
docker-compose.yml + docker-compose.local.yml rendered by the real Compose CLI.

Each service of the plan has a twin in compose, or is host-only; each twin has the same lifecycle
and the same dependencies, except the differences written down here (each with its reason, as
host_stack/stack.py's docstring gives them). A change on either side fails until this table says
why the two may differ.
"""

from __future__ import annotations

import os

import pytest

from host_stack.localstack import free_port
from host_stack.plan import COMPLETED, HEALTHY, ONE_SHOT, STARTED, Plan
from host_stack.stack import Stack, StackSettings
from tests.compose.conftest import MERGED, render

# Host plan service -> its compose service.
TWINS = {
    "localstack": "localstack",
    "buckets": "localstack-init",
    "spark-master": "spark-master",
    "spark-worker": "spark-worker",
    "spark-connect": "spark-connect",
    "airflow-migrate": "airflow-init",
    "airflow-api-server": "airflow-apiserver",
    "airflow-scheduler": "airflow-scheduler",
    "airflow-dag-processor": "airflow-dag-processor",
    "airflow-triggerer": "airflow-triggerer",
}
# In the plan only: the jobs' class-data archive and the Connect server's warm-up (host JVMs),
# and the log servers (in compose each worker's own serve-logs, inside its container).
HOST_ONLY = {
    "spark-cds",
    "spark-connect-warmup",
    "airflow-log-servers",
}
# In compose only: the Celery executor's database, broker and worker (host mode runs SQLite and
# the LocalExecutor).
COMPOSE_ONLY = {"postgres", "redis", "airflow-worker"}
CONDITIONS = {
    "service_started": STARTED,
    "service_healthy": HEALTHY,
    "service_completed_successfully": COMPLETED,
}
_NO_BUCKETS = "Airflow starts without the buckets in host mode: only DAG runs need them"
# (service, dependency): (condition in the plan, in compose, why they differ). None = absent.
DIFFERENCES = {
    ("spark-worker", "spark-master"): (
        STARTED,
        HEALTHY,
        "the worker retries registration only every 5-15 s: started once the master's port opens",
    ),
    ("spark-connect", "spark-master"): (
        HEALTHY,
        None,
        "the Connect server needs the master only; it starts beside the worker",
    ),
    ("spark-connect", "spark-worker"): (
        None,
        HEALTHY,
        "the Connect server needs the master only; it starts beside the worker",
    ),
    **{
        (f"airflow-{c}", "buckets"): (None, COMPLETED, _NO_BUCKETS)
        for c in ("api-server", "scheduler", "dag-processor", "triggerer")
    },
}


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    ports = {
        name: free_port()
        for name in (
            "airflow_api_port",
            "spark_master_port",
            "spark_master_webui_port",
            "spark_connect_port",
            "localstack_port",
        )
    }
    settings = StackSettings(**ports, state_dir=tmp_path_factory.mktemp("stack"))
    environ = {k: v for k, v in os.environ.items() if k != "PIPELINE_ENV"}
    return Stack(settings=settings, report=lambda line: None, environ=environ).plan()


@pytest.fixture(scope="module")
def compose() -> dict:
    return render(MERGED)["services"]


def _compose_depends(service: dict) -> dict[str, str]:
    deps = (service.get("depends_on") or {}).items()
    return {name: CONDITIONS[dep["condition"]] for name, dep in deps}


def test_every_service_has_a_twin_or_a_reason(plan: Plan, compose: dict) -> None:
    assert set(plan.names()) == set(TWINS) | HOST_ONLY
    assert set(compose) == set(TWINS.values()) | COMPOSE_ONLY


@pytest.mark.parametrize("name", sorted(TWINS))
def test_twins_have_the_same_lifecycle(plan: Plan, compose: dict, name: str) -> None:
    """A compose service is a one-shot when others wait for it to complete."""
    awaited = {
        dep
        for service in compose.values()
        for dep, condition in _compose_depends(service).items()
        if condition == COMPLETED
    }
    assert (plan[name].lifecycle == ONE_SHOT) == (TWINS[name] in awaited)


@pytest.mark.parametrize("name", sorted(TWINS))
def test_twins_depend_on_the_same_services_unless_written_down(
    plan: Plan, compose: dict, name: str
) -> None:
    twin_of = {twin: host for host, twin in TWINS.items()}
    compose_deps = {
        twin_of[dep]: condition
        for dep, condition in _compose_depends(compose[TWINS[name]]).items()
        if dep in twin_of
    }
    plan_deps = dict(plan[name].depends_on)
    for (service, dependency), (in_plan, in_compose, _why) in DIFFERENCES.items():
        if service == name:
            assert plan_deps.get(dependency) == in_plan, (service, dependency)
            assert compose_deps.get(dependency) == in_compose, (service, dependency)
            plan_deps.pop(dependency, None)
            compose_deps.pop(dependency, None)
    assert plan_deps == compose_deps


@pytest.mark.parametrize("name", sorted(TWINS))
def test_a_long_running_twin_with_a_healthcheck_has_a_readiness_check(
    plan: Plan, compose: dict, name: str
) -> None:
    """Readiness as compose's healthchecks: Airflow's scheduler, dag-processor and triggerer are
    ready in host mode when the API server's health document says so (one check for all)."""
    service = plan[name]
    if service.lifecycle == ONE_SHOT or not compose[TWINS[name]].get("healthcheck"):
        return
    answered_by_api_server = name in (
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
    )
    assert service.ready is not None or answered_by_api_server
    if answered_by_api_server:
        assert plan["airflow-api-server"].ready is not None
