"""A bad setting reaches Airflow as one DagBag import error per DAG file, naming the key, before
any DAG (so any task) exists; and the retry delay comes from TASK_RETRY_DELAY_SECONDS."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "orchestration" / "dags"
DAG_FILES = ("data_generation_dag.py", "data_processing_dag.py")


@pytest.fixture
def broken_dagbag(monkeypatch):
    """broken_dagbag(env, **overrides) -> a DagBag parsed under settings that do not load."""
    from airflow.dag_processing.dagbag import DagBag

    from config.config import KEYS, get_settings

    def parse(env: str, **overrides: str):
        for key in (*KEYS, "PIPELINE_ENVS_DIR"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("PIPELINE_ENV", env)
        for key, value in overrides.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        return DagBag(dag_folder=str(DAGS_FOLDER))

    yield parse
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        (
            "local",
            {"DATA_BUCKET": "Data_Bucket"},
            "DATA_BUCKET='Data_Bucket' (from the environment)",
        ),
        ("local", {"GENERATION_SCHEDULE": "daily"}, "GENERATION_SCHEDULE='daily' (from the"),
        ("local", {"TASK_RETRY_DELAY_SECONDS": "soon"}, "TASK_RETRY_DELAY_SECONDS='soon' (from"),
        ("aws", {"EMR_RELEASE_LABEL": ""}, "EMR_RELEASE_LABEL is empty (from the environment)"),
        ("aws", {"EMR_CLUSTER_CONFIG": "missing.json"}, "missing.json not found"),
    ],
)
def test_a_bad_setting_is_an_import_error_of_each_dag_file(broken_dagbag, env, overrides, message):
    bag = broken_dagbag(env, **overrides)
    assert bag.dag_ids == [], "no DAG may be built from a bad configuration"
    assert sorted(Path(f).name for f in bag.import_errors) == sorted(DAG_FILES)
    for error in bag.import_errors.values():
        assert message in error, error


@pytest.mark.parametrize(("env", "seconds"), [("local", 15), ("aws", 120), ("local", 7)])
def test_retry_delay_follows_the_setting(dagbag, env, seconds):
    overrides = {} if seconds in (15, 120) else {"TASK_RETRY_DELAY_SECONDS": str(seconds)}
    bag = dagbag(env, **overrides)
    assert bag.import_errors == {}
    for dag in bag.dags.values():
        for task in dag.tasks:
            if task.retries:
                assert task.retry_delay == timedelta(seconds=seconds), task.task_id
