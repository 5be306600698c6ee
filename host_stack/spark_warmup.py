"""The warm-up run behind the host stack's Spark class-data archive (host_stack/spark_cds.py).

Runs both jobs on a few rows of local files in one driver (local[2], so the executor's classes
load in the same JVM), so the archive the JVM writes at exit holds the classes a real run loads:
`spark-submit --py-files spark_jobs.zip host_stack/spark_warmup.py --work-dir DIR`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

WARMUP_DAY = "2026-01-01"
WARMUP_ROWS = 2000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work-dir", required=True, type=Path, help="an empty scratch directory")
    args = parser.parse_args(argv)
    from spark_jobs import data_generator, data_processor

    raw, processed = args.work_dir / "raw", args.work_dir / "processed"
    data_generator.main(["--date", WARMUP_DAY, "--rows", str(WARMUP_ROWS), "--output", str(raw)])
    return data_processor.main(
        ["--date", WARMUP_DAY, "--input", str(raw), "--output", str(processed)]
    )


if __name__ == "__main__":
    sys.exit(main())
