"""Job 2: turn one day of raw order JSON lines into validated, deduplicated Parquet tables.

Reads the raw day job 1 wrote (its lines, manifest and success marker) and publishes one partition
per table (orders, order_items, customers, payments, daily_sales), the quarantine (each rejected
line: raw_line, reason, detail, source_file) and the quality report (the counts), written LAST as
the day marker; where each lives is spark_jobs/common/layout.py.

Every line ends up in exactly one place: lines read = valid + quarantined + duplicates dropped
(checked before anything is published). Rerunning a date replaces exactly that date. Readers use
`read_published()`, which refuses a day whose report or a table whose success marker is missing.

The record contract is schemas/raw_order.schema.json (via spark_jobs.common.contract); this module
does not restate it. Each line is parsed once (from_json with the contract's StructType); lines
that Spark could not convert, or that may hold a value Spark silently coerces (a number in a string
field, a string in a number field), are re-read as VARIANT to name the offending path exactly.

Run: spark-submit --py-files spark_jobs.zip spark_jobs/data_processor.py --date D --input I \
         --output O
 or: python -m spark_jobs.data_processor --date D --input I --output O
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql import types as T  # noqa: N812

if __package__ in (None, ""):
    # spark-submit runs this file as a script; the package comes from --py-files or the repo.
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spark_jobs.common.contract import (
    END_OF_INPUT,
    MONEY_TYPE,
    FieldRule,
    field_rules,
    raw_struct_type,
)
from spark_jobs.common.layout import (
    CUSTOMERS_TABLE,
    DAILY_SALES_TABLE,
    INVALID_VALUE,
    MALFORMED_JSON,
    MANIFEST_NAME,
    MISSING_REQUIRED_FIELD,
    NEGATIVE_QUANTITY,
    ORDER_ITEMS_TABLE,
    ORDERS_TABLE,
    PAYMENTS_TABLE,
    QUARANTINE_TABLE,
    REASONS,
    TIMESTAMP_OUTSIDE_DAY,
    TOTAL_MISMATCH,
    WRONG_TYPE,
    manifest_path,
    parse_day,
    raw_day_dir,
    raw_success_path,
    report_path,
    table_day_dir,
    table_success_path,
)
from spark_jobs.common.session import (
    cached_view,
    default_parallelism,
    end_job_session,
    job_session,
    run_concurrently,
    session_conf,
)
from spark_jobs.common.storage import Storage

log = logging.getLogger("data_processor")

CORRUPT_COLUMN = "_corrupt_record"
# While process_day runs: its cache (one day of checked lines, read by every table's write) is
# kept uncompressed: compressing and decompressing it cost more CPU than it saved, on 2 cores
# where the job is CPU-bound (docs/performance.md).
CACHE_CONF = {"spark.sql.inMemoryColumnarStorage.compressed": "false"}
# Strict JSON: single-quoted strings are not JSON (Spark allows them by default).
JSON_OPTIONS = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT_COLUMN,
    "allowSingleQuotes": "false",
    # NaN / Infinity are not JSON numbers.
    "allowNonNumericNumbers": "false",
}
# Java regexes (Spark's rlike): \z, not $, which also matches before a final line break.
RFC3339_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\z"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}\z"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+\z"
FORMAT_PATTERNS = {"date-time": RFC3339_DATE_TIME, "date": ISO_DATE, "email": EMAIL}
INTEGER_VARIANT_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")
SUM_TYPE = T.DecimalType(38, 2)
MONEY_STEP = 0.01  # the contract's multipleOf for money (mapped to MONEY_TYPE)
HALF_CENT = 0.005
JOIN_SEPARATOR = "\u001f"  # joins an array's strings for one regex; no id contains it
NOT_AN_OBJECT = "$ (the line is not an object)"
UNNAMED_PROBLEM = "record: fails the contract's combined check; no single check names a field"
# Columns check_lines keeps only for lines that failed the all-rules test.
FAILED_ONLY = ("value", "source_file", "_raw", "_corrupt")


class InputMissingError(FileNotFoundError):
    """The raw directory for the date does not exist."""


class InputIncompleteError(RuntimeError):
    """The raw directory exists but its success marker does not (the generator has not finished)."""


class ReconciliationError(RuntimeError):
    """Lines were lost or double counted between reading and publishing."""


class NotPublishedError(RuntimeError):
    """A reader asked for a day or table whose marker is missing."""


# ---- validation ----------------------------------------------------------------------------------


def _contract_rules() -> list[FieldRule]:
    rules = field_rules()
    for rule in rules:
        if rule.path.count("[]") > 1:
            raise ValueError(f"contract path {rule.path}: arrays inside arrays are not supported")
    return rules


def _typed_get(base: Column, relative_path: str) -> Column:
    col = base
    for name in relative_path.split("."):
        col = col.getField(name)
    return col


def _variant_get(base: Column, relative_path: str) -> Column:
    return F.try_variant_get(base, "$." + relative_path, "variant")


def _variant_absent(value: Column) -> Column:
    # SQL NULL: key absent; VOID: JSON null. Both count as "not there".
    kind = F.schema_of_variant(value)
    return kind.isNull() | (kind == F.lit("VOID"))


def _variant_type_ok(value: Column, json_type: str) -> Column:
    """True when a VARIANT value has the JSON type the contract asks for (or is absent)."""
    kind = F.schema_of_variant(value)
    # Only the asked type's condition is built: each Column call is a round trip to the JVM.
    if json_type == "string":
        ok = kind == F.lit("STRING")
    elif json_type in ("integer", "number"):
        ok = kind.isin(*INTEGER_VARIANT_TYPES) | kind.rlike(r"^DECIMAL\(\d+,0\)$")
        if json_type == "number":
            ok = ok | kind.startswith("DECIMAL") | kind.isin("DOUBLE", "FLOAT")
    elif json_type == "object":
        ok = kind.startswith("OBJECT")
    elif json_type == "array":
        ok = kind.startswith("ARRAY")
    elif json_type == "boolean":
        ok = kind == F.lit("BOOLEAN")
    else:
        raise KeyError(json_type)
    return _variant_absent(value) | ok


def _first_problem(
    rules: Sequence[FieldRule],
    problem: Callable[[FieldRule, Column, Column], Column | None],
    root: Column,
    get: Callable[[Column, str], Column],
    get_array: Callable[[Column, str], Column],
) -> Column:
    """Detail string of the first rule (schema order) whose `problem` is non-null, else NULL.

    `problem(rule, value, path)` returns a detail Column (NULL when fine) or None when the rule
    cannot fail. Fields inside array elements are checked in one pass over the array, and their
    detail names the element: items[2].quantity.
    """
    checks: list[Column] = []
    done_arrays: set[str] = set()
    for rule in rules:
        if not rule.in_array:
            check = problem(rule, get(root, rule.path), F.lit(rule.path))
            if check is not None:
                checks.append(check)
            continue
        array_path, _ = rule.path.split("[]", 1)
        if array_path in done_arrays:
            continue
        done_arrays.add(array_path)
        children = [r for r in rules if r.path.startswith(array_path + "[].")]

        element_problem = _element_problem(children, array_path, problem, get)
        per_element = F.transform(get_array(root, array_path), element_problem)
        checks.append(F.get(F.filter(per_element, lambda d: d.isNotNull()), 0))
    return F.coalesce(*checks) if checks else F.lit(None).cast("string")


def _element_problem(
    children: Sequence[FieldRule],
    array_path: str,
    problem: Callable[[FieldRule, Column, Column], Column | None],
    get: Callable[[Column, str], Column],
) -> Callable[[Column, Column], Column]:
    """The (element, index) -> detail lambda for the fields of one array's elements."""

    def element_problem(x: Column, i: Column) -> Column:
        parts = []
        for child in children:
            name = child.path.split("[].", 1)[1]
            path = F.concat(F.lit(f"{array_path}["), i.cast("string"), F.lit(f"].{name}"))
            check = problem(child, get(x, name), path)
            if check is not None:
                parts.append(check)
        return F.coalesce(*parts) if parts else F.lit(None).cast("string")

    return element_problem


def _invalid_value(rule: FieldRule, value: Column, path: Column) -> Column | None:
    """Detail '<path>: <rule>' when a present, well-typed value breaks an enum/pattern/min rule."""
    conditions: list[tuple[Column, str]] = []
    if rule.enum is not None:
        conditions.append((~value.isin(*rule.enum), "enum"))
    if rule.pattern is not None:
        conditions.append((~value.rlike(rule.pattern), "pattern"))
    if rule.format in FORMAT_PATTERNS:
        conditions.append((~value.rlike(FORMAT_PATTERNS[rule.format]), "format " + rule.format))
    if rule.format == "date-time":
        conditions.append((F.try_to_timestamp(value).isNull(), "format date-time"))
    if rule.format == "date":
        conditions.append((F.try_to_timestamp(value, F.lit("yyyy-MM-dd")).isNull(), "format date"))
    if rule.min_length is not None:
        conditions.append((F.length(value) < rule.min_length, "minLength"))
    if rule.min_items is not None:
        conditions.append((F.size(value) < rule.min_items, "minItems"))
    if rule.minimum is not None:
        conditions.append((value < F.lit(rule.minimum), "minimum"))
    if _is_money(rule):
        conditions.append((~_exact_money(value), "multipleOf"))
    if not conditions:
        return None
    details = [
        F.when(value.isNotNull() & cond, F.concat(path, F.lit(": " + name)))
        for cond, name in conditions
    ]
    return F.coalesce(*details)


def parse_and_validate(lines: DataFrame, day: str | date) -> DataFrame:
    """Parse each raw line once and decide its fate.

    In:  value (the raw line), source_file.
    Out: order (the contract struct), order_ts (timestamp), line_hash, line_id, reason, detail, and
         raw_line / source_file (kept only for rejected lines, to keep the cached frame small),
         quarantined (a literal per branch: the one column to split on, see split_valid).
    reason is NULL for a valid line, else one of REASONS (the first that applies).

    Money is parsed as DoubleType (Spark's JSON reader turns a string token for a double into a
    corrupt record, while it would quietly read one into a decimal) and converted exactly to
    MONEY_TYPE; in `order`, money inside arrays (items[].unit_price) stays a double that
    build_tables converts. Every line first gets one cheap yes/no test of all rules (`_all_ok`,
    mostly code-generated array functions); only the few lines that fail it pay for the detailed
    checks that name the first offending path, and only corrupt ones are re-read as VARIANT.
    Runs as check_lines (the pass over every line) + with_reasons (details for failing lines);
    process_day caches the first in between. A JSON value of another type in a free-text string
    field (no enum, pattern or format) is kept as its JSON text: Spark reads it so, and finding
    it would mean scanning every line.
    """
    return with_reasons(check_lines(lines, day), day)


def check_lines(lines: DataFrame, day: str | date) -> DataFrame:
    """The one pass over every line: parse once, test every rule at once (`_ok`).

    Out: order, order_ts, line_hash, line_id (unique per line of this read), _ok, and for lines
    that failed (NULL otherwise) value, source_file, _raw (the parsed record, money as doubles)
    and _corrupt.
    """
    day = parse_day(day)
    rules = _contract_rules()
    struct = raw_struct_type()
    parse_struct = _with_double_money(struct)
    parse_schema = T.StructType(
        [*parse_struct.fields, T.StructField(CORRUPT_COLUMN, T.StringType())]
    )
    start_us, end_us = _day_bounds_us(day)
    parsed = lines.select(
        "value",
        "source_file",
        F.from_json("value", parse_schema, JSON_OPTIONS).alias("_p"),
    )
    p = F.col("_p")
    raw = F.when(
        p.isNotNull(), F.struct(*[p.getField(f.name).alias(f.name) for f in struct.fields])
    )
    staged = parsed.select(
        "value",
        "source_file",
        raw.alias("_raw"),
        F.try_to_timestamp(p.getField("order_ts")).alias("order_ts"),
        (
            p.isNull() | p.getField(CORRUPT_COLUMN).isNotNull() | ~_one_json_value(F.col("value"))
        ).alias("_corrupt"),
    )
    ok = ~F.col("_corrupt") & _all_ok(rules, F.col("_raw"), F.col("order_ts"), start_us, end_us)
    checked = staged.select("*", ok.alias("_ok"))
    failed = ~F.col("_ok")
    return checked.select(
        _money_typed(F.col("_raw"), struct).alias("order"),
        "order_ts",
        F.xxhash64("value").alias("line_hash"),
        # Tells byte-identical lines apart (a replayed line); stable for one read of the files.
        F.monotonically_increasing_id().alias("line_id"),
        "_ok",
        *[F.when(failed, F.col(name)).alias(name) for name in FAILED_ONLY],
    )


def with_reasons(checked: DataFrame, day: str | date) -> DataFrame:
    """check_lines' output with reason and detail: NULL for lines that passed; for the others
    the first check that finds something (only these few lines pay for the details)."""
    return rejected_lines(checked, day).unionByName(passed_lines(checked))


def passed_lines(checked: DataFrame) -> DataFrame:
    """The lines of check_lines' output that passed, in with_reasons' columns."""
    no_reason = F.lit(None).cast("string")
    return checked.where(F.col("_ok")).select(
        "order",
        "order_ts",
        "line_hash",
        "line_id",
        no_reason.alias("reason"),
        no_reason.alias("detail"),
        no_reason.alias("raw_line"),
        no_reason.alias("source_file"),
        F.lit(False).alias("quarantined"),
    )


def rejected_lines(checked: DataFrame, day: str | date) -> DataFrame:
    """The lines of check_lines' output that failed, each with its reason and detail."""
    day = parse_day(day)
    rules = _contract_rules()
    start_us, end_us = _day_bounds_us(day)
    # Separate projections so the VARIANT is parsed once per line, not once per use.
    failed = checked.where(~F.col("_ok")).select("*", _suspicious(rules).alias("_suspicious"))
    failed = failed.select("*", F.when(F.col("_suspicious"), F.try_parse_json("value")).alias("_v"))
    failed = failed.select("*", _detail_struct(rules, day, start_us, end_us).alias("_ds"))
    # A line that failed _all_ok is never published: if no detailed check names a field (the
    # two disagree: a bug), it is still quarantined, saying so.
    reason = F.lit(INVALID_VALUE)
    detail = F.lit(UNNAMED_PROBLEM)
    for n, name in reversed(list(enumerate(_CHECK_REASONS))):
        found = F.col("_ds").getField(f"d{n}")
        reason = F.when(found.isNotNull(), F.lit(name)).otherwise(reason)
        detail = F.when(found.isNotNull(), found).otherwise(detail)
    return failed.select(
        "order",
        "order_ts",
        "line_hash",
        "line_id",
        reason.alias("reason"),
        detail.alias("detail"),
        F.col("value").alias("raw_line"),
        "source_file",
        F.lit(True).alias("quarantined"),
    )


def _one_json_value(line: Column) -> Column:
    """False when the line holds more than one JSON value (or nothing parseable).

    Spark's JSON functions read a line's first value and ignore the rest, so `{order} x` and
    `{order}{order}` would pass as the first order. Inside an array a single value gives one
    element with "]" and two with ",0]"; text after the value breaks at least one of the two.
    """
    one = F.json_array_length(F.concat(F.lit("["), line, F.lit("]"))) == 1
    two = F.json_array_length(F.concat(F.lit("["), line, F.lit(",0]"))) == 2
    return F.coalesce(one & two, F.lit(False))


def _day_bounds_us(day: date) -> tuple[int, int]:
    """[start, end) of the UTC day in microseconds since the epoch."""
    start_us = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1_000_000)
    return start_us, start_us + 86_400 * 1_000_000


# The detailed checks, in order: a line gets the reason of the first that finds something.
_CHECK_REASONS = (
    MALFORMED_JSON,
    # Wrong types first: a value of the wrong type also hides the fields below it.
    WRONG_TYPE,
    MISSING_REQUIRED_FIELD,
    INVALID_VALUE,  # a number the contract's types cannot hold
    NEGATIVE_QUANTITY,
    TIMESTAMP_OUTSIDE_DAY,
    INVALID_VALUE,
    TOTAL_MISMATCH,
)


def _with_double_money(data_type: T.DataType) -> T.DataType:
    """The parse type: the contract's type with every decimal (money) read as a double."""
    if isinstance(data_type, T.StructType):
        return T.StructType(
            [T.StructField(f.name, _with_double_money(f.dataType), True) for f in data_type.fields]
        )
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(_with_double_money(data_type.elementType), True)
    if isinstance(data_type, T.DecimalType):
        return T.DoubleType()
    return data_type


def _money_typed(value: Column, data_type: T.DataType) -> Column:
    """`value` (parsed with doubles) with money as decimals, outside arrays (NULL if it does not
    fit); a struct without money is passed through as it is."""
    if isinstance(data_type, T.DecimalType):
        return value.try_cast(data_type)
    if isinstance(data_type, T.StructType) and _has_decimal_outside_arrays(data_type):
        fields = [_money_typed(value.getField(f.name), f.dataType) for f in data_type.fields]
        return F.when(
            value.isNotNull(),
            F.struct(*[c.alias(f.name) for c, f in zip(fields, data_type.fields, strict=True)]),
        )
    return value


def _has_decimal_outside_arrays(data_type: T.DataType) -> bool:
    if isinstance(data_type, T.DecimalType):
        return True
    if isinstance(data_type, T.StructType):
        return any(_has_decimal_outside_arrays(f.dataType) for f in data_type.fields)
    return False


def _is_money(rule: FieldRule) -> bool:
    return rule.json_type == "number" and rule.multiple_of == MONEY_STEP


def _exact_money(value: Column) -> Column:
    """True when a double is a whole number of cents that fits MONEY_TYPE (or is NULL)."""
    # Spark converts a double through its shortest decimal text, so 1.10 stays 1.10 and
    # 1.255 becomes 1.26, which differs from 1.255 as a double.
    return value.try_cast(MONEY_TYPE).cast("double").eqNullSafe(value)


def _array_has_no_null(values: Column, rule: FieldRule) -> Column:
    """False when an array holds a NULL (or is NULL), without a lambda per element."""
    # array_contains is NULL when the value is absent and an element is NULL; the sentinel
    # is a value the contract rejects anyway, so finding it only sends the line to the details.
    if rule.json_type == "integer":
        return F.array_contains(values, F.lit(-(2**63))).eqNullSafe(False)
    if rule.json_type == "number":
        return F.array_contains(values, F.lit(float("nan"))).eqNullSafe(False)
    if rule.json_type == "string":
        return F.array_contains(values, F.lit("\u0000")).eqNullSafe(False)
    return F.forall(values, lambda x: x.isNotNull()).eqNullSafe(True)


def _all_ok(
    rules: Sequence[FieldRule], raw: Column, order_ts: Column, start_us: int, end_us: int
) -> Column:
    """One boolean per line: every rule holds (no false positives: a TRUE line is valid).

    A FALSE only sends the line to the detailed checks, so these may be stricter than the rules
    (e.g. a product id containing the join separator) but never looser.
    """
    checks: list[Column] = []
    for rule in rules:
        if rule.in_array:
            array_path, name = rule.path.split("[].", 1)
            checks.append(_array_rule_ok(rule, _typed_get(raw, array_path).getField(name)))
            continue
        value = _typed_get(raw, rule.path)
        conditions = _value_conditions(rule, value)
        if conditions:
            checks.append(value.isNull() | _all(conditions))
        if rule.required:
            checks.append(value.isNotNull())
    inside_day = (F.unix_micros(order_ts) >= start_us) & (F.unix_micros(order_ts) < end_us)
    checks.append(F.coalesce(inside_day, F.lit(True)))
    items = raw.getField("items")
    items_sum = F.aggregate(
        items, F.lit(0.0), lambda acc, x: acc + x.getField("quantity") * x.getField("unit_price")
    )
    # Cents summed as doubles are off by far less than half a cent; the exact (decimal) sum
    # is computed for the detail of the lines that fail.
    checks.append(F.abs(items_sum - raw.getField("total_amount")) < F.lit(HALF_CENT))
    return F.coalesce(_all(checks), F.lit(False))


def _all(conditions: Sequence[Column]) -> Column:
    result = conditions[0]
    for condition in conditions[1:]:
        result = result & condition
    return result


def _value_conditions(rule: FieldRule, value: Column) -> list[Column]:
    """What must hold for a present value of one rule (the cheap form of _invalid_value)."""
    conditions: list[Column] = []
    if rule.enum is not None:
        conditions.append(value.isin(*rule.enum))
    if rule.pattern is not None:
        conditions.append(value.rlike(rule.pattern))
    if rule.format in FORMAT_PATTERNS:
        conditions.append(value.rlike(FORMAT_PATTERNS[rule.format]))
    if rule.format == "date-time":
        conditions.append(F.try_to_timestamp(value).isNotNull())
    if rule.format == "date":
        conditions.append(F.try_to_timestamp(value, F.lit("yyyy-MM-dd")).isNotNull())
    if rule.min_length is not None:
        conditions.append(F.length(value) >= rule.min_length)
    if rule.min_items is not None:
        conditions.append(F.size(value) >= rule.min_items)
    if rule.minimum is not None:
        conditions.append(value >= F.lit(rule.minimum))
    if _is_money(rule):
        conditions.append(_exact_money(value))
    return conditions


def _array_rule_ok(rule: FieldRule, values: Column) -> Column:
    """One array element field (items[].quantity as an array of quantities) obeys its rule."""
    checks: list[Column] = []
    if rule.required:
        checks.append(_array_has_no_null(values, rule))
    if rule.minimum is not None:
        checks.append(F.coalesce(F.array_min(values) >= F.lit(rule.minimum), F.lit(True)))
    if _is_money(rule):
        array_of_money = T.ArrayType(MONEY_TYPE)
        exact = values.try_cast(array_of_money).cast(T.ArrayType(T.DoubleType()))
        checks.append(exact.eqNullSafe(values))
    pattern = rule.pattern
    joinable = pattern is not None and pattern[:1] == "^" and pattern.endswith(END_OF_INPUT)
    if joinable and "|" not in pattern:
        # One regex over the joined values instead of a lambda per element.
        one = f"(?:{pattern[1 : -len(END_OF_INPUT)]})"
        joined = F.array_join(values, JOIN_SEPARATOR)
        separators = F.length(joined) - F.length(F.replace(joined, F.lit(JOIN_SEPARATOR)))
        every = f"^{one}(?:{JOIN_SEPARATOR}{one})*{END_OF_INPUT}"
        checks.append(joined.rlike(every) & (separators == F.size(values) - 1))
    elif pattern is not None or rule.enum is not None or rule.format or rule.min_length:
        others = replace(rule, pattern=pattern if not joinable else None, minimum=None)
        checks.append(
            F.forall(
                values, lambda x: x.isNull() | _all(_value_conditions(others, x) or [F.lit(True)])
            )
        )
    return F.coalesce(_all(checks), F.lit(False)) if checks else F.lit(True)


def _suspicious(rules: Sequence[FieldRule]) -> Column:
    """Lines that get the exact (VARIANT) type check: corrupt ones, and those with money that
    Spark read as a double but that does not fit MONEY_TYPE (NaN, a string "NaN", too large)."""
    raw = F.col("_raw")
    order = F.col("order")
    money_unfit = []
    for rule in rules:
        if not _is_money(rule):
            continue
        if rule.in_array:
            array_path, name = rule.path.split("[].", 1)
            values = _typed_get(raw, array_path).getField(name)
            money_unfit.append(
                F.exists(values, lambda x: x.isNotNull() & x.try_cast(MONEY_TYPE).isNull())
            )
        else:
            money_unfit.append(
                _typed_get(raw, rule.path).isNotNull() & _typed_get(order, rule.path).isNull()
            )
    return F.coalesce(F.col("_corrupt") | _any(money_unfit), F.lit(True))


def _detail_struct(rules: Sequence[FieldRule], day: date, start_us: int, end_us: int) -> Column:
    """For a line that failed _all_ok: struct(d0..d7), each the detail of one check or NULL."""
    raw = F.col("_raw")
    order = F.col("order")
    corrupt = F.col("_corrupt")

    suspicious = F.col("_suspicious")
    variant = F.col("_v")
    variant_array = lambda root, path: F.try_variant_get(  # noqa: E731
        root, "$." + path, "array<variant>"
    )

    def typed_missing(rule: FieldRule, value: Column, path: Column) -> Column | None:
        return F.when(value.isNull(), path) if rule.required else None

    def variant_missing(rule: FieldRule, value: Column, path: Column) -> Column | None:
        return F.when(_variant_absent(value), path) if rule.required else None

    def variant_wrong_type(rule: FieldRule, value: Column, path: Column) -> Column | None:
        return F.when(~_variant_type_ok(value, rule.json_type), path)

    missing = F.when(
        suspicious,
        _first_problem(rules, variant_missing, variant, _variant_get, variant_array),
    ).otherwise(_first_problem(rules, typed_missing, raw, _typed_get, _typed_get))

    root_kind = F.schema_of_variant(variant)
    not_object = F.when(corrupt & ~root_kind.startswith("OBJECT"), F.lit(NOT_AN_OBJECT))
    wrong_type = F.when(
        suspicious,
        F.coalesce(
            not_object,
            _first_problem(rules, variant_wrong_type, variant, _variant_get, variant_array),
        ),
    )

    def does_not_fit(rule: FieldRule, value: Column, path: Column) -> Column | None:
        if rule.json_type not in ("number", "integer"):
            return None
        return F.when(~_variant_absent(value), F.concat(path, F.lit(": does not fit the contract")))

    # A line with no wrong type left: a number Spark could not hold (e.g. > 10^10).
    overflow = F.when(
        suspicious,
        F.coalesce(
            _first_problem_typed_null(rules, does_not_fit, variant),
            F.lit("record: does not fit the contract's types"),
        ),
    )

    items = raw.getField("items")
    negative = F.get(
        F.filter(
            F.transform(
                items,
                lambda x, i: F.when(
                    x.getField("quantity") < 0,
                    F.concat(F.lit("items["), i.cast("string"), F.lit("].quantity")),
                ),
            ),
            lambda d: d.isNotNull(),
        ),
        0,
    )
    order_ts = F.col("order_ts")
    outside_day = F.when(
        order_ts.isNotNull()
        & ((F.unix_micros(order_ts) < start_us) | (F.unix_micros(order_ts) >= end_us)),
        F.concat(F.lit(f"order_ts: not inside {day.isoformat()} (UTC): "), raw.order_ts),
    )
    invalid = _first_problem(rules, _invalid_value, raw, _typed_get, _typed_get)
    items_sum = F.aggregate(
        items,
        F.lit(0).cast(SUM_TYPE),
        lambda acc, x: F.try_add(
            acc,
            F.try_multiply(x.getField("quantity"), x.getField("unit_price").try_cast(MONEY_TYPE)),
        ).cast(SUM_TYPE),
    )
    total = order.getField("total_amount")
    mismatch = F.when(
        ~total.eqNullSafe(items_sum),
        F.concat(
            F.lit("total_amount="),
            total.cast("string"),
            F.lit(", sum(quantity*unit_price)="),
            items_sum.cast("string"),
        ),
    )
    checks = [
        F.when(corrupt & variant.isNull(), F.lit("not parseable JSON")).when(
            corrupt & ~_one_json_value(F.col("value")),
            F.lit("not parseable JSON: text after the JSON value"),
        ),
        wrong_type,
        missing,
        overflow,
        negative,
        outside_day,
        invalid,
        mismatch,
    ]
    return F.struct(*[check.alias(f"d{n}") for n, check in enumerate(checks)])


def _any(conditions: Sequence[Column]) -> Column:
    result = F.lit(False)
    for condition in conditions:
        result = result | condition
    return result


def _first_problem_typed_null(
    rules: Sequence[FieldRule],
    problem: Callable[[FieldRule, Column, Column], Column | None],
    variant: Column,
) -> Column:
    """Like _first_problem on the VARIANT, restricted to paths that are NULL after typed parsing."""
    order = F.col("order")

    def wrapped(rule: FieldRule, value: Column, path: Column) -> Column | None:
        check = problem(rule, value, path)
        if check is None or rule.in_array:
            # Inside arrays the line-level fallback detail is used instead.
            return None
        return F.when(_typed_get(order, rule.path).isNull(), check)

    return _first_problem(
        rules,
        wrapped,
        variant,
        _variant_get,
        lambda root, path: F.try_variant_get(root, "$." + path, "array<variant>"),
    )


# ---- splitting, dedupe, tables -------------------------------------------------------------------


def split_valid(validated: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(valid: order, order_ts, line_hash, line_id; quarantine: raw_line, reason, detail,
    source_file)."""
    # On the literal flag, not on reason: a filter on reason would be pushed into the detailed
    # checks' projections and copy them once per reference (Spark 4.0's optimizer, SPARK-47672:
    # minutes and gigabytes on an uncached frame); the flag is a constant in each branch.
    valid = validated.where(~F.col("quarantined")).select(
        "order", "order_ts", "line_hash", "line_id"
    )
    quarantine = validated.where(F.col("quarantined")).select(
        "raw_line", "reason", "detail", "source_file"
    )
    return valid, quarantine


def deduplicate(valid: DataFrame) -> tuple[DataFrame, int]:
    """One line per order_id (latest order_ts, then smallest line hash): (kept, dropped count)."""
    order_id = F.col("order").getField("order_id")
    repeated = (
        valid.groupBy(order_id.alias("_order_id"))
        .agg(*_group_aggregates())
        .where(F.col("_n") > 1)
        .collect()
    )
    winners, dropped = _winners(repeated)
    return keep_winners(valid, winners), dropped


def _group_aggregates() -> list[Column]:
    """Per group: its lines (_n) and the line_id the dedupe keeps (_winner): of the lines of one
    order_id, the latest order_ts, then the smallest line hash, then (byte-identical lines) the
    first read."""
    order_ts = F.col("order_ts")
    rank = F.struct(
        order_ts.isNull(), -F.unix_micros(order_ts), F.col("line_hash"), F.col("line_id")
    )
    return [F.count(F.lit(1)).alias("_n"), F.min_by("line_id", rank).alias("_winner")]


def _winners(repeated: Sequence[Any]) -> tuple[list[tuple[str, int]], int]:
    """(order_id, winning line_id) pairs and the lines dropped, from rows of repeated order ids."""
    winners = [(row["_order_id"], row["_winner"]) for row in repeated]
    return winners, sum(row["_n"] - 1 for row in repeated)


def keep_winners(valid: DataFrame, winners: Sequence[tuple[str, int]]) -> DataFrame:
    """`valid` without the losing lines of repeated order ids, given (order_id, winning line_id)
    pairs: one scan with a broadcast join of the (few) repeated ids."""
    if not winners:
        return valid
    chosen = F.broadcast(
        valid.sparkSession.createDataFrame(list(winners), "_order_id string, _winner long")
    )
    joined = valid.join(chosen, F.col("order").getField("order_id") == chosen["_order_id"], "left")
    keep = F.col("_winner").isNull() | (F.col("line_id") == F.col("_winner"))
    return joined.where(keep).select(*valid.columns)


def tally(validated: DataFrame) -> tuple[dict[str | None, int], list[tuple[str, int]], int]:
    """One aggregation over parse_and_validate's output: lines per reason (None = valid), the
    winning line of each order_id that valid lines repeat, and how many lines the dedupe drops.

    The same answers as reason_counts and deduplicate, in one pass instead of two."""
    order_id = F.when(F.col("reason").isNull(), F.col("order").getField("order_id"))
    keyed = validated.select(
        "reason", order_id.alias("_order_id"), "order_ts", "line_hash", "line_id"
    )
    by_reason, by_order_id = 1, 2  # grouping_id(): a set bit marks a column left out
    rows = (
        keyed.groupingSets([["reason"], ["_order_id"]], "reason", "_order_id")
        .agg(F.grouping_id().alias("_set"), *_group_aggregates())
        .where((F.col("_set") == by_reason) | (F.col("_order_id").isNotNull() & (F.col("_n") > 1)))
        .collect()
    )
    counts = {row["reason"]: row["_n"] for row in rows if row["_set"] == by_reason}
    winners, dropped = _winners([row for row in rows if row["_set"] == by_order_id])
    return counts, winners, dropped


def build_tables(kept: DataFrame, day: str | date) -> dict[str, DataFrame]:
    """The published tables of one day from deduplicated valid lines (order, order_ts)."""
    day = parse_day(day)
    o = F.col("order")
    customer = o.getField("customer")
    address = customer.getField("address")
    payment = o.getField("payment")
    items = o.getField("items")

    orders = kept.select(
        o.order_id.alias("order_id"),
        F.col("order_ts"),
        F.lit(day).alias("order_date"),
        o.status.alias("status"),
        o.channel.alias("channel"),
        o.currency.alias("currency"),
        customer.customer_id.alias("customer_id"),
        payment.payment_id.alias("payment_id"),
        payment.method.alias("payment_method"),
        payment.status.alias("payment_status"),
        F.size(items).alias("item_count"),
        F.aggregate(items, F.lit(0).cast("long"), lambda acc, x: acc + x.quantity).alias(
            "total_quantity"
        ),
        o.total_amount.alias("total_amount"),
    )
    order_items = kept.select(
        o.order_id.alias("order_id"),
        F.col("order_ts"),
        o.currency.alias("currency"),
        F.explode(items).alias("item"),
    ).select(
        "order_id",
        F.col("item.line_no").alias("line_no"),
        F.col("item.product_id").alias("product_id"),
        F.col("item.product_name").alias("product_name"),
        F.col("item.category").alias("category"),
        F.col("item.quantity").alias("quantity"),
        # items[].unit_price is a double in the cache (cheaper checks); publish it as money.
        F.col("item.unit_price").cast(MONEY_TYPE).alias("unit_price"),
        (F.col("item.quantity") * F.col("item.unit_price").cast(MONEY_TYPE))
        .cast(MONEY_TYPE)
        .alias("line_amount"),
        "currency",
        "order_ts",
    )
    # A customer orders several times a day: keep the details of their latest order.
    latest = F.max_by(
        F.struct(
            customer.getField("name").alias("name"),
            customer.getField("email").alias("email"),
            customer.getField("phone").alias("phone"),
            F.try_to_timestamp(customer.getField("signup_date"), F.lit("yyyy-MM-dd"))
            .cast("date")
            .alias("signup_date"),
            address.getField("street").alias("street"),
            address.getField("city").alias("city"),
            address.getField("postcode").alias("postcode"),
            address.getField("country").alias("country"),
        ),
        F.struct(F.col("order_ts"), o.order_id),
    )
    customers = (
        kept.groupBy(customer.customer_id.alias("customer_id"))
        .agg(
            latest.alias("c"),
            F.count(F.lit(1)).alias("orders"),
            F.min("order_ts").alias("first_order_ts"),
            F.max("order_ts").alias("last_order_ts"),
        )
        .select("customer_id", "c.*", "orders", "first_order_ts", "last_order_ts")
    )
    payments = kept.select(
        payment.payment_id.alias("payment_id"),
        o.order_id.alias("order_id"),
        payment.method.alias("method"),
        payment.status.alias("status"),
        payment.amount.alias("amount"),
        o.currency.alias("currency"),
        F.col("order_ts"),
    )
    daily_sales = (
        orders.groupBy(
            "currency", "status", F.coalesce("channel", F.lit("unknown")).alias("channel")
        )
        .agg(
            F.count(F.lit(1)).alias("orders"),
            F.countDistinct("customer_id").alias("customers"),
            F.sum("item_count").alias("order_lines"),
            F.sum("total_quantity").alias("units"),
            F.sum("total_amount").cast(T.DecimalType(18, 2)).alias("revenue"),
        )
        .select(
            F.lit(day).alias("sales_date"),
            "currency",
            "status",
            "channel",
            "orders",
            "customers",
            "order_lines",
            "units",
            "revenue",
            F.round(F.col("revenue") / F.col("orders"), 2)
            .cast(MONEY_TYPE)
            .alias("avg_order_value"),
        )
        .coalesce(1)
    )
    return {
        ORDERS_TABLE: orders,
        ORDER_ITEMS_TABLE: order_items,
        # One file, but not one task for the aggregation: coalesce(1) would run the merge of
        # every order's max_by in a single task, on one core.
        CUSTOMERS_TABLE: customers.repartition(1),
        PAYMENTS_TABLE: payments,
        DAILY_SALES_TABLE: daily_sales,
    }


def reason_counts(validated: DataFrame) -> dict[str | None, int]:
    """Lines per reason (None = valid), in one aggregation over the validated frame."""
    rows = validated.groupBy("reason").agg(F.count(F.lit(1)).alias("n")).collect()
    return {row["reason"]: row["n"] for row in rows}


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


# ---- the job -------------------------------------------------------------------------------------


def process_day(
    spark: SparkSession,
    input_uri: str,
    output_uri: str,
    day: str | date,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Validate, dedupe and publish one day; returns the quality report (also written last)."""
    day = parse_day(day)
    storage = storage or Storage(spark)
    started = time.monotonic()
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

    with session_conf(spark, CACHE_CONF), contextlib.ExitStack() as cached:
        checked = cached.enter_context(
            cached_view(check_lines(storage.read_lines(raw_dir), day), "checked_lines")
        )
        # The detailed checks are one large expression: evaluate (and compile) them once.
        rejected = cached.enter_context(cached_view(rejected_lines(checked, day), "rejected"))
        validated = rejected.unionByName(passed_lines(checked))
        counts, winners, dropped = tally(validated)
        valid, quarantine = split_valid(validated)
        kept = keep_winners(valid, winners)
        # Before anything is replaced: the manifest agrees and no line is unaccounted for.
        quality_report(day, counts, dropped, {}, manifest)
        tables = build_tables(kept, day)
        tables[QUARANTINE_TABLE] = quarantine.coalesce(1)
        table_rows = _publish(storage, output_uri, day, tables)
        # Again with the rows actually written; the day stays unpublished if they disagree.
        report = quality_report(day, counts, dropped, table_rows, manifest)
        report["seconds"] = round(time.monotonic() - started, 1)
        # The report is the day marker: written last, after every table and its success marker.
        storage.write_text(report_path(output_uri, day), json.dumps(report, indent=2) + "\n")
    log.info("published %s: %s", day, json.dumps(report))
    return report


def _publish(
    storage: Storage, output_uri: str, day: date, tables: dict[str, DataFrame]
) -> dict[str, int]:
    """Unpublish the day, replace each table's partition, then mark each table done.

    Returns the rows written per table, counted by the writes themselves (no read-back)."""
    storage.delete(report_path(output_uri, day))
    for name in tables:
        storage.delete(table_success_path(output_uri, name, day))

    def write(name: str, df: DataFrame) -> int:
        written = Observation(f"{name}_rows")
        table_dir = table_day_dir(output_uri, name, day)
        storage.write_parquet(df.observe(written, F.count(F.lit(1)).alias("rows")), table_dir)
        rows = written.get.get("rows")
        if rows is None:
            # A Spark 4.0 Connect server may finish the write before its metrics arrive (the
            # client's result then stays {}): count what the write left, never assume it.
            log.warning("write metrics of %s did not arrive; counting %s", name, table_dir)
            rows = storage.read_parquet(table_dir).count()
        return rows

    rows = run_concurrently(
        storage.spark,
        {name: partial(write, name, df) for name, df in tables.items()},
        max_workers=storage.concurrent_writes(output_uri),
    )
    for name in tables:
        storage.write_text(table_success_path(output_uri, name, day), "")
    return rows


def read_published(
    spark: SparkSession,
    output_uri: str,
    table: str,
    day: str | date,
    storage: Storage | None = None,
) -> DataFrame:
    """One table's partition of a published day; refuses a day without its report or a table
    partition without its success marker (still being written, or its run failed)."""
    day = parse_day(day)
    storage = storage or Storage(spark)
    report = report_path(output_uri, day)
    if not storage.exists(report):
        raise NotPublishedError(
            f"{day} is not published: {report} is missing (data_processor.py has not finished "
            f"or failed for that date); run data_processor.py --date {day} and read again"
        )
    success = table_success_path(output_uri, table, day)
    if not storage.exists(success):
        raise NotPublishedError(
            f"{table} for {day} is not published: {success} is missing; "
            f"re-run data_processor.py --date {day}"
        )
    return storage.read_parquet(table_day_dir(output_uri, table, day))


def build_session(app_name: str = "data_processor") -> SparkSession:
    """The job's SparkSession: UTC, small shuffles (one day of orders is a few GB at most)."""
    session = job_session(app_name)
    session.conf.set("spark.sql.session.timeZone", "UTC")
    if session.conf.get("spark.sql.shuffle.partitions") == "200":
        # Spark's default of 200 is for clusters; AQE still coalesces what is left over.
        parallelism = default_parallelism(session)
        session.conf.set("spark.sql.shuffle.partitions", str(max(4, 2 * parallelism)))
    return session


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", required=True, help="the day to process, YYYY-MM-DD")
    parser.add_argument("--input", required=True, help="raw root URI, e.g. s3://bucket/raw")
    parser.add_argument("--output", required=True, help="processed root URI")
    args = parser.parse_args(argv)
    try:
        day = parse_day(args.date)
    except ValueError as exc:
        parser.error(str(exc))  # one line and exit code 2, before any Spark
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    spark = build_session()
    try:
        report = process_day(spark, args.input, args.output, day)
    finally:
        end_job_session(spark)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
