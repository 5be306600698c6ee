"""The raw order contract (schemas/raw_order.schema.json) as Spark sees it.

The JSON Schema is the single source of truth: this module loads it from the installed package
(so it also works from the zip shipped with ``spark-submit --py-files``) and derives from it

* ``raw_struct_type()``: the StructType used to parse raw JSON lines (numbers with
  ``multipleOf: 0.01`` -> DecimalType(12,2), integers -> LongType, strings -> StringType;
  ``format: date-time`` stays a string here and is parsed during validation);
* ``required_paths()``: every required field path, e.g. ``customer.email``, ``items[].quantity``;
* ``field_rules()``: one rule per property (JSON type, enum, pattern, minimum, ...) that the
  processor turns into Spark validation expressions (patterns in Java's regex dialect, which
  Spark's rlike uses: see ``java_pattern``).

Paths use dots for objects and ``[]`` for array elements: ``items[].unit_price``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pyspark.sql import types as T  # noqa: N812  (Spark's own convention)

SCHEMA_RESOURCE = "schemas/raw_order.schema.json"

# Money: two decimals, up to 10 integer digits (a ten-billion order would be a data error anyway).
MONEY_TYPE = T.DecimalType(12, 2)
# End of input in Java regexes; Java's `$` also matches before a final line break.
END_OF_INPUT = "\\z"


class ContractError(ValueError):
    """The JSON Schema uses a construct this module cannot map to Spark."""


@dataclass(frozen=True)
class FieldRule:
    """What the contract says about one property, flattened to a path."""

    path: str
    json_type: str
    required: bool
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    format: str | None = None
    minimum: float | None = None
    min_length: int | None = None
    min_items: int | None = None
    multiple_of: float | None = None

    @property
    def in_array(self) -> bool:
        """True when the field lives inside an array element (``items[].quantity``)."""
        return "[]" in self.path


@functools.lru_cache(maxsize=1)
def load_contract() -> dict[str, Any]:
    """The parsed JSON Schema of a raw order line, read from the spark_jobs package."""
    resource = resources.files("spark_jobs") / SCHEMA_RESOURCE
    try:
        return json.loads(resource.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ContractError(
            f"raw order contract not found at spark_jobs/{SCHEMA_RESOURCE}; ship the whole "
            "spark_jobs package (schemas/ included) with --py-files"
        ) from exc


def spark_type(node: dict[str, Any], path: str = "$") -> T.DataType:
    """The Spark type that parses one JSON Schema node (recursively for objects and arrays)."""
    json_type = node.get("type")
    if json_type == "object":
        return T.StructType(
            [
                T.StructField(name, spark_type(child, _join(path, name)), nullable=True)
                for name, child in node.get("properties", {}).items()
            ]
        )
    if json_type == "array":
        if "items" not in node:
            raise ContractError(f"array at {path} has no 'items' schema; add one to the contract")
        return T.ArrayType(spark_type(node["items"], path + "[]"), containsNull=True)
    if json_type == "integer":
        return T.LongType()
    if json_type == "number":
        if node.get("multipleOf") == 0.01:
            return MONEY_TYPE
        raise ContractError(
            f"number at {path} has no multipleOf 0.01; only money numbers are mapped (DecimalType)"
        )
    if json_type == "string":
        return T.StringType()
    raise ContractError(
        f"unsupported JSON Schema type {json_type!r} at {path}; "
        "expected object, array, integer, number or string"
    )


def raw_struct_type(contract: dict[str, Any] | None = None) -> T.StructType:
    """The StructType for parsing one raw order line (all fields nullable: validation decides)."""
    struct = spark_type(contract or load_contract())
    assert isinstance(struct, T.StructType)
    return struct


def field_rules(contract: dict[str, Any] | None = None) -> list[FieldRule]:
    """Every property of the contract, depth first in schema order, with its constraints."""
    rules: list[FieldRule] = []
    _collect_rules(contract or load_contract(), "", rules)
    return rules


def required_paths(contract: dict[str, Any] | None = None) -> list[str]:
    """Required field paths in schema order (a nested one is required only inside its parent)."""
    return [rule.path for rule in field_rules(contract) if rule.required]


def _collect_rules(node: dict[str, Any], prefix: str, out: list[FieldRule]) -> None:
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        path = _join(prefix, name)
        out.append(
            FieldRule(
                path=path,
                json_type=child["type"],
                required=name in required,
                enum=tuple(child["enum"]) if "enum" in child else None,
                pattern=java_pattern(child.get("pattern")),
                format=child.get("format"),
                minimum=child.get("minimum"),
                min_length=child.get("minLength"),
                min_items=child.get("minItems"),
                multiple_of=child.get("multipleOf"),
            )
        )
        if child["type"] == "object":
            _collect_rules(child, path, out)
        elif child["type"] == "array" and child.get("items", {}).get("type") == "object":
            _collect_rules(child["items"], path + "[]", out)


def java_pattern(pattern: str | None) -> str | None:
    """A JSON Schema (ECMA-262) pattern as a Java regex with the same meaning for Spark's rlike.

    A final `$` becomes `\\z`: in ECMA-262 `$` is the end of the text, while Java's also matches
    before a final line break, so "ORD-20240115-000000001\\n" would pass `^ORD-...$` in Spark.
    """
    if pattern is None or not pattern.endswith("$") or pattern.endswith("\\$"):
        return pattern
    return pattern[:-1] + END_OF_INPUT


def _join(prefix: str, name: str) -> str:
    return name if prefix in ("", "$") else f"{prefix}.{name}"
