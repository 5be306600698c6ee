"""Fixtures for the DAG tests: a throwaway Airflow home, one PIPELINE_ENV per test, a DagBag.

Airflow reads its configuration when it is first imported, so this module points it at a private
AIRFLOW_HOME (SQLite) before any test module of this folder imports Airflow.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "orchestration" / "dags"

if "airflow" in sys.modules:
    raise RuntimeError(
        "Airflow was imported before tests/dags/conftest.py could give it a private AIRFLOW_HOME; "
        "run the DAG tests in their own pytest process (pytest tests/dags)"
    )
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="airflow-home-")
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)
os.environ.update(
    {
        "AIRFLOW_HOME": _AIRFLOW_HOME,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "False",
    }
)


@pytest.fixture
def use_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """use_env("aws", SCHEDULE_TIMEZONE="Europe/Berlin") -> the Settings DAG files will see.

    Clears every settings key from the environment first, so the developer's shell cannot leak
    in, and clears config's cache before and after.
    """
    from config.config import KEYS, get_settings

    def use(env: str, **overrides: str) -> Any:
        for key in (*KEYS, "PIPELINE_ENVS_DIR"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("PIPELINE_ENV", env)
        for key, value in overrides.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        return get_settings()

    yield use
    get_settings.cache_clear()


@pytest.fixture
def dagbag(use_env: Callable[..., Any]) -> Callable[..., Any]:
    """dagbag("aws", **overrides) -> a DagBag of orchestration/dags/ parsed under that env."""

    def parse(env: str, **overrides: str) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        use_env(env, **overrides)
        return DagBag(dag_folder=str(DAGS_FOLDER))

    return parse


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database (SQLite in the private home), created once per session."""
    from airflow.utils import db

    db.initdb()
