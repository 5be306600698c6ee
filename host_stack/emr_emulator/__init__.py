"""An EMR emulator for rehearsing the aws environment offline: EMR's API, steps run on local Spark.

Production runs EMR RunJobFlow, AddJobFlowSteps, DescribeStep and TerminateJobFlows; LocalStack's
free edition has no EMR and moto's EMR never finishes a step. This emulator answers the EMR API
(moto's EMR backend, restricted to EMR), rejects what EMR rejects, and plays the cluster: its
states and reasons, each command-runner.jar step run for real (spark-submit on the local stack's
Spark, code fetched from S3 in LocalStack), the step logs under the cluster's LogUri, and
termination. `python -m host_stack.emr_emulator` serves it; the host stack starts it when
PIPELINE_ENV=aws.

- validation.py  what EMR refuses, with EMR's error codes
- steps.py       how a step's command runs here, and each rewrite from what EMR would run
- emulator.py    the API in front of moto, and the cluster lifecycle
"""

from host_stack.emr_emulator.emulator import EmrEmulator, EmulatorConfig
from host_stack.emr_emulator.steps import Node

__all__ = ["EmrEmulator", "EmulatorConfig", "Node"]
