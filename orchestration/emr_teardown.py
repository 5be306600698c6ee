"""The EMR cluster's teardown: terminate it, and succeed once it has ended, with or without errors.

The provider's EmrTerminateJobFlowOperator waits (deferrable) with the `job_flow_terminated`
waiter, which counts `TERMINATED_WITH_ERRORS` as a failure. A cluster ends that way by itself
when a bootstrap action fails, or when it loses its instances, so the teardown then failed and
was retried, although nothing was left running and `wait_for_step` already failed the run with
the reason. `EmrTerminateClusterOperator` (used by orchestration/spark_job.py) keeps the
provider's termination and wait, and only reads their outcome by the cluster's state:

- a cluster that has already ended is not terminated again; its state and reason are logged;
- when the wait reports a failure, DescribeCluster decides: ended (TERMINATED or
  TERMINATED_WITH_ERRORS) is the teardown's success, logged with EMR's reason; anything else
  (still TERMINATING at the wait's limit, an API error) fails the task as before.

It also finds the run's clusters by their tags (`run_cluster_tags`: DAG, run and job, put on
every cluster by the RunJobFlow request), so no cluster outlives its run when `create_cluster`
failed after RunJobFlow (no cluster id in XCom: a waiter error, a killed worker, a lost API
response) or a retry of `create_cluster` started a second one: every active cluster carrying the
run's tags is terminated, the one in XCom (when there is one) is waited for.

The run's outcome is not the teardown's to decide: a failed step fails the run through
`wait_for_step`, whatever the teardown does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.emr import EmrTerminateJobFlowOperator
from airflow.providers.common.compat.sdk import AirflowException
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from airflow.sdk import Context

ENDED_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")
# States of a cluster that still runs (and costs); TERMINATING is already on its way out.
ACTIVE_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
# Tag keys naming the Airflow run a cluster belongs to (values are Jinja, rendered per run).
DAG_ID_TAG = "airflow-dag-id"
RUN_ID_TAG = "airflow-run-id"
JOB_TAG = "spark-job"


def run_cluster_tags(job_name: str) -> dict[str, str]:
    """Tags that name the cluster's DAG run and job: in the RunJobFlow request and in the
    teardown's search, from this one place. Templates, rendered by each task for its run."""
    return {DAG_ID_TAG: "{{ dag.dag_id }}", RUN_ID_TAG: "{{ run_id }}", JOB_TAG: job_name}


class EmrTerminateClusterOperator(EmrTerminateJobFlowOperator):
    """EmrTerminateJobFlowOperator that succeeds whenever the cluster has ended, and also
    terminates every active cluster tagged with `cluster_tags` (the run's, when given)."""

    template_fields = (*EmrTerminateJobFlowOperator.template_fields, "cluster_tags")

    def __init__(self, *, cluster_tags: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cluster_tags = dict(cluster_tags or {})

    def execute(self, context: Context) -> None:
        tagged = self.tagged_active_clusters()
        if not self.job_flow_id:
            if not tagged:
                self.log.info(
                    "No cluster id in XCom and no active cluster tagged %s: nothing to terminate.",
                    self.cluster_tags,
                )
                return
            self.job_flow_id = tagged[0]
            self.log.info(
                "No cluster id in XCom: terminating the run's cluster %s, found by its tags %s.",
                self.job_flow_id,
                self.cluster_tags,
            )
        others = [cluster_id for cluster_id in tagged if cluster_id != self.job_flow_id]
        if others:
            self.log.info(
                "Terminating the run's other active clusters %s (found by their tags %s).",
                others,
                self.cluster_tags,
            )
            self.hook.conn.terminate_job_flows(JobFlowIds=others)
        ended = self._ended()
        if ended is not None:
            self.log.info("Cluster %s has already ended: %s. Nothing to terminate.", *ended)
            return
        super().execute(context)

    def defer(self, *, kwargs: dict[str, Any] | None = None, **rest: Any) -> Any:
        # The cluster may have been found by its tags: execute_complete must know which it was.
        return super().defer(kwargs={**(kwargs or {}), "job_flow_id": self.job_flow_id}, **rest)

    def tagged_active_clusters(self) -> list[str]:
        """Ids of the active clusters whose tags include all of `cluster_tags` (none without)."""
        if not self.cluster_tags:
            return []
        wanted = self.cluster_tags.items()
        found = []
        paginator = self.hook.conn.get_paginator("list_clusters")
        for page in paginator.paginate(ClusterStates=list(ACTIVE_STATES)):
            for summary in page["Clusters"]:
                try:
                    cluster = self.hook.conn.describe_cluster(ClusterId=summary["Id"])["Cluster"]
                except ClientError as error:
                    # The role may describe only the project's clusters: others are not ours.
                    if error.response["Error"]["Code"] != "AccessDeniedException":
                        raise
                    continue
                tags = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
                if wanted <= tags.items():
                    found.append(summary["Id"])
        return found

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        job_flow_id: str | None = None,
    ) -> None:
        self.job_flow_id = job_flow_id or self.job_flow_id
        try:
            super().execute_complete(context, event)
        except AirflowException:
            ended = self._ended()
            if ended is None:
                raise
            self.log.info("Cluster %s has ended: %s.", *ended)

    def _ended(self) -> tuple[str, str] | None:
        """(cluster id, "STATE (CODE: message)") when the cluster has ended, else None."""
        status = self.hook.conn.describe_cluster(ClusterId=self.job_flow_id)["Cluster"]["Status"]
        if status["State"] not in ENDED_STATES:
            return None
        reason = status.get("StateChangeReason") or {}
        why = ": ".join(filter(None, [reason.get("Code"), reason.get("Message")]))
        return self.job_flow_id, f"{status['State']} ({why})" if why else status["State"]
