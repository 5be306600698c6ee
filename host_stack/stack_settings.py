"""The host-mode stack's own settings (ports, sizes, state dir), typed once, and the port check.

Each field of `StackSettings` declares its environment variable and kind (port, count, on/off,
path, text) beside its default; `from_env` reads every field by its kind, once per command, and
a bad value is one `StackError` naming the variable, the value and the expected form, as config's
errors do. The pipeline's own settings stay in config/ (pydantic-settings); these are the stack's.

Standard library only: `host_stack.doctor` reads these settings in nox's own interpreter before
any virtualenv exists (its port check is the first thing a new machine sees), so this module
imports nothing from outside the standard library, and is the one reader of these variables.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parent.parent


class StackError(RuntimeError):
    """The local stack could not be configured, started or stopped."""


# --- the kinds of value, each with its reader -----------------------------------------------------

PORT, COUNT, ON_OFF, PATH, TEXT = "port", "count", "on/off", "path", "text"
_ON, _OFF = ("on", "true", "1"), ("off", "false", "0")


def _read(kind: str, name: str, raw: str, default: object) -> object:
    if kind in (PORT, COUNT):
        if not raw.isdigit() or not 0 < int(raw) < 65536:
            example = f", like the default {default}" if default is not None else ""
            raise StackError(
                f"{name}={raw!r} (from the environment) is not valid; expected a whole "
                f"number from 1 to 65535{example}"
            )
        return int(raw)
    if kind == ON_OFF:
        if raw.lower() not in (*_ON, *_OFF):
            raise StackError(
                f"{name}={raw!r} (from the environment) is not valid; expected on or off"
            )
        return raw.lower() in _ON
    if kind == PATH:
        return Path(raw).expanduser().resolve()
    return raw


def _env(name: str, kind: str, listens: str = "") -> dict[str, str]:
    """A field's metadata: read from variable `name` as `kind`; what listens on a port."""
    return {"env": name, "kind": kind, "listens": listens}


# --- the stack's own settings ---------------------------------------------------------------------


class PortSetting(NamedTuple):
    """A port of the stack, what listens there and the variable that moves it."""

    port: int
    what: str
    env_name: str


@dataclass(frozen=True)
class StackSettings:
    """Ports and sizes of the host-mode stack; each field names its variable (STACK_ENV_NAMES)."""

    airflow_api_port: int = field(
        default=8080, metadata=_env("AIRFLOW_API_PORT", PORT, "Airflow API server / UI")
    )
    spark_master_port: int = field(
        default=7077, metadata=_env("SPARK_MASTER_PORT", PORT, "Spark master")
    )
    spark_master_webui_port: int = field(
        default=8081, metadata=_env("SPARK_MASTER_WEBUI_PORT", PORT, "Spark master web UI")
    )
    # Only with SPARK_CONNECT_URL set (envs/local): the Spark Connect server's gRPC port.
    spark_connect_port: int = field(
        default=15002, metadata=_env("SPARK_CONNECT_PORT", PORT, "Spark Connect server")
    )
    localstack_port: int = field(default=4566, metadata=_env("LOCALSTACK_PORT", PORT, "LocalStack"))
    # Only with PIPELINE_ENV=aws: the EMR emulator of the offline aws rehearsal.
    emr_emulator_port: int = field(
        default=4570, metadata=_env("EMR_EMULATOR_PORT", PORT, "EMR emulator")
    )
    # Airflow's task and triggerer log servers. Unset, they follow the API port (8793 and 8794
    # beside 8080), so a second checkout that moves AIRFLOW_API_PORT needs nothing more.
    airflow_task_log_port: int | None = field(
        default=None, metadata=_env("AIRFLOW_TASK_LOG_PORT", PORT, "Airflow task log server")
    )
    airflow_triggerer_log_port: int | None = field(
        default=None,
        metadata=_env("AIRFLOW_TRIGGERER_LOG_PORT", PORT, "Airflow triggerer log server"),
    )
    spark_worker_cores: int = field(default=2, metadata=_env("SPARK_WORKER_CORES", COUNT))
    spark_worker_memory: str = field(default="2g", metadata=_env("SPARK_WORKER_MEMORY", TEXT))
    # Off: runs start only when triggered (UI, run-pipeline, e2e), so unpausing a DAG does not
    # start today's scheduled run next to yours on a 2-core laptop. On: schedules fire as in aws.
    schedules: bool = field(default=False, metadata=_env("STACK_SCHEDULES", ON_OFF))
    # On: local jobs start their JVMs from a class-data archive with the C1 compiler only
    # (host_stack/spark_cds.py); off: the JVM's defaults, better for large local data.
    spark_quick_start: bool = field(default=True, metadata=_env("STACK_SPARK_QUICK_START", ON_OFF))
    state_dir: Path = field(default=REPO_ROOT / ".stack", metadata=_env("STACK_STATE_DIR", PATH))

    def __post_init__(self) -> None:
        # The log servers' ports, where unset, follow the API port.
        if self.airflow_task_log_port is None:
            object.__setattr__(self, "airflow_task_log_port", self.airflow_api_port + 713)
        if self.airflow_triggerer_log_port is None:
            object.__setattr__(self, "airflow_triggerer_log_port", self.airflow_api_port + 714)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StackSettings:
        """Every field from its variable (unset or empty: the default), read by its kind."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"], "").strip()
            if raw:
                values[f.name] = _read(f.metadata["kind"], f.metadata["env"], raw, f.default)
        return cls(**values)

    def port(self, env_name: str) -> PortSetting:
        """The port that `env_name` (AIRFLOW_API_PORT...) sets."""
        for f in fields(self):
            if f.metadata["env"] == env_name and f.metadata["kind"] == PORT:
                return PortSetting(getattr(self, f.name), f.metadata["listens"], env_name)
        raise KeyError(env_name)

    def ports(self) -> list[PortSetting]:
        """(port, what listens there, env var that moves it) for every port of the stack."""
        return [self.port(f.metadata["env"]) for f in fields(self) if f.metadata["kind"] == PORT]


# StackSettings field -> the environment variable that sets it.
STACK_ENV_NAMES = MappingProxyType({f.name: f.metadata["env"] for f in fields(StackSettings)})

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
        "AIRFLOW_TASK_LOG_PORT": "airflow-log-servers",
        "AIRFLOW_TRIGGERER_LOG_PORT": "airflow-log-servers",
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
