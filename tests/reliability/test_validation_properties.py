"""Property-based tests (hypothesis) of the processor's validation against an independent oracle.

The oracle is jsonschema (Draft 2020-12) run on the contract file itself, plus the two rules the
JSON Schema cannot say (order_ts inside the day, total = sum of the items), with the processor's
documented choices:
- integers must fit 64 bits and money must fit decimal(12,2) (`does not fit the contract`);
- an integer field holds a JSON integer literal: 2.0 is not one (JSON Schema would accept it);
- money is a whole number of cents as the double reads (0.1 + 0.2 is not);
- a free-text string field (no enum, pattern or format) keeps any other JSON value as its text.
Formats are checked with this file's own regexes and calendar arithmetic, not the processor's.

Each hypothesis example is a batch of lines evaluated in one Spark job (Spark starts slowly);
`max_examples` is modest and `derandomize` makes CI runs repeatable.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, validators
from pyspark.sql import functions as F  # noqa: N812

from spark_jobs.common.contract import load_contract
from spark_jobs.common.layout import REASONS
from spark_jobs.processing.dedupe import keep_winners, tally
from spark_jobs.processing.validate import split_valid, validate
from tests.unit.test_data_processor import DAY, lines_frame

pytestmark = pytest.mark.spark

# Each example costs Spark jobs (~1-2 s each on 2 idle cores); more: HYPOTHESIS_EXAMPLES=200.
EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "10"))
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DAY_START = datetime.fromisoformat(f"{DAY}T00:00:00+00:00")
INT64 = (-(2**63), 2**63 - 1)
FREE_TEXT = {
    "customer.name",
    "customer.phone",
    "customer.address.street",
    "customer.address.city",
    "customer.address.postcode",
    "items[].product_name",
    "items[].category",
}

# --- the oracle -----------------------------------------------------------------------------------

DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+", re.ASCII)


def parse_date_time(text: str) -> datetime | None:
    """RFC 3339 date-time -> aware datetime (fraction truncated to microseconds), else None."""
    match = DATE_TIME.fullmatch(text)
    if match is None:
        return None
    y, mo, d, h, mi, s, frac, zone, sign, oh, om = match.groups()
    try:
        offset = timedelta(0) if zone == "Z" else timedelta(hours=int(oh), minutes=int(om))
        tz = timezone(-offset if sign == "-" else offset)
        micros = int((frac or "0")[:6].ljust(6, "0"))
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micros, tzinfo=tz)
    except ValueError:
        return None


def is_date(text: str) -> bool:
    match = DATE.fullmatch(text)
    if match is None:
        return False
    try:
        date(*map(int, match.groups()))
    except ValueError:
        return False
    return True


FORMATS = FormatChecker(formats=())
FORMATS.checks("date-time")(lambda v: not isinstance(v, str) or parse_date_time(v) is not None)
FORMATS.checks("date")(lambda v: not isinstance(v, str) or is_date(v))
FORMATS.checks("email")(lambda v: not isinstance(v, str) or EMAIL.fullmatch(v) is not None)


def is_int64(_checker, value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1]


def is_number(_checker, value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def as_money(value) -> Decimal | None:
    """The value as decimal(12,2) the way a double reads it, or None when it is not money."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    exact = Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)
    if isinstance(value, int) and abs(value) >= 2**53:
        exact = Decimal(repr(float(value)))  # the processor reads money as a double
    if abs(exact) >= 10**10 or exact != exact.quantize(Decimal("0.01")):
        return None
    return exact.quantize(Decimal("0.01"))


def money_multiple_of(validator, step, instance, schema):
    if validator.is_type(instance, "number") and step == 0.01 and as_money(instance) is None:
        yield ValidationError(f"{instance!r} is not a whole number of cents within decimal(12,2)")


def free_text_type(validator, kind, instance, schema):
    """`type`, except that a free-text string field accepts any non-null JSON value."""
    if kind == "string" and schema.get("x-free-text") and instance is not None:
        return
    if not validator.is_type(instance, kind):
        yield ValidationError(f"{instance!r} is not of type {kind!r}")


def contract_for_oracle() -> dict:
    """The contract with its free-text string fields marked (the processor keeps their text)."""
    contract = json.loads(json.dumps(load_contract()))

    def mark(node: dict, prefix: str) -> None:
        for name, child in node.get("properties", {}).items():
            path = f"{prefix}{name}"
            if path in FREE_TEXT:
                child["x-free-text"] = True
            if child.get("type") == "object":
                mark(child, path + ".")
            elif child.get("type") == "array":
                mark(child["items"], path + "[].")

    mark(contract, "")
    return contract


Oracle = validators.extend(
    Draft202012Validator,
    validators={"multipleOf": money_multiple_of, "type": free_text_type},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"integer": is_int64, "number": is_number}
    ),
)
ORACLE = Oracle(contract_for_oracle(), format_checker=FORMATS)


def reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def oracle_problems(line: str) -> list[str]:
    """Why the contract rejects the line (empty: valid for the day)."""
    try:
        doc = json.loads(line, parse_constant=reject_constant)
    except ValueError as exc:
        return [f"not JSON: {exc}"]
    problems = [error.message for error in ORACLE.iter_errors(doc)]
    if problems:
        return problems
    ts = parse_date_time(doc["order_ts"])
    if not DAY_START <= ts < DAY_START + timedelta(days=1):
        problems.append(f"order_ts {doc['order_ts']} outside {DAY}")
    items = sum(Decimal(i["quantity"]) * as_money(i["unit_price"]) for i in doc["items"])
    if items != as_money(doc["total_amount"]):
        problems.append(f"total {doc['total_amount']} != items {items}")
    return problems


# --- strategies -----------------------------------------------------------------------------------

CONTRACT = load_contract()
PROPS = CONTRACT["properties"]


def enum_of(*path: str) -> list[str]:
    node = CONTRACT
    for name in path:
        node = node["properties"][name] if name != "[]" else node["items"]
    return node["enum"]


digits = st.integers(min_value=0, max_value=10**9 - 1)
cents = st.integers(min_value=0, max_value=10**6)
free_text = st.text(max_size=12)


@st.composite
def order_ts(draw) -> str:
    """A timestamp inside DAY, written with Z or an offset, 0 / 3 / 6 / 9 fraction digits."""
    instant = DAY_START + timedelta(microseconds=draw(st.integers(0, 86_400 * 10**6 - 1)))
    minutes = draw(st.sampled_from([0, 0, 60, -300, 330, 840, -720]))
    local = instant.astimezone(timezone(timedelta(minutes=minutes)))
    digits_shown = draw(st.sampled_from([0, 3, 6, 9]))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if digits_shown:
        text += "." + f"{local.microsecond:06d}000"[:digits_shown]
    if minutes == 0 and draw(st.booleans()):
        return text + "Z"
    sign = "-" if minutes < 0 else "+"
    return text + f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def money(value_cents: int) -> float:
    return float(Decimal(value_cents) / 100)


@st.composite
def valid_order(draw) -> dict:
    n = draw(digits)
    items = []
    for line_no in range(1, draw(st.integers(1, 5)) + 1):
        item = {
            "line_no": line_no,
            "product_id": f"PRD-{draw(st.integers(0, 99_999)):05d}",
            "quantity": draw(st.integers(1, 1000)),
            "unit_price": money(draw(cents)),
        }
        if draw(st.booleans()):
            item["product_name"] = draw(free_text)
        items.append(item)
    total = sum(Decimal(i["quantity"]) * Decimal(repr(i["unit_price"])) for i in items)
    customer = {
        "customer_id": f"CUST-{draw(st.integers(0, 9_999_999)):07d}",
        "name": draw(st.text(min_size=1, max_size=12)),
        "email": draw(
            st.from_regex(r"[a-z0-9._%+-]{1,8}@[a-z0-9-]{1,8}\.[a-z]{2,4}", fullmatch=True)
        ),
    }
    if draw(st.booleans()):
        customer["signup_date"] = draw(st.dates(date(1990, 1, 1), date(2030, 12, 31))).isoformat()
    if draw(st.booleans()):
        customer["address"] = {
            "city": draw(free_text),
            "country": draw(st.from_regex(r"[A-Z]{2}", fullmatch=True)),
        }
    doc = {
        "order_id": f"ORD-20240115-{n:09d}",
        "order_ts": draw(order_ts()),
        "status": draw(st.sampled_from(enum_of("status"))),
        "currency": draw(st.sampled_from(enum_of("currency"))),
        "customer": customer,
        "items": items,
        "payment": {
            "payment_id": f"PAY-20240115-{n:09d}",
            "method": draw(st.sampled_from(enum_of("payment", "method"))),
            "amount": float(total),
        },
        "total_amount": float(total),
    }
    if draw(st.booleans()):
        doc["channel"] = draw(st.sampled_from(enum_of("channel")))
    return doc


any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=5,
)
# Values aimed at the edges of the rules: types, limits, formats, cents, line breaks.
edge_values = st.sampled_from(
    [
        None, "", " ", "x", "12", 0, -1, 1, 2.0, 2.5, 1e-7, 0.001, 0.30000000000000004,
        10**10, 9_999_999_999.99, 2**63, -(2**63) - 1, 1e308,
        True, [], {}, [None], "ORD-20240115-000000001\n", "PRD-00001", "PRD-1", "CUST-0000001 ",
        "GB", "gb", "GB\n", "2024-01-15T12:00:00Z", "2024-01-16T00:00:00Z",
        "2024-01-14T23:59:59.999999Z", "2024-01-15T23:30:00-01:00", "2024-01-15 12:00:00Z",
        "2024-02-30T12:00:00Z", "2024-01-15T12:00:00", "2023-02-29", "2024-02-29", "a@b.c",
        "a@b", "a b@c.de", "paid", "PAID", "card", "USD", "usd",
    ]
)  # fmt: skip


def paths_of(doc, prefix: str = "") -> list[tuple]:
    """Every (container, key, dotted path) in the document, depth first."""
    found = []
    items = enumerate(doc) if isinstance(doc, list) else doc.items()
    for key, value in items:
        path = f"{prefix}{key}"
        found.append((doc, key, path))
        if isinstance(value, dict | list):
            found += paths_of(value, path + ".")
    return found


@st.composite
def raw_line(draw) -> str:
    """One raw line: a valid order, or one with a defect a feed could really produce."""
    doc = draw(valid_order())
    kind = draw(
        st.sampled_from(
            ["valid", "valid", "edge", "edge", "any", "delete", "extra", "total", "day", "truncate"]
        )
    )
    if kind in ("edge", "any", "delete"):
        container, key, _ = draw(st.sampled_from(paths_of(doc)))
        if kind == "delete":
            del container[key]
        else:
            container[key] = draw(edge_values if kind == "edge" else any_json)
    elif kind == "extra":
        container = draw(st.sampled_from([doc, doc["customer"], doc["items"][0]]))
        container["x_" + draw(st.text(max_size=5))] = draw(any_json)
    elif kind == "total":
        doc["total_amount"] = money(
            int(Decimal(repr(doc["total_amount"])) * 100) + draw(st.sampled_from([-1, 1]))
        )
    elif kind == "day":
        shift = timedelta(days=draw(st.sampled_from([-1, 1])))
        ts = parse_date_time(doc["order_ts"]) + shift
        doc["order_ts"] = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if kind == "truncate":
        text = text[: draw(st.integers(0, len(text) - 1))]
    return text


# --- properties -----------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(lines=st.lists(raw_line(), min_size=1, max_size=40))
def test_the_processor_accepts_exactly_what_the_contract_accepts(spark, lines):
    frame = lines_frame(spark, lines)
    rows = validate(frame, DAY).collect()
    assert len(rows) == len(lines)
    # Rows come back rejected first; line_hash (xxhash64 of the line) ties them to the input.
    hashes = [row[0] for row in frame.select(F.xxhash64("value")).collect()]
    by_hash = {row["line_hash"]: row for row in rows}
    for text, line_hash in zip(lines, hashes, strict=True):
        row, problems = by_hash[line_hash], oracle_problems(text)
        if problems:
            assert row["reason"] in REASONS, f"accepted, but the contract says {problems}: {text}"
            assert row["detail"], f"{row['reason']} without a detail: {text}"
            assert row["raw_line"] == text
        else:
            assert row["reason"] is None, f"{row['reason']}: {row['detail']} for a valid {text}"
            doc = json.loads(text)
            assert row["order"]["order_id"] == doc["order_id"]
            assert row["order"]["total_amount"] == as_money(doc["total_amount"])


@settings(PROPERTY_SETTINGS, max_examples=max(1, EXAMPLES // 2))
@given(lines=st.lists(raw_line(), min_size=1, max_size=30), replays=st.data())
def test_every_line_is_counted_once(spark, lines, replays):
    """lines = valid + quarantined + duplicates dropped; one kept order per valid order id."""
    lines = lines + replays.draw(st.lists(st.sampled_from(lines), max_size=10))
    validated = validate(lines_frame(spark, lines), DAY).cache()
    columns = ["reason", "order", F.unix_micros("order_ts").alias("ts_us"), "line_hash", "line_id"]
    rows = validated.select(*columns).collect()
    counts, winners, dropped = tally(validated)
    valid, _ = split_valid(validated)
    kept_rows = keep_winners(valid, winners).collect()
    validated.unpersist()
    # The dedupe's rule, restated: per order id the latest order_ts (NULL last), then the
    # smallest line hash, then the first line read.
    best: dict[str, tuple] = {}
    for row in rows:
        if row["reason"] is None:
            ts = row["ts_us"]
            rank = (ts is None, -(ts or 0), row["line_hash"], row["line_id"])
            order_id = row["order"]["order_id"]
            best[order_id] = min(best.get(order_id, rank), rank)
    assert counts == Counter(row["reason"] for row in rows)
    assert sorted(row["line_id"] for row in kept_rows) == sorted(r[-1] for r in best.values())
    kept_ids = [row["order"]["order_id"] for row in kept_rows]
    assert sum(counts.values()) == len(lines)
    assert len(kept_ids) + dropped == counts.get(None, 0)
    assert len(kept_ids) == len(set(kept_ids))
    expected_ids = {json.loads(t)["order_id"] for t in lines if not oracle_problems(t)}
    assert set(kept_ids) == expected_ids
