"""Command line of the host-mode local stack (what `nox -s up|down|pipeline|e2e_local` call).

    python -m host_stack up                 start LocalStack, Spark and Airflow; print the login
    python -m host_stack status             what runs, and what each service says
    python -m host_stack env [--json]       KEY=value lines for clients (API URL, login, endpoint)
    python -m host_stack run-pipeline [--date YYYY-MM-DD] [--dag DAG_ID] [--down]
    python -m host_stack ls [PREFIX | s3://BUCKET/PREFIX]   objects in the stack's S3
    python -m host_stack down [--clean]     stop everything (--clean also deletes .stack/)

Ports move with AIRFLOW_API_PORT, SPARK_MASTER_PORT, SPARK_MASTER_WEBUI_PORT, LOCALSTACK_PORT,
SPARK_CONNECT_PORT, AIRFLOW_TASK_LOG_PORT, AIRFLOW_TRIGGERER_LOG_PORT (and EMR_EMULATOR_PORT);
LOCALSTACK_PYTHON names LocalStack's own Python (nox sets it). `up` starts the stack's plan
(host_stack/plans.py) through one loop (host_stack/runner.py); `down` stops every process of
the stack, recorded or not (host_stack/processes.py).
PIPELINE_ENV=aws brings up the offline rehearsal of the aws environment: the aws DAGs against
LocalStack and the EMR emulator (nox -s e2e_aws_emulated).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import sys

from config.config import ConfigError
from host_stack.stack import Stack, StackError, StackSettings

DEFAULT_PIPELINE_DATE = "2026-01-15"


def _print_login(stack: Stack, info: dict[str, str]) -> None:
    print()
    print(f"Airflow UI    {info['AIRFLOW_API_URL']}")
    print(f"  login       {info['AIRFLOW_USERNAME']} / {info['AIRFLOW_PASSWORD']}")
    print(f"Spark master  {info['SPARK_MASTER_URL']}  (UI {info['SPARK_MASTER_WEBUI_URL']})")
    print(f"LocalStack    {info['AWS_ENDPOINT_URL']}")
    if info.get("EMR_ENDPOINT_URL"):
        print(f"EMR emulator  {info['EMR_ENDPOINT_URL']}  (PIPELINE_ENV=aws, rehearsal)")
    print(f"Logs          {stack.log_dir}/*.log")
    print("Stop with     nox -s down   (python -m host_stack down)")


def cmd_up(stack: Stack, args: argparse.Namespace) -> int:
    info = stack.up(timeout=args.timeout)
    _print_login(stack, info)
    return 0


def cmd_down(stack: Stack, args: argparse.Namespace) -> int:
    stopped = stack.down()
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    left = stack.stack_processes()
    if left:
        print(f"still running: {[p.pid for p in left]}", file=sys.stderr)
        return 1
    if args.clean and stack.state_dir.exists():
        shutil.rmtree(stack.state_dir)
        print(f"deleted {stack.state_dir}")
    return 0


def cmd_status(stack: Stack, args: argparse.Namespace) -> int:
    rows = stack.status()
    for name, state, detail in rows:
        print(f"{name:22} {state:8} {detail}")
    if any(state == "running" for _, state, _ in rows):
        print()
        for name, ok, detail in stack.health():
            print(f"{name:22} {'ok' if ok else 'waiting':8} {detail}")
        info = stack.info()
        print(f"\nAirflow UI {info['AIRFLOW_API_URL']}  login {info['AIRFLOW_USERNAME']} / "
              f"{info['AIRFLOW_PASSWORD']}")  # fmt: skip
    return 0 if all(state == "running" for _, state, _ in rows) else 3


def cmd_env(stack: Stack, args: argparse.Namespace) -> int:
    env = stack.client_env()
    if args.json:
        print(json.dumps(env))  # one line: nox reads the last line of the output
        return 0
    for key, value in env.items():
        print(f"{key}={shlex.quote(value)}")
    return 0


def cmd_run_pipeline(stack: Stack, args: argparse.Namespace) -> int:
    from host_stack.pipeline_run import PIPELINE_DAGS, run_pipeline

    try:
        info = stack.up(timeout=args.timeout)
        _print_login(stack, info)
        dags = args.dag or PIPELINE_DAGS
        ok = run_pipeline(
            stack, info, args.date, timeout=args.run_timeout, dags=dags, stays_up=not args.down
        )
    finally:
        if args.down:
            stack.down()
            print("stack stopped (--down)")
    return 0 if ok else 1


def cmd_ls(stack: Stack, args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from host_stack.pipeline_run import list_objects

    settings = stack.pipeline_settings()
    try:
        lines = list_objects(settings, args.where)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BotoCoreError as exc:
        print(f"error: {exc}; is the stack up? (nox -s up)", file=sys.stderr)
        return 2
    print("\n".join(lines) if lines else f"nothing under {args.where or settings.data_bucket}")
    return 0


def _date(text: str) -> str:
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-15") from None


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m host_stack", description=summary)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack (what is not running yet)")
    up.add_argument("--timeout", type=float, default=300, help="seconds to wait for health")
    down = sub.add_parser("down", help="stop every process of the stack")
    down.add_argument("--clean", action="store_true", help="also delete the state dir (.stack/)")
    sub.add_parser("status", help="what runs and what each service says")
    env = sub.add_parser("env", help="KEY=value lines for clients of the stack (e2e tests)")
    env.add_argument("--json", action="store_true", help="one JSON object instead")
    run = sub.add_parser("run-pipeline", help="up, then generation and processing for a date")
    run.add_argument("--date", type=_date, default=DEFAULT_PIPELINE_DATE)
    run.add_argument(
        "--dag",
        action="append",
        choices=("data_generation", "data_processing"),
        help="run only this DAG (repeatable); default both",
    )
    run.add_argument("--down", action="store_true", help="stop the stack afterwards")
    run.add_argument("--timeout", type=float, default=300, help="seconds to wait for the stack")
    run.add_argument("--run-timeout", type=float, default=900, help="seconds per DAG run")
    ls = sub.add_parser("ls", help="list objects in the stack's S3 (LocalStack)")
    ls.add_argument("where", nargs="?", default="", help="a prefix of the data bucket, or s3://...")
    args = parser.parse_args(argv)
    commands = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "env": cmd_env,
        "run-pipeline": cmd_run_pipeline,
        "ls": cmd_ls,
    }
    try:
        stack = Stack(settings=StackSettings.from_env())
        return commands[args.command](stack, args)
    except (StackError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
