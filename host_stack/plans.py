"""Host mode's two stacks as plans: `local_plan` and `emulated_aws_plan` (PIPELINE_ENV=aws).

Each is built from a `Stack` whose settings are already resolved, and only describes: the
services, their commands and environments, what each waits for and how it is found ready.
host_stack/runner.py starts them. The local plan, in start order:

    localstack ─healthy─> buckets ─completed─┐
    spark-master ─started─> spark-worker ────┼─healthy─> spark-connect-warmup (one-shot, after
    spark-master ─healthy─> spark-connect ───┘                 a new spark-connect only)
    spark-cds (one-shot, once per virtualenv)
    airflow-migrate (one-shot, once per Airflow version) ─completed─> airflow-api-server,
        airflow-scheduler, airflow-dag-processor, airflow-triggerer
    airflow-log-servers (the task and triggerer log servers, one process)

The emulated-aws plan has no Spark Connect server and no class-data archive (EMR steps get
EMR's JVM options), and adds the EMR emulator and the emulated account (roles, job artifact)
after the buckets.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from host_stack.airflow import COMPONENTS as AIRFLOW_COMPONENTS
from host_stack.localstack import create_buckets, find_localstack_python
from host_stack.plan import COMPLETED, HEALTHY, ONE_SHOT, STARTED, Plan, Service
from host_stack.processes import tail
from host_stack.stack_settings import REPO_ROOT, StackError
from host_stack.supervise import REAP_IDLE_SECONDS, supervised

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from config.config import Settings
    from host_stack.airflow import AirflowHost
    from host_stack.localstack import LocalStack
    from host_stack.spark import SparkStandalone
    from host_stack.spark_cds import SparkQuickStart
    from host_stack.spark_connect import SparkConnectServer
    from host_stack.stack_settings import StackSettings

# The services' names: their records (pids/<name>.json) and logs (logs/<name>.log) bear them.
EMR_EMULATOR = "emr-emulator"
# The one-off warm-up run that writes the Spark jobs' class-data archive (host_stack/spark_cds.py).
SPARK_CDS = "spark-cds"
# The long-lived Spark application the local jobs run on (host_stack/spark_connect.py).
SPARK_CONNECT = "spark-connect"
# Once per Spark Connect server start: both jobs through it on a few rows (spark_warmup.py).
SPARK_CONNECT_WARMUP = "spark-connect-warmup"
BUCKETS = "buckets"
EMULATED_ACCOUNT = "emulated-account"
# One process serves both the task and the triggerer log server (host_stack/airflow_logs.py).
LOG_SERVERS = "airflow-log-servers"


class Stack(Protocol):
    """What a plan is built from: the resolved settings and the components (host_stack.Stack)."""

    settings: StackSettings
    environ: Mapping[str, str]
    state_dir: Path
    log_dir: Path
    python: str
    localstack_url: str
    emr_emulator_url: str

    def own_settings(self) -> Settings: ...
    def pipeline_settings(self) -> Settings: ...
    def localstack(self) -> LocalStack: ...
    def spark(self) -> SparkStandalone: ...
    def spark_quick_start(self) -> SparkQuickStart | None: ...
    def spark_connect(self) -> SparkConnectServer | None: ...
    def connect_warmup_command(self) -> list[str]: ...
    def airflow(self) -> AirflowHost: ...
    def emr_emulator_command(self) -> list[str]: ...
    def emr_emulator_ready(self) -> tuple[bool, str]: ...
    def repo_env(self) -> dict[str, str]: ...
    def job_env(self) -> dict[str, str]: ...


def local_plan(stack: Stack) -> Plan:
    services = [*_cds(stack), *_localstack(stack), *_spark(stack), *_connect(stack)]
    return Plan("local stack", (*services, *_airflow(stack)))


def emulated_aws_plan(stack: Stack) -> Plan:
    services = [*_localstack(stack), *_spark(stack), _emr_emulator(stack), _account(stack)]
    return Plan("local stack (PIPELINE_ENV=aws, emulated AWS)", (*services, *_airflow(stack)))


# --- the services ----------------------------------------------------------------------------


def _localstack(stack: Stack) -> list[Service]:
    localstack = stack.localstack() if find_localstack_python() else None

    def prepare() -> None:
        if localstack is None:
            stack.localstack()  # raises, saying how to set LOCALSTACK_PYTHON
        else:
            localstack.prepare()

    def buckets() -> str:
        settings = stack.pipeline_settings()
        names = [settings.data_bucket, settings.logs_bucket]
        create_buckets(stack.localstack_url, names, region=settings.aws_region)
        return f"buckets {', '.join(names)} exist"

    return [
        Service(
            "localstack",
            f"LocalStack on port {stack.settings.localstack_port}",
            command=tuple(localstack.command()) if localstack else (),
            env=localstack.environment() if localstack else {},
            cwd=localstack.state_dir if localstack else None,
            prepare=prepare,
            ready=localstack.ready if localstack else _never("LOCALSTACK_PYTHON is not set"),
            ports=(stack.settings.port("LOCALSTACK_PORT"),),
        ),
        Service(
            BUCKETS,
            "creating the buckets in LocalStack",
            ONE_SHOT,
            action=buckets,
            depends_on={"localstack": HEALTHY},
        ),
    ]


def _spark(stack: Stack) -> list[Service]:
    spark = stack.spark()
    env = spark.environment(stack.environ, python=stack.python)
    settings = stack.settings
    # Supervised: a lost worker comes back and running jobs get executors again. The supervisor
    # also stops the Python daemons the Connect server's sessions leave behind.
    worker = supervised("spark-worker", spark.worker_command(), stack.python, REAP_IDLE_SECONDS)
    return [
        Service(
            "spark-master",
            f"Spark master on {spark.master_url}",
            command=tuple(spark.master_command()),
            env=env,
            prepare=spark.prepare,
            ready=spark.master_ready,
            # The worker retries registration only every 5-15 s: it starts once the master's
            # RPC port accepts connections, while the master finishes its start-up.
            accepting=lambda: (spark.master_port_open(), "RPC port open"),
            ports=(settings.port("SPARK_MASTER_PORT"), settings.port("SPARK_MASTER_WEBUI_PORT")),
        ),
        Service(
            "spark-worker",
            f"Spark worker ({settings.spark_worker_cores} cores, {settings.spark_worker_memory})",
            command=tuple(worker),
            env=env,
            depends_on={"spark-master": STARTED},
            ready=spark.worker_ready,
        ),
    ]


def _cds(stack: Stack) -> list[Service]:
    """Once per virtualenv and JDK, beside the other start-ups: the jobs' class-data archive."""
    quick_start = stack.spark_quick_start()
    if quick_start is None:
        return []
    work_dir = stack.state_dir / "spark" / "cds-warmup"
    spark_env = stack.spark().environment(stack.environ, python=stack.python)
    pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), spark_env.get("PYTHONPATH")]))
    base = stack.own_settings().spark_java_options

    def finish(code: int) -> str:
        if quick_start.finish(code, work_dir):
            return "Spark jobs' class-data archive built"
        # Not fatal: the jobs only start slower, as with STACK_SPARK_QUICK_START=off.
        log = stack.log_dir / f"{SPARK_CDS}.log"
        return (
            f"warning: the Spark jobs' class-data archive was not built (exit {code}); jobs "
            f"start without it. Last lines of {log}:\n{tail(log)}"
        )

    return [
        Service(
            SPARK_CDS,
            "building the Spark jobs' class-data archive (once per virtualenv, about a minute)",
            ONE_SHOT,
            command=tuple(quick_start.build_command(base, work_dir)),
            env={**spark_env, "PYTHONPATH": pythonpath},
            prepare=lambda: quick_start.prepare(work_dir),
            done=quick_start.archive.exists,
            finish=finish,
        )
    ]


def _connect(stack: Stack) -> list[Service]:
    """The Spark Connect server and, when this `up` starts one, its warm-up: without it the first
    DAG runs after `up` are much slower than later ones (docs/performance.md)."""
    connect = stack.spark_connect()
    if connect is None:
        return []
    env = stack.spark().environment(stack.environ, python=stack.python)
    log = stack.log_dir / f"{SPARK_CONNECT_WARMUP}.log"

    def finish(code: int) -> str:
        if code == 0:
            return "Spark Connect server warmed up"
        # Not fatal: the first run after `up` is only slower.
        return (
            f"warning: the Spark Connect server's warm-up failed (exit {code}); the first runs "
            f"will be slower. Last lines of {log}:\n{tail(log)}"
        )

    return [
        Service(
            SPARK_CONNECT,
            f"the Spark Connect server on {connect.url}",
            command=tuple(connect.supervised_command(stack.python)),
            env=env,
            depends_on={"spark-master": HEALTHY},
            ready=connect.ready,
            ports=(stack.settings.port("SPARK_CONNECT_PORT"),),
        ),
        Service(
            SPARK_CONNECT_WARMUP,
            "the Spark Connect server's warm-up: both jobs on a few rows",
            ONE_SHOT,
            command=tuple(stack.connect_warmup_command()),
            env=stack.job_env(),
            depends_on={SPARK_CONNECT: HEALTHY, "spark-worker": HEALTHY, BUCKETS: COMPLETED},
            after_start_of=SPARK_CONNECT,
            finish=finish,
        ),
    ]


def _airflow(stack: Stack) -> list[Service]:
    airflow = stack.airflow()
    env = airflow.environment(stack.environ)
    settings = stack.settings

    def migrated(code: int) -> str:
        if code != 0:
            log = stack.log_dir / "airflow-migrate.log"
            raise StackError(
                f"`airflow db migrate` failed (exit {code}) with AIRFLOW_HOME={airflow.home}; "
                f"last lines of {log}:\n{tail(log)}"
            )
        airflow.migrated_stamp().touch()
        return "Airflow database migrated"

    migrate = Service(
        "airflow-migrate",
        "migrating Airflow's database (first start only)",
        ONE_SHOT,
        command=tuple(airflow.migrate_command()),
        env=env,
        done=airflow.migrated_stamp().exists,
        finish=migrated,
    )
    components = [
        Service(
            f"airflow-{component}",
            f"Airflow {component}",
            command=tuple(airflow.command(component)),
            env=env,
            depends_on={"airflow-migrate": COMPLETED},
            # The health document covers every component; the API server answers it.
            ready=airflow.ready if component == "api-server" else None,
            ports=(settings.port("AIRFLOW_API_PORT"),) if component == "api-server" else (),
        )
        for component in AIRFLOW_COMPONENTS
    ]
    log_ports = tuple(settings.port(f"AIRFLOW_{k}_LOG_PORT") for k in ("TASK", "TRIGGERER"))
    task_port, triggerer_port = (port.port for port in log_ports)
    log_servers = Service(
        LOG_SERVERS,
        f"Airflow's task and triggerer log servers on {airflow.host}:{task_port}, {triggerer_port}",
        command=tuple(airflow.log_server_command([task_port, triggerer_port])),
        env=env,
        ready=_accepting(airflow.host, task_port, triggerer_port),
        ports=log_ports,
    )
    return [migrate, *components, log_servers]


def _emr_emulator(stack: Stack) -> Service:
    return Service(
        EMR_EMULATOR,
        f"the EMR emulator on {stack.emr_emulator_url}",
        command=tuple(stack.emr_emulator_command()),
        env=stack.repo_env(),
        ready=stack.emr_emulator_ready,
        ports=(stack.settings.port("EMR_EMULATOR_PORT"),),
    )


def _account(stack: Stack) -> Service:
    """What the aws account holds before the DAGs run (roles, job artifact), in LocalStack."""

    def prepare_account() -> str:
        from host_stack.emulated_account import prepare_account

        settings = stack.pipeline_settings()
        artifact_dir = stack.state_dir / "artifact"
        return "emulated account: " + prepare_account(settings, stack.localstack_url, artifact_dir)

    return Service(
        EMULATED_ACCOUNT,
        "preparing the emulated account",
        ONE_SHOT,
        action=prepare_account,
        depends_on={BUCKETS: COMPLETED},
    )


# --- probes ----------------------------------------------------------------------------------


def _accepting(host: str, *ports: int) -> Callable[[], tuple[bool, str]]:
    """Ready once something accepts connections on every one of `ports`."""

    def check() -> tuple[bool, str]:
        for port in ports:
            try:
                with socket.create_connection((host, port), timeout=1):
                    pass
            except OSError:
                return False, f"nothing on {host}:{port} yet"
        return True, f"listening on {host}:{', '.join(map(str, ports))}"

    return check


def _never(why: str) -> Callable[[], tuple[bool, str]]:
    return lambda: (False, why)
