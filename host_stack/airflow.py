"""Airflow 3 of the local stack as plain processes, and a small client for its REST API v2.

`AirflowHost` says what to run: `airflow db migrate` once, then api-server, scheduler,
dag-processor and triggerer with one environment (SQLite + LocalExecutor, SimpleAuthManager,
dags folder orchestration/dags, the pipeline's connections and remote-logging settings), and the
task and triggerer log servers on 127.0.0.1, one process (host_stack/airflow_logs.py).
host_stack/stack.py puts them in the stack's plan. It is what the Airflow services of
docker-compose.yml are in host mode.

`AirflowApi` only speaks HTTP (token, DAGs, runs, task logs): `run-pipeline` and the black-box
end-to-end tests (tests/e2e) use it against any Airflow, local or deployed.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from host_stack import probe
from host_stack.airflow_logs import HOSTNAME_CALLABLE
from orchestration.compose_secrets import jwt_secret

ADMIN_USER = "admin"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# Health document keys of the components that must report "healthy" (api-server answers itself).
HEALTH_KEYS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
TERMINAL_RUN_STATES = ("success", "failed")
FAILED_TASK_STATES = ("failed", "up_for_retry")
# Keys every structured log line repeats; a failure report is easier to read without them.
_LOG_CONTEXT_KEYS = frozenset(
    ("event", "timestamp", "level", "logger", "map_index", "run_id", "try_number", "ti_id",
     "dag_id", "task_id", "filename", "lineno", "chan", "sources")
)  # fmt: skip
LOG_TAIL_LINES = 150
# The execution API's first request builds its routes (see AirflowHost.ready).
EXECUTION_API_TIMEOUT = 30

# Settings that cut the dev loop's latency on a 2-core laptop; each one measured to matter
# less than the JVM starts, but together they save tens of seconds between `up` and a result.
DEV_LOOP_SETTINGS = {
    # New and changed DAG files show up within seconds, not after the 5-minute default.
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
    "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
    "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
    "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "5",
    # Few parallel task processes: two cores, and each Spark job wants both of them.
    "AIRFLOW__CORE__PARALLELISM": "4",
}


@dataclass(frozen=True)
class AirflowHost:
    """One Airflow installation: AIRFLOW_HOME under the stack's state dir, API on host:port."""

    home: Path
    dags_folder: Path
    repo_root: Path
    venv_bin: Path
    port: int = 8080
    host: str = "127.0.0.1"
    # The task and triggerer log servers (Airflow's 8793 and 8794 by default).
    task_log_port: int = 8793
    triggerer_log_port: int = 8794
    # AIRFLOW_CONN_*, AIRFLOW__LOGGING__* and the pipeline settings the DAGs read through config.
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def execution_api_url(self) -> str:
        return f"http://{self.host}:{self.port}/execution"

    @property
    def jwt_secret_file(self) -> Path:
        return self.home / "jwt_secret"

    @property
    def passwords_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The environment of every Airflow process (and of the tasks they run)."""
        env = {k: v for k, v in base.items() if not k.startswith("AIRFLOW__")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__API__HOST": self.host,
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                # Task processes report to the API server; follow its port when it moves.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.execution_api_url}/",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                # The log servers' ports (StackSettings: they follow the API port unless set),
                # and the host Airflow asks them at, where they listen.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.task_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.triggerer_log_port),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": HOSTNAME_CALLABLE,
                # Airflow spawns `airflow` (and SparkSubmitOperator `spark-submit`) by name.
                "PATH": f"{self.venv_bin}:{base.get('PATH', '')}",
                # DAG files import config and orchestration from the repository root.
                "PYTHONPATH": str(self.repo_root),
                # Spark executors must run the venv's Python (pyarrow and friends).
                "PYSPARK_PYTHON": str(self.venv_bin / "python"),
                "PYSPARK_DRIVER_PYTHON": str(self.venv_bin / "python"),
                "SPARK_LOCAL_IP": "127.0.0.1",
                "NO_PROXY": "*",
            }
        )
        env.update(DEV_LOOP_SETTINGS)
        if self.jwt_secret_file.exists():
            # Every component signs or checks task and API tokens with it (HS512). Airflow's own
            # airflow.cfg default is 16 random bytes, which PyJWT warns about on every token.
            env["AIRFLOW__API_AUTH__JWT_SECRET"] = self.jwt_secret_file.read_text().strip()
        env.update(self.extra_env)
        return env

    def command(self, component: str) -> list[str]:
        # Their own log servers would listen on every interface: log_server_command instead.
        skip = ["--skip-serve-logs"] if component in ("scheduler", "triggerer") else []
        return [str(self.venv_bin / "airflow"), component, *skip]

    def log_server_command(self, ports: list[int]) -> list[str]:
        """One process with a log server on host:port for each port (host_stack/airflow_logs.py)."""
        python = str(self.venv_bin / "python")
        port_args = [arg for port in ports for arg in ("--port", str(port))]
        return [python, "-m", "host_stack.airflow_logs", "--host", self.host, *port_args]

    def migrate_command(self) -> list[str]:
        return [str(self.venv_bin / "airflow"), "db", "migrate"]

    def migrated_stamp(self) -> Path:
        """Marks a database already migrated by this Airflow version (migrate costs ~8 s)."""
        from importlib.metadata import version

        return self.home / f".migrated-{version('apache-airflow-core')}"

    def prepare(self) -> str:
        """Create AIRFLOW_HOME, the admin password and the JWT secret (both kept across
        restarts, owner-only); return the password."""
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        if self.jwt_secret_file.exists() and not self.jwt_secret_file.read_text().strip():
            self.jwt_secret_file.unlink()  # cut short while being written: make it again
        if not self.jwt_secret_file.exists():
            # Created owner-only, never readable by others even for a moment.
            fd = os.open(self.jwt_secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(jwt_secret() + "\n")
        password = self.admin_password()
        if password is None:
            password = secrets.token_urlsafe(12)
            # SimpleAuthManager keeps a user's password when the file already lists it.
            self.passwords_file.write_text(json.dumps({ADMIN_USER: password}) + "\n")
            self.passwords_file.chmod(0o600)
        return password

    def admin_password(self) -> str | None:
        try:
            return json.loads(self.passwords_file.read_text()).get(ADMIN_USER)
        except (OSError, ValueError):
            return None

    def health(self) -> dict | None:
        try:
            response = probe.get(f"{self.api_url}/api/v2/monitor/health", timeout=3)
            return response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def ready(self) -> tuple[bool, str]:
        health = self.health()
        if health is None:
            return False, f"API server {self.api_url} not answering yet"
        waiting = [key for key in HEALTH_KEYS if (health.get(key) or {}).get("status") != "healthy"]
        if waiting:
            return False, "not healthy yet: " + ", ".join(waiting)
        # Task processes talk to the execution API, a Cadwyn app that builds its versioned
        # routes on its first request: seconds the first task of the first run would wait
        # unless it is asked here (docs/performance.md). Its health route needs no token.
        try:
            response = probe.get(f"{self.execution_api_url}/health", timeout=EXECUTION_API_TIMEOUT)
        except httpx.HTTPError as exc:
            return False, f"execution API {self.execution_api_url} not answering yet ({exc!r})"
        if response.status_code != 200:
            return False, f"execution API {self.execution_api_url}/health: {response.status_code}"
        return True, "all components healthy"


def day_run(day: str) -> tuple[str, str]:
    """The logical date (midnight UTC) and run id of a manual run for `day` (YYYY-MM-DD).

    Without a run id Airflow 3 names a manual run after the moment it was triggered
    (manual__<now>), whatever its logical date; this one names the day it runs for.
    """
    return f"{day}T00:00:00Z", f"manual__{day}T00:00:00+00:00"


class AirflowApiError(RuntimeError):
    """The Airflow REST API refused a request or a run did not end as expected."""


class AirflowApi:
    """Airflow's REST API v2 with a SimpleAuthManager (or any /auth/token) login."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout)
        login = {"username": username, "password": password}
        response = self._client.post("/auth/token", json=login)
        if response.status_code not in (200, 201):
            raise AirflowApiError(
                f"login as {username!r} at {self.base_url}/auth/token failed "
                f"({response.status_code}: {response.text[:200]}); check AIRFLOW_USERNAME / "
                "AIRFLOW_PASSWORD (host mode: `python -m host_stack env` prints them)"
            )
        self._client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._client.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code >= 400:
            raise AirflowApiError(
                f"{method} {self.base_url}/api/v2{path} -> {response.status_code}: "
                f"{response.text[:500]}"
            )
        return response.json() if response.content else None

    # --- DAGs ---------------------------------------------------------------------------------

    def import_errors(self) -> list[dict]:
        return self.request("GET", "/importErrors", params={"limit": 100})["import_errors"]

    def wait_for_dag(self, dag_id: str, timeout: float = 120, poll: float = 1.0) -> dict:
        """Wait until the dag-processor has parsed `dag_id`; fail early on an import error."""
        deadline = time.monotonic() + timeout
        while True:
            errors = self.import_errors()
            if errors:
                details = "\n".join(f"{e['filename']}:\n{e['stack_trace']}" for e in errors)
                raise AirflowApiError(f"Airflow reports DAG import errors:\n{details}")
            response = self._client.get(f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"DAG {dag_id!r} not parsed after {timeout:.0f}s (GET /api/v2/dags/{dag_id}"
                    f" -> {response.status_code}); is it in the dags folder, and is the "
                    "dag-processor up?"
                )
            time.sleep(poll)

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    # --- runs ---------------------------------------------------------------------------------

    def trigger(
        self, dag_id: str, logical_date: str, conf: dict | None = None, run_id: str | None = None
    ) -> str:
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def run_for_date(self, dag_id: str, day: str) -> str:
        """Run `dag_id` for the date (its {{ ds }}): trigger it, or clear the date's run to rerun.

        Airflow keeps one run per logical date; clearing it is how a date is re-run.
        """
        logical_date, run_id = day_run(day)
        runs = self.request(
            "GET",
            f"/dags/{dag_id}/dagRuns",
            params={"logical_date_gte": logical_date, "logical_date_lte": logical_date},
        )["dag_runs"]
        if not runs:
            return self.trigger(dag_id, logical_date, run_id=run_id)
        run_id = runs[0]["dag_run_id"]
        cleared = self.request(
            "POST", f"/dags/{dag_id}/dagRuns/{run_id}/clear", json={"dry_run": False}
        )
        if cleared.get("state") in TERMINAL_RUN_STATES:
            raise AirflowApiError(f"clearing run {run_id} of {dag_id} left it {cleared['state']}")
        return run_id

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.request("GET", path, params={"limit": 100})["task_instances"]

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = 600,
        poll: float = 1.0,
        report: Callable[[str], None] = print,
        fail_on_retry: bool = False,
    ) -> dict:
        """Poll a run until it succeeds or fails, reporting each task state change.

        `fail_on_retry`: return as soon as a task fails a try (state up_for_retry) instead of
        waiting out the retries (minutes); the returned run then has that state.
        """
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        seen: dict[str, str | None] = {}
        run_state = None
        while True:
            run = self.dag_run(dag_id, run_id)
            for ti in self.task_instances(dag_id, run_id):
                if seen.get(ti["task_id"], "?") != ti["state"]:
                    seen[ti["task_id"]] = ti["state"]
                    elapsed = time.monotonic() - started
                    report(f"  [{elapsed:5.0f}s] {dag_id}.{ti['task_id']}: {ti['state']}")
            if run["state"] != run_state:
                run_state = run["state"]
                report(f"  [{time.monotonic() - started:5.0f}s] {dag_id} run {run_id}: {run_state}")
            if run_state in TERMINAL_RUN_STATES:
                return run
            if fail_on_retry and "up_for_retry" in seen.values():
                return {**run, "state": "up_for_retry"}
            if time.monotonic() > deadline:
                raise AirflowApiError(
                    f"run {run_id} of {dag_id} still {run_state!r} after {timeout:.0f}s; "
                    f"tasks: {seen}"
                )
            time.sleep(poll)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value (e.g. the cluster id create_cluster returned)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        value = self.request("GET", path)["value"]
        if isinstance(value, str):
            try:
                return json.loads(value)  # stored JSON-serialized
            except ValueError:
                return value
        return value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        """A task try's log as text (Airflow 3 returns structured lines)."""
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        body = self.request("GET", path, params={"full_content": True})
        lines = []
        for item in body.get("content", []):
            if not isinstance(item, dict):
                lines.append(str(item))
                continue
            extra = {k: v for k, v in item.items() if k not in _LOG_CONTEXT_KEYS}
            text = " ".join(str(item.get(k, "")) for k in ("timestamp", "level", "event"))
            lines.append(f"{text} {extra}" if extra else text)
        return "\n".join(lines)

    def failure_report(self, dag_id: str, run_id: str) -> str:
        """The logs of every failed task of a run: what a failing test or run-pipeline prints."""
        parts = []
        for ti in self.task_instances(dag_id, run_id):
            if ti["state"] == "upstream_failed":
                parts.append(f"--- {ti['task_id']}: upstream_failed")
            elif ti["state"] in FAILED_TASK_STATES and ti.get("try_number"):
                try:
                    log = self.task_log(dag_id, run_id, ti["task_id"], ti["try_number"])
                except AirflowApiError as exc:
                    log = f"(log not readable: {exc})"
                lines = log.splitlines()
                parts.append(
                    f"--- log of {ti['state']} task {ti['task_id']} (try {ti['try_number']}), "
                    f"last {min(len(lines), LOG_TAIL_LINES)} of {len(lines)} lines:"
                )
                parts.append("\n".join(lines[-LOG_TAIL_LINES:]))
        return "\n".join(parts) or f"no failed task instance found in run {run_id} of {dag_id}"
