"""Read one raw day: its lines and its manifest, refusing a day the generator has not finished."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from pyspark.sql import DataFrame

from spark_jobs.common.layout import manifest_path, raw_day_dir, raw_success_path
from spark_jobs.common.storage import Storage


class InputMissingError(FileNotFoundError):
    """The raw directory for the date does not exist."""


class InputIncompleteError(RuntimeError):
    """The raw directory exists but its success marker does not (the generator has not finished)."""


def read_raw_day(
    storage: Storage, input_uri: str, day: date
) -> tuple[DataFrame, dict[str, Any] | None]:
    """(lines: value, source_file; the manifest, or None for a day written without one)."""
    raw_dir = raw_day_dir(input_uri, day)
    if not storage.exists(raw_dir):
        raise InputMissingError(
            f"no raw input for {day} at {raw_dir}; run data_generator.py --date {day} "
            f"--output {input_uri} first (or check --input)"
        )
    success = raw_success_path(input_uri, day)
    if not storage.exists(success):
        raise InputIncompleteError(
            f"{success} is missing: the generator has not finished writing "
            f"{day} (or failed); wait for it or re-run data_generator.py --date {day}"
        )
    manifest_uri = manifest_path(input_uri, day)
    manifest = json.loads(storage.read_text(manifest_uri)) if storage.exists(manifest_uri) else None
    return storage.read_lines(raw_dir), manifest
