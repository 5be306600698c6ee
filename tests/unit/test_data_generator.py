"""Tests for spark_jobs/data_generator.py: determinism, contract, bad records, manifest, CLI.

Runs the real generator on the shared local SparkSession (tests/conftest.py) with a few thousand
rows, and checks every line against the JSON Schema with jsonschema's Draft 2020-12 validator.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from importlib import resources

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from spark_jobs import data_generator as gen
from spark_jobs.common import layout
from spark_jobs.common.storage import Storage
from spark_jobs.common.synthetic import CUSTOMER_COUNT, POOL_SIZE, build_pools

pytestmark = pytest.mark.spark

DAY = "2024-03-10"
ROWS = 2000
SEED = 7


def _load_json(text: str):
    # Decimals, so multipleOf 0.01 is checked exactly (floats make 0.29 / 0.01 fail).
    return json.loads(text, parse_float=Decimal)


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema_text = (
        resources.files("spark_jobs").joinpath("schemas/raw_order.schema.json").read_text()
    )
    checker = FormatChecker()
    # Without rfc3339-validator jsonschema silently skips date-time: make that a failure.
    assert "date-time" in checker.checkers
    return Draft202012Validator(_load_json(schema_text), format_checker=checker)


@pytest.fixture(scope="module")
def pools():
    return build_pools(SEED)


@pytest.fixture(scope="module")
def generated(spark, pools) -> list[tuple[str, str]]:
    """(value, kind) for a day with a high bad-record rate, so every kind shows up often."""
    df = gen.generate_orders(spark, DAY, ROWS, SEED, 0.3, partitions=2, pools=pools)
    return [(row.value, row.kind) for row in df.collect()]


def _by_kind(lines: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for value, kind in lines:
        out.setdefault(kind, []).append(value)
    return out


# ---- pools -------------------------------------------------------------------------------------


def test_pools_are_deterministic_per_seed(pools):
    again = build_pools(SEED)
    other = build_pools(SEED + 1)
    assert again == pools
    assert other.per_country["last_name"] != pools.per_country["last_name"]
    assert other.product_names != pools.product_names
    assert all(len(per) == POOL_SIZE for per in pools.per_country["street"])
    # One JSON string per line: no raw newlines in any pooled value.
    assert not any("\n" in v for per in pools.per_country["street"] for v in per)
    assert all(p > 0 and p % 100 in (49, 99) for p in pools.product_price_cents)


# ---- determinism ---------------------------------------------------------------------------


def test_same_date_and_seed_give_identical_lines_whatever_the_partitioning(spark, pools):
    runs = [
        sorted(
            gen.generate_orders(spark, DAY, 500, SEED, 0.1, partitions=p, pools=pools)
            .toPandas()
            .itertuples(index=False, name=None)
        )
        for p in (1, 2, 4)
    ]
    assert runs[0] == runs[1] == runs[2]
    assert len(runs[0]) >= 500


def test_another_seed_gives_other_data(spark, pools, generated):
    other = gen.generate_orders(spark, DAY, 200, SEED + 1, 0.3, partitions=2)
    other_values = {row.value for row in other.collect()}
    assert len(other_values) >= 200
    assert not other_values & {v for v, _ in generated}


# ---- contract -------------------------------------------------------------------------------


def test_every_good_line_matches_the_schema(generated, validator):
    good = _by_kind(generated)[layout.GOOD]
    assert len(good) > ROWS // 2
    for line in good:
        errors = list(validator.iter_errors(_load_json(line)))
        assert not errors, (line, [e.message for e in errors])


def test_good_orders_are_consistent(generated):
    day_start = dt.datetime.fromisoformat(f"{DAY}T00:00:00+00:00")
    seen_ids = set()
    for line in _by_kind(generated)[layout.GOOD]:
        order = _load_json(line)
        items_total = sum(item["quantity"] * item["unit_price"] for item in order["items"])
        assert order["total_amount"] == items_total == order["payment"]["amount"], line
        assert [item["line_no"] for item in order["items"]] == list(
            range(1, len(order["items"]) + 1)
        )
        assert 1 <= len(order["items"]) <= 5
        ts = dt.datetime.fromisoformat(order["order_ts"].replace("Z", "+00:00"))
        assert day_start <= ts < day_start + dt.timedelta(days=1)
        sequence = order["order_id"].rsplit("-", 1)[1]
        assert order["payment"]["payment_id"] == f"PAY-20240310-{sequence}"
        assert 1 <= int(order["customer"]["customer_id"][5:]) <= CUSTOMER_COUNT
        seen_ids.add(order["order_id"])
    # Good lines are one per order: the replay of a duplicate is counted under its own kind.
    assert len(seen_ids) == len(_by_kind(generated)[layout.GOOD])


def test_a_customer_looks_the_same_in_every_order(spark, pools):
    # Two different days: a customer's attributes come from the customer id alone.
    lines = [
        row.value
        for day in ("2024-03-10", "2024-03-11")
        for row in gen.generate_orders(spark, day, 3000, SEED, 0.0, partitions=2, pools=pools)
        .select("value")
        .collect()
    ]
    customers: dict[str, set[str]] = {}
    orders_per_customer: Counter = Counter()
    for line in lines:
        customer = _load_json(line)["customer"]
        customers.setdefault(customer["customer_id"], set()).add(json.dumps(customer))
        orders_per_customer[customer["customer_id"]] += 1
    assert all(len(seen) == 1 for seen in customers.values())
    # 6000 orders over 200k customers: dozens order twice (birthday bound), so this has teeth.
    assert sum(1 for n in orders_per_customer.values() if n > 1) > 10


# ---- bad records ----------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.2])
def test_bad_record_share_is_honoured(spark, pools, rate):
    counts = Counter(
        row.kind
        for row in gen.generate_orders(spark, DAY, ROWS, SEED, rate, pools=pools)
        .select("kind")
        .collect()
    )
    orders = sum(counts.values()) - counts["duplicate_order_id"]
    assert orders == ROWS
    bad_orders = sum(counts[k] for k in layout.BAD_KINDS)
    if rate == 0:
        assert bad_orders == 0
    else:
        # Binomial: 4 standard deviations.
        sigma = (ROWS * rate * (1 - rate)) ** 0.5
        assert abs(bad_orders - ROWS * rate) <= 4 * sigma, counts


def test_every_kind_shows_up(generated):
    kinds = Counter(kind for _, kind in generated)
    assert set(kinds) == {layout.GOOD, *layout.BAD_KINDS}
    assert all(kinds[k] > 50 for k in layout.BAD_KINDS), kinds


def test_malformed_lines_are_not_json(generated):
    for line in _by_kind(generated)["malformed_json"]:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)


@pytest.mark.parametrize(
    ("kind", "validator_name"),
    [
        ("missing_required_field", "required"),
        ("wrong_type", "type"),
        ("negative_quantity", "minimum"),
    ],
)
def test_bad_lines_break_exactly_one_rule(generated, validator, kind, validator_name):
    fields = Counter()
    for line in _by_kind(generated)[kind]:
        errors = list(validator.iter_errors(_load_json(line)))
        assert len(errors) == 1, (line, [e.message for e in errors])
        assert errors[0].validator == validator_name, (line, errors[0].message)
        fields[errors[0].json_path if kind != "missing_required_field" else errors[0].message] += 1
    if kind == "negative_quantity":
        assert all(path.endswith(".quantity") for path in fields)
    else:
        # "vary which": the defect hits several different fields.
        assert len(fields) >= 4, fields


def test_missing_field_records_cover_every_required_path(generated, validator):
    missing = set()
    for line in _by_kind(generated)["missing_required_field"]:
        (error,) = validator.iter_errors(_load_json(line))
        parent = ".".join(str(p) for p in error.absolute_path if not isinstance(p, int))
        field = error.message.split("'")[1]
        missing.add(f"{parent}.{field}" if parent else field)
    # 18 required paths in the contract, ~100 records: nearly all must appear.
    assert len(missing) >= 14, missing


def test_timestamp_outside_day_is_a_day_off_and_otherwise_valid(generated, validator):
    for line in _by_kind(generated)["timestamp_outside_day"]:
        order = _load_json(line)
        assert not list(validator.iter_errors(order))
        assert order["order_ts"][:10] in ("2024-03-09", "2024-03-11")


def test_duplicates_replay_a_good_line_exactly(generated):
    by_kind = _by_kind(generated)
    good = set(by_kind[layout.GOOD])
    assert by_kind["duplicate_order_id"]
    for line in by_kind["duplicate_order_id"]:
        assert line in good


# ---- manifest and writing -------------------------------------------------------------------


def test_manifest_counts_match_the_lines(spark, pools, generated):
    df = gen.generate_orders(spark, DAY, ROWS, SEED, 0.3, partitions=2, pools=pools)
    document = gen.manifest(df, DAY, SEED, 0.3)
    kinds = Counter(kind for _, kind in generated)
    assert document["lines"] == len(generated)
    assert document["rows"] == ROWS
    assert document["good"] == kinds[layout.GOOD]
    assert document["bad"] == {k: kinds[k] for k in layout.BAD_KINDS}
    assert document["date"] == DAY
    assert document["seed"] == SEED
    assert document["generator_version"] == gen.GENERATOR_VERSION


class _RecordingStorage(Storage):
    """The real Storage, recording the order of what it was asked to do."""

    def __init__(self, spark) -> None:
        super().__init__(spark)
        self.calls: list[tuple[str, str]] = []

    def delete(self, uri: str) -> None:
        self.calls.append(("delete", uri.rsplit("/", 1)[-1]))
        super().delete(uri)

    def write_lines(self, df, uri_dir: str) -> None:
        self.calls.append(("write_lines", uri_dir.rsplit("/", 1)[-1]))
        super().write_lines(df, uri_dir)

    def write_text(self, uri: str, text: str) -> None:
        self.calls.append(("write_text", uri.rsplit("/", 1)[-1]))
        super().write_text(uri, text)


def test_write_day_layout_manifest_and_success_last(spark, tmp_path):
    day_dir = tmp_path / "raw" / "orders" / f"dt={DAY}"
    day_dir.mkdir(parents=True)
    (day_dir / "_SUCCESS").write_text("")  # from an earlier run
    (day_dir / "part-old.txt").write_text("stale\n")
    storage = _RecordingStorage(spark)

    document = gen.write_day(
        spark,
        str(tmp_path / "raw"),
        DAY,
        ROWS,
        seed=SEED,
        bad_record_rate=0.1,
        partitions=3,
        storage=storage,
    )

    assert storage.calls[0] == ("delete", "_SUCCESS")
    assert storage.calls[-2:] == [("write_text", "_manifest.json"), ("write_text", "_SUCCESS")]
    assert ("write_lines", f"dt={DAY}") in storage.calls
    data_files = sorted(p.name for p in day_dir.iterdir() if not p.name.startswith(("_", ".")))
    assert data_files == sorted(document["files"])
    assert "part-old.txt" not in data_files
    assert 1 <= len(data_files) <= 3
    lines = [line for name in data_files for line in (day_dir / name).read_text().splitlines()]
    on_disk = json.loads((day_dir / "_manifest.json").read_text())
    assert on_disk == document
    assert on_disk["lines"] == len(lines)
    assert on_disk["rows"] == ROWS
    assert on_disk["good"] + sum(on_disk["bad"].values()) == len(lines)
    assert set(on_disk["bad"]) == set(layout.BAD_KINDS)
    assert on_disk["bad_record_rate"] == 0.1
    assert (day_dir / "_SUCCESS").exists()


def test_main_runs_the_job(spark, tmp_path):
    # main joins the running session (getOrCreate), as under spark-submit.
    code = gen.main(
        ["--date", DAY, "--rows", "300", "--output", str(tmp_path), "--bad-record-rate", "0"]
    )
    assert code == 0
    manifest = json.loads((tmp_path / "orders" / f"dt={DAY}" / "_manifest.json").read_text())
    assert manifest["rows"] == manifest["lines"] == manifest["good"] == 300
    assert manifest["seed"] == gen.DEFAULT_SEED


# ---- command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--date", "2024-02-30", "--rows", "10"], "--date '2024-02-30' is not a calendar date"),
        (["--date", "20240101", "--rows", "10"], "expected YYYY-MM-DD"),
        (["--date", DAY, "--rows", "0"], "--rows 0 is out of range"),
        (["--date", DAY, "--rows", "-5"], "--rows -5 is out of range"),
        (["--date", DAY, "--rows", "10", "--bad-record-rate", "0.6"], "--bad-record-rate 0.6"),
        (["--date", DAY, "--rows", "10", "--bad-record-rate", "-0.1"], "expected 0 .. 0.5"),
        (["--date", DAY, "--rows", "10", "--partitions", "0"], "--partitions 0"),
        (["--date", DAY, "--rows", "ten"], "invalid int value"),
        (["--rows", "10"], "--date"),
    ],
)
def test_cli_rejects_bad_arguments(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        gen.parse_args([*args, "--output", "/tmp/unused"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_defaults():
    args = gen.parse_args(["--date", DAY, "--rows", "5", "--output", "s3://b/raw"])
    assert (args.seed, args.bad_record_rate, args.partitions) == (
        gen.DEFAULT_SEED,
        gen.DEFAULT_BAD_RECORD_RATE,
        None,
    )
    assert layout.raw_day_dir(args.output, DAY) == f"s3://b/raw/orders/dt={DAY}"
