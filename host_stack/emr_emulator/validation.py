"""What the EMR emulator rejects at the API, the way EMR rejects it: an error code and a message.

Two layers, both before moto sees the request:
- `shape_errors`: the operation's input shape from botocore's EMR model (the model AWS publishes),
  checked server-side as AWS services check it: required members, enums, lengths and ranges, with
  AWS's "N validation errors detected: Value ... at 'path' failed to satisfy constraint: ..."
  message. botocore checks most of this client-side too; clients that skip that reach the server.
- `run_job_flow_problem` / `add_steps_problem`: EMR's own rules: both roles named and the instance
  profile existing in IAM, a release label EMR offers in the region, instance types that release
  supports (moto ships AWS's ListReleaseLabels / ListSupportedInstanceTypes data), steps EMR can
  run, an IdleTimeout within 60 s-7 days, and no steps for a cluster that is shutting down.

Codes are EMR's (ValidationException, InvalidRequestException); messages quote EMR's where we have
seen them ("InstanceProfile is required for creating cluster") and say the same thing otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

COMMAND_RUNNER_JAR = "command-runner.jar"
ENDED_CLUSTER_STATES = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT = 60, 7 * 24 * 3600
# EMR caps the steps a cluster keeps in its history; more active steps than this are refused.
MAX_STEPS_PER_REQUEST = 256


@dataclass(frozen=True)
class ApiError(Exception):
    """An EMR error response: HTTP status, error code (`__type`) and message."""

    code: str
    message: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def validation_error(message: str) -> ApiError:
    return ApiError("ValidationException", message)


# --- the operation's input shape (botocore's EMR model) --------------------------------------


@functools.cache
def _service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("emr")


def _lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


def _render(value: Any) -> str:
    return "null" if value is None else f"'{value}'"


def _violation(value: Any, path: str, constraint: str) -> str:
    return f"Value {_render(value)} at '{path}' failed to satisfy constraint: {constraint}"


def _member_path(path: str, name: str) -> str:
    return f"{path}.{_lower_first(name)}" if path else _lower_first(name)


def _bounds(value: Any, size: int, meta: dict[str, Any], path: str, what: str) -> list[str]:
    """min/max of a length (what="length") or of a number (what="value")."""
    errors = []
    if meta.get("min") and size < meta["min"]:
        constraint = f"Member must have {what} greater than or equal to {meta['min']}"
        errors.append(_violation(value, path, constraint))
    if "max" in meta and size > meta["max"]:
        constraint = f"Member must have {what} less than or equal to {meta['max']}"
        errors.append(_violation(value, path, constraint))
    return errors


def _value_errors(shape: Any, value: Any, path: str) -> list[str]:
    """Constraint violations of one value and everything below it, in AWS's wording."""
    kind, meta = shape.type_name, shape.metadata
    if kind == "structure" and isinstance(value, dict):
        errors = [
            _violation(None, _member_path(path, name), "Member must not be null")
            for name in shape.required_members
            if value.get(name) is None
        ]
        for name, member in shape.members.items():
            if value.get(name) is not None:
                errors += _value_errors(member, value[name], _member_path(path, name))
        return errors
    if kind == "list" and isinstance(value, list):
        errors = _bounds(value, len(value), meta, path, "length")
        for index, item in enumerate(value, start=1):
            errors += _value_errors(shape.member, item, f"{path}.{index}.member")
        return errors
    if kind == "string" and isinstance(value, str):
        errors = []
        if meta.get("enum") and value not in meta["enum"]:
            enum = ", ".join(meta["enum"])
            errors.append(_violation(value, path, f"Member must satisfy enum value set: [{enum}]"))
        return errors + _bounds(value, len(value), meta, path, "length")
    if kind in ("integer", "long") and isinstance(value, int):
        return _bounds(value, value, meta, path, "value")
    return []


def shape_errors(operation: str, body: dict[str, Any]) -> ApiError | None:
    """The request against the operation's input shape; None when it conforms."""
    model = _service_model()
    if operation not in model.operation_names:
        return ApiError("UnknownOperationException", f"Unknown operation {operation}")
    errors = _value_errors(model.operation_model(operation).input_shape, body, "")
    if not errors:
        return None
    count = len(errors)
    noun = "error" if count == 1 else "errors"
    return validation_error(f"{count} validation {noun} detected: " + "; ".join(errors))


# --- EMR's own rules -------------------------------------------------------------------------


@functools.cache
def release_labels(region: str) -> tuple[str, ...]:
    """The release labels EMR offers in `region` (AWS's ListReleaseLabels, as moto ships it)."""
    from moto.utilities.utils import load_resource

    try:
        return tuple(load_resource(f"emr/resources/release-labels-{region}.json"))
    except FileNotFoundError:
        return ()


@functools.cache
def supported_instance_types(release_label: str) -> frozenset[str]:
    """Instance types a release runs on (AWS's ListSupportedInstanceTypes, as moto ships it)."""
    from moto.utilities.utils import load_resource

    try:
        return frozenset(load_resource(f"emr/resources/instance-types-{release_label}.json"))
    except FileNotFoundError:
        return frozenset()


def _instance_types(instances: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, instance type) for every instance type a RunJobFlow request names."""
    found = []
    for key in ("MasterInstanceType", "SlaveInstanceType"):
        if instances.get(key):
            found.append((f"Instances.{key}", instances[key]))
    for i, group in enumerate(instances.get("InstanceGroups") or [], start=1):
        found.append((f"instance group {group.get('Name') or i}", group.get("InstanceType", "")))
    for i, fleet in enumerate(instances.get("InstanceFleets") or [], start=1):
        for config in fleet.get("InstanceTypeConfigs") or []:
            found.append((f"instance fleet {fleet.get('Name') or i}", config.get("InstanceType")))
    return found


def step_problem(step: dict[str, Any], where: str) -> ApiError | None:
    """A step EMR cannot take: no jar, or command-runner.jar with no command to run."""
    jar = (step.get("HadoopJarStep") or {}).get("Jar") or ""
    if not jar.strip():
        return validation_error(f"{where}: HadoopJarStep.Jar is empty; name a JAR to run")
    if jar == COMMAND_RUNNER_JAR and not (step["HadoopJarStep"].get("Args") or []):
        return validation_error(
            f"{where}: {COMMAND_RUNNER_JAR} runs the command given in HadoopJarStep.Args, "
            'and Args is empty; e.g. Args=["spark-submit", "s3://bucket/job.py"]'
        )
    return None


def _steps_problem(steps: list[dict[str, Any]]) -> ApiError | None:
    if len(steps) > MAX_STEPS_PER_REQUEST:
        return validation_error(
            f"{len(steps)} steps in one request; EMR accepts at most {MAX_STEPS_PER_REQUEST}"
        )
    for index, step in enumerate(steps, start=1):
        problem = step_problem(step, f"step {index} ({step.get('Name')!r})")
        if problem:
            return problem
    return None


def _roles_problem(body: dict[str, Any], region: str) -> ApiError | None:
    if not body.get("JobFlowRole"):
        return validation_error("InstanceProfile is required for creating cluster")
    if not body.get("ServiceRole"):
        return validation_error("ServiceRole is required for creating cluster")
    return None


def _release_problem(body: dict[str, Any], region: str) -> ApiError | None:
    label = body.get("ReleaseLabel")
    if label and body.get("AmiVersion"):
        return validation_error("Only one AMI version and release label may be specified.")
    if label and label not in release_labels(region):
        return validation_error(
            f"The requested release label {label} is not available in {region}; "
            "`aws emr list-release-labels` lists those that are"
        )
    if not label:
        return None
    known = supported_instance_types(label)
    for where, instance_type in _instance_types(body.get("Instances") or {}):
        if instance_type not in known:
            return validation_error(
                f"Instance type '{instance_type}' ({where}) is not supported by release "
                f"{label} in {region}; `aws emr list-supported-instance-types --release-label "
                f"{label}` lists those that are"
            )
    return None


def _auto_termination_problem(body: dict[str, Any], region: str) -> ApiError | None:
    idle = (body.get("AutoTerminationPolicy") or {}).get("IdleTimeout")
    if idle is not None and not MIN_IDLE_TIMEOUT <= idle <= MAX_IDLE_TIMEOUT:
        return validation_error(
            f"AutoTerminationPolicy.IdleTimeout {idle} is out of range; it must be between "
            f"{MIN_IDLE_TIMEOUT} seconds and {MAX_IDLE_TIMEOUT} seconds (7 days)"
        )
    return None


def run_job_flow_problem(
    body: dict[str, Any], region: str, instance_profile_exists: Callable[[str], bool] | None
) -> ApiError | None:
    """What EMR refuses in a RunJobFlow request after its shape (None: EMR would accept it).

    `instance_profile_exists(name)` asks IAM; None skips that check (no IAM to ask).
    """
    for check in (_roles_problem, _release_problem, _auto_termination_problem):
        problem = check(body, region)
        if problem:
            return problem
    problem = _steps_problem(body.get("Steps") or [])
    profile = body["JobFlowRole"]
    checks_iam = problem is None and instance_profile_exists is not None
    if checks_iam and not instance_profile_exists(profile):
        problem = validation_error(f"Invalid InstanceProfile: {profile}.")
    return problem


def add_steps_problem(body: dict[str, Any], cluster_state: str | None) -> ApiError | None:
    """What EMR refuses in an AddJobFlowSteps request after its shape (None: it would accept)."""
    if cluster_state is None:
        return ApiError(
            "InvalidRequestException", f"Cluster id '{body.get('JobFlowId')}' is not valid."
        )
    if cluster_state in ENDED_CLUSTER_STATES:
        return validation_error(
            "A job flow that is shutting down, terminated, or finished may not be modified."
        )
    return _steps_problem(body.get("Steps") or [])
