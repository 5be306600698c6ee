"""How the EMR emulator runs a step on this machine: the command, its rewrites, its logs.

EMR's command-runner.jar runs its Args as a command on the primary node. Here the "node" is this
machine, so a step's command runs as a process in its own work dir. Only what cannot run here as
sent is rewritten, each rewrite listed in the step's controller log:

- `spark-submit` is the local Spark's (pyspark's bin/spark-submit), not the release's.
- The master: EMR's spark-defaults say `yarn`; here spark-defaults.conf (SPARK_CONF_DIR, written
  per cluster) says the local standalone master, and an explicit `--master yarn` becomes it too.
- `--deploy-mode cluster` becomes `client`: a standalone master cannot run a Python driver in
  cluster mode, so the driver runs in the step's process, as the primary node would host it.
- `s3://` application, `--py-files`, `--files`, `--jars`, `--archives` and `--properties-file`
  are downloaded into the step's work dir first: EMR's spark-submit reads them through EMRFS, and
  pip's Spark has no S3 FileSystem. A missing object fails the step, as it fails on EMR.
- The cluster's `spark-env` exports apply, except the nodes' interpreter (PYSPARK_PYTHON,
  PYSPARK_DRIVER_PYTHON), which is this emulator's Python: it holds the same pins the bootstrap
  action installs on EMR (both come from requirements.txt).

The step's environment is that of a node: no repository on PYTHONPATH and no pipeline settings
(so the job must bring its code in --py-files, as on EMR); the region, LocalStack's endpoint and
dummy keys in AWS_* variables stand in for the instance profile and the EMR node's AWS access.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SPARK_SUBMIT = "spark-submit"
# spark-submit options followed by a value (SparkSubmitOptionParser); the rest are flags.
SPARK_SUBMIT_VALUE_OPTIONS = frozenset(
    (
        "--master", "--deploy-mode", "--class", "--name", "--jars", "--packages",
        "--exclude-packages", "--repositories", "--py-files", "--files", "--archives", "--conf",
        "-c", "--properties-file", "--driver-memory", "--driver-java-options",
        "--driver-library-path", "--driver-class-path", "--executor-memory", "--proxy-user",
        "--driver-cores", "--total-executor-cores", "--executor-cores", "--num-executors",
        "--principal", "--keytab", "--queue", "--kill", "--status",
    )
)  # fmt: skip
# Options whose value is a comma-separated list of files spark-submit fetches.
FETCHED_LIST_OPTIONS = frozenset(("--py-files", "--files", "--jars", "--archives"))
INTERPRETER_EXPORTS = ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")
# The node's view of the pipeline: settings and the checkout are not on an EMR node.
NODE_ENV_DROPPED_PREFIXES = ("AIRFLOW", "PYTHONPATH", "VIRTUAL_ENV", "SPARK_CONF_DIR")
# The line a Python traceback or a JVM exception ends with: "pkg.mod.SomeError: what happened".
FAILURE_LINE_RE = re.compile(r"^(?:[\w.]+\.)?(?P<name>\w*(?:Error|Exception))\b")
MAX_FAILURE_MESSAGE = 2000


class StepSetupError(Exception):
    """The step's command could not be prepared (e.g. its code is not in S3)."""


@dataclass(frozen=True)
class Node:
    """What an EMR node gives a step here: the Spark master, Python, PATH and AWS access."""

    spark_master: str
    python: str
    spark_home: Path
    aws_env: Mapping[str, str]
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # Config keys (PIPELINE_ENV, DATA_BUCKET, ...) that a node does not have.
    dropped_keys: frozenset[str] = frozenset()

    def environment(self, exports: Mapping[str, str], conf_dir: Path) -> dict[str, str]:
        env = {
            key: value
            for key, value in self.base_env.items()
            if key not in self.dropped_keys and not key.startswith(NODE_ENV_DROPPED_PREFIXES)
        }
        env.update(exports)
        env.update(self.aws_env)
        python_bin = str(Path(self.python).parent)
        env.update(
            {
                "PATH": f"{python_bin}{os.pathsep}{self.base_env.get('PATH', '')}",
                "SPARK_HOME": str(self.spark_home),
                "SPARK_CONF_DIR": str(conf_dir),
                "PYSPARK_PYTHON": self.python,
                "PYSPARK_DRIVER_PYTHON": self.python,
                "SPARK_LOCAL_IP": env.get("SPARK_LOCAL_IP", "127.0.0.1"),
            }
        )
        return env


def _classification(configurations: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [c for c in configurations or [] if c.get("Classification") == name]


def write_cluster_conf(
    conf_dir: Path, configurations: list[dict[str, Any]], node: Node
) -> tuple[dict[str, str], list[str]]:
    """Write spark-defaults.conf for the cluster; return the spark-env exports and the rewrites.

    EMR turns the `spark-defaults` classification into /etc/spark/conf/spark-defaults.conf and
    `spark-env` / `export` into spark-env.sh; here they become SPARK_CONF_DIR and the step's env.
    """
    conf_dir.mkdir(parents=True, exist_ok=True)
    rewrites = [f"spark.master=yarn (EMR's spark-defaults) -> {node.spark_master}"]
    defaults = {"spark.master": node.spark_master}
    for classification in _classification(configurations, "spark-defaults"):
        defaults.update(classification.get("Properties") or {})
    lines = [f"{key} {value}" for key, value in defaults.items()]
    (conf_dir / "spark-defaults.conf").write_text("\n".join(lines) + "\n")
    exports: dict[str, str] = {}
    for classification in _classification(configurations, "spark-env"):
        for export in _classification(classification.get("Configurations") or [], "export"):
            exports.update(export.get("Properties") or {})
    for name in INTERPRETER_EXPORTS:
        if name in exports and exports[name] != node.python:
            rewrites.append(f"spark-env {name}={exports[name]} -> {node.python}")
            exports[name] = node.python
    return exports, rewrites


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme not in ("s3", "s3a", "s3n") or not parts.netloc:
        raise ValueError(f"{uri!r} is not an s3:// URI")
    return parts.netloc, parts.path.lstrip("/")


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://", "s3n://"))


@dataclass
class StepCommand:
    """The command a step runs here, and what was changed from what the step sent."""

    argv: list[str]
    rewrites: list[str] = field(default_factory=list)


class Fetcher:
    """Downloads s3:// objects into a directory, once each; names the URI when one is missing."""

    def __init__(self, s3: Any, into: Path) -> None:
        self.s3 = s3
        self.into = into
        self.fetched: dict[str, Path] = {}

    def __call__(self, uri: str) -> Path:
        if uri in self.fetched:
            return self.fetched[uri]
        from botocore.exceptions import ClientError

        bucket, key = parse_s3_uri(uri)
        target = self.into / "fetched" / bucket / key
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.s3.download_file(bucket, key, str(target))
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise StepSetupError(
                f"{uri} could not be fetched from S3 ({code or exc}); upload it first "
                "(the job artifact: nox -s build_jobs -- --upload)"
            ) from None
        self.fetched[uri] = target
        return target


def _fetch_list(value: str, fetch: Callable[[str], Path], rewrites: list[str], option: str) -> str:
    items = []
    for item in value.split(","):
        uri, hash_sign, alias = item.partition("#")
        if is_s3(uri):
            local = str(fetch(uri))
            rewrites.append(f"{option} {uri} -> {local} (fetched from S3)")
            items.append(local + hash_sign + alias)
        else:
            items.append(item)
    return ",".join(items)


def spark_submit_command(args: list[str], node: Node, fetch: Callable[[str], Path]) -> StepCommand:
    """The local spark-submit command for EMR spark-submit arguments (args[0] is spark-submit)."""
    local_submit = str(node.spark_home / "bin" / SPARK_SUBMIT)
    command = StepCommand([local_submit], [f"spark-submit -> {local_submit} (local Spark)"])
    rest = list(args[1:])
    i = 0
    while i < len(rest):
        arg = rest[i]
        name, eq, inline = arg.partition("=")
        if arg.startswith("--") and eq and name in SPARK_SUBMIT_VALUE_OPTIONS:
            option, value, consumed = name, inline, 1
        elif arg in SPARK_SUBMIT_VALUE_OPTIONS and i + 1 < len(rest):
            option, value, consumed = arg, rest[i + 1], 2
        elif arg.startswith("-"):
            command.argv.append(arg)
            i += 1
            continue
        else:
            # The application: everything after it is the job's own arguments, untouched.
            application = arg
            if is_s3(application):
                local = str(fetch(application))
                command.rewrites.append(f"application {application} -> {local} (fetched from S3)")
                application = local
            command.argv += [application, *rest[i + 1 :]]
            return command
        if option == "--master" and value == "yarn":
            command.rewrites.append(f"--master yarn -> {node.spark_master}")
            value = node.spark_master
        elif option == "--deploy-mode" and value == "cluster":
            command.rewrites.append(
                "--deploy-mode cluster -> client (a standalone master runs no Python driver "
                "in cluster mode)"
            )
            value = "client"
        elif option in FETCHED_LIST_OPTIONS:
            value = _fetch_list(value, fetch, command.rewrites, option)
        elif option == "--properties-file" and is_s3(value):
            local = str(fetch(value))
            command.rewrites.append(f"--properties-file {value} -> {local} (fetched from S3)")
            value = local
        command.argv += [option, value]
        i += consumed
    raise StepSetupError(f"spark-submit arguments {args[1:]} name no application to run")


def step_command(args: list[str], node: Node, fetch: Callable[[str], Path]) -> StepCommand:
    """command-runner.jar's command: spark-submit rewritten for this machine, others as sent."""
    if args[0] == SPARK_SUBMIT:
        return spark_submit_command(args, node, fetch)
    return StepCommand(list(args))


# --- running ---------------------------------------------------------------------------------


@dataclass
class StepRun:
    """One step's process and where its output goes."""

    work_dir: Path
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    started: float = 0.0
    ended: float = 0.0

    @property
    def stdout(self) -> Path:
        return self.work_dir / "stdout"

    @property
    def stderr(self) -> Path:
        return self.work_dir / "stderr"

    @property
    def controller(self) -> Path:
        return self.work_dir / "controller"

    def prepare(self) -> None:
        """The step's directory with empty logs: a step cancelled before its command starts
        still has its stdout and stderr, as on EMR."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.stdout.touch()
        self.stderr.touch()

    def start(self, argv: list[str], env: Mapping[str, str]) -> None:
        """Start the command in the directory `prepare` made."""
        self.started = time.time()
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            # Own session: cancelling the step stops the driver and everything it started.
            self.process = subprocess.Popen(
                argv,
                cwd=self.work_dir,
                env=dict(env),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait(self) -> int:
        assert self.process is not None
        self.exit_code = self.process.wait()
        self.ended = time.time()
        return self.exit_code

    def kill(self, grace: float = 10.0) -> None:
        """Stop the step's process group: SIGTERM, then SIGKILL after `grace` seconds."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def failure_details(logs: list[tuple[str, str | None]], exit_code: int | None) -> dict:
    """EMR's FailureDetails for a failed step: the error line its logs end with, and where.

    `logs` is (text, URI) for stderr, then stdout: spark-submit runs a Python driver with its
    stderr merged into the JVM's stdout, so a job's traceback lands in the step's stdout.
    """
    for text, uri in logs:
        for line in reversed([line.strip() for line in text.splitlines() if line.strip()]):
            match = FAILURE_LINE_RE.match(line)
            if match:
                details = {"Reason": match["name"], "Message": line[:MAX_FAILURE_MESSAGE]}
                return {**details, "LogFile": uri} if uri else details
    # EMR's own words when it cannot tell the cause.
    last = next(
        (line.strip() for text, _ in logs for line in reversed(text.splitlines()) if line.strip()),
        "",
    )
    message = last or f"the step's command exited with code {exit_code}"
    details = {"Reason": "Unknown Error", "Message": message[:MAX_FAILURE_MESSAGE]}
    uri = logs[0][1] if logs else None
    return {**details, "LogFile": uri} if uri else details


def gzip_to(path: Path) -> bytes:
    """The file's bytes gzipped (empty when it does not exist), as EMR ships step logs."""
    data = path.read_bytes() if path.exists() else b""
    return gzip.compress(data, mtime=0)
