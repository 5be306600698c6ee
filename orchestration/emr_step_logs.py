"""Why an EMR step failed, written into the failing Airflow task's log.

EMR keeps a failed step's reason in DescribeStep (`FailureDetails`) and ships the step's logs,
minutes later, to `<LogUri>/<cluster id>/steps/<step id>/{controller,stderr,stdout}.gz`. The
provider's EmrStepSensor says only the reason; `EmrStepSensorWithLogs` (used by
orchestration/spark_job.py for `wait_for_step`) also prints, in this order:

1. the step's FailureDetails (reason, message, log file);
2. the last lines of the log file FailureDetails names, of `stderr` and of `controller`, read
   from S3 once they arrive (waiting at most `log_wait_seconds`; when they are not there yet,
   it says so and names the URI to look at later);
3. the S3 URIs of the full logs.

When the step outlives the sensor's timeout, the log says so and where the step stands (still
RUNNING: the DAG's teardown then terminates the cluster, which cancels it).

It changes only the failure path of the provider's sensor (poking and the deferrable trigger
are the provider's own), and reading the logs never hides the step's failure: any error while
reading is logged and the provider's exception is raised as before.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.amazon.aws.sensors.emr import EmrStepSensor
from airflow.providers.common.compat.sdk import AirflowException, AirflowSensorTimeout

if TYPE_CHECKING:
    from airflow.sdk import Context

# EMR ships step logs every few minutes; waiting longer than that rarely pays.
DEFAULT_LOG_WAIT_SECONDS = 300
DEFAULT_LOG_POLL_SECONDS = 15
DEFAULT_TAIL_LINES = 40
# The controller log says what EMR ran and how it ended: its end is enough.
CONTROLLER_TAIL_LINES = 10
STEP_LOG_NAMES = ("stderr", "controller", "stdout")
FAILED_STEP_STATES = ("FAILED", "CANCELLED", "INTERRUPTED")
_NOT_FOUND_CODES = ("404", "NoSuchKey", "NotFound")


def step_log_prefix(log_uri: str, cluster_id: str, step_id: str) -> str:
    """s3://bucket/prefix/<cluster id>/steps/<step id>/ for a cluster's LogUri (s3n:// too)."""
    parts = urlsplit(log_uri)
    if parts.scheme not in ("s3", "s3n", "s3a") or not parts.netloc:
        raise ValueError(f"LogUri {log_uri!r} is not an s3:// URI")
    prefix = parts.path.strip("/")
    prefix = f"{prefix}/" if prefix else ""
    return f"s3://{parts.netloc}/{prefix}{cluster_id}/steps/{step_id}/"


def _split(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.lstrip("/")


class LogNotThereError(Exception):
    """The object is not (yet) in S3."""


def read_s3_text(s3: Any, uri: str) -> str:
    """The object's text, gunzipped when gzipped; LogNotThereError when it does not exist."""
    from botocore.exceptions import ClientError

    bucket, key = _split(uri)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
            raise LogNotThereError(uri) from None
        raise
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return body.decode("utf-8", errors="replace")


def last_lines(text: str, count: int) -> list[str]:
    lines = text.rstrip("\n").splitlines()
    return lines[-count:] if count > 0 else []


@dataclass
class StepLogReport:
    """Builds the lines a failed step's task log shows (see the module docstring)."""

    emr: Any
    s3: Any
    wait_seconds: float = DEFAULT_LOG_WAIT_SECONDS
    poll_seconds: float = DEFAULT_LOG_POLL_SECONDS
    tail_lines: int = DEFAULT_TAIL_LINES
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    # The step's state as `lines` found it.
    state: str | None = None

    def lines(self, cluster_id: str, step_id: str) -> list[str]:
        step = self.emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]
        status = step["Status"]
        state = self.state = status["State"]
        out = [f"EMR step {step_id} ({step.get('Name')!r}) on cluster {cluster_id} is {state}."]
        if state not in FAILED_STEP_STATES:
            return out
        details = status.get("FailureDetails") or {}
        if details:
            out.append("FailureDetails:")
            out += [
                f"  {key}: {details[key]}"
                for key in ("Reason", "Message", "LogFile")
                if key in details
            ]
        else:
            reason = (status.get("StateChangeReason") or {}).get("Message")
            out.append(
                f"No FailureDetails from EMR{f'; state change reason: {reason}' if reason else ''}."
            )
        cluster = self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        cluster_status = cluster.get("Status") or {}
        if cluster_status.get("State", "").startswith("TERMINAT"):
            # A step cancelled because its cluster ended (e.g. BOOTSTRAP_FAILURE): say why.
            reason = cluster_status.get("StateChangeReason") or {}
            out.append(
                f"Cluster {cluster_id} is {cluster_status['State']} "
                f"({reason.get('Code', 'no code')}: {reason.get('Message', 'no message')})."
            )
        if state == "CANCELLED" and not (status.get("Timeline") or {}).get("StartDateTime"):
            out.append("The step never started, so it has no logs.")
            return out
        log_uri = cluster.get("LogUri")
        if not log_uri:
            out.append(
                f"Cluster {cluster_id} has no LogUri, so EMR keeps no step logs in S3; set LogUri "
                "in the cluster config (envs/aws/) to have them next time."
            )
            return out
        prefix = step_log_prefix(log_uri, cluster_id, step_id)
        uris = {name: f"{prefix}{name}.gz" for name in STEP_LOG_NAMES}
        out += self._tails(details.get("LogFile"), uris)
        out.append("Full logs:")
        out += [f"  {uri}" for uri in uris.values()]
        return out

    def _tails(self, failure_log: str | None, uris: dict[str, str]) -> list[str]:
        # The file FailureDetails names first (with a Python driver it may be stdout), then
        # stderr, then the controller's last lines.
        wanted: list[tuple[str, int]] = []
        if failure_log and failure_log not in (uris["stderr"], uris["controller"]):
            wanted.append((failure_log, self.tail_lines))
        wanted += [(uris["stderr"], self.tail_lines), (uris["controller"], CONTROLLER_TAIL_LINES)]
        first = wanted[0][0]
        try:
            texts = {first: self._wait_for(first)}
        except LogNotThereError:
            return [
                f"The step's logs are not in S3 yet after {self.wait_seconds:.0f} s (EMR ships "
                f"them within about 5 minutes); look later at {first}"
            ]
        except Exception as exc:
            return [f"Could not read {first}: {exc}"]
        out = []
        for uri, count in wanted:
            try:
                text = texts[uri] if uri in texts else read_s3_text(self.s3, uri)
            except LogNotThereError:
                out.append(f"{uri} is not in S3 yet; look later.")
                continue
            except Exception as exc:
                out.append(f"Could not read {uri}: {exc}")
                continue
            tail = last_lines(text, count)
            if not tail:
                out.append(f"{uri} is empty.")
                continue
            out.append(f"Last {len(tail)} lines of {uri}:")
            out += [f"  | {line}" for line in tail]
        return out

    def _wait_for(self, uri: str) -> str:
        deadline = self.clock() + self.wait_seconds
        while True:
            try:
                return read_s3_text(self.s3, uri)
            except LogNotThereError:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise
                self.sleep(min(self.poll_seconds, remaining))


class EmrStepSensorWithLogs(EmrStepSensor):
    """EmrStepSensor that, when the step fails, prints why and its logs' tails in the task log.

    :param log_wait_seconds: how long to wait for EMR to ship the step's logs to S3
    :param log_poll_seconds: how often to look for them meanwhile
    :param log_tail_lines: how many last lines of each log to print
    """

    def __init__(
        self,
        *,
        log_wait_seconds: float = DEFAULT_LOG_WAIT_SECONDS,
        log_poll_seconds: float = DEFAULT_LOG_POLL_SECONDS,
        log_tail_lines: int = DEFAULT_TAIL_LINES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.log_wait_seconds = log_wait_seconds
        self.log_poll_seconds = log_poll_seconds
        self.log_tail_lines = log_tail_lines

    def execute(self, context: Context) -> None:
        try:
            super().execute(context)
        except AirflowSensorTimeout:
            self.log_step_failure(timed_out=True)
            raise

    def resume_execution(
        self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context
    ) -> Any:
        # Airflow ends a deferral that outlives its timeout this way, not through the trigger.
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout:
            self.log_step_failure(timed_out=True)
            raise

    def poke(self, context: Context) -> bool:
        try:
            return super().poke(context)
        except AirflowException:
            self.log_step_failure()
            raise

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
        if not event or event.get("status") != "success":
            self.log_step_failure()
        super().execute_complete(context, event)

    def log_step_failure(self, *, timed_out: bool = False) -> None:
        """Log the step's FailureDetails and logs; never raise (the failure must stay visible).

        `timed_out`: Airflow ended the wait; a step not in a failed state also means that (the
        trigger gave up after its attempts).
        """
        try:
            report = StepLogReport(
                emr=self.hook.conn,
                s3=self._s3_client(),
                wait_seconds=self.log_wait_seconds,
                poll_seconds=self.log_poll_seconds,
                tail_lines=self.log_tail_lines,
            )
            lines = report.lines(self.job_flow_id, self.step_id)
            timed_out = timed_out or report.state not in FAILED_STEP_STATES
        except Exception as exc:
            self.log.warning(
                "Could not read why EMR step %s on cluster %s failed (%s: %s); see the step in "
                "the EMR console and its logs under the cluster's LogUri",
                self.step_id,
                self.job_flow_id,
                type(exc).__name__,
                exc,
            )
            return
        if timed_out:
            self.log.error(
                "EMR step %s on cluster %s did not end within the sensor's timeout (%.0f s).",
                self.step_id,
                self.job_flow_id,
                self.timeout,
            )
        for line in lines:
            self.log.error("%s", line)

    def _s3_client(self) -> Any:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(
            aws_conn_id=self.aws_conn_id,
            region_name=self.region_name,
            verify=self.verify,
            config=self.botocore_config,
        ).get_conn()
