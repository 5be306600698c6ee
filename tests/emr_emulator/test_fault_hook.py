"""The emulator's fault hook (POST /_emulator/faults, host_stack/emr_emulator/faults.py), as the
black-box e2e scenarios use it: faults armed for a cluster name reach only those clusters."""

from __future__ import annotations

import httpx
import pytest

from host_stack.emr_emulator.faults import Faults
from tests.e2e.emr_runs import EMULATOR_FAULTS_PATH, EmulatorFaults
from tests.emr_emulator.support import (
    LOGS_BUCKET,
    cluster_request,
    shell_step,
    step_status,
    wait_for,
    wait_for_cluster,
    wait_for_steps_to_end,
)


@pytest.fixture
def faults(emulator):
    client = EmulatorFaults(emulator.endpoint_url)
    yield client
    client.disarm("fault-hook")
    client.close()


def test_arming_checks_the_faults_and_lists_what_is_armed(emulator, faults):
    url = f"{emulator.endpoint_url}{EMULATOR_FAULTS_PATH}"
    refused = httpx.post(url, json={"cluster_name_contains": "fault-hook", "explode": True})
    assert refused.status_code == 400
    assert "unknown fault(s) ['explode']" in refused.json()["message"]
    faults.arm("fault-hook-listed", step_delay_seconds=3)
    (armed,) = httpx.get(url).json()["armed"]
    assert (armed["cluster_name_contains"], armed["step_delay_seconds"]) == ("fault-hook-listed", 3)
    faults.disarm("fault-hook-listed")
    assert httpx.get(url).json()["armed"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "cluster_name_contains must be a non-empty string"),
        ({"cluster_name_contains": "x", "step_delay_seconds": -1}, "seconds >= 0"),
        ({"cluster_name_contains": "x", "refuse_cluster": 3}, "must be a message"),
    ],
)
def test_a_malformed_fault_is_refused_with_what_is_wrong(body, message):
    with pytest.raises(ValueError, match=message):
        Faults.from_json(body)


def test_a_refusal_applies_to_matching_names_only_until_disarmed(emr, faults):
    faults.arm("fault-hook-refused", refuse_cluster="Instance type m5.xlarge is not supported.")
    with pytest.raises(emr.exceptions.ClientError) as refused:
        emr.run_job_flow(**cluster_request(Name="a fault-hook-refused cluster"))
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["Error"]["Message"] == "Instance type m5.xlarge is not supported."
    other = emr.run_job_flow(**cluster_request(Name="another cluster"))["JobFlowId"]
    emr.terminate_job_flows(JobFlowIds=[other])

    faults.disarm("fault-hook-refused")
    accepted = emr.run_job_flow(**cluster_request(Name="a fault-hook-refused cluster"))
    emr.terminate_job_flows(JobFlowIds=[accepted["JobFlowId"]])


def test_a_bootstrap_failure_waits_for_the_first_step_then_ends_the_cluster(emr, faults):
    faults.arm("fault-hook-bootstrap", bootstrap_failure="pip: no such version")
    cluster_id = emr.run_job_flow(**cluster_request(Name="fault-hook-bootstrap"))["JobFlowId"]
    # Bootstrapping lasts until a step arrives, as EMR's minutes of bootstrap outlast add_step.
    assert wait_for_cluster(emr, cluster_id, ("BOOTSTRAPPING",))["State"] == "BOOTSTRAPPING"
    (step_id,) = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[shell_step("job", "echo never runs")]
    )["StepIds"]
    status = wait_for_cluster(emr, cluster_id, ("TERMINATED_WITH_ERRORS",))
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert status["StateChangeReason"]["Message"].endswith(
        "bootstrap action 1 returned a non-zero return code: pip: no such version"
    )
    assert step_status(emr, cluster_id, step_id)["State"] == "CANCELLED"


def test_a_delayed_step_runs_until_cancelled_and_late_logs_ship_late(emulator, emr, faults):
    faults.arm("fault-hook-slow", step_delay_seconds=600, step_log_delay_seconds=600)
    cluster_id = emr.run_job_flow(**cluster_request(Name="fault-hook-slow"))["JobFlowId"]
    (step_id,) = emr.add_job_flow_steps(
        JobFlowId=cluster_id, Steps=[shell_step("job", "echo done")]
    )["StepIds"]
    wait_for(
        "the step RUNNING", lambda: step_status(emr, cluster_id, step_id)["State"] == "RUNNING"
    )
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    (step,) = wait_for_steps_to_end(emr, cluster_id)
    assert step["Status"]["State"] == "CANCELLED"
    # Cancelled during its delay: the command never ran, and its logs are not shipped yet.
    assert (emulator.work_dir / cluster_id / "steps" / step_id / "stdout").read_text() == ""
    listed = emulator.s3().list_objects_v2(Bucket=LOGS_BUCKET, Prefix=f"emr/{cluster_id}/")
    assert listed.get("KeyCount", 0) == 0
