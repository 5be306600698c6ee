"""How clusters end on the emulator: on request, after their last step, after being idle, and
when provisioning fails (service role, bootstrap action), with EMR's states and reason codes."""

from __future__ import annotations

import time

from tests.emr_emulator.support import (
    CODE_BUCKET,
    IDLE_TIMEOUT,
    cluster_request,
    cluster_state,
    shell_step,
    wait_for_cluster,
    wait_for_steps_to_end,
)


def test_terminate_stops_the_running_step_and_cancels_the_pending_ones(emr):
    steps = [shell_step("long", "sleep 120"), shell_step("pending", "echo never")]
    cluster_id = emr.run_job_flow(**cluster_request(Name="terminate", Steps=steps))["JobFlowId"]
    wait_for_cluster(emr, cluster_id, ("RUNNING",))
    started = time.monotonic()

    emr.terminate_job_flows(JobFlowIds=[cluster_id])

    assert cluster_state(emr, cluster_id)["State"] in ("TERMINATING", "TERMINATED")
    status = wait_for_cluster(emr, cluster_id, ("TERMINATED",), timeout=30)
    assert time.monotonic() - started < 30, "the running step was not stopped"
    assert status["StateChangeReason"] == {
        "Code": "USER_REQUEST",
        "Message": "Terminated by user request",
    }
    assert status["Timeline"]["EndDateTime"] >= status["Timeline"]["CreationDateTime"]
    states = [s["Status"]["State"] for s in wait_for_steps_to_end(emr, cluster_id)]
    assert states == ["CANCELLED", "CANCELLED"]
    # Terminating an ended cluster again is accepted, as on EMR.
    emr.terminate_job_flows(JobFlowIds=[cluster_id])


def test_without_keep_alive_the_cluster_ends_after_its_last_step(emr):
    request = cluster_request(Name="auto-terminate", Steps=[shell_step("only", "true")])
    request["Instances"]["KeepJobFlowAliveWhenNoSteps"] = False
    cluster_id = emr.run_job_flow(**request)["JobFlowId"]

    status = wait_for_cluster(emr, cluster_id, ("TERMINATED", "TERMINATED_WITH_ERRORS"))
    assert status["State"] == "TERMINATED"
    assert status["StateChangeReason"] == {
        "Code": "ALL_STEPS_COMPLETED",
        "Message": "Steps completed",
    }


def test_a_service_role_missing_from_iam_fails_the_cluster_with_validation_error(emr):
    cluster_id = emr.run_job_flow(**cluster_request(ServiceRole="NoSuchEmrRole"))["JobFlowId"]

    status = wait_for_cluster(emr, cluster_id, ("TERMINATED", "TERMINATED_WITH_ERRORS"))
    assert status["State"] == "TERMINATED_WITH_ERRORS"
    assert status["StateChangeReason"]["Code"] == "VALIDATION_ERROR"
    assert status["StateChangeReason"]["Message"].endswith(":role/NoSuchEmrRole is invalid")


def test_a_missing_bootstrap_script_fails_the_cluster_with_bootstrap_failure(emr):
    action = {
        "Name": "deps",
        "ScriptBootstrapAction": {"Path": f"s3://{CODE_BUCKET}/bootstrap/missing.sh"},
    }
    cluster_id = emr.run_job_flow(**cluster_request(BootstrapActions=[action]))["JobFlowId"]

    status = wait_for_cluster(emr, cluster_id, ("TERMINATED", "TERMINATED_WITH_ERRORS"))
    assert status["State"] == "TERMINATED_WITH_ERRORS"
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert "bootstrap action 1" in status["StateChangeReason"]["Message"]
    assert "missing.sh" in status["StateChangeReason"]["Message"]


def test_a_bootstrap_script_is_fetched_and_syntax_checked(emr, emulator):
    s3 = emulator.s3()
    s3.put_object(Bucket=CODE_BUCKET, Key="bootstrap/ok.sh", Body=b"#!/usr/bin/env bash\necho ok\n")
    s3.put_object(Bucket=CODE_BUCKET, Key="bootstrap/broken.sh", Body=b"#!/bin/bash\nif then\n")

    def cluster_with(script: str) -> str:
        path = f"s3://{CODE_BUCKET}/bootstrap/{script}"
        action = {"Name": script, "ScriptBootstrapAction": {"Path": path, "Args": ["x"]}}
        return emr.run_job_flow(**cluster_request(BootstrapActions=[action]))["JobFlowId"]

    good, broken = cluster_with("ok.sh"), cluster_with("broken.sh")

    assert wait_for_cluster(emr, good, ("WAITING", "TERMINATED_WITH_ERRORS"))["State"] == "WAITING"
    status = wait_for_cluster(emr, broken, ("WAITING", "TERMINATED_WITH_ERRORS"))
    assert status["State"] == "TERMINATED_WITH_ERRORS"
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert "non-zero return code" in status["StateChangeReason"]["Message"]
    emr.terminate_job_flows(JobFlowIds=[good])


def test_an_idle_cluster_ends_after_its_auto_termination_idle_timeout(emr, emulator):
    # Created by the emulator fixture at start-up; this test runs late, so it waits less.
    cluster_id = emulator.idle_cluster_id
    assert emr.get_auto_termination_policy(ClusterId=cluster_id)["AutoTerminationPolicy"] == {
        "IdleTimeout": IDLE_TIMEOUT
    }
    waited = time.monotonic() - emulator.idle_cluster_created
    if waited < IDLE_TIMEOUT - 5:
        assert cluster_state(emr, cluster_id)["State"] == "WAITING"

    status = wait_for_cluster(emr, cluster_id, ("TERMINATED",), timeout=IDLE_TIMEOUT + 15)
    assert status["StateChangeReason"]["Code"] == "ALL_STEPS_COMPLETED"
    assert "idle" in status["StateChangeReason"]["Message"]
    lived = status["Timeline"]["EndDateTime"] - status["Timeline"]["ReadyDateTime"]
    assert lived.total_seconds() >= IDLE_TIMEOUT
