"""Storage round trips on local paths (Spark backend) and on real LocalStack S3 (arrow backend)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from pyspark.sql import functions as F  # noqa: N812
from pyspark.sql.types import (
    ArrayType,
    DateType,
    DecimalType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from spark_jobs.common.layout import join
from spark_jobs.common.storage import (
    S3Options,
    Storage,
    StorageError,
    filesystem_and_path,
    scheme_of,
)

pytestmark = pytest.mark.spark

ITEM = StructType([StructField("sku", StringType()), StructField("quantity", LongType())])
ORDERS = StructType(
    [
        StructField("order_id", StringType(), nullable=False),
        StructField("amount", DecimalType(12, 2)),
        StructField("order_ts", TimestampType()),
        StructField("order_date", DateType()),
        StructField("items", ArrayType(ITEM)),
    ]
)
ORDER_ROWS = [
    (
        f"o-{i}",
        Decimal(i) / 4,
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC) + dt.timedelta(minutes=i),
        dt.date(2024, 1, 2),
        [(f"sku-{i % 7}", i % 3 + 1)],
    )
    for i in range(120)
]
LINES = [*(f'{{"order_id": "o-{i}", "note": "caf\u00e9 \u2603"}}' for i in range(150)), "", "x"]


@pytest.mark.parametrize(
    ("uri", "parts", "expected"),
    [
        ("s3://bucket/raw", ("orders", "dt=2024-01-02"), "s3://bucket/raw/orders/dt=2024-01-02"),
        ("s3://bucket/raw/", ("/orders/",), "s3://bucket/raw/orders"),
        ("s3a://bucket", ("a", "", "b"), "s3a://bucket/a/b"),
        ("/tmp/data", ("x",), "/tmp/data/x"),
        ("file:///tmp/data/", ("x", "y.json"), "file:///tmp/data/x/y.json"),
        ("relative/dir", (), "relative/dir"),
    ],
)
def test_join(uri, parts, expected):
    assert join(uri, *parts) == expected


# ---- fixtures: one root per backend --------------------------------------------------------


@pytest.fixture
def local_root(tmp_path):
    return str(tmp_path / "data")


@pytest.fixture
def s3_root(localstack):
    return f"s3://{localstack.bucket}/tests/{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["local", "s3"])
def storage_root(request, spark):
    """(Storage, root URI) for a local directory and for a LocalStack S3 prefix."""
    if request.param == "local":
        return Storage(spark), request.getfixturevalue("local_root")
    request.applymarker(pytest.mark.localstack)
    return request.getfixturevalue("s3_storage"), request.getfixturevalue("s3_root")


def _lines_df(spark, lines, partitions=3):
    return spark.createDataFrame([(v,) for v in lines], "value STRING").repartition(partitions)


# ---- backend choice ------------------------------------------------------------------------


def test_local_paths_use_spark(spark, tmp_path):
    storage = Storage(spark)
    assert storage.backend(str(tmp_path)) == "spark"
    assert storage.backend(f"file://{tmp_path}") == "spark"
    # Spark's own writers gain from running side by side.
    assert storage.concurrent_writes(str(tmp_path)) is None


@pytest.mark.localstack
@pytest.mark.parametrize("scheme", ["s3", "s3a"])
def test_s3_uses_arrow_without_hadoop_aws(s3_storage, scheme, caplog):
    # pip's pyspark ships no hadoop-aws and no AWS SDK: the JVM cannot open s3/s3a here.
    with caplog.at_level("INFO", logger="spark_jobs.common.storage"):
        assert s3_storage.backend(f"{scheme}://bucket/key") == "arrow"
        assert s3_storage.backend(f"{scheme}://other/key") == "arrow"
    messages = [r.getMessage() for r in caplog.records if "pyarrow data source" in r.getMessage()]
    assert len(messages) == 1, "the choice is logged once per scheme"
    assert f"no Hadoop FileSystem for {scheme}" in messages[0]
    assert s3_storage.s3.describe() in messages[0]
    # Concurrent pyarrow data source writes each start Python workers of their own.
    assert s3_storage.concurrent_writes(f"{scheme}://bucket/key") == 1


@pytest.mark.localstack
def test_storage_reads_s3_options_from_spark_conf(s3_storage, localstack):
    assert s3_storage.s3.endpoint == localstack.endpoint_url
    assert s3_storage.s3.scheme == "http"
    assert s3_storage.s3.access_key == localstack.access_key
    assert s3_storage.s3.region == localstack.region


def test_s3_options_from_host_port_endpoint():
    options = S3Options(endpoint="localhost:4566", ssl_enabled=False)
    assert (options.scheme, options.endpoint_host) == ("http", "localhost:4566")
    assert S3Options(endpoint="localhost:4566").scheme == "https"
    assert S3Options.from_options(options.to_options()) == options


# ---- small objects -------------------------------------------------------------------------


def test_small_objects(storage_root):
    storage, root = storage_root
    day = join(root, "orders", "dt=2024-01-02")
    assert not storage.exists(day)
    assert storage.list_data_files(day) == []

    storage.write_text(join(day, "part-00000.json"), "line 1\n")
    storage.write_text(join(day, "part-00001.json"), "line 2\n")
    storage.write_text(join(day, "_manifest.json"), '{"rows": 2}')
    storage.write_text(join(day, "_SUCCESS"), "")
    storage.write_text(join(day, ".hidden"), "x")
    storage.write_text(join(day, "_manifest.json"), '{"rows": 3}')  # overwrite

    assert storage.exists(day)
    assert storage.exists(join(day, "_SUCCESS"))
    assert storage.read_text(join(day, "_manifest.json")) == '{"rows": 3}'
    assert storage.list_data_files(day) == [
        join(day, "part-00000.json"),
        join(day, "part-00001.json"),
    ]

    storage.delete(join(day, "_SUCCESS"))
    storage.delete(join(day, "_SUCCESS"))  # a missing object is fine
    assert not storage.exists(join(day, "_SUCCESS"))
    with pytest.raises(FileNotFoundError, match="_SUCCESS"):
        storage.read_text(join(day, "_SUCCESS"))

    other = join(root, "orders", "dt=2024-01-03")
    storage.write_text(join(other, "keep.txt"), "kept")
    storage.delete_tree(day)
    storage.delete_tree(day)  # a missing tree is fine
    assert not storage.exists(join(day, "part-00000.json"))
    assert storage.list_data_files(day) == []
    assert storage.read_text(join(other, "keep.txt")) == "kept"


def test_local_write_text_leaves_no_temp_files(spark, tmp_path):
    storage = Storage(spark)
    target = tmp_path / "reports" / "quality_report.json"
    storage.write_text(str(target), "{}")
    storage.write_text(str(target), '{"ok": true}')
    assert target.read_text() == '{"ok": true}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["quality_report.json"]


# ---- DataFrames ----------------------------------------------------------------------------


def test_lines_round_trip(spark, storage_root):
    storage, root = storage_root
    out = join(root, "raw", "orders", "dt=2024-01-02")
    storage.write_lines(_lines_df(spark, LINES), out)

    files = storage.list_data_files(out)
    assert files, "at least one data file"
    assert not storage.exists(join(out, "_SUCCESS")), "the jobs write their own markers"
    # Plain uncompressed text: the files hold exactly the lines.
    stored = [line for f in files for line in storage.read_text(f).split("\n")[:-1]]
    assert sorted(stored) == sorted(LINES)

    back = storage.read_lines(out)
    assert back.columns == ["value", "source_file"]
    rows = back.collect()
    assert sorted(r.value for r in rows) == sorted(LINES)
    assert {r.source_file for r in rows} == set(files)


def test_parquet_round_trip(spark, storage_root):
    storage, root = storage_root
    out = join(root, "processed", "orders", "dt=2024-01-02")
    df = spark.createDataFrame(ORDER_ROWS, ORDERS).repartition(3)
    storage.write_parquet(df, out)

    assert storage.list_data_files(out)
    assert not storage.exists(join(out, "_SUCCESS"))
    inferred = storage.read_parquet(out)
    assert [f.name for f in inferred.schema] == ORDERS.names
    assert sorted(inferred.collect()) == sorted(df.collect())

    # An explicit schema selects and orders columns; a column the files lack reads as null.
    wanted = StructType(
        [
            StructField("amount", DecimalType(12, 2)),
            StructField("missing", StringType()),
            StructField("order_id", StringType()),
        ]
    )
    picked = storage.read_parquet(out, schema=wanted)
    assert picked.columns == ["amount", "missing", "order_id"]
    assert picked.where(F.col("missing").isNotNull()).count() == 0
    assert picked.where("order_id = 'o-8'").first().amount == Decimal("2.00")


def test_rewrite_replaces_data(spark, storage_root):
    storage, root = storage_root
    lines_dir = join(root, "lines")
    storage.write_lines(_lines_df(spark, [f"old-{i}" for i in range(40)], partitions=4), lines_dir)
    storage.write_text(join(lines_dir, "_SUCCESS"), "")
    storage.write_lines(_lines_df(spark, ["new-1", "new-2"], partitions=1), lines_dir)
    assert sorted(r.value for r in storage.read_lines(lines_dir).collect()) == ["new-1", "new-2"]
    assert len(storage.list_data_files(lines_dir)) == 1
    assert not storage.exists(join(lines_dir, "_SUCCESS")), "an old marker must not survive"

    table = join(root, "table")
    storage.write_parquet(spark.range(0, 100, numPartitions=4), table)
    storage.write_parquet(spark.range(500, 510, numPartitions=1), table)
    assert sorted(r.id for r in storage.read_parquet(table).collect()) == list(range(500, 510))


def test_read_lines_cuts_only_at_newlines_and_replaces_invalid_utf8(storage_root):
    """Both backends read the same bytes as the same lines: JSON Lines ends a line at \\n (a CR
    before it is dropped); a lone CR is JSON whitespace, not a line end; bytes that are not
    UTF-8 become U+FFFD, so no invalid text reaches Parquet and its readers."""
    storage, root = storage_root
    day_dir = join(root, "raw_bytes")
    files = {
        "part-0.jsonl": b'{"a": 1}\r\n{"b":\r 2}\nab\xff\xfecd\n\xc3\x28\r\n\n',
        "part-1.jsonl": b"",  # an empty file holds no line
        "part-2.jsonl": b"last line without newline \xe2\x98\x83",
    }
    for name, data in files.items():
        fs, path = filesystem_and_path(join(day_dir, name), storage.s3)
        if scheme_of(day_dir) == "file":
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(data)
    rows = storage.read_lines(day_dir).collect()
    assert sorted(r.value for r in rows) == sorted(
        [
            '{"a": 1}',
            '{"b":\r 2}',
            "ab\ufffd\ufffdcd",
            "\ufffd(",
            "",
            "last line without newline \u2603",
        ]
    )
    assert {r.source_file.rsplit("/", 1)[-1] for r in rows} == {"part-0.jsonl", "part-2.jsonl"}


def test_empty_write_reads_back_empty(spark, storage_root):
    storage, root = storage_root
    schema = StructType([StructField("id", LongType()), StructField("name", StringType())])
    storage.write_parquet(spark.createDataFrame([], schema), join(root, "empty_table"))
    back = storage.read_parquet(join(root, "empty_table"))
    assert back.count() == 0
    assert back.schema.names == ["id", "name"]

    storage.write_lines(spark.createDataFrame([], "value STRING"), join(root, "empty_lines"))
    assert storage.read_lines(join(root, "empty_lines")).count() == 0


def test_write_lines_needs_one_column(spark, storage_root):
    storage, root = storage_root
    with pytest.raises(StorageError, match="one string column 'value'"):
        storage.write_lines(spark.range(3).withColumn("x", F.lit(1)), join(root, "bad"))


# ---- S3 specifics --------------------------------------------------------------------------


@pytest.mark.localstack
def test_aborted_write_keeps_old_data(spark, s3_storage, s3_root):
    out = join(s3_root, "raw")
    old_lines = [f"old-{i}" for i in range(30)]
    s3_storage.write_lines(_lines_df(spark, old_lines, partitions=3), out)
    s3_storage.write_text(join(out, "_SUCCESS"), "")
    old_files = s3_storage.list_data_files(out)

    # The last row fails its task after other tasks may already have written their objects.
    value = F.when(F.col("id") == 199, F.raise_error(F.lit("boom: provoked task failure")))
    failing = spark.range(0, 200, numPartitions=4).select(
        value.otherwise(F.concat(F.lit("new-"), F.col("id"))).alias("value")
    )
    with pytest.raises(Exception, match="boom: provoked task failure"):
        s3_storage.write_lines(failing, out)

    assert s3_storage.list_data_files(out) == old_files
    assert s3_storage.exists(join(out, "_SUCCESS"))
    assert sorted(r.value for r in s3_storage.read_lines(out).collect()) == sorted(old_lines)


@pytest.mark.localstack
def test_missing_bucket_is_a_clear_error(spark, s3_storage, localstack):
    missing = "s3://no-such-bucket-for-tests/raw"
    expected = f"bucket no-such-bucket-for-tests does not exist at {localstack.endpoint_url}"
    with pytest.raises(StorageError, match=expected):
        s3_storage.exists(missing)
    with pytest.raises(StorageError, match=expected):
        s3_storage.write_lines(_lines_df(spark, ["a"]), missing)
    with pytest.raises(StorageError, match=expected):
        s3_storage.read_parquet(missing)


@pytest.mark.localstack
def test_reading_a_missing_prefix_names_it(s3_storage, s3_root):
    missing = join(s3_root, "never-written")
    with pytest.raises(FileNotFoundError, match="never-written does not exist"):
        s3_storage.read_lines(missing)
    with pytest.raises(FileNotFoundError, match="never-written does not exist"):
        s3_storage.read_parquet(missing)


@pytest.mark.localstack
def test_unreachable_endpoint_is_a_clear_error(spark):
    storage = Storage(
        spark, s3_options=S3Options(endpoint="http://127.0.0.1:9", region="us-east-1")
    )
    with pytest.raises(StorageError, match=r"cannot reach S3 at http://127\.0\.0\.1:9"):
        storage.exists("s3://bucket/key")
