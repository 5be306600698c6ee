"""What the EMR e2e tests share: a finished run as the user sees it, the checks every failed EMR run
must pass, and the EMR emulator's fault hook (host_stack/emr_emulator/faults.py) as a client.

Black-box like the rest of tests/e2e: Airflow's REST API, EMR's API, S3, and the emulator's
documented test endpoint; nothing here imports the DAGs or the emulator.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from host_stack.airflow import AirflowApi

# The EMR emulator's health and fault endpoints (host_stack/emr_emulator/).
EMULATOR_HEALTH_PATH = "/_emulator/health"
EMULATOR_FAULTS_PATH = "/_emulator/faults"
ACTIVE_CLUSTER_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING", "TERMINATING")
ENDED_CLUSTER_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")
# Each DAG runs one job in a task group named after the job's script.
JOB_GROUPS = {"data_generation": "data_generator", "data_processing": "data_processor"}


class EmulatorFaults:
    """Arms and disarms the EMR emulator's faults for the clusters named for a day."""

    def __init__(self, endpoint_url: str) -> None:
        self._client = httpx.Client(base_url=endpoint_url.rstrip("/"), timeout=10)

    def close(self) -> None:
        self._client.close()

    def is_emulator(self) -> bool:
        try:
            return self._client.get(EMULATOR_HEALTH_PATH).status_code == 200
        except httpx.HTTPError:
            return False

    def arm(self, cluster_name_contains: str, **faults: Any) -> None:
        body = {"cluster_name_contains": cluster_name_contains, **faults}
        response = self._client.post(EMULATOR_FAULTS_PATH, json=body)
        assert response.status_code == 200, f"arming {body}: {response.text}"

    def disarm(self, cluster_name_contains: str) -> None:
        params = {"cluster_name_contains": cluster_name_contains}
        self._client.delete(EMULATOR_FAULTS_PATH, params=params).raise_for_status()


def write_raw_day(s3, settings, day: str, *, lines: int, claimed: int) -> None:
    """A complete-looking raw day (with _SUCCESS) whose _manifest.json claims `claimed` lines.

    With claimed != lines the processing job refuses the day (it never publishes an
    unreconciled one), so its step fails on the cluster for real.
    """
    prefix = f"{settings.raw_prefix}/orders/dt={day}/"
    bucket = settings.data_bucket
    body = b"".join(b'{"order_id": "corrupt-%d"}\n' % i for i in range(lines))
    s3.put_object(Bucket=bucket, Key=prefix + "part-00000.json", Body=body)
    manifest = {"date": day, "rows": claimed, "lines": claimed}
    s3.put_object(Bucket=bucket, Key=prefix + "_manifest.json", Body=json.dumps(manifest))
    s3.put_object(Bucket=bucket, Key=prefix + "_SUCCESS", Body=b"")


def in_order(text: str, parts: list[str], what: str) -> None:
    """Each part occurs in `text` after the one before it."""
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{what} lacks {part!r} after offset {at}:\n{text}"
        at = found + len(part)


@dataclass
class FinishedRun:
    """A DAG run that has ended, as Airflow's REST API shows it."""

    api: AirflowApi
    dag_id: str
    run_id: str
    state: str
    instances: dict[str, dict]

    @classmethod
    def read(cls, api: AirflowApi, dag_id: str, run_id: str, state: str) -> FinishedRun:
        instances = {ti["task_id"]: ti for ti in api.task_instances(dag_id, run_id)}
        return cls(api, dag_id, run_id, state, instances)

    @property
    def group(self) -> str:
        return JOB_GROUPS[self.dag_id]

    @property
    def states(self) -> dict[str, str | None]:
        """Task states by the task's name within the job group (create_cluster, ...)."""
        return {
            task_id.removeprefix(f"{self.group}."): ti["state"]
            for task_id, ti in self.instances.items()
        }

    def log(self, task: str) -> str:
        """The log of the task's last try, as the REST API serves it."""
        task_id = f"{self.group}.{task}"
        try_number = self.instances[task_id]["try_number"]
        return self.api.task_log(self.dag_id, self.run_id, task_id, try_number)

    def cluster_id(self) -> str:
        return self.api.xcom(self.dag_id, self.run_id, f"{self.group}.create_cluster")

    def cluster(self, emr) -> dict:
        """The cluster the run created (create_cluster's XCom), as EMR describes it."""
        return emr.describe_cluster(ClusterId=self.cluster_id())["Cluster"]

    def assert_failed(self, **expected_states: str) -> None:
        """The run failed, with these tasks (names within the job group) in these states."""
        states = self.states
        assert self.state == "failed", f"{self.dag_id} run {self.run_id}: {states}"
        for task, state in expected_states.items():
            assert states.get(task) == state, f"{task} is {states.get(task)}, not {state}: {states}"


def clusters_for_day(emr, job: str, day: str) -> list[dict]:
    """Every cluster (any state) the job's runs for the day created: their names carry both."""
    found = []
    for page in emr.get_paginator("list_clusters").paginate():
        found += [c for c in page["Clusters"] if job in c["Name"] and day in c["Name"]]
    return found


def assert_nothing_left_running(emr, job: str, day: str) -> list[dict]:
    """No cluster of the job for the day is still up (or on its way); return them all."""
    clusters = clusters_for_day(emr, job, day)
    running = [c for c in clusters if c["Status"]["State"] not in ENDED_CLUSTER_STATES]
    assert not running, f"clusters left running for {job} {day}: {running}"
    return clusters
