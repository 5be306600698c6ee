"""The developer-loop benchmark's reading of its commands' output (tests/benchmarks/e2e_loop.py)."""

from __future__ import annotations

from tests.benchmarks.e2e_loop import markdown, pytest_summary

MEASURED_ON = {
    "date": "2026-11-25",
    "machine": {"cpus": 2, "memory_gb": 24, "platform": "Linux", "python": "3.11.7"},
}


def test_the_tests_time_is_the_last_pytest_summary():
    output = (
        "============ 1 passed in 3.20s ============\n"
        "nox > Session up was successful\n"
        "=================== 5 passed, 1 skipped in 52.51s (0:00:52) ===================\n"
        "nox > Session e2e_local was successful in a minute.\n"
    )
    assert pytest_summary(output) == ("5 passed, 1 skipped", 52.51)
    assert pytest_summary("nox > Session e2e_local failed.") is None


def test_the_table_counts_the_cycles_within_each_goal():
    cycle = {"tests": "5 passed"}
    results = MEASURED_ON | {
        "cold": {"seconds": 110.0, "tests_seconds": 55.0} | cycle,
        "warm": [{"seconds": s, "tests_seconds": s - 3} | cycle for s in (48.0, 61.5, 52.0)],
        "first": [{"up_seconds": 50.0, "seconds": 55.0, "tests_seconds": 52.0} | cycle],
    }
    table = markdown(results)
    assert "| 110.0 s (1) | 55.0 s | 1 of 1 | <= 180 s |" in table
    assert "| 48.0-61.5 s (3) | 45.0-58.5 s | 2 of 3 | <= 60 s |" in table
    assert "| 55.0 s (1) | 52.0 s | 1 of 1 | <= 60 s |" in table
    assert "before each first cycle | 50.0 s |" in table
