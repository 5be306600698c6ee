"""The EMR requests the aws DAGs send, checked against botocore's own EMR input shapes.

A key or value real EMR would reject (a typo in envs/aws/emr_cluster.json, a wrong type in a
step) fails here, offline. The S3 objects the cluster and steps point at must be files the job
artifact actually contains.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import botocore.session
import jinja2
import pytest
from botocore.validate import ParamValidator

REPO_ROOT = Path(__file__).resolve().parents[2]
JOBS = {"data_generation": "data_generator", "data_processing": "data_processor"}
FAKE_CLUSTER_ID = "j-2AXXXXXXGAPLF"
RUN_ID = "scheduled__2026-03-01T18:00:00+00:00"


@pytest.fixture(scope="module")
def emr_model():
    return botocore.session.get_session().get_service_model("emr")


def _render(node, ds: str = "2026-03-01", dag_id: str = "data_processing"):
    """Render Jinja the way Airflow renders nested template fields, for one logical date."""
    if isinstance(node, dict):
        return {key: _render(value, ds, dag_id) for key, value in node.items()}
    if isinstance(node, list):
        return [_render(value, ds, dag_id) for value in node]
    if isinstance(node, str):
        template = jinja2.Template(node, undefined=jinja2.StrictUndefined)
        return template.render(ds=ds, run_id=RUN_ID, dag={"dag_id": dag_id})
    return node


def _errors(emr_model, operation: str, params: dict) -> str:
    shape = emr_model.operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    return report.generate_report() if report.has_errors() else ""


def _emr_requests(dagbag, dag_id: str) -> tuple[dict, list[dict]]:
    dag = dagbag("aws").dags[dag_id]
    job = JOBS[dag_id]
    overrides = dag.get_task(f"{job}.create_cluster").job_flow_overrides
    steps = dag.get_task(f"{job}.add_step").steps
    return _render(overrides, dag_id=dag_id), _render(steps, dag_id=dag_id)


@pytest.mark.parametrize("dag_id", sorted(JOBS))
def test_every_cluster_is_tagged_with_its_run_and_the_teardown_looks_for_those_tags(dagbag, dag_id):
    overrides, _ = _emr_requests(dagbag, dag_id)
    tags = {tag["Key"]: tag["Value"] for tag in overrides["Tags"]}
    run_tags = {"airflow-dag-id": dag_id, "airflow-run-id": RUN_ID, "spark-job": JOBS[dag_id]}
    assert run_tags.items() <= tags.items()
    teardown = dagbag("aws").dags[dag_id].get_task(f"{JOBS[dag_id]}.terminate_cluster")
    assert "cluster_tags" in teardown.template_fields
    assert _render(teardown.cluster_tags, dag_id=dag_id) == run_tags


@pytest.mark.parametrize("dag_id", sorted(JOBS))
def test_run_job_flow_request_is_valid_for_emr(dagbag, emr_model, dag_id):
    overrides, _ = _emr_requests(dagbag, dag_id)
    assert _errors(emr_model, "RunJobFlow", overrides) == ""
    assert overrides["Name"] == f"builditall-{JOBS[dag_id]}-2026-03-01"


@pytest.mark.parametrize("dag_id", sorted(JOBS))
def test_add_job_flow_steps_request_is_valid_for_emr(dagbag, emr_model, dag_id):
    _, steps = _emr_requests(dagbag, dag_id)
    request = {"JobFlowId": FAKE_CLUSTER_ID, "Steps": steps}
    assert _errors(emr_model, "AddJobFlowSteps", request) == ""
    (step,) = steps
    assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    args = step["HadoopJarStep"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
    assert args[args.index("--date") + 1] == "2026-03-01"


@pytest.mark.parametrize(
    ("where", "typo"),
    [
        ("top level", lambda o: o.update(ReleaseLable=o.pop("ReleaseLabel"))),
        ("instance group", lambda o: o["Instances"]["InstanceGroups"][0].update(InstanceCount="1")),
        ("bootstrap", lambda o: o["BootstrapActions"][0]["ScriptBootstrapAction"].pop("Path")),
    ],
)
def test_the_validator_rejects_what_emr_would(dagbag, emr_model, where, typo):
    overrides, _ = _emr_requests(dagbag, "data_generation")
    broken = copy.deepcopy(overrides)
    typo(broken)
    assert _errors(emr_model, "RunJobFlow", broken) != "", where


def test_cluster_is_a_safe_transient_cluster(use_env):
    from orchestration.spark_job import load_emr_cluster_config

    settings = use_env("aws")
    config = load_emr_cluster_config(settings)
    assert "${" not in json.dumps(config), "unfilled placeholder"
    assert config["ReleaseLabel"] == settings.emr_release_label
    assert config["LogUri"].startswith(f"s3://{settings.logs_bucket}/")
    # Steps are added after creation: without keep-alive the cluster would end before they come.
    assert config["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert config["Instances"]["TerminationProtected"] is False
    assert config["AutoTerminationPolicy"]["IdleTimeout"] > 0
    assert {a["Name"] for a in config["Applications"]} >= {"Spark"}


def test_cluster_goes_into_the_subnet_of_emr_subnet_id(use_env, emr_model):
    from orchestration.spark_job import load_emr_cluster_config

    # Unset (the committed settings): EMR's default subnet; on the instance, the stack's subnet.
    assert "Ec2SubnetId" not in load_emr_cluster_config(use_env("aws"))["Instances"]
    settings = use_env("aws", EMR_SUBNET_ID="subnet-0123456789abcdef0")
    config = {"Name": "subnet-test", **load_emr_cluster_config(settings)}
    assert config["Instances"]["Ec2SubnetId"] == "subnet-0123456789abcdef0"
    assert _errors(emr_model, "RunJobFlow", config) == ""


def test_cluster_and_steps_point_at_files_the_artifact_contains(dagbag, use_env, tmp_path):
    from orchestration.artifact import build_job_artifact

    settings = use_env("aws")
    prefix = f"{settings.emr_job_artifacts_uri}/"
    shipped = set(build_job_artifact(tmp_path / "artifact").relative_files())
    referenced = set()
    for dag_id in JOBS:
        overrides, steps = _emr_requests(dagbag, dag_id)
        for action in overrides["BootstrapActions"]:
            script = action["ScriptBootstrapAction"]
            uris = (script["Path"], *script.get("Args", ()))
            referenced |= {u for u in uris if u.startswith("s3://")}
        referenced |= {a for a in steps[0]["HadoopJarStep"]["Args"] if a.startswith("s3://")}
    artifact_uris = {u for u in referenced if u.startswith(prefix)}
    data_uris = referenced - artifact_uris
    assert {u.removeprefix(prefix) for u in artifact_uris} <= shipped
    assert {u.removeprefix(prefix) for u in artifact_uris} >= {
        "spark_jobs.zip",
        "data_generator.py",
        "data_processor.py",
        "bootstrap/install_job_deps.sh",
        "requirements-emr.txt",
    }
    assert data_uris == {settings.raw_uri, settings.processed_uri}


def test_unknown_placeholder_in_cluster_config_names_the_file(use_env, tmp_path):
    from orchestration.spark_job import load_emr_cluster_config

    envs = tmp_path / "envs"
    shutil.copytree(REPO_ROOT / "envs" / "aws", envs / "aws")
    cluster_file = envs / "aws" / "emr_cluster.json"
    config = json.loads(cluster_file.read_text())
    config["LogUri"] = "s3://${log_bucket}/emr/"
    cluster_file.write_text(json.dumps(config))
    settings = use_env("aws", PIPELINE_ENVS_DIR=str(envs))
    with pytest.raises(ValueError, match=r"emr_cluster\.json.*log_bucket.*\$\{logs_bucket\}"):
        load_emr_cluster_config(settings)
