"""The detailed checks: for a line that failed the all-rules test, which check fails first, where.

Only the few lines that fail `rules.all_ok` pay for these. Each check gives a detail string (NULL
when it finds nothing) that names the offending path, e.g. `items[2].quantity`; the reason of a
line is that of the first check that finds something (CHECK_REASONS). Lines whose types Spark may
have coerced or could not read ("suspicious") are re-read as VARIANT so a wrong type is named
exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date

from pyspark.sql import Column
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql import types as T  # noqa: N812

from spark_jobs.common.contract import MONEY_TYPE, FieldRule
from spark_jobs.common.layout import (
    INVALID_VALUE,
    MALFORMED_JSON,
    MISSING_REQUIRED_FIELD,
    NEGATIVE_QUANTITY,
    TIMESTAMP_OUTSIDE_DAY,
    TOTAL_MISMATCH,
    WRONG_TYPE,
)
from spark_jobs.processing.rules import (
    any_of,
    invalid_value,
    is_money,
    one_json_value,
    typed_get,
)

# The detailed checks, in order: a line gets the reason of the first that finds something.
CHECK_REASONS = (
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
INTEGER_VARIANT_TYPES = ("BIGINT", "INT", "SMALLINT", "TINYINT")
SUM_TYPE = T.DecimalType(38, 2)
NOT_AN_OBJECT = "$ (the line is not an object)"

# problem(rule, value, path): a detail Column (NULL when fine), or None when the rule cannot fail.
Problem = Callable[[FieldRule, Column, Column], Column | None]
Getter = Callable[[Column, str], Column]


def suspicious(rules: Sequence[FieldRule]) -> Column:
    """Lines that get the exact (VARIANT) type check: corrupt ones, and those with money that
    Spark read as a double but that does not fit MONEY_TYPE (NaN, a string "NaN", too large)."""
    raw = F.col("_raw")
    order = F.col("order")
    money_unfit = []
    for rule in rules:
        if not is_money(rule):
            continue
        if rule.in_array:
            array_path, name = rule.path.split("[].", 1)
            values = typed_get(raw, array_path).getField(name)
            money_unfit.append(
                F.exists(values, lambda x: x.isNotNull() & x.try_cast(MONEY_TYPE).isNull())
            )
        else:
            money_unfit.append(
                typed_get(raw, rule.path).isNotNull() & typed_get(order, rule.path).isNull()
            )
    return F.coalesce(F.col("_corrupt") | any_of(money_unfit), F.lit(True))


def detail_struct(rules: Sequence[FieldRule], day: date, start_us: int, end_us: int) -> Column:
    """For a line that failed all_ok: struct(d0..d7), each the detail of one check or NULL
    (in the order of CHECK_REASONS)."""
    wrong_type, missing, overflow = _type_checks(rules)
    items = F.col("_raw").getField("items")
    checks = [
        _not_parseable(),
        wrong_type,
        missing,
        overflow,
        _negative_quantity(items),
        _outside_day(day, start_us, end_us),
        first_problem(rules, invalid_value, F.col("_raw"), typed_get, typed_get),
        _total_mismatch(items),
    ]
    return F.struct(*[check.alias(f"d{n}") for n, check in enumerate(checks)])


def first_problem(
    rules: Sequence[FieldRule], problem: Problem, root: Column, get: Getter, get_array: Getter
) -> Column:
    """Detail string of the first rule (schema order) whose `problem` is non-null, else NULL.

    Fields inside array elements are checked in one pass over the array, and their detail names
    the element: items[2].quantity.
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
    children: Sequence[FieldRule], array_path: str, problem: Problem, get: Getter
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


# ---- the checks, each a detail Column --------------------------------------------------------


def _not_parseable() -> Column:
    corrupt = F.col("_corrupt")
    return F.when(corrupt & F.col("_v").isNull(), F.lit("not parseable JSON")).when(
        corrupt & ~one_json_value(F.col("value")),
        F.lit("not parseable JSON: text after the JSON value"),
    )


def _type_checks(rules: Sequence[FieldRule]) -> tuple[Column, Column, Column]:
    """(wrong type, missing required field, number too large): exact on the VARIANT for
    suspicious lines, from the typed parse for the others."""
    suspect = F.col("_suspicious")
    variant = F.col("_v")

    def typed_missing(rule: FieldRule, value: Column, path: Column) -> Column | None:
        return F.when(value.isNull(), path) if rule.required else None

    def variant_missing(rule: FieldRule, value: Column, path: Column) -> Column | None:
        return F.when(_variant_absent(value), path) if rule.required else None

    def variant_wrong_type(rule: FieldRule, value: Column, path: Column) -> Column | None:
        return F.when(~_variant_type_ok(value, rule.json_type), path)

    def does_not_fit(rule: FieldRule, value: Column, path: Column) -> Column | None:
        if rule.json_type not in ("number", "integer"):
            return None
        return F.when(~_variant_absent(value), F.concat(path, F.lit(": does not fit the contract")))

    missing = F.when(
        suspect, first_problem(rules, variant_missing, variant, _variant_get, _variant_array)
    ).otherwise(first_problem(rules, typed_missing, F.col("_raw"), typed_get, typed_get))
    root_kind = F.schema_of_variant(variant)
    not_object = F.when(F.col("_corrupt") & ~root_kind.startswith("OBJECT"), F.lit(NOT_AN_OBJECT))
    wrong_type = F.when(
        suspect,
        F.coalesce(
            not_object,
            first_problem(rules, variant_wrong_type, variant, _variant_get, _variant_array),
        ),
    )
    # A line with no wrong type left: a number Spark could not hold (e.g. > 10^10).
    overflow = F.when(
        suspect,
        F.coalesce(
            _first_problem_typed_null(rules, does_not_fit, variant),
            F.lit("record: does not fit the contract's types"),
        ),
    )
    return wrong_type, missing, overflow


def _negative_quantity(items: Column) -> Column:
    per_item = F.transform(
        items,
        lambda x, i: F.when(
            x.getField("quantity") < 0,
            F.concat(F.lit("items["), i.cast("string"), F.lit("].quantity")),
        ),
    )
    return F.get(F.filter(per_item, lambda d: d.isNotNull()), 0)


def _outside_day(day: date, start_us: int, end_us: int) -> Column:
    order_ts = F.col("order_ts")
    return F.when(
        order_ts.isNotNull()
        & ((F.unix_micros(order_ts) < start_us) | (F.unix_micros(order_ts) >= end_us)),
        F.concat(F.lit(f"order_ts: not inside {day.isoformat()} (UTC): "), F.col("_raw").order_ts),
    )


def _total_mismatch(items: Column) -> Column:
    items_sum = F.aggregate(
        items,
        F.lit(0).cast(SUM_TYPE),
        lambda acc, x: F.try_add(
            acc,
            F.try_multiply(x.getField("quantity"), x.getField("unit_price").try_cast(MONEY_TYPE)),
        ).cast(SUM_TYPE),
    )
    total = F.col("order").getField("total_amount")
    return F.when(
        ~total.eqNullSafe(items_sum),
        F.concat(
            F.lit("total_amount="),
            total.cast("string"),
            F.lit(", sum(quantity*unit_price)="),
            items_sum.cast("string"),
        ),
    )


# ---- VARIANT helpers -----------------------------------------------------------------------------


def _variant_get(base: Column, relative_path: str) -> Column:
    return F.try_variant_get(base, "$." + relative_path, "variant")


def _variant_array(base: Column, relative_path: str) -> Column:
    return F.try_variant_get(base, "$." + relative_path, "array<variant>")


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


def _first_problem_typed_null(
    rules: Sequence[FieldRule], problem: Problem, variant: Column
) -> Column:
    """Like first_problem on the VARIANT, restricted to paths that are NULL after typed parsing."""
    order = F.col("order")

    def wrapped(rule: FieldRule, value: Column, path: Column) -> Column | None:
        check = problem(rule, value, path)
        if check is None or rule.in_array:
            # Inside arrays the line-level fallback detail is used instead.
            return None
        return F.when(typed_get(order, rule.path).isNull(), check)

    return first_problem(rules, wrapped, variant, _variant_get, _variant_array)
