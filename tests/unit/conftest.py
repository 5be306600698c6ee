"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

# The region of the moto-backed tests (tests/unit/test_emr_*.py).
MOTO_REGION = "us-east-1"


@pytest.fixture
def moto_aws(monkeypatch):
    """moto's in-process AWS in MOTO_REGION, with no endpoint or profile from the environment."""
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", MOTO_REGION)
    with mock_aws():
        yield
