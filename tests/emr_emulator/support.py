"""Helpers of the EMR emulator tests: requests, steps, and waiting on states through boto3.

Tests talk to it only through boto3, as Airflow's EMR operators do. Steps that need no Spark run
`bash -c ...` through command-runner.jar (EMR runs any command that way), so the lifecycle tests
take seconds; one test runs a real spark-submit (local[2]: no standalone master in unit tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

SERVICE_ROLE = "EMR_DefaultRole"
INSTANCE_PROFILE = "EMR_EC2_DefaultRole"
RELEASE = "emr-spark-8.0.0"
LOGS_BUCKET = "emulator-logs"
CODE_BUCKET = "emulator-code"
# Created as soon as the emulator is up; test_idle_timeout checks it last, ~60 s later.
IDLE_TIMEOUT = 60


@dataclass
class Emulator:
    endpoint_url: str
    localstack_url: str
    work_dir: Path
    log: Path
    idle_cluster_id: str = ""
    idle_cluster_created: float = 0.0

    def client(self, **config: Any) -> Any:
        return boto3.client(
            "emr",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",  # pragma: allowlist secret (LocalStack dummy)
            config=Config(**config) if config else None,
        )

    def s3(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.localstack_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",  # pragma: allowlist secret (LocalStack dummy)
        )


def cluster_request(**overrides: Any) -> dict[str, Any]:
    """A RunJobFlow request shaped like envs/aws/emr_cluster.json, small enough to edit."""
    request: dict[str, Any] = {
        "Name": "emulator-test",
        "ReleaseLabel": RELEASE,
        "LogUri": f"s3://{LOGS_BUCKET}/emr/",
        "Applications": [{"Name": "Spark"}],
        "Instances": {
            "InstanceGroups": [
                {"InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1},
                {"InstanceRole": "CORE", "InstanceType": "m5.xlarge", "InstanceCount": 2},
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        "JobFlowRole": INSTANCE_PROFILE,
        "ServiceRole": SERVICE_ROLE,
    }
    request.update(overrides)
    return request


def shell_step(name: str, script: str, on_failure: str = "CONTINUE") -> dict[str, Any]:
    """A command-runner.jar step running a bash script on the (emulated) primary node."""
    return {
        "Name": name,
        "ActionOnFailure": on_failure,
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["bash", "-c", script]},
    }


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30, poll: float = 0.2) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll)
    pytest.fail(f"{what} not reached after {timeout:.0f}s (last: {last!r})")


def cluster_state(emr: Any, cluster_id: str) -> dict[str, Any]:
    return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]


def step_status(emr: Any, cluster_id: str, step_id: str) -> dict[str, Any]:
    return emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]


def wait_for_cluster(emr: Any, cluster_id: str, states: tuple[str, ...], timeout: float = 30):
    return wait_for(
        f"cluster {cluster_id} in {states}",
        lambda: (s := cluster_state(emr, cluster_id))["State"] in states and s,
        timeout,
    )


def wait_for_steps_to_end(emr: Any, cluster_id: str, timeout: float = 30) -> list[dict]:
    """Every step of the cluster, oldest first, once none is PENDING or RUNNING."""

    def ended() -> list[dict] | None:
        steps = emr.list_steps(ClusterId=cluster_id)["Steps"]
        if any(s["Status"]["State"] in ("PENDING", "RUNNING") for s in steps):
            return None
        return list(reversed(steps))

    return wait_for(f"steps of {cluster_id} ended", ended, timeout)


def healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/_emulator/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
