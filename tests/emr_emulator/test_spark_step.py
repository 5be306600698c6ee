"""A real spark-submit step: code and --py-files fetched from S3, run on local Spark as EMR's
command-runner.jar would run it on the primary node, with each rewrite in the controller log."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest

from tests.emr_emulator.support import (
    CODE_BUCKET,
    LOGS_BUCKET,
    cluster_request,
    wait_for_steps_to_end,
)

pytestmark = pytest.mark.spark

JOB = b"""
import importlib.util, os, sys
from pyspark.sql import SparkSession
from emu_lib import GREETING

spark = SparkSession.builder.getOrCreate()
conf = spark.sparkContext.getConf()
doubled = spark.sparkContext.parallelize(range(4), 2).map(lambda x: x * 2).sum()
print("doubled", doubled)
print("greeting", GREETING)
print("master", conf.get("spark.master"))
print("deploy_mode", conf.get("spark.submit.deployMode"))
print("from_spark_defaults", conf.get("spark.emulator.marker"))
print("repository_importable", importlib.util.find_spec("orchestration") is not None)
print("args", " ".join(sys.argv[1:]))
spark.stop()
"""


def py_files_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("emu_lib/__init__.py", 'GREETING = "hello from --py-files"\n')
    return buffer.getvalue()


def spark_step(application: str) -> dict:
    return {
        "Name": "spark job",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [
                "spark-submit",
                "--deploy-mode",
                "cluster",
                "--py-files",
                f"s3://{CODE_BUCKET}/jobs/lib.zip",
                "--conf",
                "spark.ui.enabled=false",
                application,
                "--date",
                "2026-01-15",
            ],
        },
    }


def read_log(emulator, cluster_id: str, step_id: str, name: str) -> str:
    key = f"emr/{cluster_id}/steps/{step_id}/{name}.gz"
    body = emulator.s3().get_object(Bucket=LOGS_BUCKET, Key=key)["Body"].read()
    return gzip.decompress(body).decode()


def test_a_spark_submit_step_runs_the_code_from_s3_on_local_spark(emr, emulator):
    s3 = emulator.s3()
    s3.put_object(Bucket=CODE_BUCKET, Key="jobs/job.py", Body=JOB)
    s3.put_object(Bucket=CODE_BUCKET, Key="jobs/lib.zip", Body=py_files_zip())
    configurations = [
        {"Classification": "spark-defaults", "Properties": {"spark.emulator.marker": "set"}},
        {
            "Classification": "spark-env",
            "Configurations": [
                {
                    "Classification": "export",
                    "Properties": {"PYSPARK_PYTHON": "/usr/bin/python3.11"},
                }
            ],
        },
    ]
    request = cluster_request(
        Name="spark",
        Configurations=configurations,
        Steps=[spark_step(f"s3://{CODE_BUCKET}/jobs/job.py")],
    )
    cluster_id = emr.run_job_flow(**request)["JobFlowId"]

    (step,) = wait_for_steps_to_end(emr, cluster_id, timeout=240)
    stdout = read_log(emulator, cluster_id, step["Id"], "stdout")
    assert step["Status"]["State"] == "COMPLETED", read_log(
        emulator, cluster_id, step["Id"], "stderr"
    )[-3000:]
    printed = dict(line.split(" ", 1) for line in stdout.splitlines() if " " in line)
    assert printed["doubled"] == "12"  # ran on executors, with the node's Python
    assert printed["greeting"] == "hello from --py-files"
    assert printed["master"] == "local[2]"  # the emulator's Spark, not yarn
    assert printed["deploy_mode"] == "client"
    assert printed["from_spark_defaults"] == "set"
    assert printed["repository_importable"] == "False", "the step saw the repository"
    assert printed["args"] == "--date 2026-01-15"
    controller = read_log(emulator, cluster_id, step["Id"], "controller")
    for rewrite in (
        "spark.master=yarn (EMR's spark-defaults) -> local[2]",
        "spark-env PYSPARK_PYTHON=/usr/bin/python3.11 -> ",
        "--deploy-mode cluster -> client",
        f"--py-files s3://{CODE_BUCKET}/jobs/lib.zip -> ",
        f"application s3://{CODE_BUCKET}/jobs/job.py -> ",
    ):
        assert rewrite in controller, controller
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_a_spark_step_whose_code_is_not_in_s3_fails_naming_the_object(emr, emulator):
    emulator.s3().put_object(Bucket=CODE_BUCKET, Key="jobs/lib.zip", Body=py_files_zip())
    missing = f"s3://{CODE_BUCKET}/jobs/not_uploaded.py"
    request = cluster_request(Name="missing-code", Steps=[spark_step(missing)])
    cluster_id = emr.run_job_flow(**request)["JobFlowId"]

    (step,) = wait_for_steps_to_end(emr, cluster_id)
    status = emr.describe_step(ClusterId=cluster_id, StepId=step["Id"])["Step"]["Status"]
    assert status["State"] == "FAILED"
    assert missing in status["FailureDetails"]["Message"]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
