"""The EMR emulator: moto's EMR API, plus a cluster lifecycle that really runs the steps.

moto parses and answers the EMR API (ids, Describe/List shapes, instance groups, tags) but never
moves a cluster or a step (its steps stay RUNNING or PENDING forever). `EmrEmulator` is a WSGI
app in front of moto's EMR app:

- before moto: the request is checked as EMR checks it (validation.py) and refused with EMR's
  error code; TerminateJobFlows is the emulator's own (it must stop running steps);
- after moto: new clusters start at STARTING and new steps at PENDING, and Describe/List answers
  gain what moto does not model (StateChangeReason codes, step FailureDetails, the
  AutoTerminationPolicy);
- one thread per cluster plays EMR: it checks the service role in IAM, fetches and checks the
  bootstrap actions, runs the steps one after the other (steps.py), honours ActionOnFailure,
  ships each step's logs to <LogUri>/<cluster id>/steps/<step id>/, and terminates the cluster
  on TerminateJobFlows, after the last step when KeepJobFlowAliveWhenNoSteps is false, and after
  AutoTerminationPolicy.IdleTimeout seconds of idleness.

States and timings are real: a step is RUNNING exactly while its process runs.

Test hooks (never set by the pipeline; real EMR has neither):
- a cluster tagged `emulator:step-log-delay-seconds=<n>` ships each step's logs n seconds after
  the step ends, as EMR ships them minutes late; FailureDetails name the URIs at once;
- `POST /_emulator/faults` arms faults for the clusters whose Name contains a given string
  (faults.py): RunJobFlow refused by validation, a failing bootstrap action, steps that run
  longer, logs that ship late. Black-box tests of the DAGs use it, as they cannot tag clusters.
Without a hook, a syntax error in a bootstrap script fails the cluster with BOOTSTRAP_FAILURE,
and a step that sleeps runs until it is cancelled.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import WSGIRequestHandler

from config.emr_releases import load_emr_releases, upstream_version
from host_stack.emr_emulator import validation
from host_stack.emr_emulator.faults import (
    BOOTSTRAP_FAULT_MAX_WAIT_SECONDS,
    FAULTS_PATH,
    ArmedFaults,
    Faults,
)
from host_stack.emr_emulator.steps import (
    Fetcher,
    Node,
    StepRun,
    StepSetupError,
    failure_details,
    gzip_to,
    is_s3,
    parse_s3_uri,
    step_command,
    write_cluster_conf,
)
from host_stack.emr_emulator.validation import COMMAND_RUNNER_JAR, ApiError

log = logging.getLogger("emr_emulator")

HEALTH_PATH = "/_emulator/health"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "ElasticMapReduce."
_CREDENTIAL_SCOPE_RE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/")
TERMINATE_ACTIONS = ("TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW")
# Test hook: a cluster tag delaying its step logs (see the module docstring).
STEP_LOG_DELAY_TAG = "emulator:step-log-delay-seconds"
# How often an idle cluster's thread looks at its clock (it wakes at once for new steps).
IDLE_TICK_SECONDS = 0.5


def release_applications(label: str | None, requested: list[dict[str, Any]]) -> list[dict]:
    """DescribeCluster's Applications: each one the request named, with the version its release
    runs (envs/aws/emr_releases.toml). EMR shows the open-source version (4.0.2, not AWS's
    4.0.2-amzn-0 build); an application the table has no version for is shown by name only."""
    releases = load_emr_releases()
    release = releases.get(label or "") or releases.unsupported.get(label or "")
    known = dict(release.applications) if release else {}
    if release:
        known.setdefault("Spark", release.spark)
        if release.hadoop:
            known.setdefault("Hadoop", release.hadoop)
    applications = []
    for app in requested:
        name = app.get("Name", "")
        match = next((v for k, v in known.items() if k.lower() == name.lower()), None)
        applications.append(
            {"Name": name, **({"Version": upstream_version(match)} if match else {})}
        )
    return applications


def _now():
    from moto.core.utils import utcnow

    return utcnow()


@dataclass(frozen=True)
class EmulatorConfig:
    """Where the emulator listens, the node it runs steps on, and the AWS it talks to.

    `s3` and `iam` are boto3 client keyword arguments (LocalStack); `iam=None` skips the role
    checks (no IAM to ask).
    """

    work_dir: Path
    node: Node
    s3: dict[str, Any]
    iam: dict[str, Any] | None
    host: str = "127.0.0.1"
    port: int = 4570


@dataclass
class StepRecord:
    """What the emulator knows of a step beyond moto's: its config as sent, how it ended."""

    config: dict[str, Any]
    failure: dict[str, Any] | None = None
    reason: str | None = None


@dataclass
class ClusterRecord:
    """One cluster: moto's object (state, timeline, steps) and the emulator's side of it."""

    cluster: Any
    request: dict[str, Any]
    work_dir: Path
    steps: dict[str, StepRecord] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    wake: threading.Event = field(default_factory=threading.Event)
    termination: tuple[str, str] | None = None
    current: StepRun | None = None
    thread: threading.Thread | None = None
    # From the Configurations, once provisioned: spark-env exports and what was rewritten.
    exports: dict[str, str] = field(default_factory=dict)
    conf_rewrites: list[str] = field(default_factory=list)
    # Armed through the test hook for this cluster's name (faults.py), else None.
    faults: Faults | None = None

    @property
    def id(self) -> str:
        return self.cluster.id

    @property
    def keep_alive(self) -> bool:
        return bool((self.request.get("Instances") or {}).get("KeepJobFlowAliveWhenNoSteps"))

    @property
    def idle_timeout(self) -> int | None:
        return (self.request.get("AutoTerminationPolicy") or {}).get("IdleTimeout")

    @property
    def log_uri(self) -> str | None:
        uri = self.request.get("LogUri")
        return uri if uri and is_s3(uri) else None

    @property
    def step_log_delay(self) -> float:
        for tag in self.request.get("Tags") or []:
            if tag.get("Key") == STEP_LOG_DELAY_TAG:
                return float(tag.get("Value") or 0)
        return self.faults.step_log_delay_seconds if self.faults else 0.0

    def log_key(self, step_id: str, name: str) -> tuple[str, str] | None:
        """(bucket, key) of a step log file under LogUri, as EMR lays them out."""
        if self.log_uri is None:
            return None
        bucket, prefix = parse_s3_uri(self.log_uri)
        prefix = prefix.strip("/")
        key = f"{self.id}/steps/{step_id}/{name}.gz"
        return bucket, f"{prefix}/{key}" if prefix else key


class EmrEmulator:
    """The emulator as a WSGI application; `serve()` runs it on config.host:config.port."""

    def __init__(self, config: EmulatorConfig) -> None:
        import boto3
        from botocore.config import Config
        from moto.moto_server.werkzeug_app import create_backend_app

        self.config = config
        self.lock = threading.RLock()
        self.clusters: dict[str, ClusterRecord] = {}
        self.faults = ArmedFaults()
        self._moto_app = create_backend_app("emr")
        self._s3 = boto3.client("s3", **config.s3, config=Config(s3={"addressing_style": "path"}))
        quick = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=20)
        self._iam = boto3.client("iam", **config.iam, config=quick) if config.iam else None
        self._server: Any = None
        self._stopping = threading.Event()

    # --- WSGI ------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            with self.lock:
                body = {"status": "ok", "clusters": len(self.clusters)}
            return _respond(start_response, 200, body)
        if environ.get("PATH_INFO") == FAULTS_PATH:
            return self._faults_request(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(TARGET_PREFIX):
            return _error(
                start_response,
                ApiError(
                    "UnknownOperationException",
                    f"this endpoint emulates Amazon EMR only (X-Amz-Target {target!r}); point "
                    "other services at LocalStack",
                ),
            )
        action = target.removeprefix(TARGET_PREFIX)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b"{}"
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _error(start_response, ApiError("SerializationException", "body is not JSON"))
        try:
            status, payload = self.handle(action, body, environ, raw)
        except ApiError as exc:
            log.info("%s refused: %s", action, exc)
            return _error(start_response, exc)
        return _respond(start_response, status, payload)

    def _faults_request(self, environ: dict[str, Any], start_response: Callable) -> list[bytes]:
        """The test hook: arm (POST), list (GET) or disarm (DELETE) faults (faults.py)."""
        from urllib.parse import parse_qs

        method = environ.get("REQUEST_METHOD", "GET")
        with self.lock:
            if method == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                try:
                    faults = Faults.from_json(json.loads(environ["wsgi.input"].read(length)))
                except ValueError as exc:
                    return _error(start_response, ApiError("ValidationException", str(exc)))
                self.faults.arm(faults)
                log.info("test hook: faults armed %s", faults.to_json())
            elif method == "DELETE":
                query = parse_qs(environ.get("QUERY_STRING", ""))
                match = (query.get("cluster_name_contains") or [None])[0]
                for faults in self.faults.disarm(match):
                    log.info("test hook: faults disarmed %s", faults.to_json())
            elif method != "GET":
                return _error(
                    start_response,
                    ApiError("ValidationException", f"{FAULTS_PATH} takes GET, POST or DELETE"),
                )
            return _respond(start_response, 200, {"armed": self.faults.listed()})

    def handle(
        self, action: str, body: dict[str, Any], environ: dict[str, Any], raw: bytes
    ) -> tuple[int, Any]:
        """Answer one EMR API call: check, let moto answer, then add what moto lacks."""
        region = _region_of(environ)
        problem = validation.shape_errors(action, body)
        if problem:
            raise problem
        with self.lock:
            if action == "RunJobFlow":
                problem = validation.run_job_flow_problem(body, region, self._instance_profile)
                faults = self.faults.for_cluster(body.get("Name"))
                if problem is None and faults and faults.refuse_cluster:
                    log.info("test hook: RunJobFlow %r refused", body.get("Name"))
                    problem = validation.validation_error(faults.refuse_cluster)
            elif action == "AddJobFlowSteps":
                record = self.clusters.get(body["JobFlowId"])
                state = record.cluster.state if record else None
                problem = validation.add_steps_problem(body, state)
            elif action == "TerminateJobFlows":
                return 200, self._terminate_request(body["JobFlowIds"])
            elif action == "GetAutoTerminationPolicy":
                record = self._record(body["ClusterId"])
                policy = record.request.get("AutoTerminationPolicy")
                return 200, {"AutoTerminationPolicy": policy} if policy else {}
            if problem:
                raise problem
            status, payload = self._call_moto(environ, raw, region)
            if status != 200:
                return status, payload
            if action == "RunJobFlow":
                self._cluster_created(payload["JobFlowId"], body)
            elif action == "AddJobFlowSteps":
                self._steps_added(body["JobFlowId"], body["Steps"], payload["StepIds"])
            self._augment(action, payload)
            return status, payload

    def _call_moto(self, environ: dict[str, Any], raw: bytes, region: str) -> tuple[int, Any]:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(raw)
        env["CONTENT_LENGTH"] = str(len(raw))
        # moto takes EMR's region from the host name; the client signed for `region`.
        env["HTTP_HOST"] = f"elasticmapreduce.{region}.amazonaws.com"
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            captured["status"] = int(status.split(maxsplit=1)[0])
            return lambda data: None

        chunks = self._moto_app(env, start_response)
        try:
            data = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        return captured["status"], json.loads(data) if data else {}

    def _record(self, cluster_id: str) -> ClusterRecord:
        record = self.clusters.get(cluster_id)
        if record is None:
            raise ApiError("InvalidRequestException", f"Cluster id '{cluster_id}' is not valid.")
        return record

    def _instance_profile(self, name: str) -> bool:
        """Does IAM know the instance profile? (EMR's JobFlowRole is an instance profile.)"""
        if self._iam is None:
            return True
        return self._iam_exists(self._iam.get_instance_profile, InstanceProfileName=name)

    def _iam_exists(self, call: Callable[..., Any], **kwargs: Any) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            call(**kwargs)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchEntity":
                return False
            raise ApiError("InternalServerError", f"IAM refused {kwargs}: {exc}", 500) from None
        except BotoCoreError as exc:
            raise ApiError(
                "InternalServerError",
                f"the emulator cannot reach IAM at {self.config.iam.get('endpoint_url')} "
                f"({exc}); is LocalStack up?",
                500,
            ) from None

    # --- after moto ------------------------------------------------------------------------

    def _cluster_created(self, cluster_id: str, request: dict[str, Any]) -> None:
        cluster = _moto_cluster(cluster_id)
        # moto jumps to WAITING (or TERMINATED); EMR starts at STARTING and provisions.
        cluster.state = "STARTING"
        cluster.end_datetime = None
        cluster.ready_datetime = None
        cluster.last_state_change_reason = None
        record = ClusterRecord(cluster, request, self.config.work_dir / cluster_id)
        record.faults = self.faults.for_cluster(request.get("Name"))
        self.clusters[cluster_id] = record
        for step, config in zip(cluster.steps, request.get("Steps") or [], strict=True):
            self._step_pending(record, step, config)
        record.thread = threading.Thread(
            target=self._run_cluster, args=(record,), name=f"cluster-{cluster_id}", daemon=True
        )
        log.info("%s %r created (%s)", cluster_id, request.get("Name"), request.get("ReleaseLabel"))
        self._warn_on_spark_mismatch(request.get("ReleaseLabel"))
        record.thread.start()

    @staticmethod
    def _warn_on_spark_mismatch(label: str | None) -> None:
        """Steps run on this machine's pyspark: say so when the release runs another Spark."""
        import pyspark

        release = load_emr_releases().get(label or "")
        if release is not None and release.spark_version != pyspark.__version__:
            log.warning(
                "%s runs Spark %s, but steps here run the installed pyspark %s "
                "(tests/unit/test_emr_parity.py says what to change)",
                label,
                release.spark_version,
                pyspark.__version__,
            )

    def _steps_added(self, cluster_id: str, configs: list[dict], step_ids: list[str]) -> None:
        record = self.clusters[cluster_id]
        state = record.cluster.state
        by_id = {step.id: step for step in record.cluster.steps}
        for step_id, config in zip(step_ids, configs, strict=True):
            self._step_pending(record, by_id[step_id], config)
        # moto marks the cluster RUNNING on AddJobFlowSteps; its thread decides that here.
        record.cluster.state = state
        record.wake.set()

    @staticmethod
    def _step_pending(record: ClusterRecord, step: Any, config: dict[str, Any]) -> None:
        step.state = "PENDING"
        step.start_date_time = None
        record.steps[step.id] = StepRecord(config)
        log.info("%s step %s %r PENDING", record.id, step.id, config.get("Name"))

    def _augment(self, action: str, payload: dict[str, Any]) -> None:
        """Add to moto's answer what EMR says and moto does not model."""
        if action == "DescribeCluster":
            self._augment_cluster(payload["Cluster"], full=True)
        elif action == "ListClusters":
            for summary in payload.get("Clusters", []):
                self._augment_cluster(summary, full=False)
        elif action == "DescribeStep":
            self._augment_step(payload["Step"])
        elif action == "ListSteps":
            for summary in payload.get("Steps", []):
                self._augment_step(summary)

    def _augment_cluster(self, described: dict[str, Any], *, full: bool) -> None:
        record = self.clusters.get(described.get("Id", ""))
        if record is None:
            return
        if record.reason:
            described.setdefault("Status", {})["StateChangeReason"] = dict(record.reason)
        if full and "AutoTerminationPolicy" in record.request:
            described["AutoTerminationPolicy"] = record.request["AutoTerminationPolicy"]
        if full:
            # moto echoes the request (or a made-up Hadoop 0.18); EMR reports what it installed.
            described["Applications"] = release_applications(
                record.request.get("ReleaseLabel"), record.request.get("Applications") or []
            )

    def _augment_step(self, described: dict[str, Any]) -> None:
        for record in self.clusters.values():
            step = record.steps.get(described.get("Id", ""))
            if step is None:
                continue
            status = described.setdefault("Status", {})
            if step.failure:
                status["FailureDetails"] = dict(step.failure)
            if step.reason:
                status["StateChangeReason"] = {"Message": step.reason}
            return

    # --- termination requested through the API ----------------------------------------------

    def _terminate_request(self, cluster_ids: list[str]) -> dict[str, Any]:
        records = [self._record(cluster_id) for cluster_id in cluster_ids]
        if any(record.cluster.termination_protected for record in records):
            raise validation.validation_error(
                "Could not shut down one or more job flows since they are termination protected."
            )
        for record in records:
            if record.termination or record.cluster.state in validation.ENDED_CLUSTER_STATES:
                continue  # EMR accepts terminating an ending or ended cluster again
            record.termination = ("USER_REQUEST", "Terminated by user request")
            self._set_state(record, "TERMINATING", *record.termination)
            running = record.current
            if running is not None:
                # Off the request thread: stopping a driver can take seconds.
                threading.Thread(target=running.kill, daemon=True).start()
            record.wake.set()
        return {}

    # --- the cluster's life -----------------------------------------------------------------

    def _set_state(
        self, record: ClusterRecord, state: str, code: str | None = None, message: str = ""
    ) -> None:
        with self.lock:
            ending = ("TERMINATING", *validation.ENDED_CLUSTER_STATES)
            if record.termination and state not in ending:
                return  # a TerminateJobFlows came in meanwhile: the cluster is ending
            record.cluster.state = state
            if code is not None or message:
                record.reason = {"Code": code, "Message": message} if code else {"Message": message}
                record.cluster.last_state_change_reason = message
        detail = f" ({code}: {message})" if code else f" ({message})" if message else ""
        log.info("%s %s%s", record.id, state, detail)

    def _run_cluster(self, record: ClusterRecord) -> None:
        try:
            if self._provision(record):
                self._run_steps(record)
        except Exception as exc:
            log.exception("%s: emulator error", record.id)
            self._end(record, "TERMINATED_WITH_ERRORS", "INTERNAL_ERROR", f"emulator error: {exc}")

    def _provision(self, record: ClusterRecord) -> bool:
        """STARTING -> BOOTSTRAPPING -> ready: the service role, bootstrap actions, Spark conf."""
        problem = self._service_role_problem(record.request["ServiceRole"])
        if problem:
            self._end(record, "TERMINATED_WITH_ERRORS", "VALIDATION_ERROR", problem)
            return False
        self._set_state(record, "BOOTSTRAPPING", None, "Running bootstrap actions")
        if record.faults and record.faults.bootstrap_failure is not None:
            self._wait_for_first_step(record, BOOTSTRAP_FAULT_MAX_WAIT_SECONDS)
            log.info("%s test hook: bootstrap action 1 fails", record.id)
            self._end(
                record, "TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE",
                "On the master instance, bootstrap action 1 returned a non-zero return code: "
                f"{record.faults.bootstrap_failure}",
            )  # fmt: skip
            return False
        for number, action in enumerate(record.request.get("BootstrapActions") or [], start=1):
            problem = self._check_bootstrap_action(record, number, action)
            if problem:
                self._end(record, "TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", problem)
                return False
        record.exports, record.conf_rewrites = write_cluster_conf(
            record.work_dir / "spark-conf", record.request.get("Configurations") or [],
            self.config.node,
        )  # fmt: skip
        with self.lock:
            record.cluster.ready_datetime = _now()
        return True

    def _wait_for_first_step(self, record: ClusterRecord, at_most: float) -> None:
        """Bootstrap as long as EMR would: until a step is there (or terminated, or `at_most`)."""
        deadline = time.monotonic() + at_most
        while time.monotonic() < deadline:
            with self.lock:
                if record.cluster.steps or record.termination:
                    return
            record.wake.wait(IDLE_TICK_SECONDS)

    def _service_role_problem(self, role: str) -> str | None:
        if self._iam is None:
            return None
        name = role.rsplit("/", 1)[-1]
        try:
            exists = self._iam_exists(self._iam.get_role, RoleName=name)
        except ApiError as exc:
            return exc.message
        if exists:
            return None
        arn = role if role.startswith("arn:") else f"arn:aws:iam::{self._account()}:role/{name}"
        return f"EMR service role {arn} is invalid"

    def _account(self) -> str:
        import boto3

        kwargs = {k: v for k, v in (self.config.iam or {}).items()}
        with contextlib.suppress(Exception):
            return boto3.client("sts", **kwargs).get_caller_identity()["Account"]
        return "000000000000"

    def _check_bootstrap_action(
        self, record: ClusterRecord, number: int, action: dict[str, Any]
    ) -> str | None:
        """Fetch the script as a node would and check a shell script's syntax; do not run it.

        Running it would change this machine (our bootstrap pip-installs with sudo); the node's
        Python here is the emulator's, which already holds the pins the bootstrap installs.
        """
        path = (action.get("ScriptBootstrapAction") or {}).get("Path", "")
        if not is_s3(path):
            log.info(
                "%s bootstrap action %d %s: a node path, not checked here", record.id, number, path
            )
            return None
        target_dir = record.work_dir / "bootstrap" / str(number)
        try:
            script = Fetcher(self._s3, target_dir)(path)
        except StepSetupError:
            return (
                f"Master instance failed attempting to download bootstrap action {number} file "
                f"from S3: {path} does not exist"
            )
        first_line = script.read_bytes().split(b"\n", 1)[0]
        if first_line.startswith(b"#!") and first_line.rstrip().endswith((b"sh", b"bash")):
            check = subprocess.run(
                ["bash", "-n", str(script)], capture_output=True, text=True, check=False
            )
            if check.returncode != 0:
                return (
                    f"On the master instance, bootstrap action {number} returned a non-zero "
                    f"return code: {check.stderr.strip()}"
                )
        log.info("%s bootstrap action %d %s fetched and checked (not run)", record.id, number, path)
        return None

    def _run_steps(self, record: ClusterRecord) -> None:
        """Run PENDING steps in order until the cluster is told to end, or ends by itself."""
        cluster = record.cluster
        idle_since = time.monotonic()
        any_failed = False
        while True:
            with self.lock:
                if record.termination:
                    break
                step = next((s for s in cluster.steps if s.state == "PENDING"), None)
                if step is not None:
                    step.state = "RUNNING"
                    step.start()
                    if cluster.state != "RUNNING":
                        self._set_state(record, "RUNNING", None, "Running step")
            if step is not None:
                outcome = self._run_step(record, step)
                idle_since = time.monotonic()
                if outcome != "FAILED":
                    continue
                any_failed = True
                action = record.steps[step.id].config.get("ActionOnFailure", "TERMINATE_CLUSTER")
                if action in TERMINATE_ACTIONS:
                    self._end(
                        record, "TERMINATED_WITH_ERRORS", "STEP_FAILURE", "Shut down as step failed"
                    )
                    return
                if action == "CANCEL_AND_WAIT":
                    self._cancel_pending(record, f"Cancelled because step {step.id} failed")
                continue
            if not record.keep_alive:
                message = "Steps completed with errors" if any_failed else "Steps completed"
                self._end(record, "TERMINATED", "ALL_STEPS_COMPLETED", message)
                return
            idle = time.monotonic() - idle_since
            if record.idle_timeout is not None and idle >= record.idle_timeout:
                self._end(
                    record, "TERMINATED", "ALL_STEPS_COMPLETED",
                    f"Auto-terminated after {record.idle_timeout} seconds idle "
                    "(AutoTerminationPolicy)",
                )  # fmt: skip
                return
            if cluster.state != "WAITING":
                self._set_state(record, "WAITING", None, "Cluster ready to run steps.")
            record.wake.wait(IDLE_TICK_SECONDS)
            record.wake.clear()
        code, message = record.termination
        self._end(record, "TERMINATED", code, message)

    def _cancel_pending(self, record: ClusterRecord, message: str) -> None:
        with self.lock:
            for step in record.cluster.steps:
                if step.state in ("PENDING", "RUNNING"):
                    step.state = "CANCELLED"
                    step.end_date_time = _now()
                    record.steps[step.id].reason = message
                    log.info("%s step %s CANCELLED (%s)", record.id, step.id, message)

    def _end(self, record: ClusterRecord, final: str, code: str, message: str) -> None:
        """TERMINATING (pending steps cancelled, instances released), then `final`."""
        if record.cluster.state != "TERMINATING":
            self._set_state(record, "TERMINATING", code, message)
        self._cancel_pending(record, "Cancelled because the cluster terminated")
        with self.lock:
            now = _now()
            for group in record.cluster.instance_groups:
                group.state = "ENDED"
                group.end_date_time = now
            record.cluster.end_datetime = now
        self._set_state(record, final, code, message)

    def _run_step(self, record: ClusterRecord, step: Any) -> str:
        """Run one step to its end; return COMPLETED, FAILED or CANCELLED."""
        config = record.steps[step.id].config
        jar_step = config["HadoopJarStep"]
        run = StepRun(record.work_dir / "steps" / step.id)
        run.prepare()
        controller = [
            f"step {step.id} {config.get('Name')!r} on cluster {record.id}",
            f"sent: {jar_step['Jar']} {json.dumps(jar_step.get('Args', []))}",
        ]
        setup_error = None
        try:
            if jar_step["Jar"] != COMMAND_RUNNER_JAR:
                raise StepSetupError(
                    f"the emulator runs {COMMAND_RUNNER_JAR} steps only; {jar_step['Jar']} runs "
                    "on real EMR alone"
                )
            command = step_command(
                list(jar_step["Args"]), self.config.node, Fetcher(self._s3, run.work_dir)
            )
            rewrites = (
                list(record.conf_rewrites) if command.argv[0].endswith("spark-submit") else []
            )
            rewrites += command.rewrites
            controller += [f"rewritten: {r}" for r in rewrites]
            controller.append(f"runs: {json.dumps(command.argv)}")
            argv = _with_step_faults(record, command.argv, controller)
            env = self.config.node.environment(record.exports, record.work_dir / "spark-conf")
            with self.lock:
                if record.termination is None:
                    run.start(argv, env)
                    record.current = run
            if run.process is not None:
                log.info("%s step %s RUNNING: %s", record.id, step.id, " ".join(command.argv))
                run.wait()
        except StepSetupError as exc:
            setup_error = str(exc)
            run.stderr.write_text(f"{setup_error}\n")
        finally:
            with self.lock:
                record.current = None
        if record.termination is not None:
            outcome = "CANCELLED"
        elif setup_error is None and run.exit_code == 0:
            outcome = "COMPLETED"
        else:
            outcome = "FAILED"
        seconds = (run.ended - run.started) if run.started else 0.0
        controller.append(f"exit code {run.exit_code}, {seconds:.1f} s, step {outcome}")
        run.controller.write_text("\n".join(controller) + "\n")
        shipped = self._ship_logs(record, step.id, run)
        with self.lock:
            step.state = outcome
            step.end_date_time = _now()
            if outcome == "FAILED":
                logs = [
                    (path.read_text(errors="replace") if path.exists() else "", shipped.get(name))
                    for name, path in (("stderr", run.stderr), ("stdout", run.stdout))
                ]
                record.steps[step.id].failure = failure_details(logs, run.exit_code)
            elif outcome == "CANCELLED":
                record.steps[step.id].reason = "Cancelled because the cluster terminated"
        log.info("%s step %s %s after %.1f s", record.id, step.id, outcome, seconds)
        return outcome

    def _ship_logs(self, record: ClusterRecord, step_id: str, run: StepRun) -> dict[str, str]:
        """Upload controller/stdout/stderr gzipped under LogUri; return name -> s3:// URI.

        With the step-log-delay test hook, the uploads happen that many seconds later.
        """
        uploads: list[tuple[str, str, bytes]] = []
        shipped: dict[str, str] = {}
        for name, path in (
            ("controller", run.controller),
            ("stdout", run.stdout),
            ("stderr", run.stderr),
        ):
            where = record.log_key(step_id, name)
            if where is None:
                return shipped
            bucket, key = where
            uploads.append((bucket, key, gzip_to(path)))
            shipped[name] = f"s3://{bucket}/{key}"
        delay = record.step_log_delay
        if delay > 0:
            log.info("%s step %s: logs ship in %.0f s (test hook)", record.id, step_id, delay)
            timer = threading.Timer(delay, self._upload_logs, args=(record, step_id, uploads))
            timer.daemon = True
            timer.start()
            return shipped
        failed = self._upload_logs(record, step_id, uploads)
        return {name: uri for name, uri in shipped.items() if uri not in failed}

    def _upload_logs(
        self, record: ClusterRecord, step_id: str, uploads: list[tuple[str, str, bytes]]
    ) -> set[str]:
        """Put each log; return the URIs that could not be uploaded."""
        failed = set()
        for bucket, key, body in uploads:
            try:
                self._s3.put_object(Bucket=bucket, Key=key, Body=body)
            except Exception as exc:  # EMR does not fail a step for its logs either
                log.warning(
                    "%s step %s: could not upload s3://%s/%s: %s",
                    record.id,
                    step_id,
                    bucket,
                    key,
                    exc,
                )
                failed.add(f"s3://{bucket}/{key}")
        return failed

    # --- serving ----------------------------------------------------------------------------

    def serve(self) -> None:
        """Serve on config.host:config.port until stop() (or the process ends)."""
        from werkzeug.serving import make_server

        self._server = make_server(
            self.config.host, self.config.port, self, threaded=True, request_handler=_QuietHandler
        )
        log.info("EMR emulator listening on http://%s:%d", self.config.host, self.config.port)
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and stop every running step (their processes and what they started)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
        with self.lock:
            running = [r.current for r in self.clusters.values() if r.current is not None]
        for run in running:
            run.kill(grace=5)


class _QuietHandler(WSGIRequestHandler):
    """Request lines at debug level: the stack's log shows state changes, not every poll."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s", self.requestline, code)


def _with_step_faults(record: ClusterRecord, argv: list[str], controller: list[str]) -> list[str]:
    """The step's command as the test hook's faults change it (noted in the controller log)."""
    if record.faults is None:
        return argv
    changed = record.faults.step_argv(argv)
    if changed != argv:
        controller.append(f"test hook: runs {json.dumps(changed[:3])} first")
    return changed


def _moto_cluster(cluster_id: str) -> Any:
    from moto.emr.models import emr_backends

    for account in list(emr_backends.values()):
        for backend in list(account.values()):
            if cluster_id in backend.clusters:
                return backend.clusters[cluster_id]
    raise KeyError(cluster_id)


def _region_of(environ: dict[str, Any]) -> str:
    match = _CREDENTIAL_SCOPE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match["region"] if match else "us-east-1"


def _respond(start_response: Callable, status: int, body: Any) -> list[bytes]:
    data = json.dumps(body, default=str).encode()
    reason = {200: "OK", 400: "Bad Request", 500: "Internal Server Error"}.get(status, "")
    start_response(
        f"{status} {reason}",
        [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(data)))],
    )
    return [data]


def _error(start_response: Callable, error: ApiError) -> list[bytes]:
    data = json.dumps({"__type": error.code, "message": error.message}).encode()
    reason = "Bad Request" if error.status == 400 else "Internal Server Error"
    start_response(
        f"{error.status} {reason}",
        [
            ("Content-Type", JSON_CONTENT_TYPE),
            ("Content-Length", str(len(data))),
            ("x-amzn-ErrorType", error.code),
        ],
    )
    return [data]
