"""The processor benchmark's floor writes the two wide tables from every raw line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from spark_jobs.common.layout import raw_day_dir
from spark_jobs.data_generator import write_day
from tests.benchmarks.run import two_tables


def test_the_floor_writes_every_line_to_orders_and_every_item_to_order_items(spark, tmp_path):
    day = dt.date(2026, 1, 15)
    write_day(spark, str(tmp_path / "raw"), day, 300)
    day_dir = Path(raw_day_dir(str(tmp_path / "raw"), day))
    lines = [line for p in day_dir.glob("part-*") for line in p.read_text().splitlines()]

    two_tables(spark, day_dir, tmp_path / "floor")

    orders = spark.read.parquet(str(tmp_path / "floor" / "orders"))
    items = spark.read.parquet(str(tmp_path / "floor" / "order_items"))
    assert orders.count() == len(lines)
    assert items.count() == orders.where("item_count > 0").groupBy().sum("item_count").first()[0]
    assert {"order_id", "product_id", "quantity", "unit_price"} <= set(items.columns)
