"""The EC2 deploy rehearsed offline: the real deploy, a stand-in instance that boots it, the tests.

    python -m host_stack.ec2_rehearsal run [pytest args]    # nox -s deploy_rehearsal
    python -m host_stack.ec2_rehearsal deploy               # nox -s deploy -- --target localstack
    python -m host_stack.ec2_rehearsal up | down

`up` starts the emulated AWS (envs/aws/rehearsal/emulators.yml: LocalStack and the EMR emulator)
on a Docker --internal network, then runs orchestration/deploy.py against it, unchanged. While
the deploy runs, this module plays EC2: for each instance LocalStack reports running, it starts
a stand-in machine (envs/aws/rehearsal/instance.Dockerfile) on that network, with the docker
CLI on the host engine's socket, which runs the exact user data LocalStack holds for the
instance (DescribeInstanceAttribute). The deploy returns once the instance reports Airflow
healthy, as it does on AWS. `run` then forwards a port on 127.0.0.1 to the api-server, as the
SSM port forward does, and runs tests/e2e and tests/ec2 (a roll-out that keeps the history, a
release with a wrong digest) against it; `down` removes everything it started.

The instance's compose stack is started by the host engine, so the paths it mounts are the
host's: the stand-in's /opt/builditall and /var/lib/builditall (the data volume) are the host's
directories of the same names, made here and removed by `down`. Linux as root, like
`nox -s docker_engine`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from host_stack.stack import EMULATED_STEP_LOG_WAIT_SECONDS, EMULATED_STEP_TIMEOUT_SECONDS
from orchestration.deploy import DeployError

REPO_ROOT = Path(__file__).resolve().parent.parent
REHEARSAL_DIR = REPO_ROOT / "envs" / "aws" / "rehearsal"
EMULATORS = REHEARSAL_DIR / "emulators.yml"
NETWORK = "builditall-ec2-rehearsal"
INSTANCE_IMAGE = "builditall/ec2-instance:bookworm"
INSTANCE_LABEL = "builditall.rehearsal.instance"
# The instance's compose project: docker-compose.yml's `name`.
INSTANCE_PROJECT = "builditall"
# The host directories the stand-in shares with the host engine (see the module doc).
HOST_DIRS = (Path("/opt/builditall"), Path("/var/lib/builditall"))
MARKER = ".builditall-rehearsal"
STATE_DIR = REPO_ROOT / ".stack" / "ec2-rehearsal"
TESTS = ("tests/e2e", "tests/ec2")
REGION = "us-east-1"
LOCALSTACK_KEYS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
# What the rehearsal's deploy may take: a first boot loads ~1.3 GB of images on 2 cores.
BOOT_TIMEOUT_SECONDS = 1200.0


class RehearsalError(RuntimeError):
    """The rehearsal cannot go on; the message says why and what to do."""


def _run(command: Sequence[str], *, check: bool = True, quiet: bool = False, **kwargs) -> str:
    if not quiet:
        print(f"+ {' '.join(command)}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if check and done.returncode != 0:
        raise RehearsalError(
            f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr.strip()[-3000:]}"
        )
    return done.stdout


def emulators_compose(*args: str) -> list[str]:
    env_file = REPO_ROOT / ".env"
    files = ["-f", str(EMULATORS), *(["--env-file", str(env_file)] if env_file.exists() else [])]
    return ["docker", "compose", *files, *args]


def container_ip(container: str) -> str:
    networks = json.loads(
        _run(
            ["docker", "inspect", "--format", "{{json .NetworkSettings.Networks}}", container],
            quiet=True,
        )
    )
    ip = networks.get(NETWORK, {}).get("IPAddress")
    if not ip:
        raise RehearsalError(f"{container} has no address on {NETWORK}")
    return ip


def emulator_endpoints() -> dict[str, str]:
    """Where the host reaches the emulated AWS: the emulators' addresses on the network."""
    ids = {
        service: _run(emulators_compose("ps", "--quiet", service), quiet=True).strip()
        for service in ("localstack", "emr-emulator")
    }
    missing = [service for service, cid in ids.items() if not cid]
    if missing:
        raise RehearsalError(
            f"{', '.join(missing)} not running: python -m host_stack.ec2_rehearsal up"
        )
    return {
        "AWS_ENDPOINT_URL": f"http://{container_ip(ids['localstack'])}:4566",
        "EMR_ENDPOINT_URL": f"http://{container_ip(ids['emr-emulator'])}:4570",
    }


def deploy_environment(endpoints: Mapping[str, str]) -> dict[str, str]:
    """The deployer's and the tests' settings: PIPELINE_ENV=aws at the emulated endpoints."""
    return {
        **os.environ,
        "PIPELINE_ENV": "aws",
        "AWS_REGION": REGION,
        **LOCALSTACK_KEYS,
        **endpoints,
        "EMR_STEP_TIMEOUT_SECONDS": str(EMULATED_STEP_TIMEOUT_SECONDS),
        "EMR_STEP_LOG_WAIT_SECONDS": str(EMULATED_STEP_LOG_WAIT_SECONDS),
    }


# --- the stand-in instances ----------------------------------------------------------------------


def _prepare_host_dirs() -> None:
    for directory in HOST_DIRS:
        if directory.exists() and not (directory / MARKER).exists() and any(directory.iterdir()):
            raise RehearsalError(
                f"{directory} exists and is not the rehearsal's: the stand-in instance shares "
                "this path with the host engine; move it away, or run the rehearsal elsewhere"
            )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MARKER).touch()


def _remove_host_dirs() -> None:
    for directory in HOST_DIRS:
        if (directory / MARKER).exists():
            shutil.rmtree(directory, ignore_errors=True)


def build_instance_image() -> None:
    from host_stack.docker_images import debian_base

    base = debian_base("bookworm")
    probe = subprocess.run(["docker", "image", "inspect", base], capture_output=True, check=False)
    if probe.returncode:
        raise RehearsalError(f"no {base} image: build the stand-ins first (nox -s docker_images)")
    dockerfile = str(REHEARSAL_DIR / "instance.Dockerfile")
    _run(["docker", "build", "--quiet", "--file", dockerfile, "--build-arg",
          f"DEBIAN_IMAGE={base}", "--tag", INSTANCE_IMAGE, str(REPO_ROOT)])  # fmt: skip


def start_instance(ec2, instance_id: str) -> str:
    """A stand-in machine for one instance, running the user data LocalStack holds for it."""
    attribute = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    user_data = base64.b64decode(attribute["UserData"]["Value"])
    machine = STATE_DIR / instance_id
    machine.mkdir(parents=True, exist_ok=True)
    (machine / "user-data").write_bytes(user_data)
    name = f"builditall-ec2-{instance_id}"
    _run([
        "docker", "run", "--detach", "--name", name, "--hostname", instance_id,
        "--label", f"{INSTANCE_LABEL}={instance_id}", "--network", NETWORK,
        "--volume", "/var/run/docker.sock:/var/run/docker.sock",
        *(arg for d in HOST_DIRS for arg in ("--volume", f"{d}:{d}")),
        "--volume", f"{machine / 'user-data'}:/var/lib/cloud/user-data:ro",
        "--env", f"INSTANCE_ID={instance_id}",
        "--env", "REHEARSAL_AWS_ENDPOINT=http://localstack:4566",
        "--env", "REHEARSAL_EMR_ENDPOINT=http://emr-emulator:4570",
        "--env", f"AWS_DEFAULT_REGION={REGION}",
        *(arg for k, v in LOCALSTACK_KEYS.items() for arg in ("--env", f"{k}={v}")),
        INSTANCE_IMAGE,
    ])  # fmt: skip
    return name


def running_instances() -> dict[str, str]:
    """The stand-ins there are: instance id -> container name."""
    out = _run(["docker", "ps", "--all", "--filter", f"label={INSTANCE_LABEL}", "--format",
                f'{{{{.Label "{INSTANCE_LABEL}"}}}} {{{{.Names}}}}'], quiet=True)  # fmt: skip
    return dict(line.split() for line in out.splitlines() if line.strip())


class InstanceLauncher(threading.Thread):
    """Plays EC2 while the deploy runs: a stand-in for each running instance of the emulated
    account (it is the rehearsal's own), and away with the stand-in of an instance that is gone
    (a replaced instance). LocalStack's CloudFormation does not pass tags on to instances."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(daemon=True, name="instance-launcher")
        import boto3

        self.ec2 = boto3.client(
            "ec2", endpoint_url=environ["AWS_ENDPOINT_URL"], region_name=REGION,
            **{key.lower(): value for key, value in LOCALSTACK_KEYS.items()},
        )  # fmt: skip
        self.stopping = threading.Event()
        self.started = running_instances()
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            while not self.stopping.wait(2):
                self.poll()
        except Exception as exc:  # reported by the caller
            self.error = exc

    def poll(self) -> None:
        pages = self.ec2.get_paginator("describe_instances").paginate()
        states = {
            i["InstanceId"]: i["State"]["Name"]
            for page in pages for r in page["Reservations"] for i in r["Instances"]
        }  # fmt: skip
        for instance_id, state in states.items():
            if state == "running" and instance_id not in self.started:
                print(f"ec2 stand-in: {instance_id} is running; booting it", flush=True)
                self.started[instance_id] = start_instance(self.ec2, instance_id)
        for instance_id, name in list(self.started.items()):
            if states.get(instance_id, "terminated") in ("shutting-down", "terminated"):
                print(f"ec2 stand-in: {instance_id} is gone; removing {name}", flush=True)
                _run(["docker", "rm", "--force", name], check=False)
                del self.started[instance_id]

    @contextmanager
    def running(self) -> Iterator[InstanceLauncher]:
        self.start()
        try:
            yield self
        finally:
            self.stopping.set()
            self.join(timeout=30)
        if self.error is not None:
            raise RehearsalError(f"the stand-in EC2 failed: {self.error}")


# --- the SSM port forward -------------------------------------------------------------------------


class PortForward(threading.Thread):
    """127.0.0.1:<port> to a container's port, as `aws ssm start-session` with
    AWS-StartPortForwardingSession forwards a local port to the instance's."""

    def __init__(self, target: Callable[[], tuple[str, int]]) -> None:
        super().__init__(daemon=True, name="port-forward")
        # Asked at each connection: a roll-out recreates the container, at another address.
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target(), timeout=10)
        except (OSError, RehearsalError):
            client.close()
            return
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def apiserver_address() -> tuple[str, int]:
    labels = (f"com.docker.compose.project={INSTANCE_PROJECT}",
              "com.docker.compose.service=airflow-apiserver")  # fmt: skip
    name = _run(["docker", "ps", "--quiet", *(f"--filter=label={label}" for label in labels)],
                quiet=True).strip()  # fmt: skip
    if not name:
        raise RehearsalError("the instance runs no airflow-apiserver container")
    return container_ip(name.splitlines()[0]), 8080


# --- up, run, down --------------------------------------------------------------------------------


def up() -> dict[str, str]:
    """Emulated AWS, the deploy, the stand-in instance booted: the tests' environment."""
    from config.config import load_settings
    from host_stack.docker_engine import ensure_compose_plugin, start
    from orchestration.deploy import deploy

    print(start(), flush=True)
    print(ensure_compose_plugin(), flush=True)
    _prepare_host_dirs()
    build_instance_image()
    _run(emulators_compose("build", "emr-emulator"))
    _run(emulators_compose("up", "--detach", "--wait", "--wait-timeout", "300"))
    environ = deploy_environment(emulator_endpoints())
    started = time.monotonic()
    with InstanceLauncher(environ).running():
        deploy(load_settings("aws", environ), confirm=True, boot_timeout=BOOT_TIMEOUT_SECONDS)
    print(f"first deploy: healthy {time.monotonic() - started:.0f} s after the deploy began",
          flush=True)  # fmt: skip
    return environ


def test_environment(environ: Mapping[str, str], api_url: str) -> dict[str, str]:
    import boto3

    from orchestration.deploy import SECRETS_PATH

    ssm = boto3.client("ssm", endpoint_url=environ["AWS_ENDPOINT_URL"], region_name=REGION,
                       **{k.lower(): v for k, v in LOCALSTACK_KEYS.items()})  # fmt: skip
    password = ssm.get_parameter(Name=f"{SECRETS_PATH}/AIRFLOW_ADMIN_PASSWORD",
                                 WithDecryption=True)["Parameter"]["Value"]  # fmt: skip
    return {
        **environ,
        "AIRFLOW_API_URL": api_url,
        "AIRFLOW_USERNAME": "admin",
        "AIRFLOW_PASSWORD": password,
        # The instance's compose files, for the production-shape checks (tests/e2e).
        "E2E_COMPOSE_FILES": os.pathsep.join(
            [
                "docker-compose.yml",
                "envs/aws/docker-compose.ec2.yml",
                "envs/aws/rehearsal/docker-compose.emulated-aws.yml",
            ]
        ),
    }


def run(pytest_args: Sequence[str]) -> int:
    try:
        environ = up()
        forward = PortForward(apiserver_address)
        forward.start()
        env = test_environment(environ, f"http://127.0.0.1:{forward.port}")
        print(f"Airflow of the stand-in instance: {env['AIRFLOW_API_URL']} (forwarded)", flush=True)
        with InstanceLauncher(environ).running():
            tests = [sys.executable, "-m", "pytest", *TESTS, *pytest_args]
            print(f"+ {' '.join(tests)}", flush=True)
            code = subprocess.run(tests, cwd=REPO_ROOT, env=env, check=False).returncode
        forward.close()
        return code
    except (RehearsalError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        _show_instances()
        return 1
    finally:
        down()


def _show_instances() -> None:
    for name in _run(["docker", "ps", "--all", "--quiet", "--filter", f"label={INSTANCE_LABEL}"],
                     check=False, quiet=True).split():  # fmt: skip
        print(f"--- {name}: /var/log/builditall-boot.log", flush=True)
        print(_run(["docker", "exec", name, "tail", "-n", "60", "/var/log/builditall-boot.log"],
                   check=False, quiet=True), flush=True)  # fmt: skip


def down() -> None:
    """Everything `up` started: the instances, their compose stack, the emulators, the dirs."""
    for cid in _run(["docker", "ps", "--all", "--quiet", "--filter", f"label={INSTANCE_LABEL}"],
                    check=False, quiet=True).split():  # fmt: skip
        _run(["docker", "rm", "--force", cid], check=False)
    _run(["docker", "compose", "--project-name", INSTANCE_PROJECT, "down", "--volumes",
          "--remove-orphans"], check=False)  # fmt: skip
    _run(emulators_compose("down", "--volumes", "--remove-orphans"), check=False)
    _remove_host_dirs()
    shutil.rmtree(STATE_DIR, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_stack.ec2_rehearsal", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=("run", "deploy", "up", "down"))
    args, rest = parser.parse_known_args(argv)
    if args.action == "run":
        return run(rest)
    if args.action == "down":
        down()
        return 0
    if rest:
        parser.error(f"unexpected arguments: {' '.join(rest)}")
    try:
        up()
    except (RehearsalError, DeployError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        _show_instances()
        return 1
    finally:
        if args.action == "deploy":
            down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
