"""Failures someone hears about: one SNS message per failed DAG run and per failed EMR teardown.

orchestration/spark_job.py wires both callbacks (the DAG's on_failure_callback through
`common_dag_args`, the teardown's on_failure_callback in the EMR flow); ALERTS_TOPIC_ARN (config)
names the topic, the stack's (envs/aws/cloudformation.yaml). Unset, the callbacks do nothing.

Each message names the DAG, the run, the task and the S3 URI of that task attempt's log under
s3://<LOGS_BUCKET>/<LOGS_PREFIX>/ (remote task logging, orchestration/airflow_env.py), so the
reader can open the log without the Airflow UI. A callback that cannot publish logs why and
raises nothing: Airflow's own handling of the failure must go on.

DAG callbacks run in the DAG processor (Airflow 3), with the task that failed the run as `ti`
when there is one (none for a run that timed out); task callbacks run in the task's process.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestration.airflow_env import AWS_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

    from config.config import Settings

log = logging.getLogger(__name__)

RUN_FAILED = "DAG run failed"
TEARDOWN_FAILED = "EMR cluster teardown failed"
# SNS limits an e-mail subject to 100 characters.
SUBJECT_LIMIT = 100


def task_log_uri(logs_uri: str, ti: Any) -> str:
    """Where remote logging puts a task attempt's log: Airflow's default [logging]
    log_filename_template below REMOTE_BASE_LOG_FOLDER (= settings.logs_uri)."""
    map_index = getattr(ti, "map_index", -1)
    mapped = f"map_index={map_index}/" if map_index is not None and map_index >= 0 else ""
    return (
        f"{logs_uri}/dag_id={ti.dag_id}/run_id={ti.run_id}/task_id={ti.task_id}/"
        f"{mapped}attempt={ti.try_number}.log"
    )


def failure_alert(context: Context, logs_uri: str, what: str) -> dict[str, Any]:
    """The alert's fields, from a callback's context (a task's, or a DAG run's with or without
    the task that failed it)."""
    ti = context.get("ti")
    dag = context.get("dag")
    dag_id = ti.dag_id if ti is not None else getattr(dag, "dag_id", None)
    run_id = ti.run_id if ti is not None else context.get("run_id")
    alert: dict[str, Any] = {
        "what": what,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": ti.task_id if ti is not None else None,
        "log": None,
        "reason": str(context.get("reason") or context.get("exception") or "") or None,
    }
    if ti is not None:
        alert["log"] = task_log_uri(logs_uri, ti)
    return alert


def _message(alert: dict[str, Any]) -> tuple[str, str]:
    subject = f"[builditall] {alert['what']}: {alert['dag_id']}"[:SUBJECT_LIMIT]
    lines = [
        f"{alert['what']}.",
        f"DAG:  {alert['dag_id']}",
        f"Run:  {alert['run_id']}",
        f"Task: {alert['task_id'] or '(none: the run itself failed, e.g. timed out)'}",
        f"Log:  {alert['log'] or '(no task log)'}",
    ]
    if alert["reason"]:
        lines.append(f"Why:  {alert['reason']}")
    # The same fields as JSON, for whoever filters the topic by machine.
    lines += ["", json.dumps(alert, sort_keys=True)]
    return subject, "\n".join(lines)


@dataclass(frozen=True)
class FailureAlert:
    """An on_failure_callback publishing one message to ALERTS_TOPIC_ARN (none when unset)."""

    topic_arn: str | None
    logs_uri: str
    what: str
    aws_conn_id: str | None = AWS_CONN_ID

    def __call__(self, context: Context) -> None:
        if not self.topic_arn:
            return
        subject, message = _message(failure_alert(context, self.logs_uri, self.what))
        try:
            from airflow.providers.amazon.aws.hooks.sns import SnsHook

            hook = SnsHook(aws_conn_id=self.aws_conn_id)
            hook.publish_to_target(target_arn=self.topic_arn, message=message, subject=subject)
        except Exception:
            # The failure itself is already recorded by Airflow; a lost alert must not hide it.
            log.exception("Could not publish the failure alert to %s", self.topic_arn)


def run_failed_alert(settings: Settings) -> FailureAlert:
    """The DAG's on_failure_callback."""
    return FailureAlert(settings.alerts_topic_arn, settings.logs_uri, RUN_FAILED)


def teardown_failed_alert(settings: Settings) -> FailureAlert:
    """The EMR teardown's on_failure_callback: a cluster may still be running (and costing)."""
    return FailureAlert(settings.alerts_topic_arn, settings.logs_uri, TEARDOWN_FAILED)
