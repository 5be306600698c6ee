"""Where the pipeline's data lives, and the names of what can be wrong with a line.

The one place that knows the storage layout (a root is a URI, a local path or an S3 key prefix):

    data_generator.py writes, data_processor.py reads:
    <raw>/orders/dt=YYYY-MM-DD/part-*          JSON lines, one order each
                               _manifest.json  the day's counts
                               _SUCCESS        written last: the day is complete
    data_processor.py publishes:
    <processed>/<table>/dt=YYYY-MM-DD/         Parquet + _SUCCESS, each of PUBLISHED_TABLES
    <processed>/reports/dt=YYYY-MM-DD/quality_report.json    written last: the day is published

and the one vocabulary of line defects: the kinds the generator injects (BAD_KINDS), the reasons
the processor quarantines a line for (REASONS), and how one maps to the other (OUTCOME_OF_KIND).

Standard library only: DAG files and the host stack import it at parse time, and it builds S3
keys as well as URIs. A day is a date or its YYYY-MM-DD text (or a template such as "{{ ds }}").
"""

from __future__ import annotations

from datetime import date

# ---- the layout ----------------------------------------------------------------------------------

RAW_DATASET = "orders"
PARTITION_KEY = "dt"
SUCCESS_MARKER = "_SUCCESS"
MANIFEST_NAME = "_manifest.json"
REPORTS_DIR = "reports"
REPORT_NAME = "quality_report.json"
ORDERS_TABLE = "orders"
ORDER_ITEMS_TABLE = "order_items"
CUSTOMERS_TABLE = "customers"
PAYMENTS_TABLE = "payments"
DAILY_SALES_TABLE = "daily_sales"
TABLES = (ORDERS_TABLE, ORDER_ITEMS_TABLE, CUSTOMERS_TABLE, PAYMENTS_TABLE, DAILY_SALES_TABLE)
QUARANTINE_TABLE = "quarantine"
PUBLISHED_TABLES = (*TABLES, QUARANTINE_TABLE)


def join(root: str, *parts: str) -> str:
    """Join segments onto a URI, path or key with "/": (s3://b/raw, orders) -> s3://b/raw/orders."""
    result = root
    for part in parts:
        segment = part.strip("/")
        if segment:
            result = f"{result.rstrip('/')}/{segment}"
    return result


def day_partition(day: date | str) -> str:
    """dt=YYYY-MM-DD: the directory of one day below a dataset."""
    text = day.isoformat() if isinstance(day, date) else day
    return f"{PARTITION_KEY}={text}"


def parse_day(value: str | date) -> date:
    """A date from YYYY-MM-DD (or a date), with a message that says what was expected."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"--date {value!r} is not a date; expected YYYY-MM-DD") from exc


def raw_day_dir(raw_root: str, day: date | str) -> str:
    """<raw>/orders/dt=YYYY-MM-DD: where the generator writes one day of raw lines."""
    return join(raw_root, RAW_DATASET, day_partition(day))


def raw_success_path(raw_root: str, day: date | str) -> str:
    """The raw day's _SUCCESS: written last, so a reader never sees a half-written day."""
    return join(raw_day_dir(raw_root, day), SUCCESS_MARKER)


def manifest_path(raw_root: str, day: date | str) -> str:
    """The raw day's _manifest.json: its line counts, by kind."""
    return join(raw_day_dir(raw_root, day), MANIFEST_NAME)


def table_day_dir(processed_root: str, table: str, day: date | str) -> str:
    """<processed>/<table>/dt=YYYY-MM-DD: one published table's partition."""
    return join(processed_root, table, day_partition(day))


def table_success_path(processed_root: str, table: str, day: date | str) -> str:
    """A table partition's _SUCCESS: written once its Parquet files are complete."""
    return join(table_day_dir(processed_root, table, day), SUCCESS_MARKER)


def report_path(processed_root: str, day: date | str) -> str:
    """<processed>/reports/dt=YYYY-MM-DD/quality_report.json: the day marker, written last."""
    return join(table_day_dir(processed_root, REPORTS_DIR, day), REPORT_NAME)


# ---- line defects and quarantine reasons ---------------------------------------------------------

GOOD = "good"  # the kind of a line the generator wrote without a defect
MALFORMED_JSON = "malformed_json"
WRONG_TYPE = "wrong_type"
MISSING_REQUIRED_FIELD = "missing_required_field"
NEGATIVE_QUANTITY = "negative_quantity"
TIMESTAMP_OUTSIDE_DAY = "timestamp_outside_day"
INVALID_VALUE = "invalid_value"
TOTAL_MISMATCH = "total_mismatch"
DUPLICATE_ORDER_ID = "duplicate_order_id"

# Quarantine reasons, in the order they are checked: a line gets the first that applies.
REASONS = (
    MALFORMED_JSON,
    WRONG_TYPE,
    MISSING_REQUIRED_FIELD,
    NEGATIVE_QUANTITY,
    TIMESTAMP_OUTSIDE_DAY,
    INVALID_VALUE,
    TOTAL_MISMATCH,
)
# The defects the generator injects, in the order of its defect codes (1 + index).
BAD_KINDS = (
    MALFORMED_JSON,
    MISSING_REQUIRED_FIELD,
    WRONG_TYPE,
    NEGATIVE_QUANTITY,
    TIMESTAMP_OUTSIDE_DAY,
    DUPLICATE_ORDER_ID,
)
# What the processor makes of each injected kind: the reason it quarantines the line for, or None
# for a replayed line, which is valid and dropped by the dedupe (the report's duplicates_dropped).
OUTCOME_OF_KIND: dict[str, str | None] = {
    MALFORMED_JSON: MALFORMED_JSON,
    MISSING_REQUIRED_FIELD: MISSING_REQUIRED_FIELD,
    WRONG_TYPE: WRONG_TYPE,
    NEGATIVE_QUANTITY: NEGATIVE_QUANTITY,
    TIMESTAMP_OUTSIDE_DAY: TIMESTAMP_OUTSIDE_DAY,
    DUPLICATE_ORDER_ID: None,
}
# Reasons the generator never injects (invalid_value, total_mismatch): real input's problems.
REASONS_NOT_INJECTED = tuple(r for r in REASONS if r not in OUTCOME_OF_KIND.values())
