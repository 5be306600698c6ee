"""The Spark standalone cluster of the local stack: one master and one worker from pyspark's wheel.

This is what the Spark container of docker-compose.local.yml is in host mode. The wheel has no
sbin/start-master.sh, so both daemons run in the foreground through `spark-class`;
host_stack/stack.py spawns them, records their pids and stops them. This module only says what to
run and how to tell the daemons are ready (the master's web UI serves /json with its workers).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from host_stack import probe


def pyspark_home() -> Path:
    """The Spark distribution inside the installed pyspark package (has bin/ and jars/)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


@dataclass(frozen=True)
class SparkStandalone:
    """A master on host:master_port (web UI on webui_port) and one worker with cores/memory."""

    state_dir: Path
    master_port: int = 7077
    webui_port: int = 8081
    worker_cores: int = 2
    worker_memory: str = "2g"
    host: str = "127.0.0.1"
    # The daemons only schedule; the executors (launched by the worker) do the work.
    daemon_memory: str = "512m"

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    @property
    def webui_url(self) -> str:
        return f"http://{self.host}:{self.webui_port}"

    def _spark_class(self) -> str:
        return str(pyspark_home() / "bin" / "spark-class")

    def master_command(self) -> list[str]:
        return [
            self._spark_class(),
            "org.apache.spark.deploy.master.Master",
            "--host", self.host,
            "--port", str(self.master_port),
            "--webui-port", str(self.webui_port),
        ]  # fmt: skip

    def worker_command(self) -> list[str]:
        return [
            self._spark_class(),
            "org.apache.spark.deploy.worker.Worker",
            self.master_url,
            "--host", self.host,
            "--cores", str(self.worker_cores),
            "--memory", self.worker_memory,
            # Port 0: the OS picks free ports, so the worker never collides with Airflow's UI.
            "--port", "0",
            "--webui-port", "0",
            "--work-dir", str(self.state_dir / "work"),
        ]  # fmt: skip

    def environment(self, base: Mapping[str, str], python: str) -> dict[str, str]:
        """Environment of both daemons; executors inherit it (so they run `python`, the venv's)."""
        env = dict(base)
        env.update(
            {
                "SPARK_HOME": str(pyspark_home()),
                # A hostname may not resolve to a reachable address: bind everything to loopback.
                "SPARK_LOCAL_IP": self.host,
                "SPARK_LOCAL_HOSTNAME": self.host,
                "SPARK_DAEMON_MEMORY": self.daemon_memory,
                "SPARK_LOG_DIR": str(self.state_dir / "logs"),
                "SPARK_WORKER_DIR": str(self.state_dir / "work"),
                "PYSPARK_PYTHON": python,
            }
        )
        # Spark's own scripts read these too; keep them equal to the command line.
        env["SPARK_MASTER_PORT"] = str(self.master_port)
        env["SPARK_MASTER_WEBUI_PORT"] = str(self.webui_port)
        env.pop("SPARK_WORKER_CORES", None)
        env.pop("SPARK_WORKER_MEMORY", None)
        return env

    def prepare(self) -> None:
        for sub in ("logs", "work"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)

    def master_state(self) -> dict | None:
        """The master's /json document (status, workers, apps), or None while it does not answer."""
        try:
            response = probe.get(f"{self.webui_url}/json/", timeout=2)
            return response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def master_port_open(self) -> bool:
        try:
            with socket.create_connection((self.host, self.master_port), timeout=1):
                return True
        except OSError:
            return False

    def master_ready(self) -> tuple[bool, str]:
        state = self.master_state()
        if state is None:
            return False, f"master web UI {self.webui_url} not answering yet"
        if state.get("status") != "ALIVE":
            return False, f"master status {state.get('status')!r}"
        return True, "master ALIVE"

    def alive_workers(self) -> int:
        state = self.master_state() or {}
        return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")

    def worker_ready(self) -> tuple[bool, str]:
        workers = self.alive_workers()
        if workers < 1:
            return False, f"no ALIVE worker registered at {self.master_url} yet"
        return True, f"{workers} worker(s) ALIVE"
