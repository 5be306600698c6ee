"""Security and wiring of envs/aws/cloudformation.yaml, read as data (no network, no AWS).

cfn-lint's own YAML loader parses the template (it understands !Ref, !Sub, !GetAtt). Each rule is
a small function returning its findings; the tests run it on the real template (no findings) and
on a broken copy (the finding it must report), so no rule can pass by accident.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.api import lint
from cfnlint.decode.cfn_yaml import load

from config.config import load_settings
from orchestration import deploy

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "envs" / "aws" / "cloudformation.yaml"
BUCKETS = ("DataBucket", "LogsBucket")

# Statements allowed an unscoped Resource "*", and why. Nothing S3 may ever be here.
UNSCOPED_STATEMENTS = {
    # EMR's RunJobFlow has no resource-level permissions; the statement requires our tag instead.
    ("AirflowRole", "EmrCreateTaggedClusters"): "elasticmapreduce:RunJobFlow",
    # The teardown's search for a run's clusters by tag: a read-only list, which has neither
    # resource-level permissions nor condition keys.
    ("AirflowRole", "EmrListClusters"): "elasticmapreduce:ListClusters",
    # The SSM agent's registration and channels (Session Manager, port forwarding): no resource
    # ARNs. In place of AmazonSSMManagedInstanceCore, whose ssm:GetParameter(s) on "*" would
    # let any task read every parameter in the account.
    ("AirflowRole", "SessionManagerAgent"): (
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
        "ec2messages:AcknowledgeMessage",
        "ec2messages:DeleteMessage",
        "ec2messages:FailMessage",
        "ec2messages:GetEndpoint",
        "ec2messages:GetMessages",
        "ec2messages:SendReply",
    ),
}
# Of those, the statements no Condition can narrow (the services define no useful key for them).
UNCONDITIONAL_STATEMENTS = {
    ("AirflowRole", "EmrListClusters"),
    ("AirflowRole", "SessionManagerAgent"),
}
SSM_AGENT_STATEMENT = ("AirflowRole", "SessionManagerAgent")
# The only prefixes each role may delete or overwrite objects in (template parameters).
WRITABLE_PREFIXES = {
    # Task logs, and the boot's report the deploy waits for (envs/aws/boot/boot.sh).
    "AirflowRole": {"${LogsBucket.Arn}/${LogsPrefix}/*", "${LogsBucket.Arn}/boot/*"},
    "EmrNodeRole": {
        "${DataBucket.Arn}/${RawPrefix}/*",
        "${DataBucket.Arn}/${ProcessedPrefix}/*",
        "${LogsBucket.Arn}/${EmrLogsPrefix}/*",
    },
}
S3_WRITES = ("s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectAcl")
# AWS managed policies the roles may attach, and why (their statements are AWS's, not ours).
MANAGED_POLICIES = {
    # The EMR service role: EC2 actions only on resources tagged
    # for-use-with-amazon-emr-managed-policies=true; EMR cannot launch clusters without them.
    "AmazonEMRServicePolicy_v2": "EmrServiceRole",
}


def _template() -> dict[str, Any]:
    return load(str(TEMPLATE_PATH))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _template()


def _resources(template: dict, kind: str) -> Iterator[tuple[str, dict]]:
    for name, resource in template["Resources"].items():
        if resource["Type"] == kind:
            yield name, resource


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _refers_to(value: Any, logical_id: str) -> bool:
    """True if an intrinsic (Ref, GetAtt, Sub) in `value` names the resource `logical_id`."""
    text = json.dumps(value)
    return bool(
        re.search(rf'"Ref": "{logical_id}"', text)
        or re.search(rf'"Fn::GetAtt": \["{logical_id}", ', text)
        or re.search(rf"\$\{{{logical_id}(\.[A-Za-z]+)?\}}", text)
    )


def _policy_statements(template: dict) -> Iterator[tuple[str, dict]]:
    """(role logical id, statement) for every inline statement of every role and policy."""
    for name, role in _resources(template, "AWS::IAM::Role"):
        for policy in role["Properties"].get("Policies", []):
            for statement in _as_list(policy["PolicyDocument"]["Statement"]):
                yield name, statement
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for name, policy in _resources(template, kind):
            for statement in _as_list(policy["Properties"]["PolicyDocument"]["Statement"]):
                yield name, statement


# --- rules: each returns a list of findings (empty = holds) ----------------------------------


def buckets_encrypted(template: dict) -> list[str]:
    findings = []
    for name, bucket in _resources(template, "AWS::S3::Bucket"):
        rules = bucket["Properties"].get("BucketEncryption", {})
        rules = rules.get("ServerSideEncryptionConfiguration", [])
        algorithms = {r.get("ServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules}
        if not algorithms or not algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}:
            findings.append(f"{name}: no default encryption")
    return findings


def buckets_block_public_access(template: dict) -> list[str]:
    flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    findings = []
    for name, bucket in _resources(template, "AWS::S3::Bucket"):
        block = bucket["Properties"].get("PublicAccessBlockConfiguration", {})
        findings += [f"{name}: {flag} is not true" for flag in flags if block.get(flag) is not True]
        ownership = bucket["Properties"].get("OwnershipControls", {}).get("Rules", [{}])
        if ownership[0].get("ObjectOwnership") != "BucketOwnerEnforced":
            findings.append(f"{name}: ACLs not disabled (ObjectOwnership BucketOwnerEnforced)")
    return findings


def buckets_deny_insecure_transport(template: dict) -> list[str]:
    findings = []
    policies = list(_resources(template, "AWS::S3::BucketPolicy"))
    for name, _bucket in _resources(template, "AWS::S3::Bucket"):
        denies = [
            statement
            for _, policy in policies
            if _refers_to(policy["Properties"]["Bucket"], name)
            for statement in _as_list(policy["Properties"]["PolicyDocument"]["Statement"])
            if statement["Effect"] == "Deny"
            and statement.get("Principal") in ("*", {"AWS": "*"})
            and _as_list(statement["Action"]) == ["s3:*"]
            and statement.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
            in ("false", False)
        ]
        resources = [r for statement in denies for r in _as_list(statement["Resource"])]
        covers_bucket = any(_refers_to(r, name) and "/*" not in json.dumps(r) for r in resources)
        covers_objects = any(_refers_to(r, name) and "/*" in json.dumps(r) for r in resources)
        if not (covers_bucket and covers_objects):
            findings.append(f"{name}: no Deny of s3:* without aws:SecureTransport on it and /*")
    return findings


def buckets_retained(template: dict) -> list[str]:
    return [
        f"{name}: not retained when the stack is deleted or replaces it"
        for name, bucket in _resources(template, "AWS::S3::Bucket")
        if bucket.get("DeletionPolicy") != "Retain" or bucket.get("UpdateReplacePolicy") != "Retain"
    ]


def logs_expire(template: dict) -> list[str]:
    rules = template["Resources"]["LogsBucket"]["Properties"].get("LifecycleConfiguration", {})
    enabled = [r for r in rules.get("Rules", []) if r.get("Status") == "Enabled"]
    if not any("ExpirationInDays" in r and "Prefix" not in r for r in enabled):
        return ["LogsBucket: no enabled lifecycle rule expiring every object"]
    return []


def s3_statements_scoped_to_project_buckets(template: dict) -> list[str]:
    findings = []
    for role, statement in _policy_statements(template):
        actions = _as_list(statement["Action"])
        if statement["Effect"] != "Allow" or not any(a.startswith("s3:") for a in actions):
            continue
        sid = statement.get("Sid", "?")
        if any(a in ("*", "s3:*") for a in actions):
            findings.append(f"{role}/{sid}: allows every S3 action")
        for resource in _as_list(statement["Resource"]):
            if not any(_refers_to(resource, bucket) for bucket in BUCKETS):
                findings.append(f"{role}/{sid}: S3 on {json.dumps(resource)}, not a project bucket")
    return findings


def unscoped_statements_are_known(template: dict) -> list[str]:
    findings = []
    for role, statement in _policy_statements(template):
        if statement["Effect"] != "Allow" or "*" not in _as_list(statement["Resource"]):
            continue
        sid = statement.get("Sid", "?")
        allowed = UNSCOPED_STATEMENTS.get((role, sid))
        allowed = list(allowed) if isinstance(allowed, tuple) else [allowed]
        if _as_list(statement["Action"]) != allowed:
            findings.append(f"{role}/{sid}: Resource '*' for {statement['Action']} not justified")
        elif not statement.get("Condition") and (role, sid) not in UNCONDITIONAL_STATEMENTS:
            findings.append(f"{role}/{sid}: Resource '*' without a Condition")
    return findings


def managed_policies_are_known(template: dict) -> list[str]:
    findings = []
    for name, role in _resources(template, "AWS::IAM::Role"):
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            policy = json.dumps(arn).rsplit("/", 1)[-1].strip('"}')
            if MANAGED_POLICIES.get(policy) != name:
                findings.append(f"{name}: managed policy {policy} is not in MANAGED_POLICIES")
    return findings


def pass_role_is_scoped(template: dict) -> list[str]:
    findings = []
    for role, statement in _policy_statements(template):
        if "iam:PassRole" not in _as_list(statement["Action"]):
            continue
        sid = statement.get("Sid", "?")
        for resource in _as_list(statement["Resource"]):
            if not any(_refers_to(resource, r) for r, _ in _resources(template, "AWS::IAM::Role")):
                findings.append(f"{role}/{sid}: passes {json.dumps(resource)}, not a stack role")
        if "iam:PassedToService" not in json.dumps(statement.get("Condition", {})):
            findings.append(f"{role}/{sid}: PassRole without an iam:PassedToService condition")
    return findings


def no_inbound_rules(template: dict) -> list[str]:
    findings = [
        f"{name}: a separate ingress rule"
        for name, _ in _resources(template, "AWS::EC2::SecurityGroupIngress")
    ]
    for name, group in _resources(template, "AWS::EC2::SecurityGroup"):
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            findings.append(f"{name}: ingress {rule.get('FromPort')}-{rule.get('ToPort')}")
    return findings


def instance_managed_by_ssm_only(template: dict) -> list[str]:
    findings = []
    role_name, sid = SSM_AGENT_STATEMENT
    agent_actions = list(UNSCOPED_STATEMENTS[SSM_AGENT_STATEMENT])
    ssm_roles = {
        role
        for role, statement in _policy_statements(template)
        if role == role_name and statement.get("Sid") == sid
        and _as_list(statement["Action"]) == agent_actions
    }  # fmt: skip
    for name, instance in _resources(template, "AWS::EC2::Instance"):
        props = instance["Properties"]
        profile = next(
            (
                profile_props
                for p, profile_props in _resources(template, "AWS::IAM::InstanceProfile")
                if _refers_to(props.get("IamInstanceProfile"), p)
            ),
            None,
        )
        if profile is None or not any(
            _refers_to(profile["Properties"]["Roles"], role) for role in ssm_roles
        ):
            findings.append(f"{name}: its instance profile's role lacks the SSM agent's actions")
        if "KeyName" in props:
            findings.append(f"{name}: has an SSH key pair (access is through SSM only)")
        if props.get("MetadataOptions", {}).get("HttpTokens") != "required":
            findings.append(f"{name}: IMDSv1 allowed (MetadataOptions.HttpTokens != required)")
        volumes = [m.get("Ebs", {}) for m in props.get("BlockDeviceMappings", [])]
        if not volumes or not all(v.get("Encrypted") is True for v in volumes):
            findings.append(f"{name}: root volume not encrypted")
    return findings


def instance_boot_is_awaited_and_its_data_kept(template: dict) -> list[str]:
    """The deploy's guarantees that live in the template: the stack waits for the boot's signal,
    containers reach the role's credentials (IMDSv2 over two hops), the AMI is a value the
    deploy pins (not a parameter resolved anew at every update) and Postgres's volume outlives
    the instance."""
    findings = []
    for name, instance in _resources(template, "AWS::EC2::Instance"):
        props = instance["Properties"]
        signal = instance.get("CreationPolicy", {}).get("ResourceSignal", {})
        if signal.get("Count") != 1 or not signal.get("Timeout"):
            findings.append(f"{name}: no CreationPolicy ResourceSignal (the boot's health)")
        if props.get("MetadataOptions", {}).get("HttpPutResponseHopLimit") != 2:
            findings.append(f"{name}: IMDS hop limit is not 2 (containers get no credentials)")
        image = props.get("ImageId", {})
        kind = template["Parameters"].get(image.get("Ref", ""), {}).get("Type", "")
        if kind != "AWS::EC2::Image::Id":
            findings.append(f"{name}: ImageId is not a pinned AMI parameter ({kind or image})")
    volumes = dict(_resources(template, "AWS::EC2::Volume"))
    attached = {
        a["Properties"]["VolumeId"].get("Ref")
        for _, a in _resources(template, "AWS::EC2::VolumeAttachment")
    }
    if not volumes.keys() & attached:
        findings.append("no EBS volume attached for Postgres's data")
    for name, volume in volumes.items():
        for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
            if volume.get(policy) not in ("Retain", "Snapshot"):
                findings.append(f"{name}: {policy} {volume.get(policy)} loses the data")
        if volume["Properties"].get("Encrypted") is not True:
            findings.append(f"{name}: not encrypted")
    return findings


def alerts_publish_only_to_the_topic(template: dict) -> list[str]:
    """Only the Airflow role may publish, and only to the stack's alerts topic."""
    findings = []
    for role, statement in _policy_statements(template):
        actions = _as_list(statement["Action"])
        if statement["Effect"] != "Allow" or not any(a.startswith("sns:") for a in actions):
            continue
        sid = statement.get("Sid", "?")
        if role != "AirflowRole" or actions != ["sns:Publish"]:
            findings.append(f"{role}/{sid}: {actions} (only AirflowRole may sns:Publish)")
        if _as_list(statement["Resource"]) != [{"Ref": "AlertsTopic"}]:
            findings.append(f"{role}/{sid}: publishes to {json.dumps(statement['Resource'])}")
    if not any(
        role == "AirflowRole" and _as_list(s["Action"]) == ["sns:Publish"]
        for role, s in _policy_statements(template)
    ):
        findings.append("AirflowRole: may not publish to AlertsTopic")
    findings += [
        f"{name}: a topic policy" for name, _ in _resources(template, "AWS::SNS::TopicPolicy")
    ]
    return findings


def parameters_readable_only_under_the_secrets_path(template: dict) -> list[str]:
    """No role may read SSM parameters outside SecretsPath (the instance's own secrets), but
    the one that names the release to run (envs/aws/boot/boot.sh)."""
    findings = []
    for role, statement in _policy_statements(template):
        actions = _as_list(statement["Action"])
        reads = [a for a in actions if a in ("*", "ssm:*") or a.startswith("ssm:GetParameter")]
        if statement["Effect"] != "Allow" or not reads:
            continue
        for resource in _as_list(statement["Resource"]):
            text = json.dumps(resource)
            if not re.search(
                r":parameter(\$\{SecretsPath\}(/\*)?|/\$\{ProjectName\}/release)\"", text
            ):
                findings.append(f"{role}/{statement.get('Sid', '?')}: {reads} on {text}")
    return findings


def writes_only_where_each_role_must(template: dict) -> list[str]:
    """Object writes and deletes only under WRITABLE_PREFIXES (never releases/ or artifacts/)."""
    findings = []
    for role, statement in _policy_statements(template):
        actions = _as_list(statement["Action"])
        if statement["Effect"] != "Allow" or not any(a in S3_WRITES for a in actions):
            continue
        allowed = WRITABLE_PREFIXES.get(role, set())
        for resource in _as_list(statement["Resource"]):
            text = resource.get("Fn::Sub") if isinstance(resource, dict) else resource
            if text not in allowed:
                sid = statement.get("Sid", "?")
                findings.append(f"{role}/{sid}: writes or deletes {json.dumps(resource)}")
    return findings


def data_bucket_versioned_and_logged(template: dict) -> list[str]:
    findings = []
    props = template["Resources"]["DataBucket"]["Properties"]
    if props.get("VersioningConfiguration", {}).get("Status") != "Enabled":
        findings.append("DataBucket: versioning not enabled")
    rules = props.get("LifecycleConfiguration", {}).get("Rules", [])
    if not any(
        r.get("Status") == "Enabled"
        and "NoncurrentDays" in r.get("NoncurrentVersionExpiration", {})
        for r in rules
    ):
        findings.append("DataBucket: no lifecycle rule expiring noncurrent versions")
    logging = props.get("LoggingConfiguration", {})
    if logging.get("DestinationBucketName") != {"Ref": "LogsBucket"}:
        findings.append("DataBucket: no access logging to LogsBucket")
    prefix = logging.get("LogFilePrefix", "")
    granted = [
        statement
        for statement in _as_list(
            template["Resources"]["LogsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        )
        if statement.get("Principal") == {"Service": "logging.s3.amazonaws.com"}
        and statement["Effect"] == "Allow"
    ]

    def scoped_put(statement: dict) -> bool:
        keys = {key for test in statement.get("Condition", {}).values() for key in test}
        return (
            _as_list(statement["Action"]) == ["s3:PutObject"]
            and statement["Resource"] == {"Fn::Sub": f"${{LogsBucket.Arn}}/{prefix}*"}
            and {"aws:SourceArn", "aws:SourceAccount"} <= keys
        )

    if not prefix or not any(scoped_put(statement) for statement in granted):
        findings.append(
            "LogsBucket: the logging service may not PutObject under the log prefix "
            "(scoped by aws:SourceArn and aws:SourceAccount)"
        )
    return findings


RULES: list[Callable[[dict], list[str]]] = [
    buckets_encrypted,
    buckets_block_public_access,
    buckets_deny_insecure_transport,
    buckets_retained,
    logs_expire,
    s3_statements_scoped_to_project_buckets,
    unscoped_statements_are_known,
    managed_policies_are_known,
    pass_role_is_scoped,
    no_inbound_rules,
    instance_managed_by_ssm_only,
    instance_boot_is_awaited_and_its_data_kept,
    alerts_publish_only_to_the_topic,
    parameters_readable_only_under_the_secrets_path,
    writes_only_where_each_role_must,
    data_bucket_versioned_and_logged,
]


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.__name__)
def test_template_holds(template, rule):
    assert rule(template) == []


def _statement(template: dict, role: str, sid: str) -> dict:
    for policy in template["Resources"][role]["Properties"]["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if statement.get("Sid") == sid:
                return statement
    raise KeyError(f"{role}/{sid}")


# (rule, how to break the template, the finding the rule must report)
BROKEN = [
    (
        data_bucket_versioned_and_logged,
        lambda t: t["Resources"]["DataBucket"]["Properties"].pop("VersioningConfiguration"),
        "DataBucket: versioning not enabled",
    ),
    (
        data_bucket_versioned_and_logged,
        lambda t: t["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"][
            "Rules"
        ].pop(),
        "DataBucket: no lifecycle rule expiring noncurrent versions",
    ),
    (
        data_bucket_versioned_and_logged,
        lambda t: t["Resources"]["DataBucket"]["Properties"].pop("LoggingConfiguration"),
        "DataBucket: no access logging",
    ),
    (
        data_bucket_versioned_and_logged,
        lambda t: t["Resources"]["LogsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][
            -1
        ].pop("Condition"),
        "LogsBucket: the logging service may not PutObject",
    ),
    (
        alerts_publish_only_to_the_topic,
        lambda t: _statement(t, "AirflowRole", "PublishAlerts").update(Resource="*"),
        'AirflowRole/PublishAlerts: publishes to "*"',
    ),
    (
        alerts_publish_only_to_the_topic,
        lambda t: _statement(t, "AirflowRole", "PublishAlerts").update(Action="sns:*"),
        "AirflowRole/PublishAlerts: ['sns:*']",
    ),
    (
        alerts_publish_only_to_the_topic,
        lambda t: t["Resources"]["AirflowRole"]["Properties"]["Policies"][0]["PolicyDocument"][
            "Statement"
        ].remove(_statement(t, "AirflowRole", "PublishAlerts")),
        "AirflowRole: may not publish to AlertsTopic",
    ),
    (
        buckets_encrypted,
        lambda t: t["Resources"]["DataBucket"]["Properties"].pop("BucketEncryption"),
        "DataBucket: no default encryption",
    ),
    (
        buckets_block_public_access,
        lambda t: t["Resources"]["LogsBucket"]["Properties"][
            "PublicAccessBlockConfiguration"
        ].update(RestrictPublicBuckets=False),
        "LogsBucket: RestrictPublicBuckets is not true",
    ),
    (
        buckets_deny_insecure_transport,
        lambda t: t["Resources"].pop("LogsBucketPolicy"),
        "LogsBucket: no Deny of s3:* without aws:SecureTransport",
    ),
    (
        buckets_deny_insecure_transport,
        lambda t: t["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][
            0
        ].update(Resource=[{"Fn::GetAtt": ["DataBucket", "Arn"]}]),
        "DataBucket: no Deny of s3:* without aws:SecureTransport on it and /*",
    ),
    (
        buckets_retained,
        lambda t: t["Resources"]["DataBucket"].pop("DeletionPolicy"),
        "DataBucket: not retained",
    ),
    (
        logs_expire,
        lambda t: t["Resources"]["LogsBucket"]["Properties"].pop("LifecycleConfiguration"),
        "LogsBucket: no enabled lifecycle rule",
    ),
    (
        s3_statements_scoped_to_project_buckets,
        lambda t: _statement(t, "EmrNodeRole", "DataBucketWrite").update(Resource="*"),
        'EmrNodeRole/DataBucketWrite: S3 on "*", not a project bucket',
    ),
    (
        s3_statements_scoped_to_project_buckets,
        lambda t: _statement(t, "AirflowRole", "LogsObjects").update(
            Resource="arn:aws:s3:::someone-elses-bucket/*"
        ),
        "AirflowRole/LogsObjects: S3 on",
    ),
    (
        s3_statements_scoped_to_project_buckets,
        lambda t: _statement(t, "AirflowRole", "DataBucketObjectsRead").update(Action="s3:*"),
        "AirflowRole/DataBucketObjectsRead: allows every S3 action",
    ),
    (
        unscoped_statements_are_known,
        lambda t: _statement(t, "AirflowRole", "EmrOwnClusters").update(Resource="*"),
        "AirflowRole/EmrOwnClusters: Resource '*'",
    ),
    (
        unscoped_statements_are_known,
        lambda t: _statement(t, "AirflowRole", "EmrCreateTaggedClusters").pop("Condition"),
        "AirflowRole/EmrCreateTaggedClusters: Resource '*' without a Condition",
    ),
    (
        unscoped_statements_are_known,
        lambda t: _statement(t, "AirflowRole", "EmrListClusters").update(
            Action=["elasticmapreduce:ListClusters", "elasticmapreduce:TerminateJobFlows"]
        ),
        "AirflowRole/EmrListClusters: Resource '*'",
    ),
    (
        managed_policies_are_known,
        lambda t: t["Resources"]["EmrNodeRole"]["Properties"].update(
            ManagedPolicyArns=["arn:aws:iam::aws:policy/AmazonS3FullAccess"]
        ),
        "EmrNodeRole: managed policy AmazonS3FullAccess",
    ),
    (
        pass_role_is_scoped,
        lambda t: _statement(t, "AirflowRole", "PassEmrRoles").update(Resource="*"),
        'AirflowRole/PassEmrRoles: passes "*"',
    ),
    (
        no_inbound_rules,
        lambda t: t["Resources"]["AirflowSecurityGroup"]["Properties"].update(
            SecurityGroupIngress=[
                {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "CidrIp": "10.0.0.0/8"}
            ]
        ),
        "AirflowSecurityGroup: ingress 8080-8080",
    ),
    (
        no_inbound_rules,
        lambda t: t["Resources"].update(
            Ssh={
                "Type": "AWS::EC2::SecurityGroupIngress",
                "Properties": {"GroupId": {"Ref": "AirflowSecurityGroup"}, "FromPort": 22},
            }
        ),
        "Ssh: a separate ingress rule",
    ),
    (
        instance_managed_by_ssm_only,
        lambda t: _statement(t, "AirflowRole", "SessionManagerAgent").update(
            Action=["ssm:UpdateInstanceInformation"]
        ),
        "AirflowInstance: its instance profile's role lacks the SSM agent's actions",
    ),
    (
        managed_policies_are_known,
        lambda t: t["Resources"]["AirflowRole"]["Properties"].update(
            ManagedPolicyArns=["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"]
        ),
        "AirflowRole: managed policy AmazonSSMManagedInstanceCore",
    ),
    (
        unscoped_statements_are_known,
        lambda t: _statement(t, "AirflowRole", "SessionManagerAgent")["Action"].append(
            "ssm:GetParameters"
        ),
        "AirflowRole/SessionManagerAgent: Resource '*'",
    ),
    (
        parameters_readable_only_under_the_secrets_path,
        lambda t: _statement(t, "AirflowRole", "SessionManagerAgent")["Action"].append(
            "ssm:GetParameter"
        ),
        "AirflowRole/SessionManagerAgent: ['ssm:GetParameter'] on \"*\"",
    ),
    (
        parameters_readable_only_under_the_secrets_path,
        lambda t: _statement(t, "AirflowRole", "ReadSecrets").update(
            Resource={"Fn::Sub": "arn:aws:ssm:us-east-1:123456789012:parameter/*"}
        ),
        "AirflowRole/ReadSecrets: ['ssm:GetParametersByPath']",
    ),
    (
        writes_only_where_each_role_must,
        lambda t: _statement(t, "AirflowRole", "LogsObjects").update(
            Resource={"Fn::Sub": "${LogsBucket.Arn}/*"}
        ),
        "AirflowRole/LogsObjects: writes or deletes",
    ),
    (
        writes_only_where_each_role_must,
        lambda t: _statement(t, "EmrNodeRole", "DataBucketWrite")["Resource"].append(
            {"Fn::Sub": "${DataBucket.Arn}/releases/*"}
        ),
        "EmrNodeRole/DataBucketWrite: writes or deletes",
    ),
    (
        writes_only_where_each_role_must,
        lambda t: _statement(t, "EmrNodeRole", "DataBucketWrite")["Resource"].append(
            {"Fn::Sub": "${DataBucket.Arn}/${ArtifactPrefix}/*"}
        ),
        "EmrNodeRole/DataBucketWrite: writes or deletes",
    ),
    (
        instance_managed_by_ssm_only,
        lambda t: t["Resources"]["AirflowInstance"]["Properties"].update(KeyName="laptop"),
        "AirflowInstance: has an SSH key pair",
    ),
    (
        instance_managed_by_ssm_only,
        lambda t: t["Resources"]["AirflowInstance"]["Properties"].pop("MetadataOptions"),
        "AirflowInstance: IMDSv1 allowed",
    ),
    (
        instance_boot_is_awaited_and_its_data_kept,
        lambda t: t["Resources"]["AirflowInstance"].pop("CreationPolicy"),
        "AirflowInstance: no CreationPolicy ResourceSignal",
    ),
    (
        instance_boot_is_awaited_and_its_data_kept,
        lambda t: t["Resources"]["AirflowInstance"]["Properties"]["MetadataOptions"].pop(
            "HttpPutResponseHopLimit"
        ),
        "AirflowInstance: IMDS hop limit is not 2",
    ),
    (
        instance_boot_is_awaited_and_its_data_kept,
        lambda t: t["Parameters"]["ImageId"].update(
            Type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"
        ),
        "AirflowInstance: ImageId is not a pinned AMI parameter",
    ),
    (
        instance_boot_is_awaited_and_its_data_kept,
        lambda t: t["Resources"]["DataVolume"].update(DeletionPolicy="Delete"),
        "DataVolume: DeletionPolicy Delete loses the data",
    ),
    (
        instance_boot_is_awaited_and_its_data_kept,
        lambda t: t["Resources"].pop("DataVolumeAttachment"),
        "no EBS volume attached",
    ),
]


@pytest.mark.parametrize(
    ("rule", "change", "finding"),
    BROKEN,
    ids=[f"{rule.__name__}-{i}" for i, (rule, _, _) in enumerate(BROKEN)],
)
def test_rule_reports_a_broken_template(template, rule, change, finding):
    broken = copy.deepcopy(template)
    change(broken)
    assert any(f.startswith(finding) for f in rule(broken)), rule(broken)


# --- lint, parameters, names shared with the EMR cluster config --------------------------------


def test_cfn_lint_is_clean():
    assert [str(m) for m in lint(TEMPLATE_PATH.read_text())] == []


def test_pre_commit_runs_the_pinned_cfn_lint_on_the_template():
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    pin = next(
        line.split(";")[0].strip()
        for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("cfn-lint==")
    )
    assert hooks["cfn-lint"]["additional_dependencies"] == [pin]
    assert re.search(hooks["cfn-lint"]["files"], "envs/aws/cloudformation.yaml")


@pytest.fixture(scope="module")
def aws_settings():
    return load_settings("aws", environ={})


def test_deploy_fills_every_required_parameter(template, aws_settings):
    parameters = deploy.stack_parameters(aws_settings, "0" * 64, "ami-0123456789abcdef0")
    declared = template["Parameters"]
    required = {name for name, spec in declared.items() if "Default" not in spec}
    assert required <= set(parameters) <= set(declared)
    for name, value in parameters.items():
        pattern = declared[name].get("AllowedPattern")
        if value is not None:  # None: the stack's previous value (create_change_set)
            assert pattern is None or re.fullmatch(pattern, value), (name, value, pattern)
    assert parameters["DataBucketName"] == aws_settings.data_bucket
    assert parameters["LogsBucketName"] == aws_settings.logs_bucket
    assert parameters["SecretsPath"] == declared["SecretsPath"]["Default"] == deploy.SECRETS_PATH
    assert parameters["ProjectName"] == declared["ProjectName"]["Default"]


def test_emr_roles_are_the_ones_the_cluster_config_names(template, aws_settings):
    cluster = deploy.emr_cluster_config(aws_settings)
    parameters = deploy.stack_parameters(aws_settings, "0" * 64, "ami-0123456789abcdef0")
    resources = template["Resources"]
    assert resources["EmrServiceRole"]["Properties"]["RoleName"] == {"Ref": "EmrServiceRoleName"}
    assert resources["EmrNodeInstanceProfile"]["Properties"]["InstanceProfileName"] == {
        "Ref": "EmrInstanceProfileName"
    }
    assert parameters["EmrServiceRoleName"] == cluster["ServiceRole"]
    assert parameters["EmrInstanceProfileName"] == cluster["JobFlowRole"]


def test_emr_clusters_carry_the_tags_the_policies_require(template, aws_settings):
    tags = {t["Key"]: t["Value"] for t in deploy.emr_cluster_config(aws_settings)["Tags"]}
    # AmazonEMRServicePolicy_v2 acts only on resources with this tag; Airflow's RunJobFlow
    # statement requires the project tag.
    assert tags["for-use-with-amazon-emr-managed-policies"] == "true"
    assert tags["project"] == template["Parameters"]["ProjectName"]["Default"]
    condition = _statement(template, "AirflowRole", "EmrCreateTaggedClusters")["Condition"]
    assert condition == {"StringEquals": {"aws:RequestTag/project": {"Ref": "ProjectName"}}}
    for network in ("Vpc", "PublicSubnet"):
        network_tags = {
            t["Key"]: t["Value"] for t in template["Resources"][network]["Properties"]["Tags"]
        }
        assert network_tags["for-use-with-amazon-emr-managed-policies"] == "true", network


def test_secrets_statement_matches_the_secrets_path(template):
    statement = _statement(template, "AirflowRole", "ReadSecrets")
    assert statement["Action"] == "ssm:GetParametersByPath"
    assert statement["Resource"]["Fn::Sub"].endswith(":parameter${SecretsPath}")


def test_airflow_may_find_and_terminate_a_runs_clusters_by_tag(template):
    # orchestration/emr_teardown.py: ListClusters, then DescribeCluster (tags) and
    # TerminateJobFlows of the project's clusters only.
    assert _statement(template, "AirflowRole", "EmrListClusters")["Action"] == (
        "elasticmapreduce:ListClusters"
    )
    own = _statement(template, "AirflowRole", "EmrOwnClusters")
    assert {"elasticmapreduce:DescribeCluster", "elasticmapreduce:TerminateJobFlows"} <= set(
        own["Action"]
    )
    assert own["Condition"] == {"StringEquals": {"aws:ResourceTag/project": {"Ref": "ProjectName"}}}


# --- alerts ----------------------------------------------------------------------------------


def test_the_alert_email_is_optional_and_subscribed_only_when_given(template, aws_settings):
    spec = template["Parameters"]["AlertEmail"]
    assert spec["Default"] == ""
    for good in ("", "oncall@example.com"):
        assert re.fullmatch(spec["AllowedPattern"], good), good
    for bad in ("oncall", "on call@example.com", "a@b"):
        assert not re.fullmatch(spec["AllowedPattern"], bad), bad
    assert template["Conditions"]["HasAlertEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]
    }
    (subscription,) = (r for _, r in _resources(template, "AWS::SNS::Subscription"))
    assert subscription["Condition"] == "HasAlertEmail"
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlertsTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlertEmail"},
    }
    # Unset on the command line: the stack keeps its address (UsePreviousValue), none when new.
    assert (
        deploy.stack_parameters(aws_settings, "0" * 64, "ami-0123456789abcdef0")["AlertEmail"]
        is None
    )


def test_the_instance_learns_the_topic_as_alerts_topic_arn(template):
    from config.config import KEYS

    parameter = template["Resources"]["AlertsTopicArnParameter"]["Properties"]
    # The boot script writes every parameter below SecretsPath into .env as <basename>=value.
    assert parameter["Name"] == {"Fn::Sub": "${SecretsPath}/ALERTS_TOPIC_ARN"}
    assert parameter["Value"] == {"Ref": "AlertsTopic"}
    assert "ALERTS_TOPIC_ARN" in KEYS
    boot = (REPO_ROOT / "envs" / "aws" / "boot" / "boot.sh").read_text()
    assert 'aws ssm get-parameters-by-path --path "$SECRETS_PATH"' in boot
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    assert "ALERTS_TOPIC_ARN: ${ALERTS_TOPIC_ARN:-}" in compose


def test_scoped_prefixes_are_the_ones_config_and_the_cluster_config_use(template, aws_settings):
    parameters = deploy.stack_parameters(aws_settings, "0" * 64, "ami-0123456789abcdef0")
    assert parameters["RawPrefix"] == aws_settings.raw_prefix
    assert parameters["ProcessedPrefix"] == aws_settings.processed_prefix
    assert parameters["ArtifactPrefix"] == aws_settings.emr_job_artifact_prefix
    assert parameters["LogsPrefix"] == aws_settings.logs_prefix
    log_uri = deploy.emr_cluster_config(aws_settings)["LogUri"]
    assert log_uri == "s3://${logs_bucket}/" + parameters["EmrLogsPrefix"] + "/"
    for name in ("RawPrefix", "ProcessedPrefix", "ArtifactPrefix", "LogsPrefix", "EmrLogsPrefix"):
        assert template["Parameters"][name]["Default"] == parameters[name], name
    # Airflow's remote log folder in docker-compose.yml is the prefix the role may write.
    compose = (REPO_ROOT / "docker-compose.yml").read_text()
    assert f"s3://${{LOGS_BUCKET:-builditall-logs}}/{parameters['LogsPrefix']}" in compose


def test_emr_nodes_read_their_code_but_not_the_releases(template):
    read = _statement(template, "EmrNodeRole", "DataBucketRead")
    assert read["Action"] == "s3:GetObject"
    assert [r["Fn::Sub"] for r in read["Resource"]] == [
        "${DataBucket.Arn}/${ArtifactPrefix}/*",
        "${DataBucket.Arn}/${RawPrefix}/*",
        "${DataBucket.Arn}/${ProcessedPrefix}/*",
    ]
