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

The run's outcome is not the teardown's to decide: a failed step fails the run through
`wait_for_step`, whatever the teardown does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.emr import EmrTerminateJobFlowOperator
from airflow.providers.common.compat.sdk import AirflowException

if TYPE_CHECKING:
    from airflow.sdk import Context

ENDED_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")


class EmrTerminateClusterOperator(EmrTerminateJobFlowOperator):
    """EmrTerminateJobFlowOperator that succeeds whenever the cluster has ended."""

    def execute(self, context: Context) -> None:
        ended = self._ended()
        if ended is not None:
            self.log.info("Cluster %s has already ended: %s. Nothing to terminate.", *ended)
            return
        super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> None:
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
