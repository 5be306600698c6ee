"""Benchmarks: figures, never pass/fail on time. `nox -s bench` runs this module.

Writes bench-results/bench.json and bench-results/bench.md (the table docs/performance.md
quotes), and prints the table. Each figure comes from this run on this machine; ratios compare
two things measured in the same run, so a slower or busier machine moves both sides.

  generator   rows/s of spark_jobs.data_generator vs the per-row Faker baseline (target >= 50x)
  processor   MB/s of raw JSON through spark_jobs.data_processor vs DuckDB JSON -> Parquet
              on the same files (target >= 0.3x); also Spark alone doing that conversion
              (no validation), and the floor of any Spark processor of this contract: only
              the two wide tables it must publish (orders, order_items), nothing else
  memory      peak RSS of the generator's driver (python + JVM) at 1M and 10M rows (flat)
  dag parse   seconds to parse each DAG file in a fresh interpreter (target < 0.5 s)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench-results"
DAY = dt.date(2026, 1, 15)


def _spark():
    from pyspark.sql import SparkSession

    from config.config import load_settings
    from spark_jobs.common.session import JOB_SESSION_CONF

    # The JVM options the local jobs are submitted with (SPARK_JAVA_OPTIONS), so the figures
    # are the jobs' own.
    java_options = load_settings("local").spark_java_options or ""
    return (
        SparkSession.builder.master("local[2]")
        .config("spark.driver.extraJavaOptions", java_options)
        .appName("bench")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.session.timeZone", "UTC")
        .config(map=JOB_SESSION_CONF)  # the jobs' own (static) settings
        .getOrCreate()
    )


def _dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _timed(action) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def bench_generator(spark, work: Path, rows: int, baseline_rows: int) -> dict[str, Any]:
    from spark_jobs.common.storage import Storage
    from spark_jobs.data_generator import write_day
    from tests.benchmarks.faker_baseline import faker_orders

    storage = Storage(spark)
    write_day(spark, str(work / "warmup"), DAY, 10_000, storage=storage)  # JIT, pools, JVM
    seconds, _ = _timed(lambda: write_day(spark, str(work / "gen"), DAY, rows, storage=storage))
    baseline_df = faker_orders(spark, DAY, baseline_rows)
    base_seconds, _ = _timed(lambda: storage.write_lines(baseline_df, str(work / "faker")))
    ours, theirs = rows / seconds, baseline_rows / base_seconds
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(ours),
        "baseline_rows": baseline_rows,
        "baseline_seconds": round(base_seconds, 2),
        "baseline_rows_per_s": round(theirs),
        "ratio": round(ours / theirs, 1),
        "target_ratio": 50,
    }


def bench_processor(spark, work: Path, rows: int) -> dict[str, Any]:
    import duckdb

    from spark_jobs.common.layout import raw_day_dir
    from spark_jobs.data_generator import write_day
    from spark_jobs.data_processor import process_day

    raw = work / "raw"
    write_day(spark, str(raw), DAY, rows)
    day_dir = Path(raw_day_dir(str(raw), DAY))
    mb = _dir_mb(day_dir)
    process_day(spark, str(raw), str(work / "warm"), DAY)  # same JVM warm-up as DuckDB gets
    seconds, report = _timed(lambda: process_day(spark, str(raw), str(work / "processed"), DAY))

    con = duckdb.connect()
    con.execute("SET threads = 2")
    files = [str(p) for p in sorted(day_dir.glob("part-*"))]
    out = work / "duckdb.parquet"
    query = (
        f"COPY (SELECT * FROM read_json({files!r}, format='newline_delimited', "
        f"ignore_errors=true)) TO '{out}' (FORMAT parquet)"
    )
    duck_seconds, _ = _timed(lambda: con.execute(query))

    # Spark alone: the same files to one Parquet dataset with the contract's schema and
    # nothing else (no validation, dedupe, quarantine or second table). Warmed up like the job.
    def bare_spark(target: Path) -> None:
        read_raw(spark, day_dir).write.mode("overwrite").parquet(str(target))

    bare_spark(work / "bare-warm")
    bare_seconds, _ = _timed(lambda: bare_spark(work / "bare"))
    floor_seconds, _ = _timed(lambda: two_tables(spark, day_dir, work / "floor"))
    ours, theirs = mb / seconds, mb / duck_seconds
    return {
        "rows": rows,
        "raw_mb": round(mb, 1),
        "lines_read": report["lines_read"],
        "seconds": round(seconds, 2),
        "mb_per_s": round(ours, 1),
        "duckdb_seconds": round(duck_seconds, 2),
        "duckdb_mb_per_s": round(theirs, 1),
        "ratio": round(ours / theirs, 2),
        "target_ratio": 0.3,
        "bare_spark_seconds": round(bare_seconds, 2),
        "bare_spark_mb_per_s": round(mb / bare_seconds, 1),
        "bare_spark_ratio": round(duck_seconds / bare_seconds, 2),
        "floor_seconds": round(floor_seconds, 2),
        "floor_mb_per_s": round(mb / floor_seconds, 1),
        "floor_ratio": round(duck_seconds / floor_seconds, 2),
    }


def read_raw(spark, day_dir: Path):
    """The raw day through Spark's own JSON reader with the contract's schema, nothing else."""
    from spark_jobs.common.contract import raw_struct_type

    return spark.read.schema(raw_struct_type()).option("mode", "PERMISSIVE").json([str(day_dir)])


def two_tables(spark, day_dir: Path, target: Path) -> None:
    """The floor of any processor of this contract in Spark: only the two wide tables it must
    publish (orders flat, order_items exploded), each from its own parse of the same raw, and
    nothing else: no validation, dedupe, quarantine, customers, payments or daily sales.

    Its own parse per table, because Spark's JSON reader then parses only the fields a table
    needs, which beat one cached parse of every field (docs/performance.md)."""
    from pyspark.sql import functions as F  # noqa: N812  (Spark's own convention)

    read_raw(spark, day_dir).select(
        "order_id",
        "order_ts",
        "status",
        "channel",
        "currency",
        F.col("customer.customer_id").alias("customer_id"),
        F.col("payment.payment_id").alias("payment_id"),
        F.col("payment.method").alias("payment_method"),
        F.size("items").alias("item_count"),
        "total_amount",
    ).write.mode("overwrite").parquet(str(target / "orders"))
    items = F.explode("items").alias("i")
    read_raw(spark, day_dir).select("order_id", "currency", "order_ts", items).select(
        "order_id", "i.*", "currency", "order_ts"
    ).write.mode("overwrite").parquet(str(target / "order_items"))


def _peak_rss_mb(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command; sample the RSS of its whole process tree; return (peak MB, seconds)."""
    started = time.perf_counter()
    proc = psutil.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                tree = [proc, *proc.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree) / 1e6)
            except psutil.Error:
                pass
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{command} failed:\n{stderr.decode()[-3000:]}")
    return peak, time.perf_counter() - started


def bench_memory(work: Path, sizes: list[int]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPARK_LOCAL_IP": "127.0.0.1"}
    runs = []
    for rows in sizes:
        command = [sys.executable, "-m", "spark_jobs.data_generator", "--date", str(DAY)]
        command += ["--rows", str(rows), "--output", str(work / f"mem-{rows}")]
        peak, seconds = _peak_rss_mb(command, env)
        runs.append({"rows": rows, "peak_rss_mb": round(peak), "seconds": round(seconds, 1)})
        shutil.rmtree(work / f"mem-{rows}", ignore_errors=True)
    return {"runs": runs, "growth": round(runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 2)}


def bench_dag_parse() -> dict[str, Any]:
    script = ROOT / "tests/benchmarks/dag_parse_time.py"
    if not script.exists():
        return {"skipped": "tests/benchmarks/dag_parse_time.py not present"}
    out = subprocess.run(
        [sys.executable, str(script), "--json"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(out.stdout)


def measured_on() -> dict[str, Any]:
    """When and on what: the first keys of every benchmark's JSON."""
    return {
        "date": dt.date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30),
            "platform": platform.platform(terse=True),
            "python": platform.python_version(),
        },
    }


def table_head(results: dict[str, Any], columns: list[str]) -> list[str]:
    """A benchmark table's first lines: when and on what it was measured, then its header."""
    return [
        measured_on_line(results),
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]


def measured_on_line(results: dict[str, Any]) -> str:
    machine = results["machine"]
    return (
        f"Measured {results['date']} on {machine['cpus']} cores, {machine['memory_gb']} GB, "
        f"{machine['platform']} (Python {machine['python']})."
    )


def write_results(name: str, results: dict[str, Any], table: str) -> None:
    """bench-results/<name>.json and <name>.md (the table docs/performance.md quotes); print."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table)
    print(table)


def markdown(results: dict[str, Any]) -> str:
    lines = table_head(results, ["benchmark", "ours", "reference", "ratio", "target"])
    gen = results.get("generator")
    if gen:
        lines.append(
            f"| generator, {gen['rows']:,} orders to JSON lines | {gen['rows_per_s']:,} rows/s "
            f"| per-row Faker in Spark: {gen['baseline_rows_per_s']:,} rows/s "
            f"| {gen['ratio']}x | >= {gen['target_ratio']}x |"
        )
    proc = results.get("processor")
    if proc:
        lines.append(
            f"| processor, {proc['raw_mb']} MB raw ({proc['lines_read']:,} lines) "
            f"| {proc['mb_per_s']} MB/s ({proc['seconds']} s) "
            f"| DuckDB JSON -> Parquet: {proc['duckdb_mb_per_s']} MB/s "
            f"| {proc['ratio']}x | >= {proc['target_ratio']}x |"
        )
        lines.append(
            f"| Spark alone: the same raw to Parquet with the contract's schema, nothing else "
            f"| {proc['bare_spark_mb_per_s']} MB/s ({proc['bare_spark_seconds']} s) "
            f"| DuckDB: {proc['duckdb_mb_per_s']} MB/s | {proc['bare_spark_ratio']}x | |"
        )
        lines.append(
            "| floor of any Spark processor: only orders and order_items from the same raw, "
            "each its own parse; no validation, dedupe, quarantine or other table "
            f"| {proc['floor_mb_per_s']} MB/s ({proc['floor_seconds']} s) "
            f"| DuckDB: {proc['duckdb_mb_per_s']} MB/s | {proc['floor_ratio']}x | |"
        )
    mem = results.get("memory")
    if mem:
        sizes = ", ".join(f"{r['rows']:,} rows: {r['peak_rss_mb']} MB" for r in mem["runs"])
        lines.append(
            f"| generator driver peak RSS (python + JVM) | {sizes} | | "
            f"{mem['growth']}x growth | flat |"
        )
    dags = results.get("dag_parse")
    if dags and "files" in dags:
        for name, seconds in dags["files"].items():
            lines.append(f"| parse {name} (fresh interpreter) | {seconds} s | | | < 0.5 s |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only", nargs="*", default=["generator", "processor", "memory", "dag_parse"]
    )
    args = parser.parse_args(argv)
    gen_rows, base_rows, proc_rows = (
        (200_000, 5_000, 200_000) if args.quick else (2_000_000, 20_000, 2_000_000)
    )
    mem_sizes = [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000]

    results: dict[str, Any] = {**measured_on(), "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        work = Path(tmp)
        if {"generator", "processor"} & set(args.only):
            spark = _spark()
            if "generator" in args.only:
                results["generator"] = bench_generator(spark, work, gen_rows, base_rows)
            if "processor" in args.only:
                results["processor"] = bench_processor(spark, work, proc_rows)
            spark.stop()
        if "memory" in args.only:
            results["memory"] = bench_memory(work, mem_sizes)
    if "dag_parse" in args.only:
        results["dag_parse"] = bench_dag_parse()

    write_results("bench", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
