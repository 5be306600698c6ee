"""DescribeCluster's Applications come from envs/aws/emr_releases.toml, the table config and the
parity test read: the emulator cannot report another Spark than the release in effect runs."""

from __future__ import annotations

import pytest

from config.emr_releases import load_emr_releases
from host_stack.emr_emulator.emulator import release_applications


def test_the_release_in_effect_reports_its_spark() -> None:
    release = load_emr_releases().get("emr-spark-8.0.0")
    assert release is not None

    apps = release_applications("emr-spark-8.0.0", [{"Name": "Spark"}, {"Name": "Iceberg"}])

    assert apps == [
        {"Name": "Spark", "Version": release.spark_version},
        {"Name": "Iceberg", "Version": "1.10.1"},
    ]


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        # The guide lists no Hadoop version for this release: shown by name only.
        ("emr-spark-8.0.0", [{"Name": "Hadoop"}, {"Name": "Spark", "Version": "4.0.2"}]),
        # A release the project refuses is still one EMR runs: its versions are known.
        (
            "emr-7.12.0",
            [{"Name": "Hadoop", "Version": "3.4.1"}, {"Name": "Spark", "Version": "3.5.6"}],
        ),
        # A label the table does not know: names only, never a guessed version.
        ("emr-spark-8.1.0", [{"Name": "Hadoop"}, {"Name": "Spark"}]),
    ],
)
def test_versions_only_where_the_table_has_them(label: str, expected: list[dict]) -> None:
    assert release_applications(label, [{"Name": "Hadoop"}, {"Name": "Spark"}]) == expected
