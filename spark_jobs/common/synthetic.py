"""Synthetic e-commerce data described as data: value pools, column specs, a JSON text compiler.

In the style of databrickslabs' dbldatagen: the data set is a declarative spec of columns, and
every column is a Spark SQL expression of a row key (order number, customer number, or order
number + line number) hashed with the seed. Faker runs only on the driver, once, to build small
value pools (names, streets, cities...) that go into the plan as array literals; a row picks a
value with ``pmod(xxhash64(key, seed, salt), size)``. There are no Python UDFs and no ``rand()``,
so a row's values depend only on its key and the seed, never on partitioning.

Used by ``spark_jobs/data_generator.py``; see ``build_pools``, the ``*_COLUMNS`` specs,
``with_spec`` and the JSON helpers (``json_object``, ``json_string``, ``concat_pieces`` ...).
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from faker import Faker
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)

# --------------------------------------------------------------------------------------------
# The world the data lives in (plain data; change it here, not in expressions).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Country:
    code: str  # ISO 3166-1 alpha-2, as the contract wants
    locale: str  # Faker locale used for names, streets, cities, postcodes, phones
    currency: str
    weight: int  # share of customers


COUNTRIES: tuple[Country, ...] = (
    Country("US", "en_US", "USD", 45),
    Country("GB", "en_GB", "GBP", 20),
    Country("DE", "de_DE", "EUR", 20),
    Country("FR", "fr_FR", "EUR", 15),
)

# category -> (product nouns, adjectives, (lowest, highest) price in whole currency units)
CATEGORIES: Mapping[str, tuple[tuple[str, ...], tuple[str, ...], tuple[int, int]]] = {
    "electronics": (
        ("Headphones", "Charger", "Speaker", "Webcam", "Keyboard", "Mouse", "Monitor", "Router"),
        ("Wireless", "Portable", "Compact", "Smart", "Pro", "Ultra"),
        (15, 600),
    ),
    "home_kitchen": (
        ("Kettle", "Frying Pan", "Blender", "Knife Set", "Toaster", "Cutting Board", "Lamp"),
        ("Stainless", "Ceramic", "Classic", "Modern", "Nordic", "Everyday"),
        (8, 250),
    ),
    "books": (
        ("Cookbook", "Novel", "Field Guide", "Atlas", "Biography", "Workbook"),
        ("Illustrated", "Pocket", "Collected", "Complete", "Annotated", "Essential"),
        (5, 60),
    ),
    "clothing": (
        ("T-Shirt", "Hoodie", "Jeans", "Jacket", "Scarf", "Sneakers", "Socks"),
        ("Organic", "Slim", "Relaxed", "Waterproof", "Merino", "Vintage"),
        (6, 180),
    ),
    "sports": (
        ("Yoga Mat", "Water Bottle", "Dumbbell", "Tennis Racket", "Backpack", "Bike Light"),
        ("Lightweight", "Trail", "Training", "Insulated", "Foldable", "Team"),
        (7, 300),
    ),
    "beauty": (
        ("Face Cream", "Shampoo", "Lip Balm", "Perfume", "Hair Dryer", "Brush Set"),
        ("Gentle", "Natural", "Daily", "Hydrating", "Travel", "Deluxe"),
        (4, 120),
    ),
    "toys": (
        ("Puzzle", "Building Set", "Plush Bear", "Board Game", "Kite", "Train Set"),
        ("Wooden", "Giant", "Mini", "Family", "Classic", "Glow"),
        (5, 150),
    ),
}

POOL_SIZE = 1000  # values per Faker pool and country: enough variety, built in well under 1 s
CATALOG_SIZE = 2000  # products PRD-00001 .. PRD-02000
CUSTOMER_COUNT = 200_000
MAX_ITEMS = 5  # line items per order: 1 .. MAX_ITEMS  # customer ids CUST-0000001 .. CUST-0200000
# Reserved example domains (RFC 2606, what Faker's safe_email uses): no real mailbox is named.
EMAIL_DOMAINS = ("example.com", "example.net", "example.org")
PER_COUNTRY_POOLS = (
    "first_name",
    "last_name",
    "email_first",
    "email_last",
    "street",
    "city",
    "postcode",
    "phone",
)


# --------------------------------------------------------------------------------------------
# Pools: built on the driver with Faker, deterministic for a seed.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pools:
    """Every value the generator can pick, as plain Python tuples (raw text, not JSON-escaped).

    ``per_country[pool][country_index]`` is a tuple of ``POOL_SIZE`` values; ``email_first`` and
    ``email_last`` are ASCII slugs parallel to ``first_name`` / ``last_name`` (same index).
    Products are parallel tuples indexed by product number - 1.
    """

    seed: int
    per_country: Mapping[str, tuple[tuple[str, ...], ...]]
    email_domains: tuple[str, ...]
    product_names: tuple[str, ...]
    product_categories: tuple[str, ...]
    product_price_cents: tuple[int, ...]


def email_slug(text: str) -> str:
    """ASCII letters only, lower case ("Grégoire" -> "gregoire"), for an email's local part."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z]", "", ascii_text.lower()) or "customer"


def build_pools(seed: int) -> Pools:
    """Faker value pools and the product catalog for a seed (same seed -> same pools)."""
    per_country: dict[str, list[tuple[str, ...]]] = {name: [] for name in PER_COUNTRY_POOLS}
    for index, country in enumerate(COUNTRIES):
        # Unweighted Faker is ~10x faster; variety, not frequency realism, is what pools need.
        fake = Faker(country.locale, use_weighting=False)
        fake.seed_instance(seed * 1000 + index)
        first = tuple(fake.first_name() for _ in range(POOL_SIZE))
        last = tuple(fake.last_name() for _ in range(POOL_SIZE))
        per_country["first_name"].append(first)
        per_country["last_name"].append(last)
        per_country["email_first"].append(tuple(email_slug(v) for v in first))
        per_country["email_last"].append(tuple(email_slug(v) for v in last))
        # en_GB streets have a "Flat 3\n..." line: one line per JSON string value.
        per_country["street"].append(
            tuple(" ".join(fake.street_address().split()) for _ in range(POOL_SIZE))
        )
        per_country["city"].append(tuple(fake.city() for _ in range(POOL_SIZE)))
        per_country["postcode"].append(tuple(fake.postcode() for _ in range(POOL_SIZE)))
        per_country["phone"].append(tuple(fake.phone_number() for _ in range(POOL_SIZE)))

    names, categories, prices = _catalog(seed, CATALOG_SIZE)
    return Pools(
        seed=seed,
        per_country={name: tuple(values) for name, values in per_country.items()},
        email_domains=EMAIL_DOMAINS,
        product_names=names,
        product_categories=categories,
        product_price_cents=prices,
    )


def _catalog(seed: int, size: int) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """Products as parallel tuples: "<Brand> <Adjective> <Noun>", category, price in cents."""
    rng = random.Random(seed)  # noqa: S311  (test data, not secrets)
    fake = Faker("en_US", use_weighting=False)
    fake.seed_instance(seed)
    brands = sorted({fake.last_name() for _ in range(200)})
    category_names = sorted(CATEGORIES)
    names, categories, prices = [], [], []
    for _ in range(size):
        category = rng.choice(category_names)
        nouns, adjectives, (low, high) = CATEGORIES[category]
        names.append(f"{rng.choice(brands)} {rng.choice(adjectives)} {rng.choice(nouns)}")
        categories.append(category)
        # Log-uniform whole price, then shop pricing: x.99 or x.49.
        whole = round(low * (high / low) ** rng.random())
        prices.append(max(whole, 1) * 100 - rng.choice((1, 51)))
    return tuple(names), tuple(categories), tuple(prices)


# --------------------------------------------------------------------------------------------
# Literals and hashing.
# --------------------------------------------------------------------------------------------


def json_inner(value: str) -> str:
    """The text of a JSON string without its quotes ("O'Brien \\"Bob\\"" escaped as JSON)."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def array_literal(values: Sequence[Any]) -> Column:
    """An array literal of strings, ints, or arrays of them, as ONE folded literal.

    ``from_json(<one string literal>)`` is constant-folded by the optimizer into a single array
    literal: one py4j call and one plan node, where ``array(v1, ..., vN)`` would put N nodes into
    every plan (and make building and analysing the plan take many seconds).
    """
    return F.from_json(F.lit(json.dumps(list(values))), f"array<{_element_type(values)}>")


def _element_type(values: Sequence[Any]) -> str:
    first = values[0]
    if isinstance(first, str):
        return "string"
    if isinstance(first, bool):
        raise TypeError("boolean pools are not supported")
    if isinstance(first, int):
        return "int"
    if isinstance(first, (list, tuple)):
        return f"array<{_element_type(first)}>"
    raise TypeError(f"no Spark type for pool value {first!r} ({type(first).__name__})")


def hash_of(seed: int, salt: str, *keys: Column) -> Column:
    """A 64-bit hash of the key columns, the seed and a per-column salt."""
    return F.xxhash64(*keys, F.lit(seed), F.lit(salt))


def pick_index(hashed: Column, size: int) -> Column:
    """0 .. size-1 from a hash; pmod because Spark 4's ANSI mode rejects abs(hash) % n overflow."""
    return F.pmod(hashed, F.lit(size)).cast("int")


# --------------------------------------------------------------------------------------------
# Column specs: what each column is, as data.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Uniform:
    """An integer uniform in [low, high]."""

    low: int
    high: int


@dataclass(frozen=True)
class Weighted:
    """One of ``values`` (strings or ints) with integer weights."""

    values: tuple[Any, ...]
    weights: tuple[int, ...]


@dataclass(frozen=True)
class Derived:
    """A Spark expression over columns compiled before it (by name), plus the spec context."""

    build: Callable[[Mapping[str, Column], SpecContext], Column]


@dataclass(frozen=True)
class Col:
    name: str
    gen: Uniform | Weighted | Derived


@dataclass(frozen=True)
class SpecContext:
    """What Derived columns may use: the seed and the pools as literals."""

    seed: int
    pools: PoolLiterals


class PoolLiterals:
    """The pools as Spark array literals (JSON-escaped text), created once per plan."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools
        self._cache: dict[str, Column] = {}

    def _literal(self, name: str, values: Callable[[], Sequence[Any]]) -> Column:
        if name not in self._cache:
            self._cache[name] = array_literal(values())
        return self._cache[name]

    def per_country(self, pool: str, country_index: Column, index: Column) -> Column:
        """JSON-escaped value ``index`` (0-based) of ``pool`` for the country (0-based)."""
        table = self._literal(
            f"country:{pool}",
            lambda: [[json_inner(v) for v in per] for per in self.pools.per_country[pool]],
        )
        return F.element_at(F.element_at(table, country_index + 1), index + 1)

    def country_attr(self, attribute: str, country_index: Column) -> Column:
        """code or currency of a 0-based country index."""
        table = self._literal(
            f"attr:{attribute}", lambda: [getattr(c, attribute) for c in COUNTRIES]
        )
        return F.element_at(table, country_index + 1)

    def email_domain(self, index: Column) -> Column:
        table = self._literal("email_domains", lambda: self.pools.email_domains)
        return F.element_at(table, index + 1)

    def product(self, attribute: str, product_index: Column) -> Column:
        """product_name / category (JSON-escaped) or price_cents of a 0-based product index."""
        sources: dict[str, Callable[[], Sequence[Any]]] = {
            "product_name": lambda: [json_inner(v) for v in self.pools.product_names],
            "category": lambda: [json_inner(v) for v in self.pools.product_categories],
            "price_cents": lambda: self.pools.product_price_cents,
        }
        table = self._literal(f"product:{attribute}", sources[attribute])
        return F.element_at(table, product_index + 1)


def _weights_table(gen: Weighted) -> list[Any]:
    """The values repeated by weight, so one array lookup makes a weighted pick."""
    table: list[Any] = []
    for value, weight in zip(gen.values, gen.weights, strict=True):
        table.extend([value] * weight)
    return table


def with_spec(
    df: DataFrame, spec: Sequence[Col], keys: Sequence[Column], context: SpecContext, prefix: str
) -> DataFrame:
    """df plus the spec's columns (named prefix + name): generated ones first, then derived."""
    generated = [col for col in spec if not isinstance(col.gen, Derived)]
    derived = [col for col in spec if isinstance(col.gen, Derived)]
    df = df.select("*", *[_compile(c, keys, context, {}).alias(prefix + c.name) for c in generated])
    refs: dict[str, Column] = {c.name: F.col(prefix + c.name) for c in generated}
    columns = []
    for col in derived:
        refs[col.name] = _compile(col, keys, context, refs)
        columns.append(refs[col.name].alias(prefix + col.name))
    return df.select("*", *columns)


def _compile(
    col: Col, keys: Sequence[Column], context: SpecContext, known: Mapping[str, Column]
) -> Column:
    gen = col.gen
    if isinstance(gen, Uniform):
        span = gen.high - gen.low + 1
        return pick_index(hash_of(context.seed, col.name, *keys), span) + gen.low
    if isinstance(gen, Weighted):
        table = _weights_table(gen)
        index = pick_index(hash_of(context.seed, col.name, *keys), len(table))
        return F.element_at(array_literal(table), index + 1)
    return gen.build(known, context)


# --------------------------------------------------------------------------------------------
# JSON text, built with concat: field order and number format are exactly what we write.
# --------------------------------------------------------------------------------------------


# A JSON text is built as a flat list of pieces (literal str or Column) and concatenated ONCE:
# nested concats would copy every byte once per nesting level and bloat the generated code.
Piece = str | Column
Pieces = list[Piece]


def json_string(text: Column) -> Pieces:
    """A JSON string from text that is already JSON-safe (ids, enums, escaped pool values)."""
    return ['"', text, '"']


def json_number(value: Column) -> Pieces:
    return [value.cast("string")]


def money_text(cents: Column) -> Pieces:
    """12345 -> 123.45: exact two-decimal text of a non-negative amount in cents."""
    whole = F.call_function("div", cents, F.lit(100))
    fraction = F.lpad(F.pmod(cents, F.lit(100)).cast("string"), 2, "0")
    return [whole.cast("string"), ".", fraction]


def json_object(fields: Sequence[tuple[str, Pieces]]) -> Pieces:
    """{"k":v,...} from each field's pieces (field order as given)."""
    out: Pieces = ["{"]
    for position, (name, value) in enumerate(fields):
        out.append(("," if position else "") + json.dumps(name) + ":")
        out.extend(value)
    out.append("}")
    return out


def concat_pieces(pieces: Sequence[Piece]) -> Column:
    """One concat of the pieces (adjacent literals merged); NULL pieces are skipped."""
    merged: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, str) and merged and isinstance(merged[-1], str):
            merged[-1] += piece
        else:
            merged.append(piece)
    # concat_ws (not concat) so that an absent optional part (NULL) just disappears.
    return F.concat_ws("", *[F.lit(p) if isinstance(p, str) else p for p in merged])


def lpad_number(value: Column, width: int) -> Column:
    return F.lpad(value.cast("string"), width, "0")


# --------------------------------------------------------------------------------------------
# The orders data set as specs. Keys: order number (orders), customer number (customers),
# order number + line number (order lines). Derived columns read earlier ones by name.
# --------------------------------------------------------------------------------------------

ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned")
SIGNUP_FIRST_DAY = "2016-01-01"  # customers signed up between this day and 2023-12-31
SIGNUP_DAYS = 2922


def _payment_status(c: Mapping[str, Column], _: SpecContext) -> Column:
    # Follows the order's life: a cancelled order failed or was refunded, a returned one refunded.
    status = c["status"]
    return (
        F.when(status == "placed", F.lit("authorized"))
        .when(status.isin("paid", "shipped", "delivered"), F.lit("captured"))
        .when(status == "returned", F.lit("refunded"))
        .when(c["payment_outcome"] < 60, F.lit("failed"))
        .otherwise(F.lit("refunded"))
    )


ORDER_COLUMNS: tuple[Col, ...] = (
    Col("customer_no", Uniform(1, CUSTOMER_COUNT)),
    Col("second_of_day", Uniform(0, 86_399)),
    Col("status", Weighted(ORDER_STATUSES, (10, 20, 25, 35, 6, 4))),
    Col("channel", Weighted(("web", "mobile_app", "marketplace", "phone"), (45, 35, 15, 5))),
    Col("item_count", Weighted(tuple(range(1, MAX_ITEMS + 1)), (40, 25, 15, 12, 8))),
    Col(
        "payment_method", Weighted(("card", "paypal", "bank_transfer", "gift_card"), (60, 25, 8, 7))
    ),
    Col("payment_outcome", Uniform(0, 99)),
    Col("payment_status", Derived(_payment_status)),
    # Bad-record draws: whether (per million), which kind, and which variant of it.
    Col("bad_draw", Uniform(0, 999_999)),
    Col("bad_kind_index", Uniform(0, 5)),
    Col("bad_variant", Uniform(0, 999_999)),
)


def _per_country(pool: str, index: str) -> Derived:
    return Derived(lambda c, ctx: ctx.pools.per_country(pool, c["country_index"], c[index]))


def _email(c: Mapping[str, Column], ctx: SpecContext) -> Column:
    # first.last<nn>@example.org from the ASCII slugs parallel to the name pools.
    first = ctx.pools.per_country("email_first", c["country_index"], c["first_index"])
    last = ctx.pools.per_country("email_last", c["country_index"], c["last_index"])
    return F.concat(
        first,
        F.lit("."),
        last,
        c["email_number"].cast("string"),
        F.lit("@"),
        ctx.pools.email_domain(c["email_domain_index"]),
    )


_POOL_INDEX = Uniform(0, POOL_SIZE - 1)

CUSTOMER_COLUMNS: tuple[Col, ...] = (
    Col(
        "country_index", Weighted(tuple(range(len(COUNTRIES))), tuple(c.weight for c in COUNTRIES))
    ),
    Col("first_index", _POOL_INDEX),
    Col("last_index", _POOL_INDEX),
    Col("street_index", _POOL_INDEX),
    Col("city_index", _POOL_INDEX),
    Col("postcode_index", _POOL_INDEX),
    Col("phone_index", _POOL_INDEX),
    Col("email_number", Uniform(1, 99)),
    Col("email_domain_index", Uniform(0, len(EMAIL_DOMAINS) - 1)),
    Col("signup_day", Uniform(0, SIGNUP_DAYS - 1)),
    # JSON-ready texts (pool values are already JSON-escaped).
    Col(
        "name",
        Derived(
            lambda c, ctx: F.concat(
                ctx.pools.per_country("first_name", c["country_index"], c["first_index"]),
                F.lit(" "),
                ctx.pools.per_country("last_name", c["country_index"], c["last_index"]),
            )
        ),
    ),
    Col("email", Derived(_email)),
    Col("phone", _per_country("phone", "phone_index")),
    Col("street", _per_country("street", "street_index")),
    Col("city", _per_country("city", "city_index")),
    Col("postcode", _per_country("postcode", "postcode_index")),
    Col("country", Derived(lambda c, ctx: ctx.pools.country_attr("code", c["country_index"]))),
    Col("currency", Derived(lambda c, ctx: ctx.pools.country_attr("currency", c["country_index"]))),
    Col(
        "signup_date",
        Derived(
            lambda c, _: F.date_add(F.lit(SIGNUP_FIRST_DAY).cast("date"), c["signup_day"]).cast(
                "string"
            )
        ),
    ),
)

LINE_COLUMNS: tuple[Col, ...] = (
    Col("product_index", Uniform(0, CATALOG_SIZE - 1)),
    Col("quantity", Weighted((1, 2, 3, 4, 5), (70, 18, 7, 3, 2))),
)
