"""The obvious per-row Faker implementation of the raw order record: the benchmark's baseline.

What a data engineer writes first: Faker called for every field of every row inside Spark
(mapInPandas, so it runs on every core), json.dumps per row, written as text lines. Same record
shape as spark_jobs/data_generator.py (good records only); only used by the benchmark.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

CATEGORIES = ("electronics", "clothing", "home_kitchen", "books", "sports", "beauty", "toys")


def _orders(day: dt.date, seed: int, batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    from faker import Faker  # imported on the executor, as a per-row job would

    fake = Faker("en_US")
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    stamp = day.strftime("%Y%m%d")
    for batch in batches:
        fake.seed_instance(seed + int(batch["id"].iloc[0]) if len(batch) else seed)
        rng = random.Random(seed)
        lines = []
        for order_no in batch["id"]:
            items = []
            for line_no in range(1, rng.randint(1, 5) + 1):
                price = round(rng.uniform(2, 500), 2)
                items.append(
                    {
                        "line_no": line_no,
                        "product_id": f"PRD-{rng.randint(1, 2000):05d}",
                        "product_name": f"{fake.last_name()} {fake.word().title()}",
                        "category": rng.choice(CATEGORIES),
                        "quantity": rng.randint(1, 4),
                        "unit_price": price,
                    }
                )
            total = round(sum(i["quantity"] * i["unit_price"] for i in items), 2)
            record = {
                "order_id": f"ORD-{stamp}-{order_no:09d}",
                "order_ts": (start + dt.timedelta(seconds=rng.randrange(86400))).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
                "status": rng.choice(["placed", "paid", "shipped", "delivered"]),
                "channel": rng.choice(["web", "mobile_app", "marketplace", "phone"]),
                "currency": "USD",
                "customer": {
                    "customer_id": f"CUST-{rng.randint(1, 200000):07d}",
                    "name": fake.name(),
                    "email": fake.email(),
                    "phone": fake.phone_number(),
                    "signup_date": fake.date_between("-8y", "today").isoformat(),
                    "address": {
                        "street": fake.street_address(),
                        "city": fake.city(),
                        "postcode": fake.postcode(),
                        "country": "US",
                    },
                },
                "items": items,
                "payment": {
                    "payment_id": f"PAY-{stamp}-{order_no:09d}",
                    "method": rng.choice(["card", "paypal", "bank_transfer", "gift_card"]),
                    "status": "captured",
                    "amount": total,
                },
                "total_amount": total,
            }
            lines.append(json.dumps(record, separators=(",", ":")))
        yield pd.DataFrame({"value": lines})


def faker_orders(spark: SparkSession, day: dt.date, rows: int, seed: int = 42) -> DataFrame:
    """`rows` orders generated row by row with Faker, as a DataFrame of JSON lines."""
    return spark.range(1, rows + 1).mapInPandas(
        lambda batches: _orders(day, seed, batches), schema="value string"
    )
