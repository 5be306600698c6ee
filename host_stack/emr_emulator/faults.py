"""Failures the EMR emulator plays on purpose: a test hook armed over HTTP, never by the pipeline.

A black-box test (tests/e2e/test_emr_failure_scenarios.py) cannot change what the DAGs send to
EMR, so it arms faults on the emulator for the clusters it is about to cause:

    POST   /_emulator/faults   {"cluster_name_contains": "2026-03-02", "bootstrap_failure": "..."}
    GET    /_emulator/faults   what is armed
    DELETE /_emulator/faults?cluster_name_contains=2026-03-02

Every RunJobFlow whose Name contains `cluster_name_contains` gets the faults (retries too) until
they are disarmed or the emulator restarts. Real EMR has no such endpoint: against AWS the tests
that need it skip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

FAULTS_PATH = "/_emulator/faults"
# A failing bootstrap action waits at most this long for the cluster's first step before it
# fails: EMR bootstraps for minutes, so the DAG's add_step always lands while it runs.
BOOTSTRAP_FAULT_MAX_WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class Faults:
    """What goes wrong for the clusters whose Name contains `cluster_name_contains`.

    - refuse_cluster: RunJobFlow is refused with ValidationException and this message;
    - bootstrap_failure: bootstrap action 1 returns non-zero with this output; the cluster ends
      TERMINATED_WITH_ERRORS (BOOTSTRAP_FAILURE) once its first step has arrived;
    - step_delay_seconds: each step runs this much longer (its command starts that late);
    - step_log_delay_seconds: each step's logs reach LogUri this long after the step ends.
    """

    cluster_name_contains: str
    refuse_cluster: str | None = None
    bootstrap_failure: str | None = None
    step_delay_seconds: float = 0.0
    step_log_delay_seconds: float = 0.0

    @classmethod
    def from_json(cls, body: Any) -> Faults:
        """Faults from a request body; ValueError naming what is wrong."""
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; expected some of {sorted(known)}")
        match = body.get("cluster_name_contains")
        if not isinstance(match, str) or not match:
            raise ValueError("cluster_name_contains must be a non-empty string, like '2026-03-02'")
        for name in ("refuse_cluster", "bootstrap_failure"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise ValueError(f"{name} must be a message (a string)")
        for name in ("step_delay_seconds", "step_log_delay_seconds"):
            value = body.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")
        return cls(**body)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def step_argv(self, argv: list[str]) -> list[str]:
        """The step's command, started step_delay_seconds late when that is set."""
        if self.step_delay_seconds <= 0:
            return argv
        # In the step's own process group, so cancelling the step stops the wait too.
        return ["sh", "-c", f'sleep {self.step_delay_seconds:g} && exec "$@"', "sh", *argv]

    def applies_to(self, cluster_name: str | None) -> bool:
        return self.cluster_name_contains in (cluster_name or "")


class ArmedFaults:
    """The faults armed now, by their `cluster_name_contains` (arming the same one replaces it)."""

    def __init__(self) -> None:
        self._armed: dict[str, Faults] = {}

    def arm(self, faults: Faults) -> None:
        self._armed[faults.cluster_name_contains] = faults

    def disarm(self, cluster_name_contains: str | None) -> list[Faults]:
        """Disarm one match string's faults (None: all); return what was disarmed."""
        if cluster_name_contains is None:
            gone = list(self._armed.values())
            self._armed.clear()
            return gone
        gone = self._armed.pop(cluster_name_contains, None)
        return [gone] if gone else []

    def listed(self) -> list[dict[str, Any]]:
        return [faults.to_json() for faults in self._armed.values()]

    def for_cluster(self, cluster_name: str | None) -> Faults | None:
        """The faults a new cluster of this name gets (the first armed that matches)."""
        return next((f for f in self._armed.values() if f.applies_to(cluster_name)), None)
