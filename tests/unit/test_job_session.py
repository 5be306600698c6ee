"""The jobs' own SparkSession settings (spark_jobs/common/session.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spark_jobs.common.session import JOB_SESSION_CONF

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json
from pyspark.errors.utils import is_debugging_enabled
from spark_jobs.common.session import JOB_SESSION_CONF, job_session
session = job_session("job-session-probe")
settings = {key: session.conf.get(key) for key in JOB_SESSION_CONF}
print(json.dumps({"settings": settings, "debugging": is_debugging_enabled()}))
session.stop()
"""


@pytest.mark.spark
def test_a_new_job_session_turns_pyspark_dataframe_debugging_off():
    # The setting is static: it holds only in a session the job itself starts, as under
    # spark-submit, so the probe starts one in its own process.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYSPARK_SUBMIT_ARGS": "--master local[1] pyspark-shell",
    }
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert seen == {"settings": JOB_SESSION_CONF, "debugging": False}
