"""The local stack's Spark Connect server: one long-lived Spark application the local jobs run on.

On EMR every job is a new Spark application on a new cluster. Locally that start (a driver JVM,
an executor JVM, Spark's classes loaded and its generated code compiled, per run) was most of a
developer's run on a laptop. With SPARK_CONNECT_URL set (envs/local/settings.env), the local
DAGs' spark-submits run the jobs as Spark Connect clients (spark_jobs/common/session.py) of this
server instead: a Spark application on the same standalone master and worker, started with the
stack and given the job settings a spark-submit would get (S3 endpoint, JVM options). Each run
gets its own server-side session, released when it ends.

Spark keeps the Python daemons each session starts until the server ends (SPARK-54055), so both
run the server under host_stack.supervise, which stops them once idle: the host stack spawns
`supervised_command()`, and the compose overlay runs `python -m host_stack.spark_connect`, which
builds the same command from config and becomes it.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from host_stack.spark import pyspark_home
from host_stack.supervise import REAP_IDLE_SECONDS, supervised

if TYPE_CHECKING:
    from config.config import Settings

SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
APP_NAME = "spark-connect"


@dataclass(frozen=True)
class SparkConnectServer:
    """The server on host:port, running on `master` with `cores` executor cores in all."""

    master_url: str
    port: int
    cores: int
    # The job settings every spark-submit gets (Settings.spark_submit_conf()).
    job_conf: Mapping[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    bind_host: str | None = None

    @property
    def url(self) -> str:
        return f"sc://{self.host}:{self.port}"

    def command(self) -> list[str]:
        conf = {
            **self.job_conf,
            "spark.connect.grpc.binding.address": self.bind_host or self.host,
            "spark.connect.grpc.binding.port": str(self.port),
            # What a job's own driver reads from its SparkContext; a Connect client reads it
            # here (spark_jobs/common/session.py: default_parallelism).
            "spark.default.parallelism": str(self.cores),
        }
        conf_args = [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]
        return [
            str(pyspark_home() / "bin" / "spark-submit"),
            "--master", self.master_url,
            "--class", SERVER_CLASS,
            "--name", APP_NAME,
            *conf_args,
            "spark-internal",
        ]  # fmt: skip

    def supervised_command(self, python: str) -> list[str]:
        """command() under host_stack.supervise with `python`, which stops the Python daemons
        the server's sessions leave behind: how the host stack and the compose service run it."""
        return supervised(APP_NAME, self.command(), python, REAP_IDLE_SECONDS)

    def ready(self) -> tuple[bool, str]:
        """The gRPC port accepts connections (the server binds it last, once it can serve)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True, f"serving {self.url}"
        except OSError:
            return False, f"{self.url} not accepting connections yet"


def from_settings(
    settings: Settings,
    cores: int,
    bind_host: str | None = None,
    executor_java_options: str | None = None,
) -> SparkConnectServer:
    """The server config names (SPARK_CONNECT_URL, SPARK_MASTER), with the jobs' conf.

    `executor_java_options` replaces the setting's options for the server's executor only."""
    if not settings.spark_connect_url:
        raise ValueError(
            f"SPARK_CONNECT_URL is not set for PIPELINE_ENV={settings.pipeline_env} "
            f"({settings.settings_file}); expected sc://host:port"
        )
    parts = urlsplit(settings.spark_connect_url)  # config checked its form: sc://host:port
    assert parts.hostname is not None
    assert parts.port is not None
    job_conf = settings.spark_submit_conf()
    if executor_java_options is not None:
        job_conf["spark.executor.extraJavaOptions"] = executor_java_options
    return SparkConnectServer(
        master_url=settings.spark_master,
        port=parts.port,
        cores=cores,
        job_conf=job_conf,
        host=parts.hostname,
        bind_host=bind_host,
    )


def main() -> None:
    """Become the server config describes (the compose overlay's spark-connect service)."""
    from config.config import get_settings

    cores = int(os.environ.get("SPARK_WORKER_CORES", "2"))
    server = from_settings(get_settings(), cores=cores, bind_host="0.0.0.0")  # noqa: S104
    command = server.supervised_command(sys.executable)
    print("starting:", " ".join(command), flush=True)
    os.execv(command[0], command)  # noqa: S606  (the service becomes the supervisor)


if __name__ == "__main__":
    sys.exit(main())
