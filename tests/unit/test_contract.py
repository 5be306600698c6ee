"""The Spark view of the raw order contract matches schemas/raw_order.schema.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import types as T  # noqa: N812

from spark_jobs.common import contract

SCHEMA_FILE = Path(__file__).parents[2] / "spark_jobs" / "schemas" / "raw_order.schema.json"


def expected_type(node: dict) -> T.DataType:
    """The mapping the brief fixes, written independently of contract.spark_type."""
    kind = node["type"]
    if kind == "object":
        return T.StructType(
            [T.StructField(k, expected_type(v)) for k, v in node.get("properties", {}).items()]
        )
    if kind == "array":
        return T.ArrayType(expected_type(node["items"]))
    return {"integer": T.LongType(), "string": T.StringType()}.get(kind) or T.DecimalType(12, 2)


def test_contract_loads_from_the_package_and_equals_the_file():
    assert contract.load_contract() == json.loads(SCHEMA_FILE.read_text())


def test_struct_type_matches_the_json_schema_field_by_field():
    assert contract.raw_struct_type() == expected_type(json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize(
    ("path", "spark_type"),
    [
        ("total_amount", T.DecimalType(12, 2)),
        ("order_ts", T.StringType()),  # date-time stays a string; validation parses it
        ("customer.email", T.StringType()),
        ("items[].quantity", T.LongType()),
        ("items[].unit_price", T.DecimalType(12, 2)),
        ("payment.amount", T.DecimalType(12, 2)),
    ],
)
def test_key_fields_have_the_agreed_spark_types(path, spark_type):
    node: T.DataType = contract.raw_struct_type()
    for name in path.split("."):
        field = node[name.removesuffix("[]")].dataType
        node = field.elementType if name.endswith("[]") else field
    assert node == spark_type


def test_required_paths_follow_nesting():
    paths = contract.required_paths()
    assert paths[:3] == ["order_id", "order_ts", "status"]
    assert {"customer.email", "items[].quantity", "payment.amount", "total_amount"} <= set(paths)
    assert "channel" not in paths
    assert "customer.address.country" not in paths


def test_field_rules_carry_constraints():
    rules = {rule.path: rule for rule in contract.field_rules()}
    assert rules["status"].enum == (
        "placed",
        "paid",
        "shipped",
        "delivered",
        "cancelled",
        "returned",
    )
    assert rules["items[].product_id"].pattern == r"^PRD-[0-9]{5}\z"  # Java's end of input
    assert rules["items[].quantity"].minimum == 1
    assert rules["items"].min_items == 1
    assert rules["items[].quantity"].in_array
    assert not rules["customer.email"].in_array


def test_unsupported_construct_is_named():
    with pytest.raises(contract.ContractError, match=r"boolean.* at flag"):
        contract.spark_type({"type": "object", "properties": {"flag": {"type": "boolean"}}})


@pytest.mark.parametrize(
    ("pattern", "java"),
    [
        ("^PRD-[0-9]{5}$", r"^PRD-[0-9]{5}\z"),
        ("^[A-Z]{2}$", r"^[A-Z]{2}\z"),
        (r"^costs \$", r"^costs \$"),  # an escaped dollar is a character, not an anchor
        ("^PRD-", "^PRD-"),
        (None, None),
    ],
)
def test_patterns_end_at_the_end_of_input_in_java(pattern, java):
    assert contract.java_pattern(pattern) == java
