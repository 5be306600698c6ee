"""The one factory that turns a Spark job into Airflow tasks, for whichever target config names.

DAG files describe a job as data (`SparkJob`: a script in spark_jobs/ and its arguments) and call
`spark_job_tasks(job, settings)`. Only this module knows what running it means on each target
(`settings.pipeline_env`, decided by config/ alone):

- local: package spark_jobs/ (orchestration/artifact.py), then one SparkSubmitOperator against the
  `spark_default` connection (the standalone Spark master); with SPARK_CONNECT_URL set, the job
  runs as a client of the stack's Spark Connect server on that master;
- aws: one transient EMR cluster per job (envs/aws/<EMR_CLUSTER_CONFIG>), one spark-submit step
  on the job code in s3://<DATA_BUCKET>/<EMR_JOB_ARTIFACT_PREFIX>/, and the cluster's
  termination as the teardown of its creation: it runs whatever happens, and a failed step
  still fails the run.

This module lives outside dags/ so the DagBag never parses it; it imports providers lazily so
each DAG file pays only for the target it builds.
"""

from __future__ import annotations

import json
import string
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pendulum
from airflow.sdk import TaskGroup, chain

from orchestration.airflow_env import AWS_CONN_ID, SPARK_CONN_ID
from orchestration.alerts import run_failed_alert, teardown_failed_alert
from orchestration.artifact import PY_FILES_NAME, build_job_artifact
from spark_jobs.common.layout import raw_success_path

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from config.config import Settings

OWNER = "data-platform"
# First logical date; with catchup off it only bounds what a backfill may ask for.
START_DATE = (2026, 1, 1)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": OWNER,
    "depends_on_past": False,
    "retries": 2,
    # retry_delay comes from TASK_RETRY_DELAY_SECONDS (common_dag_args). Multiplier: 2 min,
    # 4 min, ... capped below (Airflow 3 takes a float, not a bool).
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}
DAGRUN_TIMEOUT = timedelta(hours=8)

# How long a local job may run once submitted, and how long an EMR cluster may take to
# terminate. An EMR step's limit, how long a failed step's sensor waits for EMR to ship its logs,
# and how often EMR is polled are config (EMR_STEP_TIMEOUT_SECONDS, EMR_STEP_LOG_WAIT_SECONDS,
# EMR_STEP_POLL_SECONDS, EMR_TERMINATION_POLL_SECONDS).
SPARK_JOB_TIMEOUT = timedelta(hours=3)
CLUSTER_TERMINATION_WAIT = timedelta(minutes=30)
# How long processing waits for the generator's success marker of the same day.
RAW_DAY_TIMEOUT = timedelta(hours=4)
RAW_DAY_POKE_INTERVAL = timedelta(minutes=5)

# EMR cluster config placeholders (${name} in envs/aws/*.json) and the settings they come from.
_CLUSTER_PLACEHOLDERS = (
    "pipeline_env",
    "data_bucket",
    "logs_bucket",
    "emr_release_label",
    "emr_job_artifacts_uri",
)


@dataclass(frozen=True)
class SparkJob:
    """A Spark job as data: its entry file in spark_jobs/ and its command-line arguments.

    Arguments are Jinja templates rendered per run, e.g. "{{ ds }}" for the logical date.
    """

    script: str
    args: tuple[str, ...]

    def __post_init__(self) -> None:
        path = PurePosixPath(self.script)
        if path.suffix != ".py" or len(path.parts) != 1:
            raise ValueError(
                f"SparkJob script {self.script!r} must be a file name in spark_jobs/ like "
                "'data_generator.py'"
            )

    @property
    def name(self) -> str:
        """The job's name in task ids and cluster names: the script without .py."""
        return PurePosixPath(self.script).stem


def common_dag_args(settings: Settings) -> dict[str, Any]:
    """DAG arguments every pipeline DAG shares (the schedule stays visible in the DAG file)."""
    return {
        "start_date": pendulum.datetime(*START_DATE, tz=settings.schedule_timezone),
        "catchup": False,
        # Two, not one: a scheduled run whose sensor still waits for its raw day (a fresh
        # environment's first run, or a late upstream) must not hold a manual rerun back for the
        # sensor's whole timeout; it holds no worker slot in reschedule mode. Two at most keeps a
        # backfill to two clusters (or local Spark jobs) at a time.
        "max_active_runs": 2,
        # A new dict: DAG() may write into it.
        "default_args": {
            **DEFAULT_ARGS,
            "retry_delay": timedelta(seconds=settings.task_retry_delay_seconds),
        },
        "dagrun_timeout": DAGRUN_TIMEOUT,
        # One message to ALERTS_TOPIC_ARN when a run fails (orchestration/alerts.py).
        "on_failure_callback": run_failed_alert(settings),
    }


def daily_schedule(cron: str, settings: Settings) -> Any:
    """A cron schedule read in SCHEDULE_TIMEZONE; the run at 09:00 on day D has ds = D."""
    from airflow.sdk import CronTriggerTimetable

    return CronTriggerTimetable(cron, timezone=settings.schedule_timezone)


def raw_success_key(settings: Settings) -> str:
    """Key (in the data bucket) of the generator's day marker, written last, for {{ ds }}."""
    return raw_success_path(settings.raw_prefix, "{{ ds }}")


def wait_for_raw_day(settings: Settings) -> BaseOperator:
    """Sensor: the generator's day marker for {{ ds }} exists, so no half-written day is read."""
    from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

    # Reschedule mode frees the worker slot between pokes and needs no triggerer.
    return S3KeySensor(
        task_id="wait_for_raw_orders",
        bucket_name=settings.data_bucket,
        bucket_key=raw_success_key(settings),
        aws_conn_id=AWS_CONN_ID,
        mode="reschedule",
        poke_interval=RAW_DAY_POKE_INTERVAL.total_seconds(),
        timeout=RAW_DAY_TIMEOUT.total_seconds(),
        execution_timeout=timedelta(minutes=5),
        retries=0,
    )


def spark_job_tasks(job: SparkJob, settings: Settings, *, deferrable: bool = True) -> TaskGroup:
    """Tasks that run `job` once on the configured target, grouped under the job's name.

    `deferrable` applies to the EMR waits (step sensor, termination); the triggerer runs them.
    """
    with TaskGroup(group_id=job.name) as group:
        if settings.pipeline_env == "aws":
            _emr_tasks(job, settings, deferrable=deferrable)
        else:
            _spark_submit_tasks(job, settings)
    return group


# --- local: spark-submit to the standalone master --------------------------------------------


def package_spark_jobs(script: str) -> dict[str, str]:
    """Zip spark_jobs/ (incl. schemas) for --py-files; return the entry file and the zip.

    Runs as a task before each local submit, so a run always ships the code as it is now.
    """
    artifact = build_job_artifact(tempfile.mkdtemp(prefix="spark_jobs_"))
    return {"application": str(artifact.entry_points[script]), "py_files": str(artifact.py_files)}


def _spark_submit_tasks(job: SparkJob, settings: Settings) -> None:
    # TaskFlow and the Spark provider are imported here so the aws DAGs do not pay for them.
    from airflow.providers.apache.spark.operators.spark_submit import (
        SparkSubmitOperator,
    )
    from airflow.sdk import task

    package_task = task(package_spark_jobs, task_id="package_spark_jobs", multiple_outputs=True)
    package = package_task(job.script)
    SparkSubmitOperator(
        task_id="spark_submit",
        conn_id=SPARK_CONN_ID,
        application=package["application"],
        py_files=package["py_files"],
        conf=settings.spark_submit_conf(),
        # SPARK_CONNECT_URL, when config sets one: the job runs on that long-lived server.
        env_vars=settings.spark_job_env() or None,
        application_args=list(job.args),
        name=f"{job.name}-{{{{ ds }}}}",
        execution_timeout=SPARK_JOB_TIMEOUT,
    )


# --- aws: one transient EMR cluster per job --------------------------------------------------


def load_emr_cluster_config(settings: Settings) -> dict[str, Any]:
    """envs/<env>/<EMR_CLUSTER_CONFIG> with its ${placeholders} filled from the settings."""
    path = settings.emr_cluster_config_path
    if path is None:
        raise ValueError(
            f"EMR_CLUSTER_CONFIG is not set for PIPELINE_ENV={settings.pipeline_env} "
            f"({settings.settings_file}); expected a JSON file name like emr_cluster.json"
        )
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"EMR cluster config {path} not found (EMR_CLUSTER_CONFIG in "
            f"{settings.settings_file}); expected a RunJobFlow JSON document there"
        ) from None
    values = {name: str(getattr(settings, name)) for name in _CLUSTER_PLACEHOLDERS}

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(value) for value in node]
        if isinstance(node, str):
            try:
                return string.Template(node).substitute(values)
            except (KeyError, ValueError) as exc:
                raise ValueError(
                    f"{path}: placeholder {exc} in {node!r} is not one of "
                    f"{', '.join('${' + n + '}' for n in _CLUSTER_PLACEHOLDERS)}"
                ) from None
        return node

    filled = fill(config)
    if settings.emr_subnet_id:
        # The deployed stack's subnet, tagged for EMR's scoped service policy; known only after
        # the deploy, so it comes from the instance's environment, not from the JSON file.
        filled.setdefault("Instances", {})["Ec2SubnetId"] = settings.emr_subnet_id
    return filled


def emr_job_flow_overrides(job: SparkJob, settings: Settings) -> dict[str, Any]:
    """RunJobFlow arguments for the job's cluster: the cluster config plus a per-run name, and
    tags naming the DAG run and job, by which the teardown finds the cluster without XCom."""
    from orchestration.emr_teardown import run_cluster_tags

    config = load_emr_cluster_config(settings)
    run_tags = [{"Key": key, "Value": value} for key, value in run_cluster_tags(job.name).items()]
    config["Tags"] = [*config.get("Tags", []), *run_tags]
    return {"Name": f"builditall-{job.name}-{{{{ ds }}}}", **config}


def emr_spark_steps(job: SparkJob, settings: Settings) -> list[dict[str, Any]]:
    """AddJobFlowSteps steps: spark-submit (command-runner.jar) of the job code in S3."""
    artifacts = settings.emr_job_artifacts_uri
    conf = settings.spark_submit_conf()
    conf_args = [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]
    return [
        {
            "Name": f"{job.name} {{{{ ds }}}}",
            # Airflow owns the cluster's lifetime: its teardown terminates it after any outcome.
            "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {
                "Jar": "command-runner.jar",
                "Args": [
                    "spark-submit",
                    "--deploy-mode",
                    "cluster",
                    "--py-files",
                    f"{artifacts}/{PY_FILES_NAME}",
                    *conf_args,
                    f"{artifacts}/{job.script}",
                    *job.args,
                ],
            },
        }
    ]


def _emr_tasks(job: SparkJob, settings: Settings, *, deferrable: bool) -> None:
    from airflow.providers.amazon.aws.operators.emr import (
        EmrAddStepsOperator,
        EmrCreateJobFlowOperator,
    )
    from airflow.sdk import TriggerRule

    from orchestration.emr_step_logs import EmrStepSensorWithLogs
    from orchestration.emr_teardown import EmrTerminateClusterOperator, run_cluster_tags

    create_cluster = EmrCreateJobFlowOperator(
        task_id="create_cluster",
        job_flow_overrides=emr_job_flow_overrides(job, settings),
        aws_conn_id=AWS_CONN_ID,
        # The whole cluster definition is data in envs/aws/, not in an emr_default connection.
        emr_conn_id=None,
    )
    add_step = EmrAddStepsOperator(
        task_id="add_step",
        job_flow_id=create_cluster.output,
        steps=emr_spark_steps(job, settings),
        aws_conn_id=AWS_CONN_ID,
    )
    poke_seconds = settings.emr_step_poll_seconds
    step_timeout = timedelta(seconds=settings.emr_step_timeout_seconds)
    # The provider's EmrStepSensor, plus the step's FailureDetails and log tails when it fails.
    wait_for_step = EmrStepSensorWithLogs(
        task_id="wait_for_step",
        job_flow_id=create_cluster.output,
        step_id=f"{{{{ ti.xcom_pull(task_ids='{add_step.task_id}')[0] }}}}",
        aws_conn_id=AWS_CONN_ID,
        deferrable=deferrable,
        poke_interval=poke_seconds,
        max_attempts=max(1, int(step_timeout.total_seconds() // poke_seconds)),
        timeout=step_timeout.total_seconds(),
        execution_timeout=step_timeout + timedelta(minutes=10),
        # A FAILED step stays FAILED: retrying the sensor would only delay the failure.
        retries=0,
        log_wait_seconds=settings.emr_step_log_wait_seconds,
    )
    # The provider's EmrTerminateJobFlowOperator, which also succeeds when the cluster has ended
    # with errors by itself (a failed bootstrap action): nothing is left to terminate.
    terminate_cluster = EmrTerminateClusterOperator(
        task_id="terminate_cluster",
        job_flow_id=create_cluster.output,
        # Also the run's clusters that XCom does not know (create_cluster failed after
        # RunJobFlow, or a retry of it started another).
        cluster_tags=run_cluster_tags(job.name),
        # A failed teardown does not fail the run, and may leave a cluster running: say so.
        on_failure_callback=teardown_failed_alert(settings),
        aws_conn_id=AWS_CONN_ID,
        deferrable=deferrable,
        waiter_delay=settings.emr_termination_poll_seconds,
        waiter_max_attempts=int(
            CLUSTER_TERMINATION_WAIT.total_seconds() // settings.emr_termination_poll_seconds
        ),
    )
    # Keep on_failure_fail_dagrun False: True would make this teardown the run's only leaf, and a
    # failed step would then end in a successful run. AutoTerminationPolicy is the safety net.
    terminate_cluster.as_teardown(setups=create_cluster)
    # as_teardown's all_done_setup_success skips the teardown when create_cluster failed, and a
    # failed create_cluster may have started a cluster: run it after any outcome. With nothing
    # tagged for the run it only lists clusters.
    terminate_cluster.trigger_rule = TriggerRule.ALL_DONE
    chain(create_cluster, add_step, wait_for_step, terminate_cluster)
