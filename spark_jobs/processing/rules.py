"""The contract's rules as Spark Columns: each value rule written once, and the all-rules test.

`value_rules(rule)` is the one list of a field's value rules (enum, pattern, format, minLength,
minItems, minimum, multipleOf), each a name and what must hold. `value_conditions` uses them for
the cheap test every line gets (`all_ok`); `invalid_value` uses the same ones for the detail of a
line that failed, naming the path and the rule (spark_jobs/processing/details.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime

from pyspark.sql import Column
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql import types as T  # noqa: N812

from spark_jobs.common.contract import END_OF_INPUT, MONEY_TYPE, FieldRule, field_rules

# Java regexes (Spark's rlike): \z, not $, which also matches before a final line break.
RFC3339_DATE_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\z"
ISO_DATE = r"^\d{4}-\d{2}-\d{2}\z"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+\z"
FORMAT_PATTERNS = {"date-time": RFC3339_DATE_TIME, "date": ISO_DATE, "email": EMAIL}
MONEY_STEP = 0.01  # the contract's multipleOf for money (mapped to MONEY_TYPE)
HALF_CENT = 0.005
JOIN_SEPARATOR = "\u001f"  # joins an array's strings for one regex; no id contains it

# A value rule: its name in a detail, and what holds for a present value that obeys it.
ValueRule = tuple[str, Callable[[Column], Column]]


def contract_rules() -> list[FieldRule]:
    """The contract's field rules, refusing a shape the checks cannot walk."""
    rules = field_rules()
    for rule in rules:
        if rule.path.count("[]") > 1:
            raise ValueError(f"contract path {rule.path}: arrays inside arrays are not supported")
    return rules


def typed_get(base: Column, relative_path: str) -> Column:
    """The field at a dotted path below a struct Column."""
    col = base
    for name in relative_path.split("."):
        col = col.getField(name)
    return col


def day_bounds_us(day: date) -> tuple[int, int]:
    """[start, end) of the UTC day in microseconds since the epoch."""
    start_us = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1_000_000)
    return start_us, start_us + 86_400 * 1_000_000


def one_json_value(line: Column) -> Column:
    """False when the line holds more than one JSON value (or nothing parseable).

    Spark's JSON functions read a line's first value and ignore the rest, so `{order} x` and
    `{order}{order}` would pass as the first order. Inside an array a single value gives one
    element with "]" and two with ",0]"; text after the value breaks at least one of the two.
    """
    one = F.json_array_length(F.concat(F.lit("["), line, F.lit("]"))) == 1
    two = F.json_array_length(F.concat(F.lit("["), line, F.lit(",0]"))) == 2
    return F.coalesce(one & two, F.lit(False))


def is_money(rule: FieldRule) -> bool:
    return rule.json_type == "number" and rule.multiple_of == MONEY_STEP


def exact_money(value: Column) -> Column:
    """True when a double is a whole number of cents that fits MONEY_TYPE (or is NULL)."""
    # Spark converts a double through its shortest decimal text, so 1.10 stays 1.10 and
    # 1.255 becomes 1.26, which differs from 1.255 as a double.
    return value.try_cast(MONEY_TYPE).cast("double").eqNullSafe(value)


def value_rules(rule: FieldRule) -> list[ValueRule]:
    """The value rules of one field, in the order a detail names the first broken one."""
    checks: list[ValueRule] = []
    if rule.enum is not None:
        enum = rule.enum
        checks.append(("enum", lambda v: v.isin(*enum)))
    if rule.pattern is not None:
        pattern = rule.pattern
        checks.append(("pattern", lambda v: v.rlike(pattern)))
    if rule.format in FORMAT_PATTERNS:
        regex = FORMAT_PATTERNS[rule.format]
        checks.append(("format " + rule.format, lambda v: v.rlike(regex)))
    if rule.format == "date-time":
        checks.append(("format date-time", lambda v: F.try_to_timestamp(v).isNotNull()))
    if rule.format == "date":
        checks.append(
            ("format date", lambda v: F.try_to_timestamp(v, F.lit("yyyy-MM-dd")).isNotNull())
        )
    if rule.min_length is not None:
        min_length = rule.min_length
        checks.append(("minLength", lambda v: F.length(v) >= min_length))
    if rule.min_items is not None:
        min_items = rule.min_items
        checks.append(("minItems", lambda v: F.size(v) >= min_items))
    if rule.minimum is not None:
        minimum = rule.minimum
        checks.append(("minimum", lambda v: v >= F.lit(minimum)))
    if is_money(rule):
        checks.append(("multipleOf", exact_money))
    return checks


def value_conditions(rule: FieldRule, value: Column) -> list[Column]:
    """What must hold for a present value of one rule (the cheap form of invalid_value)."""
    return [holds(value) for _, holds in value_rules(rule)]


def invalid_value(rule: FieldRule, value: Column, path: Column) -> Column | None:
    """Detail '<path>: <rule>' when a present, well-typed value breaks an enum/pattern/min rule."""
    details = [
        F.when(value.isNotNull() & ~holds(value), F.concat(path, F.lit(": " + name)))
        for name, holds in value_rules(rule)
    ]
    return F.coalesce(*details) if details else None


def all_ok(
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
            checks.append(_array_rule_ok(rule, typed_get(raw, array_path).getField(name)))
            continue
        value = typed_get(raw, rule.path)
        conditions = value_conditions(rule, value)
        if conditions:
            checks.append(value.isNull() | all_of(conditions))
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
    return F.coalesce(all_of(checks), F.lit(False))


def all_of(conditions: Sequence[Column]) -> Column:
    result = conditions[0]
    for condition in conditions[1:]:
        result = result & condition
    return result


def any_of(conditions: Sequence[Column]) -> Column:
    result = F.lit(False)
    for condition in conditions:
        result = result | condition
    return result


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


def _array_rule_ok(rule: FieldRule, values: Column) -> Column:
    """One array element field (items[].quantity as an array of quantities) obeys its rule."""
    checks: list[Column] = []
    if rule.required:
        checks.append(_array_has_no_null(values, rule))
    if rule.minimum is not None:
        checks.append(F.coalesce(F.array_min(values) >= F.lit(rule.minimum), F.lit(True)))
    if is_money(rule):
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
                values,
                lambda x: x.isNull() | all_of(value_conditions(others, x) or [F.lit(True)]),
            )
        )
    return F.coalesce(all_of(checks), F.lit(False)) if checks else F.lit(True)
