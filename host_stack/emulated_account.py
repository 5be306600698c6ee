"""What the aws account holds before the DAGs run, made in LocalStack for the offline rehearsal.

On AWS, `nox -s deploy` creates the buckets and EMR's roles, and `nox -s build_jobs -- --upload`
puts the Spark job artifact in the data bucket. The rehearsal does the same against LocalStack:
host mode's `up` calls `prepare_account`; the compose rehearsal runs this module as its one-shot
`aws-init` service (envs/aws/docker-compose.rehearsal.yml):

    PIPELINE_ENV=aws AWS_ENDPOINT_URL=http://localstack:4566 python -m host_stack.emulated_account
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from host_stack.localstack import create_buckets, create_emr_roles

if TYPE_CHECKING:
    from config.config import Settings


def prepare_account(settings: Settings, endpoint_url: str, work_dir: Path) -> str:
    """The buckets, EMR's roles (IAM) and the job artifact in LocalStack at endpoint_url."""
    import boto3
    from botocore.config import Config

    from orchestration.artifact import build_job_artifact, upload_job_artifact

    create_buckets(endpoint_url, [settings.data_bucket, settings.logs_bucket], settings.aws_region)
    assert settings.emr_cluster_config_path is not None  # required on aws by config
    cluster = json.loads(settings.emr_cluster_config_path.read_text())
    create_emr_roles(
        endpoint_url, cluster["ServiceRole"], cluster["JobFlowRole"], region=settings.aws_region
    )
    artifact = build_job_artifact(work_dir)
    s3 = boto3.client(
        "s3", **settings.boto3_client_kwargs(), config=Config(s3={"addressing_style": "path"})
    )
    assert settings.emr_job_artifact_prefix is not None
    upload_job_artifact(artifact, settings.data_bucket, settings.emr_job_artifact_prefix, s3)
    return (
        f"buckets {settings.data_bucket}, {settings.logs_bucket}; roles {cluster['ServiceRole']}, "
        f"{cluster['JobFlowRole']}; the job artifact in {settings.emr_job_artifacts_uri}"
    )


def main() -> int:
    from config.config import get_settings

    settings = get_settings()
    if settings.pipeline_env != "aws" or settings.aws_endpoint_url is None:
        print(
            "error: the emulated account is made with PIPELINE_ENV=aws and AWS_ENDPOINT_URL "
            "pointing at LocalStack; this never touches real AWS",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="job-artifact-") as work_dir:
        print(prepare_account(settings, settings.aws_endpoint_url, Path(work_dir)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
