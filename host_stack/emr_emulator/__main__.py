"""`python -m host_stack.emr_emulator`: serve the EMR emulator until SIGTERM / Ctrl-C.

    python -m host_stack.emr_emulator --port 4570 --spark-master spark://127.0.0.1:7077 \
        --work-dir .stack/emr

S3 and IAM are LocalStack's, from config (AWS_ENDPOINT_URL and LocalStack's dummy keys); the
emulator refuses to start without an endpoint, so it never touches real AWS. The host stack
starts it when PIPELINE_ENV=aws (host_stack/stack.py).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from config.config import KEYS, ConfigError, get_settings
from host_stack.emr_emulator.emulator import EmrEmulator, EmulatorConfig
from host_stack.emr_emulator.steps import Node


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    from host_stack.spark import pyspark_home

    settings = get_settings()
    if settings.aws_endpoint_url is None:
        raise ConfigError(
            "AWS_ENDPOINT_URL is not set; the EMR emulator keeps its S3 and IAM in LocalStack "
            "and never talks to real AWS. Set AWS_ENDPOINT_URL (and LocalStack's keys), as "
            "`PIPELINE_ENV=aws python -m host_stack up` does"
        )
    aws = settings.boto3_client_kwargs("s3")
    # What a node gets from its region and instance profile; here: LocalStack and its keys.
    aws_env = {
        "AWS_REGION": settings.aws_region,
        "AWS_DEFAULT_REGION": settings.aws_region,
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url,
    }
    if aws["aws_access_key_id"] and aws["aws_secret_access_key"]:
        aws_env["AWS_ACCESS_KEY_ID"] = aws["aws_access_key_id"]
        aws_env["AWS_SECRET_ACCESS_KEY"] = aws["aws_secret_access_key"]
    node = Node(
        spark_master=args.spark_master,
        python=sys.executable,
        spark_home=pyspark_home(),
        aws_env=aws_env,
        dropped_keys=frozenset(KEYS),
    )
    return EmulatorConfig(
        work_dir=Path(args.work_dir).resolve(),
        node=node,
        s3=aws,
        iam=None if args.no_iam_checks else dict(aws),
        host=args.host,
        port=args.port,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m host_stack.emr_emulator", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4570)
    parser.add_argument("--spark-master", required=True, help="where steps' spark-submit runs")
    parser.add_argument("--work-dir", required=True, help="per-cluster conf, step files and logs")
    parser.add_argument(
        "--no-iam-checks", action="store_true", help="skip the role and instance-profile checks"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for noisy in ("botocore", "boto3", "urllib3", "werkzeug", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        emulator = EmrEmulator(build_config(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = threading.Thread(target=emulator.serve, name="emr-emulator-http", daemon=True)
    server.start()
    stop.wait()
    emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
