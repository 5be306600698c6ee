"""The EMR emulator as a process on a free port, with the real LocalStack for S3 and IAM.

Tests talk to it only through boto3, as Airflow's EMR operators do (helpers: support.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from host_stack.localstack import create_buckets, create_emr_roles, free_port
from tests.emr_emulator.support import (
    CODE_BUCKET,
    IDLE_TIMEOUT,
    INSTANCE_PROFILE,
    LOGS_BUCKET,
    SERVICE_ROLE,
    Emulator,
    cluster_request,
    healthy,
    wait_for,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def emulator(localstack, tmp_path_factory) -> Iterator[Emulator]:
    """`python -m host_stack.emr_emulator` on a free port; LocalStack holds its S3 and IAM."""
    create_buckets(localstack.endpoint_url, [LOGS_BUCKET, CODE_BUCKET])
    create_emr_roles(localstack.endpoint_url, SERVICE_ROLE, INSTANCE_PROFILE)
    work_dir = tmp_path_factory.mktemp("emr-emulator")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "PIPELINE_ENV": "aws",
        "AWS_ENDPOINT_URL": localstack.endpoint_url,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",  # pragma: allowlist secret (LocalStack dummy)
        "PYTHONPATH": str(REPO_ROOT),
    }
    log = work_dir / "emulator.log"
    command = [sys.executable, "-m", "host_stack.emr_emulator", "--port", str(port)]
    command += ["--spark-master", "local[2]", "--work-dir", str(work_dir)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
        )
    info = Emulator(f"http://127.0.0.1:{port}", localstack.endpoint_url, work_dir, log)
    try:

        def answering() -> bool:
            if process.poll() is not None:
                pytest.fail(f"the emulator exited ({process.returncode}):\n{log.read_text()}")
            return healthy(info.endpoint_url)

        wait_for(f"the emulator answering (log {log})", answering, timeout=60)
        emr = info.client()
        request = cluster_request(
            Name="idle-cluster", AutoTerminationPolicy={"IdleTimeout": IDLE_TIMEOUT}
        )
        info.idle_cluster_id = emr.run_job_flow(**request)["JobFlowId"]
        info.idle_cluster_created = time.monotonic()
        yield info
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def emr(emulator: Emulator) -> Any:
    return emulator.client()
