"""A cluster's life on the emulator: provisioning, steps in order with real timing, logs, and
ActionOnFailure, all observed through boto3 as Airflow's operators observe them."""

from __future__ import annotations

import gzip

from tests.emr_emulator.support import (
    CODE_BUCKET,
    LOGS_BUCKET,
    cluster_request,
    cluster_state,
    shell_step,
    wait_for_cluster,
    wait_for_steps_to_end,
)


def read_log(emulator, cluster_id: str, step_id: str, name: str) -> str:
    key = f"emr/{cluster_id}/steps/{step_id}/{name}.gz"
    body = emulator.s3().get_object(Bucket=LOGS_BUCKET, Key=key)["Body"].read()
    return gzip.decompress(body).decode()


def test_a_new_cluster_starts_then_waits_for_steps(emr):
    cluster_id = emr.run_job_flow(**cluster_request(Name="provisioning"))["JobFlowId"]

    status = wait_for_cluster(emr, cluster_id, ("WAITING",))
    cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["ReleaseLabel"] == "emr-spark-8.0.0"
    # What the release runs, from envs/aws/emr_releases.toml: Spark 4.0.2-amzn-0 shows as 4.0.2.
    assert cluster["Applications"] == [{"Name": "Spark", "Version": "4.0.2"}]
    assert status["Timeline"]["ReadyDateTime"] >= status["Timeline"]["CreationDateTime"]
    assert status["StateChangeReason"]["Message"] == "Cluster ready to run steps."
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_steps_run_in_order_with_real_timing_logs_and_failure_details(emr, emulator):
    steps = [
        shell_step("first", "sleep 1; echo hello from the first step"),
        shell_step("fails", "echo 'ValueError: the input is broken' >&2; exit 3"),
        shell_step("after a failure with CONTINUE", "echo still running"),
    ]
    cluster_id = emr.run_job_flow(**cluster_request(Name="in-order", Steps=steps))["JobFlowId"]

    first, failed, after = wait_for_steps_to_end(emr, cluster_id)
    assert [s["Status"]["State"] for s in (first, failed, after)] == [
        "COMPLETED",
        "FAILED",
        "COMPLETED",
    ]
    first_time, failed_time = first["Status"]["Timeline"], failed["Status"]["Timeline"]
    assert (first_time["EndDateTime"] - first_time["StartDateTime"]).total_seconds() >= 1
    assert failed_time["StartDateTime"] >= first_time["EndDateTime"], "steps overlapped"
    details = emr.describe_step(ClusterId=cluster_id, StepId=failed["Id"])["Step"]["Status"][
        "FailureDetails"
    ]
    assert details["Reason"] == "ValueError"
    assert details["Message"] == "ValueError: the input is broken"
    assert (
        details["LogFile"] == f"s3://{LOGS_BUCKET}/emr/{cluster_id}/steps/{failed['Id']}/stderr.gz"
    )
    assert read_log(emulator, cluster_id, first["Id"], "stdout") == "hello from the first step\n"
    assert "ValueError: the input is broken" in read_log(
        emulator, cluster_id, failed["Id"], "stderr"
    )
    assert "exit code 3" in read_log(emulator, cluster_id, failed["Id"], "controller")
    # KeepJobFlowAliveWhenNoSteps: the cluster waits for more work.
    assert wait_for_cluster(emr, cluster_id, ("WAITING",))["State"] == "WAITING"
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_steps_added_later_run_on_the_waiting_cluster(emr, emulator):
    cluster_id = emr.run_job_flow(**cluster_request(Name="add-steps"))["JobFlowId"]
    wait_for_cluster(emr, cluster_id, ("WAITING",))

    (step_id,) = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[shell_step("later", "echo $AWS_ENDPOINT_URL")]
    )["StepIds"]

    (step,) = wait_for_steps_to_end(emr, cluster_id)
    assert step["Id"] == step_id
    assert step["Status"]["State"] == "COMPLETED"
    # The step's AWS access is LocalStack's (a node's instance profile, here).
    assert read_log(emulator, cluster_id, step_id, "stdout").strip() == emulator.localstack_url
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_terminate_cluster_on_failure_cancels_the_rest_and_ends_with_errors(emr):
    steps = [
        shell_step("fails", "exit 1", on_failure="TERMINATE_CLUSTER"),
        shell_step("never runs", "echo never"),
    ]
    cluster_id = emr.run_job_flow(**cluster_request(Name="terminate-on-failure", Steps=steps))[
        "JobFlowId"
    ]

    status = wait_for_cluster(emr, cluster_id, ("TERMINATED", "TERMINATED_WITH_ERRORS"))
    assert status["State"] == "TERMINATED_WITH_ERRORS"
    assert status["StateChangeReason"] == {
        "Code": "STEP_FAILURE",
        "Message": "Shut down as step failed",
    }
    failed, cancelled = wait_for_steps_to_end(emr, cluster_id)
    assert (failed["Status"]["State"], cancelled["Status"]["State"]) == ("FAILED", "CANCELLED")


def test_cancel_and_wait_cancels_the_rest_and_keeps_the_cluster(emr):
    steps = [
        shell_step("fails", "exit 1", on_failure="CANCEL_AND_WAIT"),
        shell_step("cancelled", "echo never"),
    ]
    cluster_id = emr.run_job_flow(**cluster_request(Name="cancel-and-wait", Steps=steps))[
        "JobFlowId"
    ]

    failed, cancelled = wait_for_steps_to_end(emr, cluster_id)
    assert (failed["Status"]["State"], cancelled["Status"]["State"]) == ("FAILED", "CANCELLED")
    assert wait_for_cluster(emr, cluster_id, ("WAITING",))["State"] == "WAITING"
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_a_jar_other_than_command_runner_fails_its_step_and_says_why(emr):
    step = {
        "Name": "custom jar",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": f"s3://{CODE_BUCKET}/app.jar", "MainClass": "com.example.Main"},
    }
    cluster_id = emr.run_job_flow(**cluster_request(Name="custom-jar", Steps=[step]))["JobFlowId"]

    (ended,) = wait_for_steps_to_end(emr, cluster_id)
    status = emr.describe_step(ClusterId=cluster_id, StepId=ended["Id"])["Step"]["Status"]
    assert status["State"] == "FAILED"
    assert "command-runner.jar steps only" in status["FailureDetails"]["Message"]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    assert cluster_state(emr, cluster_id)["State"] in ("TERMINATING", "TERMINATED")


def test_a_python_traceback_in_stdout_is_the_failure_reason(emr):
    # spark-submit merges a Python driver's stderr into its stdout: the traceback lands there.
    script = "echo Traceback; echo \"  raise KeyError('dt')\"; echo \"KeyError: 'dt'\"; exit 1"
    step = shell_step("python driver fails", script)
    cluster_id = emr.run_job_flow(**cluster_request(Name="stdout-traceback", Steps=[step]))[
        "JobFlowId"
    ]

    (ended,) = wait_for_steps_to_end(emr, cluster_id)
    details = emr.describe_step(ClusterId=cluster_id, StepId=ended["Id"])["Step"]["Status"][
        "FailureDetails"
    ]
    assert details["Reason"] == "KeyError"
    assert details["Message"] == "KeyError: 'dt'"
    assert details["LogFile"].endswith(f"/{cluster_id}/steps/{ended['Id']}/stdout.gz")
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
