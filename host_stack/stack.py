"""The whole local stack in host mode (no Docker): LocalStack, a Spark standalone pair and Airflow.

With PIPELINE_ENV=aws the same stack rehearses the aws environment offline: Airflow runs the aws
DAGs (the EMR flow) against emulated AWS, S3 and IAM in LocalStack and EMR in the EMR emulator
(host_stack/emr_emulator/), whose steps run on the same Spark; `up` also creates the EMR roles
and uploads the job artifact, as an account's IaC and the deploy would.

`Stack` resolves the settings once (the stack's own, `StackSettings`, and config's with the
stack's ports applied) into a `Plan` (host_stack/plan.py): `local_plan` or, with PIPELINE_ENV=aws,
`emulated_aws_plan`, each a tuple of services with command, environment, dependencies, readiness
and lifecycle. `up()` hands the plan to the one generic loop (host_stack/runner.py); `down()`
stops every process of the stack, found by its records, its marker, its ports and its process
groups (host_stack/processes.py), even when the records under <state_dir>/pids/ are lost.
The state dir (default .stack/, gitignored) also holds the logs, AIRFLOW_HOME and LocalStack's
files.

The twin in Docker mode is docker-compose.yml + docker-compose.local.yml. The plans follow the
overlay's services, dependencies and readiness where both have them, and
tests/compose/test_stack_plan.py holds them against it. They differ where host mode runs
lighter: SQLite and the LocalExecutor instead of Postgres, Redis and a Celery worker; Airflow
does not wait for the buckets (only DAG runs need them); the Spark worker and the Connect server
start as soon as the master can take them; the log servers are a service of their own, one
process bound to 127.0.0.1; and two one-shots of the host only: the jobs' class-data archive and
the Connect server's warm-up.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from host_stack import spark_connect
from host_stack.airflow import AirflowHost
from host_stack.localstack import LocalStack, find_localstack_python
from host_stack.plan import Plan
from host_stack.plans import emulated_aws_plan, local_plan
from host_stack.processes import MARKER_ENV, ProcessRecord, ProcessTable
from host_stack.runner import bring_up
from host_stack.spark import SparkStandalone
from host_stack.spark_cds import SparkQuickStart
from host_stack.stack_settings import STACK_ENV_NAMES, StackError, StackSettings

if TYPE_CHECKING:
    import psutil

    from config.config import Settings

__all__ = ["MARKER_ENV", "STACK_ENV_NAMES", "Stack", "StackError", "StackSettings"]

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# How often Airflow polls the EMR emulator (EMR_STEP_POLL_SECONDS, ..._TERMINATION_...): a
# rehearsal waits seconds, not the minute production polls at.
EMULATED_AWS_POLL_SECONDS = 2
# The rehearsal's limit on an EMR step (EMR_STEP_TIMEOUT_SECONDS): well above its steps' one to
# three minutes on a busy 2-core machine, short enough that tests/e2e can rehearse a step that
# outlives it while the other e2e tests run.
EMULATED_STEP_TIMEOUT_SECONDS = 420
# The emulator ships step logs at once unless told otherwise (its test hook): no reason to wait
# for them as long as for EMR (EMR_STEP_LOG_WAIT_SECONDS).
EMULATED_STEP_LOG_WAIT_SECONDS = 10
# Where in the data bucket the warm-up writes; deleted when it ends.
WARMUP_PREFIX = "_stack_warmup"
# Records which PIPELINE_ENV the running stack was started with.
PIPELINE_ENV_FILE = "pipeline_env"
Report = Callable[[str], None]


@functools.lru_cache(maxsize=8)
def _load_settings(environ: frozenset[tuple[str, str]]) -> Settings:
    """config's settings for one environment, read once per command (DAG parsing reads its own)."""
    from config.config import load_settings

    return load_settings(environ=dict(environ))


# --- the stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """The host-mode stack described by `settings`; any process may build one (up, down...)."""

    settings: StackSettings = field(default_factory=StackSettings.from_env)
    report: Report = print
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    table: ProcessTable = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.table = ProcessTable(self.settings.state_dir)

    # --- paths and settings --------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    @property
    def pid_dir(self) -> Path:
        return self.table.pid_dir

    @property
    def log_dir(self) -> Path:
        return self.table.log_dir

    @property
    def venv_bin(self) -> Path:
        # Not resolved: the venv's bin/python is a symlink to the base interpreter.
        return Path(sys.executable).parent

    @property
    def python(self) -> str:
        return str(self.venv_bin / "python")

    def own_settings(self) -> Settings:
        """config's settings as the environment gives them, before the stack's overrides."""
        return _load_settings(frozenset(self.environ.items()))

    @property
    def pipeline_env(self) -> str:
        """local, or aws for the offline rehearsal of the aws environment (PIPELINE_ENV)."""
        return self.own_settings().pipeline_env

    @property
    def emulates_aws(self) -> bool:
        return self.pipeline_env == "aws"

    @property
    def emr_emulator_url(self) -> str:
        return f"http://{HOST}:{self.settings.emr_emulator_port}"

    @property
    def localstack_url(self) -> str:
        return f"http://{HOST}:{self.settings.localstack_port}"

    def pipeline_overrides(self) -> dict[str, str]:
        """Environment that points config's settings at this stack's ports (and, with
        PIPELINE_ENV=aws, every AWS service at its emulator)."""
        settings = self.own_settings()
        if settings.pipeline_env == "aws":
            return self._emulated_aws_overrides()
        overrides = {"PIPELINE_ENV": "local"}
        endpoint = settings.aws_endpoint_url or f"http://localhost:{self.settings.localstack_port}"
        parts = urlsplit(endpoint)
        if parts.port != self.settings.localstack_port:
            netloc = f"{parts.hostname}:{self.settings.localstack_port}"
            overrides["AWS_ENDPOINT_URL"] = urlunsplit(parts._replace(netloc=netloc))
        master = f"spark://{HOST}:{self.settings.spark_master_port}"
        if settings.spark_master != master:
            overrides["SPARK_MASTER"] = master
        connect = f"sc://{HOST}:{self.settings.spark_connect_port}"
        if settings.spark_connect_url is not None and settings.spark_connect_url != connect:
            overrides["SPARK_CONNECT_URL"] = connect
        quick_start = self.spark_quick_start()
        if quick_start is not None:
            overrides["SPARK_JAVA_OPTIONS"] = quick_start.java_options(settings.spark_java_options)
        return overrides

    def _emulated_aws_overrides(self) -> dict[str, str]:
        """The aws settings with AWS emulated: S3 and IAM in LocalStack (with its dummy keys,
        whatever keys the shell holds: the rehearsal never reaches real AWS), EMR in the
        emulator, the local data size and polls every EMULATED_AWS_POLL_SECONDS."""
        from config.config import load_settings

        local = load_settings("local", environ={})
        secret = local.aws_secret_access_key
        overrides = {
            "PIPELINE_ENV": "aws",
            "AWS_ENDPOINT_URL": f"http://localhost:{self.settings.localstack_port}",
            "AWS_ACCESS_KEY_ID": local.aws_access_key_id or "",
            "AWS_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else "",
            "EMR_ENDPOINT_URL": self.emr_emulator_url,
        }
        rehearsal_sized = {
            "ROWS_PER_DAY": str(local.rows_per_day),
            "EMR_STEP_POLL_SECONDS": str(EMULATED_AWS_POLL_SECONDS),
            "EMR_TERMINATION_POLL_SECONDS": str(EMULATED_AWS_POLL_SECONDS),
            "EMR_STEP_TIMEOUT_SECONDS": str(EMULATED_STEP_TIMEOUT_SECONDS),
            "EMR_STEP_LOG_WAIT_SECONDS": str(EMULATED_STEP_LOG_WAIT_SECONDS),
            # As the Docker rehearsal: a failed try is retried in seconds, not minutes.
            "TASK_RETRY_DELAY_SECONDS": str(local.task_retry_delay_seconds),
        }
        overrides.update({k: v for k, v in rehearsal_sized.items() if k not in self.environ})
        return overrides

    def pipeline_settings(self) -> Settings:
        return _load_settings(frozenset({**self.environ, **self.pipeline_overrides()}.items()))

    # --- the components ------------------------------------------------------------------------

    def spark(self) -> SparkStandalone:
        return SparkStandalone(
            state_dir=self.state_dir / "spark",
            master_port=self.settings.spark_master_port,
            webui_port=self.settings.spark_master_webui_port,
            worker_cores=self.settings.spark_worker_cores,
            worker_memory=self.settings.spark_worker_memory,
            host=HOST,
        )

    def spark_connect(self) -> spark_connect.SparkConnectServer | None:
        """The Spark Connect server the local jobs run on, if config names one.

        It gets the jobs' settings without the class-data archive (its JVMs start once). Its
        driver keeps the JIT's optimising compiler (C2): it plans every query of every run, and
        C1 alone made warm runs slower. Under the quick start its executor gets C1 only: on a
        developer's small days C2's compiling took about half of the executor's CPU, on the same
        cores the runs need (docs/performance.md)."""
        settings = self.pipeline_settings()  # URL and master already point at this stack
        if settings.spark_connect_url is None:
            return None
        own = self.own_settings().spark_java_options
        server_settings = settings.model_copy(update={"spark_java_options": own})
        quick_start = self.spark_quick_start()
        return spark_connect.from_settings(
            server_settings,
            cores=self.settings.spark_worker_cores,
            executor_java_options=quick_start.jit_options(own) if quick_start else None,
        )

    def spark_quick_start(self) -> SparkQuickStart | None:
        """The local jobs' quick JVM start (archive kept with the virtualenv), unless turned off.

        Not for the aws rehearsal: its steps get EMR's JVM options, none from the stack."""
        if not self.settings.spark_quick_start or self.emulates_aws:
            return None
        return SparkQuickStart(archive_dir=self.venv_bin.parent / "spark-cds")

    def airflow(self) -> AirflowHost:
        settings = self.pipeline_settings()
        # Its own database for the aws rehearsal: the same DAG ids have other tasks there.
        home = "airflow" if settings.pipeline_env == "local" else f"airflow-{settings.pipeline_env}"
        return AirflowHost(
            home=self.state_dir / home,
            dags_folder=REPO_ROOT / "orchestration" / "dags",
            repo_root=REPO_ROOT,
            venv_bin=self.venv_bin,
            port=self.settings.airflow_api_port,
            host=HOST,
            task_log_port=self.settings.airflow_task_log_port,
            triggerer_log_port=self.settings.airflow_triggerer_log_port,
            extra_env={
                **self.pipeline_overrides(),
                **airflow_integration_env(settings),
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(self.settings.schedules),
            },
        )

    def localstack(self) -> LocalStack:
        python = find_localstack_python()
        if python is None:
            raise StackError(
                "LOCALSTACK_PYTHON is not set; it must name the python of LocalStack's own venv "
                "(Python >= 3.13). Run through nox (`nox -s up`), which builds that venv, or set "
                "LOCALSTACK_PYTHON=/path/to/venv/bin/python"
            )
        return LocalStack(
            python=python,
            port=self.settings.localstack_port,
            state_dir=self.state_dir / "localstack",
            host=HOST,
        )

    def emr_emulator_command(self) -> list[str]:
        """The EMR emulator, running steps on this stack's Spark master."""
        return [
            self.python, "-m", "host_stack.emr_emulator",
            "--host", HOST,
            "--port", str(self.settings.emr_emulator_port),
            "--spark-master", self.spark().master_url,
            "--work-dir", str(self.state_dir / "emr"),
        ]  # fmt: skip

    def emr_emulator_ready(self) -> tuple[bool, str]:
        import httpx

        from host_stack import probe
        from host_stack.emr_emulator.emulator import HEALTH_PATH

        try:
            response = probe.get(f"{self.emr_emulator_url}{HEALTH_PATH}", timeout=2)
        except httpx.HTTPError:
            return False, f"{self.emr_emulator_url} not answering yet"
        return response.status_code == 200, f"answering on {self.emr_emulator_url}"

    def connect_warmup_command(self) -> list[str]:
        """The warm-up of a new Spark Connect server: both jobs through it, under WARMUP_PREFIX of
        the data bucket, deleted afterwards."""
        bucket = self.pipeline_settings().data_bucket
        return [
            self.python, "-m", "host_stack.spark_warmup",
            "--work-dir", f"s3://{bucket}/{WARMUP_PREFIX}", "--clean",
        ]  # fmt: skip

    def repo_env(self) -> dict[str, str]:
        """The environment of a stack process that runs the repository's Python: the shell's,
        config pointed at this stack, and the repository on the path."""
        return {**self.environ, **self.pipeline_overrides(), "PYTHONPATH": str(REPO_ROOT)}

    def job_env(self) -> dict[str, str]:
        """repo_env() plus what a local job's spark-submit gets (its Spark Connect URL)."""
        return {**self.repo_env(), **self.pipeline_settings().spark_job_env()}

    # --- the plan ------------------------------------------------------------------------------

    def plan(self) -> Plan:
        """This stack's services: the emulated-aws plan with PIPELINE_ENV=aws, else the local."""
        return emulated_aws_plan(self) if self.emulates_aws else local_plan(self)

    # --- process records -----------------------------------------------------------------------

    def records(self) -> dict[str, ProcessRecord]:
        return self.table.records()

    def running(self) -> dict[str, ProcessRecord]:
        return self.table.running()

    def spawn(
        self, name: str, command: list[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> ProcessRecord:
        """Start `command` in its own process group, output to logs/<name>.log, and record it."""
        return self.table.spawn(name, command, env, cwd)

    def _check_same_pipeline_env(self, running: Mapping[str, object]) -> None:
        """One stack, one PIPELINE_ENV: refuse to add aws parts to a local stack or back."""
        mode_file = self.state_dir / PIPELINE_ENV_FILE
        wanted = self.pipeline_env
        if running:
            started = mode_file.read_text().strip() if mode_file.exists() else "local"
            if started != wanted:
                raise StackError(
                    f"the stack in {self.state_dir} runs with PIPELINE_ENV={started}; stop it "
                    f"first (nox -s down), then bring it up with PIPELINE_ENV={wanted}"
                )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        mode_file.write_text(wanted + "\n")

    # --- up ------------------------------------------------------------------------------------

    def up(self, timeout: float = 240) -> dict[str, str]:
        """Start every service of the plan that is not running; wait until all answer; return
        the login. On failure, whatever this call started is stopped again."""
        before = set(self.running())
        try:
            self.table.forget_dead()
            self._check_same_pipeline_env(self.running())
            self.airflow().prepare()  # the admin password and JWT secret its environment reads
            plan = self.plan()
            bring_up(plan, self.table, self.report, timeout)
        except BaseException:
            started_now = [name for name in self.running() if name not in before]
            if started_now:
                self.report(f"start-up failed; stopping {', '.join(started_now)}")
                self.down(names=started_now)
            raise
        return self.info()

    def info(self, password: str | None = None) -> dict[str, str]:
        """Where everything is, and the Airflow login: what `up` prints and `env` exports."""
        airflow = self.airflow()
        settings = self.pipeline_settings()
        return {
            "AIRFLOW_API_URL": airflow.api_url,
            "AIRFLOW_USERNAME": "admin",
            "AIRFLOW_PASSWORD": password or airflow.admin_password() or "",
            "SPARK_MASTER_URL": self.spark().master_url,
            "SPARK_MASTER_WEBUI_URL": self.spark().webui_url,
            "SPARK_CONNECT_URL": settings.spark_connect_url or "",
            "AWS_ENDPOINT_URL": settings.aws_endpoint_url or "",
            "EMR_ENDPOINT_URL": settings.emr_endpoint_url or "",
            **self.pipeline_overrides(),
        }

    def client_env(self) -> dict[str, str]:
        """Environment for clients of the stack (e2e tests): API login + pipeline overrides."""
        info = self.info()
        keys = ("AIRFLOW_API_URL", "AIRFLOW_USERNAME", "AIRFLOW_PASSWORD")
        return {**{k: info[k] for k in keys}, **self.pipeline_overrides()}

    # --- down ----------------------------------------------------------------------------------

    def stray_processes(self) -> list[psutil.Process]:
        """Live processes carrying this stack's marker (started by it, maybe in other groups)."""
        return self.table.marked()

    def stack_processes(self) -> list[psutil.Process]:
        """Every live process of this stack, with or without a record (host_stack/processes.py)."""
        return self.table.stack_processes(port for port, _, _ in self.settings.ports())

    def down(self, timeout: float = 20, names: Iterable[str] | None = None) -> list[str]:
        """Stop the stack's processes (all, or the recorded `names`): SIGTERM, then SIGKILL.
        Returns the names stopped; processes found without a record are counted as one entry."""
        records = self.records()
        selected = [records[n] for n in (names or records) if n in records]
        stopped = [r.name for r in selected if r.alive()]
        if names is None:
            procs = self.stack_processes()
            recorded = self.table.stack_processes(unrecorded=False)
            unrecorded = {p.pid for p in procs} - {p.pid for p in recorded}
            if unrecorded:
                stopped.append(f"{len(unrecorded)} processes without a record")
        else:
            procs = [p for r in selected if (p := r.process()) is not None]
            procs += [c for p in list(procs) for c in _children(p)]
        self.table.stop(procs, timeout)
        for record in selected:
            self.table.forget(record.name)
        if names is None:
            (self.state_dir / PIPELINE_ENV_FILE).unlink(missing_ok=True)
        return stopped

    # --- status --------------------------------------------------------------------------------

    def status(self) -> list[tuple[str, str, str]]:
        """(service, state, detail) for every daemon of the plan (and any other recorded)."""
        records = self.records()
        names = [s.name for s in self.plan().daemons()]
        names += [name for name in records if name not in names]
        rows = []
        for name in names:
            record = records.get(name)
            if record is None:
                rows.append((name, "stopped", ""))
            elif record.alive():
                rows.append((name, "running", f"pid {record.pid}, log {record.log}"))
            else:
                rows.append((name, "dead", f"pid {record.pid} exited; see {record.log}"))
        return rows

    def health(self) -> list[tuple[str, bool, str]]:
        """What each service with a readiness check says about itself right now."""
        return [(s.name, *s.ready()) for s in self.plan().daemons() if s.ready is not None]


def _children(proc: psutil.Process) -> list[psutil.Process]:
    import psutil

    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def airflow_integration_env(settings: Settings) -> dict[str, str]:
    """AIRFLOW_CONN_*, AIRFLOW__LOGGING__* and the paths, as orchestration/ defines them."""
    from orchestration.airflow_env import airflow_env

    return airflow_env(settings, repo_root=REPO_ROOT)
