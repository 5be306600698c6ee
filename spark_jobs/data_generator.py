"""Job 1: one day of synthetic e-commerce orders as JSON lines, with injected bad records.

Writes the raw day's part files (one order per line, the contract in schemas/raw_order.schema.json),
then its manifest (counts), then its success marker last, where spark_jobs/common/layout.py puts
them. Any old marker of the day is deleted first, so a rerun is never seen as complete halfway.

Every value is a Spark expression of the order number, customer number or line number hashed with
--seed (see spark_jobs/common/synthetic.py): the same --date and --seed give byte-identical lines
whatever the partitioning. Run it as

    spark-submit --py-files spark_jobs.zip spark_jobs/data_generator.py --date 2024-01-15 ...
    python -m spark_jobs.data_generator --date 2024-01-15 --rows 100000 --output .data/raw
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark.errors import PySparkAssertionError
from pyspark.sql import Column, Observation, SparkSession
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)

if __package__ in (None, ""):
    # spark-submit runs this file as a script; the package comes from --py-files or the repo.
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from spark_jobs.common.contract import required_paths
from spark_jobs.common.layout import (
    BAD_KINDS,
    DUPLICATE_ORDER_ID,
    GOOD,
    manifest_path,
    raw_day_dir,
    raw_success_path,
)
from spark_jobs.common.session import (
    default_parallelism,
    end_job_session,
    is_connect,
    job_session,
)
from spark_jobs.common.storage import Storage
from spark_jobs.common.synthetic import (
    CUSTOMER_COLUMNS,
    LINE_COLUMNS,
    MAX_ITEMS,
    ORDER_COLUMNS,
    Pieces,
    PoolLiterals,
    Pools,
    SpecContext,
    array_literal,
    build_pools,
    concat_pieces,
    json_number,
    json_object,
    json_string,
    lpad_number,
    money_text,
    with_spec,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger("data_generator")

GENERATOR_VERSION = "1.0.0"
DEFAULT_SEED = 42
DEFAULT_BAD_RECORD_RATE = 0.02
MAX_BAD_RECORD_RATE = 0.5
MAX_ROWS = 999_999_999  # order ids carry a 9-digit sequence
ROWS_PER_FILE = 250_000  # ~200 MB of JSON per file: few files, still parallel

# Row defect codes: 0 = good, i + 1 = BAD_KINDS[i] (the kinds are named in common/layout.py).
MALFORMED, MISSING, WRONG_TYPE, NEGATIVE, OUTSIDE_DAY, DUPLICATE = range(1, 7)


class GeneratorArgumentError(ValueError):
    """A job argument is out of range; the message names the argument and the fix."""


# --------------------------------------------------------------------------------------------
# Pure functions (tests call these on a local SparkSession).
# --------------------------------------------------------------------------------------------


def validate_arguments(date: dt.date | str, rows: int, bad_record_rate: float) -> dt.date:
    """The day as a date; GeneratorArgumentError for a bad date, row count or rate."""
    if isinstance(date, str):
        try:
            day = dt.date.fromisoformat(date)
        except ValueError:
            day = None
        if day is None or len(date) != 10:
            raise GeneratorArgumentError(
                f"--date {date!r} is not a calendar date; expected YYYY-MM-DD, e.g. 2024-01-15"
            )
    else:
        day = date
    if not 0 < rows <= MAX_ROWS:
        raise GeneratorArgumentError(
            f"--rows {rows} is out of range; expected 1 .. {MAX_ROWS} (order ids have 9 digits)"
        )
    if not 0.0 <= bad_record_rate <= MAX_BAD_RECORD_RATE:
        raise GeneratorArgumentError(
            f"--bad-record-rate {bad_record_rate} is out of range; expected 0 .. "
            f"{MAX_BAD_RECORD_RATE} (a share of rows, e.g. 0.02)"
        )
    return day


def default_partitions(spark: SparkSession, rows: int) -> int:
    """Enough files to use every core, and about ROWS_PER_FILE rows per file beyond that."""
    return max(default_parallelism(spark), math.ceil(rows / ROWS_PER_FILE))


def generate_orders(
    spark: SparkSession,
    date: dt.date | str,
    rows: int,
    seed: int = DEFAULT_SEED,
    bad_record_rate: float = DEFAULT_BAD_RECORD_RATE,
    *,
    partitions: int | None = None,
    pools: Pools | None = None,
) -> DataFrame:
    """One day of orders: columns ``value`` (the JSON line) and ``kind`` (good or a bad kind).

    ``rows`` orders, plus one extra line per duplicate_order_id replay. Deterministic in
    (date, rows, seed, bad_record_rate); ``partitions`` only changes how lines split into files.
    """
    day = validate_arguments(date, rows, bad_record_rate)
    pools = pools if pools is not None else build_pools(seed)
    if pools.seed != seed:
        raise GeneratorArgumentError(f"pools were built for seed {pools.seed}, not {seed}")
    context = SpecContext(seed=seed, pools=PoolLiterals(pools))
    slices = partitions or default_partitions(spark, rows)

    orders = spark.range(1, rows + 1, 1, slices).withColumnRenamed("id", "order_no")
    orders = with_spec(orders, ORDER_COLUMNS, [F.col("order_no")], context, prefix="")
    orders = with_spec(orders, CUSTOMER_COLUMNS, [F.col("customer_no")], context, prefix="c_")
    # Line slots 1..MAX_ITEMS as plain columns (Spark's lambdas run interpreted, ~10x slower);
    # slot k is part of the order when k <= item_count.
    for k in range(1, MAX_ITEMS + 1):
        keys = [F.col("order_no"), F.lit(k)]
        orders = with_spec(orders, LINE_COLUMNS, keys, context, prefix=f"l{k}_")
    price = context.pools.product
    orders = orders.select(
        "*",
        *[
            price("price_cents", F.col(f"l{k}_product_index")).alias(f"l{k}_price_cents")
            for k in range(1, MAX_ITEMS + 1)
        ],
    )
    total_cents = sum(
        (
            F.when(
                F.col("item_count") >= k,
                F.col(f"l{k}_quantity").cast("long") * F.col(f"l{k}_price_cents"),
            ).otherwise(F.lit(0).cast("long"))
            for k in range(1, MAX_ITEMS + 1)
        ),
        start=F.lit(0).cast("long"),
    )
    orders = orders.select("*", total_cents.alias("total_cents"), *_defect_columns(bad_record_rate))
    # The good document first, as its own column; defects then edit the text of bad rows only,
    # which keeps the generated code of the hot path small enough for the JIT.
    orders = orders.select("*", _order_json(day, context).alias("document"))
    line_text = _with_defect(F.col("document"))
    kinds = F.array(*[F.lit(k) for k in (GOOD, *BAD_KINDS)])
    kind = F.element_at(kinds, F.col("defect") + 1)
    # A duplicate_order_id row is a good line written twice: explode to one or two lines.
    kinds_out = F.when(
        F.col("defect") == DUPLICATE, F.array(F.lit(GOOD), F.lit(BAD_KINDS[DUPLICATE - 1]))
    ).otherwise(F.array(kind))
    return orders.select(line_text.alias("value"), F.explode(kinds_out).alias("kind"))


def _defect_columns(bad_record_rate: float) -> list[Column]:
    """Which defect a row carries (0 = none) and where: from the order spec's bad_* draws."""
    threshold = round(bad_record_rate * 1_000_000)
    is_bad = F.col("bad_draw") < threshold
    variant = F.col("bad_variant")
    defect_line = F.pmod(F.call_function("div", variant, F.lit(1000)), F.col("item_count")) + 1
    return [
        F.when(is_bad, F.col("bad_kind_index") + 1).otherwise(0).alias("defect"),
        defect_line.cast("int").alias("defect_line"),
    ]


def _order_json(day: dt.date, context: SpecContext) -> Column:
    """The contract's document, field by field, as one JSON text column (always valid)."""
    ymd = day.strftime("%Y%m%d")
    sequence = lpad_number(F.col("order_no"), 9)
    total = money_text(F.col("total_cents"))
    payment = json_object(
        [
            ("payment_id", json_string(F.concat(F.lit(f"PAY-{ymd}-"), sequence))),
            ("method", json_string(F.col("payment_method"))),
            ("status", json_string(F.col("payment_status"))),
            ("amount", total),
        ]
    )
    document = json_object(
        [
            ("order_id", json_string(F.concat(F.lit(f"ORD-{ymd}-"), sequence))),
            ("order_ts", json_string(_order_ts_text(day))),
            ("status", json_string(F.col("status"))),
            ("channel", json_string(F.col("channel"))),
            ("currency", json_string(F.col("c_currency"))),
            ("customer", _customer_json()),
            ("items", _items_json(context)),
            ("payment", payment),
            ("total_amount", total),
        ]
    )
    return concat_pieces(document)


def _order_ts_text(day: dt.date) -> Column:
    """The order's timestamp as RFC 3339 text, in the day (or, for its defect, beside it)."""
    shift = F.pmod(F.col("bad_variant"), F.lit(2))
    # timestamp_outside_day is the one defect made here: a day before or after, by hash.
    order_day = F.when(
        F.col("defect") == OUTSIDE_DAY,
        F.when(shift == 0, F.lit((day - dt.timedelta(days=1)).isoformat())).otherwise(
            F.lit((day + dt.timedelta(days=1)).isoformat())
        ),
    ).otherwise(F.lit(day.isoformat()))
    second = F.col("second_of_day")
    return F.concat(
        order_day,
        F.lit("T"),
        lpad_number(F.call_function("div", second, F.lit(3600)), 2),
        F.lit(":"),
        lpad_number(F.pmod(F.call_function("div", second, F.lit(60)), F.lit(60)), 2),
        F.lit(":"),
        lpad_number(F.pmod(second, F.lit(60)), 2),
        F.lit("Z"),
    )


def _customer_json() -> Pieces:
    def c(name: str) -> Column:
        return F.col(f"c_{name}")

    customer_id = F.concat(F.lit("CUST-"), lpad_number(F.col("customer_no"), 7))
    address = json_object(
        [
            ("street", json_string(c("street"))),
            ("city", json_string(c("city"))),
            ("postcode", json_string(c("postcode"))),
            ("country", json_string(c("country"))),
        ]
    )
    return json_object(
        [
            ("customer_id", json_string(customer_id)),
            ("name", json_string(c("name"))),
            ("email", json_string(c("email"))),
            ("phone", json_string(c("phone"))),
            ("signup_date", json_string(c("signup_date"))),
            ("address", address),
        ]
    )


def _items_json(context: SpecContext) -> Pieces:
    product = context.pools.product

    def item_json(k: int) -> Pieces:
        index = F.col(f"l{k}_product_index")
        return json_object(
            [
                ("line_no", [str(k)]),
                ("product_id", json_string(F.concat(F.lit("PRD-"), lpad_number(index + 1, 5)))),
                ("product_name", json_string(product("product_name", index))),
                ("category", json_string(product("category", index))),
                ("quantity", json_number(F.col(f"l{k}_quantity"))),
                ("unit_price", money_text(F.col(f"l{k}_price_cents"))),
            ]
        )

    # Line 1 always exists; a later slot is one NULL-or-text piece (NULL beyond item_count).
    items: Pieces = ["[", *item_json(1)]
    for k in range(2, MAX_ITEMS + 1):
        slot = concat_pieces([",", *item_json(k)])
        items.append(F.when(F.col("item_count") >= k, slot))
    items.append("]")
    return items


# Regular expressions over the document text as _order_json writes it (field order is fixed).
_STR = r'"(?:[^"\\]|\\.)*"'  # a JSON string
_NUM = r"-?[0-9.]+"  # a JSON number as written here
_LINE = r'"line_no":{K},'  # {K} becomes the row's defect line
_BEFORE_QTY = _LINE + rf'"product_id":{_STR},"product_name":{_STR},"category":{_STR},'
# missing_required_field: path -> (pattern, replacement) that removes the member and one comma.
MISSING_FIELD_EDITS: dict[str, tuple[str, str]] = {
    "order_id": (rf'^\{{"order_id":{_STR},', "{"),
    "order_ts": (rf',"order_ts":{_STR}', ""),
    "status": (rf'^(.*?),"status":{_STR}', "$1"),  # the first "status" is the order's
    "currency": (rf',"currency":{_STR}', ""),
    "customer": (r',"customer":\{.*?\}\}', ""),  # address is the customer's last member
    "customer.customer_id": (rf'("customer":\{{)"customer_id":{_STR},', "$1"),
    "customer.name": (rf',"name":{_STR}', ""),
    "customer.email": (rf',"email":{_STR}', ""),
    "items": (r',"items":\[.*?\]', ""),
    "items[].line_no": (r'\{"line_no":{K},', "{"),
    "items[].product_id": (rf'("line_no":{{K}}),"product_id":{_STR}', "$1"),
    "items[].quantity": (rf"({_BEFORE_QTY})\"quantity\":{_NUM},", "$1"),
    "items[].unit_price": (rf"({_BEFORE_QTY}\"quantity\":{_NUM}),\"unit_price\":{_NUM}", "$1"),
    "payment": (r',"payment":\{[^{}]*\}', ""),
    "payment.payment_id": (rf'("payment":\{{)"payment_id":{_STR},', "$1"),
    "payment.method": (rf',"method":{_STR}', ""),
    "payment.amount": (rf',"amount":{_NUM}', ""),
    "total_amount": (rf',"total_amount":{_NUM}', ""),
}
# wrong_type: a number becomes a non-numeric string ({CUR} = the order's currency), or the
# customer object becomes its bare id.
WRONG_TYPE_EDITS: dict[str, tuple[str, str]] = {
    "items[].quantity": (rf'({_BEFORE_QTY}"quantity":)({_NUM})', '$1"$2 pcs"'),
    "items[].unit_price": (
        rf'({_BEFORE_QTY}"quantity":{_NUM},"unit_price":)({_NUM})',
        '$1"$2 {CUR}"',
    ),
    "total_amount": (rf'("total_amount":)({_NUM})', '$1"$2 {CUR}"'),
    "payment.amount": (rf'("amount":)({_NUM})', '$1"$2 {CUR}"'),
    "customer": (r'"customer":\{"customer_id":("CUST-[0-9]+").*?\}\}', '"customer":$1'),
}
NEGATIVE_QUANTITY_EDIT = (rf'({_BEFORE_QTY}"quantity":)', "$1-")
MALFORMED_STYLES = 3  # truncated line, unquoted key, missing comma


def _edit(document: Column, edits: Sequence[tuple[str, str]], choice: Column) -> Column:
    """regexp_replace with the row's chosen (pattern, replacement); {K}/{CUR} filled per row."""
    patterns = array_literal([pattern for pattern, _ in edits])
    replacements = array_literal([replacement for _, replacement in edits])
    pattern = F.replace(
        F.element_at(patterns, choice + 1), F.lit("{K}"), F.col("defect_line").cast("string")
    )
    replacement = F.replace(
        F.element_at(replacements, choice + 1), F.lit("{CUR}"), F.col("c_currency")
    )
    return F.regexp_replace(document, pattern, replacement)


def _with_defect(document: Column) -> Column:
    """The line as written: the document, or for a bad row the document with its one defect."""
    variant = F.col("bad_variant")
    required = required_paths()
    missing = [MISSING_FIELD_EDITS[path] for path in required]
    wrong = list(WRONG_TYPE_EDITS.values())
    style = F.pmod(variant, F.lit(MALFORMED_STYLES))
    # Keep 30-90 % of the text: a proper prefix of a JSON object is never valid JSON.
    keep = F.call_function(
        "div", F.length(document) * (F.pmod(variant, F.lit(61)) + 30), F.lit(100)
    ).cast("int")
    malformed = (
        F.when(style == 0, F.substring(document, F.lit(1), keep))
        .when(style == 1, F.regexp_replace(document, F.lit('^\\{"order_id":'), F.lit("{order_id:")))
        .otherwise(F.regexp_replace(document, F.lit('","order_ts":'), F.lit('" "order_ts":')))
    )
    defect = F.col("defect")
    return (
        F.when(defect == 0, document)
        .when(defect == MALFORMED, malformed)
        .when(defect == MISSING, _edit(document, missing, F.pmod(variant, F.lit(len(missing)))))
        .when(defect == WRONG_TYPE, _edit(document, wrong, F.pmod(variant, F.lit(len(wrong)))))
        .when(defect == NEGATIVE, _edit(document, [NEGATIVE_QUANTITY_EDIT], F.lit(0)))
        .otherwise(document)
    )


# The names of count_columns(), which the manifest reads.
COUNT_NAMES = ("lines", GOOD, *BAD_KINDS)


def count_columns(kind: Column | None = None) -> list[Column]:
    """Aggregates for the manifest: lines, good, and one count per bad kind."""
    kind = kind if kind is not None else F.col("kind")
    return [
        F.count(F.lit(1)).alias(COUNT_NAMES[0]),
        F.sum(F.when(kind == GOOD, 1).otherwise(0)).alias(GOOD),
        *[F.sum(F.when(kind == k, 1).otherwise(0)).alias(k) for k in BAD_KINDS],
    ]


def manifest_from_counts(
    counts: dict[str, Any],
    date: dt.date | str,
    seed: int,
    bad_record_rate: float,
    files: Sequence[str] = (),
) -> dict[str, Any]:
    """The raw day's manifest document from the aggregated counts (see count_columns)."""
    lines = int(counts["lines"] or 0)
    bad = {k: int(counts[k] or 0) for k in BAD_KINDS}
    return {
        "date": str(date),
        "seed": seed,
        # A duplicate is an extra line of an order already counted.
        "rows": lines - bad[DUPLICATE_ORDER_ID],
        "lines": lines,
        "good": int(counts[GOOD] or 0),
        "bad": bad,
        "bad_record_rate": bad_record_rate,
        "generator_version": GENERATOR_VERSION,
        "files": list(files),
    }


def manifest(
    df: DataFrame,
    date: dt.date | str,
    seed: int,
    bad_record_rate: float,
    files: Sequence[str] = (),
) -> dict[str, Any]:
    """Manifest of a generate_orders DataFrame: every count in one aggregation pass."""
    row = df.agg(*count_columns()).first()
    return manifest_from_counts(row.asDict() if row else {}, date, seed, bad_record_rate, files)


def write_day(
    spark: SparkSession,
    output: str,
    date: dt.date | str,
    rows: int,
    *,
    seed: int = DEFAULT_SEED,
    bad_record_rate: float = DEFAULT_BAD_RECORD_RATE,
    partitions: int | None = None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """Write the day's lines, then its manifest, then its success marker; returns the manifest."""
    day = validate_arguments(date, rows, bad_record_rate)
    storage = storage if storage is not None else Storage(spark)
    day_dir = raw_day_dir(output, day)
    # No success marker (and no stale manifest) while the day is being rewritten.
    storage.delete(raw_success_path(output, day))
    storage.delete(manifest_path(output, day))

    started = time.monotonic()
    df = generate_orders(spark, day, rows, seed, bad_record_rate, partitions=partitions)
    # Count while writing (Observation) instead of generating everything a second time.
    observation = Observation("generated_orders")
    observed = df.observe(observation, *count_columns())
    storage.write_lines(observed.select("value"), day_dir)
    counts = _observed_counts(spark, observation)
    if counts is None:
        log.warning("write metrics did not arrive; counting %s with a second pass", day_dir)
        counts = df.agg(*count_columns()).first().asDict()

    files = [uri.rsplit("/", 1)[-1] for uri in storage.list_data_files(day_dir)]
    document = manifest_from_counts(counts, day, seed, bad_record_rate, files)
    storage.write_text(manifest_path(output, day), json.dumps(document, indent=2) + "\n")
    storage.write_text(raw_success_path(output, day), "")
    seconds = time.monotonic() - started
    log.info(
        "wrote %s: %d orders, %d lines (%d good, bad %s) in %d files, %.1f s (%.0f rows/s)",
        day_dir,
        document["rows"],
        document["lines"],
        document["good"],
        document["bad"],
        len(files),
        seconds,
        document["rows"] / seconds if seconds else float("nan"),
    )
    return document


def _observed_counts(
    spark: SparkSession, observation: Observation, wait_seconds: float = 30.0
) -> dict | None:
    """The observed counts, or None if they never arrive (a writer that drops the metrics)."""
    if is_connect(spark):
        # A Connect server returns the metrics with the write's own result, or not at all.
        try:
            counts = dict(observation.get)
        except PySparkAssertionError:
            return None
        # Spark 4.0's client starts the result as {} and fills it only when the server sends
        # the metrics: a result without every count means they did not arrive.
        return counts if set(counts) >= set(COUNT_NAMES) else None
    # Metrics come through Spark's (asynchronous) listener bus just after the write returns;
    # Observation.get would block forever if they never do, so poll the JVM future instead.
    future = observation._jo.future()  # no public non-blocking check
    deadline = time.monotonic() + wait_seconds
    while not future.isCompleted():
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)
    return dict(observation.get)


# --------------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The job's arguments; argparse exits with status 2 and a message naming a bad one."""
    parser = argparse.ArgumentParser(
        prog="data_generator",
        description=f"Write one day of synthetic orders to {raw_day_dir('<output>', '<date>')}/.",
    )
    parser.add_argument("--date", required=True, help="the day, YYYY-MM-DD (UTC)")
    parser.add_argument("--rows", required=True, type=int, help="orders to generate")
    parser.add_argument("--output", required=True, help="raw root URI, e.g. s3://bucket/raw")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="same seed, same data")
    parser.add_argument(
        "--bad-record-rate",
        type=float,
        default=DEFAULT_BAD_RECORD_RATE,
        help=f"share of orders with one injected defect, 0 .. {MAX_BAD_RECORD_RATE}",
    )
    parser.add_argument(
        "--partitions", type=int, default=None, help="output files (default: by size and cores)"
    )
    args = parser.parse_args(argv)
    try:
        validate_arguments(args.date, args.rows, args.bad_record_rate)
    except GeneratorArgumentError as exc:
        parser.error(str(exc))
    if args.partitions is not None and args.partitions < 1:
        parser.error(f"--partitions {args.partitions} must be at least 1 (or left out)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, start (or join) a SparkSession, write the day. Returns 0."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    spark = job_session(f"data_generator {args.date}")
    try:
        write_day(
            spark,
            output=args.output,
            date=args.date,
            rows=args.rows,
            seed=args.seed,
            bad_record_rate=args.bad_record_rate,
            partitions=args.partitions,
        )
    finally:
        end_job_session(spark)
    return 0


if __name__ == "__main__":
    sys.exit(main())
