"""The day's data-quality report, and the reconciliation it stands for.

Every line ends up in exactly one place: lines read = valid + quarantined + duplicates dropped,
and as many as the raw manifest counts. The report is built (and so checked) before anything is
replaced, and again with the rows the writes counted.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from spark_jobs.common.layout import MANIFEST_NAME, ORDERS_TABLE, REASONS, parse_day


class ReconciliationError(RuntimeError):
    """Lines were lost or double counted between reading and publishing."""


def quality_report(
    day: str | date,
    counts: dict[str | None, int],
    duplicates_dropped: int,
    table_rows: dict[str, int],
    manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The day's data-quality report (the JSON written last). Raises ReconciliationError if lines
    read != valid + quarantined + duplicates_dropped, or the manifest's line count differs."""
    day = parse_day(day)
    lines_read = sum(counts.values())
    valid_lines = counts.get(None, 0)
    quarantined = lines_read - valid_lines
    valid = table_rows.get(ORDERS_TABLE, valid_lines - duplicates_dropped)
    by_reason = {reason: counts.get(reason, 0) for reason in REASONS}
    unknown = set(counts) - set(REASONS) - {None}
    if unknown:
        raise ReconciliationError(f"unexpected quarantine reasons {sorted(unknown)}")
    report: dict[str, Any] = {
        "date": day.isoformat(),
        "lines_read": lines_read,
        "valid": valid,
        "quarantined": quarantined,
        "duplicates_dropped": duplicates_dropped,
        "quarantine_by_reason": by_reason,
        "tables": dict(table_rows),
        "manifest_lines": None if manifest is None else manifest.get("lines"),
        "reconciled": lines_read == valid + quarantined + duplicates_dropped,
    }
    if not report["reconciled"]:
        raise ReconciliationError(
            f"{day}: lines read {lines_read} != valid {valid} + quarantined {quarantined} + "
            f"duplicates dropped {duplicates_dropped}; nothing was published"
        )
    if manifest is not None and manifest.get("lines") != lines_read:
        raise ReconciliationError(
            f"{day}: the raw {MANIFEST_NAME} says {manifest.get('lines')} lines but "
            f"{lines_read} were read: data lost in transit; nothing was published. "
            "Re-run the generator for the date, then this job."
        )
    return report
