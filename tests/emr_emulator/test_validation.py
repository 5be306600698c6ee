"""What the emulator refuses at the API, as EMR refuses it: the error code a client sees
(botocore's ClientError) and a message naming what is wrong."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.emr_emulator.support import (
    cluster_request,
    shell_step,
    wait_for_cluster,
)


def without(request: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != key}


def with_instance_type(instance_type: str) -> dict[str, Any]:
    request = cluster_request()
    request["Instances"]["InstanceGroups"][1]["InstanceType"] = instance_type
    return request


def refused(call, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        pytest.param(
            without(cluster_request(), "JobFlowRole"),
            "InstanceProfile is required for creating cluster",
            id="no-instance-profile",
        ),
        pytest.param(
            without(cluster_request(), "ServiceRole"),
            "ServiceRole is required for creating cluster",
            id="no-service-role",
        ),
        pytest.param(
            cluster_request(JobFlowRole="NoSuchInstanceProfile"),
            "Invalid InstanceProfile: NoSuchInstanceProfile.",
            id="instance-profile-not-in-iam",
        ),
        pytest.param(
            with_instance_type("m5.gigantic"),
            "Instance type 'm5.gigantic' (instance group 2) is not supported by release "
            "emr-spark-8.0.0",
            id="unknown-instance-type",
        ),
        pytest.param(
            cluster_request(ReleaseLabel="emr-spark-9.9.9"),
            "The requested release label emr-spark-9.9.9 is not available in us-east-1",
            id="unknown-release",
        ),
        pytest.param(
            cluster_request(AutoTerminationPolicy={"IdleTimeout": 30}),
            "AutoTerminationPolicy.IdleTimeout 30 is out of range",
            id="idle-timeout-too-short",
        ),
        pytest.param(
            cluster_request(Steps=[{**shell_step("x", "true"), "ActionOnFailure": "EXPLODE"}]),
            "1 validation error detected: Value 'EXPLODE' at 'steps.1.member.actionOnFailure' "
            "failed to satisfy constraint: Member must satisfy enum value set: "
            "[TERMINATE_JOB_FLOW, TERMINATE_CLUSTER, CANCEL_AND_WAIT, CONTINUE]",
            id="unknown-action-on-failure",
        ),
        pytest.param(
            cluster_request(
                Steps=[{"Name": "no command", "HadoopJarStep": {"Jar": "command-runner.jar"}}]
            ),
            "command-runner.jar runs the command given in HadoopJarStep.Args, and Args is empty",
            id="command-runner-without-args",
        ),
        pytest.param(
            cluster_request(Steps=[{"Name": "no jar", "HadoopJarStep": {"Jar": " "}}]),
            "HadoopJarStep.Jar is empty",
            id="blank-jar",
        ),
    ],
)
def test_run_job_flow_refuses_what_emr_refuses(emr, request_, message):
    code, text = refused(emr.run_job_flow, **request_)

    assert code == "ValidationException"
    assert message in text


def test_requests_that_skip_client_validation_meet_the_same_model_on_the_server(emulator):
    # Another SDK, or botocore with parameter_validation off, can send what botocore refuses.
    emr = emulator.client(parameter_validation=False)
    step = {"Name": "no jar", "ActionOnFailure": "CONTINUE", "HadoopJarStep": {"Args": ["x"]}}

    code, text = refused(emr.run_job_flow, **cluster_request(Steps=[step]))

    assert code == "ValidationException"
    assert text == (
        "1 validation error detected: Value null at 'steps.1.member.hadoopJarStep.jar' "
        "failed to satisfy constraint: Member must not be null"
    )


def test_steps_cannot_be_added_to_a_terminated_cluster(emr):
    cluster_id = emr.run_job_flow(**cluster_request(Name="ended"))["JobFlowId"]
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    wait_for_cluster(emr, cluster_id, ("TERMINATED",))

    code, text = refused(
        emr.add_job_flow_steps, JobFlowId=cluster_id, Steps=[shell_step("late", "true")]
    )

    assert code == "ValidationException"
    assert text == "A job flow that is shutting down, terminated, or finished may not be modified."


def test_unknown_clusters_are_invalid_requests(emr):
    code, text = refused(
        emr.add_job_flow_steps, JobFlowId="j-NOSUCHCLUSTER", Steps=[shell_step("x", "true")]
    )
    assert (code, text) == ("InvalidRequestException", "Cluster id 'j-NOSUCHCLUSTER' is not valid.")
    code, _ = refused(emr.terminate_job_flows, JobFlowIds=["j-NOSUCHCLUSTER"])
    assert code == "InvalidRequestException"


def test_termination_protected_clusters_are_not_terminated(emr):
    request = cluster_request(Name="protected")
    request["Instances"]["TerminationProtected"] = True
    cluster_id = emr.run_job_flow(**request)["JobFlowId"]

    code, _ = refused(emr.terminate_job_flows, JobFlowIds=[cluster_id])

    assert code == "ValidationException"
    emr.set_termination_protection(JobFlowIds=[cluster_id], TerminationProtected=False)
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    assert wait_for_cluster(emr, cluster_id, ("TERMINATED",))["State"] == "TERMINATED"
