"""Runs the real LocalStack (localstack-core) as a plain host process, no Docker.

LocalStack needs Python >= 3.13 and its own dependency set, so it lives in a separate virtualenv
(lock: envs/local/localstack-requirements.txt); `nox` installs it and exports LOCALSTACK_PYTHON.
Used by the test fixtures and by the nox sessions that bring the local stack up.
All of its state (volume dir, host-mode filesystem, temp files, log) stays under `state_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

import boto3
from botocore.exceptions import ClientError

from host_stack.stack_settings import port_in_use

LOCALSTACK_PYTHON_ENV = "LOCALSTACK_PYTHON"
# sns: the stack's alerts topic (envs/aws/cloudformation.yaml); the rest as the template needs.
DEFAULT_SERVICES = ("s3", "sts", "iam", "cloudformation", "ec2", "ssm", "sns")


class LocalStackError(RuntimeError):
    """LocalStack could not be started, reached or configured."""


def find_localstack_python() -> Path | None:
    """The LocalStack venv's interpreter, from LOCALSTACK_PYTHON only (nox sets it); else None."""
    value = os.environ.get(LOCALSTACK_PYTHON_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise LocalStackError(
            f"{LOCALSTACK_PYTHON_ENV}={value} is not a file; point it at the LocalStack venv's "
            "python (e.g. .nox/_localstack/bin/python) or run through nox, which installs it"
        )
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host` (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalStack:
    """One LocalStack process listening on host:port, with its state under state_dir.

    Use as a context manager, or call start() and stop() yourself.
    """

    def __init__(
        self,
        python: Path,
        *,
        port: int = 4566,
        state_dir: Path = Path(".stack/localstack"),
        services: Sequence[str] = DEFAULT_SERVICES,
        host: str = "127.0.0.1",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.python = Path(python)
        self.port = port
        self.host = host
        self.state_dir = Path(state_dir).resolve()
        self.services = tuple(services)
        self.extra_env = dict(extra_env or {})
        self.log_path = self.state_dir / "localstack.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def environment(self) -> dict[str, str]:
        """The process environment: listen address, services, and every state path redirected."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        tmp = self.state_dir / "tmp"
        env.update(
            {
                "GATEWAY_LISTEN": self._gateway_listen(),
                "LOCALSTACK_HOST": f"localhost.localstack.cloud:{self.port}",
                "SERVICES": ",".join(self.services),
                # Host mode roots /var/lib/localstack, /tmp/localstack etc. under FILESYSTEM_ROOT.
                "FILESYSTEM_ROOT": str(self.state_dir / "filesystem"),
                "LOCALSTACK_VOLUME_DIR": str(self.state_dir / "volume"),
                # LocalStack clears $TMPDIR/localstack on start and stop: keep instances apart.
                "TMPDIR": str(tmp),
                # Offline machine: no signed-cert download, no DNS server on :53, no analytics.
                "SKIP_SSL_CERT_DOWNLOAD": "1",
                "SKIP_INFRA_DOWNLOADS": "1",
                "DNS_ADDRESS": "0",
                "DISABLE_EVENTS": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _gateway_listen(self) -> str:
        # LocalStack's default (twisted) gateway drops an IPv4 interface and binds 0.0.0.0; given
        # as an IPv4-mapped IPv6 address it binds that address, which only 127.0.0.1 reaches.
        if self.host == "127.0.0.1":
            return f"[::ffff:127.0.0.1]:{self.port}"
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [str(self.python), "-m", "localstack.runtime.main"]

    def prepare(self) -> None:
        """The directories its environment points at."""
        for sub in ("tmp", "filesystem", "volume"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)

    def ready(self) -> tuple[bool, str]:
        """Whether /_localstack/health lists every service, and what it said."""
        try:
            health = self.health()
        except (OSError, ValueError) as exc:
            return False, f"{self.endpoint_url} not answering yet ({exc})"
        missing = [s for s in self.services if s not in health.get("services", {})]
        if missing:
            return False, f"services not listed yet: {missing}"
        return True, f"answering on {self.endpoint_url}"

    def start(self, timeout: float = 60.0) -> LocalStack:
        """Start the process and wait until /_localstack/health reports every service."""
        if self._process is not None:
            raise LocalStackError(
                f"LocalStack on port {self.port} is already started by this object"
            )
        if not self.python.is_file():
            raise LocalStackError(
                f"LocalStack python {self.python} does not exist; set {LOCALSTACK_PYTHON_ENV} to "
                "the LocalStack venv's python (nox builds it from "
                "envs/local/localstack-requirements.txt)"
            )
        if port_in_use(self.port, self.host):
            raise LocalStackError(
                f"port {self.port} on {self.host} is already in use (another LocalStack?); "
                "stop that process or choose another port"
            )
        self.prepare()
        log = self.log_path.open("wb")
        try:
            self._process = subprocess.Popen(
                self.command(),
                env=self.environment(),
                cwd=self.state_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Own process group, so stop() can take every child down with it.
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        assert self._process is not None
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise LocalStackError(
                    f"LocalStack exited with code {code} during start-up; "
                    f"see its log {self.log_path}"
                )
            ok, last_error = self.ready()
            if ok:
                return
            time.sleep(0.5)
        raise LocalStackError(
            f"LocalStack at {self.endpoint_url} was not healthy after {timeout:.0f}s "
            f"({last_error}); see its log {self.log_path}"
        )

    def health(self) -> dict:
        """The parsed /_localstack/health document."""
        url = f"{self.endpoint_url}/_localstack/health"
        # The URL is always http://host:port built here, never user input.
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310
            return json.loads(resp.read())

    def stop(self, timeout: float = 20.0) -> None:
        """Stop LocalStack and every process it started (the whole process group)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            self._signal_group(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        # Children may outlive a clean exit of the main process: make sure the group is gone.
        self._signal_group(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(5)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _client(service: str, endpoint_url: str, region: str, key_id: str, secret: str):
    """A boto3 client of one service on the emulator's endpoint."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def create_buckets(
    endpoint_url: str,
    names: Iterable[str],
    region: str = "us-east-1",
    access_key_id: str = "test",
    secret_access_key: str = "test",  # noqa: S107  (LocalStack's documented dummy key)
) -> None:
    """Create the buckets if they do not exist yet (idempotent)."""
    s3 = _client("s3", endpoint_url, region, access_key_id, secret_access_key)
    for name in names:
        kwargs: dict = {"Bucket": name}
        # us-east-1 is the one region that rejects an explicit LocationConstraint.
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            s3.create_bucket(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise LocalStackError(
                    f"could not create bucket {name} at {endpoint_url}: {exc}"
                ) from exc


# Trust policies of EMR's two roles: the service role is assumed by EMR, the instance profile's
# role by the cluster's EC2 instances.
_TRUSTED_SERVICE = {"service": "elasticmapreduce.amazonaws.com", "instance": "ec2.amazonaws.com"}


def _trust_policy(service: str) -> str:
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def create_emr_roles(
    endpoint_url: str,
    service_role: str,
    instance_profile: str,
    *,
    region: str = "us-east-1",
    access_key_id: str = "test",
    secret_access_key: str = "test",  # noqa: S107  (LocalStack's documented dummy key)
) -> None:
    """Create EMR's service role and the instance profile (with its role) if missing.

    What `aws emr create-default-roles` (or the account's IaC) creates on AWS; the EMR emulator
    checks them in IAM as EMR does. Idempotent.
    """
    iam = _client("iam", endpoint_url, region, access_key_id, secret_access_key)

    def ignore_existing(call, **kwargs) -> None:
        try:
            call(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code not in ("EntityAlreadyExists", "LimitExceeded"):
                raise LocalStackError(
                    f"IAM at {endpoint_url}: {call.__name__} failed: {exc}"
                ) from exc

    ignore_existing(
        iam.create_role,
        RoleName=service_role,
        AssumeRolePolicyDocument=_trust_policy(_TRUSTED_SERVICE["service"]),
    )
    ignore_existing(
        iam.create_role,
        RoleName=instance_profile,
        AssumeRolePolicyDocument=_trust_policy(_TRUSTED_SERVICE["instance"]),
    )
    ignore_existing(iam.create_instance_profile, InstanceProfileName=instance_profile)
    ignore_existing(
        iam.add_role_to_instance_profile,
        InstanceProfileName=instance_profile,
        RoleName=instance_profile,
    )
