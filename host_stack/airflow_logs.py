"""Airflow's task and triggerer log servers, listening on 127.0.0.1 only, in one process.

    python -m host_stack.airflow_logs --port 8793 --port 8794

Airflow's scheduler and triggerer each start a log server that listens on every interface
(`airflow.utils.serve_logs` binds "", with no setting to change it). The host stack starts them
with --skip-serve-logs and runs this instead: the same application on 127.0.0.1, one service of
the plan whose ports have their own settings (AIRFLOW_TASK_LOG_PORT, AIRFLOW_TRIGGERER_LOG_PORT).
One process serves both ports: importing Airflow costs a new process about 7 s of CPU, which a
second process would take from the rest of `up` on a small machine. Airflow asks a log server at
the task's hostname, so the stack's Airflow names itself by `loopback_hostname`
(AIRFLOW__CORE__HOSTNAME_CALLABLE).
"""

from __future__ import annotations

import argparse
import asyncio

LOG_SERVER_APP = "airflow.utils.serve_logs.log_server:get_app"
HOSTNAME_CALLABLE = "host_stack.airflow_logs.loopback_hostname"


def loopback_hostname() -> str:
    """The host Airflow records for its tasks and triggerers, where the log servers listen."""
    return "127.0.0.1"


async def serve(host: str, ports: list[int]) -> None:
    """One uvicorn server per port on one event loop. On SIGTERM or SIGINT each server, last
    started first, ends and hands the signal on to the one before it (uvicorn restores the
    previous handler and raises the signal again), so the process stops as a single server would.
    """
    import uvicorn

    servers = [
        uvicorn.Server(
            uvicorn.Config(
                LOG_SERVER_APP,
                factory=True,
                host=host,
                port=port,
                log_config=None,
                access_log=False,
            )
        )
        for port in ports
    ]
    await asyncio.gather(*(server.serve() for server in servers))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m host_stack.airflow_logs")
    parser.add_argument("--port", type=int, action="append", required=True, help="repeatable")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
