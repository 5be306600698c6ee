"""Hostile raw input: whatever bytes land in a raw day, every line ends up valid, quarantined
with a reason, or dropped as a duplicate; the counts reconcile; the job never crashes on data.

The corpus is built here, as bytes, at test time (tests/unit/test_data_processor.py has the
one-line-per-reason cases; this is the hostile rest): truncated lines, invalid UTF-8, very long
lines, wrong types, nulls everywhere, duplicate keys, unexpected fields, scalars and deep nesting,
control characters, empty files, a `_SUCCESS` with no data. It runs through the job's main() on a
local path and through process_day() on LocalStack S3 (the arrow backend), and both must agree.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

import pytest
from pyspark.sql import functions as F  # noqa: N812

from spark_jobs import data_processor as dp
from spark_jobs.common import layout
from spark_jobs.common.layout import (
    INVALID_VALUE,
    MALFORMED_JSON,
    MISSING_REQUIRED_FIELD,
    QUARANTINE_TABLE,
    WRONG_TYPE,
    join,
)
from spark_jobs.common.storage import Storage, filesystem_and_path
from spark_jobs.processing.publish import read_published
from spark_jobs.processing.report import ReconciliationError
from tests.unit.test_data_processor import DAY, order

pytestmark = pytest.mark.spark

VALID = "valid"
DUPLICATE = "duplicate"


def text(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def with_bytes(n: int, old: bytes, new: bytes) -> bytes:
    """Order n as JSON with its first `old` replaced by `new` (which may be any bytes)."""
    encoded = text(order(n))
    assert old in encoded, f"{old!r} not in order {n}"
    return encoded.replace(old, new, 1)


def with_fields(n: int, **changes) -> bytes:
    return text(order(n, **changes))


def nested(n: int, path: str, value) -> bytes:
    """Order n with the field at a dotted path (items.0.quantity) set to value."""
    doc = order(n)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return text(doc)


def all_fields_null(n: int) -> bytes:
    return text({key: None for key in order(n)})


def duplicate_key(n: int, key: bytes, first_value: bytes) -> bytes:
    """Order n with `key` written twice: first `first_value`, then the order's own value."""
    encoded = text(order(n))
    return b"{" + b'"' + key + b'": ' + first_value + b", " + encoded[1:]


@dataclass(frozen=True)
class Case:
    """One raw line and what must become of it: VALID, DUPLICATE or a quarantine reason."""

    name: str
    line: bytes
    outcome: str


def corpus() -> list[Case]:
    """The hostile lines, each with the outcome the contract asks for."""
    good = text(order(1))
    return [
        Case("valid order", good, VALID),
        Case("exact replay", good, DUPLICATE),
        # Truncated: a writer died mid-line, or a file was cut.
        Case("truncated at 1 byte", good[:1], MALFORMED_JSON),
        Case("truncated mid key", good[:20], MALFORMED_JSON),
        Case("truncated mid value", good[: len(good) // 2], MALFORMED_JSON),
        Case("missing final brace", good[:-1], MALFORMED_JSON),
        # Encodings: invalid UTF-8 is replaced by U+FFFD when read, never a crash.
        Case("invalid UTF-8 in free text", with_bytes(2, b"Ada", b"A\xff\xfeda"), VALID),
        Case("overlong UTF-8 in free text", with_bytes(3, b"Ada", b"A\xc0\xafda"), VALID),
        Case(
            "invalid UTF-8 in an id",
            with_bytes(4, b"ORD-20240115", b"ORD-2024\xc3\x28115"),
            INVALID_VALUE,
        ),
        Case("binary garbage", b"\xc3\x28\xa0\xa1\x00\xff", MALFORMED_JSON),
        Case("UTF-8 BOM before the object", b"\xef\xbb\xbf" + text(order(5)), MALFORMED_JSON),
        Case("escaped lone surrogate", with_bytes(6, b"Ada", b"A\\ud800da"), VALID),
        Case("NUL byte between tokens", text(order(7))[:-1] + b"\x00}", MALFORMED_JSON),
        Case(
            "raw control character in a string",
            with_bytes(8, b"Ada", b"A\x01da"),
            MALFORMED_JSON,
        ),
        Case(
            "CR inside the line (JSON whitespace)",
            with_bytes(9, b', "status"', b',\r"status"'),
            VALID,
        ),
        # Size: long lines span the arrow reader's 8 MiB blocks.
        Case("9 MiB unexpected field", text({**order(10), "note": "x" * (9 << 20)}), VALID),
        Case("3 MiB of garbage", b"y" * (3 << 20), MALFORMED_JSON),
        Case(
            "nesting 5000 deep",
            text(order(11))[:-1] + b', "deep": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            MALFORMED_JSON,
        ),
        # Types.
        Case("id as a number", with_fields(12, order_id=12), INVALID_VALUE),
        Case("quantity as a string", nested(13, "items.0.quantity", "2"), WRONG_TYPE),
        Case("quantity as a float", nested(14, "items.0.quantity", 2.5), WRONG_TYPE),
        Case(
            "quantity beyond 64 bits",
            with_bytes(15, b'"quantity": 2', b'"quantity": 99999999999999999999999'),
            INVALID_VALUE,
        ),
        Case("total as a boolean", with_fields(16, total_amount=True), WRONG_TYPE),
        Case(
            "total as 1e400",
            with_bytes(17, b'"total_amount": 5.5', b'"total_amount": 1e400'),
            INVALID_VALUE,
        ),
        Case(
            "total as NaN",
            with_bytes(18, b'"total_amount": 5.5', b'"total_amount": NaN'),
            MALFORMED_JSON,
        ),
        Case("items as an object", with_fields(19, items={"line_no": 1}), WRONG_TYPE),
        Case("customer as a list", with_fields(20, customer=["CUST-0000001"]), WRONG_TYPE),
        Case("payment amount as text", nested(21, "payment.amount", "5.50"), WRONG_TYPE),
        # Nulls.
        Case("every field null", all_fields_null(22), MISSING_REQUIRED_FIELD),
        Case("order_ts null", with_fields(23, order_ts=None), MISSING_REQUIRED_FIELD),
        Case("an item null", with_fields(24, items=[None]), MISSING_REQUIRED_FIELD),
        Case("nested email null", nested(25, "customer.email", None), MISSING_REQUIRED_FIELD),
        Case("optional channel null", with_fields(26, channel=None), VALID),
        Case("JSON null line", b"null", WRONG_TYPE),
        # Duplicate keys: the last value wins, as in JSON.parse and Python's json.
        Case("duplicate key, same value", duplicate_key(27, b"status", b'"paid"'), VALID),
        Case(
            "duplicate key, earlier value valid", duplicate_key(28, b"status", b'"shipped"'), VALID
        ),
        Case(
            "duplicate key, earlier value of a wrong type",
            duplicate_key(29, b"total_amount", b'"x"'),
            MALFORMED_JSON,
        ),
        # Unexpected fields are allowed and ignored (the contract says so).
        Case(
            "unexpected fields at every level",
            text(
                {
                    **order(30),
                    "coupon": {"code": "X"},
                    "customer": {**order(30)["customer"], "vip": True},
                }
            ),
            VALID,
        ),
        # Not one object per line.
        Case("empty line", b"", MALFORMED_JSON),
        Case("blank line", b" \t ", MALFORMED_JSON),
        Case("a number", b"42", WRONG_TYPE),
        Case("a string", b'"order"', WRONG_TYPE),
        Case("an array of orders", b"[" + text(order(31)) + b"]", WRONG_TYPE),
        Case("two orders on one line", text(order(32)) + text(order(33)), MALFORMED_JSON),
        Case("two orders with a comma", text(order(34)) + b", " + text(order(35)), MALFORMED_JSON),
        Case("text after the order", text(order(36)) + b" trailing", MALFORMED_JSON),
        Case("extra closing brace", text(order(37)) + b"}", MALFORMED_JSON),
        Case("array closed after the order", text(order(38)) + b'], "x": 1}', MALFORMED_JSON),
        Case("whitespace after the order", text(order(39)) + b" \t", VALID),
        # Same order_id, later timestamp: a replay, dropped.
        Case("same id, later", with_fields(40, order_ts="2024-01-15T11:00:00Z"), VALID),
        Case("same id, earlier", with_fields(40, order_ts="2024-01-15T09:00:00Z"), DUPLICATE),
    ]


def case_text(case: Case) -> str:
    """The line as the job reads it: U+FFFD for invalid UTF-8 (storage.read_lines)."""
    return case.line.decode("utf-8", errors="replace")


def write_raw_day(storage: Storage, raw_root: str, files: dict[str, bytes]) -> str:
    """Write the files (bytes as given) into <raw_root>/orders/dt=DAY/ on any backend."""
    day_dir = layout.raw_day_dir(raw_root, DAY)
    for name, data in files.items():
        fs, path = filesystem_and_path(join(day_dir, name), storage.s3)
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(data)
    return day_dir


def corpus_files(cases: list[Case]) -> dict[str, bytes]:
    """The corpus over several files: LF, CRLF without a final newline, an empty file, and
    things a reader must skip (the marker, a hidden file, a task's leftover staging file)."""
    half = len(cases) // 2
    return {
        "part-00000.jsonl": b"".join(c.line + b"\n" for c in cases[:half]),
        "part-00001.jsonl": b"\r\n".join(c.line for c in cases[half:]),
        "part-00002.jsonl": b"",
        ".part-00000.jsonl.crc": b"\x00\x01 not data",
        "_temporary/0/part-00009.jsonl": b"{half a line from a killed task",
        "_SUCCESS": b"",
    }


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path, spark):
    """(Storage, raw root, output root): a local directory, or a LocalStack S3 prefix."""
    if request.param == "local":
        yield Storage(spark), str(tmp_path / "raw"), str(tmp_path / "processed")
        return
    s3_storage = request.getfixturevalue("s3_storage")
    bucket = request.getfixturevalue("localstack").bucket
    prefix = f"s3://{bucket}/hostile/{tmp_path.name}"
    yield s3_storage, f"{prefix}/raw", f"{prefix}/processed"


def run_main(raw: str, out: str, capsys) -> dict:
    assert dp.main(["--date", DAY, "--input", raw, "--output", out]) == 0
    printed = capsys.readouterr().out
    return json.loads(printed[printed.index("{") :])


def test_every_hostile_line_is_valid_quarantined_or_a_duplicate(backend, capsys):
    storage, raw, out = backend
    cases = corpus()
    write_raw_day(storage, raw, corpus_files(cases))

    report = run_main(raw, out, capsys)

    outcomes = Counter(case.outcome for case in cases)
    reasons = {r: n for r, n in outcomes.items() if r not in (VALID, DUPLICATE)}
    assert report["lines_read"] == len(cases)
    assert report["valid"] == outcomes[VALID]
    assert report["duplicates_dropped"] == outcomes[DUPLICATE]
    assert report["quarantined"] == sum(reasons.values())
    assert {r: n for r, n in report["quarantine_by_reason"].items() if n} == reasons
    assert report["reconciled"]

    spark = storage.spark
    quarantine = read_published(spark, out, QUARANTINE_TABLE, DAY, storage=storage)
    got = Counter((row["raw_line"], row["reason"]) for row in quarantine.collect())
    want = Counter((case_text(c), c.outcome) for c in cases if c.outcome in reasons)
    assert got == want, f"differs: missing {want - got}, unexpected {got - want}"
    assert quarantine.where(F.col("detail").isNull()).count() == 0
    files = {
        row[0].rsplit("/", 1)[-1] for row in quarantine.select("source_file").distinct().collect()
    }
    assert files == {"part-00000.jsonl", "part-00001.jsonl"}

    orders = read_published(spark, out, "orders", DAY, storage=storage)
    kept = sorted(row["order_id"] for row in orders.select("order_id").collect())
    valid_ids = sorted(json.loads(case_text(c))["order_id"] for c in cases if c.outcome == VALID)
    assert kept == valid_ids


def test_a_success_marker_without_data_publishes_an_empty_day(backend, capsys):
    storage, raw, out = backend
    write_raw_day(storage, raw, {"_SUCCESS": b""})
    report = run_main(raw, out, capsys)
    assert (report["lines_read"], report["valid"], report["quarantined"]) == (0, 0, 0)
    assert set(report["tables"].values()) == {0}


def test_a_success_marker_without_the_data_its_manifest_counts_fails(backend):
    storage, raw, out = backend
    manifest = json.dumps({"date": DAY, "lines": 5}).encode()
    write_raw_day(storage, raw, {"_manifest.json": manifest, "_SUCCESS": b""})
    with pytest.raises(ReconciliationError, match="says 5 lines but 0 were read"):
        dp.main(["--date", DAY, "--input", raw, "--output", out])
    assert not storage.exists(layout.report_path(out, DAY))
