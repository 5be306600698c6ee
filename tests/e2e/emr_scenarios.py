"""The EMR failure scenarios of tests/e2e as data, and their runs.

Each scenario is a DAG run for a day of its own with faults armed on the EMR emulator for that
day's clusters (its test hook, host_stack/emr_emulator/faults.py). All runs start together, at
the first test that asks for them (the session fixture `emr_scenarios` in conftest.py), so
their waits overlap each other and the tests after them; each test then waits for its own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.emr_runs import JOB_GROUPS, FinishedRun, write_raw_day

GENERATION_DAG = "data_generation"
PROCESSING_DAG = "data_processing"
BOOTSTRAP_ERROR = "ERROR: No matching distribution found for pyarrow==99.0.0"
REFUSAL = "Instance type m5.xlarge is not supported in the requested Availability Zone."
# The step-timeout scenario waits out EMR_STEP_TIMEOUT_SECONDS; the rehearsal sets it short.
MAX_REHEARSED_STEP_TIMEOUT_SECONDS = 900
# The late logs reach S3 this long after the sensor has stopped waiting for them.
LATE_LOGS_MARGIN_SECONDS = 60
RAW_LINES, RAW_LINES_CLAIMED = 2, 5


@dataclass(frozen=True)
class Scenario:
    """One failure: the DAG run for its day, and the faults armed for that day's clusters."""

    dag_id: str
    day: str
    faults: dict[str, Any]
    # The processing DAG first waits for a raw day; a corrupt one makes its step fail.
    needs_raw_day: bool = False

    @property
    def job(self) -> str:
        return JOB_GROUPS[self.dag_id]


def scenarios(settings) -> dict[str, Scenario]:
    step_timeout = settings.emr_step_timeout_seconds
    late = settings.emr_step_log_wait_seconds + LATE_LOGS_MARGIN_SECONDS
    planned = {
        "refused": Scenario(GENERATION_DAG, "2026-03-02", {"refuse_cluster": REFUSAL}),
        "bootstrap": Scenario(
            PROCESSING_DAG, "2026-03-03", {"bootstrap_failure": BOOTSTRAP_ERROR},
            needs_raw_day=True,
        ),
        "late_logs": Scenario(
            PROCESSING_DAG, "2026-03-04", {"step_log_delay_seconds": late}, needs_raw_day=True
        ),
        # The step's command would start long after the teardown has cancelled it.
        "timeout": Scenario(
            GENERATION_DAG, "2026-03-05", {"step_delay_seconds": step_timeout + 600}
        ),
    }  # fmt: skip
    if step_timeout > MAX_REHEARSED_STEP_TIMEOUT_SECONDS:
        del planned["timeout"]
    return planned


@dataclass
class ScenarioRuns:
    """The scenarios' runs, started together; `finished` waits for one and reads it."""

    airflow_api: Any
    progress: Callable[[str], None]
    planned: dict[str, Scenario]
    run_ids: dict[str, str] = field(default_factory=dict)
    done: dict[str, FinishedRun] = field(default_factory=dict)

    def finished(self, name: str) -> FinishedRun:
        if name not in self.run_ids:
            pytest.skip(f"scenario {name!r} was not started (see scenarios())")
        if name not in self.done:
            scenario = self.planned[name]
            timeout = float(os.environ.get("E2E_RUN_TIMEOUT", "900"))
            run = self.airflow_api.wait_for_run(
                scenario.dag_id, self.run_ids[name], timeout=timeout, report=self.progress
            )
            self.done[name] = FinishedRun.read(
                self.airflow_api, scenario.dag_id, self.run_ids[name], run["state"]
            )
        return self.done[name]


@contextlib.contextmanager
def started_scenarios(
    settings, airflow_api, emr_faults, s3, progress: Callable[[str], None]
) -> Iterator[ScenarioRuns]:
    """Every scenario's faults armed and its run started; on leaving, each run ended and its
    faults disarmed (no run outlives the tests, nor its faults a later run of its day)."""
    planned = scenarios(settings)
    runs = ScenarioRuns(airflow_api, progress, planned)
    try:
        for scenario in planned.values():
            emr_faults.arm(scenario.day, **scenario.faults)
            if scenario.needs_raw_day:
                write_raw_day(
                    s3, settings, scenario.day, lines=RAW_LINES, claimed=RAW_LINES_CLAIMED
                )
        for dag_id in {scenario.dag_id for scenario in planned.values()}:
            airflow_api.wait_for_dag(dag_id)
            airflow_api.unpause(dag_id)
        # A new run each time (its ds the scenario's day): a cleared one would keep counting
        # its tries, and the retries' exponential backoff would stretch each rerun.
        now = datetime.now(UTC).strftime("%H:%M:%S")
        for name, scenario in planned.items():
            logical_date = f"{scenario.day}T{now}Z"
            runs.run_ids[name] = airflow_api.trigger(scenario.dag_id, logical_date)
            progress(f"{scenario.dag_id}: run {runs.run_ids[name]} for {scenario.day} ({name})")
        yield runs
    finally:
        for name in runs.run_ids:
            runs.finished(name)
        for scenario in planned.values():
            emr_faults.disarm(scenario.day)
