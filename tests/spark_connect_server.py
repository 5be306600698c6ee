"""A real Spark Connect server for tests: host_stack's own (host_stack/spark_connect.py) on
local[2], started as a process and stopped when the block ends."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from host_stack.localstack import free_port
from host_stack.spark_connect import SparkConnectServer

READY_TIMEOUT_SECONDS = 180


@contextlib.contextmanager
def running_connect_server(
    job_conf: Mapping[str, str], log: Path
) -> Iterator[tuple[SparkConnectServer, int]]:
    """The server, ready, and its process id; its output goes to `log`."""
    server = SparkConnectServer(
        master_url="local[2]",
        port=free_port(),
        cores=2,
        job_conf={**job_conf, "spark.ui.enabled": "false"},
    )
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    with log.open("w") as out:
        process = subprocess.Popen(
            server.command(), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not server.ready()[0]:
            assert process.poll() is None, f"the server exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, (
                f"not ready after {READY_TIMEOUT_SECONDS} s:\n{log.read_text()[-3000:]}"
            )
            time.sleep(0.5)
        yield server, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
