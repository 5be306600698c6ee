"""The published tables of one day, built from its deduplicated valid lines (order, order_ts)."""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql import types as T  # noqa: N812

from spark_jobs.common.contract import MONEY_TYPE
from spark_jobs.common.layout import (
    CUSTOMERS_TABLE,
    DAILY_SALES_TABLE,
    ORDER_ITEMS_TABLE,
    ORDERS_TABLE,
    PAYMENTS_TABLE,
    parse_day,
)


def build_tables(kept: DataFrame, day: str | date) -> dict[str, DataFrame]:
    """Each published table (but the quarantine) of one day, by name."""
    day = parse_day(day)
    orders = _orders(kept, day)
    return {
        ORDERS_TABLE: orders,
        ORDER_ITEMS_TABLE: _order_items(kept),
        # One file, but not one task for the aggregation: coalesce(1) would run the merge of
        # every order's max_by in a single task, on one core.
        CUSTOMERS_TABLE: _customers(kept).repartition(1),
        PAYMENTS_TABLE: _payments(kept),
        DAILY_SALES_TABLE: _daily_sales(orders, day),
    }


def _orders(kept: DataFrame, day: date) -> DataFrame:
    o = F.col("order")
    payment = o.getField("payment")
    items = o.getField("items")
    return kept.select(
        o.order_id.alias("order_id"),
        F.col("order_ts"),
        F.lit(day).alias("order_date"),
        o.status.alias("status"),
        o.channel.alias("channel"),
        o.currency.alias("currency"),
        o.getField("customer").customer_id.alias("customer_id"),
        payment.payment_id.alias("payment_id"),
        payment.method.alias("payment_method"),
        payment.status.alias("payment_status"),
        F.size(items).alias("item_count"),
        F.aggregate(items, F.lit(0).cast("long"), lambda acc, x: acc + x.quantity).alias(
            "total_quantity"
        ),
        o.total_amount.alias("total_amount"),
    )


def _order_items(kept: DataFrame) -> DataFrame:
    o = F.col("order")
    return kept.select(
        o.order_id.alias("order_id"),
        F.col("order_ts"),
        o.currency.alias("currency"),
        F.explode(o.getField("items")).alias("item"),
    ).select(
        "order_id",
        F.col("item.line_no").alias("line_no"),
        F.col("item.product_id").alias("product_id"),
        F.col("item.product_name").alias("product_name"),
        F.col("item.category").alias("category"),
        F.col("item.quantity").alias("quantity"),
        # items[].unit_price is a double in the cache (cheaper checks); publish it as money.
        F.col("item.unit_price").cast(MONEY_TYPE).alias("unit_price"),
        (F.col("item.quantity") * F.col("item.unit_price").cast(MONEY_TYPE))
        .cast(MONEY_TYPE)
        .alias("line_amount"),
        "currency",
        "order_ts",
    )


def _customers(kept: DataFrame) -> DataFrame:
    o = F.col("order")
    customer = o.getField("customer")
    address = customer.getField("address")
    # A customer orders several times a day: keep the details of their latest order.
    latest = F.max_by(
        F.struct(
            customer.getField("name").alias("name"),
            customer.getField("email").alias("email"),
            customer.getField("phone").alias("phone"),
            F.try_to_timestamp(customer.getField("signup_date"), F.lit("yyyy-MM-dd"))
            .cast("date")
            .alias("signup_date"),
            address.getField("street").alias("street"),
            address.getField("city").alias("city"),
            address.getField("postcode").alias("postcode"),
            address.getField("country").alias("country"),
        ),
        F.struct(F.col("order_ts"), o.order_id),
    )
    return (
        kept.groupBy(customer.customer_id.alias("customer_id"))
        .agg(
            latest.alias("c"),
            F.count(F.lit(1)).alias("orders"),
            F.min("order_ts").alias("first_order_ts"),
            F.max("order_ts").alias("last_order_ts"),
        )
        .select("customer_id", "c.*", "orders", "first_order_ts", "last_order_ts")
    )


def _payments(kept: DataFrame) -> DataFrame:
    o = F.col("order")
    payment = o.getField("payment")
    return kept.select(
        payment.payment_id.alias("payment_id"),
        o.order_id.alias("order_id"),
        payment.method.alias("method"),
        payment.status.alias("status"),
        payment.amount.alias("amount"),
        o.currency.alias("currency"),
        F.col("order_ts"),
    )


def _daily_sales(orders: DataFrame, day: date) -> DataFrame:
    return (
        orders.groupBy(
            "currency", "status", F.coalesce("channel", F.lit("unknown")).alias("channel")
        )
        .agg(
            F.count(F.lit(1)).alias("orders"),
            F.countDistinct("customer_id").alias("customers"),
            F.sum("item_count").alias("order_lines"),
            F.sum("total_quantity").alias("units"),
            F.sum("total_amount").cast(T.DecimalType(18, 2)).alias("revenue"),
        )
        .select(
            F.lit(day).alias("sales_date"),
            "currency",
            "status",
            "channel",
            "orders",
            "customers",
            "order_lines",
            "units",
            "revenue",
            F.round(F.col("revenue") / F.col("orders"), 2)
            .cast(MONEY_TYPE)
            .alias("avg_order_value"),
        )
        .coalesce(1)
    )
