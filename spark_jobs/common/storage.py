"""Where the Spark jobs read and write: URIs, S3 options, backend choice, DataFrame + file I/O.

Runs inside Spark drivers (local, standalone or EMR), so it never imports `config`: the S3 endpoint
and credentials come only from the Spark conf keys `spark.hadoop.fs.s3a.*`, which whoever launches
the job fills from `Settings.spark_s3_conf()`.

Backend per URI (`Storage.backend`):
- local path or file://: Spark's own readers and writers ("spark").
- s3:// or s3a:// when the JVM has a Hadoop FileSystem for the scheme (EMRFS on EMR, S3AFileSystem
  where hadoop-aws is on the classpath): Spark's own readers and writers ("spark").
- otherwise (the pip pyspark wheel has no hadoop-aws): Spark's Python data source API with
  pyarrow's S3 client ("arrow"), same layout, same endpoint.

Writes REPLACE a directory: afterwards it holds only the new data files. Neither backend writes
`_SUCCESS`; the jobs write their own markers last. On the arrow backend a failed write leaves the
directory untouched: tasks stage their objects (named with a job id) under `_temporary/<job id>/`,
commit moves them in and then deletes the older files, abort deletes the staged ones.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import posixpath
import sys
import threading
import uuid
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark import TaskContext, cloudpickle
from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from spark_jobs.common.layout import join
from spark_jobs.common.session import default_parallelism, is_connect

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

Backend = Literal["spark", "arrow"]

S3_SCHEMES = ("s3", "s3a")
S3A_CONF_PREFIX = "spark.hadoop.fs.s3a."
LINES_SOURCE_NAME = "pipeline_arrow_lines"
PARQUET_SOURCE_NAME = "pipeline_arrow_parquet"
LINES_DDL = "value STRING, source_file STRING"
# Hadoop's committer would add _SUCCESS; the jobs write their own markers after their manifests.
NO_SUCCESS_MARKER = {"mapreduce.fileoutputcommitter.marksuccessfuljobs": "false"}
# Same split-size rule as Spark's file sources: up to 128 MiB per task, at least 4 MiB.
MAX_SPLIT_BYTES = 128 * 1024 * 1024
MIN_SPLIT_BYTES = 4 * 1024 * 1024
READ_BLOCK_BYTES = 8 * 1024 * 1024
# Where arrow-backend tasks stage their objects until the job commits (readers skip "_" names).
STAGING_DIR = "_temporary"
# How a Spark Connect server says it has no FileSystem for a scheme (hadoop-aws missing).
_NO_FILESYSTEM = ("No FileSystem for scheme", "ClassNotFoundException")


class StorageError(Exception):
    """A URI cannot be read or written: the message names the URI, the place and the fix."""


def scheme_of(uri: str) -> str:
    """ "s3", "s3a", or "file" for file:// URIs and plain local paths."""
    scheme = urlparse(uri).scheme.lower()
    # One-letter "schemes" are Windows drive letters, i.e. local paths.
    return scheme if len(scheme) > 1 else "file"


def is_data_file(name: str) -> bool:
    """Data files: everything but markers and hidden files (the markers and manifest of
    spark_jobs/common/layout.py, Hadoop's .crc files)."""
    return not name.startswith(("_", "."))


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: the values of the spark.hadoop.fs.s3a.* keys (all optional; None = AWS)."""

    endpoint: str | None = None
    region: str | None = None
    path_style_access: bool = True
    access_key: str | None = None
    secret_key: str | None = None
    ssl_enabled: bool | None = None

    @classmethod
    def from_spark_conf(cls, spark: SparkSession) -> S3Options:
        """Read the spark.hadoop.fs.s3a.* keys from the session's (runtime) conf."""

        def get(key: str) -> str | None:
            value = spark.conf.get(S3A_CONF_PREFIX + key, None)
            return value.strip() if value and value.strip() else None

        return cls(
            endpoint=get("endpoint"),
            region=get("endpoint.region"),
            path_style_access=_truthy(get("path.style.access"), default=True),
            access_key=get("access.key"),
            secret_key=get("secret.key"),
            ssl_enabled=_truthy(get("connection.ssl.enabled"), default=None),
        )

    @property
    def scheme(self) -> str:
        """http or https: from the endpoint URL if it has one, else connection.ssl.enabled."""
        if self.endpoint and "://" in self.endpoint:
            return urlparse(self.endpoint).scheme
        return "http" if self.ssl_enabled is False else "https"

    @property
    def endpoint_host(self) -> str | None:
        """host:port for pyarrow's endpoint_override."""
        if not self.endpoint:
            return None
        if "://" in self.endpoint:
            return urlparse(self.endpoint).netloc
        return self.endpoint.rstrip("/")

    def describe(self) -> str:
        """Where S3 is, for log lines and error messages."""
        if self.endpoint_host:
            return f"{self.scheme}://{self.endpoint_host}"
        return f"AWS S3 ({self.region or 'default region'})"

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key if self.access_key else None,
            region=self.region,
            scheme=self.scheme,
            endpoint_override=self.endpoint_host,
            # Path-style URLs (http://host/bucket/key): what LocalStack expects.
            force_virtual_addressing=not self.path_style_access if self.endpoint_host else False,
            connect_timeout=5,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
        )

    def to_options(self) -> dict[str, str]:
        """As string options for the Python data sources (they run in other processes)."""
        out: dict[str, str] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is not None:
                out[f"s3.{field.name}"] = str(value).lower() if isinstance(value, bool) else value
        return out

    @classmethod
    def from_options(cls, options: Mapping[str, str]) -> S3Options:
        def get(name: str) -> str | None:
            key = f"s3.{name}"
            return options.get(key)

        return cls(
            endpoint=get("endpoint"),
            region=get("region"),
            path_style_access=_truthy(get("path_style_access"), default=True),
            access_key=get("access_key"),
            secret_key=get("secret_key"),
            ssl_enabled=_truthy(get("ssl_enabled"), default=None),
        )


def _arrow_schema(schema: StructType) -> pa.Schema:
    """Spark's schema in Arrow, timestamps as UTC instants (what Spark's Parquet holds)."""
    # Spark 4.0's keyword: timestamp_utc=True gives timestamp[us, tz=UTC].
    return to_arrow_schema(schema, timestamp_utc=True)


def _truthy(value: str | None, default: Any) -> Any:
    if value is None:
        return default
    return value.strip().lower() in ("true", "1", "yes")


def filesystem_and_path(uri: str, s3: S3Options) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for a URI and the path on it (bucket/key for S3, absolute locally)."""
    scheme = scheme_of(uri)
    if scheme in S3_SCHEMES:
        parsed = urlparse(uri)
        if not parsed.netloc:
            raise StorageError(f"{uri} has no bucket; expected s3://<bucket>/<prefix>")
        return _s3_filesystem(s3), f"{parsed.netloc}{parsed.path}".rstrip("/")
    if scheme == "file":
        path = urlparse(uri).path if uri.startswith("file:") else uri
        return pafs.LocalFileSystem(), os.path.abspath(path)
    raise StorageError(f"{uri}: unsupported scheme {scheme!r}; use s3://, s3a:// or a local path")


@functools.cache
def _s3_filesystem(s3: S3Options) -> pafs.S3FileSystem:
    # One client per process and option set, shared by the driver's calls and each worker's tasks.
    return s3.filesystem()


def _list_data_file_infos(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(path, recursive=False, allow_not_found=True)
    infos = [
        info
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and is_data_file(info.base_name)
    ]
    return sorted(infos, key=lambda info: info.base_name)


def _dir_exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


# --------------------------------------------------------------------------------------------
# Python data sources for the "arrow" backend. They run in Spark's Python workers, so they get
# everything (path, job id, S3 options) as string options and build their own pyarrow client.
# --------------------------------------------------------------------------------------------


class _FilesPartition(InputPartition):
    """The data files one read task handles: (path on the filesystem, URI shown in source_file)."""

    files: list[tuple[str, str]]

    def __init__(self, files: list[tuple[str, str]]) -> None:
        self.files = files


@dataclass
class _Written(WriterCommitMessage):
    paths: list[str]
    rows: int


def _plan_partitions(infos: list[pafs.FileInfo], uri_dir: str, parallelism: int) -> list:
    """Group files into read tasks the way Spark sizes file splits (one file is never split)."""
    total = sum(info.size or 0 for info in infos)
    target = min(MAX_SPLIT_BYTES, max(MIN_SPLIT_BYTES, total // max(parallelism, 1)))
    partitions: list[_FilesPartition] = []
    current: list[tuple[str, str]] = []
    current_size = 0
    for info in infos:
        size = info.size or 0
        if current and current_size + size > target:
            partitions.append(_FilesPartition(current))
            current, current_size = [], 0
        current.append((info.path, join(uri_dir, info.base_name)))
        current_size += size
    if current or not partitions:
        partitions.append(_FilesPartition(current))
    return partitions


class _ArrowSource(DataSource):
    """Shared option handling for the two arrow-backed data sources."""

    @property
    def uri(self) -> str:
        return self.options["path"]

    @property
    def s3(self) -> S3Options:
        return S3Options.from_options(self.options)

    def fs_path(self) -> tuple[pafs.FileSystem, str]:
        return filesystem_and_path(self.uri, self.s3)


class _ArrowReaderBase(DataSourceReader):
    def __init__(self, source: _ArrowSource, schema: StructType) -> None:
        self.uri = source.uri
        self.s3 = source.s3
        self.schema = schema
        self.parallelism = int(source.options.get("parallelism", "2"))

    def partitions(self) -> list:
        fs, path = filesystem_and_path(self.uri, self.s3)
        infos = _list_data_file_infos(fs, path)
        if not infos and not _dir_exists(fs, path):
            raise StorageError(f"{self.uri} does not exist (no such directory or prefix)")
        return _plan_partitions(infos, self.uri, self.parallelism)


class _LinesReader(_ArrowReaderBase):
    def read(self, partition: _FilesPartition) -> Iterator[pa.RecordBatch]:
        fs, _ = filesystem_and_path(self.uri, self.s3)
        for path, file_uri in partition.files:
            yield from _read_line_batches(fs, path, file_uri)


def _read_line_batches(fs: pafs.FileSystem, path: str, file_uri: str) -> Iterator[pa.RecordBatch]:
    """Stream a text file as (value, source_file) batches; \\n or \\r\\n ends a line, like Spark."""
    rest = b""
    with fs.open_input_stream(path) as stream:
        while True:
            chunk = stream.read(READ_BLOCK_BYTES)
            if not chunk:
                break
            data = rest + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            rest = data[cut + 1 :]
            yield _lines_batch(data[:cut], file_uri)
    if rest:
        yield _lines_batch(rest, file_uri)


def _lines_batch(data: bytes, file_uri: str) -> pa.RecordBatch:
    # Cut only at newlines, so no UTF-8 sequence is split; bad bytes become U+FFFD, not a crash.
    text = data.decode("utf-8", errors="replace")
    values = pa.array(text.split("\n"), type=pa.string())
    if "\r" in text:
        values = pc.utf8_rtrim(values, characters="\r")
    sources = pa.repeat(pa.scalar(file_uri, pa.string()), len(values))
    return pa.RecordBatch.from_arrays([values, sources], names=["value", "source_file"])


class _ParquetReader(_ArrowReaderBase):
    def read(self, partition: _FilesPartition) -> Iterator[pa.RecordBatch]:
        target = _arrow_schema(self.schema)
        fs, _ = filesystem_and_path(self.uri, self.s3)
        for path, _file_uri in partition.files:
            with fs.open_input_file(path) as handle:
                parquet = pq.ParquetFile(handle)
                present = set(parquet.schema_arrow.names)
                columns = [name for name in target.names if name in present]
                for batch in parquet.iter_batches(columns=columns, batch_size=65536):
                    # Columns the file lacks read as nulls, like Spark's Parquet reader.
                    arrays = [
                        batch.column(field.name).cast(field.type)
                        if field.name in present
                        else pa.nulls(batch.num_rows, field.type)
                        for field in target
                    ]
                    yield pa.RecordBatch.from_arrays(arrays, schema=target)


class _ArrowWriterBase(DataSourceArrowWriter):
    """Tasks stage one object each under _temporary/<job id>/; commit moves them into the dir.

    Staging keeps the directory whole even when a cancelled task finishes its upload after the
    job was aborted: such a straggler only ever lands in _temporary/, which readers skip.
    """

    extension = ""

    def __init__(self, source: _ArrowSource, schema: StructType) -> None:
        self.uri = source.uri
        self.s3 = source.s3
        self.schema = schema
        self.job_id = source.options["job_id"]

    def file_name(self, partition_id: int) -> str:
        return f"part-{partition_id:05d}-{self.job_id}{self.extension}"

    def staging_dir(self, dir_path: str) -> str:
        return f"{dir_path}/{STAGING_DIR}/{self.job_id}"

    def write(self, iterator: Iterator[pa.RecordBatch]) -> _Written:
        context = TaskContext.get()
        partition_id = context.partitionId() if context else 0
        fs, dir_path = filesystem_and_path(self.uri, self.s3)
        path = f"{self.staging_dir(dir_path)}/{self.file_name(partition_id)}"
        try:
            rows = self.write_file(fs, path, iterator)
        except BaseException:
            # Closing the stream above completed the upload: do not leave the partial object.
            with contextlib.suppress(OSError):
                fs.delete_file(path)
            raise
        return _Written(paths=[path] if rows is not None else [], rows=rows or 0)

    def write_file(
        self, fs: pafs.FileSystem, path: str, batches: Iterator[pa.RecordBatch]
    ) -> int | None:
        """Write the batches to path; None when there was nothing to write (no file created)."""
        raise NotImplementedError

    def write_empty(self, fs: pafs.FileSystem, path: str) -> None:
        """The single file of an empty result, so the directory exists and reads as empty."""
        raise NotImplementedError

    def commit(self, messages: list[_Written | None]) -> None:
        fs, dir_path = filesystem_and_path(self.uri, self.s3)
        staged = sorted(p for m in messages if m is not None for p in m.paths)
        final = {f"{dir_path}/{posixpath.basename(p)}" for p in staged}
        for path in staged:
            fs.move(path, f"{dir_path}/{posixpath.basename(path)}")
        if not final:
            path = f"{dir_path}/{self.file_name(0)}"
            self.write_empty(fs, path)
            final.add(path)
        # The dir now holds only this job's files (older data and markers described old data).
        self._delete_where(fs, dir_path, lambda info: info.path not in final)
        with contextlib.suppress(FileNotFoundError):
            fs.delete_dir(f"{dir_path}/{STAGING_DIR}")

    def abort(self, messages: list[_Written | None]) -> None:
        fs, dir_path = filesystem_and_path(self.uri, self.s3)
        # The dir itself was never touched; drop what the tasks staged.
        with contextlib.suppress(FileNotFoundError):
            fs.delete_dir(self.staging_dir(dir_path))

    @staticmethod
    def _delete_where(
        fs: pafs.FileSystem, dir_path: str, predicate: Callable[[pafs.FileInfo], bool]
    ) -> None:
        selector = pafs.FileSelector(dir_path, recursive=False, allow_not_found=True)
        for info in fs.get_file_info(selector):
            if info.type == pafs.FileType.File and predicate(info):
                with contextlib.suppress(FileNotFoundError):
                    fs.delete_file(info.path)


def _ensure_local_parent(fs: pafs.FileSystem, path: str) -> None:
    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(posixpath.dirname(path), recursive=True)


class _LinesWriter(_ArrowWriterBase):
    extension = ".txt"

    def write_file(
        self, fs: pafs.FileSystem, path: str, batches: Iterator[pa.RecordBatch]
    ) -> int | None:
        stream = None
        rows = 0
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                # value + "\n" per row in one vectorised call; null -> empty line, like Spark.
                values = pc.fill_null(batch.column(0).cast(pa.string()), "")
                lines = pc.binary_join_element_wise(values, "", "\n")
                offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
                start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
                if stream is None:
                    _ensure_local_parent(fs, path)
                    stream = fs.open_output_stream(path)
                stream.write(memoryview(lines.buffers()[2])[start:end])
                rows += batch.num_rows
        finally:
            if stream is not None:
                stream.close()
        return rows if stream is not None else None

    def write_empty(self, fs: pafs.FileSystem, path: str) -> None:
        _ensure_local_parent(fs, path)
        with fs.open_output_stream(path):
            pass


class _ParquetWriter(_ArrowWriterBase):
    extension = ".parquet"

    def write_file(
        self, fs: pafs.FileSystem, path: str, batches: Iterator[pa.RecordBatch]
    ) -> int | None:
        writer = None
        stream = None
        rows = 0
        try:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                if writer is None:
                    _ensure_local_parent(fs, path)
                    stream = fs.open_output_stream(path)
                    writer = pq.ParquetWriter(stream, batch.schema, compression="snappy")
                writer.write_batch(batch)
                rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
            if stream is not None:
                stream.close()
        return rows if writer is not None else None

    def write_empty(self, fs: pafs.FileSystem, path: str) -> None:
        _ensure_local_parent(fs, path)
        with fs.open_output_stream(path) as stream:
            pq.ParquetWriter(stream, _arrow_schema(self.schema)).close()


class ArrowLinesSource(_ArrowSource):
    """Text lines of every data file in a directory: (value, source_file); writes plain lines."""

    @classmethod
    def name(cls) -> str:
        return LINES_SOURCE_NAME

    def schema(self) -> str:
        return LINES_DDL

    def reader(self, schema: StructType) -> _LinesReader:
        return _LinesReader(self, schema)

    def writer(self, schema: StructType, overwrite: bool) -> _LinesWriter:
        return _LinesWriter(self, schema)


class ArrowParquetSource(_ArrowSource):
    """Parquet files of a directory; the schema comes from the caller or the first data file."""

    @classmethod
    def name(cls) -> str:
        return PARQUET_SOURCE_NAME

    def schema(self) -> StructType:
        fs, path = self.fs_path()
        infos = _list_data_file_infos(fs, path)
        if not infos:
            raise StorageError(f"{self.uri} has no Parquet data files to take a schema from")
        with fs.open_input_file(infos[0].path) as handle:
            return from_arrow_schema(pq.read_schema(handle), prefer_timestamp_ntz=False)

    def reader(self, schema: StructType) -> _ParquetReader:
        return _ParquetReader(self, schema)

    def writer(self, schema: StructType, overwrite: bool) -> _ParquetWriter:
        return _ParquetWriter(self, schema)


# --------------------------------------------------------------------------------------------
# The facade the jobs use.
# --------------------------------------------------------------------------------------------


class Storage:
    """Reads and writes URIs for one SparkSession, choosing Spark or pyarrow per URI scheme."""

    def __init__(self, spark: SparkSession, s3_options: S3Options | None = None) -> None:
        self.spark = spark
        # Explicit options win; jobs pass none and rely on the spark.hadoop.fs.s3a.* conf.
        self.s3 = s3_options if s3_options is not None else S3Options.from_spark_conf(spark)
        self._backends: dict[str, Backend] = {}
        self._checked_buckets: set[str] = set()
        self._registered = False
        # Jobs may write several tables from threads (session.run_concurrently): the lazily
        # filled state above is filled once, under this lock.
        self._lock = threading.Lock()

    # ---- backend choice ------------------------------------------------------------------

    def backend(self, uri: str) -> Backend:
        """ "spark" for local paths and S3 schemes the JVM can open; else "arrow"."""
        scheme = scheme_of(uri)
        with self._lock:
            if scheme not in self._backends:
                self._backends[scheme] = self._choose_backend(scheme, uri)
            return self._backends[scheme]

    def _choose_backend(self, scheme: str, uri: str) -> Backend:
        if scheme == "file":
            log.info("file: local paths use Spark's own readers and writers")
            return "spark"
        if scheme not in S3_SCHEMES:
            raise StorageError(
                f"unsupported URI scheme {scheme!r}; use s3://, s3a:// or a local path"
            )
        if is_connect(self.spark):
            return self._choose_remote_backend(scheme, uri)
        jvm = self.spark.sparkContext._jvm
        hadoop_conf = self.spark._jsparkSession.sessionState().newHadoopConf()
        try:
            fs_class = jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(scheme, hadoop_conf)
        except Exception as exc:  # py4j wraps UnsupportedFileSystemException / ClassNotFound
            java_exc = getattr(exc, "java_exception", None)
            reason = str(java_exc.toString()) if java_exc is not None else repr(exc)
            self._log_arrow_choice(scheme, reason)
            return "arrow"
        log.info("%s: Spark opens it with %s", scheme, fs_class.getName())
        return "spark"

    def _choose_remote_backend(self, scheme: str, uri: str) -> Backend:
        """A Spark Connect server's classpath, asked by resolving a path there: a missing
        FileSystem class fails the lookup; a missing path, or anything else, is past it."""
        bucket = urlparse(uri).netloc
        probe = f"{scheme}://{bucket}/_pipeline_backend_probe_{_new_job_id()}"
        try:
            self.spark.read.text(probe).schema  # noqa: B018  (resolving the path is the probe)
        except Exception as exc:  # the server's error, as a Connect exception
            reason = str(exc)
            if any(sign in reason for sign in _NO_FILESYSTEM):
                self._log_arrow_choice(scheme, reason.splitlines()[0])
                return "arrow"
        log.info("%s: the Spark Connect server opens it with its own Hadoop FileSystem", scheme)
        return "spark"

    def _log_arrow_choice(self, scheme: str, reason: str) -> None:
        log.info(
            "%s: Spark has no Hadoop FileSystem for %s (%s; no hadoop-aws on the classpath); "
            "using the pyarrow data source against %s",
            scheme,
            scheme,
            reason[:200],
            self.s3.describe(),
        )

    def _spark_path(self, uri: str) -> str:
        """Local paths fully qualified, so a cluster's default FS (HDFS) is never assumed."""
        if scheme_of(uri) == "file" and not uri.startswith("file:"):
            return "file://" + os.path.abspath(uri)
        return uri

    # ---- small objects (driver side) -----------------------------------------------------

    def _fs(self, uri: str) -> tuple[pafs.FileSystem, str]:
        fs, path = filesystem_and_path(uri, self.s3)
        if scheme_of(uri) in S3_SCHEMES:
            self._check_bucket(fs, uri, path.split("/", 1)[0])
        return fs, path

    def _check_bucket(self, fs: pafs.FileSystem, uri: str, bucket: str) -> None:
        with self._lock:
            if bucket not in self._checked_buckets:
                self._check_bucket_exists(fs, uri, bucket)
                self._checked_buckets.add(bucket)

    def _check_bucket_exists(self, fs: pafs.FileSystem, uri: str, bucket: str) -> None:
        try:
            info = fs.get_file_info(bucket)
        except OSError as exc:
            raise StorageError(
                f"cannot reach S3 at {self.s3.describe()} for {uri}: {exc}; is LocalStack running, "
                "and is spark.hadoop.fs.s3a.endpoint right?"
            ) from exc
        if info.type == pafs.FileType.NotFound:
            raise StorageError(
                f"bucket {bucket} does not exist at {self.s3.describe()} (needed for {uri}); "
                "create it (host_stack.localstack.create_buckets / the nox session that starts "
                "LocalStack) or check DATA_BUCKET"
            )

    def exists(self, uri: str) -> bool:
        """True if a file, or a directory / prefix with anything under it, is at the URI."""

        fs, path = self._fs(uri)
        return fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_text(self, uri: str) -> str:
        fs, path = self._fs(uri)
        try:
            with fs.open_input_stream(path) as stream:
                return stream.read().decode("utf-8")
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{uri} does not exist") from exc

    def write_text(self, uri: str, text: str) -> None:
        """Write a small text object; readers see the old or the new content, never a part."""

        fs, path = self._fs(uri)
        data = text.encode("utf-8")
        if isinstance(fs, pafs.LocalFileSystem):
            parent = posixpath.dirname(path)
            fs.create_dir(parent, recursive=True)
            tmp = f"{parent}/.{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp"
            try:
                with fs.open_output_stream(tmp) as stream:
                    stream.write(data)
                fs.move(tmp, path)  # rename: atomic on one filesystem
            finally:
                if fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                    fs.delete_file(tmp)
        else:
            # An S3 PUT replaces the object atomically.
            with fs.open_output_stream(path) as stream:
                stream.write(data)

    def delete(self, uri: str) -> None:
        """Delete one object or file; a missing one is fine."""
        fs, path = self._fs(uri)
        with contextlib.suppress(FileNotFoundError):
            fs.delete_file(path)

    def delete_tree(self, uri: str) -> None:
        """Delete everything under a directory or prefix; a missing one is fine."""
        fs, path = self._fs(uri)
        if scheme_of(uri) in S3_SCHEMES and "/" not in path:
            raise StorageError(f"refusing to delete the whole bucket {uri}; pass a prefix below it")
        with contextlib.suppress(FileNotFoundError):
            fs.delete_dir(path)

    def list_data_files(self, uri_dir: str) -> list[str]:
        """URIs of the files directly in the directory, skipping names starting with "_" or "."."""
        fs, path = self._fs(uri_dir)
        return [join(uri_dir, info.base_name) for info in _list_data_file_infos(fs, path)]

    # ---- DataFrames ----------------------------------------------------------------------

    def _arrow_options(self, uri: str, *, reading: bool = False, **extra: str) -> dict[str, str]:
        # Fail on the driver, with a clear message, before any task starts.
        fs, path = self._fs(uri)
        if reading and not _dir_exists(fs, path):
            raise FileNotFoundError(f"{uri} does not exist (no such directory or prefix)")
        with self._lock:
            if not self._registered:
                _register_arrow_sources(self.spark)
                self._registered = True
        return {"path": uri, **self.s3.to_options(), **extra}

    def read_lines(self, uri_dir: str) -> DataFrame:
        """One row per text line of every data file in the dir: value, source_file."""

        if self.backend(uri_dir) == "arrow":
            parallelism = str(default_parallelism(self.spark))
            options = self._arrow_options(uri_dir, reading=True, parallelism=parallelism)
            return self.spark.read.format(LINES_SOURCE_NAME).options(**options).load()
        # JSON Lines: only \n ends a line (Spark's default also cuts at a lone \r, which JSON
        # allows as whitespace); a \r before it and bytes that are not UTF-8 are handled as the
        # arrow reader does, so both backends see the same lines.
        df = self.spark.read.option("lineSep", "\n").text(self._spark_path(uri_dir))
        line = F.col("value")
        # A byte test first: only the few lines that end in \r pay for the trim (rtrim with a
        # trim string walks every character of every line, which cost more than the read).
        line = F.when(line.endswith("\r"), F.regexp_replace(line, r"\r+\z", "")).otherwise(line)
        value = F.make_valid_utf8(line)
        source = F.col("_metadata.file_path")
        if scheme_of(uri_dir) == "file" and not uri_dir.startswith("file:"):
            # Show local files as plain paths, as the caller named the directory.
            source = F.regexp_replace(source, r"^file:(//)?", "")
        return df.select(value.alias("value"), source.alias("source_file"))

    def write_lines(self, df: DataFrame, uri_dir: str) -> None:
        """Replace the dir's data files with df's single string column "value", one line per row."""
        if len(df.columns) != 1:
            raise StorageError(
                f"write_lines({uri_dir}) needs one string column 'value', got {df.columns}"
            )
        if self.backend(uri_dir) == "arrow":
            options = self._arrow_options(uri_dir, job_id=_new_job_id())
            df.write.format(LINES_SOURCE_NAME).mode("overwrite").options(**options).save()
            return
        (
            df.write.mode("overwrite")
            .option("compression", "none")
            .options(**NO_SUCCESS_MARKER)
            .text(self._spark_path(uri_dir))
        )

    def concurrent_writes(self, uri: str) -> int | None:
        """How many writes under uri a job should run at once (None: no limit).

        Spark's own writers gain from running side by side: one write's planning and commit
        overlap another's tasks. A pyarrow data source write runs its planning and its commit
        in Python workers on the driver, and a worker serves one write at a time, so concurrent
        writes start new ones, each importing pyarrow again: there one write at a time is
        quicker (measured both ways: docs/performance.md)."""
        return 1 if self.backend(uri) == "arrow" else None

    def write_parquet(self, df: DataFrame, uri_dir: str) -> None:
        """Replace the dir's data files with df as Parquet (snappy)."""
        if self.backend(uri_dir) == "arrow":
            options = self._arrow_options(uri_dir, job_id=_new_job_id())
            df.write.format(PARQUET_SOURCE_NAME).mode("overwrite").options(**options).save()
            return
        df.write.mode("overwrite").options(**NO_SUCCESS_MARKER).parquet(self._spark_path(uri_dir))

    def read_parquet(self, uri_dir: str, schema: StructType | None = None) -> DataFrame:
        if self.backend(uri_dir) == "arrow":
            parallelism = str(default_parallelism(self.spark))
            reader = self.spark.read.format(PARQUET_SOURCE_NAME).options(
                **self._arrow_options(uri_dir, reading=True, parallelism=parallelism)
            )
            return (reader.schema(schema) if schema is not None else reader).load()
        reader = self.spark.read
        if schema is not None:
            reader = reader.schema(schema)
        return reader.parquet(self._spark_path(uri_dir))


def _new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def _register_arrow_sources(spark: SparkSession) -> None:
    # Ship these classes by value: Python workers need not have spark_jobs on their sys.path.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spark.dataSource.register(ArrowLinesSource)
    spark.dataSource.register(ArrowParquetSource)
