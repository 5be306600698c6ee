"""The whole local stack in host mode (no Docker): LocalStack, a Spark standalone pair and Airflow.

With PIPELINE_ENV=aws the same stack rehearses the aws environment offline: Airflow runs the aws
DAGs (the EMR flow) against emulated AWS, S3 and IAM in LocalStack and EMR in the EMR emulator
(host_stack/emr_emulator/), whose steps run on the same Spark; `up` also creates the EMR roles
and uploads the job artifact, as an account's IaC and the deploy would.

`Stack.up()` starts what is not running yet, concurrently where it can, and waits until every
component answers; `down()` stops every process it started (each runs in its own process group,
recorded in <state_dir>/pids/); `status()` says what runs. The state dir (default .stack/,
gitignored) also holds the logs, AIRFLOW_HOME and LocalStack's files. The twin in Docker mode is
docker-compose.yml + docker-compose.local.yml.

Ports are the only settings of the stack itself (`StackSettings`, from the environment); the
pipeline's own settings come from config/ with the stack's ports applied, so the DAGs, the jobs
and the tests all see one LocalStack endpoint and one Spark master.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import psutil

from host_stack import spark_connect
from host_stack.airflow import COMPONENTS as AIRFLOW_COMPONENTS
from host_stack.airflow import AirflowHost
from host_stack.localstack import (
    LocalStack,
    create_buckets,
    find_localstack_python,
    port_in_use,
)
from host_stack.spark import SparkStandalone
from host_stack.spark_cds import SparkQuickStart
from host_stack.stack_settings import STACK_ENV_NAMES, StackError, StackSettings  # noqa: F401 (re-exported)
from host_stack.supervise import REAP_IDLE_SECONDS, supervised

if TYPE_CHECKING:
    from config.config import Settings

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
EMR_EMULATOR = "emr-emulator"
# The one-off warm-up run that writes the Spark jobs' class-data archive (host_stack/spark_cds.py).
SPARK_CDS = "spark-cds"
# The long-lived Spark application the local jobs run on (host_stack/spark_connect.py).
SPARK_CONNECT = "spark-connect"
# Once per Spark Connect server start: both jobs through it on a few rows (spark_warmup.py).
SPARK_CONNECT_WARMUP = "spark-connect-warmup"
# Where in the data bucket the warm-up writes; deleted when it ends.
WARMUP_PREFIX = "_stack_warmup"
# Records which PIPELINE_ENV the running stack was started with.
PIPELINE_ENV_FILE = "pipeline_env"
# Every process the stack starts (and all their children) carries this variable; `down` uses it
# to find children that left their process group (e.g. Spark executors, task processes).
MARKER_ENV = "HOST_STACK_STATE_DIR"
Report = Callable[[str], None]


# --- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRecord:
    """One started process (the leader of its own process group), as kept in pids/<name>.json."""

    name: str
    pid: int
    create_time: float
    log: str
    command: str

    def process(self) -> psutil.Process | None:
        """The live process, or None if it exited or the pid now belongs to another process."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.create_time) > 0.5:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None


def port_owner(port: int) -> str:
    """'pid N (name)' of the process listening on `port`, or '' when it cannot be told."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            listening = conn.status == psutil.CONN_LISTEN and conn.laddr
            if listening and conn.laddr.port == port and conn.pid:
                with contextlib.suppress(psutil.Error):
                    return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
                return f"pid {conn.pid}"
    return ""


def check_ports_free(ports: Iterable[tuple[int, str, str]]) -> None:
    """Fail naming every taken port, what needs it and the setting that moves it."""
    problems = []
    for port, what, env_name in ports:
        if port_in_use(port):
            owner = port_owner(port)
            by = f" by {owner}" if owner else ""
            problems.append(
                f"port {port} ({what}) is already in use{by}; stop that process or move the "
                f"{what} with {env_name}=<free port>"
            )
    if problems:
        raise StackError("cannot start the local stack:\n  " + "\n  ".join(problems))


def tail(path: Path | str, lines: int = 30) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text[-lines:])


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# --- the stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """The host-mode stack described by `settings`; any process may build one (up, down...)."""

    settings: StackSettings = field(default_factory=StackSettings.from_env)
    report: Report = print
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    # --- paths and components ------------------------------------------------------------------

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    @property
    def pid_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def venv_bin(self) -> Path:
        # Not resolved: the venv's bin/python is a symlink to the base interpreter.
        return Path(sys.executable).parent

    @property
    def pipeline_env(self) -> str:
        """local, or aws for the offline rehearsal of the aws environment (PIPELINE_ENV)."""
        from config.config import load_settings

        return load_settings(environ=self.environ).pipeline_env

    @property
    def emulates_aws(self) -> bool:
        return self.pipeline_env == "aws"

    @property
    def emr_emulator_url(self) -> str:
        return f"http://{HOST}:{self.settings.emr_emulator_port}"

    def pipeline_overrides(self) -> dict[str, str]:
        """Environment that points config's settings at this stack's ports (and, with
        PIPELINE_ENV=aws, every AWS service at its emulator)."""
        from config.config import load_settings

        settings = load_settings(environ=self.environ)
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
        from config.config import load_settings

        return load_settings(environ={**self.environ, **self.pipeline_overrides()})

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
        from config.config import load_settings

        settings = self.pipeline_settings()  # URL and master already point at this stack
        if settings.spark_connect_url is None:
            return None
        own = load_settings(environ=self.environ).spark_java_options
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
            extra_env={MARKER_ENV: str(self.state_dir)},
        )

    def emr_emulator_command(self) -> list[str]:
        """The EMR emulator, running steps on this stack's Spark master."""
        return [
            str(self.venv_bin / "python"), "-m", "host_stack.emr_emulator",
            "--host", HOST,
            "--port", str(self.settings.emr_emulator_port),
            "--spark-master", self.spark().master_url,
            "--work-dir", str(self.state_dir / "emr"),
        ]  # fmt: skip

    def emr_emulator_ready(self) -> tuple[bool, str]:
        import httpx

        from host_stack.emr_emulator.emulator import HEALTH_PATH

        try:
            response = httpx.get(f"{self.emr_emulator_url}{HEALTH_PATH}", timeout=2)
        except httpx.HTTPError:
            return False, f"{self.emr_emulator_url} not answering yet"
        return response.status_code == 200, f"answering on {self.emr_emulator_url}"

    def prepare_emulated_account(self, settings: Settings) -> str:
        """What the aws account holds before the DAGs run, here in LocalStack."""
        from host_stack.emulated_account import prepare_account

        endpoint = f"http://{HOST}:{self.settings.localstack_port}"
        return prepare_account(settings, endpoint, self.state_dir / "artifact")

    def _check_same_pipeline_env(self, running: Mapping[str, ProcessRecord]) -> None:
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

    # --- pid records ---------------------------------------------------------------------------

    def records(self) -> dict[str, ProcessRecord]:
        records = {}
        for path in sorted(self.pid_dir.glob("*.json")) if self.pid_dir.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, TypeError):
                records[path.stem] = ProcessRecord(**json.loads(path.read_text()))
        return records

    def running(self) -> dict[str, ProcessRecord]:
        return {name: rec for name, rec in self.records().items() if rec.alive()}

    def _record(self, name: str, pid: int, log: Path, command: list[str]) -> ProcessRecord:
        record = ProcessRecord(
            name=name,
            pid=pid,
            create_time=psutil.Process(pid).create_time(),
            log=str(log),
            command=shlex.join(command),
        )
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        (self.pid_dir / f"{name}.json").write_text(json.dumps(asdict(record)) + "\n")
        return record

    def spawn(
        self, name: str, command: list[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> ProcessRecord:
        """Start `command` in its own process group, output to logs/<name>.log, and record it."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== {stamp} {shlex.join(command)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                command,
                env={**env, MARKER_ENV: str(self.state_dir)},
                cwd=cwd or REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._children[name] = process
        return self._record(name, process.pid, log_path, command)

    def _check_alive(self, names: Iterable[str]) -> None:
        """Fail fast, with the log's tail, when a process we wait for has exited."""
        records = self.records()
        for name in names:
            record = records.get(name)
            if record is not None and not record.alive():
                child = self._children.get(name)
                code = child.poll() if child is not None else None
                raise StackError(
                    f"{name} exited during start-up (exit code {code}); last lines of "
                    f"{record.log}:\n{tail(record.log)}"
                )

    # --- up ------------------------------------------------------------------------------------

    def up(self, timeout: float = 240) -> dict[str, str]:
        """Start every component that is not running; wait until all answer; return the login.

        On failure, whatever this call started is stopped again (no half-started stack).
        """
        before = set(self.running())
        try:
            return self._up(timeout)
        except BaseException:
            started_now = [name for name in self.running() if name not in before]
            if started_now:
                self.report(f"start-up failed; stopping {', '.join(started_now)}")
                self.down(names=started_now)
            raise

    # One readable loop over every component's start-up beats splitting it across helpers.
    def _up(self, timeout: float) -> dict[str, str]:  # noqa: PLR0912, PLR0915
        started = time.monotonic()
        running = self.running()
        self._forget_dead(running)
        self._check_same_pipeline_env(running)
        emulates_aws = self.emulates_aws
        spark = self.spark()
        airflow = self.airflow()
        want_localstack = "localstack" not in running
        want_master = "spark-master" not in running
        want_worker = "spark-worker" not in running
        connect = self.spark_connect()
        want_connect = connect is not None and SPARK_CONNECT not in running
        want_airflow = [c for c in AIRFLOW_COMPONENTS if f"airflow-{c}" not in running]
        want_emulator = emulates_aws and EMR_EMULATOR not in running

        needed = {
            "LOCALSTACK_PORT": want_localstack,
            "SPARK_MASTER_PORT": want_master,
            "SPARK_MASTER_WEBUI_PORT": want_master,
            "SPARK_CONNECT_PORT": want_connect,
            "AIRFLOW_API_PORT": "api-server" in want_airflow,
            "EMR_EMULATOR_PORT": want_emulator,
        }
        check_ports_free(p for p in self.settings.ports() if needed[p[2]])
        if running:
            self.report(f"already running: {', '.join(sorted(running))}")

        def elapsed() -> str:
            return f"{time.monotonic() - started:.0f}s"

        # LocalStack's start() blocks until healthy: run it beside the other start-ups.
        localstack_error: list[BaseException] = []
        localstack_thread = None
        if want_localstack:
            localstack = self.localstack()
            self.report(f"starting LocalStack on port {self.settings.localstack_port}")

            def start_localstack() -> None:
                try:
                    localstack.start(timeout=timeout)
                    assert localstack.pid is not None
                    command = [str(localstack.python), "-m", "localstack.runtime.main"]
                    self._record("localstack", localstack.pid, localstack.log_path, command)
                except BaseException as exc:  # re-raised by the waiting loop below
                    localstack_error.append(exc)

            localstack_thread = threading.Thread(target=start_localstack, daemon=True)
            localstack_thread.start()

        spark.prepare()
        python = str(self.venv_bin / "python")
        spark_env = spark.environment(self.environ, python=python)
        # Once per virtualenv and JDK, beside the other start-ups: the jobs' class-data archive.
        quick_start = self.spark_quick_start()
        warmup_dir = self.state_dir / "spark" / "cds-warmup"
        want_archive = (
            quick_start is not None
            and not quick_start.archive.exists()
            and SPARK_CDS not in running
        )
        if quick_start is not None and want_archive:
            self.report(
                "building the Spark jobs' class-data archive (once per virtualenv, about a minute)"
            )
            quick_start.prepare(warmup_dir)
            from config.config import load_settings

            base = load_settings(environ=self.environ).spark_java_options
            paths = [str(REPO_ROOT), spark_env.get("PYTHONPATH")]
            pythonpath = os.pathsep.join(filter(None, paths))
            self.spawn(
                SPARK_CDS,
                quick_start.build_command(base, warmup_dir),
                {**spark_env, "PYTHONPATH": pythonpath},
            )
        if want_master:
            self.report(f"starting Spark master on {spark.master_url}")
            self.spawn("spark-master", spark.master_command(), spark_env)

        if want_emulator:
            self.report(f"starting the EMR emulator on {self.emr_emulator_url}")
            self.spawn(EMR_EMULATOR, self.emr_emulator_command(), self.repo_env())

        password = airflow.prepare()
        airflow_env = airflow.environment(self.environ)
        migrating = False
        if want_airflow and not airflow.migrated_stamp().exists():
            # ~8 s on an idle laptop; the Spark master and LocalStack start meanwhile.
            self.report("migrating Airflow's database (first start only)")
            self.spawn("airflow-migrate", airflow.migrate_command(), airflow_env)
            migrating = True
        elif want_airflow:
            self._spawn_airflow(airflow, want_airflow, airflow_env)

        deadline = started + timeout
        worker_spawned = not want_worker
        connect_spawned = not want_connect
        waiting = {"spark-master", "spark-worker", "airflow", "localstack"}
        if want_archive:
            waiting.add(SPARK_CDS)
        watched = ["spark-master", "spark-worker", *(f"airflow-{c}" for c in AIRFLOW_COMPONENTS)]
        if connect is not None:
            waiting.add(SPARK_CONNECT)
            watched.append(SPARK_CONNECT)
        # A server started now gets its JIT warmed before `up` returns: without it the first DAG
        # runs after `up` are much slower than later ones (docs/performance.md).
        warmup_spawned = not want_connect
        if want_connect:
            waiting.add(SPARK_CONNECT_WARMUP)
        if emulates_aws:
            waiting.add(EMR_EMULATOR)
            watched.append(EMR_EMULATOR)
        detail: dict[str, str] = {}
        while waiting:
            self._check_alive(watched)
            if localstack_error:
                raise StackError(f"LocalStack did not start: {localstack_error[0]}")
            if migrating and self._children["airflow-migrate"].poll() is not None:
                migrating = False
                code = self._children["airflow-migrate"].returncode
                log = self.log_dir / "airflow-migrate.log"
                (self.pid_dir / "airflow-migrate.json").unlink(missing_ok=True)
                if code != 0:
                    raise StackError(
                        f"`airflow db migrate` failed (exit {code}) with AIRFLOW_HOME="
                        f"{airflow.home}; last lines of {log}:\n{tail(log)}"
                    )
                airflow.migrated_stamp().touch()
                self.report(f"  Airflow database migrated ({elapsed()})")
                self._spawn_airflow(airflow, want_airflow, airflow_env)
            if "spark-master" in waiting:
                ok, detail["spark-master"] = spark.master_ready()
                if ok:
                    waiting.discard("spark-master")
                    self.report(f"  Spark master ready ({elapsed()})")
            # The worker retries registration only every 5-15 s: start it once the master's RPC
            # port accepts connections, while the master finishes its start-up.
            if not worker_spawned and ("spark-master" not in waiting or spark.master_port_open()):
                self.report(
                    f"starting Spark worker ({self.settings.spark_worker_cores} cores, "
                    f"{self.settings.spark_worker_memory})"
                )
                # Supervised: a lost worker comes back and running jobs get executors again.
                # It also stops the Python daemons the Connect server's sessions leave behind.
                worker = supervised(
                    "spark-worker", spark.worker_command(), python, REAP_IDLE_SECONDS
                )
                self.spawn("spark-worker", worker, spark_env)
                worker_spawned = True
            if "spark-worker" in waiting and worker_spawned:
                ok, detail["spark-worker"] = spark.worker_ready()
                if ok:
                    waiting.discard("spark-worker")
                    self.report(f"  Spark worker registered ({elapsed()})")
            if not connect_spawned and "spark-master" not in waiting:
                assert connect is not None
                self.report(f"starting the Spark Connect server on {connect.url}")
                self.spawn(SPARK_CONNECT, connect.supervised_command(python), spark_env)
                connect_spawned = True
            if SPARK_CONNECT in waiting and connect_spawned:
                assert connect is not None
                ok, detail[SPARK_CONNECT] = connect.ready()
                if ok:
                    waiting.discard(SPARK_CONNECT)
                    self.report(f"  Spark Connect server ready ({elapsed()})")
            if "airflow" in waiting and not migrating:
                ok, detail["airflow"] = airflow.ready()
                if ok:
                    waiting.discard("airflow")
                    self.report(f"  Airflow healthy ({elapsed()})")
            if "localstack" in waiting and not (localstack_thread and localstack_thread.is_alive()):
                if localstack_error:
                    raise StackError(f"LocalStack did not start: {localstack_error[0]}")
                settings = self.pipeline_settings()
                buckets = [settings.data_bucket, settings.logs_bucket]
                create_buckets(
                    f"http://{HOST}:{self.settings.localstack_port}",
                    buckets,
                    region=settings.aws_region,
                )
                waiting.discard("localstack")
                self.report(f"  LocalStack ready, buckets {', '.join(buckets)} exist ({elapsed()})")
                if emulates_aws:
                    prepared = self.prepare_emulated_account(settings)
                    self.report(f"  emulated account: {prepared} ({elapsed()})")
            code = self._one_off_exit(SPARK_CDS, waiting)
            if code is not None:
                assert quick_start is not None
                if quick_start.finish(code, warmup_dir):
                    self.report(f"  Spark jobs' class-data archive built ({elapsed()})")
                else:
                    # Not fatal: the jobs only start slower, as with STACK_SPARK_QUICK_START=off.
                    log = self.log_dir / f"{SPARK_CDS}.log"
                    self.report(
                        f"  warning: the Spark jobs' class-data archive was not built (exit "
                        f"{code}); jobs start without it. Last lines of {log}:\n{tail(log)}"
                    )
            if not warmup_spawned and waiting.isdisjoint(
                {SPARK_CONNECT, "spark-worker", "localstack"}
            ):
                assert connect is not None
                self.report("warming the Spark Connect server up: both jobs on a few rows")
                self.spawn(SPARK_CONNECT_WARMUP, self.connect_warmup_command(), self.job_env())
                warmup_spawned = True
            code = self._one_off_exit(SPARK_CONNECT_WARMUP, waiting) if warmup_spawned else None
            if code == 0:
                self.report(f"  Spark Connect server warmed up ({elapsed()})")
            elif code is not None:
                # Not fatal: the first run after `up` is only slower.
                log = self.log_dir / f"{SPARK_CONNECT_WARMUP}.log"
                self.report(
                    f"  warning: the Spark Connect server's warm-up failed (exit {code}); the "
                    f"first runs will be slower. Last lines of {log}:\n{tail(log)}"
                )
            if EMR_EMULATOR in waiting:
                ok, detail[EMR_EMULATOR] = self.emr_emulator_ready()
                if ok:
                    waiting.discard(EMR_EMULATOR)
                    self.report(f"  EMR emulator ready ({elapsed()})")
            if waiting and time.monotonic() > deadline:
                details = "; ".join(f"{k}: {detail.get(k, 'starting')}" for k in sorted(waiting))
                raise StackError(
                    f"the local stack was not ready after {timeout:.0f}s ({details}); "
                    f"logs are in {self.log_dir}"
                )
            if waiting:
                time.sleep(0.5)
        info = self.info(password)
        what = "local stack (PIPELINE_ENV=aws, emulated AWS)" if emulates_aws else "local stack"
        self.report(f"{what} up in {elapsed()}")
        return info

    def _one_off_exit(self, name: str, waiting: set[str]) -> int | None:
        """A one-off child of `up` that `up` waits for: its exit code once it has ended (then no
        longer waited for, nor recorded as running), else None."""
        if name not in waiting:
            return None
        code = self._children[name].poll()
        if code is not None:
            waiting.discard(name)
            (self.pid_dir / f"{name}.json").unlink(missing_ok=True)
        return code

    def connect_warmup_command(self) -> list[str]:
        """The warm-up of a new Spark Connect server: both jobs through it, under WARMUP_PREFIX of
        the data bucket, deleted afterwards."""
        bucket = self.pipeline_settings().data_bucket
        return [
            str(self.venv_bin / "python"), "-m", "host_stack.spark_warmup",
            "--work-dir", f"s3://{bucket}/{WARMUP_PREFIX}", "--clean",
        ]  # fmt: skip

    def repo_env(self) -> dict[str, str]:
        """The environment of a stack process that runs the repository's Python: the shell's,
        config pointed at this stack, and the repository on the path."""
        return {**self.environ, **self.pipeline_overrides(), "PYTHONPATH": str(REPO_ROOT)}

    def job_env(self) -> dict[str, str]:
        """repo_env() plus what a local job's spark-submit gets (its Spark Connect URL)."""
        return {**self.repo_env(), **self.pipeline_settings().spark_job_env()}

    def _spawn_airflow(
        self, airflow: AirflowHost, components: list[str], env: Mapping[str, str]
    ) -> None:
        self.report(f"starting Airflow: {', '.join(components)}")
        for component in components:
            self.spawn(f"airflow-{component}", airflow.command(component), env)

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

    def _forget_dead(self, running: Mapping[str, ProcessRecord]) -> None:
        for name in self.records():
            if name not in running:
                (self.pid_dir / f"{name}.json").unlink(missing_ok=True)

    # --- down ----------------------------------------------------------------------------------

    def stray_processes(self) -> list[psutil.Process]:
        """Live processes carrying this stack's marker (started by it, maybe in other groups)."""
        mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
        found = []
        for proc in psutil.process_iter():
            if proc.pid in mine:
                continue
            with contextlib.suppress(psutil.Error):
                if proc.environ().get(MARKER_ENV) == str(self.state_dir) and (
                    proc.status() != psutil.STATUS_ZOMBIE
                ):
                    found.append(proc)
        return found

    def down(self, timeout: float = 20, names: Iterable[str] | None = None) -> list[str]:
        """Stop the stack's processes (all, or `names`): SIGTERM per group, then SIGKILL."""
        records = self.records()
        selected = [records[n] for n in (names or records) if n in records]
        stopped = []
        for record in selected:
            if record.alive():
                _signal_group(record.pid, signal.SIGTERM)
                stopped.append(record.name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self._group_alive(r.pid) for r in selected):
            self._reap()
            time.sleep(0.2)
        for record in selected:
            _signal_group(record.pid, signal.SIGKILL)
        if names is None:
            # Children that left their group still carry the marker.
            strays = self.stray_processes()
            for proc in strays:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(strays, timeout=5)
        self._reap()
        for record in selected:
            (self.pid_dir / f"{record.name}.json").unlink(missing_ok=True)
        if names is None:
            (self.state_dir / PIPELINE_ENV_FILE).unlink(missing_ok=True)
        return stopped

    def _reap(self) -> None:
        for name, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[name]

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                    return True
        return False

    # --- status --------------------------------------------------------------------------------

    def status(self) -> list[tuple[str, str, str]]:
        """(component, state, detail) for every component the stack knows."""
        records = self.records()
        rows = []
        names = ["localstack", "spark-master", "spark-worker"]
        if SPARK_CONNECT in records or self.spark_connect() is not None:
            names.append(SPARK_CONNECT)
        names += [f"airflow-{c}" for c in AIRFLOW_COMPONENTS]
        if EMR_EMULATOR in records or self.emulates_aws:
            names.append(EMR_EMULATOR)
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
        """What each service says about itself right now."""
        spark = self.spark()
        airflow = self.airflow()
        checks = [("spark master", *spark.master_ready()), ("spark worker", *spark.worker_ready())]
        connect = self.spark_connect()
        if connect is not None:
            checks.append(("spark connect", *connect.ready()))
        checks.append(("airflow", *airflow.ready()))
        if self.emulates_aws:
            checks.append(("emr emulator", *self.emr_emulator_ready()))
        try:
            with socket.create_connection((HOST, self.settings.localstack_port), timeout=1):
                checks.append(("localstack", True, f"listening on {self.settings.localstack_port}"))
        except OSError:
            checks.append(("localstack", False, f"nothing on {self.settings.localstack_port}"))
        return checks


def airflow_integration_env(settings: Settings) -> dict[str, str]:
    """AIRFLOW_CONN_*, AIRFLOW__LOGGING__* and the paths, as orchestration/ defines them."""
    from orchestration.airflow_env import airflow_env

    return airflow_env(settings, repo_root=REPO_ROOT)


# --- the one-command pipeline run ---------------------------------------------------------------

PIPELINE_DAGS = ("data_generation", "data_processing")


def run_pipeline(
    stack: Stack,
    info: Mapping[str, str],
    day: str,
    *,
    timeout: float = 900,
    dags: Iterable[str] = PIPELINE_DAGS,
    stays_up: bool = True,
) -> bool:
    """Generation then processing for `day` (or only `dags`) through Airflow's REST API; print a
    summary and what to do next."""
    from host_stack.airflow import AirflowApi

    report = stack.report
    dags = [dag_id for dag_id in PIPELINE_DAGS if dag_id in set(dags)]
    api = AirflowApi(info["AIRFLOW_API_URL"], info["AIRFLOW_USERNAME"], info["AIRFLOW_PASSWORD"])
    started = time.monotonic()
    try:
        for dag_id in dags:
            api.wait_for_dag(dag_id)
            api.unpause(dag_id)
        for dag_id in dags:
            run_id = api.run_for_date(dag_id, day)
            report(f"{dag_id}: run {run_id} for {day}")
            run = api.wait_for_run(
                dag_id, run_id, timeout=timeout, report=report, fail_on_retry=True
            )
            if run["state"] != "success":
                report(f"{dag_id} run {run_id} ended {run['state']}:")
                report(api.failure_report(dag_id, run_id))
                report(next_steps(stack, info, day, stays_up))
                return False
    finally:
        api.close()
    what = "both DAGs" if len(dags) == len(PIPELINE_DAGS) else ", ".join(dags)
    report(f"\n{what} succeeded for {day} in {time.monotonic() - started:.0f}s")
    if "data_processing" in dags:
        report(pipeline_summary(stack.pipeline_settings(), day))
    report(next_steps(stack, info, day, stays_up))
    return True


def pipeline_summary(settings: Settings, day: str) -> str:
    """Counts from the day's quality report."""
    import boto3

    s3 = boto3.client("s3", **settings.boto3_client_kwargs())
    key = f"{settings.processed_prefix}/reports/dt={day}/quality_report.json"
    body = s3.get_object(Bucket=settings.data_bucket, Key=key)["Body"].read()
    quality = json.loads(body)
    reasons = {k: v for k, v in quality.get("quarantine_by_reason", {}).items() if v}
    tables = ", ".join(f"{name} {rows}" for name, rows in quality.get("tables", {}).items())
    return "\n".join(
        [
            f"quality report s3://{settings.data_bucket}/{key}:",
            f"  lines read {quality['lines_read']} = valid {quality['valid']} + quarantined "
            f"{quality['quarantined']} + duplicates dropped {quality['duplicates_dropped']}"
            f" (reconciled: {quality['reconciled']})",
            f"  quarantined by reason: {reasons or 'none'}",
            f"  table rows: {tables}",
        ]
    )


def next_steps(stack: Stack, info: Mapping[str, str], day: str, stays_up: bool = True) -> str:
    """What a user does after a run: where to look, how to rerun, how to stop."""
    settings = stack.pipeline_settings()
    login = f"{info['AIRFLOW_USERNAME']} / {info['AIRFLOW_PASSWORD']}"
    lines = ["", "next:"]
    if stays_up:
        lines.append(f"  Airflow UI      {info['AIRFLOW_API_URL']}   login {login}")
    lines += [
        f"  raw data        {settings.raw_uri}/orders/dt={day}/",
        f"  processed data  {settings.processed_uri}/<table>/dt={day}/",
        f"  task logs       {settings.logs_uri}/  (also in the UI, per task)",
        f"  stack logs      {stack.log_dir}/<service>.log",
    ]
    if stays_up:
        lines.append(f"  list the data   nox -s ls -- {settings.processed_prefix}/")
    lines.append(f"  rerun one DAG   nox -s pipeline -- --dag data_processing --date {day}")
    lines.append(
        "  stop the stack  nox -s down"
        if stays_up
        else "  the stack is stopped (--down); its S3 data is gone with LocalStack"
    )
    return "\n".join(lines)


def list_objects(settings: Settings, where: str = "") -> list[str]:
    """`size  s3://bucket/key` for every object under `where`: s3://bucket/prefix, or a prefix
    of the data bucket (raw/, processed/orders/...)."""
    import boto3

    if where.startswith("s3://"):
        bucket, _, prefix = where.removeprefix("s3://").partition("/")
    else:
        bucket, prefix = settings.data_bucket, where.lstrip("/")
    s3 = boto3.client("s3", **settings.boto3_client_kwargs())
    lines = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            lines.append(f"{item['Size']:>12}  s3://{bucket}/{item['Key']}")
    return lines
