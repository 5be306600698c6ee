"""The host-mode stack's own settings (ports, sizes, state dir) and the port check.

Standard library only: `host_stack.doctor` reads these before any virtualenv exists, so this
module must import nothing from outside the standard library. `host_stack.stack` re-exports them.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType

REPO_ROOT = Path(__file__).resolve().parent.parent


class StackError(RuntimeError):
    """The local stack could not be configured, started or stopped."""


# --- the stack's own settings -------------------------------------------------------------------

# StackSettings field -> the environment variable that sets it.
STACK_ENV_NAMES = MappingProxyType(
    {
        "airflow_api_port": "AIRFLOW_API_PORT",
        "spark_master_port": "SPARK_MASTER_PORT",
        "spark_master_webui_port": "SPARK_MASTER_WEBUI_PORT",
        "spark_connect_port": "SPARK_CONNECT_PORT",
        "localstack_port": "LOCALSTACK_PORT",
        "emr_emulator_port": "EMR_EMULATOR_PORT",
        "spark_worker_cores": "SPARK_WORKER_CORES",
        "spark_worker_memory": "SPARK_WORKER_MEMORY",
        "schedules": "STACK_SCHEDULES",
        "spark_quick_start": "STACK_SPARK_QUICK_START",
        "state_dir": "STACK_STATE_DIR",
    }
)


@dataclass(frozen=True)
class StackSettings:
    """Ports and sizes of the host-mode stack; each field has an env var (STACK_ENV_NAMES)."""

    airflow_api_port: int = 8080
    spark_master_port: int = 7077
    spark_master_webui_port: int = 8081
    # Only with SPARK_CONNECT_URL set (envs/local): the Spark Connect server's gRPC port.
    spark_connect_port: int = 15002
    localstack_port: int = 4566
    # Only with PIPELINE_ENV=aws: the EMR emulator of the offline aws rehearsal.
    emr_emulator_port: int = 4570
    spark_worker_cores: int = 2
    spark_worker_memory: str = "2g"
    # Off: runs start only when triggered (UI, run-pipeline, e2e), so unpausing a DAG does not
    # start today's scheduled run next to yours on a 2-core laptop. On: schedules fire as in aws.
    schedules: bool = False
    # On: local jobs start their JVMs from a class-data archive with the C1 compiler only
    # (host_stack/spark_cds.py); off: the JVM's defaults, better for large local data.
    spark_quick_start: bool = True
    state_dir: Path = REPO_ROOT / ".stack"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackSettings:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = STACK_ENV_NAMES[f.name]
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            if f.name.endswith("_port") or f.name == "spark_worker_cores":
                if not raw.isdigit() or not 0 < int(raw) < 65536:
                    raise StackError(
                        f"{name}={raw!r} (from the environment) is not valid; expected a whole "
                        "number from 1 to 65535, like the default "
                        f"{getattr(cls, f.name)}"
                    )
                values[f.name] = int(raw)
            elif f.name in ("schedules", "spark_quick_start"):
                if raw.lower() not in ("on", "off", "true", "false", "1", "0"):
                    raise StackError(
                        f"{name}={raw!r} (from the environment) is not valid; expected on or off"
                    )
                values[f.name] = raw.lower() in ("on", "true", "1")
            elif f.name == "state_dir":
                values[f.name] = Path(raw).expanduser().resolve()
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]

    def ports(self) -> list[tuple[int, str, str]]:
        """(port, what listens there, env var that moves it) for every fixed port."""
        return [
            (self.localstack_port, "LocalStack", "LOCALSTACK_PORT"),
            (self.emr_emulator_port, "EMR emulator", "EMR_EMULATOR_PORT"),
            (self.spark_master_port, "Spark master", "SPARK_MASTER_PORT"),
            (self.spark_master_webui_port, "Spark master web UI", "SPARK_MASTER_WEBUI_PORT"),
            (self.spark_connect_port, "Spark Connect server", "SPARK_CONNECT_PORT"),
            (self.airflow_api_port, "Airflow API server / UI", "AIRFLOW_API_PORT"),
            # Airflow's task and triggerer log servers follow the API port (host_stack/airflow.py).
            (self.airflow_api_port + 713, "Airflow task log server", "AIRFLOW_API_PORT"),
            (self.airflow_api_port + 714, "Airflow triggerer log server", "AIRFLOW_API_PORT"),
        ]


# Port setting -> the stack process that listens there (pids/<name>.json), so a check can tell
# the stack's own listeners from another program's.
PORT_OWNERS = MappingProxyType(
    {
        "LOCALSTACK_PORT": "localstack",
        "EMR_EMULATOR_PORT": "emr-emulator",
        "SPARK_MASTER_PORT": "spark-master",
        "SPARK_MASTER_WEBUI_PORT": "spark-master",
        "SPARK_CONNECT_PORT": "spark-connect",
        "AIRFLOW_API_PORT": "airflow-api-server",
    }
)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if something listens on host:port (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR, as servers set it: a listener still blocks the bind on Linux, while the
        # TIME_WAIT sockets a previous run's connections left behind do not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False
