"""One line per order_id: the latest order_ts, then the smallest line hash, then the first read.

`tally` finds, in one aggregation over the validated lines, the lines per reason and the winning
line of each order_id that valid lines repeat; `keep_winners` drops the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)


def tally(validated: DataFrame) -> tuple[dict[str | None, int], list[tuple[str, int]], int]:
    """One aggregation over validate's output: lines per reason (None = valid), the winning
    line of each order_id that valid lines repeat, and how many lines the dedupe drops."""
    order_id = F.when(F.col("reason").isNull(), F.col("order").getField("order_id"))
    keyed = validated.select(
        "reason", order_id.alias("_order_id"), "order_ts", "line_hash", "line_id"
    )
    by_reason, by_order_id = 1, 2  # grouping_id(): a set bit marks a column left out
    rows = (
        keyed.groupingSets([["reason"], ["_order_id"]], "reason", "_order_id")
        .agg(F.grouping_id().alias("_set"), *_group_aggregates())
        .where((F.col("_set") == by_reason) | (F.col("_order_id").isNotNull() & (F.col("_n") > 1)))
        .collect()
    )
    counts = {row["reason"]: row["_n"] for row in rows if row["_set"] == by_reason}
    winners, dropped = _winners([row for row in rows if row["_set"] == by_order_id])
    return counts, winners, dropped


def keep_winners(valid: DataFrame, winners: Sequence[tuple[str, int]]) -> DataFrame:
    """`valid` without the losing lines of repeated order ids, given (order_id, winning line_id)
    pairs: one scan with a broadcast join of the (few) repeated ids."""
    if not winners:
        return valid
    chosen = F.broadcast(
        valid.sparkSession.createDataFrame(list(winners), "_order_id string, _winner long")
    )
    joined = valid.join(chosen, F.col("order").getField("order_id") == chosen["_order_id"], "left")
    keep = F.col("_winner").isNull() | (F.col("line_id") == F.col("_winner"))
    return joined.where(keep).select(*valid.columns)


def _group_aggregates() -> list[Column]:
    """Per group: its lines (_n) and the line_id the dedupe keeps (_winner): of the lines of one
    order_id, the latest order_ts, then the smallest line hash, then (byte-identical lines) the
    first read."""
    order_ts = F.col("order_ts")
    rank = F.struct(
        order_ts.isNull(), -F.unix_micros(order_ts), F.col("line_hash"), F.col("line_id")
    )
    return [F.count(F.lit(1)).alias("_n"), F.min_by("line_id", rank).alias("_winner")]


def _winners(repeated: Sequence[Any]) -> tuple[list[tuple[str, int]], int]:
    """(order_id, winning line_id) pairs and the lines dropped, from rows of repeated order ids."""
    winners = [(row["_order_id"], row["_winner"]) for row in repeated]
    return winners, sum(row["_n"] - 1 for row in repeated)
