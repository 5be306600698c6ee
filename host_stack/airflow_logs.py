"""Airflow's task and triggerer log servers, listening on 127.0.0.1 only.

    python -m host_stack.airflow_logs --port 8793

Airflow's scheduler and triggerer each start a log server that listens on every interface
(`airflow.utils.serve_logs` binds "", with no setting to change it). The host stack starts them
with --skip-serve-logs and runs this instead: the same application on 127.0.0.1, as two services
of the plan with their own port settings (AIRFLOW_TASK_LOG_PORT, AIRFLOW_TRIGGERER_LOG_PORT).
Airflow asks a log server at the task's hostname, so the stack's Airflow names itself by
`loopback_hostname` (AIRFLOW__CORE__HOSTNAME_CALLABLE).
"""

from __future__ import annotations

import argparse

LOG_SERVER_APP = "airflow.utils.serve_logs.log_server:get_app"
HOSTNAME_CALLABLE = "host_stack.airflow_logs.loopback_hostname"


def loopback_hostname() -> str:
    """The host Airflow records for its tasks and triggerers, where the log servers listen."""
    return "127.0.0.1"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m host_stack.airflow_logs")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        LOG_SERVER_APP,
        factory=True,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
