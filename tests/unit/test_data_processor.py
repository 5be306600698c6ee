"""data_processor: validation reasons, dedupe, reconciliation, idempotent and atomic publishing."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import functions as F  # noqa: N812

from spark_jobs import data_generator
from spark_jobs import data_processor as dp
from spark_jobs.common import layout
from spark_jobs.common.storage import Storage
from spark_jobs.processing.dedupe import keep_winners, tally
from spark_jobs.processing.extract import InputIncompleteError, InputMissingError
from spark_jobs.processing.publish import NotPublishedError, read_published
from spark_jobs.processing.report import ReconciliationError, quality_report
from spark_jobs.processing.validate import split_valid, validate

DAY = "2024-01-15"
OTHER_DAY = "2024-01-14"


def order(n: int, **changes) -> dict:
    """A valid order (total = 2*1.25 + 1*3.00 = 5.50) with top-level fields replaced."""
    doc = {
        "order_id": f"ORD-20240115-{n:09d}",
        "order_ts": "2024-01-15T10:00:00Z",
        "status": "paid",
        "channel": "web",
        "currency": "USD",
        "customer": {
            "customer_id": f"CUST-{n % 3:07d}",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "signup_date": "2023-05-01",
            "address": {"city": "London", "country": "GB"},
        },
        "items": [
            {"line_no": 1, "product_id": "PRD-00001", "quantity": 2, "unit_price": 1.25},
            {"line_no": 2, "product_id": "PRD-00002", "quantity": 1, "unit_price": 3.00},
        ],
        "payment": {"payment_id": f"PAY-20240115-{n:09d}", "method": "card", "amount": 5.50},
        "total_amount": 5.50,
    }
    doc.update(changes)
    return doc


def line(doc: dict) -> str:
    return json.dumps(doc)


def edited(n: int, edit) -> str:
    doc = order(n)
    edit(doc)
    return line(doc)


# (raw line, expected reason, expected detail): one per quarantine reason, plus nuances.
BAD_LINES = [
    ('{"order_id": "ORD-20240115-000000100", "order_ts"', "malformed_json", "not parseable JSON"),
    ("{order_id: 1}", "malformed_json", "not parseable JSON"),
    ("", "malformed_json", "not parseable JSON"),
    (edited(101, lambda d: d["customer"].pop("email")), "missing_required_field", "customer.email"),
    (edited(102, lambda d: d.pop("payment")), "missing_required_field", "payment"),
    (
        edited(103, lambda d: d["items"][1].pop("unit_price")),
        "missing_required_field",
        "items[1].unit_price",
    ),
    (
        edited(104, lambda d: d["items"][1].update(quantity="three")),
        "wrong_type",
        "items[1].quantity",
    ),
    (edited(105, lambda d: d.update(total_amount="5.50 USD")), "wrong_type", "total_amount"),
    # Spark would silently read "5.50" into a decimal: money is parsed as a double instead.
    (edited(106, lambda d: d.update(total_amount="5.50")), "wrong_type", "total_amount"),
    # A number in a string field with a pattern fails the pattern. (In a free-text field, such as
    # customer.name, it is deliberately kept as its text: see validate.)
    (
        edited(107, lambda d: d["customer"].update(customer_id=12)),
        "invalid_value",
        "customer.customer_id: pattern",
    ),
    (edited(108, lambda d: d.update(customer="CUST-0000001")), "wrong_type", "customer"),
    ("[1, 2]", "wrong_type", "$ (the line is not an object)"),
    (
        edited(109, lambda d: d["items"][0].update(quantity=-2)),
        "negative_quantity",
        "items[0].quantity",
    ),
    (
        edited(110, lambda d: d.update(order_ts="2024-01-16T00:00:00Z")),
        "timestamp_outside_day",
        "order_ts: not inside 2024-01-15 (UTC): 2024-01-16T00:00:00Z",
    ),
    (
        edited(111, lambda d: d.update(order_ts="2024-01-14T23:59:59Z")),
        "timestamp_outside_day",
        "order_ts: not inside 2024-01-15 (UTC): 2024-01-14T23:59:59Z",
    ),
    (edited(112, lambda d: d.update(status="lost")), "invalid_value", "status: enum"),
    (
        edited(113, lambda d: d["items"][1].update(product_id="P2")),
        "invalid_value",
        "items[1].product_id: pattern",
    ),
    (edited(114, lambda d: d.update(items=[])), "invalid_value", "items: minItems"),
    (
        edited(116, lambda d: d["items"][0].update(unit_price=1.255)),
        "invalid_value",
        "items[0].unit_price: multipleOf",
    ),
    (
        edited(117, lambda d: d["payment"].update(amount=1e11)),
        "invalid_value",
        "payment.amount: does not fit the contract",
    ),
    (
        edited(115, lambda d: d.update(total_amount=9.99)),
        "total_mismatch",
        "total_amount=9.99, sum(quantity*unit_price)=5.50",
    ),
]


def lines_frame(spark, lines: list[str]):
    return spark.createDataFrame(
        [(text, "part-0") for text in lines], "value string, source_file string"
    )


def write_raw_day(
    root: Path, day: str, lines: list[str], manifest_lines: int | None = None
) -> None:
    day_dir = Path(layout.raw_day_dir(str(root), day))
    day_dir.mkdir(parents=True, exist_ok=True)
    (day_dir / "part-00000.jsonl").write_text("".join(text + "\n" for text in lines))
    if manifest_lines is not None:
        (day_dir / "_manifest.json").write_text(json.dumps({"date": day, "lines": manifest_lines}))
    (day_dir / "_SUCCESS").write_text("")


def good_and_bad_lines() -> list[str]:
    goods = [line(order(n)) for n in range(1, 7)]
    duplicates = [goods[0], goods[1]]  # exact replays, as the generator injects them
    later = line(order(6, order_ts="2024-01-15T11:00:00Z"))  # same id, later: replaces order 6
    return goods + duplicates + [later] + [text for text, _, _ in BAD_LINES]


def test_each_bad_line_gets_its_reason_and_detail(spark):
    lines = [text for text, _, _ in BAD_LINES] + [line(order(1))]
    rows = validate(lines_frame(spark, lines), DAY).collect()
    got = [(row["reason"], row["detail"]) for row in rows]
    assert got == [(reason, detail) for _, reason, detail in BAD_LINES] + [(None, None)]
    bad = rows[0]
    assert bad["raw_line"] == BAD_LINES[0][0]
    assert bad["source_file"] == "part-0"
    assert rows[-1]["order"]["total_amount"] == Decimal("5.50")


def test_the_dedupe_keeps_latest_then_smallest_hash(spark):
    lines = [
        line(order(1)),
        line(order(1)),
        line(order(2, order_ts="2024-01-15T09:00:00Z")),
        line(order(2, order_ts="2024-01-15T12:00:00Z")),
        line(order(3)),
    ]
    validated = validate(lines_frame(spark, lines), DAY)
    counts, winners, dropped = tally(validated)
    valid, quarantine = split_valid(validated)
    kept = keep_winners(valid, winners)
    assert counts == {None: 5}
    assert quarantine.count() == 0
    assert dropped == 2
    rows = {r["order"]["order_id"]: r["order"]["order_ts"] for r in kept.collect()}
    assert len(rows) == 3
    assert rows["ORD-20240115-000000002"] == "2024-01-15T12:00:00Z"


def test_quality_report_refuses_lines_that_do_not_add_up():
    counts = {None: 10, "malformed_json": 2}
    report = quality_report(DAY, counts, 3, {"orders": 7}, {"lines": 12})
    assert report["reconciled"]
    assert report["quarantine_by_reason"]["malformed_json"] == 2
    with pytest.raises(ReconciliationError, match="lines read 12 != valid 8"):
        quality_report(DAY, counts, 3, {"orders": 8})
    with pytest.raises(ReconciliationError, match=r"_manifest\.json says 13 lines but 12"):
        quality_report(DAY, counts, 3, {"orders": 7}, {"lines": 13})


@pytest.fixture(scope="module")
def published(spark, tmp_path_factory):
    """One processed day (plus an untouched other day) shared by the publishing tests."""
    root = tmp_path_factory.mktemp("pipeline")
    raw, out = root / "raw", root / "processed"
    lines = good_and_bad_lines()
    write_raw_day(raw, DAY, lines, manifest_lines=len(lines))
    sentinel = out / "orders" / f"dt={OTHER_DAY}" / "keep.txt"
    sentinel.parent.mkdir(parents=True)
    sentinel.write_text("other day")
    report = dp.process_day(spark, str(raw), str(out), DAY)
    return {"raw": raw, "out": out, "lines": lines, "report": report, "sentinel": sentinel}


def test_report_reconciles_every_line(published, spark):
    report = published["report"]
    assert report["lines_read"] == len(published["lines"]) == 30
    assert report["duplicates_dropped"] == 3
    assert report["valid"] == 6
    assert report["quarantined"] == len(BAD_LINES)
    assert (
        report["lines_read"]
        == report["valid"] + report["quarantined"] + report["duplicates_dropped"]
    )
    assert report["manifest_lines"] == 30
    expected = {}
    for _, reason, _ in BAD_LINES:
        expected[reason] = expected.get(reason, 0) + 1
    assert {k: v for k, v in report["quarantine_by_reason"].items() if v} == expected
    on_disk = json.loads(
        (published["out"] / "reports" / f"dt={DAY}" / "quality_report.json").read_text()
    )
    assert on_disk == report
    quarantine = read_published(spark, str(published["out"]), "quarantine", DAY)
    assert quarantine.columns == ["raw_line", "reason", "detail", "source_file"]
    assert quarantine.count() == len(BAD_LINES)
    assert quarantine.where(F.col("source_file").endswith("part-00000.jsonl")).count() == len(
        BAD_LINES
    )


def test_tables_are_consistent(published, spark):
    out = str(published["out"])
    orders = read_published(spark, out, "orders", DAY)
    items = read_published(spark, out, "order_items", DAY)
    assert orders.count() == orders.select("order_id").distinct().count() == 6
    assert items.count() == 12
    by_order = items.groupBy("order_id").agg(F.sum("line_amount").alias("items_total"))
    mismatched = orders.join(by_order, "order_id").where(
        F.col("items_total") != F.col("total_amount")
    )
    assert mismatched.count() == 0
    latest = orders.where(F.col("order_id") == "ORD-20240115-000000006").collect()
    assert latest[0]["order_ts"].hour == 11
    assert read_published(spark, out, "customers", DAY).count() == 3
    assert read_published(spark, out, "payments", DAY).count() == 6
    sales = read_published(spark, out, "daily_sales", DAY).collect()
    assert sum(row["orders"] for row in sales) == 6
    assert sum(row["revenue"] for row in sales) == Decimal("33.00")


def test_money_is_published_as_decimal_cents(published, spark):
    """Every money column leaves the job as the contract's decimal(12,2), never a double."""
    out = str(published["out"])
    money = {
        "orders": ["total_amount"],
        "order_items": ["unit_price", "line_amount"],
        "payments": ["amount"],
    }
    for table, columns in money.items():
        types = dict(read_published(spark, out, table, DAY).dtypes)
        for column in columns:
            assert types[column] == "decimal(12,2)", f"{table}.{column} is {types[column]}"
    items = read_published(spark, out, "order_items", DAY).collect()
    assert all(row["line_amount"] == row["quantity"] * row["unit_price"] for row in items)


def test_rerun_replaces_only_that_day(published, spark):
    out = str(published["out"])
    again = dp.process_day(spark, str(published["raw"]), out, DAY)
    for key in ("lines_read", "valid", "quarantined", "duplicates_dropped", "tables"):
        assert again[key] == published["report"][key]
    assert read_published(spark, out, "orders", DAY).count() == 6
    assert published["sentinel"].read_text() == "other day"


def test_failed_write_leaves_the_day_unpublished(published, spark, monkeypatch):
    out = str(published["out"])
    storage = Storage(spark)
    real_write = storage.write_parquet
    written: list[str] = []

    def write_then_fail(df, uri_dir):
        if len(written) == 2:
            raise OSError(f"disk full writing {uri_dir}")
        written.append(uri_dir)
        real_write(df, uri_dir)

    monkeypatch.setattr(storage, "write_parquet", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        dp.process_day(spark, str(published["raw"]), out, DAY, storage=storage)
    assert not (published["out"] / "reports" / f"dt={DAY}" / "quality_report.json").exists()
    markers = list(published["out"].glob(f"*/dt={DAY}/_SUCCESS"))
    assert markers == []
    with pytest.raises(NotPublishedError, match=r"quality_report\.json is missing"):
        read_published(spark, out, "orders", DAY)
    # Recovery is a plain rerun.
    dp.process_day(spark, str(published["raw"]), out, DAY)
    assert read_published(spark, out, "orders", DAY).count() == 6


def test_read_published_refuses_a_table_without_its_marker(published, spark):
    out = published["out"]
    marker = out / "payments" / f"dt={DAY}" / "_SUCCESS"
    marker.unlink()
    try:
        with pytest.raises(NotPublishedError, match=r"payments.*_SUCCESS is missing"):
            read_published(spark, str(out), "payments", DAY)
    finally:
        marker.write_text("")


def test_empty_day_publishes_empty_tables_and_zero_report(spark, tmp_path):
    write_raw_day(tmp_path / "raw", DAY, [], manifest_lines=0)
    out = str(tmp_path / "processed")
    report = dp.process_day(spark, str(tmp_path / "raw"), out, DAY)
    assert report["lines_read"] == report["valid"] == report["quarantined"] == 0
    assert set(report["tables"].values()) == {0}
    orders = read_published(spark, out, "orders", DAY)
    assert orders.count() == 0
    assert {"order_id", "order_ts", "total_amount"} <= set(orders.columns)


def test_missing_input_names_the_path(spark, tmp_path):
    expected = str(tmp_path / "raw" / "orders" / f"dt={DAY}")
    with pytest.raises(InputMissingError, match=expected):
        dp.process_day(spark, str(tmp_path / "raw"), str(tmp_path / "out"), DAY)


def test_unfinished_generator_is_refused(spark, tmp_path):
    write_raw_day(tmp_path / "raw", DAY, [line(order(1))])
    (tmp_path / "raw" / "orders" / f"dt={DAY}" / "_SUCCESS").unlink()
    with pytest.raises(InputIncompleteError, match=r"dt=2024-01-15/_SUCCESS is missing"):
        dp.process_day(spark, str(tmp_path / "raw"), str(tmp_path / "out"), DAY)


def test_manifest_mismatch_fails_before_publishing(spark, tmp_path):
    write_raw_day(tmp_path / "raw", DAY, [line(order(1))], manifest_lines=2)
    with pytest.raises(ReconciliationError, match="lost in transit"):
        dp.process_day(spark, str(tmp_path / "raw"), str(tmp_path / "out"), DAY)
    assert not (tmp_path / "out").exists()


def test_generator_output_is_classified_as_the_manifest_says(spark, tmp_path):
    raw, out = str(tmp_path / "raw"), str(tmp_path / "processed")
    manifest = data_generator.write_day(spark, raw, DAY, 400, seed=7, bad_record_rate=0.25)
    report = dp.process_day(spark, raw, out, DAY)
    assert report["lines_read"] == manifest["lines"]
    outcomes = layout.OUTCOME_OF_KIND
    dropped = sum(n for kind, n in manifest["bad"].items() if outcomes[kind] is None)
    assert report["duplicates_dropped"] == dropped == manifest["bad"]["duplicate_order_id"]
    injected = {outcomes[kind]: n for kind, n in manifest["bad"].items() if outcomes[kind]}
    found = {r: n for r, n in report["quarantine_by_reason"].items() if r in injected}
    assert found == injected
    assert all(report["quarantine_by_reason"][r] == 0 for r in layout.REASONS_NOT_INJECTED)
    assert report["quarantined"] == sum(injected.values())
    assert report["valid"] == manifest["good"]


def test_a_line_with_more_than_one_json_value_is_malformed(spark):
    """Spark's JSON parsers read a line's first value and ignore the rest: `{order}{order}`
    would pass as one order and lose the second. Such lines are malformed."""
    one = line(order(1))
    lines = {
        one + " trailing": "text after the JSON value",
        one + line(order(2)): "text after the JSON value",
        one + ", " + one: "text after the JSON value",
        one + "}": "text after the JSON value",
        one + '], "x": 1}': "text after the JSON value",
        one + " \t": None,
        one: None,
    }
    rows = validate(lines_frame(spark, list(lines)), DAY).collect()
    got = [(row["reason"], row["detail"]) for row in rows]
    want = [
        (None, None) if d is None else (layout.MALFORMED_JSON, f"not parseable JSON: {d}")
        for d in lines.values()
    ]
    assert got == want


def test_a_trailing_line_break_does_not_pass_a_pattern_or_format(spark):
    """JSON Schema's `$` is the end of the text; Java's (Spark's rlike) also matches before a
    final line break, which let "ORD-...\\n" through as a valid order id."""
    cases = [
        (order(1, order_id="ORD-20240115-000000001\n"), "order_id: pattern"),
        (order(2, order_id="ORD-20240115-000000002\r"), "order_id: pattern"),
        (order(3, order_id="ORD-20240115-000000003\u2028"), "order_id: pattern"),
        (order(4, order_ts="2024-01-15T10:00:00Z\n"), "order_ts: format date-time"),
    ]
    doc = order(5)
    doc["customer"]["email"] = "ada@example.com\n"
    cases.append((doc, "customer.email: format email"))
    doc = order(6)
    doc["items"][1]["product_id"] = "PRD-00002\n"
    cases.append((doc, "items[1].product_id: pattern"))
    doc = order(7)
    doc["customer"]["address"]["country"] = "GB\n"
    cases.append((doc, "customer.address.country: pattern"))
    rows = validate(lines_frame(spark, [line(d) for d, _ in cases]), DAY).collect()
    assert [(r["reason"], r["detail"]) for r in rows] == [("invalid_value", d) for _, d in cases]


def test_the_uncompressed_cache_is_the_jobs_own_setting(spark, tmp_path):
    """process_day caches uncompressed while it runs and gives the session its settings back."""
    key = next(iter(dp.CACHE_CONF))
    write_raw_day(tmp_path / "raw", DAY, good_and_bad_lines(), manifest_lines=None)
    seen = []
    original = dp.tally

    def spying(validated):
        seen.append(spark.conf.get(key))
        return original(validated)

    spark.conf.set(key, "true")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(dp, "tally", spying)
            dp.process_day(spark, str(tmp_path / "raw"), str(tmp_path / "processed"), DAY)
        assert seen == ["false"]
        assert spark.conf.get(key) == "true"
    finally:
        spark.conf.unset(key)
    dp.process_day(spark, str(tmp_path / "raw"), str(tmp_path / "again"), DAY)
    assert spark.conf.get(key, None) is None, "an unset setting stays unset"
