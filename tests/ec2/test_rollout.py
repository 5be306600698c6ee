"""Deploys onto the running stand-in instance of the boot rehearsal (nox -s deploy_rehearsal,
host_stack/ec2_rehearsal.py): a new release rolls forward and keeps Airflow's history; a release
that does not match its digest is refused, and the deploy fails with the boot log's tail.

These call orchestration/deploy.py as a deployer does, against the emulated AWS the rehearsal
runs (AWS_ENDPOINT_URL), and look at Airflow through the forwarded port (AIRFLOW_API_URL) only.
They run after tests/e2e, whose DAG runs are the history a roll-out must keep.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from config.config import get_settings
from host_stack.airflow import AirflowApi
from orchestration import deploy
from orchestration.release import manifest_key

pytestmark = pytest.mark.skipif(
    not os.environ.get("AIRFLOW_API_URL") or not os.environ.get("AWS_ENDPOINT_URL"),
    reason="the boot rehearsal only (nox -s deploy_rehearsal): a stand-in instance to deploy to",
)
DAG = "data_generation"
ROLLOUT_TIMEOUT = 900.0


@pytest.fixture(scope="module")
def settings():
    return get_settings()


@pytest.fixture(scope="module")
def api():
    client = AirflowApi(
        os.environ["AIRFLOW_API_URL"], os.environ.get("AIRFLOW_USERNAME", "admin"),
        os.environ["AIRFLOW_PASSWORD"],
    )  # fmt: skip
    yield client
    client.close()


def new_commit(message: str) -> str:
    """A commit of HEAD's tree with its own id (git commit-tree): a release that differs from
    the running one as a docs-only change does, with the checkout untouched."""
    who = {"NAME": "rehearsal", "EMAIL": "rehearsal@invalid"}
    env = os.environ | {
        f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()
    }
    return subprocess.run(
        ["git", "commit-tree", "HEAD^{tree}", "-p", "HEAD", "-m", message],
        capture_output=True, text=True, check=True, env=env,
    ).stdout.strip()  # fmt: skip


def dag_runs(api: AirflowApi) -> dict[str, str]:
    found = api.request("GET", f"/dags/{DAG}/dagRuns", params={"limit": 100})["dag_runs"]
    return {run["dag_run_id"]: run["state"] for run in found}


def test_a_new_release_rolls_forward_and_keeps_the_history(settings, api, tmp_path):
    before = dag_runs(api)
    assert before, f"no {DAG} run to keep: run tests/e2e first (nox -s deploy_rehearsal does)"
    instance = deploy.stack_outputs(deploy.Clients.for_settings(settings).cloudformation,
                                    deploy.DEFAULT_STACK_NAME)["AirflowInstanceId"]  # fmt: skip
    lines: list[str] = []
    result = deploy.deploy(
        settings, confirm=True, commit=new_commit("rehearsal: roll forward"), say=lines.append,
        boot_timeout=ROLLOUT_TIMEOUT,
    )  # fmt: skip
    log = "\n".join(lines)
    assert result.boot["state"] == "healthy", log
    assert result.outputs["AirflowInstanceId"] == instance, "the roll-out replaced the instance"
    assert result.outputs["ReleaseDigest"] == result.boot["release"], log
    assert "ReleaseParameter" in log, "the deploy changed more than the release's digest"
    after = dag_runs(api)
    assert {run: after.get(run) for run in before} == before, "runs lost in the roll-out"


def test_a_release_that_does_not_match_its_digest_is_refused(settings, api, monkeypatch):
    s3 = deploy.Clients.for_settings(settings).s3
    upload = deploy.upload_contents

    def tampered_upload(s3_client, settings_, artifact, release):
        uploaded = upload(s3_client, settings_, artifact, release)
        # What a changed object in the bucket looks like to the instance: another manifest.
        s3.put_object(Bucket=settings.data_bucket, Key=manifest_key(release.digest),
                      Body=release.manifest().encode() + b"\n")  # fmt: skip
        return uploaded

    monkeypatch.setattr(deploy, "upload_contents", tampered_upload)
    with pytest.raises(deploy.DeployError) as refused:
        deploy.deploy(settings, confirm=True, commit=new_commit("rehearsal: tampered"),
                      say=lambda _: None, boot_timeout=ROLLOUT_TIMEOUT)  # fmt: skip
    message = str(refused.value)
    assert "refusing a release that does not match its digest" in message, message
    assert "the boot log's last lines" in message, message
    assert "\n  | " in message, message
    # The instance kept the release it ran: Airflow still answers, with its history.
    assert dag_runs(api)
