"""The EMR releases the project supports, read from envs/aws/emr_releases.toml.

One table says what each release runs (Spark, Scala, Hadoop, Python, Java, its applications):
config checks EMR_RELEASE_LABEL against it, the EMR emulator answers DescribeCluster from it, and
tests/unit/test_emr_parity.py holds the lock, the Dockerfile and the bootstrap to it.
Standard library only, and cheap: DAG files reach it through config at parse time.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = [
    "EMR_RELEASES_FILE",
    "EmrRelease",
    "EmrReleases",
    "load_emr_releases",
    "upstream_version",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
EMR_RELEASES_FILE = REPO_ROOT / "envs" / "aws" / "emr_releases.toml"
_REQUIRED = ("spark", "scala", "python", "java", "aws_sdk_java")
_AMZN_BUILD_RE = re.compile(r"-amzn-\d+.*$")


def upstream_version(version: str) -> str:
    """The open-source version an AWS build is made from: 4.0.2-amzn-0 -> 4.0.2."""
    return _AMZN_BUILD_RE.sub("", version)


@dataclass(frozen=True)
class EmrRelease:
    """What one EMR release runs on its nodes, as AWS's release guide lists it."""

    label: str
    spark: str
    scala: str
    python: tuple[str, ...]
    java: str
    aws_sdk_java: str
    hadoop: str | None = None
    applications: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Why the project refuses this release (the table's [unsupported] section); None: supported.
    unsupported_because: str | None = None

    @property
    def spark_version(self) -> str:
        """The Apache Spark release this EMR build is made from (pyspark's version on PyPI)."""
        return upstream_version(self.spark)


@dataclass(frozen=True)
class EmrReleases:
    """The supported releases by label, and the known-but-refused ones (with their reason)."""

    source: Path
    supported: Mapping[str, EmrRelease]
    unsupported: Mapping[str, EmrRelease]

    def get(self, label: str) -> EmrRelease | None:
        return self.supported.get(label)


def _display(path: Path) -> str:
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def _release(label: str, entry: Any, shown: str, section: str = "releases") -> EmrRelease:
    where = f"{shown} [{section}.{label!r}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is not a table; expected spark, scala, python, java keys")
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(missing)}; copy them from AWS's release guide")
    python = entry["python"]
    if not (isinstance(python, list) and python and all(isinstance(v, str) for v in python)):
        raise ValueError(f'{where} python must be a list of versions like ["3.11", "3.12"]')
    applications = entry.get("applications", {})
    if section == "releases" and "Spark" not in applications:
        raise ValueError(f'{where} applications lacks Spark; expected Spark = "{entry["spark"]}"')
    return EmrRelease(
        label=label,
        spark=str(entry["spark"]),
        scala=str(entry["scala"]),
        python=tuple(python),
        java=str(entry["java"]),
        aws_sdk_java=str(entry["aws_sdk_java"]),
        hadoop=str(entry["hadoop"]) if "hadoop" in entry else None,
        applications=MappingProxyType({str(k): str(v) for k, v in applications.items()}),
        unsupported_because=str(entry.get("reason", "refused"))
        if section == "unsupported"
        else None,
    )


@functools.cache
def load_emr_releases(path: Path = EMR_RELEASES_FILE) -> EmrReleases:
    """Parse and check the table; ValueError names the file and what is wrong."""
    shown = _display(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{shown} not found; expected the supported EMR releases there") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{shown} is not valid TOML: {exc}") from None
    releases = data.get("releases") or {}
    if not releases:
        raise ValueError(f'{shown} has no [releases."<label>"] table; add the supported ones')
    supported = {label: _release(label, entry, shown) for label, entry in releases.items()}
    unsupported = {
        label: _release(label, entry, shown, section="unsupported")
        for label, entry in (data.get("unsupported") or {}).items()
    }
    return EmrReleases(path, MappingProxyType(supported), MappingProxyType(unsupported))
