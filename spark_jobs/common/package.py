"""The spark_jobs package as a zip: what spark-submit's --py-files ships (orchestration/artifact.py
builds it for both targets) and what a job on a Spark Connect server adds to its session
(spark_jobs/common/session.py). Standard library only: DAG files import it at parse time."""

from __future__ import annotations

import zipfile
from pathlib import Path

# Fixed zip timestamps so the same sources always give the same bytes (cacheable, diffable).
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}


def zip_package(package_dir: Path, zip_path: Path) -> None:
    """Zip the package (sources and data files such as schemas/*.json) under its own name."""
    base = package_dir.parent
    files = sorted(
        p
        for p in package_dir.rglob("*")
        if p.is_file() and not _SKIPPED_PARTS.intersection(p.parts) and p.suffix != ".pyc"
    )
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            info = zipfile.ZipInfo(path.relative_to(base).as_posix(), date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
