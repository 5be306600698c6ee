"""Quick JVM start for the host stack's Spark jobs: a class-data archive and the C1 compiler only.

Every local DAG run is a new spark-submit: a new driver JVM and a new executor JVM, each loading
Spark's, Scala's and Hadoop's classes before doing any work, and the JIT's optimising compiler
(C2) competing for the CPU while it does. On the project's 2-core machine that is most of a
10k-row run. In host mode the stack therefore appends two JVM options to SPARK_JAVA_OPTIONS (the
pipeline setting that becomes spark.driver/executor.extraJavaOptions):

- `-XX:SharedArchiveFile=<archive>`: classes come mapped from a dynamic class-data-sharing (CDS)
  archive instead of being read, verified and linked at each start. The archive is written once
  per virtualenv and JDK by a warm-up run of both jobs on a few rows (host_stack/spark_warmup.py,
  local[2] so the executor's classes load in the same JVM) with `-XX:ArchiveClassesAtExit`. The
  JVM ignores a missing archive silently and refuses one of another JDK or Spark with a warning;
  either way it starts as without it.
- `-XX:TieredStopAtLevel=1`: only the quick C1 compiler. Right for the few-second runs of a
  developer loop; for large local data C2's code pays off: STACK_SPARK_QUICK_START=off turns both
  options off.

Both are host-mode start-up choices like the stack's ports; the aws environment (EMR) never gets
them, and neither do the benchmarks (`nox -s bench`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from host_stack.spark import pyspark_home

QUICK_JIT = "-XX:TieredStopAtLevel=1"
WARMUP_SCRIPT = Path(__file__).resolve().parent / "spark_warmup.py"


def java_binary() -> Path | None:
    """The java that spark-class runs: $JAVA_HOME/bin/java, else `java` on PATH (resolved)."""
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).exists() else None


def archive_key() -> str:
    """Names the Spark and JDK an archive belongs to: another one gets another archive file."""
    import pyspark

    java = java_binary()
    stat = java.stat() if java else None
    identity = f"{java}:{stat.st_size if stat else ''}:{stat.st_mtime_ns if stat else ''}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"spark-{pyspark.__version__}-java-{digest}"


def _with(base: str | None, *extra: str) -> str:
    """The options of `base`, then each of `extra` that `base` does not have already."""
    options = (base or "").split()
    options += [option for option in extra if option not in options]
    return " ".join(options)


@dataclass(frozen=True)
class SparkQuickStart:
    """Where the archive of one virtualenv lives, the options that use it, how to build it."""

    archive_dir: Path

    @property
    def archive(self) -> Path:
        return self.archive_dir / f"{archive_key()}.jsa"

    @property
    def partial(self) -> Path:
        """Where the warm-up's JVM writes the archive at exit; renamed into place when complete."""
        return self.archive.with_name(self.archive.name + ".partial")

    def java_options(self, base: str | None) -> str:
        """`base` (the setting's own options) plus the two quick-start options, each once."""
        return _with(base, QUICK_JIT, f"-XX:SharedArchiveFile={self.archive}")

    def jit_options(self, base: str | None) -> str:
        """`base` plus the C1-only option: for a long-lived JVM that the archive would not
        speed up (the Spark Connect server's executor, host_stack/stack.py)."""
        return _with(base, QUICK_JIT)

    def build_command(self, base: str | None, work_dir: Path) -> list[str]:
        """spark-submit of the warm-up, writing the archive to `partial` when its JVM exits."""
        # The setting's own options only: a -XX:SharedArchiveFile here would name the base
        # archive of the one being written.
        own = [o for o in (base or "").split() if not o.startswith("-XX:SharedArchiveFile=")]
        options = " ".join(
            dict.fromkeys([*own, QUICK_JIT, f"-XX:ArchiveClassesAtExit={self.partial}"])
        )
        return [
            str(pyspark_home() / "bin" / "spark-submit"),
            "--master", "local[2]",
            "--conf", f"spark.driver.extraJavaOptions={options}",
            "--conf", "spark.ui.enabled=false",
            str(WARMUP_SCRIPT),
            "--work-dir", str(work_dir),
        ]  # fmt: skip

    def prepare(self, work_dir: Path) -> None:
        """Clean leftovers of an interrupted build; the warm-up needs an empty work dir."""
        self.archive_dir.mkdir(parents=True, exist_ok=True)
        self.partial.unlink(missing_ok=True)
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)

    def finish(self, exit_code: int, work_dir: Path) -> bool:
        """After the warm-up exited: publish the archive if it is complete. True if published."""
        shutil.rmtree(work_dir, ignore_errors=True)
        if exit_code == 0 and self.partial.exists() and self.partial.stat().st_size > 0:
            self.partial.replace(self.archive)
            # Archives of an older Spark or JDK in this virtualenv are of no use any more.
            for old in self.archive_dir.glob("*.jsa"):
                if old != self.archive:
                    old.unlink(missing_ok=True)
            return True
        self.partial.unlink(missing_ok=True)
        return False
