"""The data layout and the defect vocabulary: literal paths, kinds to reasons, a cheap import."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from spark_jobs.common import layout

DAY = dt.date(2024, 1, 15)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (layout.raw_day_dir("s3://b/raw", DAY), "s3://b/raw/orders/dt=2024-01-15"),
        (layout.raw_success_path("raw", "{{ ds }}"), "raw/orders/dt={{ ds }}/_SUCCESS"),
        (layout.manifest_path("/raw/", "2024-01-15"), "/raw/orders/dt=2024-01-15/_manifest.json"),
        (layout.table_day_dir("s3a://b/p", "orders", DAY), "s3a://b/p/orders/dt=2024-01-15"),
        (layout.table_success_path("p", "quarantine", DAY), "p/quarantine/dt=2024-01-15/_SUCCESS"),
        (layout.report_path("out", DAY), "out/reports/dt=2024-01-15/quality_report.json"),
    ],
)
def test_paths_below_a_root(path, expected):
    assert path == expected


def test_a_day_as_text_or_date_is_the_same_partition():
    assert layout.day_partition("2024-01-15") == layout.day_partition(DAY) == "dt=2024-01-15"
    assert layout.parse_day("2024-01-15") == layout.parse_day(DAY) == DAY
    with pytest.raises(ValueError, match="expected YYYY-MM-DD"):
        layout.parse_day("15/01/2024")


def test_every_injected_kind_has_one_outcome():
    assert set(layout.OUTCOME_OF_KIND) == set(layout.BAD_KINDS)
    reasons = {r for r in layout.OUTCOME_OF_KIND.values() if r is not None}
    assert reasons <= set(layout.REASONS)
    # Replays are valid lines the dedupe drops; two reasons come only from real input.
    assert layout.OUTCOME_OF_KIND["duplicate_order_id"] is None
    assert layout.REASONS_NOT_INJECTED == ("invalid_value", "total_mismatch")
    assert layout.GOOD not in layout.BAD_KINDS


def test_the_published_tables_include_the_quarantine():
    assert layout.PUBLISHED_TABLES[-1] == layout.QUARANTINE_TABLE == "quarantine"
    assert len(set(layout.PUBLISHED_TABLES)) == len(layout.PUBLISHED_TABLES)


def test_importing_the_layout_loads_no_spark():
    """DAG files and the host stack import it at parse time."""
    code = "import sys, spark_jobs.common.layout; print('pyspark' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
