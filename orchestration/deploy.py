"""Deploy the aws environment: envs/aws/cloudformation.yaml as one stack, plus its S3 contents.

    nox -s deploy -- --target aws             show what would change (a change set), change nothing
    nox -s deploy -- --target aws --confirm   apply it
    nox -s deploy -- --target localstack      the same deploy on emulated AWS, booted by a
                                              stand-in instance (host_stack/ec2_rehearsal.py)

Steps: settings of PIPELINE_ENV=aws (config; an AWS_ENDPOINT_URL in the environment points every
client at an emulator), cfn-lint, build the Spark job artifact and the release (orchestration/
release.py: the commit, its Airflow image and the third-party images, the Compose CLI), a change
set (a no-op when nothing changed), then, confirmed: the Airflow secrets in SSM Parameter Store,
the artifact and the release uploaded (on a first deploy, after a first step that makes the
buckets without the instance), the change set executed, and the wait for the instance to report
the release healthy (s3://LOGS_BUCKET/boot/<instance-id>/status.json, written by
envs/aws/boot/boot.sh), or its boot log's tail when it failed. A change set that would replace
the instance or its data volume is refused without --replace-instance. Last, the SSM port-forward
command for the Airflow UI.

It lives beside artifact.py (which it uses) rather than in envs/aws/, which holds data only.
"""

from __future__ import annotations

import argparse
import json
import os
import string
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.config import ConfigError, Settings, load_settings
from orchestration.artifact import REPO_ROOT, JobArtifact, build_job_artifact
from orchestration.compose_secrets import SECRET_KEYS
from orchestration.release import (
    Release,
    ReleaseError,
    build_release,
    dotenv_settings,
    sha256_file,
)

TEMPLATE = REPO_ROOT / "envs" / "aws" / "cloudformation.yaml"
DIST = REPO_ROOT / "dist"
DEFAULT_STACK_NAME = "builditall"
PROJECT_NAME = "builditall"
SECRETS_PATH = f"/{PROJECT_NAME}/airflow"
AIRFLOW_UI_PORT = 8080
# Amazon Linux 2023, resolved once per stack and then kept (the ImageId parameter).
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
# What a change set may not replace without --replace-instance: the Airflow host and its data.
KEPT_RESOURCES = ("AirflowInstance", "DataVolume")
BOOT_TIMEOUT = 1800.0
BOOT_POLL_SECONDS = 5.0
BOOT_LOG_TAIL_LINES = 40
# A stack that is not there yet (or only as a change set's placeholder).
NO_STACK = (None, "REVIEW_IN_PROGRESS", "DELETE_COMPLETE")
CHANGE_SET_TIMEOUT = 300.0
STACK_TIMEOUT = 1800.0
# The metadata key of our uploads: the sha256 of the file, to skip unchanged ones.
SHA256_METADATA = "sha256"


class DeployError(RuntimeError):
    """The deploy cannot go on; the message names what, where and the fix."""


@dataclass
class ChangeSetResult:
    """What a change set would do: `changes` is empty when the stack is already up to date."""

    stack_name: str
    change_set_id: str | None
    change_type: str  # CREATE or UPDATE
    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DeployResult:
    stack_name: str
    applied: bool
    changes: list[dict[str, Any]]
    uploaded: list[str] = field(default_factory=list)
    unchanged_uploads: list[str] = field(default_factory=list)
    secrets_created: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)
    boot: dict[str, Any] = field(default_factory=dict)


# --- inputs: template, lint, parameters, release -----------------------------------------------


def lint_template(template: Path = TEMPLATE) -> None:
    """cfn-lint the template; raise DeployError listing every finding."""
    from cfnlint.api import lint

    matches = lint(template.read_text())
    if matches:
        findings = "\n".join(f"  {m}" for m in matches)
        raise DeployError(
            f"cfn-lint found {len(matches)} problem(s) in {_shown(template)}; fix them first:\n"
            f"{findings}"
        )


def emr_cluster_config(settings: Settings) -> dict[str, Any]:
    """envs/aws/<EMR_CLUSTER_CONFIG> as written (the DAGs fill its placeholders; the role names
    and tags read here have none), without importing Airflow."""
    path = settings.emr_cluster_config_path
    if path is None or not path.is_file():
        raise DeployError(
            f"EMR cluster config {path} not found (EMR_CLUSTER_CONFIG in "
            f"{settings.settings_file}); the stack names the EMR roles after it"
        )
    return json.loads(path.read_text())


def emr_role_names(settings: Settings) -> tuple[str, str]:
    """(ServiceRole, JobFlowRole) of envs/aws/<EMR_CLUSTER_CONFIG>: the names the stack creates."""
    cluster = emr_cluster_config(settings)
    try:
        return cluster["ServiceRole"], cluster["JobFlowRole"]
    except KeyError as exc:
        raise DeployError(
            f"{settings.emr_cluster_config_path} has no {exc.args[0]}; the stack creates the EMR "
            "roles under the names given there (ServiceRole, JobFlowRole)"
        ) from None


def emr_logs_prefix(settings: Settings) -> str:
    """The key prefix of the cluster config's LogUri in the logs bucket (emr for s3://b/emr/)."""
    written = emr_cluster_config(settings)["LogUri"]
    log_uri = string.Template(written).safe_substitute(logs_bucket=settings.logs_bucket)
    expected = f"s3://{settings.logs_bucket}/"
    if not log_uri.startswith(expected) or not log_uri.removeprefix(expected).strip("/"):
        raise DeployError(
            f"LogUri {log_uri!r} of {settings.emr_cluster_config_path} is not below {expected}; "
            "the node role may write EMR logs only to a prefix of LOGS_BUCKET"
        )
    return log_uri.removeprefix(expected).strip("/")


def stack_parameters(
    settings: Settings,
    release_digest: str,
    image_id: str,
    *,
    launch: bool = True,
    alert_email: str | None = None,
) -> dict[str, str | None]:
    """The template's parameters, derived from config, the cluster config and the release;
    AlertEmail from the command line (None: keep the stack's current address, none on a new
    stack)."""
    service_role, instance_profile = emr_role_names(settings)
    return {
        "AlertEmail": alert_email,
        "ProjectName": PROJECT_NAME,
        "DataBucketName": settings.data_bucket,
        "LogsBucketName": settings.logs_bucket,
        "RawPrefix": settings.raw_prefix,
        "ProcessedPrefix": settings.processed_prefix,
        "ArtifactPrefix": settings.emr_job_artifact_prefix,
        "LogsPrefix": settings.logs_prefix,
        "EmrLogsPrefix": emr_logs_prefix(settings),
        "EmrServiceRoleName": service_role,
        "EmrInstanceProfileName": instance_profile,
        "ReleaseDigest": release_digest,
        "ImageId": image_id,
        "LaunchInstance": "true" if launch else "false",
        "SecretsPath": SECRETS_PATH,
    }


# --- clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clients:
    cloudformation: Any
    s3: Any
    ssm: Any

    @classmethod
    def for_settings(cls, settings: Settings) -> Clients:
        import boto3
        from botocore.config import Config

        kwargs = settings.boto3_client_kwargs()
        # An endpoint override is an emulator, which serves buckets by path (as artifact.py does).
        s3_config = Config(s3={"addressing_style": "path"}) if settings.aws_endpoint_url else None
        return cls(
            cloudformation=boto3.client("cloudformation", **kwargs),
            s3=boto3.client("s3", config=s3_config, **kwargs),
            ssm=boto3.client("ssm", **kwargs),
        )


# --- the stack --------------------------------------------------------------------------------


def stack_status(cloudformation: Any, stack_name: str) -> str | None:
    """The stack's status, or None if there is no such stack."""
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return stacks[0]["StackStatus"] if stacks else None


def stack_parameter_values(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}


def pinned_image_id(clients: Clients, stack_name: str, *, new_ami: bool) -> tuple[str, str]:
    """(AMI id, where it came from): the stack's own, or AL2023's latest on a first deploy or
    with --new-ami. Kept otherwise, so an AMI release never replaces the instance unasked."""
    if not new_ami and stack_status(clients.cloudformation, stack_name) not in NO_STACK:
        kept = stack_parameter_values(clients.cloudformation, stack_name).get("ImageId")
        if kept:
            return kept, "kept from the stack"
    latest = clients.ssm.get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
    return latest, f"the latest Amazon Linux 2023 ({AMI_PARAMETER})"


def replacements(changes: list[dict[str, Any]]) -> list[str]:
    """The kept resources (the instance, its data volume) a change set would replace."""
    return [
        f"{c.get('LogicalResourceId')} (replacement: {c.get('Replacement')})"
        for c in changes
        if c.get("LogicalResourceId") in KEPT_RESOURCES
        and (c.get("Action") == "Remove" or c.get("Replacement") in ("True", "Conditional"))
    ]


def create_change_set(
    cloudformation: Any, stack_name: str, template_body: str, parameters: Mapping[str, str | None]
) -> ChangeSetResult:
    """Create a change set and wait for it; a change set without changes is deleted at once.

    A parameter given as None keeps the stack's previous value (its default on a new stack)."""
    status = stack_status(cloudformation, stack_name)
    if status is not None and status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS":
        raise DeployError(
            f"stack {stack_name} is {status}; wait until it finishes, then deploy again"
        )
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED"):
        raise DeployError(
            f"stack {stack_name} is {status} (a failed create or delete); see its events in the "
            f"CloudFormation console, delete it (`aws cloudformation delete-stack --stack-name "
            f"{stack_name}`; the buckets are retained) and deploy again"
        )
    new_stack = status in NO_STACK
    change_type = "CREATE" if new_stack else "UPDATE"
    response = cloudformation.create_change_set(
        StackName=stack_name,
        ChangeSetName=f"deploy-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
        ChangeSetType=change_type,
        TemplateBody=template_body,
        Parameters=[
            {"ParameterKey": k, "ParameterValue": v}
            if v is not None
            else {"ParameterKey": k, "UsePreviousValue": True}
            for k, v in parameters.items()
            if v is not None or not new_stack
        ],
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Tags=[{"Key": "project", "Value": PROJECT_NAME}],
    )
    change_set_id = response["Id"]
    deadline = time.monotonic() + CHANGE_SET_TIMEOUT
    while True:
        described = cloudformation.describe_change_set(ChangeSetName=change_set_id)
        if described["Status"] not in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise DeployError(f"change set {change_set_id} not ready after {CHANGE_SET_TIMEOUT}s")
        time.sleep(1)
    if described["Status"] == "FAILED":
        reason = described.get("StatusReason", "")
        if "didn't contain changes" in reason or "No updates are to be performed" in reason:
            cloudformation.delete_change_set(ChangeSetName=change_set_id)
            return ChangeSetResult(stack_name, None, change_type, [])
        raise DeployError(f"CloudFormation rejected the change set for {stack_name}: {reason}")
    changes = [change["ResourceChange"] for change in _all_changes(cloudformation, described)]
    return ChangeSetResult(stack_name, change_set_id, change_type, changes)


def _all_changes(cloudformation: Any, described: dict[str, Any]) -> Iterator[dict[str, Any]]:
    page = described
    while True:
        yield from page.get("Changes", [])
        token = page.get("NextToken")
        if not token:
            return
        page = cloudformation.describe_change_set(
            ChangeSetName=described["ChangeSetId"], NextToken=token
        )


def discard_change_set(cloudformation: Any, change_set: ChangeSetResult) -> None:
    """Delete a change set we will not execute (and the empty stack a CREATE one left behind)."""
    if change_set.change_set_id is None:
        return
    cloudformation.delete_change_set(ChangeSetName=change_set.change_set_id)
    if (
        change_set.change_type == "CREATE"
        and stack_status(cloudformation, change_set.stack_name) == "REVIEW_IN_PROGRESS"
    ):
        cloudformation.delete_stack(StackName=change_set.stack_name)


def execute_change_set(cloudformation: Any, change_set: ChangeSetResult) -> None:
    """Execute the change set and wait for the stack; on failure, name the failed resources."""
    cloudformation.execute_change_set(ChangeSetName=change_set.change_set_id)
    deadline = time.monotonic() + STACK_TIMEOUT
    while (status := stack_status(cloudformation, change_set.stack_name) or "").endswith(
        "IN_PROGRESS"
    ):
        if time.monotonic() > deadline:
            raise DeployError(
                f"stack {change_set.stack_name} still {status} after {STACK_TIMEOUT:.0f}s; "
                "watch it in the CloudFormation console"
            )
        time.sleep(2)
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        events = cloudformation.describe_stack_events(StackName=change_set.stack_name)
        failed = [
            f"  {e['LogicalResourceId']} ({e['ResourceType']}): {e.get('ResourceStatusReason')}"
            for e in events["StackEvents"]
            if e["ResourceStatus"].endswith("FAILED")
        ]
        raise DeployError(
            f"stack {change_set.stack_name} ended {status}; failed resources:\n"
            + ("\n".join(failed[:20]) or "  (none reported; see the stack's events)")
        )


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def format_changes(changes: list[dict[str, Any]]) -> str:
    """One line per resource change: action, logical id, type, replacement."""
    if not changes:
        return "  (none)"
    lines = []
    for change in changes:
        replacement = change.get("Replacement")
        tail = f"  replacement: {replacement}" if change.get("Action") == "Modify" else ""
        lines.append(
            f"  {change.get('Action', '?'):<7} {change.get('LogicalResourceId', '?'):<26} "
            f"{change.get('ResourceType', '?')}{tail}"
        )
    return "\n".join(lines)


# --- S3 contents and secrets --------------------------------------------------------------------


def sync_file(s3: Any, path: Path, bucket: str, key: str) -> bool:
    """Upload unless the object already has this content; True if it uploaded."""
    from botocore.exceptions import ClientError

    digest = sha256_file(path)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get(SHA256_METADATA) == digest:
            return False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
            raise
    s3.upload_file(str(path), bucket, key, ExtraArgs={"Metadata": {SHA256_METADATA: digest}})
    return True


def upload_contents(
    s3: Any, settings: Settings, artifact: JobArtifact, release: Release
) -> tuple[list[str], list[str]]:
    """The job artifact (with the EMR bootstrap script) and the release into the data bucket;
    the release's manifest goes last, so a release is either whole or absent.

    Returns (uploaded, unchanged) as s3:// URIs."""
    prefix = (settings.emr_job_artifact_prefix or "").strip("/")
    files = [(artifact.root / rel, f"{prefix}/{rel}") for rel in artifact.relative_files()]
    files += release.objects()
    uploaded, unchanged = [], []
    for path, key in files:
        uri = f"s3://{settings.data_bucket}/{key}"
        (uploaded if sync_file(s3, path, settings.data_bucket, key) else unchanged).append(uri)
    return uploaded, unchanged


# --- the instance's boot --------------------------------------------------------------------------


def boot_prefix(instance_id: str) -> str:
    return f"boot/{instance_id}"


def _read_object(s3: Any, bucket: str, key: str) -> bytes | None:
    from botocore.exceptions import ClientError

    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def boot_log_tail(s3: Any, bucket: str, instance_id: str, lines: int = BOOT_LOG_TAIL_LINES) -> str:
    body = _read_object(s3, bucket, f"{boot_prefix(instance_id)}/boot.log")
    if body is None:
        return f"  (no boot log at s3://{bucket}/{boot_prefix(instance_id)}/boot.log yet)"
    tail = body.decode(errors="replace").splitlines()[-lines:]
    return "\n".join(f"  | {line}" for line in tail)


def wait_for_boot(
    s3: Any,
    logs_bucket: str,
    instance_id: str,
    digest: str,
    *,
    timeout: float = BOOT_TIMEOUT,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Wait until the instance reports `digest` healthy (envs/aws/boot/boot.sh's status.json);
    raise DeployError with the boot log's tail when it failed or said nothing in time."""
    where = f"s3://{logs_bucket}/{boot_prefix(instance_id)}/"
    say(f"waiting for {instance_id} to report release {digest[:12]} healthy ({where})")
    deadline = time.monotonic() + timeout
    last = None
    while True:
        body = _read_object(s3, logs_bucket, f"{boot_prefix(instance_id)}/status.json")
        status = json.loads(body) if body else {}
        if status.get("release") == digest:
            if status != last:
                say(f"  {instance_id}: {status.get('state')} ({status.get('step')})")
                last = status
            if status.get("state") == "healthy":
                return status
            if status.get("state") == "failed":
                raise DeployError(
                    f"the instance {instance_id} refused or failed release {digest[:12]} at "
                    f"{status.get('step')}: {status.get('detail')}\nthe boot log's last lines "
                    f"({where}boot.log):\n{boot_log_tail(s3, logs_bucket, instance_id)}"
                )
        if time.monotonic() > deadline:
            raise DeployError(
                f"the instance {instance_id} did not report release {digest[:12]} healthy within "
                f"{timeout:.0f}s; its last status: {status or 'none'}\nthe boot log's last lines "
                f"({where}boot.log):\n{boot_log_tail(s3, logs_bucket, instance_id)}"
            )
        time.sleep(BOOT_POLL_SECONDS)


def ensure_secrets(ssm: Any, path: str = SECRETS_PATH) -> list[str]:
    """Create each missing secret as a SecureString parameter; existing ones are kept as they are.

    The names and generators are compose_secrets.SECRET_KEYS, the secrets docker-compose.yml
    requires: the instance writes these parameters into its untracked .env as NAME=value.
    """
    created = []
    for name, generate in SECRET_KEYS.items():
        try:
            ssm.put_parameter(
                Name=f"{path}/{name}",
                Value=generate(),
                Type="SecureString",
                Overwrite=False,
                Description=f"{PROJECT_NAME} Airflow secret; written to the instance's .env",
                Tags=[{"Key": "project", "Value": PROJECT_NAME}],
            )
        except ssm.exceptions.ParameterAlreadyExists:
            continue
        created.append(f"{path}/{name}")
    return created


def port_forward_command(instance_id: str, region: str, port: int = AIRFLOW_UI_PORT) -> str:
    parameters = json.dumps({"portNumber": [str(port)], "localPortNumber": [str(port)]})
    return (
        f"aws ssm start-session --region {region} --target {instance_id} "
        f"--document-name AWS-StartPortForwardingSession --parameters '{parameters}'"
    )


# --- the whole deploy ----------------------------------------------------------------------------


def deploy(
    settings: Settings,
    *,
    confirm: bool,
    stack_name: str = DEFAULT_STACK_NAME,
    alert_email: str | None = None,
    say: Callable[[str], None] = print,
    clients: Clients | None = None,
    build_dir: Path = DIST,
    commit: str = "HEAD",
    new_ami: bool = False,
    replace_instance: bool = False,
    boot_timeout: float = BOOT_TIMEOUT,
    release: Release | None = None,
    wait: bool = True,
) -> DeployResult:
    """Lint, build, change set; if `confirm`: secrets, upload, execute, wait for the boot. See
    the module doc. The artifact and the release are built under `build_dir` (dist/), unless
    `release` is one built before; `wait=False` returns without waiting for the instance."""
    if settings.pipeline_env != "aws":
        raise DeployError(
            f"PIPELINE_ENV={settings.pipeline_env}: the deploy is of the aws environment; run it "
            "with PIPELINE_ENV=aws (nox -s deploy sets it)"
        )
    target = settings.aws_endpoint_url or f"AWS ({settings.aws_region})"
    say(f"deploy: stack {stack_name} to {target}")
    lint_template()
    say(f"cfn-lint: {_shown(TEMPLATE)} is clean")
    artifact = build_job_artifact(build_dir / "spark_jobs")
    try:
        release = release or build_release(
            build_dir / "releases", dotenv_settings(), commit=commit, say=say
        )
    except ReleaseError as exc:
        raise DeployError(f"the release cannot be built: {exc}") from None
    say(f"built: job artifact {_shown(artifact.root)}, release {_shown(release.directory)}")

    clients = clients or Clients.for_settings(settings)
    image_id, image_source = pinned_image_id(clients, stack_name, new_ami=new_ami)
    say(f"AMI {image_id}: {image_source}")
    parameters = stack_parameters(settings, release.digest, image_id, alert_email=alert_email)
    # A first deploy makes the buckets before the instance, whose boot needs the release there.
    first = confirm and stack_status(clients.cloudformation, stack_name) in NO_STACK
    change_set = _change_set(
        clients, stack_name, parameters | ({"LaunchInstance": "false"} if first else {}), say
    )
    result = DeployResult(stack_name, applied=False, changes=change_set.changes)
    replaced = replacements(change_set.changes)
    if replaced and not replace_instance:
        discard_change_set(clients.cloudformation, change_set)
        raise DeployError(
            f"this change would replace {', '.join(replaced)}: a new instance boots from the "
            "release (the Postgres volume is kept, but the Airflow UI is down meanwhile). Deploy "
            "again with --replace-instance to do it anyway"
        )
    if not confirm:
        discard_change_set(clients.cloudformation, change_set)
        say(
            "nothing was changed (preview). To apply: nox -s deploy -- --target aws --confirm"
            + (" (it also uploads the job artifact and the release)" if change_set.changes else "")
        )
        return result

    result.secrets_created = ensure_secrets(clients.ssm)
    for name in result.secrets_created:
        say(f"created secret {name} (SecureString)")
    if first:
        execute_change_set(clients.cloudformation, change_set)
        say(f"stack {stack_name}: the buckets and roles exist; the instance comes next")
    _upload(clients, settings, artifact, release, result=result, say=say)
    if first:
        change_set = _change_set(clients, stack_name, parameters, say)
        result.changes += change_set.changes
    if change_set.change_set_id is not None:
        execute_change_set(clients.cloudformation, change_set)
        say(f"stack {stack_name}: {change_set.change_type.lower()} complete")
    result.applied = True
    result.outputs = stack_outputs(clients.cloudformation, stack_name)
    instance = result.outputs.get("AirflowInstanceId")
    if instance is None:
        raise DeployError(f"stack {stack_name} has no AirflowInstanceId output")
    if wait:
        result.boot = wait_for_boot(
            clients.s3, settings.logs_bucket, instance, release.digest, timeout=boot_timeout,
            say=say,
        )  # fmt: skip
        say(f"release {release.digest[:12]} (commit {release.commit}) is healthy on {instance}")
    say(access_instructions(instance, settings.aws_region))
    return result


def _change_set(
    clients: Clients, stack_name: str, parameters: Mapping[str, str], say: Callable[[str], None]
) -> ChangeSetResult:
    change_set = create_change_set(
        clients.cloudformation, stack_name, TEMPLATE.read_text(), parameters
    )
    if change_set.changes:
        say(f"changes to stack {stack_name} ({change_set.change_type}):")
        say(format_changes(change_set.changes))
    else:
        say(f"stack {stack_name}: no changes")
    return change_set


def _upload(
    clients: Clients,
    settings: Settings,
    artifact: JobArtifact,
    release: Release,
    *,
    result: DeployResult,
    say: Callable[[str], None],
) -> None:
    result.uploaded, result.unchanged_uploads = upload_contents(
        clients.s3, settings, artifact, release
    )
    for uri in result.uploaded:
        say(f"uploaded {uri}")
    say(f"{len(result.unchanged_uploads)} file(s) in the data bucket already up to date")


def access_instructions(instance: str, region: str) -> str:
    return (
        "\nAirflow UI: forward its port through SSM (needs the session-manager-plugin), then "
        f"open http://localhost:{AIRFLOW_UI_PORT}\n  "
        + port_forward_command(instance, region)
        + f"\nlog in as admin with: aws ssm get-parameter --region {region} "
        f"--name {SECRETS_PATH}/AIRFLOW_ADMIN_PASSWORD --with-decryption "
        "--query Parameter.Value --output text"
    )


# --- command line ---------------------------------------------------------------------------------


def e2e_target(environ: Mapping[str, str]) -> dict[str, Any]:
    """What `nox -s e2e_aws` needs: {"skip": reason} or {"env": {...}} for the e2e tests."""
    if not environ.get("AIRFLOW_API_URL"):
        return {
            "skip": "AIRFLOW_API_URL is not set: start the SSM port forward that `nox -s deploy` "
            f"prints and set AIRFLOW_API_URL=http://localhost:{AIRFLOW_UI_PORT}"
        }
    import boto3

    settings = load_settings("aws", environ)
    session = boto3.Session(region_name=settings.aws_region)
    if settings.aws_endpoint_url is None and session.get_credentials() is None:
        return {
            "skip": "no AWS credentials found (environment, ~/.aws, SSO or instance profile); "
            "log in (e.g. `aws sso login`) so the tests can read the buckets"
        }
    env = {"PIPELINE_ENV": "aws"}
    if not environ.get("AIRFLOW_PASSWORD"):
        ssm = boto3.client("ssm", **settings.boto3_client_kwargs())
        name = f"{SECRETS_PATH}/AIRFLOW_ADMIN_PASSWORD"
        env["AIRFLOW_PASSWORD"] = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"][
            "Value"
        ]
    return {"env": env}


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--target",
        choices=("aws",),
        default="aws",
        help="aws: the account of your credentials (preview unless --confirm); the rehearsal on "
        "emulated AWS is host_stack/ec2_rehearsal.py (nox -s deploy -- --target localstack)",
    )
    parser.add_argument("--confirm", action="store_true", help="apply the changes (aws)")
    parser.add_argument("--stack-name", default=DEFAULT_STACK_NAME)
    parser.add_argument(
        "--new-ami", action="store_true", help="move to the latest Amazon Linux 2023 AMI"
    )
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="return once the stack is updated, without waiting for the instance's report",
    )
    parser.add_argument(
        "--replace-instance",
        action="store_true",
        help="allow a change that replaces the Airflow instance (its data volume is kept)",
    )
    parser.add_argument(
        "--alert-email",
        help="subscribe this address to the stack's failure alerts ('' removes it; unset keeps "
        "the current one)",
    )
    parser.add_argument(
        "--e2e-target",
        action="store_true",
        help="print, as JSON, what `nox -s e2e_aws` needs or why it must skip",
    )
    args = parser.parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        if args.e2e_target:
            print(json.dumps(e2e_target(os.environ)))
            return 0
        settings = load_settings("aws")
        deploy(
            settings,
            confirm=args.confirm,
            stack_name=args.stack_name,
            new_ami=args.new_ami,
            replace_instance=args.replace_instance,
            wait=not args.no_wait,
            alert_email=args.alert_email,
        )
    except (DeployError, ConfigError) as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    except NoCredentialsError:
        print(
            "deploy failed: no AWS credentials; log in first (`aws sso login`, AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment)",
            file=sys.stderr,
        )
        return 1
    except (ClientError, BotoCoreError) as exc:
        print(f"deploy failed: AWS refused a call: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
