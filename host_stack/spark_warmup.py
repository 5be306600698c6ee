"""Both Spark jobs on a few rows: the warm-up runs of the host stack's Spark.

Two uses, one run:
- The class-data archive (host_stack/spark_cds.py): both jobs on local files in one driver
  (local[2], so the executor's classes load in the same JVM), so the archive the JVM writes at
  exit holds the classes a real run loads:
  `spark-submit --py-files spark_jobs.zip host_stack/spark_warmup.py --work-dir DIR`.
- The Spark Connect server (`up`, once per server start): both jobs through it on LocalStack,
  under a scratch prefix of the data bucket that is deleted afterwards, so the first DAG run
  after `up` finds Spark's code loaded and compiled by the JIT instead of paying for it:
  `SPARK_CONNECT_URL=sc://... python -m host_stack.spark_warmup --work-dir s3://B/P --clean`.
"""

from __future__ import annotations

import argparse
import sys

WARMUP_DAY = "2026-01-01"
WARMUP_ROWS = 2000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work-dir", required=True, help="an empty scratch directory, or an S3 prefix"
    )
    parser.add_argument(
        "--clean", action="store_true", help="delete everything under --work-dir afterwards"
    )
    args = parser.parse_args(argv)
    from spark_jobs import data_generator, data_processor
    from spark_jobs.common.storage import join

    raw, processed = join(args.work_dir, "raw"), join(args.work_dir, "processed")
    try:
        data_generator.main(["--date", WARMUP_DAY, "--rows", str(WARMUP_ROWS), "--output", raw])
        return data_processor.main(["--date", WARMUP_DAY, "--input", raw, "--output", processed])
    finally:
        if args.clean:
            _delete_tree(args.work_dir)


def _delete_tree(uri: str) -> None:
    from spark_jobs.common.session import end_job_session, job_session
    from spark_jobs.common.storage import Storage

    spark = job_session("warm-up clean-up")
    try:
        Storage(spark).delete_tree(uri)
    finally:
        end_job_session(spark)


if __name__ == "__main__":
    sys.exit(main())
