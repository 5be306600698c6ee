"""Add the S3A connector to a Spark jars folder, matched to the Hadoop that Spark bundles.

Runs at image build time (Dockerfile, target `local`), where Maven Central is reachable (not on
this project's CI). Nothing here names a version:
- Hadoop's version is read from the folder's own hadoop-client-api-<version>.jar (pyspark's wheel,
  pinned by requirements.txt);
- hadoop-aws is taken at exactly that version;
- the AWS SDK v2 `bundle` (and, when the release declares it, the S3 analytics accelerator) at
  the versions that Hadoop release's hadoop-project POM was built with.
Every jar is checked against the .sha1 Maven publishes next to it: that catches corrupt or
truncated downloads, not a compromised mirror (no checksum could be stated offline here).

    python s3a_jars.py --jars <spark>/jars [--maven https://repo1.maven.org/maven2]

Standard library only (it runs before anything else is installed).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import urllib.request
from pathlib import Path

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
HADOOP_CLIENT_JAR_RE = re.compile(r"hadoop-client-api-(\d+\.\d+\.\d+)\.jar")
# (group, artifact, the hadoop-project POM property holding its version, required?)
SDK_JARS = (
    ("software.amazon.awssdk", "bundle", "aws-java-sdk-v2.version", True),
    # Only read by fs.s3a.input.stream.type=analytics; older Hadoop releases do not declare it.
    (
        "software.amazon.s3.analyticsaccelerator",
        "analyticsaccelerator-s3",
        "amazon-s3-analyticsaccelerator-s3.version",
        False,
    ),
)
TIMEOUT_SECONDS = 300


class S3AJarsError(RuntimeError):
    """The connector could not be matched, downloaded or verified."""


def hadoop_version(jars: Path) -> str:
    """The Hadoop version Spark bundles, from its hadoop-client-api-<version>.jar."""
    found = sorted(
        {m[1] for p in jars.glob("*.jar") if (m := HADOOP_CLIENT_JAR_RE.fullmatch(p.name))}
    )
    if len(found) != 1:
        raise S3AJarsError(
            f"expected one hadoop-client-api-<version>.jar in {jars}, found {found or 'none'}; "
            "pass --jars <pyspark>/jars (the folder of the pyspark wheel's jars)"
        )
    return found[0]


def pom_property(pom: str, name: str) -> str | None:
    match = re.search(rf"<{re.escape(name)}>\s*([^<\s]+)\s*</{re.escape(name)}>", pom)
    return match[1] if match else None


def artifact_url(maven: str, group: str, artifact: str, version: str, ext: str = "jar") -> str:
    return f"{maven}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.{ext}"


def _open(url: str):
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS)  # noqa: S310 (our own URL)
    except OSError as exc:
        raise S3AJarsError(f"could not download {url}: {exc}") from exc


def fetch(url: str) -> bytes:
    with _open(url) as response:
        return response.read()


def install_jar(maven: str, group: str, artifact: str, version: str, jars: Path) -> Path:
    """Stream one jar into `jars`, keeping it only if it matches Maven's published SHA-1."""
    url = artifact_url(maven, group, artifact, version)
    published = fetch(url + ".sha1").decode().split()
    target = jars / f"{artifact}-{version}.jar"
    partial = jars / f".{target.name}.part"
    digest = hashlib.sha1(usedforsecurity=False)
    # The SDK bundle is ~700 MB: stream it to disk rather than hold it in memory.
    with _open(url) as response, partial.open("wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    if not published or published[0].lower() != digest.hexdigest():
        partial.unlink()
        raise S3AJarsError(
            f"{url}: SHA-1 {digest.hexdigest()} does not match the published {url}.sha1 "
            f"({published[0] if published else 'empty'}); retry the build, or check the mirror"
        )
    partial.replace(target)
    return target


def install_s3a(jars: Path, maven: str = MAVEN_CENTRAL) -> list[Path]:
    """hadoop-aws and its SDK jars for the Hadoop in `jars`; returns the jars written."""
    version = hadoop_version(jars)
    pom_url = artifact_url(maven, "org.apache.hadoop", "hadoop-project", version, "pom")
    pom = fetch(pom_url).decode()
    wanted = [("org.apache.hadoop", "hadoop-aws", version)]
    for group, artifact, prop, required in SDK_JARS:
        sdk_version = pom_property(pom, prop)
        if sdk_version is None and required:
            raise S3AJarsError(
                f"property <{prop}> not found in {pom_url}; hadoop-aws {version} needs "
                f"{group}:{artifact} at that version"
            )
        if sdk_version is not None:
            wanted.append((group, artifact, sdk_version))
    return [install_jar(maven, *coordinates, jars) for coordinates in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jars", type=Path, required=True, help="Spark's jars folder")
    parser.add_argument("--maven", default=MAVEN_CENTRAL, help="Maven repository base URL")
    args = parser.parse_args(argv)
    try:
        written = install_s3a(args.jars, args.maven.rstrip("/"))
    except S3AJarsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"added {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
