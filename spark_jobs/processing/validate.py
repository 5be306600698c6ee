"""Parse each raw line once and decide its fate: valid, or quarantined with a reason and a detail.

`validate` runs `check_lines` (the one pass over every line: parse, then one yes/no test of every
rule) and `rejected_lines` (the detailed checks, for the few lines that failed it), with the
passed lines beside them. `split_valid` then separates the two.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql import types as T  # noqa: N812

from spark_jobs.common.contract import raw_struct_type
from spark_jobs.common.layout import INVALID_VALUE, parse_day
from spark_jobs.processing.details import CHECK_REASONS, detail_struct, suspicious
from spark_jobs.processing.rules import all_ok, contract_rules, day_bounds_us, one_json_value

CORRUPT_COLUMN = "_corrupt_record"
# Strict JSON: single-quoted strings are not JSON (Spark allows them by default).
JSON_OPTIONS = {
    "mode": "PERMISSIVE",
    "columnNameOfCorruptRecord": CORRUPT_COLUMN,
    "allowSingleQuotes": "false",
    # NaN / Infinity are not JSON numbers.
    "allowNonNumericNumbers": "false",
}
# Columns check_lines keeps only for lines that failed the all-rules test.
FAILED_ONLY = ("value", "source_file", "_raw", "_corrupt")
UNNAMED_PROBLEM = "record: fails the contract's combined check; no single check names a field"

# cache(df, name) -> a DataFrame that reads df once computed (process_day's cached views).
Cache = Callable[[DataFrame, str], DataFrame]


def validate(lines: DataFrame, day: str | date, cache: Cache | None = None) -> DataFrame:
    """Parse each raw line once and decide its fate.

    In:  value (the raw line), source_file.
    Out: order (the contract struct), order_ts (timestamp), line_hash, line_id, reason, detail, and
         raw_line / source_file (kept only for rejected lines, to keep the cached frame small),
         quarantined (a literal per branch: the one column to split on, see split_valid).
    reason is NULL for a valid line, else one of layout.REASONS (the first that applies).

    Money is parsed as DoubleType (Spark's JSON reader turns a string token for a double into a
    corrupt record, while it would quietly read one into a decimal) and converted exactly to
    MONEY_TYPE; in `order`, money inside arrays (items[].unit_price) stays a double that
    build_tables converts. Every line first gets one cheap yes/no test of all rules (`all_ok`,
    mostly code-generated array functions); only the few lines that fail it pay for the detailed
    checks that name the first offending path, and only corrupt ones are re-read as VARIANT.
    `cache` keeps the pass over every line and the detailed checks computed once each. A JSON
    value of another type in a free-text string field (no enum, pattern or format) is kept as
    its JSON text: Spark reads it so, and finding it would mean scanning every line.
    """
    keep = cache or (lambda df, _name: df)
    checked = keep(check_lines(lines, day), "checked_lines")
    # The detailed checks are one large expression: evaluate (and compile) them once.
    rejected = keep(rejected_lines(checked, day), "rejected")
    return rejected.unionByName(passed_lines(checked))


def check_lines(lines: DataFrame, day: str | date) -> DataFrame:
    """The one pass over every line: parse once, test every rule at once (`_ok`).

    Out: order, order_ts, line_hash, line_id (unique per line of this read), _ok, and for lines
    that failed (NULL otherwise) value, source_file, _raw (the parsed record, money as doubles)
    and _corrupt.
    """
    day = parse_day(day)
    rules = contract_rules()
    struct = raw_struct_type()
    parse_struct = _with_double_money(struct)
    parse_schema = T.StructType(
        [*parse_struct.fields, T.StructField(CORRUPT_COLUMN, T.StringType())]
    )
    start_us, end_us = day_bounds_us(day)
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
            p.isNull() | p.getField(CORRUPT_COLUMN).isNotNull() | ~one_json_value(F.col("value"))
        ).alias("_corrupt"),
    )
    ok = ~F.col("_corrupt") & all_ok(rules, F.col("_raw"), F.col("order_ts"), start_us, end_us)
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


def passed_lines(checked: DataFrame) -> DataFrame:
    """The lines of check_lines' output that passed, in validate's columns."""
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
    rules = contract_rules()
    start_us, end_us = day_bounds_us(day)
    # Separate projections so the VARIANT is parsed once per line, not once per use.
    failed = checked.where(~F.col("_ok")).select("*", suspicious(rules).alias("_suspicious"))
    failed = failed.select("*", F.when(F.col("_suspicious"), F.try_parse_json("value")).alias("_v"))
    failed = failed.select("*", detail_struct(rules, day, start_us, end_us).alias("_ds"))
    # A line that failed all_ok is never published: if no detailed check names a field (the
    # two disagree: a bug), it is still quarantined, saying so.
    reason = F.lit(INVALID_VALUE)
    detail = F.lit(UNNAMED_PROBLEM)
    for n, name in reversed(list(enumerate(CHECK_REASONS))):
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
